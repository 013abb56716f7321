"""The Prisma migrator against a real PostgreSQL and the real Prisma CLI of the toolkit."""

from __future__ import annotations

import logging
import secrets
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from deployments.spec import DatabaseSpec
from providers.errors import PermanentError, TransientError
from providers.migrators.base import Migrator, MigratorContext
from providers.migrators.prisma.cli import _parse_lists
from providers.migrators.prisma.migrator import PrismaMigrator, make_migrator
from tests.pg import fetch, temp_database
from tests.sample_app import ensure_prisma_toolkit

pytestmark = pytest.mark.slow

INIT = "20250101000000_init"
PRIORITY = "20250102000000_task_priority"
BROKEN = "20250103000000_broken"
SCHEMA = """generator client {
  provider   = "prisma-client-js"
  engineType = "client"
}

datasource db {
  provider = "postgresql"
  url      = env("DATABASE_URL")
}

model Task {
  id       Int    @id @default(autoincrement())
  title    String
  priority Int    @default(0)
}
"""
MIGRATIONS = {
    INIT: 'CREATE TABLE "Task" ("id" SERIAL NOT NULL, "title" TEXT NOT NULL,\n'
    '  CONSTRAINT "Task_pkey" PRIMARY KEY ("id"));\n'
    "DO $$ BEGIN INSERT INTO \"Task\" (\"title\") VALUES ('seeded; with a semicolon'); END $$;\n",
    PRIORITY: 'ALTER TABLE "Task" ADD COLUMN "priority" INTEGER NOT NULL DEFAULT 0;\n',
}
# Fails half way; PostgreSQL's error quotes the literal, so a password in it must be scrubbed from our errors.
BROKEN_SQL = 'CREATE TABLE "Half" ("id" INT);\nSELECT CAST(\'{literal}\' AS INTEGER);\n'


@pytest.fixture(scope="module", autouse=True)
def _toolkit() -> None:
    ensure_prisma_toolkit()


def make_checkout(root: Path, migrations: dict[str, str]) -> Path:
    """An app checkout with prisma/schema.prisma and the given migrations (name -> SQL)."""
    (root / "prisma" / "migrations").mkdir(parents=True)
    (root / "prisma" / "schema.prisma").write_text(SCHEMA)
    (root / "prisma" / "migrations" / "migration_lock.toml").write_text('provider = "postgresql"\n')
    for name, sql in migrations.items():
        (root / "prisma" / "migrations" / name).mkdir()
        (root / "prisma" / "migrations" / name / "migration.sql").write_text(sql)
    return root


def migrator(url: str, tmp: Path) -> PrismaMigrator:
    ctx = MigratorContext(env="test", spec=DatabaseSpec(), database_url=SecretStr(url), state_dir=tmp / "state")
    return make_migrator(ctx)


