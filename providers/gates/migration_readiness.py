"""Pre-deploy gate: the release's migrations can be applied (status, folder consistency, no failure) — runbook 4.1."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict

from deployments.spec import DatabaseSpec
from providers.checks.base import BaseCheck, CheckContext, CheckInput
from providers.errors import AevonError, ConfigError
from providers.migrators.base import MigrationStatus, Migrator, MigratorContext
from providers.models import CheckResult, Finding, Outcome, Severity
from providers.registry import MIGRATORS, resolve

# env -> {migration kept applied by a code-only rollback: the release that applied it}
KeptLookup = Callable[[str], Awaitable[dict[str, str]]]
_RESOLVE_SQL = ('UPDATE "_prisma_migrations" SET "rolled_back_at" = now() WHERE "migration_name" = \'{name}\' '
                'AND "finished_at" IS NULL AND "rolled_back_at" IS NULL;')


class ReadinessSettings(BaseModel):
    """Settings of the migration-readiness gate."""

    model_config = ConfigDict(extra="forbid")
    block_on_drift: bool = True
    block_on_unknown: bool = True  # applied migrations missing from the checkout, not explained by a rollback


class MigrationReadiness(BaseCheck):
    """FAILED on a failed migration, drift, an inconsistent migrations folder or a diverged history; ERROR when
    the database cannot be read.

    Status comes from `prisma migrate status` cross-checked with `_prisma_migrations` (applied, pending, failed,
    drift = an applied migration.sql edited since). Blocking findings are HIGH or CRITICAL; the rest inform.

    An applied migration missing from the checkout's folder blocks, unless a code-only rollback of this environment
    kept it applied (the rollback journal says so): then the database is legitimately ahead of the code (the
    previous release redeployed, or a fix that still lacks it), and a MEDIUM finding says so. Anything else means
    the histories diverged (a migration deleted or renamed, or a ref older than the database), which `migrate
    deploy` would not notice and the next inverse would get wrong.
    """

    kind = "migration_readiness"

    def __init__(self, ctx: CheckContext, migrator: Migrator, settings: ReadinessSettings,
                 kept: KeptLookup | None = None) -> None:
        super().__init__(ctx)
        self.env = ctx.env.environment
        self.migrator = migrator
        self.settings = settings
        self.kept = kept

    async def measure(self, inp: CheckInput) -> CheckResult:
        if inp.checkout_dir is None:
            return self.error("no checkout to read")
        try:
            status = await self.migrator.status(inp.checkout_dir)
            ready = await self.migrator.readiness(inp.checkout_dir, status)
            if _unexplained_interrupted(status, ready):
                # The migrator's readiness waits for our live `migrate deploy` sessions before it judges a killed
                # attempt: one that ended meanwhile (a deploy killed while its Prisma CLI, in its own session, ran
                # on and recorded the migration) left `status` stale. Read it again rather than report it.
                status = await self.migrator.status(inp.checkout_dir)
                ready = await self.migrator.readiness(inp.checkout_dir, status)
            explained = {f.location for f in ready if str(f.detail.get("rule", "")).startswith("interrupted-")}
            findings = [*self._failed(status, explained), *ready, *await self._unknown(status)]
        except AevonError as exc:
            # Prisma refuses an inconsistent folder (P3019 ...): when the folder explains it, that is a FAILED gate.
            try:
                folder = await self.migrator.readiness(inp.checkout_dir, MigrationStatus())
            except AevonError:
                folder = []
            blocking = [f for f in folder if f.severity.rank >= Severity.HIGH.rank]
            return self.result(Outcome.FAILED if blocking else Outcome.ERROR,
                               "; ".join([*(f.message for f in blocking), str(exc)]), findings=folder)
        if status.drift:
            findings.append(Finding(
                message=f"the database has drifted from the migration history: {status.message}",
                severity=Severity.HIGH if self.settings.block_on_drift else Severity.MEDIUM))
        blocking = [f for f in findings if f.severity.rank >= Severity.HIGH.rank]
        counts = (f"{len(status.applied)} applied, {len(status.pending)} pending"
                  + (f" ({', '.join(status.pending)})" if status.pending else "")
                  + f", {len(status.failed)} failed, drift {'yes' if status.drift else 'no'}")
        summary = "; ".join(f.message for f in blocking) if blocking else counts
        return self.result(
            Outcome.FAILED if blocking else Outcome.PASSED, summary, findings=findings,
            metrics={"applied": len(status.applied), "pending": len(status.pending), "failed": len(status.failed),
                     "drift": float(status.drift), "unknown": len(status.unknown)},
        )

    def _failed(self, status: MigrationStatus, explained: set[str | None]) -> list[Finding]:
        """A migration Prisma recorded as failed (its error in the logs): its one transaction rolled back. One
        with no logs was interrupted, not failed: the migrator's readiness says what the schema holds."""
        out = []
        for m in status.failed:
            if m in explained:
                continue
            if not status.failed_logs.get(m, "").strip():
                out.append(Finding(
                    message=f"migration {m} started and never finished, and no error was recorded (its run was "
                            "killed?): whether its script is applied is not known. Compare the schema with the "
                            "migration before resolving it; marking it rolled back when it is applied would apply "
                            "it twice", severity=Severity.CRITICAL, location=m, detail={"rule": "interrupted"}))
                continue
            said = [line.strip() for line in status.failed_logs.get(m, "").splitlines() if line.strip()]
            error = next((line for line in said if "ERROR:" in line), None)  # PostgreSQL's own message first
            error = error or next((line for line in said if "rror" in line), said[0] if said else "")
            out.append(Finding(
                message=(f"migration {m} failed earlier" + (f" ({error[:300]})" if error else "") + ". Its script ran "
                         "in one transaction, so none of it is applied. Fix it in a new commit, mark the failed "
                         "attempt rolled back (what `prisma migrate resolve --rolled-back` does, which the offline "
                         f"toolkit cannot run): {_RESOLVE_SQL.format(name=m)} then deploy again."),
                severity=Severity.CRITICAL, location=m, detail={"rule": "failed", "logs": status.failed_logs.get(m)},
            ))
        return out

    async def _unknown(self, status: MigrationStatus) -> list[Finding]:
        if not status.unknown:
            return []
        kept = await self.kept(self.env) if self.kept is not None else {}
        out = []
        for m in status.unknown:
            if m in kept:
                out.append(Finding(
                    message=f"migration {m} is applied but not in this checkout: the code-only rollback of "
                            f"{kept[m]} kept it applied, so the database is ahead of this code (allowed)",
                    severity=Severity.MEDIUM, location=m, detail={"rule": "kept-by-rollback"}))
            else:
                out.append(Finding(
                    message=f"migration {m} is applied in the database but missing from the checkout's migrations "
                            "folder, and no rollback explains it: the histories diverged (deleted or renamed "
                            "migration, or a ref older than the database). Deploy a ref that contains it, or "
                            "restore a backup (`aevon-deploy db restore`)",
                    severity=Severity.HIGH if self.settings.block_on_unknown else Severity.MEDIUM, location=m,
                    detail={"rule": "unknown-applied"}))
        return out


