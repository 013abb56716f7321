"""Database tasks: plan the migration, back it up (verified), apply it (journalled with its inverse), revert it."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from providers.errors import AevonError
from providers.migrators.backup import BackupRecord, PgBackup
from providers.migrators.base import MigrationLocked, MigrationPlan, MigrationResult, Migrator
from providers.migrators.prisma.inverse import compose
from providers.models import Release
from providers.state.backups import BackupCatalog, new_backup_id
from providers.state.journal import JournalState, MigrationDetail, MigrationUndo
from providers.state.ledger import Ledger
from tasks.common import DATABASE_TASK_DEFAULTS


@task(name="migration-plan", **DATABASE_TASK_DEFAULTS)
async def plan_migrations(migrator: Migrator, checkout: Path, previous_checkout: Path | None) -> MigrationPlan:
    """Pending migrations, their findings and the prepared inverse; changes nothing."""
    return await migrator.plan(checkout, previous_checkout)


@task(name="backup-database", **DATABASE_TASK_DEFAULTS)
async def backup_database(
    backup: PgBackup, catalog: BackupCatalog, release: Release, dest_dir: Path
) -> BackupRecord:
    """pg_dump the database, verify the dump in a scratch database, and record it (verified or not) with the release.

    Returns the record; the caller refuses to migrate when `record.verified` is false. An unreachable database is
    a TransientError (retried); a tool failure is permanent.
    """
    record = await backup.take(new_backup_id(release.env), dest_dir, env=release.env, release_id=release.release_id)
    await catalog.record(record)
    return record


CONTRACT_TARGET = "database:contract"  # the journal target of a contract phase (never reverted)


@task(name="migrate", **DATABASE_TASK_DEFAULTS)
async def apply_migrations(
    ledger: Ledger, release: Release, migrator: Migrator, checkout: Path, plan: MigrationPlan,
    backup_id: str | None = None,
) -> MigrationResult:
    """Journal the expand phase's migrations, their inverse and the backup id, then `migrate deploy` them.

    The expand phase is every pending migration but the trailing contract-only ones (`plan.contract`), which wait
    for `apply_contract`. Right after applying, the journal also gets the inverse's footprint (rows in what the
    inverse would drop): the rollback compares it with the footprint then, to tell data the new release wrote
    from data that was there.
    """
    expand = [m for m in plan.pending if m not in plan.contract]
    inverse_sql = plan.inverse_sql
    loses = plan.inverse_loses_data if plan.expand_inverse_loses_data is None else plan.expand_inverse_loses_data
    if plan.contract and plan.inverse_sql is not None:  # the inverse of the expand phase only
        inverse_sql = compose(plan.inverse_steps, expand)
    entry = await ledger.record_intent(
        release.release_id, "database",
        MigrationUndo(pending=expand, checkout=str(checkout), inverse_sql=inverse_sql,
                      inverse_steps={m: s for m, s in plan.inverse_steps.items() if m in expand},
                      inverse_loses_data=loses, backup_id=backup_id),
    )
    try:
        result = await migrator.apply(checkout, only=expand if plan.contract else None)
    except MigrationLocked as exc:
        if not exc.applied:  # nothing changed: the run is refused, there is nothing to undo
            await ledger.mark(entry.id, JournalState.UNDONE, MigrationDetail(note="not applied: lock timeout"))
        raise
    # A retried task (transient error after applying) applies nothing the second time: keep what the first did.
    result.applied = list(dict.fromkeys([*(entry.detail.applied or []), *result.applied]))
    await ledger.mark(entry.id, JournalState.DONE, MigrationDetail(applied=result.applied))
    baseline: dict[str, int] | None = {}
    if inverse_sql is not None and not loses:
        try:
            baseline = await migrator.inverse_footprint(inverse_sql)
        except AevonError:
            baseline = None  # unknown: the rollback then counts every row there as written by the new release
    await ledger.mark(entry.id, JournalState.DONE, MigrationDetail(inverse_baseline=baseline))
    return result


@task(name="migrate-contract", **DATABASE_TASK_DEFAULTS)
async def apply_contract(
    ledger: Ledger, release: Release, migrator: Migrator, checkout: Path, plan: MigrationPlan
) -> MigrationResult:
    """The contract phase, after the release was verified: journal it (no inverse: it is never reverted), then
    `migrate deploy` the rest. A failed attempt is left pending (it ran in one transaction), for the next deploy."""
    entry = await ledger.record_intent(
        release.release_id, CONTRACT_TARGET,
        MigrationUndo(pending=plan.contract, checkout=str(checkout), inverse_sql=None, inverse_loses_data=True),
    )
    result = await migrator.apply(checkout, forget_failed=True)
    result.applied = list(dict.fromkeys([*(entry.detail.applied or []), *result.applied]))
    await ledger.mark(entry.id, JournalState.DONE, MigrationDetail(applied=result.applied))
    return result


@task(name="revert-migrations", **DATABASE_TASK_DEFAULTS)
async def revert_migrations(
    ledger: Ledger, entry_id: int, migrator: Migrator, checkout: Path, applied: list[str], inverse_sql: str | None
) -> MigrationResult:
    """Apply the prepared inverse of `applied` and mark them pending again."""
    result = await migrator.revert(checkout, applied, inverse_sql)
    await ledger.mark(entry_id, JournalState.UNDONE, MigrationDetail(reverted=applied))
    return result
