"""A run whose ledger server has no free connection slot waits for one instead of failing (issue 17 scale-out)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg
import pytest
from pydantic import SecretStr

from providers.errors import TransientError
from providers.state.store import StateStore, with_slot
from tests.pg import ADMIN_URL, temp_database


async def _limit(url: str, slots: int) -> None:
    """Give the database's own (non-superuser) role `slots` connections, as a busy server's max_connections would."""
    role = urlsplit(url).username
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT {slots}')
    finally:
        await admin.close()


async def test_ledger_writes_wait_for_a_slot_and_land() -> None:
    """Every slot taken but the run's own connection: concurrent ledger writes queue on it and all land (before,
    the pool's attempt at a second connection raised TooManyConnectionsError into the deploy and its rollback)."""
    async with temp_database(password="slots") as url:
        await _limit(url, 2)
        store = StateStore(SecretStr(url))
        other = None
        try:
            await store.open()  # the run's one connection
            other = await asyncpg.connect(url)  # another run holds the last slot
            with pytest.raises(asyncpg.TooManyConnectionsError):  # the server really is full
                await asyncpg.connect(url)
            await asyncio.gather(*(store.ledger.start_release(f"r{i}", "e", "v1", "abc", None) for i in range(6)))
            async with store.connection() as conn:
                assert await conn.fetchval("SELECT count(*) FROM aevon_releases") == 6
        finally:
            if other is not None:
                await other.close()
            await store.close()


async def test_a_run_that_cannot_get_a_slot_waits_then_starts() -> None:
    """A run starting while the server is full opens its pool once a slot frees up; with none, it gives up after
    its wait with a TransientError naming the cause (the ledger budget's retry layer decides what follows)."""
    async with temp_database(password="slots") as url:
        await _limit(url, 1)
        holder = await asyncpg.connect(url)
        try:
            with pytest.raises(TransientError, match="TooManyConnectionsError"):
                await with_slot(lambda: asyncpg.connect(url), wait_s=0.5)
            store = StateStore(SecretStr(url))
            opening = asyncio.create_task(store.open())
            await asyncio.sleep(0.5)
            assert not opening.done()  # still waiting for the slot
            await holder.close()
            await asyncio.wait_for(opening, 30)
            await store.ledger.start_release("r1", "e", "v1", "abc", None)
            await store.close()
        finally:
            if not holder.is_closed():
                await holder.close()
