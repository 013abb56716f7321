"""Run one gate or validation check as a task: ERROR re-run as its spec says (the check's own base, in
providers/checks/base.py, bounds its time and turns what it could not measure into ERROR)."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.logging import get_run_logger

from deployments.spec import CheckSpec
from providers.checks.base import Check, CheckInput
from providers.models import CheckResult, Outcome
from tasks.common import TASK_DEFAULTS


@task(name="check", task_run_name="{phase}-{spec.name}", **{**TASK_DEFAULTS, "retries": 0})
async def run_check(check: Check, spec: CheckSpec, inp: CheckInput, phase: str) -> CheckResult:
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
