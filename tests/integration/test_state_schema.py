"""The state database's versioned schema: a database made by main at a30e2d6 upgrades in place and keeps its rows."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from pydantic import SecretStr

from providers.migrators.backup import BackupRecord
from providers.models import ServiceVersion
from providers.state.journal import (
    JournalCorrupt,
    JournalState,
    JournalStep,
    MigrationDetail,
    MigrationEntry,
    ServiceEntry,
    ServiceUndo,
)
from providers.state.schema import LATEST, STEPS, SchemaTooNew
from providers.state.store import StateStore
from tests.pg import fetch, temp_database

# The schema of main at a30e2d6, verbatim: providers/state/ledger.py SCHEMA, then providers/state/backups.py SCHEMA.
MAIN_A30E2D6 = """
CREATE TABLE IF NOT EXISTS aevon_releases (
    release_id   text PRIMARY KEY,
    env          text NOT NULL,
    ref          text NOT NULL,
    sha          text NOT NULL,
    status       text NOT NULL,
    flow_run_id  text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    approver     text,
    approval_reason text,
    report       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS aevon_releases_env_started ON aevon_releases (env, started_at DESC);
CREATE TABLE IF NOT EXISTS aevon_journal (
    id           bigserial PRIMARY KEY,
    release_id   text NOT NULL REFERENCES aevon_releases(release_id),
    step         text NOT NULL,
    target       text NOT NULL,
    state        text NOT NULL,
    undo         jsonb NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (release_id, step, target)
);
""", """
CREATE TABLE IF NOT EXISTS aevon_backups (
    backup_id    text PRIMARY KEY,
    env          text NOT NULL,
    release_id   text,
    record       jsonb NOT NULL,
    verified     boolean NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    restored_at  timestamptz
);
CREATE INDEX IF NOT EXISTS aevon_backups_env_created ON aevon_backups (env, created_at DESC);
"""
SHA = "a" * 40
INIT = "20240101000000_init"
PREVIOUS = ServiceVersion(service="api", version="b" * 40, vendor_ref="slot-a", url="http://127.0.0.1:1")
BACKUP = BackupRecord(backup_id="dev-20240101T000000Z-abc123", env="dev", release_id="dev-r1", database="db",
                      path="/tmp/x.dump", tables={"public.Task": 2}, verified=True)


# What main added after a30e2d6, before versioning: signed approvals (702fc02), the environment lock (e54a491).
MAIN_D0CC250 = (*MAIN_A30E2D6, "ALTER TABLE aevon_releases ADD COLUMN IF NOT EXISTS approval_key text;", """
CREATE TABLE IF NOT EXISTS aevon_env_locks (
    env          text PRIMARY KEY,
    token        bigint NOT NULL,
    flow_run_id  text,
    holder       text NOT NULL DEFAULT '',
    host         text NOT NULL DEFAULT '',
    pid          integer,
    pid_start    text NOT NULL DEFAULT '',
    acquired_at  timestamptz,
    renewed_at   timestamptz,
    expires_at   timestamptz
);
""")


async def seed_like_main(url: str, schema: tuple[str, ...] = MAIN_A30E2D6) -> None:
    """Tables and rows exactly as main's Ledger and BackupCatalog wrote them (their SQL and their JSON shapes)."""
    conn = await asyncpg.connect(url)
    try:
        for statements in schema:
            await conn.execute(statements)
        await conn.execute("INSERT INTO aevon_releases (release_id, env, ref, sha, status, flow_run_id) "
                           "VALUES ($1, $2, $3, $4, $5, $6)", "dev-r1", "dev", "v2", SHA, "rolled_back", "run-1")
        journal = "INSERT INTO aevon_journal (release_id, step, target, state, undo) VALUES ($1, $2, $3, $4, $5::jsonb)"
        await conn.execute(journal, "dev-r1", "service", "api", "undone", json.dumps(
            {"previous": PREVIOUS.model_dump(mode="json"), "layer": 1, "provider": "local"}))
        await conn.execute(journal, "dev-r1", "migration", "database", "done", json.dumps(
            {"pending": [INIT], "inverse_sql": 'DROP TABLE "Task";', "inverse_steps": {INIT: 'DROP TABLE "Task";'},
             "inverse_loses_data": False, "checkout": "/tmp/co", "backup_id": BACKUP.backup_id}))
        await conn.execute("UPDATE aevon_journal SET detail = detail || $1::jsonb WHERE step = 'migration'",
                           json.dumps({"applied": [INIT], "inverse_baseline": {"public.Task": 0}, "kept": [INIT],
                                       "why": "rollback.revert_migrations is off"}))
        await conn.execute("INSERT INTO aevon_backups (backup_id, env, release_id, record, verified, created_at) "
                           "VALUES ($1, $2, $3, $4::jsonb, $5, $6)", BACKUP.backup_id, BACKUP.env, BACKUP.release_id,
                           BACKUP.model_dump_json(), BACKUP.verified, BACKUP.created_at)
    finally:
        await conn.close()


async def versions(url: str) -> list[tuple[int, object]]:
    return [(r["version"], r["applied_at"]) for r in
            await fetch(url, "SELECT version, applied_at FROM aevon_schema_version ORDER BY version")]


@pytest.mark.parametrize("schema", [MAIN_A30E2D6, MAIN_D0CC250], ids=["main-a30e2d6", "main-d0cc250"])
async def test_database_of_main_upgrades_keeps_its_rows_and_a_second_open_changes_nothing(
    schema: tuple[str, ...]
) -> None:
    async with temp_database() as url:
        await seed_like_main(url, schema)
        async with StateStore(SecretStr(url)) as store:
            entries = await store.ledger.entries("dev-r1")
            release = await store.ledger.get("dev-r1")
            backups = await store.backups.latest("dev")
            kept = await store.backups.kept_migrations("dev")
        after_first = await versions(url)
        assert [v for v, _ in after_first] == [s.version for s in STEPS] == list(range(1, LATEST + 1))
        # the rows main wrote, read back typed
        assert release is not None and (release.status, release.sha) == ("rolled_back", SHA)
        service, migration = entries
        assert isinstance(service, ServiceEntry) and service.state == JournalState.UNDONE
        assert service.undo == ServiceUndo(previous=PREVIOUS, layer=1, provider="local")
        assert isinstance(migration, MigrationEntry) and migration.step == JournalStep.MIGRATION
        assert migration.undo.backup_id == BACKUP.backup_id and migration.undo.inverse_steps == {
            INIT: 'DROP TABLE "Task";'}
        assert migration.detail == MigrationDetail(applied=[INIT], inverse_baseline={"public.Task": 0}, kept=[INIT],
                                                   why="rollback.revert_migrations is off")
        assert migration.updated_at is None and migration.recorded_at is not None  # step 2's column, NULL before
        assert [b.model_dump() for b in backups] == [BACKUP.model_dump()]
        assert kept == {INIT: "dev-r1"}
        assert release.approval_key is None  # step 3's column
        assert await fetch(url, "SELECT env FROM aevon_env_locks") == []  # step 4's table

        async with StateStore(SecretStr(url)) as store:  # already at the latest version: nothing runs again
            await store.ledger.mark(service.id, JournalState.UNDONE)
        assert await versions(url) == after_first
        [row] = await fetch(url, "SELECT updated_at FROM aevon_journal WHERE id = $1", service.id)
        assert row["updated_at"] is not None


async def test_empty_database_is_created_at_the_latest_version_once_by_concurrent_runs() -> None:
    async with temp_database() as url:
        stores = [StateStore(SecretStr(url)) for _ in range(3)]
        await asyncio.gather(*(s.open() for s in stores))
        await asyncio.gather(*(s.close() for s in stores))
        assert [v for v, _ in await versions(url)] == list(range(1, LATEST + 1))


async def test_database_of_a_newer_aevon_deploy_is_refused_unchanged() -> None:
    async with temp_database() as url:
        async with StateStore(SecretStr(url)):
            pass
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("INSERT INTO aevon_schema_version (version, description) VALUES ($1, 'from the future')",
                               LATEST + 1)
        finally:
            await conn.close()
        with pytest.raises(SchemaTooNew, match=rf"schema version {LATEST + 1}, this aevon-deploy knows versions up "
                                               rf"to {LATEST}"):
            await StateStore(SecretStr(url)).open()
        assert [v for v, _ in await versions(url)] == [*range(1, LATEST + 1), LATEST + 1]


async def test_journal_row_that_does_not_validate_names_release_and_entry() -> None:
    async with temp_database() as url:
        await seed_like_main(url)
        conn = await asyncpg.connect(url)
        try:
            entry_id = await conn.fetchval("UPDATE aevon_journal SET undo = '{\"layer\": \"top\"}'::jsonb "
                                           "WHERE step = 'service' RETURNING id")
        finally:
            await conn.close()
        async with StateStore(SecretStr(url)) as store:
            with pytest.raises(JournalCorrupt, match=rf"journal entry {entry_id} of release dev-r1 \(service api\) "
                                                     r"does not match its record format: .*undo\.previous"):
                await store.ledger.entries("dev-r1")
