"""Fail fast, stages and the bake (tasks/validation.py): what runs, what is cancelled, and the task runs' states."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.context import get_run_context

from deployments.spec import CheckSpec, StageSpec, ValidationSpec
from providers.checks.base import Check, CheckInput
from providers.models import CheckResult, Outcome, Release
from tasks.stop import StopSignal
from tasks.validation import BakeRun, StageRun, bake, run_stage, run_stages

pytestmark = pytest.mark.usefixtures("prefect_api")

INP = CheckInput(release=Release(release_id="r", env="dev", ref="v2", sha="0" * 40), services={})


class Timed:
    """Waits `seconds`, then returns `outcome` (FAILED from run `fail_from_run` on); logs start, end, cancelled."""

    kind = "timed"

    def __init__(self, name: str, seconds: float, log: list[str], outcome: Outcome = Outcome.PASSED,
                 fail_from_run: int = 0) -> None:
        self.name, self.seconds, self.log, self.outcome, self.fail_from_run = name, seconds, log, outcome, fail_from_run
        self.runs = 0

    async def run(self, inp: CheckInput) -> CheckResult:
        self.runs += 1
        self.log.append(f"start {self.name}")
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.log.append(f"cancelled {self.name}")
            raise
        self.log.append(f"end {self.name}")
        failed = 0 < self.fail_from_run <= self.runs
        return CheckResult(name=self.name, kind=self.kind, outcome=Outcome.FAILED if failed else self.outcome,
                           summary=f"run {self.runs}")

    async def record_baseline(self, inp: CheckInput, result: CheckResult) -> None:
        return None


def pair(check: Timed, exclusive: bool = False, **spec: Any) -> tuple[CheckSpec, Check]:
    return CheckSpec(name=check.name, kind="timed", exclusive=exclusive, error_retries=0, **spec), check


async def task_states(flow_run_id: UUID) -> dict[str, tuple[str, str, str]]:
    """Task run name -> (state type, state name, message), read back from the Prefect API."""
    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: (str(r.state.type.value), r.state.name, r.state.message or "") for r in runs if r.state}


def flow_run_id() -> UUID:
    ctx = get_run_context()
    return ctx.flow_run.id  # type: ignore[union-attr]


async def test_the_first_failure_cancels_running_checks_and_later_stages() -> None:
    log: list[str] = []
    pairs = [pair(Timed("fast-fail", 0.2, log, Outcome.FAILED)), pair(Timed("slow", 60, log)),
             pair(Timed("quick", 0.01, log)), pair(Timed("perf", 60, log), exclusive=True),
             pair(Timed("monitor", 0.01, log))]
    stages = [StageSpec(name="functional", checks=["fast-fail", "slow", "quick", "perf"]),
              StageSpec(name="monitoring", checks=["monitor"])]

    @flow(name="fail-fast-test")
    async def validate() -> tuple[UUID, list[StageRun], StopSignal]:
        stop = StopSignal()
        return flow_run_id(), await run_stages(pairs, stages, INP, stop), stop

    run_id, runs, stop = await validate()
    first, second = runs
    by_name = {r.name: r for r in first.results}
    assert by_name["fast-fail"].outcome == Outcome.FAILED
    assert by_name["quick"].outcome == Outcome.PASSED  # finished before the failure: keeps its result
    assert by_name["slow"].outcome == Outcome.CANCELLED and by_name["slow"].summary == "cancelled: fast-fail failed"
    assert by_name["perf"].outcome == Outcome.CANCELLED and by_name["perf"].summary.startswith("not started:")
    assert first.outcome == "failed" and second.outcome == "not started"
    assert [r.outcome for r in second.results] == [Outcome.CANCELLED]
    assert "cancelled slow" in log and "end slow" not in log
    assert not any(line.endswith(("perf", "monitor")) for line in log)  # never started
    assert stop.reason == "fast-fail failed"
    states = await task_states(run_id)
    assert states["validate-fast-fail"][:2] == ("FAILED", "Failed")
    assert states["validate-fast-fail"][2].startswith("FAILED: ")
    assert states["validate-slow"][:2] == ("CANCELLED", "Cancelled")
    assert states["validate-slow"][2] == "cancelled: fast-fail failed"
    assert states["validate-quick"][:2] == ("COMPLETED", "Completed")
    assert "validate-perf" not in states and "validate-monitor" not in states  # no task run for unstarted checks


async def test_error_states_say_error_and_count_as_failure_only_when_on_error_is_fail() -> None:
    class Broken(Timed):
        async def run(self, inp: CheckInput) -> CheckResult:
            return CheckResult(name=self.name, kind=self.kind, outcome=Outcome.ERROR, summary="cannot measure")

    log: list[str] = []
    pairs = [pair(Broken("blocking-error", 0, log)), pair(Broken("tolerated-error", 0, log), on_error="pass")]

    @flow(name="error-state-test")
    async def validate() -> tuple[UUID, list[CheckResult]]:
        return flow_run_id(), await run_stage(pairs, INP, "validate", StopSignal())

    run_id, results = await validate()
    assert [r.outcome for r in results] == [Outcome.ERROR, Outcome.ERROR]
    states = await task_states(run_id)
    assert states["validate-blocking-error"][:2] == ("FAILED", "Error")
    assert states["validate-blocking-error"][2].startswith("ERROR: ")
    assert states["validate-tolerated-error"][:2] == ("COMPLETED", "ErrorIgnored")


async def test_stages_run_in_order_each_after_the_one_before_passed() -> None:
    log: list[str] = []
    pairs = [pair(Timed(n, 0.05 * (i % 3), log)) for i, n in enumerate(["h1", "h2", "e2e", "dast", "sentry"])]
    pairs.append(pair(Timed("perf", 0.01, log), exclusive=True))
    spec = ValidationSpec(checks=[s for s, _ in pairs])  # the default stages, by kind and `exclusive`
    stages = [StageSpec(name="smoke", checks=["h1", "h2"]), StageSpec(name="functional", checks=["e2e", "dast"]),
              StageSpec(name="load", checks=["perf"]), StageSpec(name="monitoring", checks=["sentry"])]

    @flow(name="stage-order-test")
    async def validate() -> list[StageRun]:
        return await run_stages(pairs, stages, INP, StopSignal())

    runs = await validate()
    assert [r.outcome for r in runs] == ["passed"] * 4
    position = {line: i for i, line in enumerate(log)}
    for before, after in itertools.pairwise(stages):
        last_end = max(position[f"end {n}"] for n in before.checks)
        first_start = min(position[f"start {n}"] for n in after.checks)
        assert last_end < first_start, (before.name, after.name, log)
    assert [s.name for s in spec.stage_plan()] == ["functional", "load"]  # kind "timed": functional; exclusive: load


async def test_without_fail_fast_every_check_and_stage_runs_to_its_end() -> None:
    log: list[str] = []
    pairs = [pair(Timed("fast-fail", 0.01, log, Outcome.FAILED)), pair(Timed("slow", 0.3, log)),
             pair(Timed("later", 0.01, log))]
    stages = [StageSpec(name="a", checks=["fast-fail", "slow"]), StageSpec(name="b", checks=["later"])]

    @flow(name="wait-for-all-test")
    async def validate() -> list[StageRun]:
        return await run_stages(pairs, stages, INP, None)

    runs = await validate()
    assert [r.outcome for r in runs] == ["failed", "passed"]
    assert "end slow" in log and "end later" in log


async def test_a_regression_during_the_bake_ends_it_and_names_the_check() -> None:
    log: list[str] = []
    pairs = [pair(Timed("errors", 0.01, log, fail_from_run=3)), pair(Timed("alerts", 0.3, log)),
             pair(Timed("e2e", 0.01, log))]
    spec = ValidationSpec(checks=[s for s, _ in pairs], bake_s=600, bake_interval_s=0.05,
                          bake_checks=["errors", "alerts"])

    @flow(name="bake-test")
    async def baking() -> tuple[UUID, BakeRun]:
        return flow_run_id(), await bake(pairs, spec, INP, StopSignal())

    run_id, run = await baking()
    assert run.watched == ["errors", "alerts"] and run.rounds == 3
    assert [r.name for r in run.failed] == ["errors"]
    assert {r.name: r.outcome for r in run.last} == {"errors": Outcome.FAILED, "alerts": Outcome.CANCELLED}
    assert "start e2e" not in log  # the bake watches only its checks
    states = await task_states(run_id)
    assert states["bake-3-errors"][0] == "FAILED" and states["bake-1-errors"][0] == "COMPLETED"
    assert states["bake-3-alerts"][0] == "CANCELLED"


async def test_a_quiet_bake_lasts_its_window_in_rounds() -> None:
    log: list[str] = []
    pairs = [pair(Timed("errors", 0.01, log))]
    spec = ValidationSpec(checks=[s for s, _ in pairs], bake_s=0.5, bake_interval_s=0.2)

    @flow(name="bake-quiet-test")
    async def baking() -> BakeRun:
        return await bake(pairs, spec, INP, StopSignal())

    run = await baking()
    assert run.failed == [] and run.watched == [] and run.rounds == 0  # kind "timed" is no monitoring kind
    spec = ValidationSpec(checks=[s for s, _ in pairs], bake_s=0.5, bake_interval_s=0.25, bake_checks=["errors"])

    @flow(name="bake-quiet-test")
    async def baking2() -> BakeRun:
        return await bake(pairs, spec, INP, StopSignal())

    run = await baking2()
    assert run.failed == [] and run.rounds >= 2 and run.duration_s >= 0.5  # rounds at 0 s and 0.25 s


async def test_run_check_takes_its_arguments_wrapped_or_not() -> None:
    from tasks.checks import run_check
    from tasks.common import as_is

    log: list[str] = []
    spec, check = pair(Timed("wrapped", 0.01, log))

    @flow(name="run-check-args-test")
    async def both() -> list[CheckResult]:
        return [await run_check(as_is(check), spec, as_is(INP), "validate"), await run_check(check, spec, INP, "v")]

    assert [r.outcome for r in await both()] == [Outcome.PASSED, Outcome.PASSED]  # a quote twice crashed the run
