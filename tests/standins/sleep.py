"""A check that waits a fixed time and passes: the bench's stand-in for a real measurement."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from providers.checks.base import BaseCheck, CheckContext, CheckInput
from providers.models import CheckResult, Outcome


class SleepSettings(BaseModel):
    """Settings of the `sleep` stand-in."""

    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(default=1.0, ge=0)
    outcome: Outcome = Outcome.PASSED
    fail_from_run: int = Field(default=0, ge=0)


class SleepCheck(BaseCheck):
    """Sleeps `settings.seconds` (default 1) and returns `settings.outcome` (default PASSED).

    `settings.fail_from_run` (N): runs 1 .. N-1 pass, run N and later return FAILED (a regression during the bake).
    """

    kind = "sleep"

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        settings = ctx.settings(SleepSettings)
        self.seconds = settings.seconds
        self.outcome = settings.outcome
        self.fail_from_run = settings.fail_from_run
        self.runs = 0

    async def measure(self, inp: CheckInput) -> CheckResult:
        self.runs += 1
        await asyncio.sleep(self.seconds)
        regressed = 0 < self.fail_from_run <= self.runs
        return self.result(Outcome.FAILED if regressed else self.outcome,
                           f"slept {self.seconds:.1f}s (run {self.runs})")


def make_check(ctx: CheckContext) -> SleepCheck:
    """Factory registered as `sleep`."""
    return SleepCheck(ctx)
