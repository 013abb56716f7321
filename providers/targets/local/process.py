"""Process and file helpers of the local target: detached spawn, liveness, stop, ports, log tails, atomic writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from providers.errors import PermanentError, TransientError

# Runs in an intermediate interpreter (isolated mode, so a checkout's files never shadow the stdlib): starts the real
# process in its own session with output to the log, writes its pid file atomically, prints the pid and exits at once.
# The real process is thus never a child of the orchestrator: it outlives it and is never left a zombie of ours.
_LAUNCHER = r"""
import os, subprocess, sys
log, pidfile, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab", buffering=0) as out:
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    except OSError as exc:
        out.write(("aevon: cannot start %s: %s\n" % (argv[0], exc.strerror)).encode())
        sys.stdout.write("error: cannot start %s: %s\n" % (argv[0], exc.strerror))
        sys.stdout.flush()
        os._exit(3)
tmp = pidfile + ".tmp"
with open(tmp, "w") as f:
    f.write("%d\n" % proc.pid)
os.replace(tmp, pidfile)
sys.stdout.write("%d\n" % proc.pid)
sys.stdout.flush()
os._exit(0)
"""

_ENV_ALLOWLIST = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def base_env() -> dict[str, str]:
    """The few variables of the orchestrator's environment a service inherits (never its tokens)."""
    return {k: v for k, v in os.environ.items() if k in _ENV_ALLOWLIST}


def proc_start_time(pid: int) -> int | None:
    """The kernel start time of `pid` (clock ticks since boot), to tell a process from a later one reusing its pid."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def pid_alive(pid: int | None, start_time: int | None = None) -> bool:
    """True when `pid` runs, is not a zombie and (when known) is the very process that started at `start_time`."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process has taken the pid: not ours
    fields = _proc_stat(pid)
    if fields is None:
        return not Path("/proc/self/stat").exists()  # no procfs (macOS): kill(0) is all we can know
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


async def spawn_detached(
    argv: list[str], *, cwd: Path, env: Mapping[str, str], log: Path, pidfile: Path
) -> tuple[int, int | None]:
    """Start `argv` as a detached session leader (output appended to `log`); return (pid, start time).

    Raises PermanentError when the program cannot be executed (not found, not executable).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", _LAUNCHER, str(log), str(pidfile), *argv,
        cwd=str(cwd), env=dict(env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise TransientError("process launcher timed out", provider="local", resource=argv[0]) from exc
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0 or not text.isdigit():
        detail = text or err.decode(errors="replace").strip()[-300:]
        raise PermanentError(detail or f"launcher exited with {proc.returncode}", provider="local", resource=argv[0])
    pid = int(text)
    return pid, proc_start_time(pid)


def read_pidfile(path: Path) -> int | None:
    """The pid a launcher wrote to `path`, or None."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


async def terminate(pid: int | None, start_time: int | None, grace: float) -> None:
    """SIGTERM the process group of `pid`, then SIGKILL it if still alive after `grace` seconds."""
    if pid is None or not pid_alive(pid, start_time):
        return
    _signal_group(pid, signal.SIGTERM)
    await wait_gone(pid, start_time, grace)
    # stragglers of the group (children left behind by the leader) and a leader that ignored SIGTERM
    _signal_group(pid, signal.SIGKILL)
    await wait_gone(pid, start_time, 5)


async def wait_gone(pid: int, start_time: int | None, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `pid` to end (polling: it is not our child); True when it did."""
    deadline = time.monotonic() + timeout
    while True:
        if not pid_alive(pid, start_time):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def free_port(exclude: Iterable[int] = ()) -> int:
    """A TCP port free on 127.0.0.1 now (not one of `exclude`)."""
    excluded = set(exclude)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in excluded:
            return port
    raise TransientError("no free port found", provider="local")


def port_in_use(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value (and the password inside a secret URL) replaced by ***."""
    needles: set[str] = set()
    for value in secrets:
        if not value:
            continue
        needles.add(value)
        try:
            password = urlsplit(value).password
        except ValueError:
            password = None
        if password:
            needles.update({password, unquote(password)})
    for needle in sorted(needles, key=len, reverse=True):
        text = text.replace(needle, "***")
    return text


def log_tail(path: Path, secrets: Iterable[str], lines: int = 20, max_bytes: int = 8192) -> str:
    """The last `lines` lines of the log at `path`, secrets scrubbed; empty when there is no log."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            raw = f.read()
    except OSError:
        return ""
    tail = raw.decode(errors="replace").splitlines()[-lines:]
    return scrub("\n".join(tail), secrets)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old or the new content, never a part (temp + fsync + rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
