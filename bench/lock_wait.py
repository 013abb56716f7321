"""Bench: how long a migration waits on a held table lock under lock_timeout (real Prisma CLI, real PostgreSQL)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.spec import DatabaseSpec
from providers.migrators.base import MigrationLocked, MigratorContext
from providers.migrators.prisma.migrator import make_migrator
from tests.integration.test_prisma_migrator import make_checkout
from tests.pg import temp_database

INIT, NOTE = "20250101000000_init", "20250102000000_note"


async def one(timeout_ms: int) -> tuple[float, float]:
    """(wall time of a refused apply, baseline wall time of an apply with no lock held) in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        co = make_checkout(Path(tmp) / "app", {INIT: 'CREATE TABLE "T" ("id" INT);\n',
                                               NOTE: 'ALTER TABLE "T" ADD COLUMN "n" TEXT;\n'})
        async with temp_database() as url:
            spec = DatabaseSpec(lock_timeout_ms=timeout_ms, lock_retries=0)
            m = make_migrator(MigratorContext("bench", spec, SecretStr(url), Path(tmp) / "s"))
            await m.apply(co, only=[INIT])
            holder = await asyncpg.connect(url)
            tx = holder.transaction()
            await tx.start()
            await holder.execute('LOCK TABLE "T" IN ACCESS SHARE MODE')
            t0 = time.monotonic()
            try:
                await m.apply(co)
            except MigrationLocked:
                pass
            locked = time.monotonic() - t0
            await tx.rollback()
            await holder.close()
            t0 = time.monotonic()
            await m.apply(co)
            return locked, time.monotonic() - t0


async def main() -> None:
    for ms in (300, 3000):
        locked, free = await one(ms)
        print(f"lock_timeout {ms} ms: refused apply {locked:.2f}s, unblocked apply {free:.2f}s, "
              f"lock wait ≈ {locked - free:.2f}s (bound {ms / 1000:.1f}s)")


if __name__ == "__main__":
    asyncio.run(main())
