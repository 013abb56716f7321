"""Typed values passed between flows, tasks and providers: releases, versions, handles, outcomes."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


class Release(BaseModel):
    """What one deploy run ships: an environment, a ref resolved to a commit SHA, and a stable release id.

    The release id is the idempotency key of every side effect of the run: a retried step reuses it and
    never creates a second vendor deployment.
    """

    release_id: str
    env: str
    ref: str
    sha: str
    checkout_dir: str | None = None  # a local checkout of `sha`, when the source is reachable from here
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def short_sha(self) -> str:
        return self.sha[:12]


class ServiceVersion(BaseModel):
    """A version of one service as a target sees it; what `rollback(to=...)` takes back."""

    service: str
    version: str  # the git SHA the service runs (or an image tag / label where a vendor knows no SHA)
    release_id: str | None = None
    vendor_ref: str | None = None  # vendor deployment id, ReplicaSet revision, local slot ...
    url: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class DeployStatus(StrEnum):
    """Where a deployment is, mapped from each vendor's own status values."""

    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    READY = "READY"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class DeployHandle(BaseModel):
    """What `deploy()` and `rollback()` return; `wait_ready()` follows it to an end state."""

    service: str
    version: str
    release_id: str | None = None
    vendor_ref: str | None = None
    url: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class DeployResult(BaseModel):
    """The end state of one deployment (or rollback) of one service."""

    handle: DeployHandle
    status: DeployStatus
    message: str = ""
    duration_s: float = 0.0


class Outcome(StrEnum):
    """A check's verdict: PASSED, FAILED (roll back / refuse) or ERROR (could not measure); CANCELLED: stopped or
    never started because another check failed first (fail fast)."""

    PASSED = "PASSED"
    FAILED = "FAILED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"


class Severity(StrEnum):
    """Finding severity, ordered INFO < LOW < MEDIUM < HIGH < CRITICAL."""

    INFO = "INFO"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Finding(BaseModel):
    """One thing a check or gate found: what, how bad, where."""

    message: str
    severity: Severity = Severity.HIGH
    location: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class CheckResult(BaseModel):
    """A check's or gate's typed outcome with its findings and metrics."""

    name: str
    kind: str
    outcome: Outcome
    summary: str = ""
    findings: list[Finding] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict)  # label -> path or URL (screenshots, traces, reports)
    attempts: int = 1
    duration_s: float = 0.0
    started_at: datetime | None = None  # when its task run began measuring (None: it never started)
