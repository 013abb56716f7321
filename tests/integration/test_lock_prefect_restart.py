"""A Prefect server restart while a run holds the environment lock: the holder lives on, the next run gets in."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from flows.server import start, stop_pid
from providers.state.lock import LockTable
from tests.conftest import free_port
from tests.pg import ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]
HANG = 180  # a guard against hanging forever, not a timing assertion


class Server:
    """A dedicated Prefect server on its own PostgreSQL database, restartable on the same port and database."""

    def __init__(self, home: Path) -> None:
        self.name = f"aevon_prefect_restart_{secrets.token_hex(4)}"
        base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        self.db_url = f"{base}/{self.name}"
        self.port = free_port()
        self.home = home
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.pid: int | None = None

    def start(self) -> None:
        self.pid = start(self.db_url, self.port, self.home, self.home / "server.log").pid

    def stop(self) -> None:
        if self.pid is not None:
            stop_pid(self.pid)
            self.pid = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "prefect")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()

        async def drop() -> None:
            conn = await asyncpg.connect(ADMIN_URL)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{srv.name}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(drop())


async def running_runs(api: str, count: int) -> None:
    """Wait until `count` flow runs are Running on the server at `api`."""
    with temporary_settings(updates={PREFECT_API_URL: api}):
        async with get_client() as client:
            while True:
                runs = await client.read_flow_runs()
                if sum(1 for r in runs if r.state is not None and r.state.is_running()) >= count:
                    return
                await asyncio.sleep(0.1)


async def test_prefect_server_restart_neither_kills_the_holder_nor_blocks_the_next_run(
    server: Server, ledger_url: str, tmp_path: Path
) -> None:
    go, journal = tmp_path / "go", tmp_path / "journal"
    env = {**os.environ, "PREFECT_API_URL": server.api, "AEVON_STATE_DB_URL": ledger_url}

    def holder(*extra: str) -> subprocess.Popen[str]:
        # a 3 s lease: were the lease lost while Prefect is down, the waiting run would get in during the restart
        return subprocess.Popen([sys.executable, "-m", "tests.integration.lock_holder", "dev", "--lease", "3",
                                 "--journal", str(journal), *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)

    first = holder("--until", str(go))
    second: subprocess.Popen[str] | None = None
    try:
        assert first.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(first.stdout.readline), HANG)
        assert line.startswith("HELD "), line
        first_run = line.split()[1]
        second = holder()  # waits for the lock, once its flow run is Running
        await asyncio.wait_for(running_runs(server.api, 2), HANG)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(5)  # Prefect down for longer than the lease: the ledger heartbeat keeps it alive
        await asyncio.to_thread(server.start)
        go.touch()
        assert await asyncio.wait_for(asyncio.to_thread(first.wait), HANG) == 0
        assert await asyncio.wait_for(asyncio.to_thread(second.wait), HANG) == 0
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    lines = [ln.split() for ln in journal.read_text().splitlines()]
    assert [(k, w) for k, w, _ in lines][:2] == [("enter", first_run), ("exit", first_run)], lines
    assert [k for k, _, _ in lines] == ["enter", "exit", "enter", "exit"], lines
    with temporary_settings(updates={PREFECT_API_URL: server.api}):
        async with get_client() as client:
            run = await client.read_flow_run(uuid.UUID(first_run))
    assert run.state is not None and run.state.is_completed(), run.state
    table = await LockTable.connect(SecretStr(ledger_url))
    try:
        row = await table.read("dev")
        assert row is not None and not row.held and row.token == 2
    finally:
        await table.close()
