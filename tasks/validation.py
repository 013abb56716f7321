"""The validation stage: checks in parallel, then `exclusive` ones (load tests) alone, results in spec order."""

from __future__ import annotations

import asyncio

from deployments.spec import CheckSpec
from providers.checks.base import Check, CheckInput
from providers.models import CheckResult
from tasks.checks import run_check
from tasks.common import as_is


async def run_stage(checks: list[tuple[CheckSpec, Check]], inp: CheckInput, phase: str = "validate"
                    ) -> list[CheckResult]:
    """Run every check as a `run_check` task; return their results in the order of `checks`.

    Checks run in parallel, except those marked `exclusive` (a performance smoke): they start once the parallel
    ones have finished, one at a time, so that no E2E browser or DAST scan competes with them for the machine or
    for the service they measure (measured here: a concurrent DAST scan and E2E run inflated the perf smoke's p95
    about fivefold, enough to fake a regression). Must be called inside a flow run, as tasks are.
    """
    together = [(s, c) for s, c in checks if not s.exclusive]
    alone = [(s, c) for s, c in checks if s.exclusive]
    results = await asyncio.gather(*(run_check(as_is(c), s, as_is(inp), phase) for s, c in together))
    by_name = {s.name: r for (s, _), r in zip(together, results, strict=True)}
    for s, c in alone:
        by_name[s.name] = await run_check(as_is(c), s, as_is(inp), phase)
    return [by_name[s.name] for s, _ in checks]
