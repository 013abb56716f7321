"""Lock-safe apply with the real Prisma CLI: lock_timeout through PGOPTIONS, retries, the blocker named, phases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from deployments.spec import DatabaseSpec
from providers.errors import PermanentError
from providers.migrators.base import MigrationLocked, MigratorContext
from providers.migrators.prisma.migrator import PrismaMigrator, make_migrator
from tests.integration.test_prisma_migrator import make_checkout
from tests.pg import fetch, temp_database
from tests.sample_app import ensure_prisma_toolkit

pytestmark = pytest.mark.slow

INIT = "20250101000000_init"
INDEX = "20250102000000_task_title_idx"
CONCURRENT = "20250102000000_task_title_idx_concurrently"
NOTE = "20250103000000_task_note"
DROP_OLD = "20250104000000_drop_task_legacy"
BASE = {INIT: 'CREATE TABLE "Task" ("id" SERIAL PRIMARY KEY, "title" TEXT NOT NULL, "legacy" TEXT);\n'
              'INSERT INTO "Task" ("title") VALUES (\'a\'), (\'b\');\n'}


@pytest.fixture(scope="module", autouse=True)
def _toolkit() -> None:
    ensure_prisma_toolkit()


def migrator(url: str, tmp: Path, **spec: object) -> PrismaMigrator:
    db = DatabaseSpec.model_validate({"lock_timeout_ms": 300, "lock_retries": 1, "lock_retry_backoff_s": 0.1, **spec})
    return make_migrator(MigratorContext(env="test", spec=db, database_url=SecretStr(url), state_dir=tmp / "state"))


async def applied(url: str) -> list[str]:
    rows = await fetch(url, 'SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL '
                            "AND rolled_back_at IS NULL ORDER BY migration_name")
    return [r["migration_name"] for r in rows]


async def test_a_lock_held_by_a_long_transaction_times_out_is_retried_then_names_the_blocker(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "app", {**BASE, NOTE: 'ALTER TABLE "Task" ADD COLUMN "note" TEXT;\n'})
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await m.apply(checkout, only=[INIT])
        holder = await asyncpg.connect(url)
        try:  # a real concurrent transaction holding a lock on the table (a long report, say)
            await holder.execute("SET application_name = 'nightly-report'")
            tx = holder.transaction()
            await tx.start()
            await holder.execute('LOCK TABLE "Task" IN ACCESS SHARE MODE')
            with pytest.raises(MigrationLocked) as caught:
                await m.apply(checkout)
            await tx.rollback()
        finally:
            await holder.close()
        text = str(caught.value)
        assert NOTE in text and "lock_timeout 300 ms" in text and "2 attempt(s)" in text
        assert "nightly-report" in text and "LOCK TABLE" in text  # the blocking session and its query
        assert caught.value.applied == []
        assert await applied(url) == [INIT]  # nothing of it applied, and not left failed: pending again
        assert (await m.status(checkout)).pending == [NOTE]
        assert "note" not in [r["column_name"] for r in await fetch(
            url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'Task'")]
        result = await m.apply(checkout)  # the lock is gone: the next apply goes through
        assert result.applied == [NOTE]


async def test_a_retry_succeeds_once_the_blocker_ends(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "app", {**BASE, NOTE: 'ALTER TABLE "Task" ADD COLUMN "note" TEXT;\n'})
    async with temp_database() as url:
        m = migrator(url, tmp_path, lock_retries=3, lock_retry_backoff_s=0.5)
        await m.apply(checkout, only=[INIT])
        holder = await asyncpg.connect(url)
        try:
            tx = holder.transaction()
            await tx.start()
            await holder.execute('LOCK TABLE "Task" IN ACCESS SHARE MODE')
            release = asyncio.get_running_loop().call_later(1.0, lambda: asyncio.ensure_future(tx.rollback()))
            result = await m.apply(checkout)
            release.cancel()
        finally:
            await holder.close()
        assert result.applied == [NOTE]
        assert await applied(url) == [INIT, NOTE]


async def test_create_index_concurrently_in_a_migration_of_its_own_runs_outside_a_transaction(
    tmp_path: Path,
) -> None:
    checkout = make_checkout(tmp_path / "app", {
        **BASE, CONCURRENT: '-- its own migration: CONCURRENTLY cannot run in a transaction\n'
                            'CREATE INDEX CONCURRENTLY "Task_title_idx" ON "Task"("title");\n'})
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        plan_findings = await m.assess(checkout, [CONCURRENT])
        assert [f.detail["category"] for f in plan_findings] == ["additive"]
        assert (await m.apply(checkout)).applied == [INIT, CONCURRENT]
        rows = await fetch(url, "SELECT indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                "WHERE c.relname = 'Task_title_idx'")
        assert [r["indisvalid"] for r in rows] == [True]


async def test_only_the_expand_phase_then_the_rest(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "app", {
        **BASE, NOTE: 'ALTER TABLE "Task" ADD COLUMN "note" TEXT;\n',
        DROP_OLD: 'ALTER TABLE "Task" DROP COLUMN "legacy";\n'})
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await m.apply(checkout, only=[INIT])
        plan = await m.plan(checkout, None)
        assert (plan.expand, plan.contract) == ([NOTE], [DROP_OLD])
        with pytest.raises(PermanentError, match="first pending"):
            await m.apply(checkout, only=[DROP_OLD])
        assert (await m.apply(checkout, only=plan.expand)).applied == [NOTE]
        assert (await m.status(checkout)).pending == [DROP_OLD]
        assert (await m.apply(checkout)).applied == [DROP_OLD]
