"""`prometheus_query` check: a PromQL query measured `count` times, judged like Argo Rollouts' Prometheus metric.

Semantics follow Argo Rollouts' analysis (https://argoproj.github.io/argo-rollouts/features/analysis/ and
/analysis/prometheus/; code: metricproviders/prometheus/prometheus.go, utils/evaluate/evaluate.go,
utils/analysis/helpers.go):

- each measurement runs the instant query (`GET /api/v1/query`); a vector result is the list of its sample values
  (`result[0]` is the first), a scalar result is a number;
- a measurement is Successful, Failed, Inconclusive or Error: with only `success_condition`, Failed when it is
  false; with only `failure_condition`, Failed when it is true; with both, Inconclusive when neither holds;
  with neither, Successful; a query or a condition that cannot be evaluated (an empty vector's `result[0]`)
  is an Error;
- `count` measurements `interval_s` apart; the metric fails as soon as Failed measurements exceed
  `failure_limit` (default 0), is inconclusive when Inconclusive ones exceed `inconclusive_limit` (default 0),
  and errs when consecutive Errors exceed `consecutive_error_limit` (default 4).

Mapped to our outcomes: Failed → FAILED (roll back / abort the canary); Error or Inconclusive → ERROR (could not
decide; `on_error` says whether it blocks). The query may name `{{service}}`, `{{sha}}`, `{{short_sha}}`, `{{env}}`
and `{{stable_sha}}` (the version serving before; at a canary step, the stable one), so canary and stable can be
compared, e.g. `sum(rate(http_errors{version="{{sha}}"}[1m])) / sum(rate(http_requests{version="{{sha}}"}[1m]))`.
"""

from __future__ import annotations

import ast
import asyncio
import math
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from providers.checks.base import BaseCheck, CheckContext, CheckInput
from providers.checks.conditions import ConditionError, Result, compile_condition, evaluate
from providers.clients.http import VendorClient
from providers.config import require_timeout
from providers.errors import ConfigError, PermanentError, ProviderError
from providers.models import CheckResult, Finding, Severity

PROVIDER = "prometheus"
SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR = "Successful", "Failed", "Inconclusive", "Error"


class PrometheusQuerySettings(BaseModel):
    """Settings of a `prometheus_query` check (Argo Rollouts' metric fields, in snake case)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="Prometheus base URL (the HTTP API is under /api/v1)")
    query: str = Field(min_length=1, description="PromQL instant query; {{service}}, {{sha}} ... are filled in")
    success_condition: str | None = Field(default=None, description="e.g. `result[0] < 0.05`")
    failure_condition: str | None = Field(default=None, description="e.g. `result[0] >= 0.1`")
    count: int = Field(default=1, ge=1, le=1000, description="measurements to take")
    interval_s: float = Field(default=0, ge=0, le=3600, description="wait between two measurements")
    failure_limit: int = Field(default=0, ge=0, description="Failed measurements tolerated")
    inconclusive_limit: int = Field(default=0, ge=0, description="Inconclusive measurements tolerated")
    consecutive_error_limit: int = Field(default=4, ge=0, description="consecutive Error measurements tolerated")
    timeout_s: float = Field(default=10.0, gt=0, description="one query's HTTP timeout")

    @model_validator(mode="after")
    def _interval(self) -> PrometheusQuerySettings:
        if self.count > 1 and self.interval_s <= 0:
            raise ValueError("interval_s: more than one measurement needs an interval")
        return self


def fill(query: str, values: dict[str, str]) -> str:
    """The query with `{{name}}` placeholders replaced."""
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value)
    return query


def result_of(data: Any) -> Result:
    """Argo's conversion of an instant query answer: vector → list of sample values, scalar → a number."""
    kind, res = data.get("resultType"), data.get("result")
    if kind == "vector" and isinstance(res, list):
        return [float(sample["value"][1]) for sample in res]
    if kind == "scalar" and isinstance(res, list) and len(res) == 2:
        return float(res[1])
    raise PermanentError(f"query answered a {kind} result; use an instant query giving a vector or a scalar",
                         provider=PROVIDER, resource="query")


