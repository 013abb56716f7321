"""The run report: a typed record of every step, rendered as markdown for the Prefect artifact and the CLI."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from providers.errors import AevonError, ConfigError
from providers.migrators.base import MigrationPlan
from providers.models import CheckResult, utcnow
from tasks.services import ServiceChange

log = logging.getLogger("aevon.run")  # forwarded to the run's Logs (flows/observe.py)
StepListener = Callable[["StepRecord", bool], None]  # (step, finished): the CLI's live progress
_listeners: list[StepListener] = []


def add_step_listener(listener: StepListener) -> Callable[[], None]:
    """Call `listener` when a step of any report in this process starts and finishes; returns the remover."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def _announce(rec: StepRecord, finished: bool) -> None:
    if finished:
        log.log(logging.INFO if rec.outcome in ("ok", "passed") else logging.WARNING, "step %s finished: %s in %.1fs%s",
                rec.name, rec.outcome, rec.duration_s, f" ({rec.detail})" if rec.detail else "")
    else:
        log.info("step %s started", rec.name)
    for listener in list(_listeners):
        try:
            listener(rec, finished)
        except Exception:  # noqa: S112 - a display must never break a deploy
            continue


class DeployOutcome(StrEnum):
    """How a run ended; each maps to a CLI exit code."""

    SUCCEEDED = "SUCCEEDED"
    REFUSED = "REFUSED"  # stopped before any change (bad input, failed gate, rejected approval)
    ROLLED_BACK = "ROLLED_BACK"  # a deploy or validation failed and the rollback restored the previous release
    ROLLBACK_FAILED = "ROLLBACK_FAILED"  # the rollback itself did not complete: an operator must look
    FAILED = "FAILED"  # an unexpected error after changes began, with automatic rollback disabled
    NOTHING_TO_PROMOTE = "NOTHING_TO_PROMOTE"  # the SHA already serves, validated: nothing was done (spec.promotion)


EXIT_CODES: dict[DeployOutcome, int] = {
    DeployOutcome.SUCCEEDED: 0,
    DeployOutcome.FAILED: 1,
    DeployOutcome.REFUSED: 3,
    DeployOutcome.ROLLED_BACK: 4,
    DeployOutcome.ROLLBACK_FAILED: 5,
    DeployOutcome.NOTHING_TO_PROMOTE: 0,
}


class StepRecord(BaseModel):
    """One step of the DAG as it ran."""

    name: str
    started_at: datetime
    duration_s: float
    outcome: str
    detail: str = ""


class ApprovalRecord(BaseModel):
    """Who decided on a gated deploy, and why."""

    decision: str  # approved | rejected | timed out
    approver: str | None = None
    reason: str | None = None
    allow_destructive: bool = False
    waited_s: float = 0.0
    key: str | None = None  # SHA256 fingerprint of the SSH key that signed the answer


class RollbackReport(BaseModel):
    """What the rollback subflow did."""

    release_id: str
    reason: str
    ok: bool
    services: list[ServiceChange] = Field(default_factory=list)
    migrations_reverted: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    health: list[CheckResult] = Field(default_factory=list)


class DeployReport(BaseModel):
    """Everything a run did, in order; stored in the ledger and published as an artifact."""

    env: str
    ref: str
    sha: str | None = None
    release_id: str | None = None
    flow_run_id: str | None = None
    started_by: str | None = None  # Prefect user / deployment / automation, or the OS user of a CLI run
    outcome: DeployOutcome = DeployOutcome.SUCCEEDED
    error: str | None = None
    note: str | None = None  # why a run changed nothing on purpose (nothing to promote)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    gates: list[CheckResult] = Field(default_factory=list)
    approval: ApprovalRecord | None = None
    migration_plan: MigrationPlan | None = None
    migrations_applied: list[str] = Field(default_factory=list)
    contract_applied: list[str] = Field(default_factory=list)  # the contract phase, after validation
    contract_left: list[str] = Field(default_factory=list)  # contract migrations still to apply (next deploy)
    services: list[ServiceChange] = Field(default_factory=list)
    warmup: dict[str, float] = Field(default_factory=dict)
    checks: list[CheckResult] = Field(default_factory=list)
    compensated: list[RollbackReport] = Field(default_factory=list)
    leftovers: list[str] = Field(default_factory=list)  # what a killed run left and this run removed (leftovers.py)
    rollback: RollbackReport | None = None

    def start_step(self, name: str, started_at: datetime | None = None) -> StepRecord:
        """A step that ends elsewhere (a validation stage, whose checks start and end apart): announced now; give it
        to `end_step` with its outcome and duration set."""
        rec = StepRecord(name=name, started_at=started_at or utcnow(), duration_s=0.0, outcome="ok")
        _announce(rec, False)
        return rec

    def end_step(self, rec: StepRecord) -> None:
        """Record a step begun with `start_step` (or one that never started) and announce its end."""
        self.steps.append(rec)
        _announce(rec, True)

    @contextmanager
    def step(self, name: str) -> Iterator[StepRecord]:
        """Time a step; its outcome is 'ok' unless the body sets another or raises: 'refused' (bad input), 'failed'
        (our errors; the message becomes the detail) or 'error' (unexpected). Announced when it starts and ends."""
        rec = StepRecord(name=name, started_at=utcnow(), duration_s=0.0, outcome="ok")
        t0 = time.monotonic()
        _announce(rec, False)
        try:
            yield rec
        except BaseException as exc:
            if rec.outcome == "ok":
                rec.outcome = ("refused" if isinstance(exc, ConfigError) else "failed" if isinstance(exc, AevonError)
                               else "error")
            rec.detail = rec.detail or (str(exc)[:300] if isinstance(exc, AevonError) else type(exc).__name__)
            raise
        finally:
            rec.duration_s = time.monotonic() - t0
            self.steps.append(rec)
            _announce(rec, True)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]


