"""The migrator interface: read migration status, plan (findings, inverse), apply pending migrations, undo them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field, SecretStr

from deployments.spec import DatabaseSpec
from providers.errors import PermanentError
from providers.models import Finding


class MigrationLocked(PermanentError):
    """A migration waited longer than lock_timeout on every attempt; nothing of it was applied. `applied`: the
    migrations applied before it by the same call; `blockers`: the sessions that held the lock, described."""

    def __init__(self, message: str, *, provider: str, resource: str, applied: list[str],
                 blockers: list[str]) -> None:
        self.applied = applied
        self.blockers = blockers
        super().__init__(message, provider=provider, resource=resource)


class SharedScripts(Protocol):
    """Scripts derived from migration files, kept beyond this machine (the ledger: providers/state/inverse_cache.py),
    so that every worker and environment computes each one once."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]: ...

    async def put(self, key: str, script: str) -> None: ...


@dataclass(frozen=True)
class MigratorContext:
    """What a migrator factory gets: the database spec, its URL (secret), a state directory, and where derived
    scripts are shared (None: this state directory only)."""

    env: str
    spec: DatabaseSpec
    database_url: SecretStr
    state_dir: Path
    shared: SharedScripts | None = None


class MigrationStatus(BaseModel):
    """What `prisma migrate status` (or equivalent) says about one checkout against the database."""

    applied: list[str] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)
    drift: bool = False
    message: str = ""
    unknown: list[str] = Field(default_factory=list)  # applied in the database, absent from the checkout
    failed_logs: dict[str, str] = Field(default_factory=dict)  # failed migration -> the database's error (scrubbed)


class MigrationPlan(BaseModel):
    """What a deploy would do to the database: pending migrations, findings, and the prepared inverse."""

    pending: list[str] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    destructive: bool = False
    inverse_sql: str | None = None  # the down script of all of `pending`, prepared before applying
    inverse_steps: dict[str, str] = Field(default_factory=dict)  # per pending migration: its own down script
    inverse_loses_data: bool = False
    # The expand phase's inverse alone, when a contract phase is split off (None: no contract phase, the same as
    # inverse_loses_data): the inverse a rollback may apply never covers the contract migrations.
    expand_inverse_loses_data: bool | None = None
    inverse_preconditions: list[str] = Field(default_factory=list)  # what the data must satisfy for the inverse
    expand: list[str] = Field(default_factory=list)  # applied before the services (providers/migrators/phases.py)
    contract: list[str] = Field(default_factory=list)  # applied after validation and the bake passed

    def phase_of(self, migration: str) -> str:
        """"contract" or "expand" (pending migrations not split into phases are expand)."""
        return "contract" if migration in self.contract else "expand"


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
        """Pending migrations, their findings and their inverse; changes nothing."""
        ...

    async def readiness(self, checkout: Path, status: MigrationStatus) -> list[Finding]:
        """Consistency findings about the checkout's migrations (HIGH and above block a deploy)."""
        ...

    async def clean_leftovers(self) -> list[str]:
        """Remove what a killed run of this tool left on the database server (Prisma: shadow databases)."""
        ...

    async def settle_interrupted(self, checkout: Path) -> list[str]:
        """Record what the schema proves about attempts killed mid-apply (applied whole / none of it); returns
        what was recorded. Only while holding the environment lock."""
        ...

    async def inverse_footprint(self, inverse_sql: str | None) -> dict[str, int]:
        """Data the inverse would destroy now: table or column -> rows holding values a re-apply cannot restore."""
        ...

    async def apply(
        self, checkout: Path, only: list[str] | None = None, forget_failed: bool = False
    ) -> MigrationResult:
        """Apply pending migrations (idempotent: nothing pending -> nothing done); `only`: just these, which must be
        the first pending ones (the expand phase), each within the spec's lock and statement timeouts.
        `forget_failed`: a migration that fails whole (one transaction) is left pending, not failed."""
        ...

    async def inverse_preconditions(self, inverse_sql: str | None) -> list[str]:
        """Why the inverse would fail on the data now ([] when it would succeed): a rollback then reverts code only."""
        ...

    async def revert(self, checkout: Path, applied: list[str], inverse_sql: str | None) -> MigrationResult:
        """Undo `applied` with the prepared inverse and record them as not applied, atomically: on failure nothing
        changed. A later deploy re-applies them."""
        ...