def _unexplained_interrupted(status: MigrationStatus, ready: list[Finding]) -> bool:
    """A migration started, unfinished and with no error recorded that the migrator's readiness said nothing of."""
    explained = {f.location for f in ready if str(f.detail.get("rule", "")).startswith("interrupted-")}
    return any(m not in explained and not status.failed_logs.get(m, "").strip() for m in status.failed)


def make_check(ctx: CheckContext) -> MigrationReadiness:
    """Factory registered as `migration_readiness`; uses the environment's database spec and migrator.

    The rollback journal is read from the run's state database (`ctx.state`), only when the database holds
    migrations the checkout lacks.
    """
    settings = ctx.settings(ReadinessSettings)
    db: DatabaseSpec | None = ctx.env.database
    if db is None:
        raise ConfigError("the environment has no database section", ctx.location("kind"))
    url = ctx.require_secret("database_url", "the database the migrations are read from")
    factory = resolve(MIGRATORS, "migrator", db.provider, "database.provider")
    state = ctx.baseline_dir.parent.parent / "migrations" / ctx.env.environment
    migrator = factory(MigratorContext(env=ctx.env.environment, spec=db, database_url=url, state_dir=state))

    kept = ctx.state.backups.kept_migrations if ctx.state is not None else None
    return MigrationReadiness(ctx, migrator, settings, kept)
