"""Performance smoke check: locust in a child process, absolute thresholds and a regression rule vs the last good."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from providers.checks.base import BaseCheck, CheckContext, CheckInput
from providers.clients.http import is_loopback_host
from providers.errors import ConfigError, PermanentError
from providers.models import CheckResult, Finding, Severity
from providers.state.baselines import BaselineStore

ROOT = Path(__file__).resolve().parents[3]
RUNNER = "providers.checks.perf.runner"
STARTUP_ALLOWANCE_S = 60.0  # importing locust and gevent, spawning users, stopping them
FIGURES = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "rps", "error_rate", "requests")
_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


class PerfEndpoint(BaseModel):
    """One endpoint every simulated user calls, in order, again and again."""

    model_config = ConfigDict(extra="forbid")
    path: str
    method: Literal["GET", "POST", "HEAD", "PUT", "PATCH", "DELETE"] = "GET"
    name: str | None = Field(default=None, description="label in the figures (default: 'METHOD path')")
    json_body: dict[str, Any] | None = None
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    p95_ms: float | None = Field(default=None, gt=0, description="overrides thresholds.p95_ms for this endpoint")
    p99_ms: float | None = Field(default=None, gt=0, description="overrides thresholds.p99_ms for this endpoint")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/") or v.startswith("//"):
            raise ValueError("must be a path starting with a single '/'")
        return v

    @property
    def label(self) -> str:
        return self.name or f"{self.method} {self.path}"


class Thresholds(BaseModel):
    """Absolute limits, per endpoint; None switches one off."""

    model_config = ConfigDict(extra="forbid")
    p50_ms: float | None = Field(default=None, gt=0)
    p95_ms: float | None = Field(default=1000.0, gt=0)
    p99_ms: float | None = Field(default=None, gt=0)
    error_rate: float = Field(default=0.01, ge=0, le=1, description="failed / sent, above which the check fails")
    min_rps: float | None = Field(default=None, gt=0)


class Regression(BaseModel):
    """Fail when `metric` exceeds `factor` x the last good release's value and by at least `min_delta_ms`."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    metric: Literal["p50_ms", "p95_ms", "p99_ms"] = "p95_ms"
    factor: float = Field(default=1.5, gt=1)
    min_delta_ms: float = Field(default=50.0, ge=0, description="ignore slow-downs smaller than this (noise)")


