"""A check that waits a fixed time and passes: the bench's stand-in for a real measurement."""

from __future__ import annotations

import asyncio
import time

from providers.checks.base import CheckContext, CheckInput
from providers.models import CheckResult, Outcome


class SleepCheck:
    """Sleeps `settings.seconds` (default 1) and returns `settings.outcome` (default PASSED)."""

    kind = "sleep"

    def __init__(self, ctx: CheckContext) -> None:
        self.name = ctx.spec.name
        self.seconds = float(ctx.spec.settings.get("seconds", 1.0))
        self.outcome = Outcome(str(ctx.spec.settings.get("outcome", "PASSED")))

    async def run(self, inp: CheckInput) -> CheckResult:
        start = time.monotonic()
        await asyncio.sleep(self.seconds)
        return CheckResult(
            name=self.name, kind=self.kind, outcome=self.outcome, duration_s=time.monotonic() - start,
            summary=f"slept {self.seconds:.1f}s",
        )

    async def record_baseline(self, inp: CheckInput, result: CheckResult) -> None:
        return None


def make_check(ctx: CheckContext) -> SleepCheck:
    """Factory registered as `sleep`."""
    return SleepCheck(ctx)
