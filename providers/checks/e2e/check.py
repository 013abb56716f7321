"""Playwright E2E gate: the runbook's critical user flows on Debian's Chromium, or the app's own Playwright suite."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from pathlib import Path

from playwright.async_api import BrowserContext, Page, async_playwright
from playwright.async_api import Error as PlaywrightError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from providers.checks.base import BaseCheck, CheckContext, CheckInput, service_url
from providers.checks.e2e.steps import FlowRunner, FlowSpec, StepFailed, Unreachable
from providers.checks.e2e.suite import SuiteSpec, run_suite
from providers.errors import ConfigError
from providers.models import CheckResult, Finding, Severity

# Debian's Chromium as these machines need it: no sandbox as root, and no calls to outside hosts.
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
)
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


class ChromiumSettings(BaseModel):
    """Which browser and how to launch it."""

    model_config = ConfigDict(extra="forbid")
    executable_path: str = "/usr/bin/chromium"
    extra_args: list[str] = Field(default_factory=list)
    launch_timeout_s: float = Field(default=30, gt=0)
    viewport: tuple[int, int] = (1280, 800)


class E2ESettings(BaseModel):
    """Either `flows` (declared steps) or `suite` (the app's own Playwright command); base URL = the service's."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = None
    flows: list[FlowSpec] = Field(default_factory=list)
    suite: SuiteSpec | None = None
    step_timeout_s: float = Field(default=10, gt=0, description="how long a step waits for its element or text")
    trace: bool = Field(default=True, description="save a Playwright trace of a failed flow")
    chromium: ChromiumSettings = Field(default_factory=ChromiumSettings)

    @model_validator(mode="after")
    def _one_mode(self) -> E2ESettings:
        if bool(self.flows) == (self.suite is not None):
            raise ValueError("give either flows or suite")
        names = [f.name for f in self.flows]
        if len(set(names)) != len(names):
            raise ValueError(f"flow names must be unique: {names}")
        return self


def slug(text: str) -> str:
    return _SLUG.sub("-", text).strip("-").lower() or "x"


class _Journey:
    """One run of the flows: a browser context and page, timings, artifacts, the first failure."""

    def __init__(self, check: E2ECheck, context: BrowserContext, page: Page, out_dir: Path, base: str) -> None:
        self.check, self.context, self.page, self.out_dir = check, context, page, out_dir
        self.runner = FlowRunner(page, base, check.secrets, secrets.token_hex(4), check.settings.step_timeout_s)
        self.metrics: dict[str, float] = {}
        self.artifacts: dict[str, str] = {}
        self.findings: list[Finding] = []
        self.passed: list[str] = []
        self.unreachable: str | None = None
        # A trace records what was typed: a run that types a secret keeps none (screenshots show only dots).
        self.tracing = check.settings.trace and not any(f.secret_keys for f in check.settings.flows)

    async def run(self) -> None:
        if self.tracing:
            await self.context.tracing.start(screenshots=True, snapshots=True)
        for flow in self.check.settings.flows:
            if not await self._flow(flow):
                break

    async def _flow(self, flow: FlowSpec) -> bool:
        if self.tracing:
            await self.context.tracing.start_chunk(title=flow.name)
        t0 = time.monotonic()
        failure: StepFailed | Unreachable | None = None
        try:
            await self.runner.run(flow)
        except (StepFailed, Unreachable) as exc:
            failure = exc
        self.metrics[f"flow.{slug(flow.name)}.ms"] = round((time.monotonic() - t0) * 1000, 1)
        if failure is None:
            if self.tracing:
                await self.context.tracing.stop_chunk()
            self.passed.append(flow.name)
            return True
        await self._keep_evidence(flow)
        if isinstance(failure, Unreachable):
            self.unreachable = f"flow {flow.name!r}: {failure}"
        else:
            self.findings.append(Finding(
                message=f"flow {flow.name!r} {failure}", severity=Severity.HIGH, location=flow.name,
                detail={"flow": flow.name, "step": failure.index, "action": failure.step, "expected": failure.expected,
                        "seen": failure.seen},
            ))
        return False

    async def _keep_evidence(self, flow: FlowSpec) -> None:
        """Screenshot and trace of the failed flow under the release's artifacts folder."""
        stem = f"e2e-{slug(self.check.name)}-{slug(flow.name)}"
        await asyncio.to_thread(self.out_dir.mkdir, parents=True, exist_ok=True)
        shot = self.out_dir / f"{stem}.png"
        try:
            await self.page.screenshot(path=shot, full_page=True, timeout=10_000)
            self.artifacts[f"{flow.name} screenshot"] = str(shot)
        except PlaywrightError:
            pass  # a crashed page has nothing to show; the trace may still have it
        if self.tracing:
            trace = self.out_dir / f"{stem}-trace.zip"
            try:
                await self.context.tracing.stop_chunk(path=trace)
                self.artifacts[f"{flow.name} trace"] = str(trace)
            except PlaywrightError:
                pass


class E2ECheck(BaseCheck):
    """Runs the flows in order on one page (a failed flow stops the rest); or the suite. See E2ESettings."""

    kind = "e2e"

    def __init__(self, ctx: CheckContext, settings: E2ESettings) -> None:
        super().__init__(ctx)
        self.settings = settings
        self.secrets: dict[str, SecretStr] = dict(ctx.secrets)
        self.artifacts_root = ctx.artifacts_dir

    async def measure(self, inp: CheckInput) -> CheckResult:
        base = service_url(self.spec, inp, self.settings.url)
        out_dir = self.artifacts_root / slug(inp.release.release_id)
        if self.settings.suite is not None:
            if inp.checkout_dir is None:
                return self.error("no checkout of the release to run the suite in")
            so = await run_suite(self.settings.suite, base, inp.checkout_dir, out_dir, f"e2e-{slug(self.name)}")
            return self.result(so.outcome, so.summary, findings=so.findings, metrics=so.metrics,
                               artifacts=so.artifacts)
        return await self._flows(base, out_dir)

    async def _flows(self, base: str, out_dir: Path) -> CheckResult:
        chromium = self.settings.chromium
        try:
            async with async_playwright() as pw:
                t0 = time.monotonic()
                try:
                    browser = await pw.chromium.launch(
                        executable_path=chromium.executable_path, args=[*CHROMIUM_ARGS, *chromium.extra_args],
                        timeout=chromium.launch_timeout_s * 1000,
                    )
                except PlaywrightError as exc:
                    return self.error(f"could not launch Chromium ({chromium.executable_path}): {_first_line(exc)}")
                launch_ms = round((time.monotonic() - t0) * 1000, 1)
                try:
                    w, h = chromium.viewport
                    context = await browser.new_context(viewport={"width": w, "height": h})
                    journey = _Journey(self, context, await context.new_page(), out_dir, base)
                    await journey.run()
                finally:
                    await browser.close()
        except PlaywrightError as exc:  # the driver itself, or the browser died under us
            return self.error(f"Playwright failed: {_first_line(exc)}")
        return self._judge(journey, launch_ms)

    def _judge(self, journey: _Journey, launch_ms: float) -> CheckResult:
        flows = [f.name for f in self.settings.flows]
        metrics = {"browser.launch_ms": launch_ms, **journey.metrics, "flows.total": float(len(flows)),
                   "flows.passed": float(len(journey.passed))}
        not_run = flows[len(journey.passed) + 1:]
        tail = f" (not run: {', '.join(not_run)})" if not_run else ""
        if journey.unreachable is not None:
            return self.error(f"could not load the app: {journey.unreachable}{tail}", metrics=metrics,
                              artifacts=journey.artifacts)
        if journey.findings:
            summary = "; ".join(f.message for f in journey.findings) + tail
            return self.failed(journey.findings, metrics, summary=summary, artifacts=journey.artifacts)
        timings = ", ".join(f"{n} {journey.metrics[f'flow.{slug(n)}.ms'] / 1000:.1f}s" for n in flows)
        return self.passed(f"{len(flows)} flow(s) passed: {timings}", metrics=metrics)


def _first_line(exc: PlaywrightError) -> str:
    text = (exc.message or type(exc).__name__).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def make_check(ctx: CheckContext) -> E2ECheck:
    """Factory registered as `e2e`."""
    settings = ctx.settings(E2ESettings)
    for i, flow in enumerate(settings.flows):
        missing = sorted(flow.secret_keys - set(ctx.secrets))
        if missing:
            raise ConfigError(f"value_secret {missing[0]!r} is not among the check's secrets",
                              ctx.location("settings", "flows", i))
    return E2ECheck(ctx, settings)
