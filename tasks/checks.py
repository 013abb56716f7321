"""Run one gate or validation check as a task: ERROR re-run as its spec says (the check's own base, in
providers/checks/base.py, bounds its time and turns what it could not measure into ERROR)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar, cast

from prefect import task
from prefect.client.schemas.objects import State
from prefect.logging import get_run_logger
from prefect.states import Cancelled, Completed, Failed
from prefect.utilities.annotations import quote

from deployments.spec import CheckSpec
from providers.checks.base import Check, CheckInput
from providers.errors import AevonError
from providers.models import CheckResult, Outcome, utcnow
from tasks.common import TASK_DEFAULTS, as_is, upstream
from tasks.stop import StopSignal, until_stopped

T = TypeVar("T")


@task(name="check", task_run_name="{phase}-{spec.name}", **{**TASK_DEFAULTS, "retries": 0})
async def check_task(
    check: Check, spec: CheckSpec, inp: CheckInput, phase: str, stop: StopSignal | None = None
) -> State[CheckResult]:
    """Measure (see `_measure`); the task run ends in a state that says the outcome: Completed when it PASSED,
    Failed when it FAILED, Failed named "Error" for a blocking ERROR, Cancelled when `stop` fired first (another
    check failed: the measurement is cancelled and its child processes killed). Each state carries the result,
    with the time the measurement began (`started_at`)."""
    started = utcnow()
    measured, stopped = await until_stopped(_measure(check, spec, inp, phase), stop)
    if stopped or measured is None:
        reason = stop.reason if stop is not None else "stopped"
        result = CheckResult(name=spec.name, kind=spec.kind, outcome=Outcome.CANCELLED, summary=f"cancelled: {reason}",
                             started_at=started, duration_s=(utcnow() - started).total_seconds())
        return Cancelled(data=result, message=result.summary)
    measured.started_at = started
    return outcome_state(measured, spec)


def outcome_state(result: CheckResult, spec: CheckSpec) -> State[CheckResult]:
    """The Prefect state a check's task run ends in, carrying `result` (Prefect UI: failed checks in red)."""
    if result.outcome == Outcome.FAILED:
        return Failed(data=result, message=f"FAILED: {result.summary}"[:500])
    if result.outcome == Outcome.ERROR and is_blocking(result, spec):
        return Failed(name="Error", data=result, message=f"ERROR: {result.summary}"[:500])
    if result.outcome == Outcome.ERROR:
        return Completed(name="ErrorIgnored", data=result, message=f"ERROR: {result.summary}"[:500])
    return Completed(data=result, message=result.summary[:500])


async def run_check(
    check: Check, spec: CheckSpec, inp: CheckInput, phase: str, stop: StopSignal | None = None
) -> CheckResult:
    """Run `check` as a `check` task run named `<phase>-<name>` and return its result whatever state it ended in.

    Pass `check` and `inp` as they are: this wraps them (a caller's own `as_is` is undone, never doubled)."""
    return (await run_check_state(check, spec, inp, phase, stop))[0]


async def run_check_state(
    check: Check, spec: CheckSpec, inp: CheckInput, phase: str, stop: StopSignal | None = None,
    after: list[State[Any]] | None = None,
) -> tuple[CheckResult, State[CheckResult]]:
    """`run_check`, also returning the task run's final state; `after` (finished task runs' states: the caller
    waited for them) become the task run's upstream in Prefect's run graph."""
    check, inp = _bare(check), _bare(inp)
    call = check_task(as_is(check), as_is(spec), as_is(inp), phase, as_is(stop), return_state=True,
                      wait_for=upstream(after or []))
    state = await cast("Awaitable[State[CheckResult]]", call)  # an async task's call is a coroutine
    data: Any = await state.aresult(raise_on_failure=False)
    if isinstance(data, CheckResult):
        return data, state
    if isinstance(data, BaseException):  # the task run crashed outside the check (Prefect API ...)
        raise data
    raise AevonError(f"{phase} {spec.name}: its task run ended {state.name} without a result")


def _bare(value: T) -> T:
    return cast(T, value.unwrap()) if isinstance(value, quote) else value


async def _measure(check: Check, spec: CheckSpec, inp: CheckInput, phase: str) -> CheckResult:
    """Measure; re-run up to `spec.error_retries` times while the outcome is ERROR; apply `spec.on_error`."""
    attempts = 0
    while True:
        attempts += 1
        result = await check.run(inp)  # never raises: a check returns ERROR when it could not measure
        if result.outcome != Outcome.ERROR or attempts > spec.error_retries:
            break
        get_run_logger().warning("%s %s could not measure (%s); again in %.1fs", phase, spec.name, result.summary,
                       spec.retry_delay_s)
        await asyncio.sleep(spec.retry_delay_s)
    result.attempts = attempts
    if result.outcome == Outcome.ERROR and spec.on_error == "pass":
        result.summary = f"{result.summary} (ERROR counted as pass by on_error)"
    return result


def is_blocking(result: CheckResult, spec: CheckSpec) -> bool:
    """True when `result` must stop the run (gate) or trigger rollback (validation)."""
    if result.outcome == Outcome.FAILED:
        return True
    return result.outcome == Outcome.ERROR and spec.on_error == "fail"
