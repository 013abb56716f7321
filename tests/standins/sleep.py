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


class SleepCheck(BaseCheck):
    """Sleeps `settings.seconds` (default 1) and returns `settings.outcome` (default PASSED)."""

    kind = "sleep"

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        settings = ctx.settings(SleepSettings)
        self.seconds = settings.seconds
        self.outcome = settings.outcome

    async def measure(self, inp: CheckInput) -> CheckResult:
        await asyncio.sleep(self.seconds)
        return self.result(self.outcome, f"slept {self.seconds:.1f}s")


def make_check(ctx: CheckContext) -> SleepCheck:
    """Factory registered as `sleep`."""
    return SleepCheck(ctx)
