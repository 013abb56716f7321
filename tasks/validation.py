"""Validation: checks in stages, the first blocking result cancelling the rest (fail fast), then the bake window."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

from deployments.spec import CheckSpec, StageSpec, ValidationSpec
from providers.checks.base import Check, CheckInput
from providers.models import CheckResult, Outcome, utcnow
from tasks.checks import is_blocking, run_check
from tasks.stop import StopSignal

Pair = tuple[CheckSpec, Check]


def _reason(result: CheckResult) -> str:
    return f"{result.name} failed" + (" (ERROR: could not measure)" if result.outcome == Outcome.ERROR else "")


def not_started(spec: CheckSpec, stop: StopSignal) -> CheckResult:
    """The result of a check that never started because another one failed first (no task run is created)."""
    return CheckResult(name=spec.name, kind=spec.kind, outcome=Outcome.CANCELLED, summary=f"not started: {stop.reason}",
                       attempts=0)


async def _watched(spec: CheckSpec, check: Check, inp: CheckInput, phase: str, stop: StopSignal | None
                   ) -> CheckResult:
    if stop is not None and stop.is_set():
        return not_started(spec, stop)
    result = await run_check(check, spec, inp, phase, stop)
    if stop is not None and is_blocking(result, spec):
        stop.set(_reason(result))
    return result


async def run_stage(checks: list[Pair], inp: CheckInput, phase: str = "validate", stop: StopSignal | None = None
                    ) -> list[CheckResult]:
    """Run every check as a `check` task run; return their results in the order of `checks`.

    Checks run in parallel, except those marked `exclusive` (a performance smoke): they start once the parallel
    ones have finished, one at a time, so that no E2E browser or DAST scan competes with them for the machine or
    for the service they measure (measured here: a concurrent DAST scan and E2E run inflated the perf smoke's p95
    about fivefold, enough to fake a regression). With `stop`, the first blocking result fires it: the checks still
    running are cancelled (their task runs end Cancelled, their child processes are killed) and the ones not yet
    started never start; both come back CANCELLED, saying which check failed. Without it, every check runs to its
    end (the old behaviour). Must be called inside a flow run, as tasks are.
    """
    together = [(s, c) for s, c in checks if not s.exclusive]
    alone = [(s, c) for s, c in checks if s.exclusive]
    results = await asyncio.gather(*(_watched(s, c, inp, phase, stop) for s, c in together))
    by_name = {s.name: r for (s, _), r in zip(together, results, strict=True)}
    for s, c in alone:
        by_name[s.name] = await _watched(s, c, inp, phase, stop)
    return [by_name[s.name] for s, _ in checks]


@dataclass
class StageRun:
    """One validation stage as it ran: `outcome` is passed, failed, or not started (an earlier stage failed)."""

    name: str
    checks: list[str]
    results: list[CheckResult] = field(default_factory=list)
    outcome: str = "not started"
    started_at: datetime | None = None
    duration_s: float = 0.0


def stage_pairs(checks: list[Pair], stages: list[StageSpec]) -> list[list[Pair]]:
    """The checks of each stage, in the stage's order."""
    by_name = {s.name: (s, c) for s, c in checks}
    return [[by_name[n] for n in st.checks if n in by_name] for st in stages]


def blocking(checks: list[Pair], results: list[CheckResult]) -> list[CheckResult]:
    """The results among `results` that must trigger the rollback."""
    specs = {s.name: s for s, _ in checks}
    return [r for r in results if r.name in specs and is_blocking(r, specs[r.name])]


async def run_stages(checks: list[Pair], stages: list[StageSpec], inp: CheckInput, stop: StopSignal | None
                     ) -> list[StageRun]:
    """Run the stages in order, each starting only when the one before passed.

    With `stop` (fail fast) the first blocking result cancels its stage's running checks and no later stage starts;
    their checks come back CANCELLED ("not started: <check> failed"). Without it every stage runs to its end
    whatever failed (the old wait-for-all behaviour, kept as the benchmark's baseline).
    """
    runs: list[StageRun] = []
    for st, pairs in zip(stages, stage_pairs(checks, stages), strict=True):
        run = StageRun(name=st.name, checks=[s.name for s, _ in pairs])
        runs.append(run)
        if stop is not None and stop.is_set():
            run.results = [not_started(s, stop) for s, _ in pairs]
            continue
        run.started_at, t0 = utcnow(), time.monotonic()
        run.results = await run_stage(pairs, inp, "validate", stop)
        run.duration_s = time.monotonic() - t0
        run.outcome = "failed" if blocking(pairs, run.results) else "passed"
    return runs


@dataclass
class BakeRun:
    """The bake window as it ran: what it watched, how many rounds, and the first regression (if any)."""

    watched: list[str]
    bake_s: float
    rounds: int = 0
    failed: list[CheckResult] = field(default_factory=list)
    last: list[CheckResult] = field(default_factory=list)
    started_at: datetime | None = None
    duration_s: float = 0.0


async def bake(checks: list[Pair], spec: ValidationSpec, inp: CheckInput, stop: StopSignal | None) -> BakeRun:
    """After the stages passed: repeat the bake checks every `bake_interval_s` until `bake_s` is over.

    Each round runs the watched checks together as task runs named `bake-<round>-<check>`; a blocking result in
    a round ends the bake at once (with `stop`, cancelling the round's other checks) and is returned in `failed`.
    A round that starts before the end of the window runs to its end (a check observes for its own window).
    """
    names = spec.baked()
    pairs = [(s, c) for s, c in checks if s.name in names]
    run = BakeRun(watched=[s.name for s, _ in pairs], bake_s=spec.bake_s, started_at=utcnow())
    t0 = time.monotonic()
    deadline = t0 + spec.bake_s
    while pairs and time.monotonic() < deadline:
        round_start = time.monotonic()
        run.rounds += 1
        run.last = await run_stage(pairs, inp, f"bake-{run.rounds}", stop)
        run.failed = blocking(pairs, run.last)
        if run.failed:
            break
        pause = min(round_start + spec.bake_interval_s, deadline) - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
    run.duration_s = time.monotonic() - t0
    return run
