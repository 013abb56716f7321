"""Prometheus check: the required alert rules are loaded and healthy, and no critical alert of ours is firing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from providers.checks.base import BaseCheck, CheckContext, CheckInput
from providers.clients.http import VendorClient
from providers.config import require_timeout
from providers.errors import PermanentError
from providers.models import CheckResult, Finding, Severity

PROVIDER = "prometheus"


class PrometheusSettings(BaseModel):
    """Where Prometheus is, which rules must exist, which alerts block a release."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="Prometheus base URL (the HTTP API is under /api/v1)")
    required_rules: list[str] = Field(default_factory=list, description="alerting rule names that must be loaded")
    match: dict[str, str] = Field(
        default_factory=lambda: {"severity": "critical"}, description="labels an alert must have to block"
    )
    service_label: str | None = Field(
        default="service", description="label naming the service; only alerts of the spec's services block"
    )
    services: list[str] | None = Field(default=None, description="default: every service of the environment")
    include_pending: bool = Field(default=False, description="count pending alerts (not yet `for`) as firing")
    observe_s: float = Field(default=0.0, ge=0, le=3600, description="keep watching the alerts this long")
    poll_s: float = Field(default=2.0, gt=0, le=300)
    timeout_s: float = Field(default=10.0, gt=0)


def _data(body: Any, what: str) -> Any:
    if not isinstance(body, dict) or body.get("status") != "success" or "data" not in body:
        raise PermanentError(f"{what} answered in an unexpected shape", provider=PROVIDER, resource=what)
    return body["data"]


def rule_findings(groups: list[dict[str, Any]], required: list[str]) -> tuple[list[Finding], list[str]]:
    """Findings for required rules missing or unhealthy; also the names still not evaluated (health unknown)."""
    rules: dict[str, dict[str, Any]] = {}
    for group in groups:
        for rule in group.get("rules", []):
            if rule.get("type", "alerting") == "alerting":
                rules.setdefault(str(rule.get("name")), {**rule, "group": group.get("name")})
    findings, unknown = [], []
    for name in required:
        rule = rules.get(name)
        if rule is None:
            findings.append(Finding(message=f"required alert rule {name} is not loaded", severity=Severity.HIGH,
                                    location=f"rule {name}"))
        elif rule.get("health") == "err":
            findings.append(Finding(
                message=f"alert rule {name} fails to evaluate: {str(rule.get('lastError') or '?')[:200]}",
                severity=Severity.HIGH, location=f"rule {name} (group {rule['group']})"))
        elif rule.get("health") != "ok":
            unknown.append(name)
    return findings, unknown


class PrometheusCheck(BaseCheck):
    """Asks Prometheus's HTTP API (`/api/v1/rules`, `/api/v1/alerts`); observes only.

    FAILED: a required rule is missing or its health is `err`, or an alert matching `match` for one of the
    services fires (pending too when `include_pending`) at any poll within `observe_s`. ERROR: Prometheus cannot
    be reached, or a required rule has not been evaluated yet (health `unknown`).
    """

    kind = "prometheus"

    def __init__(self, ctx: CheckContext, settings: PrometheusSettings) -> None:
        super().__init__(ctx)
        self.settings = settings
        self.services = settings.services if settings.services is not None else [s.name for s in ctx.env.services]
        self._client = ctx.http_client("prometheus_http_client")

    async def measure(self, inp: CheckInput) -> CheckResult:
        if self._client is not None:
            return await self._measure(self._client)
        async with httpx.AsyncClient(base_url=self.settings.url, timeout=self.settings.timeout_s) as client:
            return await self._measure(client)

    async def _measure(self, client: httpx.AsyncClient) -> CheckResult:
        s = self.settings
        api = VendorClient(client, provider=PROVIDER, attempts=3, backoff_s=0.5, max_wait_s=5)
        groups = _data(await api.json("GET", "/api/v1/rules", resource="rules", params={"type": "alert"}), "rules")
        findings, unknown = rule_findings(groups.get("groups", []), s.required_rules)
        metrics: dict[str, float] = {"rules_required": float(len(s.required_rules)), "polls": 0.0}
        if findings:
            return self.failed(findings, metrics)
        if unknown:
            return self.error(f"rules not evaluated yet: {', '.join(unknown)}", metrics=metrics)
        deadline = time.monotonic() + s.observe_s
        while True:
            metrics["polls"] += 1
            alerts = _data(await api.json("GET", "/api/v1/alerts", resource="alerts"), "alerts").get("alerts", [])
            blocking = [a for a in alerts if self.blocks(a)]
            metrics["alerts_active"] = float(len(alerts))
            if blocking or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(s.poll_s, max(0.0, deadline - time.monotonic())))
        metrics["alerts_blocking"] = float(len(blocking))
        if blocking:
            return self.failed([self._finding(a) for a in blocking], metrics)
        return self.passed(f"{len(s.required_rules)} required rule(s) loaded and healthy; no alert matching "
                           f"{s.match} for {', '.join(self.services)} over {s.observe_s:g}s", metrics=metrics)

    def blocks(self, alert: dict[str, Any]) -> bool:
        """True for a firing (or, with include_pending, pending) alert with `match` labels, of one of our services."""
        state = alert.get("state")
        if state != "firing" and not (self.settings.include_pending and state == "pending"):
            return False
        labels: dict[str, str] = alert.get("labels") or {}
        if any(labels.get(k) != v for k, v in self.settings.match.items()):
            return False
        label = self.settings.service_label
        return label is None or labels.get(label) in self.services

    def _finding(self, alert: dict[str, Any]) -> Finding:
        labels: dict[str, str] = alert.get("labels") or {}
        annotations: dict[str, str] = alert.get("annotations") or {}
        name = labels.get("alertname", "?")
        about = annotations.get("summary") or annotations.get("description") or ""
        where = labels.get(self.settings.service_label or "", "")
        return Finding(
            message=f"alert {name} {alert.get('state')}" + (f" for {where}" if where else "")
                    + (f": {about[:200]}" if about else "") + f" (since {alert.get('activeAt', '?')})",
            severity=Severity.CRITICAL, location=f"alert {name}",
            detail={"labels": labels, "value": alert.get("value"), "activeAt": alert.get("activeAt")},
        )

def make_check(ctx: CheckContext) -> PrometheusCheck:
    """Factory registered as `prometheus`."""
    settings = ctx.settings(PrometheusSettings)
    require_timeout(ctx.spec.timeout_s, settings.observe_s + settings.timeout_s,
                    "settings.observe_s + settings.timeout_s: the check watches the alerts that long",
                    ctx.location("timeout_s"))
    return PrometheusCheck(ctx, settings)
