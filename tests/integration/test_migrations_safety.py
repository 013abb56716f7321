"""Safe migrations through the real deploy flow: real PostgreSQL, Prisma, local services and a Prefect server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr

from flows.report import DeployOutcome
from flows.rollback import rollback_flow
from providers.migrators.backup import BackupRecord
from providers.state.journal import MigrationEntry
from providers.state.store import StateStore
from providers.targets.local.target import stop_all
from tests.integration.migration_support import (
    AUDIT,
    DROP,
    INIT,
    PRIORITY,
    Env,
    columns,
    derive_repo,
    make_env,
    step,
    tables,
)
from tests.pg import fetch, temp_database
from tests.sample_app import build_sample_repo, ensure_prisma_toolkit

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


@pytest.fixture(scope="session")
def sample_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    return build_sample_repo(tmp_path_factory.mktemp("sample-migrations") / "repo")


@asynccontextmanager
async def _env(name: str, repo: Path, tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch,
               password: str | None = None) -> AsyncIterator[Env]:
    async with temp_database(password=password) as db_url:
        monkeypatch.setenv("DATABASE_URL", db_url)
        try:
            yield make_env(name, repo, tmp_path / "specs", db_url, state_dir)
        finally:
            for svc in ("web", "api"):
                await stop_all(state_dir / "targets" / name / svc, svc)


@pytest.fixture
async def dev(sample_repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    async with _env("dev", sample_repo, tmp_path, state_dir, monkeypatch) as env:
        yield env


@pytest.fixture
async def prod(sample_repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path,
               monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    async with _env("prod", sample_repo, tmp_path, state_dir, monkeypatch) as env:
        env.spec["database"]["backup"] = True
        env.write()
        yield env


async def test_additive_column_reverted_on_failed_validation_then_reapplied(dev: Env) -> None:
    assert (await dev.deploy("v1")).outcome == DeployOutcome.SUCCEEDED

    plan = dev.cli("plan", "dev", "--ref", "v2")  # `aevon-deploy plan` shows each statement's finding
    assert plan.returncode == 0, plan.stderr
    assert "MEDIUM: locking: creates an index on existing table Task" in plan.stdout
    assert f"({PRIORITY}/migration.sql:5)" in plan.stdout and f"({PRIORITY}/migration.sql:2)" in plan.stdout
    assert "inverse prepared" in plan.stdout

    dev.write(failing=True)
    bad = await dev.deploy("v2")
    assert bad.outcome == DeployOutcome.ROLLED_BACK, bad.error
    assert bad.migrations_applied == [PRIORITY]
    assert bad.migration_plan is not None and not bad.migration_plan.inverse_loses_data
    assert 'DROP COLUMN "priority"' in str(bad.migration_plan.inverse_sql)
    assert bad.rollback is not None and bad.rollback.ok, bad.rollback
    assert bad.rollback.migrations_reverted == [PRIORITY]
    assert "priority" not in await columns(dev.db_url, "Task")
    status = await dev.status("v2")
    assert (status.applied, status.pending, status.failed) == ([INIT], [PRIORITY], [])

    dev.write()
    good = await dev.deploy("v2")
    assert good.outcome == DeployOutcome.SUCCEEDED, good.error
    assert good.migrations_applied == [PRIORITY]
    assert "priority" in await columns(dev.db_url, "Task")

    # Rows the release wrote where the inverse drops them: by default dropped, and the report says so.
    await insert_urgent_task(dev.db_url)
    assert good.release_id is not None
    rb = await rollback_flow("dev", good.release_id, "operator rollback", str(dev.spec_dir))
    assert rb.ok and rb.migrations_reverted == [PRIORITY]
    assert rb.notes == ["the inverse dropped what the failed release wrote there: public.Task.priority (1 row) "
                        "(set database.settings.keep_release_data to keep such data, reverting the code only)"]
    assert (await dev.status("v2")).pending == [PRIORITY]

    # The demo's broken release carries its own migration; two pending: each undone by its own step.
    broken = await dev.deploy("v3-broken")
    assert broken.outcome == DeployOutcome.ROLLED_BACK
    assert broken.migrations_applied == [PRIORITY, AUDIT]
    assert broken.migration_plan is not None and list(broken.migration_plan.inverse_steps) == [PRIORITY, AUDIT]
    assert broken.rollback is not None and broken.rollback.migrations_reverted == [PRIORITY, AUDIT]
    assert "AuditEvent" not in await tables(dev.db_url) and "priority" not in await columns(dev.db_url, "Task")
    assert (await dev.status("v3-broken")).pending == [PRIORITY, AUDIT]


async def insert_urgent_task(url: str) -> None:
    rows = await fetch(url, "INSERT INTO \"Task\" (\"title\", \"userId\", \"priority\") "
                            "SELECT 'urgent', id, 'high' FROM \"User\" LIMIT 1 RETURNING id")
    assert len(rows) == 1


async def test_schema_stays_under_code_that_stays_and_kept_release_data_keeps_its_migration(dev: Env) -> None:
    dev.write(failing=True)
    first = await dev.deploy("v1")  # a first deploy: its services have nothing to go back to and keep running
    assert first.outcome == DeployOutcome.ROLLBACK_FAILED
    assert first.rollback is not None and first.rollback.migrations_reverted == []
    assert any(n.startswith(f"migrations {INIT} stay applied because web, api could not be rolled back")
               for n in first.rollback.notes), first.rollback.notes
    assert "User" in await tables(dev.db_url)  # the code still running keeps the schema it needs

    dev.write(database_settings={"keep_release_data": True})
    assert (await dev.deploy("v1")).outcome == DeployOutcome.SUCCEEDED
    v2 = await dev.deploy("v2")
    assert v2.outcome == DeployOutcome.SUCCEEDED
    await insert_urgent_task(dev.db_url)

    assert v2.release_id is not None
    rb = await rollback_flow("dev", v2.release_id, "operator rollback", str(dev.spec_dir))
    assert rb.ok and rb.migrations_reverted == []
    note = " ".join(rb.notes)
    assert "code reverted only" in note and "public.Task.priority (1 row) (keep_release_data)" in note
    assert "No backup was taken" in note
    assert "priority" in await columns(dev.db_url, "Task")
    assert (await dev.status("v2")).applied == [INIT, PRIORITY]

    # The previous release again: its checkout lacks PRIORITY, which the rollback kept: allowed, and said so.
    again = await dev.deploy("v1")
    assert again.outcome == DeployOutcome.SUCCEEDED, again.error
    gate = next(g for g in again.gates if g.kind == "migration_readiness")
    assert [f.detail.get("rule") for f in gate.findings] == ["kept-by-rollback"]
    assert v2.release_id in gate.findings[0].message


async def backups(ledger_url: str) -> list[BackupRecord]:
    """The latest backups of prod, newest first."""
    async with StateStore(SecretStr(ledger_url)) as state:
        return await state.backups.latest("prod")


async def backup_of(ledger_url: str, backup_id: str) -> BackupRecord | None:
    async with StateStore(SecretStr(ledger_url)) as state:
        return await state.backups.get("prod", backup_id)


async def test_destructive_migration_refused_in_prod_allowed_with_the_flag_and_restorable(
    prod: Env, ledger_url: str
) -> None:
    v2 = await prod.deploy("v2")
    assert v2.outcome == DeployOutcome.SUCCEEDED, v2.error
    assert [s.name for s in v2.steps if s.name in ("migration plan", "backup", "migrate")] == [
        "migration plan", "backup", "migrate"]
    [first] = await backups(ledger_url)
    assert first.verified and first.release_id == v2.release_id and first.tables == {}  # the database was empty
    async with StateStore(SecretStr(ledger_url)) as state:
        [entry] = [e for e in await state.ledger.entries(str(v2.release_id)) if e.step == "migration"]
    assert isinstance(entry, MigrationEntry) and entry.undo.backup_id == first.backup_id

    refused = await prod.deploy("v4-destructive")
    assert refused.outcome == DeployOutcome.REFUSED and refused.exit_code == 3
    assert "destructive" in str(refused.error) and "drops column Session.createdAt" in str(refused.error)
    assert step(refused, "backup") is None and step(refused, "migrate") is None
    assert refused.services == []
    assert "createdAt" in await columns(prod.db_url, "Session")
    assert refused.migration_plan is not None
    [finding] = [f for f in refused.migration_plan.findings if f.detail.get("category") == "destructive"]
    assert finding.location == f"{DROP}/migration.sql:3"

    allowed = await prod.deploy("v4-destructive", allow_destructive=True)
    assert allowed.outcome == DeployOutcome.SUCCEEDED, allowed.error
    assert allowed.migration_plan is not None and allowed.migration_plan.inverse_loses_data
    assert "createdAt" not in await columns(prod.db_url, "Session")
    before_drop = (await backups(ledger_url))[0]
    assert before_drop.verified and before_drop.release_id == allowed.release_id
    assert step(allowed, "backup").detail.startswith(f"{before_drop.backup_id} verified: ")
    assert before_drop.migrations == [INIT, PRIORITY] and before_drop.tables["public.User"] == 1

    listed = prod.cli("db", "backups", "prod")
    assert listed.returncode == 0 and before_drop.backup_id in listed.stdout and first.backup_id in listed.stdout

    unconfirmed = prod.cli("db", "restore", "prod", before_drop.backup_id)  # stdin is not a terminal
    assert unconfirmed.returncode == 3 and "not confirmed" in unconfirmed.stderr
    assert "createdAt" not in await columns(prod.db_url, "Session")

    restored = prod.cli("db", "restore", "prod", before_drop.backup_id, "--yes")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "This REPLACES every table" in restored.stdout
    assert f"restored {before_drop.backup_id} into prod" in restored.stdout
    assert "the same tables and row counts as the backup record" in restored.stdout
    assert "createdAt" in await columns(prod.db_url, "Session")
    assert (await prod.status("v4-destructive")).pending == [DROP]
    restored_record = await backup_of(ledger_url, before_drop.backup_id)
    assert restored_record is not None and restored_record.restored_at is not None


async def test_backup_that_does_not_verify_blocks_the_migration(prod: Env, ledger_url: str, tmp_path: Path) -> None:
    assert (await prod.deploy("v1")).outcome == DeployOutcome.SUCCEEDED
    wrapper = tmp_path / "pg_dump_without_users"  # a dump that silently lacks a table's rows
    wrapper.write_text("#!/bin/sh\nexec pg_dump --exclude-table-data='public.\"User\"' \"$@\"\n")
    wrapper.chmod(0o755)
    prod.write(backup=True, database_settings={"pg_dump": str(wrapper)})
    blocked = await prod.deploy("v2")
    assert blocked.outcome == DeployOutcome.REFUSED
    assert "did not verify, nothing was migrated" in str(blocked.error)
    assert "table public.User: 0 rows, expected 1" in str(blocked.error)
    backup_step = step(blocked, "backup")
    assert backup_step.outcome != "ok" and " NOT verified: " in backup_step.detail
    assert step(blocked, "migrate") is None
    assert blocked.services == [] and "priority" not in await columns(prod.db_url, "Task")
    latest = (await backups(ledger_url))[0]
    assert not latest.verified and latest.release_id == blocked.release_id


async def test_migration_failing_half_way_stops_before_services(
    sample_repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two pending migrations, the second fails on the real data: the deploy stops before any service changed,
    with PostgreSQL's error (the password scrubbed), and the rollback undoes the first one only."""
    password = "pw-" + secrets.token_hex(8)
    note, broken = "20250501000000_note", "20250501000001_title_numbers"
    repo = derive_repo(sample_repo, tmp_path / "half-repo", {
        # fails on an empty (shadow) database as well: refused at the plan, before anything runs
        "v2-invalid": ("v2", {note: "SELECT CAST('not a number' AS INTEGER);\n"}),
        # passes on the empty shadow database, fails on rows (the error quotes a title, which holds the password)
        "v2-half": ("v2", {note: 'CREATE TABLE "Note" ("id" SERIAL PRIMARY KEY, "body" TEXT);\n',
                           broken: 'UPDATE "Task" SET "title" = CAST("title" AS INTEGER)::text;\n'}),
    })
    async with _env("dev", repo, tmp_path, state_dir, monkeypatch, password=password) as env:
        assert (await env.deploy("v2")).outcome == DeployOutcome.SUCCEEDED
        await fetch(env.db_url, "INSERT INTO \"Task\" (\"title\", \"userId\") SELECT $1, id FROM \"User\"",
                    f"secret {password}")

        invalid = await env.deploy("v2-invalid")
        assert invalid.outcome == DeployOutcome.REFUSED
        assert f"{note} fails on a shadow database" in str(invalid.error)
        assert step(invalid, "migrate") is None and invalid.services == []

        report = await env.deploy("v2-half")
        assert report.outcome == DeployOutcome.ROLLED_BACK, report.error
        assert report.services == [] and report.checks == []  # stopped before any service changed
        error = str(report.error)
        assert "migration failed" in error and broken in error and "invalid input syntax for type integer" in error
        assert "***" in error and password not in report.model_dump_json()
        assert report.rollback is not None and report.rollback.ok
        assert report.rollback.migrations_reverted == [note]
        assert "Note" not in await tables(env.db_url)
        assert len(await fetch(env.db_url, 'SELECT 1 FROM "Task"')) == 1  # the data is untouched
        status = await env.status("v2-half")
        assert (status.pending, status.failed) == ([note], [broken])

        again = await env.deploy("v2")  # a failed migration blocks every deploy, with the way out
        assert again.outcome == DeployOutcome.REFUSED
        gate = next(g for g in again.gates if g.kind == "migration_readiness")
        [failed] = [f for f in gate.findings if f.detail.get("rule") == "failed"]
        assert failed.severity == "CRITICAL" and "invalid input syntax for type integer" in failed.message
        assert password not in again.model_dump_json()
        sql = failed.message.split("toolkit cannot run): ", 1)[1].split(" then deploy again", 1)[0]
        await fetch(env.db_url, sql)  # the operator follows the instructions
        assert (await env.deploy("v2")).outcome == DeployOutcome.SUCCEEDED


