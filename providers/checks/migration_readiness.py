"""Pre-deploy gate: the release's migrations can be applied (no failed migration, no drift) — runbook 4.1."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

from deployments.spec import DatabaseSpec
from providers.checks.base import CheckContext, CheckInput
from providers.config import parse_settings
from providers.errors import AevonError, ConfigError
from providers.migrators.base import Migrator, MigratorContext
from providers.models import CheckResult, Finding, Outcome, Severity
from providers.registry import MIGRATORS, resolve


class ReadinessSettings(BaseModel):
    """Settings of the migration-readiness gate."""

    model_config = ConfigDict(extra="forbid")
    block_on_drift: bool = True


class MigrationReadiness:
    """FAILED on a previously failed migration or on drift; ERROR when the database cannot be read."""

    kind = "migration_readiness"

    def __init__(self, name: str, migrator: Migrator, settings: ReadinessSettings) -> None:
        self.name = name
        self.migrator = migrator
        self.settings = settings

    async def run(self, inp: CheckInput) -> CheckResult:
        start = time.monotonic()
        if inp.checkout_dir is None:
            return CheckResult(name=self.name, kind=self.kind, outcome=Outcome.ERROR, summary="no checkout to read")
        try:
            status = await self.migrator.status(inp.checkout_dir)
        except AevonError as exc:
            return CheckResult(name=self.name, kind=self.kind, outcome=Outcome.ERROR, summary=str(exc),
                               duration_s=time.monotonic() - start)
        findings = [
            Finding(message=f"migration {m} failed earlier: fix the database, then mark it rolled back "
                            "(delete its row from _prisma_migrations) before deploying again",
                    severity=Severity.CRITICAL, location=m)
            for m in status.failed
        ]
        if status.drift and self.settings.block_on_drift:
            findings.append(Finding(message=f"the database has drifted from the migration history: {status.message}",
                                    severity=Severity.HIGH))
        outcome = Outcome.FAILED if findings else Outcome.PASSED
        summary = "; ".join(f.message for f in findings) or (
            f"{len(status.applied)} applied, {len(status.pending)} pending: " + (", ".join(status.pending) or "none")
        )
        return CheckResult(
            name=self.name, kind=self.kind, outcome=outcome, summary=summary, findings=findings,
            metrics={"applied": len(status.applied), "pending": len(status.pending)},
            duration_s=time.monotonic() - start,
        )

    async def record_baseline(self, inp: CheckInput, result: CheckResult) -> None:
        return None


def make_check(ctx: CheckContext) -> MigrationReadiness:
    """Factory registered as `migration_readiness`; uses the environment's database spec and migrator."""
    location = f"gates.{ctx.spec.name}"
    settings = parse_settings(ReadinessSettings, ctx.spec.settings, f"{location}.settings")
    db: DatabaseSpec | None = ctx.env.database
    if db is None:
        raise ConfigError("the environment has no database section", location)
    url = ctx.secrets.get("database_url")
    if url is None:
        raise ConfigError("needs secrets: {database_url: <secret name>}", f"{location}.secrets")
    factory = resolve(MIGRATORS, "migrator", db.provider, "database.provider")
    state = ctx.baseline_dir.parent.parent / "migrations" / ctx.env.environment
    migrator = factory(MigratorContext(env=ctx.env.environment, spec=db, database_url=url, state_dir=state))
    return MigrationReadiness(ctx.spec.name, migrator, settings)
