"""Database tasks: plan the migration, apply it (journalled with its inverse first), revert it on rollback."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from providers.ledger import DONE, UNDONE, Ledger
from providers.migrators.base import MigrationPlan, MigrationResult, Migrator
from providers.models import Release
from tasks.common import TASK_DEFAULTS


@task(name="migration-plan", **TASK_DEFAULTS)
async def plan_migrations(migrator: Migrator, checkout: Path, previous_checkout: Path | None) -> MigrationPlan:
    """Pending migrations, their findings and the prepared inverse; changes nothing."""
    return await migrator.plan(checkout, previous_checkout)


@task(name="migrate", **TASK_DEFAULTS)
async def apply_migrations(
    ledger: Ledger, release: Release, migrator: Migrator, checkout: Path, plan: MigrationPlan
) -> MigrationResult:
    """Journal the pending migrations and their inverse, then `migrate deploy`."""
    entry = await ledger.record_intent(
        release.release_id, "migration", "database",
        {"pending": plan.pending, "inverse_sql": plan.inverse_sql, "inverse_loses_data": plan.inverse_loses_data,
         "checkout": str(checkout)},
    )
    result = await migrator.apply(checkout)
    await ledger.mark(entry.id, DONE, {"applied": result.applied})
    return result


@task(name="revert-migrations", **TASK_DEFAULTS)
async def revert_migrations(
    ledger: Ledger, entry_id: int, migrator: Migrator, checkout: Path, applied: list[str], inverse_sql: str | None
) -> MigrationResult:
    """Apply the prepared inverse of `applied` and mark them pending again."""
    result = await migrator.revert(checkout, applied, inverse_sql)
    await ledger.mark(entry_id, UNDONE, {"reverted": applied})
    return result