async def test_unreachable_database_is_retried_then_reported(
    sample_repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepted = 0

    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    password = "pw-" + secrets.token_hex(8)
    try:
        env = make_env("dev", sample_repo, tmp_path / "specs", f"postgresql://app:{password}@127.0.0.1:{port}/app",
                       state_dir)
        monkeypatch.setenv("DATABASE_URL", env.db_url)
        env.write(gates=[])
        report = await env.deploy("v1")
    finally:
        server.close()
        await server.wait_closed()
    # nothing was changed (the journal shows no side effect): refused with exit 3, not FAILED (issue 18 items 3, 7)
    assert report.outcome == DeployOutcome.REFUSED
    assert "cannot read the database" in str(report.error) and "nothing was changed" in str(report.error)
    assert accepted >= 4  # the first attempt and three task retries (DATABASE_BUDGET)
    assert report.services == [] and password not in report.model_dump_json()


async def test_missing_database_url_is_refused_before_any_side_effect(
    sample_repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env("dev", sample_repo, tmp_path / "specs", "unused", state_dir)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env.dev here either
    report = await env.deploy("v1")
    assert report.outcome == DeployOutcome.REFUSED and report.exit_code == 3
    assert "secret DATABASE_URL is not set" in str(report.error) and "database.url_secret" in str(report.error)
    assert report.release_id is None and report.steps[0].outcome == "refused"
    [row] = await fetch(ledger_url, "SELECT to_regclass('aevon_releases') AS t")
    assert row["t"] is None  # the ledger was not even opened
    assert not (state_dir / "targets").exists()  # no service target was built
