"""The deploy flow's validation: stages with fail fast, then the bake window, each shown as a step of the report."""

from __future__ import annotations

from datetime import timedelta

from prefect.logging import get_run_logger

from flows.report import DeployReport, StepRecord
from flows.runtime import Runtime
from providers.checks.base import CheckInput
from providers.models import CheckResult, Outcome, utcnow
from tasks.stop import StopSignal
from tasks.validation import BakeRun, StageRun, bake, blocking, run_stages


def _stage_detail(run: StageRun) -> str:
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


def _step(name: str, run: StageRun | BakeRun, outcome: str, detail: str) -> StepRecord:
    return StepRecord(name=name, started_at=run.started_at or utcnow(), duration_s=run.duration_s, outcome=outcome,
                      detail=detail)


async def validate(rt: Runtime, report: DeployReport, inp: CheckInput) -> list[CheckResult]:
    """Run `rt.checks` in the spec's stages, then the bake window; return the blocking results (none: passed).

    `report.checks` gets one result per check, in spec order (a check whose bake round regressed shows that round's
    result); `report.steps` one step per stage ("validation <i>/<n>: <stage>") and one for the bake ("bake <s>s").
    With `validation.fail_fast` (the default) the first blocking result cancels everything still running, and the
    caller starts the rollback at once.
    """
    spec = rt.spec.validation
    stop = StopSignal() if spec.fail_fast else None
    stages = spec.stage_plan()
    runs = await run_stages(rt.checks, stages, inp, stop)
    by_name = {r.name: r for run in runs for r in run.results}
    for i, run in enumerate(runs, 1):
        report.steps.append(_step(f"validation {i}/{len(runs)}: {run.name}", run, run.outcome, _stage_detail(run)))
    failed = blocking(rt.checks, list(by_name.values()))
    if not failed and spec.bake_s > 0:
        baked = await bake(rt.checks, spec, inp, stop)
        outcome = "failed" if baked.failed else "ok"
        report.steps.append(_step(f"bake {spec.bake_s:g}s", baked, outcome, _bake_detail(baked)))
        for r in baked.failed:
            r.summary = f"bake round {baked.rounds}: {r.summary}"
            by_name[r.name] = r
        failed = baked.failed
    report.checks = [by_name[s.name] for s, _ in rt.checks]
    if failed and stop is not None and stop.at is not None:
        get_run_logger().warning("validation: %s; rolling back now", stop.reason)
    return failed


def time_to_rollback(report: DeployReport) -> float | None:
    """Seconds from the failing validation result to the start of the rollback step, from the report's times
    (None when validation did not fail or nothing was rolled back). A failure in a stage happened its check's
    duration after the stage began; one during the bake, when the bake step ended."""
    rollback = next((s for s in report.steps if s.name == "rollback"), None)
    failed = next((s for s in report.steps if s.outcome == "failed" and s.name.startswith(("validation ", "bake "))),
                  None)
    if rollback is None or failed is None:
        return None
    if failed.name.startswith("bake "):
        at = failed.started_at + timedelta(seconds=failed.duration_s)
    else:
        bad = [r.duration_s for r in report.checks if r.outcome in (Outcome.FAILED, Outcome.ERROR)]
        at = failed.started_at + timedelta(seconds=min(bad, default=failed.duration_s))
    return (rollback.started_at - at).total_seconds()