async def columns(url: str, table: str) -> list[str]:
    rows = await fetch(url, "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table)
    return sorted(r["column_name"] for r in rows)


async def test_status_empty_apply_and_apply_again(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "app", MIGRATIONS)
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        assert isinstance(m, Migrator)
        status = await m.status(checkout)
        assert (status.applied, status.pending, status.failed, status.drift) == ([], [INIT, PRIORITY], [], False)
        plan = await m.plan(checkout, None)
        assert plan.pending == [INIT, PRIORITY]
        # INIT seeds its table from a DO block, which no down script undoes: no inverse, a code-only rollback
        assert plan.inverse_sql is None and plan.inverse_steps == {}
        assert [f.location for f in plan.findings if "DO block" in f.message] == [f"{INIT}/migration.sql:3"] * 2
        assert any(f.message.startswith("inverse: no inverse") for f in plan.findings)

        first = await m.apply(checkout)
        assert first.applied == [INIT, PRIORITY]
        assert first.duration_s > 0
        assert await columns(url, "Task") == ["id", "priority", "title"]
        # the DO $$ block with a ';' inside ran whole (recipe point 5)
        assert [r["title"] for r in await fetch(url, 'SELECT title FROM "Task"')] == ["seeded; with a semicolon"]

        again = await m.apply(checkout)
        assert again.applied == []
        status = await m.status(checkout)
        assert (status.applied, status.pending, status.failed, status.drift) == ([INIT, PRIORITY], [], [], False)


async def test_apply_only_reports_what_it_applied(tmp_path: Path) -> None:
    old = make_checkout(tmp_path / "old", {INIT: MIGRATIONS[INIT]})
    new = make_checkout(tmp_path / "new", MIGRATIONS)
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        assert (await m.apply(old)).applied == [INIT]
        assert (await m.status(new)).pending == [PRIORITY]
        assert (await m.apply(new)).applied == [PRIORITY]
        behind = await m.status(old)  # the previous release's checkout after a code-only rollback: not drift
        assert (behind.applied, behind.pending, behind.drift) == ([INIT], [], False)
        assert PRIORITY in behind.message


async def test_broken_migration_is_permanent_and_hides_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password = "pw-" + secrets.token_hex(8)
    checkout = make_checkout(tmp_path / "app", {**MIGRATIONS, BROKEN: BROKEN_SQL.format(literal=password)})
    caplog.set_level(logging.DEBUG)
    async with temp_database(password=password) as url:
        assert password in url
        m = migrator(url, tmp_path)
        with pytest.raises(PermanentError) as info:
            await m.apply(checkout)
        text = str(info.value)
        assert "invalid input syntax for type integer" in text and BROKEN in text
        assert password not in text and url not in text
        assert password not in repr(info.value.args)
        assert password not in caplog.text
        # the script ran as one transaction: nothing of the broken migration is left half applied
        assert await fetch(url, "SELECT 1 FROM pg_tables WHERE tablename = 'Half'") == []
        status = await m.status(checkout)
        assert status.applied == [INIT, PRIORITY]
        assert status.failed == [BROKEN]
        assert status.pending == []
        assert password not in status.message


async def test_revert_makes_the_migration_pending_and_reapply_works(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "app", MIGRATIONS)
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await m.apply(checkout)
        with pytest.raises(PermanentError, match="no inverse"):
            await m.revert(checkout, [PRIORITY], None)
        with pytest.raises(PermanentError, match="as it was before the revert"):  # a failing inverse changes nothing
            await m.revert(checkout, [PRIORITY], 'ALTER TABLE "Task" DROP COLUMN "nope";')
        assert (await m.status(checkout)).applied == [INIT, PRIORITY]

        inverse = 'ALTER TABLE "Task" DROP COLUMN "priority";\n-- down script ends with a comment'
        reverted = await m.revert(checkout, [PRIORITY], inverse)
        assert reverted.applied == [PRIORITY]
        assert await columns(url, "Task") == ["id", "title"]
        status = await m.status(checkout)
        assert (status.applied, status.pending) == ([INIT], [PRIORITY])

        assert (await m.revert(checkout, [PRIORITY], inverse)).applied == []  # idempotent
        assert (await m.apply(checkout)).applied == [PRIORITY]
        assert await columns(url, "Task") == ["id", "priority", "title"]


async def test_modified_migration_is_drift(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "app", MIGRATIONS)
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await m.apply(checkout)
        (checkout / "prisma" / "migrations" / PRIORITY / "migration.sql").write_text("-- edited\n")
        status = await m.status(checkout)
        assert status.drift is True
        assert PRIORITY in status.message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_database_is_transient(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "app", MIGRATIONS)
    password = "pw-" + secrets.token_hex(8)
    m = migrator(f"postgresql://postgres:{password}@127.0.0.1:{_closed_port()}/nowhere", tmp_path)
    for call in (m.apply(checkout), m.status(checkout)):  # refused by asyncpg reading _prisma_migrations
        with pytest.raises(TransientError) as info:
            await call
        assert password not in str(info.value)

    async def no_rows() -> list[object]:
        return []

    m.table.rows = no_rows  # type: ignore[assignment,method-assign]  # so that the Prisma CLI meets the closed port
    with pytest.raises(TransientError, match="Can't reach database server") as info:
        await m.apply(checkout)
    assert password not in str(info.value)


def test_scrub_removes_the_url_and_its_password(tmp_path: Path) -> None:
    m = migrator("postgresql://app:p%40ss-w0rd@db.internal:5432/app", tmp_path)
    text = m.scrub(
        "url postgresql://app:p%40ss-w0rd@db.internal:5432/app, raw p%40ss-w0rd, decoded p@ss-w0rd, "
        "other redis://u:hunter22@cache:6379"
    )
    assert "ss-w0rd" not in text and "hunter22" not in text
    assert "db.internal" not in text.split(",")[0]  # the whole URL went
    assert "redis://u:***@cache:6379" in text


def test_status_text_parsing() -> None:
    out = (
        "3 migrations found in prisma/migrations\nFollowing migrations have not yet been applied:\n"
        f"{INIT}\n{PRIORITY}\n\nTo apply migrations in production run prisma migrate deploy.\n"
        f"Following migration have failed:\n{BROKEN}\n\nDuring development if the failed ..."
    )
    assert _parse_lists(out) == {"pending": [INIT, PRIORITY], "failed": [BROKEN]}