class PrometheusQueryCheck(BaseCheck):
    """Runs the query `count` times and judges each measurement by the conditions (see the module docstring)."""

    kind = "prometheus_query"

    def __init__(self, ctx: CheckContext, settings: PrometheusQuerySettings,
                 success: ast.Expression | None, failure: ast.Expression | None) -> None:
        super().__init__(ctx)
        self.settings = settings
        self.success, self.failure = success, failure
        self._client = ctx.http_client("prometheus_http_client")

    def phase(self, result: Result) -> str:
        """One measurement's phase (Argo's EvaluateResult)."""
        ok = evaluate(self.success, result) if self.success is not None else False
        bad = evaluate(self.failure, result) if self.failure is not None else False
        if self.success is None and self.failure is None:
            return SUCCESSFUL
        if self.failure is None:
            bad = not ok
        elif self.success is None:
            ok = not bad
        if bad:
            return FAILED
        return SUCCESSFUL if ok else INCONCLUSIVE

    def query_for(self, inp: CheckInput) -> str:
        """The query with its placeholders filled; a check naming no service, run at a canary step, is about
        that step's canary service."""
        svc = inp.services.get(self.spec.service or "") or next(
            (v for v in inp.services.values() if v.detail.get("canary")), None)
        stable = str((svc.detail.get("stable") if svc else None) or (svc.version if svc else "") or "")
        return fill(self.settings.query, {
            "service": svc.service if svc else "", "sha": inp.release.sha, "short_sha": inp.release.short_sha,
            "env": inp.release.env, "stable_sha": stable,
        })

    async def measure(self, inp: CheckInput) -> CheckResult:
        if self._client is not None:
            return await self._measure(self._client, inp)
        async with httpx.AsyncClient(base_url=self.settings.url, timeout=self.settings.timeout_s) as client:
            return await self._measure(client, inp)

    async def _measure(self, client: httpx.AsyncClient, inp: CheckInput) -> CheckResult:
        s = self.settings
        api = VendorClient(client, provider=PROVIDER, attempts=2, backoff_s=0.2, max_wait_s=2)
        query = self.query_for(inp)
        tally = {SUCCESSFUL: 0, FAILED: 0, INCONCLUSIVE: 0, ERROR: 0}
        consecutive_errors, findings, last = 0, [], math.nan
        for i in range(s.count):
            if i:
                await asyncio.sleep(s.interval_s)
            try:
                body = await api.json("GET", "/api/v1/query", resource="query", params={"query": query})
                if not isinstance(body, dict) or body.get("status") != "success":
                    raise PermanentError("query answered in an unexpected shape", provider=PROVIDER, resource="query")
                value = result_of(body["data"])
                phase = self.phase(value)
                last = value[0] if isinstance(value, list) and value else value if isinstance(value, float) else last
            except (ConditionError, ProviderError, KeyError, TypeError, ValueError) as exc:
                phase, value = ERROR, None
                findings.append(Finding(message=f"measurement {i + 1}: {exc}"[:300], severity=Severity.MEDIUM))
            tally[phase] += 1
            consecutive_errors = consecutive_errors + 1 if phase == ERROR else 0
            if phase in (FAILED, INCONCLUSIVE):
                findings.append(Finding(message=f"measurement {i + 1}: {phase} (result {value})",
                                        severity=Severity.HIGH if phase == FAILED else Severity.MEDIUM))
            if (tally[FAILED] > s.failure_limit or tally[INCONCLUSIVE] > s.inconclusive_limit
                    or consecutive_errors > s.consecutive_error_limit):
                break
        metrics = {f"measurements_{k.lower()}": float(v) for k, v in tally.items()}
        metrics["last_value"] = last
        where = f"`{query}` over {sum(tally.values())} measurement(s)"
        if tally[FAILED] > s.failure_limit:
            return self.failed(findings, metrics, summary=f"{tally[FAILED]} failed measurement(s) > failure_limit "
                                                          f"{s.failure_limit}: {where}, last {last:g}")
        if consecutive_errors > s.consecutive_error_limit:
            return self.error(f"{consecutive_errors} consecutive errors > consecutive_error_limit "
                              f"{s.consecutive_error_limit}: {findings[-1].message}", metrics=metrics)
        if tally[INCONCLUSIVE] > s.inconclusive_limit:
            return self.error(f"inconclusive: neither condition held {tally[INCONCLUSIVE]} time(s): {where}",
                              findings=findings, metrics=metrics)
        return self.passed(f"{tally[SUCCESSFUL]} successful measurement(s) of {where}, last {last:g}",
                           findings=findings, metrics=metrics)


def make_check(ctx: CheckContext) -> PrometheusQueryCheck:
    """Factory registered as `prometheus_query`; conditions are parsed here, so a bad one is refused at spec load."""
    settings = ctx.settings(PrometheusQuerySettings)
    compiled: list[ast.Expression | None] = []
    for field in ("success_condition", "failure_condition"):
        text = getattr(settings, field)
        try:
            compiled.append(compile_condition(text) if text is not None else None)
        except ConditionError as exc:
            raise ConfigError(str(exc), ctx.location("settings", field)) from None
    needed = settings.interval_s * (settings.count - 1) + settings.timeout_s * settings.count
    require_timeout(ctx.spec.timeout_s, needed, "settings.interval_s x (count - 1) + timeout_s x count",
                    ctx.location("timeout_s"))
    return PrometheusQueryCheck(ctx, settings, compiled[0], compiled[1])
