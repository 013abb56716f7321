"""The typed rollback journal: per step kind, what undoes a side effect (undo) and what happened since (detail)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from providers.errors import PermanentError
from providers.models import ServiceVersion


class JournalStep(StrEnum):
    """The kind of side effect a journal entry records."""

    SERVICE = "service"
    MIGRATION = "migration"
    CANARY = "canary"


class JournalState(StrEnum):
    """intent (recorded before the side effect) -> done -> undone."""

    INTENT = "intent"
    DONE = "done"
    UNDONE = "undone"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceUndo(_Record):
    """What undoes a service deploy: the version that served before (None: first deploy), its layer, provider."""

    step: ClassVar[JournalStep] = JournalStep.SERVICE
    previous: ServiceVersion | None
    layer: int = 0
    provider: str


class ServiceDetail(_Record):
    """What happened to a service entry: the deploy's status and vendor ref, what its rollback restored."""

    status: str | None = None
    vendor_ref: str | None = None
    restored: str | None = None
    note: str | None = None


class MigrationUndo(_Record):
    """What undoes a migrate step: the pending migrations, the checkout, the prepared inverse, the backup taken."""

    step: ClassVar[JournalStep] = JournalStep.MIGRATION
    pending: list[str]
    checkout: str
    inverse_sql: str | None = None
    inverse_steps: dict[str, str] = Field(default_factory=dict)  # per migration: its own down script
    inverse_loses_data: bool = False
    backup_id: str | None = None


class MigrationDetail(_Record):
    """What happened to a migrate entry: applied, the inverse's footprint after applying, kept or reverted."""

    applied: list[str] | None = None
    inverse_baseline: dict[str, int] | None = None  # None: unknown (every row counts as new at rollback)
    kept: list[str] | None = None  # a code-only rollback left these applied ...
    why: str | None = None  # ... for this reason
    reverted: list[str] | None = None
    note: str | None = None


class CanaryUndo(_Record):
    """What undoes a canary in progress: traffic back to the stable version (None: first deploy), canary removed."""

    step: ClassVar[JournalStep] = JournalStep.CANARY
    provider: str
    stable: ServiceVersion | None
    canary_sha: str
    layer: int = 0


class CanaryDetail(_Record):
    """What happened to a canary: its handle (vendor ref, URL), the last weight set, how it ended."""

    handle: str | None = None
    url: str | None = None
    weight: int | None = None
    outcome: str | None = None  # promoted | aborted
    why: str | None = None  # the analysis that aborted it
    abort_s: float | None = None  # first failing analysis -> traffic back on stable, seconds
    note: str | None = None


Undo = ServiceUndo | MigrationUndo | CanaryUndo
Detail = ServiceDetail | MigrationDetail | CanaryDetail


class _Entry(BaseModel):
    id: int
    release_id: str
    target: str  # service name, or "database"
    state: JournalState
    recorded_at: datetime | None = None  # when the intent was recorded
    updated_at: datetime | None = None  # when the entry last changed state


class ServiceEntry(_Entry):
    """A journalled service deploy."""

    step: Literal[JournalStep.SERVICE] = JournalStep.SERVICE
    undo: ServiceUndo
    detail: ServiceDetail = Field(default_factory=ServiceDetail)


class MigrationEntry(_Entry):
    """A journalled migrate step."""

    step: Literal[JournalStep.MIGRATION] = JournalStep.MIGRATION
    undo: MigrationUndo
    detail: MigrationDetail = Field(default_factory=MigrationDetail)


class CanaryEntry(_Entry):
    """A journalled canary (recorded before its first weight change)."""

    step: Literal[JournalStep.CANARY] = JournalStep.CANARY
    undo: CanaryUndo
    detail: CanaryDetail = Field(default_factory=CanaryDetail)


AnyEntry = ServiceEntry | MigrationEntry | CanaryEntry
JournalEntry = Annotated[AnyEntry, Field(discriminator="step")]
_ENTRY: TypeAdapter[AnyEntry] = TypeAdapter(JournalEntry)


class JournalCorrupt(PermanentError):
    """A journal row that does not match the record format of its step."""


def parse_entry(row: dict[str, Any]) -> AnyEntry:
    """Validate one journal row (undo and detail already decoded from JSON); JournalCorrupt names release and entry."""
    try:
        return _ENTRY.validate_python(row)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise JournalCorrupt(
            f"journal entry {row.get('id')} of release {row.get('release_id')} ({row.get('step')} "
            f"{row.get('target')}) does not match its record format: {problems}", provider="ledger",
        ) from None
