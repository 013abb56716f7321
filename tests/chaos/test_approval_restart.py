"""The CI form of `make chaos` approval-restart: the Prefect server restarted while a production deploy is paused."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from flows.server import start, stop_pid
from tests.chaos.approval_scenarios import approval_restarts
from tests.chaos.lock_scenarios import World
from tests.conftest import free_port
from tests.pg import ADMIN_URL


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[tuple[str, World]]:
    """A Prefect server of this test's own (its own database), restartable on the same port: (api, a world)."""
    name = f"aevon_prefect_appr_{secrets.token_hex(4)}"
    db_url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + name
    port, home = free_port(), tmp_path / "prefect"
    pid = [(await asyncio.to_thread(start, db_url, port, home, home / "server.log")).pid]

    async def restart() -> None:
        await asyncio.to_thread(stop_pid, pid[0])
        await asyncio.sleep(5)  # down for longer than a poll of the paused run and a lease renewal
        pid[0] = (await asyncio.to_thread(start, db_url, port, home, home / "server.log")).pid

    try:
        yield f"http://127.0.0.1:{port}/api", World(f"http://127.0.0.1:{port}/api", "", tmp_path, restart)
    finally:
        await asyncio.to_thread(stop_pid, pid[0])
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def test_restart_while_paused_for_approval_ends_clearly_once(
    restartable: tuple[str, World], ledger_url: str
) -> None:
    """Paused at the approval gate, the server restarts for longer than the Prefect client retries; answered after
    it, the run deploys once and settles (before the fix the run crashed and its flow run stayed Running)."""
    _, world = restartable
    world.ledger_url = ledger_url
    out = await approval_restarts(world, 1, moments=("during-long",))
    assert dict(out.outcomes) == {"during-long: SUCCEEDED": 1}, out.notes
    assert (out.runs, out.duplicates, out.half_done, out.leftovers) == (1, 0, 0, 0), out.notes