def _short(v: str | None) -> str:
    return v[:12] if v else "—"


def _checks_table(title: str, results: list[CheckResult]) -> list[str]:
    if not results:
        return []
    out = [f"### {title}", "", "| check | kind | outcome | attempts | time | summary |", "|---|---|---|---|---|---|"]
    for r in results:
        summary = r.summary.replace("|", "\\|").replace("\n", " ")[:200]
        out.append(f"| {r.name} | {r.kind} | **{r.outcome}** | {r.attempts} | {r.duration_s:.2f}s | {summary} |")
        for f in r.findings[:10]:
            out.append(f"|  | {f.severity} |  |  |  | {f.message[:200]} |")
        for label, where in r.artifacts.items():  # screenshots, traces, scan reports: shown in the evidence artifact
            shown = f"[{label}]({where.replace(' ', '%20')})" if "://" in where else f"{label}: see evidence"
            out.append(f"|  | artifact |  |  |  | {shown} |")
    return [*out, ""]


def _services_table(title: str, changes: list[ServiceChange]) -> list[str]:
    if not changes:
        return []
    out = [f"### {title}", "", "| service | provider | before | after | status | time | note |", "|---" * 7 + "|"]
    for c in changes:
        out.append(
            f"| {c.service} | {c.provider} | {_short(c.before)} | {_short(c.after)} | **{c.status}** | "
            f"{c.duration_s:.2f}s | {c.message[:200]} |"
        )
    return [*out, ""]


def render_markdown(r: DeployReport) -> str:
    """The report as markdown (Prefect artifact and `aevon-deploy deploy` output)."""
    lines = [
        f"## Deploy {r.env} @ {r.ref} → **{r.outcome}**",
        "",
        f"- release `{r.release_id or '—'}`, commit `{_short(r.sha)}`",
        f"- started {r.started_at:%Y-%m-%d %H:%M:%S} UTC"
        + (f", took {(r.finished_at - r.started_at).total_seconds():.1f}s" if r.finished_at else ""),
    ]
    if r.error:
        lines.append(f"- error: {r.error}")
    if r.note:
        lines.append(f"- {r.note}")
    lines += ["", "### Steps", "", "| step | outcome | time | detail |", "|---|---|---|---|"]
    lines += [f"| {s.name} | {s.outcome} | {s.duration_s:.2f}s | {s.detail[:200]} |" for s in r.steps]
    lines.append("")
    for comp in r.compensated:
        lines += [f"### Compensated crashed run `{comp.release_id}`: {'ok' if comp.ok else 'FAILED'}", ""]
        lines += _services_table("Compensation", comp.services)
    lines += _checks_table("Gates", r.gates)
    if r.approval is not None:
        a = r.approval
        lines += [f"### Approval: {a.decision}" + (f" by {a.approver}" if a.approver else ""), ""]
        lines += [f"- reason: {a.reason}"] if a.reason else []
        lines += [f"- signed with key {a.key}"] if a.key else []
        extra = ", destructive migrations allowed" if a.allow_destructive else ""
        lines += [f"- waited {a.waited_s:.0f}s{extra}", ""]
    if r.migration_plan is not None:
        lines += ["### Database", "", f"- pending: {', '.join(r.migration_plan.pending) or 'none'}",
                  f"- applied: {', '.join(r.migrations_applied) or 'none'}"]
        if r.migration_plan.contract:
            lines += [f"- expand phase (before the services): {', '.join(r.migration_plan.expand) or 'none'}",
                      f"- contract phase (after validation): applied {', '.join(r.contract_applied) or 'none'}"]
            lines += [f"- left to apply (the next deploy applies them): {', '.join(r.contract_left)}"] \
                if r.contract_left else []
        lines += [f"- {f.severity}: {f.message}" for f in r.migration_plan.findings]
        lines.append("")
    lines += _services_table("Services", r.services)
    lines += _checks_table("Validation", r.checks)
    if r.rollback is not None:
        rb = r.rollback
        lines += [f"### Rollback: {'completed' if rb.ok else 'FAILED'}", "", f"- reason: {rb.reason}"]
        if rb.migrations_reverted:
            lines.append(f"- migrations reverted: {', '.join(rb.migrations_reverted)}")
        lines += [f"- {n}" for n in rb.notes]
        lines.append("")
        lines += _services_table("Services rolled back", rb.services)
        lines += _checks_table("Health after rollback", rb.health)
    return "\n".join(lines)
