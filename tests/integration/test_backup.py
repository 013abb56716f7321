"""Verified backups and restores with the real pg_dump, pg_restore and psql against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from providers.errors import PermanentError, TransientError
from providers.migrators.backup import PgBackup
from providers.state.backups import new_backup_id
from providers.state.store import StateStore
from tests.conftest import free_port
from tests.pg import ADMIN_URL, fetch, temp_database

SEED = """
CREATE TABLE "Item" ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL);
INSERT INTO "Item" ("name") SELECT 'item ' || g FROM generate_series(1, 500) g;
CREATE TABLE "Empty" ("id" INT);
CREATE SCHEMA "extra";
CREATE TABLE "extra"."Other" ("v" INT);
INSERT INTO "extra"."Other" VALUES (1), (2);
"""
EXPECTED = {"extra.Other": 2, "public.Empty": 0, "public.Item": 500}


def wrapper(tmp: Path, name: str, body: str) -> str:
    """An executable Python script standing in for a tool: it may log, alter arguments, or damage the result."""
    path = tmp / name
    path.write_text(f"#!{sys.executable}\nimport os, subprocess, sys\nargs = sys.argv[1:]\n{body}\n")
    path.chmod(0o755)
    return str(path)


async def seed(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SEED)
    finally:
        await conn.close()


async def scratch_databases() -> list[str]:
    return [r["datname"] for r in await fetch(ADMIN_URL, "SELECT datname FROM pg_database "
                                                         "WHERE datname LIKE 'aevon_verify_%'")]


async def test_backup_is_verified_and_the_password_never_reaches_a_command_line(tmp_path: Path) -> None:
    password = "pw-" + secrets.token_hex(8)
    log = tmp_path / "argv.log"
    logged = wrapper(tmp_path, "pg_dump", f"open({str(log)!r}, 'a').write(repr(args) + ' ' + "
                                          "repr(os.environ.get('PGPASSWORD')) + '\\n')\n"
                                          "sys.exit(subprocess.call(['pg_dump', *args]))")
    before = await scratch_databases()
    async with temp_database(password=password) as url:
        await seed(url)
        backup = PgBackup(SecretStr(url), pg_dump=logged)
        record = await backup.take("t-1", tmp_path / "backups", env="t", release_id="r-1")
        assert record.verified, record.problems
        assert record.tables == EXPECTED and record.rows == 502
        assert record.size_bytes > 0 and len(record.sha256) == 64
        assert record.database.endswith("/" + url.rsplit("/")[-1])
        dump = Path(record.path)
        assert dump.parent == tmp_path / "backups" and dump.stat().st_mode & 0o777 == 0o600
        [line] = log.read_text().splitlines()
        argv, seen_password = line.rsplit(" ", 1)
        assert password not in argv and "postgresql://" not in argv and "--format=custom" in argv
        assert seen_password == repr(password)  # it travelled as PGPASSWORD
        assert password not in record.model_dump_json()
    assert await scratch_databases() == before  # the scratch database was dropped


async def test_counts_come_from_the_dumps_snapshot_while_the_application_writes(tmp_path: Path) -> None:
    async with temp_database() as url:
        await seed(url)
        stop = asyncio.Event()

        async def writer() -> int:
            import asyncpg

            conn = await asyncpg.connect(url)
            n = 0
            try:
                while not stop.is_set():
                    await conn.execute("INSERT INTO \"Item\" (\"name\") VALUES ('written during the backup')")
                    n += 1
                    await asyncio.sleep(0)
            finally:
                await conn.close()
            return n

        task = asyncio.create_task(writer())
        try:
            record = await PgBackup(SecretStr(url)).take("t-2", tmp_path, env="t", release_id=None)
        finally:
            stop.set()
        written = await task
        assert written > 0
        assert record.verified, record.problems  # dump and counts agree although rows kept arriving
        assert 500 <= record.tables["public.Item"] < 500 + written


@pytest.mark.parametrize(("body", "problem"), [
    # a dump cut short (disk full, killed): pg_restore cannot read it
    ("rc = subprocess.call(['pg_dump', *args]); f = args[args.index('--file') + 1]\n"
     "data = open(f, 'rb').read(); open(f, 'wb').write(data[: len(data) // 2]); sys.exit(rc)", "pg_restore failed"),
    # a dump that silently lacks a table's rows
    ("sys.exit(subprocess.call(['pg_dump', '--exclude-table-data=public.\"Item\"', *args]))",
     "table public.Item: 0 rows, expected 500"),
    # a dump that lacks a table
    ("sys.exit(subprocess.call(['pg_dump', '--exclude-table=extra.\"Other\"', *args]))",
     "table extra.Other is missing"),
])
async def test_a_backup_that_does_not_restore_identically_is_not_verified(tmp_path: Path, body: str,
                                                                          problem: str) -> None:
    async with temp_database() as url:
        await seed(url)
        record = await PgBackup(SecretStr(url), pg_dump=wrapper(tmp_path, "pg_dump", body)).take(
            "t-3", tmp_path, env="t", release_id=None)
        assert not record.verified
        assert any(problem in p for p in record.problems), record.problems


async def test_restore_replaces_the_schemas_and_is_all_or_nothing(tmp_path: Path) -> None:
    async with temp_database(password="pw-" + secrets.token_hex(6)) as url:
        await seed(url)
        backup = PgBackup(SecretStr(url))
        record = await backup.take("t-4", tmp_path, env="t", release_id=None)
        assert record.verified
        await fetch(url, 'DROP TABLE "Empty"')
        await fetch(url, 'CREATE TABLE "Later" ("id" INT)')
        await fetch(url, 'DELETE FROM "Item" WHERE "id" > 10')

        failing = PgBackup(SecretStr(url), psql=wrapper(tmp_path, "psql", (
            "script = sys.stdin.buffer.read() + b'\\nSELECT 1/0;\\n'\n"
            "sys.exit(subprocess.run(['psql', *args], input=script).returncode)")))
        with pytest.raises(PermanentError, match="nothing was changed") as info:
            await failing.restore(record)
        assert "division by zero" in str(info.value)
        assert len(await fetch(url, 'SELECT 1 FROM "Item"')) == 10 and await fetch(url, 'SELECT * FROM "Later"') == []

        assert await backup.restore(record) == []
        assert len(await fetch(url, 'SELECT 1 FROM "Item"')) == 500
        names = {r["tablename"] for r in await fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname "
                                                          "IN ('public', 'extra')")}
        assert names == {"Item", "Empty", "Other"}  # "Later", created after the backup, is gone
        await fetch(url, 'INSERT INTO "Item" ("name") VALUES (\'after restore\')')  # the sequence came back too

        Path(record.path).write_bytes(Path(record.path).read_bytes()[:-1] + b"x")
        with pytest.raises(PermanentError, match="changed since it was taken"):
            await backup.restore(record)


async def test_unreachable_database_is_transient_and_scrubbed(tmp_path: Path) -> None:
    password = "pw-" + secrets.token_hex(8)
    backup = PgBackup(SecretStr(f"postgresql://app:{password}@127.0.0.1:{free_port()}/app"))
    with pytest.raises(TransientError) as info:
        await backup.take("t-5", tmp_path, env="t", release_id=None)
    assert password not in str(info.value)
    with pytest.raises(PermanentError, match=r"malformed|not a postgresql"):
        PgBackup(SecretStr("mysql://x@y/z"))


async def test_catalog_records_lists_and_marks_restored(ledger_url: str, tmp_path: Path) -> None:
    async with temp_database() as url, StateStore(SecretStr(ledger_url)) as state:
        await seed(url)
        catalog = state.backups
        backup = PgBackup(SecretStr(url))
        ids = [new_backup_id("t") for _ in range(2)]
        for backup_id in ids:
            await catalog.record(await backup.take(backup_id, tmp_path, env="t", release_id="r"))
        assert [r.backup_id for r in await catalog.latest("t")] == ids[::-1]
        assert (await catalog.latest("other")) == []
        got = await catalog.get("t", ids[0])
        assert got is not None and got.verified and got.tables == EXPECTED and got.restored_at is None
        await catalog.mark_restored(ids[0])
        assert (await catalog.get("t", ids[0])).restored_at is not None  # type: ignore[union-attr]
        assert await catalog.get("other", ids[0]) is None
        assert await catalog.kept_migrations("t") == {}  # no rollback journal yet: nothing kept
