"""HTTP health check: expected status, optional JSON field value, latency budget, per endpoint."""

from __future__ import annotations

import time
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from providers.checks.base import CheckContext, CheckInput
from providers.config import parse_settings
from providers.errors import ConfigError
from providers.models import CheckResult, Finding, Outcome, Severity


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


class HealthCheck:
    """Pings each endpoint once; FAILED on a wrong status, JSON value or latency; ERROR when nothing answers."""

    kind = "health"

    def __init__(self, ctx: CheckContext, settings: HealthSettings) -> None:
        self.name = ctx.spec.name
        self.service = ctx.spec.service
        self.settings = settings
        client = ctx.extra.get("http_client")
        self._client = client if isinstance(client, httpx.AsyncClient) else None

    def _base_url(self, inp: CheckInput) -> str:
        if self.settings.url:
            return self.settings.url
        version = inp.services.get(self.service or "")
        if version is None or not version.url:
            raise ConfigError(f"check {self.name}: service {self.service!r} has no URL; set settings.url")
        return version.url

    async def run(self, inp: CheckInput) -> CheckResult:
        base = self._base_url(inp).rstrip("/")
        findings: list[Finding] = []
        metrics: dict[str, float] = {}
        errors: list[str] = []
        start = time.monotonic()
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
            outcome, summary = Outcome.FAILED, "; ".join(f.message for f in findings)
        elif errors:
            outcome, summary = Outcome.ERROR, "could not reach: " + "; ".join(errors)
        else:
            outcome, summary = Outcome.PASSED, f"{len(self.settings.endpoints)} endpoint(s) healthy"
        return CheckResult(
            name=self.name, kind=self.kind, outcome=outcome, summary=summary, findings=findings,
            metrics=metrics, duration_s=time.monotonic() - start,
        )

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

    async def record_baseline(self, inp: CheckInput, result: CheckResult) -> None:
        return None


def make_check(ctx: CheckContext) -> HealthCheck:
    """Factory registered as `health`."""
    settings = parse_settings(HealthSettings, ctx.spec.settings, f"checks.{ctx.spec.name}.settings")
    return HealthCheck(ctx, settings)
