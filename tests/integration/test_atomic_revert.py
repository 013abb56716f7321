"""Reverts of real Prisma inverses on real data: atomic (enum recreation's own BEGIN/COMMIT), proven beforehand."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.errors import PermanentError
from providers.migrators.prisma.migrator import PrismaMigrator
from tests.integration.test_prisma_migrator import make_checkout, migrator
from tests.pg import fetch, temp_database
from tests.sample_app import ensure_prisma_toolkit

pytestmark = pytest.mark.slow

BASE = "20250101000000_base"
UNIQUE_GONE = "20250201000000_title_not_unique"
URGENT = "20250202000000_mood_urgent"
NOTE = "20250203000000_task_note"
HISTORY = {
    BASE: 'CREATE TYPE "Mood" AS ENUM (\'calm\', \'busy\');\n'
          'CREATE TABLE "Task" ("id" SERIAL NOT NULL, "title" TEXT NOT NULL,\n'
          '  "mood" "Mood" NOT NULL DEFAULT \'calm\', CONSTRAINT "Task_pkey" PRIMARY KEY ("id"));\n'
          'CREATE UNIQUE INDEX "Task_title_key" ON "Task"("title");\n',
    UNIQUE_GONE: 'DROP INDEX "Task_title_key";\n',
    URGENT: "ALTER TYPE \"Mood\" ADD VALUE 'urgent';\n",
    NOTE: 'ALTER TABLE "Task" ADD COLUMN "note" TEXT;\n',
}
RELEASE = [UNIQUE_GONE, URGENT, NOTE]


@pytest.fixture(scope="module", autouse=True)
def _toolkit() -> None:
    ensure_prisma_toolkit()


async def schema_of(url: str) -> list[tuple[str, ...]]:
    """What a revert may change: columns, indexes, enum values and the applied migrations."""
    cols = await fetch(url, "SELECT table_name, column_name, data_type, udt_name FROM information_schema.columns "
                            "WHERE table_schema = 'public' ORDER BY 1, 2")
    idx = await fetch(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
    enums = await fetch(url, "SELECT t.typname, e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                             "ORDER BY 1, e.enumsortorder")
    applied = await fetch(url, 'SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL '
                               "AND rolled_back_at IS NULL ORDER BY 1")
    return [tuple(str(v) for v in r.values()) for r in [*cols, *idx, *enums, *applied]]


async def released(url: str, tmp: Path) -> tuple[PrismaMigrator, Path, str]:
    """The base applied, the release planned (real `migrate diff` inverses) and applied; its composed inverse."""
    checkout = make_checkout(tmp / "app", HISTORY)
    base = make_checkout(tmp / "base", {BASE: HISTORY[BASE]})
    m = migrator(url, tmp)
    await m.apply(base)
    await fetch(url, "INSERT INTO \"Task\" (\"title\") VALUES ('one'), ('two')")
    plan = await m.plan(checkout, base)
    assert plan.pending == RELEASE and plan.inverse_sql is not None
    assert "BEGIN" in plan.inverse_steps[URGENT]  # Prisma's enum recreation carries its own transaction
    assert not plan.inverse_loses_data, plan.findings
    await m.apply(checkout)
    return m, checkout, plan.inverse_sql


async def test_a_multi_migration_revert_that_fails_on_data_changes_nothing(tmp_path: Path) -> None:
    """The enum recreation (newest, runs first) succeeds, then the unique index fails on duplicates the release
    wrote: before, the enum part was committed and `_prisma_migrations` still listed all three as applied."""
    async with temp_database() as url:
        m, checkout, inverse = await released(url, tmp_path)
        await fetch(url, "INSERT INTO \"Task\" (\"title\") VALUES ('one')")  # a duplicate title
        before = await schema_of(url)

        reasons = await m.inverse_preconditions(inverse)
        assert len(reasons) == 1 and 'duplicate' in reasons[0] and "Task_title_key" in reasons[0], reasons

        with pytest.raises(PermanentError) as info:
            await m.revert(checkout, RELEASE, inverse)
        assert "database is as it was before the revert" in str(info.value)
        assert "could not create unique index" in str(info.value)
        assert await schema_of(url) == before
        assert (await m.status(checkout)).applied == [BASE, *RELEASE]


async def test_an_enum_recreation_that_fails_on_a_row_using_the_new_value_changes_nothing(tmp_path: Path) -> None:
    async with temp_database() as url:
        m, checkout, inverse = await released(url, tmp_path)
        await fetch(url, "INSERT INTO \"Task\" (\"title\", \"mood\") VALUES ('three', 'urgent')")
        before = await schema_of(url)

        reasons = await m.inverse_preconditions(inverse)
        assert any("public.Task.mood" in r and "'urgent'" in r for r in reasons), reasons

        with pytest.raises(PermanentError, match="database is as it was before the revert"):
            await m.revert(checkout, RELEASE, inverse)
        assert await schema_of(url) == before


async def test_a_revert_whose_preconditions_hold_undoes_all_and_forgets_them(tmp_path: Path) -> None:
    async with temp_database() as url:
        m, checkout, inverse = await released(url, tmp_path)
        await fetch(url, "UPDATE \"Task\" SET \"note\" = 'kept until the revert'")
        assert await m.inverse_preconditions(inverse) == []
        done = await m.revert(checkout, RELEASE, inverse)
        assert done.applied == RELEASE
        enum = await fetch(url, "SELECT enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                                "WHERE t.typname = 'Mood' ORDER BY e.enumsortorder")
        assert [r["enumlabel"] for r in enum] == ["calm", "busy"]
        assert await fetch(url, "SELECT 1 FROM pg_indexes WHERE indexname = 'Task_title_key'") != []
        status = await m.status(checkout)
        assert (status.applied, status.pending) == ([BASE], RELEASE)
        assert (await m.apply(checkout)).applied == RELEASE  # and the release can be applied again
