"""A tiny versioned HTTP app the local-target tests deploy: /health answers its version, or fails on purpose."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

MODES = ("ok", "crash", "unhealthy", "no-listen")


def _from_file(name: str, default: str) -> str:
    path = Path.cwd() / name
    return path.read_text().strip() if path.is_file() else default


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real apps do
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    version = "unknown"
    mode = "ok"

    def do_GET(self) -> None:
        status = 503 if self.path == "/health" and self.mode == "unhealthy" else 200
        doc = {
            "version": self.version,
            "release_id": os.environ.get("AEVON_RELEASE_ID", ""),
            "instance": os.environ.get("AEVON_INSTANCE_ID", ""),
            "pid": os.getpid(),
        }
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet: the tests hammer it
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM. Version and mode come from --version/--mode, else VERSION/MODE files in the cwd."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "0")))
    parser.add_argument("--version", default=None)
    parser.add_argument("--mode", choices=MODES, default=None)
    args = parser.parse_args(argv)
    version = args.version or _from_file("VERSION", os.environ.get("APP_VERSION", "unknown"))
    mode = args.mode or _from_file("MODE", "ok")
    print(f"versioned_app {version} mode={mode} starting on port {args.port}", flush=True)
    if mode == "crash":
        # a config dump gone wrong: the target must scrub this secret from what it reports
        print(f"fatal: cannot connect to {os.environ.get('DATABASE_URL', '<unset>')}", file=sys.stderr, flush=True)
        return 3
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    if mode == "no-listen":
        while not stop.wait(0.5):
            pass
        return 0
    _Handler.version, _Handler.mode = version, mode
    server = _Server(("127.0.0.1", args.port), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    print(f"versioned_app {version} listening", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    time.sleep(0.05)
    print(f"versioned_app {version} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