class PerfSettings(BaseModel):
    """Settings of the perf check: bounded load (loopback unless allow_remote), thresholds, regression rule."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, description="base URL (default: the service's URL)")
    allow_remote: bool = Field(default=False, description="send the load to a host that is not loopback (staging, "
                                                          "prod: keep users, duration and wait_s gentle)")
    users: int = Field(default=5, ge=1, le=50)
    spawn_rate: float | None = Field(default=None, gt=0, description="users started a second (default: all at once)")
    duration_s: float = Field(default=3.0, gt=0, le=120)
    wait_s: float = Field(default=0.05, ge=0, le=10, description="pause of a user between two rounds")
    request_timeout_s: float = Field(default=10.0, gt=0, le=120)
    endpoints: list[PerfEndpoint] = Field(min_length=1)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    regression: Regression = Field(default_factory=Regression)
    python: str | None = Field(default=None, description="interpreter that has locust (default: this one)")

    @field_validator("endpoints")
    @classmethod
    def _unique(cls, v: list[PerfEndpoint]) -> list[PerfEndpoint]:
        labels = [e.label for e in v]
        if len(set(labels)) != len(labels):
            raise ValueError("endpoint labels (name, or 'METHOD path') must be unique")
        return v


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on 127.0.0.0/8, ::1 or localhost: the only targets load is ever sent to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts.scheme in ("http", "https") and bool(host) and is_loopback_host(host)


def judge(
    settings: PerfSettings, figures: dict[str, dict[str, float]], baseline: dict[str, Any] | None
) -> list[Finding]:
    """Findings for every endpoint over its thresholds or regressed against `baseline` (the last good release)."""
    th, rg = settings.thresholds, settings.regression
    out: list[Finding] = []
    before: dict[str, dict[str, float]] = (baseline or {}).get("endpoints", {})
    for ep in settings.endpoints:
        got = figures.get(ep.label)
        if got is None:
            continue
        where = ep.label
        if got["error_rate"] > th.error_rate:
            out.append(Finding(
                message=f"{where}: {got['error_rate']:.1%} of {int(got['requests'])} requests failed "
                        f"(limit {th.error_rate:.1%})",
                severity=Severity.CRITICAL, location=where, detail={"error_rate": got["error_rate"]}))
        limits = {"p50_ms": th.p50_ms, "p95_ms": ep.p95_ms or th.p95_ms, "p99_ms": ep.p99_ms or th.p99_ms}
        for metric, limit in limits.items():
            if limit is not None and got[metric] > limit:
                out.append(Finding(
                    message=f"{where}: {metric[:3]} {got[metric]:.0f} ms over the limit {limit:.0f} ms",
                    severity=Severity.HIGH, location=where, detail={metric: got[metric], "limit": limit}))
        if th.min_rps is not None and got["rps"] < th.min_rps:
            out.append(Finding(message=f"{where}: {got['rps']:.1f} req/s under the floor {th.min_rps:.1f}",
                               severity=Severity.HIGH, location=where, detail={"rps": got["rps"]}))
        old = before.get(where, {}).get(rg.metric)
        if rg.enabled and old is not None:
            new = got[rg.metric]
            if new > rg.factor * old and new - old >= rg.min_delta_ms:
                out.append(Finding(
                    message=f"{where}: {rg.metric[:3]} {new:.0f} ms is {new / max(old, 0.001):.1f}x the last good "
                            f"release's {old:.0f} ms (limit {rg.factor}x)",
                    severity=Severity.HIGH, location=where,
                    detail={"metric": rg.metric, "now": new, "baseline": old,
                            "baseline_release": (baseline or {}).get("release_id")}))
    return out


class PerfCheck(BaseCheck):
    """Runs a bounded locust load against the service's endpoints; FAILED over a threshold or on a regression.

    ERROR when nothing could be measured (the runner failed, the URL is not loopback, no request was sent).
    Baselines: the figures of each release recorded good, in the environment's BaselineStore.
    """

    kind = "perf"

    def __init__(self, ctx: CheckContext, settings: PerfSettings) -> None:
        super().__init__(ctx)
        self.service = ctx.spec.service
        self.settings = settings
        self.store = BaselineStore(ctx.baseline_dir)
        self.artifacts_dir = ctx.artifacts_dir

    def _base_url(self, inp: CheckInput) -> str:
        url = self.settings.url
        if url is None:
            version = inp.services.get(self.service or "")
            url = version.url if version is not None else None
        if not url:
            raise ConfigError(f"check {self.name}: service {self.service!r} has no URL; set settings.url")
        if not self.settings.allow_remote and not is_loopback_url(url):
            host = urlsplit(url).hostname
            raise ConfigError(f"check {self.name}: load is only sent to loopback addresses, not {host} "
                              "(set allow_remote: true to load it)")
        return url.rstrip("/")

    def plan(self, base_url: str) -> dict[str, Any]:
        """The runner's input (perf_runner's module docstring)."""
        s = self.settings
        return {
            "base_url": base_url, "users": s.users, "spawn_rate": s.spawn_rate or float(s.users),
            "duration_s": s.duration_s, "wait_s": s.wait_s, "timeout_s": s.request_timeout_s,
            "endpoints": [{"name": e.label, "method": e.method, "path": e.path, "json_body": e.json_body,
                           "expect_status": e.expect_status} for e in s.endpoints],
        }

    async def load(self, base_url: str) -> dict[str, Any]:
        """Run the locust child process once and return its figures; PermanentError when it fails."""
        python = self.settings.python or sys.executable
        env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP} | {"PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            python, "-m", RUNNER, cwd=ROOT, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: killed whole when the check is cancelled (fail fast)
        )
        try:
            async with asyncio.timeout(self.settings.duration_s + STARTUP_ALLOWANCE_S):
                out, err = await proc.communicate(json.dumps(self.plan(base_url)).encode())
        except TimeoutError:
            raise PermanentError("the locust runner did not finish in time", provider="locust") from None
        finally:
            if proc.returncode is None:  # timed out, or cancelled (another check failed): no load left running
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise PermanentError(f"the locust runner exited {proc.returncode}: {tail[0][:300]}", provider="locust")
        try:
            figures: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise PermanentError("the locust runner printed no figures", provider="locust") from None
        return figures

    async def measure(self, inp: CheckInput) -> CheckResult:
        base_url = self._base_url(inp)
        raw = await self.load(base_url)
        figures: dict[str, dict[str, float]] = raw["endpoints"]
        metrics = {f"{label}.{k}": float(v[k]) for label, v in figures.items() for k in FIGURES}
        artifact = self._save(inp, raw)
        sent = sum(int(v["requests"]) for v in figures.values())
        if sent == 0:
            return self.error("no request completed: " + ("; ".join(raw.get("errors", [])[:3]) or "?"),
                              metrics=metrics, artifacts=artifact)
        baseline = self.store.latest(self.name)
        findings = judge(self.settings, figures, baseline)
        if findings:
            return self.failed(findings, metrics, artifacts=artifact)
        worst = max(figures, key=lambda k: figures[k]["p95_ms"])
        return self.passed(f"{len(figures)} endpoint(s), {self.settings.users} users x {self.settings.duration_s:g}s: "
                           f"{sent} requests, worst p95 {figures[worst]['p95_ms']:.0f} ms ({worst})"
                           + (f", vs baseline {baseline.get('release_id')}" if baseline else ", no baseline yet"),
                           metrics=metrics, artifacts=artifact)

    def _save(self, inp: CheckInput, raw: dict[str, Any]) -> dict[str, str]:
        folder = self.artifacts_dir / inp.release.release_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"perf-{self.name}.json"
        path.write_text(json.dumps(raw, indent=2))
        return {"figures": str(path)}

    async def record_baseline(self, inp: CheckInput, result: CheckResult) -> None:
        endpoints: dict[str, dict[str, float]] = {}
        for key, value in result.metrics.items():
            label, _, figure = key.rpartition(".")
            endpoints.setdefault(label, {})[figure] = value
        self.store.save(self.name, inp.release.release_id, {"sha": inp.release.sha, "endpoints": endpoints})


def make_check(ctx: CheckContext) -> PerfCheck:
    """Factory registered as `perf`."""
    settings = ctx.settings(PerfSettings)
    if settings.url is not None and urlsplit(settings.url).scheme not in ("http", "https"):
        raise ConfigError("must be an http(s) URL", ctx.location("settings", "url"))
    if settings.url is not None and not settings.allow_remote and not is_loopback_url(settings.url):
        raise ConfigError("load is only sent to loopback addresses (127.0.0.0/8, ::1, localhost) unless "
                          "allow_remote: true",
                          ctx.location("settings", "url"))
    return PerfCheck(ctx, settings)
