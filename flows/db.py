"""Database operations beside the deploy: the verified pre-migration backup, and the operator's explicit restore."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from pydantic import BaseModel, Field

from deployments.settings import AevonSettings
from flows.locking import environment_lock
from flows.runtime import Runtime, build_runtime
from providers.errors import ConfigError
from providers.migrators.backup import BackupRecord, PgBackup
from providers.models import Release
from providers.state.store import StateStore
from tasks.common import as_is
from tasks.database import backup_database


class RestoreReport(BaseModel):
    """What `aevon-deploy db restore` did."""

    env: str
    backup_id: str
    database: str
    ok: bool
    tables: int = 0
    rows: int = 0
    migrations: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


def make_backup(rt: Runtime) -> tuple[PgBackup, Path]:
    """The environment's PgBackup and backup folder, from `database.settings`.

    Settings: `backup_dir` (default <state dir>/backups/<env>), `pg_dump`, `pg_restore`, `psql` (tool paths, to
    match the server's major version), `backup_timeout_s` (per tool run, default 3600).
    """
    db = rt.spec.database
    if db is None:
        raise ConfigError("the environment has no database section", "database")
    settings = db.settings
    backup = PgBackup(
        rt.secrets[db.url_secret],
        pg_dump=str(settings.get("pg_dump", "pg_dump")), pg_restore=str(settings.get("pg_restore", "pg_restore")),
        psql=str(settings.get("psql", "psql")), timeout_s=float(settings.get("backup_timeout_s", 3600.0)),
    )
    folder = Path(str(settings["backup_dir"])) if "backup_dir" in settings else rt.state_dir / "backups"
    return backup, folder / rt.spec.environment


async def take_backup(rt: Runtime, release: Release) -> BackupRecord:
    """Take, verify and record a backup of the environment's database for `release` (the `backup-database` task)."""
    backup, folder = make_backup(rt)
    return await backup_database(as_is(backup), as_is(rt.state.backups), release, folder)


def describe(record: BackupRecord) -> str:
    """One line: id, verdict, tables, rows, size, times."""
    verdict = "verified" if record.verified else "NOT verified"
    return (f"{record.backup_id} {verdict}: {len(record.tables)} tables, {record.rows} rows, "
            f"{record.size_bytes / 1e6:.1f} MB (dump {record.dump_s:.1f}s, verify {record.verify_s:.1f}s)")


@flow(name="db-restore", flow_run_name="db-restore-{env}-{backup_id}")
async def restore_flow(env: str, backup_id: str, spec_dir: str | None = None) -> RestoreReport:
    """Restore a verified backup into the environment's database (an explicit operator action, never automatic).

    Holds the environment lock, so no deploy runs meanwhile. The restore is one transaction: it replaces the
    backup's schemas (and public) or, on any error, changes nothing. Afterwards the tables and row counts are
    compared with the backup record.

    Args:
        env: the environment.
        backup_id: an id from `aevon-deploy db backups ENV` (or a rollback report).
        spec_dir: where the environment specs live (default: deployments/).
    """
    rt = build_runtime(env, Path(spec_dir) if spec_dir else None, settings=AevonSettings())
    try:
        catalog = rt.state.backups
        record = await catalog.get(env, backup_id)
        if record is None:
            raise ConfigError(f"no backup {backup_id!r} of {env} (see `aevon-deploy db backups {env}`)")
        if not record.verified:
            raise ConfigError(f"backup {backup_id} did not verify when it was taken: it is not restored "
                              f"({'; '.join(record.problems)[:300]})")
        backup, _ = make_backup(rt)
        if backup.conn.where != record.database:
            raise ConfigError(f"backup {backup_id} is of {record.database}, the environment's database is now "
                              f"{backup.conn.where}: not restoring across databases")
        async with environment_lock(env, rt.settings.lock_lease_s, "database restore", db_url=rt.settings.state_db_url):
            problems = await backup.restore(record)
            await catalog.mark_restored(backup_id)
        return RestoreReport(env=env, backup_id=backup_id, database=record.database, ok=not problems,
                             tables=len(record.tables), rows=record.rows, migrations=record.migrations,
                             problems=problems)
    finally:
        await rt.aclose()


async def find_backup(settings: AevonSettings, env: str, backup_id: str) -> BackupRecord | None:
    """The record of one backup (the CLI shows it before asking for confirmation)."""
    async with StateStore(settings.state_db_url) as store:
        return await store.backups.get(env, backup_id)


async def list_backups(settings: AevonSettings, env: str, limit: int = 20) -> list[BackupRecord]:
    """The latest backups of `env`, newest first."""
    async with StateStore(settings.state_db_url) as store:
        return await store.backups.latest(env, limit)


def confirmation_text(env: str, record: BackupRecord) -> str:
    """What the operator reads before confirming a restore."""
    migrations = ", ".join(record.migrations) or "none"
    return "\n".join([
        f"Restore backup {record.backup_id} into environment {env} (database {record.database})",
        f"  taken {record.created_at:%Y-%m-%d %H:%M:%S} UTC for release {record.release_id or '—'}; "
        f"{len(record.tables)} tables, {record.rows} rows; migrations applied then: {migrations}",
        "  This REPLACES every table of the backup's schemas with the backup's content: data written since is "
        "lost.",
        "  The services are not touched: they keep running the release they run now.",
    ])


def outcome_text(rep: RestoreReport) -> str:
    if rep.ok:
        return (f"restored {rep.backup_id} into {rep.env} ({rep.database}): {rep.tables} tables, {rep.rows} rows — "
                "the same tables and row counts as the backup record")
    return f"restored {rep.backup_id} into {rep.env}, but it differs from the record: " + "; ".join(rep.problems)

