"""Sentry check: a release and deploy marker through Sentry's API, then error events after the deploy vs before."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from providers.checks.base import BaseCheck, CheckContext, CheckInput
from providers.clients.http import VendorClient, raise_for_vendor
from providers.config import require_timeout
from providers.errors import ConfigError, PermanentError, TransientError
from providers.models import CheckResult, Finding, Release, Severity, utcnow

PROVIDER = "sentry"
RELEASES_SCOPES = "project:releases or org:ci"  # OrganizationReleasePermission (releases, deploys)
READ_SCOPES = "event:read"  # OrganizationEventPermission (events, events-stats)
RATE_LIMIT_RESET = "x-sentry-rate-limit-reset"  # https://docs.sentry.io/api/ratelimits/


class SentryClient(VendorClient):
    """VendorClient that reads Sentry's own rate-limit headers (https://docs.sentry.io/api/ratelimits/).

    A 429 names no Retry-After; `X-Sentry-Rate-Limit-Reset` is when the window resets (UTC epoch seconds): the
    retry waits until then (bounded by `max_wait_s`). A 403 says which scope the call needed.
    """

    def translate(self, resp: httpx.Response, *, resource: str) -> None:
        if resp.status_code == 429:
            reset = resp.headers.get(RATE_LIMIT_RESET)
            wait: float | None = None
            if reset:
                try:
                    wait = max(0.0, float(reset) - time.time())
                except ValueError:
                    wait = None
            concurrent = resp.headers.get("x-sentry-rate-limit-concurrentremaining") == "0"
            why = "too many concurrent requests" if concurrent else "rate limited"
            raise TransientError(f"HTTP 429 on {resp.request.method} {resp.request.url.path}: {why}"
                                 + (f" until the window resets in {wait:.0f}s" if wait is not None else ""),
                                 provider=self.provider, resource=resource, retry_after=wait)
        if resp.status_code == 403:
            needs = READ_SCOPES if "/events" in resp.request.url.path else RELEASES_SCOPES
            raise PermanentError(f"HTTP 403 on {resp.request.method} {resp.request.url.path}: the token lacks the "
                                 f"scope this call needs ({needs})", provider=self.provider, resource=resource)
        raise_for_vendor(resp, provider=self.provider, resource=resource)


class SentrySettings(BaseModel):
    """Where Sentry is, what the release is called there, and the spike rule."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(default="https://sentry.io", description="Sentry's base URL (self-hosted: its own)")
    org: str = Field(description="organization slug")
    projects: list[str] = Field(min_length=1, description="project slugs the release belongs to")
    project_ids: list[int] = Field(
        default_factory=list, description="ids of `projects` (default: the ids Sentry gives back for the release); "
        "always sent, since no project means 'the projects the token's user is a member of'")
    environment: str | None = Field(default=None, description="Sentry environment (default: the spec's name)")
    release_format: str = Field(
        default="{sha}", description="the SDKs' `release` value: placeholders {sha} {short_sha} {ref} {env}"
    )
    window_s: float = Field(default=120.0, gt=0, le=86400, description="watch this long after the deploy")
    before_window_s: float | None = Field(default=None, gt=0, le=86400, description="default: window_s")
    interval: str = Field(default="1m", pattern=r"^\d+[smhd]$",
                          description="unused since the counts come from the events endpoint; kept for old specs")
    query: str = Field(default="event.type:error", description="Sentry search query of the events counted")
    spike_factor: float = Field(default=2.0, gt=1, description="after-rate above factor x before-rate fails")
    min_events: int = Field(default=10, ge=1, description="fewer errors after the deploy never fail")
    timeout_s: float = Field(default=15.0, gt=0)


def release_version(fmt: str, release: Release) -> str:
    """The Sentry release name of `release` (what the deployed SDKs send as `release`)."""
    return fmt.format(sha=release.sha, short_sha=release.sha[:12], ref=release.ref, env=release.env)


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


