"""Start and stop a local Prefect server on PostgreSQL (SQLite stalls under concurrent writes, see the notes)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def server_env(db_url: str, port: int, home: Path) -> dict[str, str]:
    """Environment for `prefect server start` on PostgreSQL at `db_url` (postgresql+asyncpg://...)."""
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": db_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
    })
    return env


def ensure_database(db_url: str) -> None:
    """Create the server's database when it does not exist (trust or password auth via the URL)."""
    import asyncio

    import asyncpg

    plain = db_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    base, name = plain.rsplit("/", 1)

    async def go() -> None:
        conn = await asyncpg.connect(base + "/postgres")
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(go())


def wait_ready(api_url: str, timeout: float = 90) -> None:
    """Poll /health until the API answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"Prefect server at {api_url} not ready after {timeout:.0f}s")


def start(db_url: str, port: int, home: Path, log: Path, services: bool = True) -> subprocess.Popen[bytes]:
    """Start the server detached (own session) and wait until it answers."""
    ensure_database(db_url)
    home.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    if not services:
        args.append("--no-services")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, env=server_env(db_url, port, home), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/api")
    except TimeoutError:
        stop_pid(proc.pid)
        raise
    return proc


def stop_pid(pid: int, grace: float = 10) -> None:
    """SIGTERM the process group, SIGKILL after `grace` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    """Collect `pid` if it is our exited child (a zombie still answers signal 0)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def main() -> None:
    """`python -m flows.server start|stop`: a Prefect server for `make serve`, `make demo` and the tests."""
    ap = argparse.ArgumentParser(prog="python -m flows.server", description=main.__doc__)
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--port", type=int, default=4200)
    ap.add_argument("--db", default="postgresql+asyncpg://postgres@127.0.0.1:5432/aevon_prefect")
    ap.add_argument("--home", type=Path, default=Path(".aevon/prefect"))
    a = ap.parse_args()
    pidfile = a.home / f"server-{a.port}.pid"
    if a.action == "start":
        if pidfile.exists():
            try:
                wait_ready(f"http://127.0.0.1:{a.port}/api", timeout=2)
                print(f"Prefect server already running: http://127.0.0.1:{a.port}")
                return
            except TimeoutError:
                pidfile.unlink()
        proc = start(a.db, a.port, a.home, a.home / "server.log")
        pidfile.write_text(str(proc.pid))
        print(f"Prefect server (PostgreSQL) ready: http://127.0.0.1:{a.port}  (log: {a.home / 'server.log'})")
    else:
        if pidfile.exists():
            stop_pid(int(pidfile.read_text()))
            pidfile.unlink()
            print("Prefect server stopped")


if __name__ == "__main__":
    main()
