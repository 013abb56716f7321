"""A long generated history into an empty database (nothing destructive) and a schema with its own env() names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_prisma_migrator import SCHEMA, make_checkout, migrator
from tests.pg import fetch, temp_database
from tests.sample_app import ensure_prisma_toolkit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _toolkit() -> None:
    ensure_prisma_toolkit()


def long_history(blocks: int) -> dict[str, str]:
    """4 migrations per block: objects created, seeded and changed, then deleted, dropped (IF EXISTS too), renamed."""
    out: dict[str, str] = {}
    for k in range(blocks):
        stamp = f"202501{k + 1:02d}0000"
        out[f"{stamp}00_create_{k}"] = (
            f'CREATE TYPE "E{k}" AS ENUM (\'a\', \'b\');\n'
            f'CREATE TABLE "T{k}" ("id" SERIAL NOT NULL, "e" "E{k}", "note" TEXT, CONSTRAINT "T{k}_pkey" '
            'PRIMARY KEY ("id"));\n'
            f'CREATE SEQUENCE "S{k}";\n'
            f'CREATE OR REPLACE FUNCTION "f{k}"() RETURNS int AS \'select 1\' LANGUAGE sql;\n')
        out[f"{stamp}01_seed_{k}"] = (
            f"INSERT INTO \"T{k}\" (\"note\") VALUES ('seed');\n"
            f"ALTER TYPE \"E{k}\" ADD VALUE 'c';\n"
            f'ALTER TABLE "T{k}" ALTER COLUMN "note" SET NOT NULL;\n')
        out[f"{stamp}02_cleanup_{k}"] = (
            f'DELETE FROM "T{k}";\n'
            f'ALTER TABLE "T{k}" ALTER COLUMN "id" DROP DEFAULT;\n'
            f'DROP SEQUENCE "T{k}_id_seq";\n'
            f'DROP SEQUENCE "S{k}";\n'
            f'DROP FUNCTION IF EXISTS "f{k}"();\n'
            f'DROP FUNCTION IF EXISTS "never_created_{k}"();\n')
        out[f"{stamp}03_reshape_{k}"] = (
            f'ALTER TABLE "T{k}" DROP COLUMN "e";\n'
            f'DROP TYPE "E{k}";\n'
            f'ALTER TABLE "T{k}" RENAME COLUMN "note" TO "body";\n')
    return out


async def test_a_long_history_into_an_empty_database_is_not_destructive(tmp_path: Path) -> None:
    history = long_history(4)
    checkout = make_checkout(tmp_path / "app", history)
    first = next(iter(history))
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        plan = await m.plan(checkout, None)
        assert plan.pending == list(history)
        assert not plan.destructive, [f.message for f in plan.findings if f.detail.get("category") == "destructive"]
        # the same statements on objects a database already holds are destructive
        started = make_checkout(tmp_path / "started", {first: history[first]})
        await m.apply(started)
        again = await m.plan(checkout, None)
        assert again.destructive
        destructive = {f.message.split(" — ")[0] for f in again.findings if f.detail.get("category") == "destructive"}
        assert "destructive: drops sequence S0" in destructive and "destructive: drops type E0" in destructive

    async with temp_database() as url:  # and the empty database takes the whole history
        assert (await migrator(url, tmp_path / "b").apply(checkout)).applied == list(history)


async def test_a_schema_naming_its_own_env_vars_migrates_with_only_the_database_url(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "app", {"20250101000000_init": 'CREATE TABLE "Task" ("id" INT);\n'})
    (checkout / "prisma" / "schema.prisma").write_text(SCHEMA.replace(
        'url      = env("DATABASE_URL")',
        'url       = env("POSTGRES_PRISMA_URL")\n  directUrl = env("POSTGRES_URL_NON_POOLING")'))
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        status = await m.status(checkout)
        assert await m.readiness(checkout, status) == []
        assert (await m.apply(checkout)).applied == ["20250101000000_init"]
        assert await fetch(url, "SELECT 1 FROM pg_tables WHERE tablename = 'Task'") != []
        (checkout / "prisma" / "schema.prisma").write_text(SCHEMA.replace('  engineType = "client"\n', ""))
        [finding] = await m.readiness(checkout, status)
        assert finding.detail["rule"] == "engine-type" and 'engineType = "client"' in finding.message