class SentryApi:
    """The few Sentry web API calls the check makes, through a SentryClient (retries, error translation).

    Releases and deploy markers go with the releases token (project:releases or org:ci), counts with the read
    token (event:read): an org:ci or project:releases token gets 403 on the events endpoints.
    """

    def __init__(self, client: httpx.AsyncClient, org: str, releases_token: SecretStr, read_token: SecretStr) -> None:
        self.vendor = SentryClient(client, provider=PROVIDER, attempts=3, backoff_s=0.5, max_wait_s=10)
        self.org = quote(org, safe="")
        self._releases_token = releases_token
        self._read_token = read_token

    def _headers(self, *, read: bool = False) -> dict[str, str]:
        token = self._read_token if read else self._releases_token
        return {"Authorization": f"Bearer {token.get_secret_value()}"}

    async def create_release(self, version: str, projects: list[str], ref: str) -> dict[str, Any]:
        """POST .../releases/ (201 created, 208 already there: both fine)."""
        body = {"version": version, "projects": projects, "ref": ref, "dateReleased": _iso(utcnow())}
        data: dict[str, Any] = await self.vendor.json(
            "POST", f"/api/0/organizations/{self.org}/releases/", resource=f"release {version[:12]}",
            json=body, headers=self._headers(),
        )
        return data

    async def deploys(self, version: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = await self.vendor.json(
            "GET", f"/api/0/organizations/{self.org}/releases/{quote(version, safe='')}/deploys/",
            resource=f"release {version[:12]} deploys", headers=self._headers(),
        )
        return data

    async def create_deploy(self, version: str, body: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = await self.vendor.json(
            "POST", f"/api/0/organizations/{self.org}/releases/{quote(version, safe='')}/deploys/",
            resource=f"release {version[:12]} deploy", json=body, headers=self._headers(),
        )
        return data

    async def count(self, s: SentrySettings, env: str, project_ids: list[int], start: datetime,
                    end: datetime) -> int:
        """Events matching `s.query` in [start, end) of `project_ids`: `count()` from the documented Discover
        table endpoint, Query Discover Events in Table Format, `GET .../events/`
        (https://docs.sentry.io/api/discover/query-discover-events-in-table-format/)."""
        if not project_ids:
            raise PermanentError("no project ids to count events of", provider=PROVIDER, resource="events")
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("field", "count()"), ("query", s.query), ("environment", env),
            ("start", _iso(start)), ("end", _iso(end)),
        ]
        params += [("project", pid) for pid in project_ids]
        resp = await self.vendor.request(
            "GET", f"/api/0/organizations/{self.org}/events/", resource="events",
            params=httpx.QueryParams(params), headers=self._headers(read=True),
        )
        try:
            rows = resp.json()["data"]
            return int(rows[0]["count()"]) if rows else 0
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise PermanentError("events answered in an unexpected shape", provider=PROVIDER,
                                 resource="events") from exc


class SentryCheck(BaseCheck):
    """Marks the deploy in Sentry, waits `window_s`, then compares the error rate after the deploy with before.

    FAILED when at least `min_events` errors came after the deploy and their rate is above `spike_factor` times
    the rate of the `before_window_s` that ended when the deploy started. ERROR when Sentry cannot be asked.
    Idempotent per release: the release is created once (208 when it exists), the deploy marker once per run id.
    """

    kind = "sentry"

    def __init__(self, ctx: CheckContext, settings: SentrySettings, releases_token: SecretStr,
                 read_token: SecretStr) -> None:
        super().__init__(ctx)
        self.settings = settings
        self.environment = settings.environment or ctx.env.environment
        self._releases_token = releases_token
        self._read_token = read_token
        self._client = ctx.http_client("sentry_http_client")

    async def measure(self, inp: CheckInput) -> CheckResult:
        if self._client is not None:
            return await self._measure(inp, self._client)
        async with httpx.AsyncClient(base_url=self.settings.url, timeout=self.settings.timeout_s) as client:
            return await self._measure(inp, client)

    async def _measure(self, inp: CheckInput, client: httpx.AsyncClient) -> CheckResult:
        s = self.settings
        api = SentryApi(client, s.org, self._releases_token, self._read_token)
        version = release_version(s.release_format, inp.release)
        deploy_started = inp.release.created_at
        created = await api.create_release(version, s.projects, inp.release.ref)
        project_ids = s.project_ids or [int(p["id"]) for p in (created or {}).get("projects") or []
                                        if p.get("slug") in s.projects and str(p.get("id", "")).isdigit()]
        if not project_ids:
            raise PermanentError(f"Sentry gave no ids for projects {', '.join(s.projects)}: set settings.project_ids",
                                 provider=PROVIDER, resource=f"release {version[:12]}")
        marker = await self._mark_deploy(api, version, inp.release)
        deployed = datetime.fromisoformat(str(marker.get("dateFinished") or _iso(utcnow())).replace("Z", "+00:00"))
        after_end = deployed + timedelta(seconds=s.window_s)
        wait = (after_end - utcnow()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        before_s = s.before_window_s or s.window_s
        before, after = await asyncio.gather(
            api.count(s, self.environment, project_ids, deploy_started - timedelta(seconds=before_s), deploy_started),
            api.count(s, self.environment, project_ids, deployed, after_end),
        )
        before_rate, after_rate = before / before_s * 60, after / s.window_s * 60
        metrics = {"errors_before": float(before), "errors_after": float(after),
                   "errors_per_min_before": round(before_rate, 3), "errors_per_min_after": round(after_rate, 3),
                   "window_s": s.window_s}
        findings: list[Finding] = []
        spike = after >= s.min_events and after_rate > s.spike_factor * before_rate
        if spike:
            ratio = f"{after_rate / before_rate:.1f}x" if before_rate else "from none"
            findings.append(Finding(
                message=f"error spike after the deploy: {after} events in {s.window_s:g}s "
                        f"({after_rate:.1f}/min vs {before_rate:.1f}/min before, {ratio}; limit {s.spike_factor}x)",
                severity=Severity.CRITICAL, location=f"sentry {s.org} {self.environment} release {version[:12]}",
                detail={"before": before, "after": after, "release": version, "deploy_id": marker.get("id")},
            ))
        if spike:
            return self.failed(findings, metrics)
        return self.passed(f"release {version[:12]} marked deployed to {self.environment}; {after} error(s) in the "
                           f"{s.window_s:g}s after it, {before} in the {before_s:g}s before", metrics=metrics)

    async def _mark_deploy(self, api: SentryApi, version: str, release: Release) -> dict[str, Any]:
        """The deploy marker of this run: an existing one named after the release id, else a new one."""
        for deploy in await api.deploys(version):
            if deploy.get("name") == release.release_id and deploy.get("environment") == self.environment:
                return deploy
        return await api.create_deploy(version, {
            "environment": self.environment, "name": release.release_id, "projects": self.settings.projects,
            "dateStarted": _iso(release.created_at), "dateFinished": _iso(utcnow()),
        })

def make_check(ctx: CheckContext) -> SentryCheck:
    """Factory registered as `sentry`: needs two secrets, `auth_token` (project:releases or org:ci: the release and
    its deploy marker) and `read_token` (event:read: the counts). They may name the same secret when one token
    (a user auth token, an internal integration) has both scopes; an organization token (org:ci) alone cannot
    read events, so only one of the two is a configuration error, raised when the spec is loaded."""
    settings = ctx.settings(SentrySettings)
    require_timeout(ctx.spec.timeout_s, settings.window_s + settings.timeout_s,
                    "settings.window_s + settings.timeout_s: the check waits out the window", ctx.location("timeout_s"))
    releases = ctx.require_secret("auth_token", f"a Sentry auth token with {RELEASES_SCOPES}, and `read_token` "
                                                f"with {READ_SCOPES}")
    if ctx.secrets.get("read_token") is None:
        raise ConfigError(f"has `auth_token` ({RELEASES_SCOPES}: releases and deploy markers) but no `read_token` "
                          f"({READ_SCOPES}: the error counts; a project:releases or org:ci token gets 403 there); "
                          "name the same secret twice for one token that has both scopes", ctx.location("secrets"))
    return SentryCheck(ctx, settings, releases, ctx.secrets["read_token"])
