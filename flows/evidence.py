"""A read-only HTTP server of the state folder's `artifacts/` on 127.0.0.1, so the Prefect UI's evidence links open."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flows.server import stop_pid

DEFAULT_PORT = 4201  # next to the Prefect UI's 4200 (`make serve EVIDENCE_PORT=...` to change it)
HOST = "127.0.0.1"
TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif",
    ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
    ".json": "application/json", ".txt": "text/plain; charset=utf-8", ".log": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8", ".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".zip": "application/zip",
}
PIDFILE = "evidence.pid"


def evidence_url(port: int) -> str:
    """The AEVON_EVIDENCE_URL of an evidence server on `port`."""
    return f"http://{HOST}:{port}"


def resolve(root: Path, url_path: str) -> Path | None:
    """The file under `root` that `url_path` names, or None: no `..`/`.`/empty segments, NUL or backslash, nothing
    outside `root` once symlinks are resolved, and only regular files (a folder is never listed)."""
    raw = unquote(urlsplit(url_path).path)
    parts = raw.split("/")[1:]
    if not parts or any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        return None
    try:
        base = root.resolve(strict=True)
        path = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def handler_for(root: Path) -> type[BaseHTTPRequestHandler]:
    """A GET/HEAD-only handler serving files under `root` (other methods: 501 from the base class)."""

    class EvidenceHandler(BaseHTTPRequestHandler):
        server_version = "aevon-evidence"
        sys_version = ""

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, *, body: bool) -> None:
            path = resolve(root, self.path)
            if path is None:
                self.send_error(HTTPStatus.NOT_FOUND, "no such evidence file")
                return
            try:
                f = path.open("rb")
            except OSError:
                self.send_error(HTTPStatus.NOT_FOUND, "no such evidence file")
                return
            with f:
                ctype = TYPES.get(path.suffix.lower(), "application/octet-stream")
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Cache-Control", "no-store")
                if ctype.startswith("text/html") or ctype.startswith("image/svg"):
                    # a report's scripts run in an opaque origin: they cannot read other evidence
                    self.send_header("Content-Security-Policy", "sandbox allow-scripts")
                self.end_headers()
                if body:
                    shutil.copyfileobj(f, self.wfile)

    return EvidenceHandler


def make_server(root: Path, port: int) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1:`port` (0: any free port) for the files under `root`."""
    server = ThreadingHTTPServer((HOST, port), handler_for(root))
    server.daemon_threads = True
    return server


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def start(state_dir: Path, port: int, home: Path, timeout: float = 20) -> int:
    """Start the server detached (own session) serving `<state_dir>/artifacts`, pid in `<home>/evidence.pid`;
    returns its pid. One already started from `home` on `port` is kept.

    Raises:
        RuntimeError: the port is taken by something else, or the server did not answer within `timeout`.
    """
    home.mkdir(parents=True, exist_ok=True)
    pidfile = home / PIDFILE
    if pidfile.exists():
        pid, _, old_port = pidfile.read_text().partition(" ")
        if old_port.strip() == str(port) and _is_evidence_server(int(pid)) and _answers(port):
            return int(pid)
        if _is_evidence_server(int(pid)):
            stop_pid(int(pid), grace=5)
        pidfile.unlink()
    if _answers(port):
        raise RuntimeError(f"evidence server: port {port} on {HOST} is taken by another program; choose another "
                           "with EVIDENCE_PORT=N (make) or --evidence-port N")
    root = (state_dir / "artifacts").resolve()
    args = [sys.executable, "-m", "flows.evidence", "run", "--port", str(port), "--root", str(root)]
    with open(home / "evidence.log", "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + timeout
    while not _answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_pid(proc.pid, grace=2)
            raise RuntimeError(f"evidence server did not start on {HOST}:{port} (see {home / 'evidence.log'})")
        time.sleep(0.1)
    pidfile.write_text(f"{proc.pid} {port}")
    return proc.pid


def stop(home: Path) -> bool:
    """Stop the server started from `home`; False when none was."""
    pidfile = home / PIDFILE
    if not pidfile.exists():
        return False
    pid = int(pidfile.read_text().split()[0])
    pidfile.unlink()
    if not _is_evidence_server(pid):
        return False
    stop_pid(pid, grace=5)
    return True


def _is_evidence_server(pid: int) -> bool:
    """`pid` runs an evidence server (a pid file outliving its process may name someone else's by now)."""
    try:
        return b"flows.evidence" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def main() -> None:
    """`python -m flows.evidence start|stop|run`: the evidence server of `make serve` and `make demo`."""
    ap = argparse.ArgumentParser(prog="python -m flows.evidence", description=main.__doc__)
    ap.add_argument("action", choices=["start", "stop", "run"])
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--state-dir", type=Path, default=None, help="default: AEVON_STATE_DIR (.aevon)")
    ap.add_argument("--root", type=Path, default=None, help="run: the folder served (default <state-dir>/artifacts)")
    ap.add_argument("--home", type=Path, default=Path(".aevon/prefect"), help="where the pid file and log go")
    a = ap.parse_args()
    if a.state_dir is None:
        from deployments.settings import AevonSettings

        a.state_dir = AevonSettings().state_dir
    if a.action == "stop":
        print("evidence server stopped" if stop(a.home) else "no evidence server was running")
    elif a.action == "start":
        pid = start(a.state_dir, a.port, a.home)
        print(f"evidence server: {evidence_url(a.port)} serves {(a.state_dir / 'artifacts').resolve()} "
              f"(pid {pid}); AEVON_EVIDENCE_URL={evidence_url(a.port)}")
    else:
        server = make_server(a.root or a.state_dir / "artifacts", a.port)
        try:
            server.serve_forever()
        finally:
            server.server_close()


if __name__ == "__main__":
    main()
