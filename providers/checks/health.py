"""HTTP health check: expected status, optional JSON field value, latency budget, per endpoint."""

from __future__ import annotations

import time
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from providers.checks.base import BaseCheck, CheckContext, CheckInput, service_url
from providers.models import CheckResult, Finding, Severity


class Endpoint(BaseModel):
    """One endpoint to probe."""

    model_config = ConfigDict(extra="forbid")
    path: str = "/health"
    method: Literal["GET", "POST", "HEAD"] = "GET"
    json_body: dict[str, Any] | None = None
    expect_status: list[int] = Field(default_factory=lambda: [200])
    json_field: str | None = Field(default=None, description="dotted path into the JSON answer")
    json_value: Any = None
    latency_budget_ms: float | None = Field(default=None, gt=0)


class HealthSettings(BaseModel):
    """Settings of the health check: a base URL (else the service's URL) and endpoints."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = None
    endpoints: list[Endpoint] = Field(default_factory=lambda: [Endpoint()])
    timeout_s: float = Field(default=5.0, gt=0)


def _dig(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            raise KeyError(dotted)
        data = data[part]
    return data


class HealthCheck(BaseCheck):
    """Pings each endpoint once; FAILED on a wrong status, JSON value or latency; ERROR when nothing answers."""

    kind = "health"

    def __init__(self, ctx: CheckContext, settings: HealthSettings) -> None:
        super().__init__(ctx)
        self.settings = settings
        self._client = ctx.http_client()

    async def measure(self, inp: CheckInput) -> CheckResult:
        base = service_url(self.spec, inp, self.settings.url)
        findings: list[Finding] = []
        metrics: dict[str, float] = {}
        errors: list[str] = []
        client = self._client or httpx.AsyncClient(timeout=self.settings.timeout_s)
        try:
            for ep in self.settings.endpoints:
                t0 = time.monotonic()
                try:
                    resp = await client.request(ep.method, base + ep.path, json=ep.json_body)
                except httpx.HTTPError as exc:
                    errors.append(f"{ep.method} {ep.path}: {type(exc).__name__}")
                    continue
                ms = (time.monotonic() - t0) * 1000
                metrics[f"{ep.path}.latency_ms"] = round(ms, 2)
                findings.extend(self._judge(ep, resp, ms))
        finally:
            if self._client is None:
                await client.aclose()
        if findings:
            return self.failed(findings, metrics)
        if errors:
            return self.error("could not reach: " + "; ".join(errors), metrics=metrics)
        return self.passed(f"{len(self.settings.endpoints)} endpoint(s) healthy", metrics=metrics)

    def _judge(self, ep: Endpoint, resp: httpx.Response, ms: float) -> list[Finding]:
        where = f"{ep.method} {ep.path}"
        if resp.status_code not in ep.expect_status:
            return [Finding(message=f"{where} answered {resp.status_code}, expected {ep.expect_status}",
                            severity=Severity.CRITICAL, location=where)]
        out: list[Finding] = []
        if ep.json_field is not None:
            try:
                got = _dig(resp.json(), ep.json_field)
            except (ValueError, KeyError):
                got = "<missing>"
            if got != ep.json_value:
                out.append(Finding(message=f"{where}: {ep.json_field} is {got!r}, expected {ep.json_value!r}",
                                   severity=Severity.HIGH, location=where))
        if ep.latency_budget_ms is not None and ms > ep.latency_budget_ms:
            out.append(Finding(message=f"{where} took {ms:.0f} ms, budget {ep.latency_budget_ms:.0f} ms",
                               severity=Severity.MEDIUM, location=where))
        return out


def make_check(ctx: CheckContext) -> HealthCheck:
    """Factory registered as `health`."""
    return HealthCheck(ctx, ctx.settings(HealthSettings))
