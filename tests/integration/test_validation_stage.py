"""The validation stage: checks in parallel, `exclusive` ones (the perf smoke) alone after them, results in order."""

from __future__ import annotations

import asyncio

import pytest
from prefect import flow

from deployments.spec import CheckSpec
from providers.checks.base import Check, CheckInput
from providers.models import CheckResult, Outcome, Release
from tasks.validation import run_stage

pytestmark = pytest.mark.usefixtures("prefect_api")


class Probe:
    """A check that logs when it starts and ends, and waits for the test to let it finish."""

    kind = "probe"

    def __init__(self, name: str, log: list[str], release: asyncio.Event) -> None:
        self.name, self.log, self.release = name, log, release

    async def run(self, inp: CheckInput) -> CheckResult:
        self.log.append(f"start {self.name}")
        await self.release.wait()
        await asyncio.sleep(0)
        self.log.append(f"end {self.name}")
        return CheckResult(name=self.name, kind=self.kind, outcome=Outcome.PASSED)

    async def record_baseline(self, inp: CheckInput, result: CheckResult) -> None:
        return None


async def test_exclusive_checks_run_alone_after_the_others() -> None:
    log: list[str] = []
    go = asyncio.Event()
    names = [("perf-a", True), ("health", False), ("perf-b", True), ("e2e", False), ("dast", False)]
    pairs: list[tuple[CheckSpec, Check]] = [
        (CheckSpec(name=n, kind="probe", exclusive=excl, error_retries=0), Probe(n, log, go)) for n, excl in names
    ]
    inp = CheckInput(release=Release(release_id="r", env="dev", ref="v2", sha="0" * 40), services={})

    @flow(name="stage-test")
    async def stage() -> list[CheckResult]:
        async def open_gate() -> None:
            while len(log) < 3:  # every parallel check has started before any may finish
                await asyncio.sleep(0.01)
            go.set()

        results, _ = await asyncio.gather(run_stage(pairs, inp), open_gate())
        return results

    results = await stage()
    assert [r.name for r in results] == [n for n, _ in names]  # the spec's order, whatever ran first
    assert sorted(log[:3]) == ["start dast", "start e2e", "start health"]
    assert sorted(log[3:6]) == ["end dast", "end e2e", "end health"]
    assert log[6:] == ["start perf-a", "end perf-a", "start perf-b", "end perf-b"]
