"""The migrator interface: read migration status, apply pending migrations, and (seam) undo them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field, SecretStr

from deployments.spec import DatabaseSpec
from providers.models import Finding


@dataclass(frozen=True)
class MigratorContext:
    """What a migrator factory gets: the database spec, its URL (secret) and a state directory."""

    env: str
    spec: DatabaseSpec
    database_url: SecretStr
    state_dir: Path


class MigrationStatus(BaseModel):
    """What `prisma migrate status` (or equivalent) says about one checkout against the database."""

    applied: list[str] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)
    drift: bool = False
    message: str = ""


class MigrationPlan(BaseModel):
    """What a deploy would do to the database: pending migrations, findings, and the prepared inverse."""

    pending: list[str] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    destructive: bool = False
    inverse_sql: str | None = None  # seam: the down script, prepared before applying (issue: safe migrations)
    inverse_loses_data: bool = False


class MigrationResult(BaseModel):
    """What an apply did: the migrations now applied by this step, and the tool's output (secrets removed)."""

    applied: list[str] = Field(default_factory=list)
    output: str = ""
    duration_s: float = 0.0


@runtime_checkable
class Migrator(Protocol):
    """Applies a checkout's migrations to the environment database. Methods raise ProviderError subclasses."""

    async def status(self, checkout: Path) -> MigrationStatus:
        """Applied, pending and failed migrations of `checkout` against the database."""
        ...

    async def plan(self, checkout: Path, previous_checkout: Path | None) -> MigrationPlan:
        """Pending migrations and (seam) their findings and inverse; changes nothing."""
        ...

    async def apply(self, checkout: Path) -> MigrationResult:
        """Apply pending migrations (idempotent: nothing pending -> nothing done)."""
        ...

    async def revert(self, checkout: Path, applied: list[str], inverse_sql: str | None) -> MigrationResult:
        """Undo `applied` with the prepared inverse; record them as not applied so a later deploy re-applies."""
        ...
