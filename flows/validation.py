"""The deploy flow's validation records: each stage and the bake as a step of the report (logged when it starts and
ends), the bake window itself, and the time to rollback read back from a report."""

from __future__ import annotations

from datetime import timedelta

from flows.report import DeployReport
from flows.runtime import Runtime
from providers.checks.base import CheckInput
from providers.models import CheckResult, Outcome
from tasks.stop import StopSignal
from tasks.validation import BakeRun, StageRun, bake


def stage_detail(run: StageRun) -> str:
    """A stage's step detail: passed count, what failed and after how long, what was cancelled."""
    if run.outcome == "not started":
        return f"not started: {', '.join(run.checks)}"
    bad = [r for r in run.results if r.outcome in (Outcome.FAILED, Outcome.ERROR)]
    cancelled = [r.name for r in run.results if r.outcome == Outcome.CANCELLED]
    passed = sum(r.outcome == Outcome.PASSED for r in run.results)
    out = f"{passed}/{len(run.results)} passed"
    out += "".join(f"; {r.name} {r.outcome} after {r.duration_s:.2f}s" for r in bad)
    return out + (f"; cancelled: {', '.join(cancelled)}" if cancelled else "")


def _bake_detail(run: BakeRun) -> str:
    watched = ", ".join(run.watched) or "nothing (no health, sentry or prometheus check)"
    if run.failed:
        first = run.failed[0]
        return (f"watched {watched}; {first.name} {first.outcome} in round {run.rounds} "
                f"({run.duration_s:.0f}s into the bake): {first.summary[:120]}")
    return f"watched {watched}: {run.rounds} round(s) over {run.duration_s:.0f}s, no regression"


async def bake_step(rt: Runtime, report: DeployReport, inp: CheckInput, stop: StopSignal | None
                    ) -> list[CheckResult]:
    """After every stage passed: the bake window (`validation.bake_s`) as the report's step "bake <s>s", logged when
    it starts and ends; returns its blocking results (none: no regression). A check that regressed replaces its
    stage result in `report.checks`, its summary saying in which round."""
    spec = rt.spec.validation
    if spec.bake_s <= 0:
        return []
    rec = report.start_step(f"bake {spec.bake_s:g}s")
    baked = await bake(rt.checks, spec, inp, stop)
    rec.duration_s, rec.outcome = baked.duration_s, "failed" if baked.failed else "ok"
    rec.detail = _bake_detail(baked)
    report.end_step(rec)
    for r in baked.failed:
        r.summary = f"bake round {baked.rounds}: {r.summary}"
        report.checks = [r if c.name == r.name else c for c in report.checks]
    return baked.failed


def time_to_rollback(report: DeployReport) -> float | None:
    """Seconds from the failing validation result to the start of the rollback step, from the report's times
    (None when validation did not fail or nothing was rolled back). A check's failure happened its duration after
    it started; one during the bake, when the bake step ended."""
    rollback = next((s for s in report.steps if s.name == "rollback"), None)
    failed = next((s for s in report.steps if s.outcome == "failed" and s.name.startswith(("validation ", "bake "))),
                  None)
    if rollback is None or failed is None:
        return None
    if failed.name.startswith("bake "):
        at = failed.started_at + timedelta(seconds=failed.duration_s)
    else:
        bad = [r for r in report.checks if r.outcome in (Outcome.FAILED, Outcome.ERROR)]
        ends = [r.started_at + timedelta(seconds=r.duration_s) for r in bad if r.started_at is not None]
        at = min(ends) if ends else failed.started_at + timedelta(
            seconds=min((r.duration_s for r in bad), default=failed.duration_s))
    return (rollback.started_at - at).total_seconds()
