"""`make bench`: start a Prefect server on PostgreSQL, then run every bench/bench_*.py and print their figures."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AEVON_PLUGINS", "tests.standins")  # the memory target and sleep check the benches deploy

ADMIN = os.environ.get("AEVON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def create_db(name: str) -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_db(name: str) -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> int:
    from flows.server import start, stop_pid

    only = sys.argv[1:]
    tag = secrets.token_hex(4)
    prefect_db, ledger_db = f"aevon_bench_prefect_{tag}", f"aevon_bench_ledger_{tag}"
    base = ADMIN.rsplit("/", 1)[0]
    asyncio.run(create_db(ledger_db))
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        t0 = time.perf_counter()
        proc = start(base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{prefect_db}", port,
                     Path(tmp) / "prefect", Path(tmp) / "server.log")
        print(f"# Prefect server on PostgreSQL ready in {time.perf_counter() - t0:.1f}s (port {port})", flush=True)
        env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
               "AEVON_STATE_DB_URL": f"{base}/{ledger_db}", "AEVON_STATE_DIR": str(Path(tmp) / "state"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
               "PYTHONPATH": str(ROOT), "AEVON_BENCH_SERVER_PID": str(proc.pid)}
        try:
            for script in sorted(HERE.glob("bench_*.py")):
                if only and script.stem not in only:
                    continue
                print(f"\n## {script.stem}", flush=True)
                rc = subprocess.run([sys.executable, str(script)], env=env, cwd=ROOT, check=False).returncode
                failures += rc != 0
        finally:
            stop_pid(proc.pid)
            asyncio.run(drop_db(prefect_db))
            asyncio.run(drop_db(ledger_db))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
