"""GitHub REST client on VendorClient: token auth, API version header, Link pagination, rate limits honoured."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from providers.clients.http import VendorClient, is_loopback_host, raise_for_vendor, retry_after_seconds
from providers.clients.retry import VENDOR_BUDGET
from providers.errors import ConfigError, PermanentError, TransientError

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
MEDIA_TYPE = "application/vnd.github+json"
SECONDARY_LIMIT_WAIT_S = 60.0  # GitHub: "wait for at least one minute" when a secondary limit names no wait
_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
_REMOTE_RE = re.compile(r"^(?:https?://(?:[^@/]+@)?|ssh://git@|git@)(?P<host>[^/:]+)(?::\d+)?[:/](?P<repo>[^/]+/[^/]+?)(?:\.git)?/?$")


class GitHubSettings(BaseModel):
    """Where GitHub is and which repository: the base of every GitHub gate's settings."""

    model_config = ConfigDict(extra="forbid")
    repository: str | None = Field(default=None, description="owner/name; default: from the spec's source.repo URL")
    api_url: str = Field(default=DEFAULT_API_URL, description="GitHub Enterprise Server: https://HOST/api/v3")
    api_version: str = API_VERSION
    request_timeout_s: float = Field(default=30.0, gt=0)
    attempts: int = Field(default=4, ge=1, le=10, description="tries per request for transient failures")
    rate_limit_max_wait_s: float = Field(default=60.0, ge=0, description="longest wait for a rate limit to reset")
    per_page: int = Field(default=100, ge=1, le=100)
    max_pages: int = Field(default=50, ge=1, le=1000)

    @field_validator("repository")
    @classmethod
    def _repository(cls, v: str | None) -> str | None:
        if v is not None and not _REPO_RE.match(v):
            raise ValueError("must be owner/name")
        return v

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, v: str) -> str:
        url = httpx.URL(v)
        if url.scheme == "http" and not is_loopback_host(url.host):
            raise ValueError("must be https (plain http only on a loopback address)")
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/")



def repository_of(settings: GitHubSettings, source_repo: str, location: str) -> str:
    """`settings.repository`, else owner/name read from a GitHub remote URL in the spec's source.repo."""
    if settings.repository:
        return settings.repository
    m = _REMOTE_RE.match(source_repo)
    api_host = httpx.URL(settings.api_url).host
    if m and (m.group("host") == "github.com" or m.group("host") == api_host) and _REPO_RE.match(m.group("repo")):
        return m.group("repo")
    raise ConfigError("set the GitHub repository (owner/name): source.repo is not a GitHub URL", location)


class GitHubNotFound(PermanentError):
    """GitHub answered 404: no such repository, ref, pull request (or no access to it)."""


class RateLimitExhausted(PermanentError):
    """The rate limit resets later than this client is allowed to wait."""


def rate_limit_wait(resp: httpx.Response, now: float | None = None) -> float | None:
    """Seconds to wait when `resp` (403/429) is a primary or secondary rate limit; None when it is not one."""
    if resp.status_code not in (403, 429):
        return None
    after = retry_after_seconds(resp)
    if after is not None:
        return after
    if resp.headers.get("x-ratelimit-remaining") == "0" and resp.headers.get("x-ratelimit-reset"):
        try:
            reset = float(resp.headers["x-ratelimit-reset"])
        except ValueError:
            return SECONDARY_LIMIT_WAIT_S
        return max(0.0, reset - (time.time() if now is None else now)) + 0.25
    if "rate limit" in resp.text.lower():
        return SECONDARY_LIMIT_WAIT_S
    return None  # a 403 without these signals is a permission problem; a bare 429 is retried with backoff


class _GitHubVendor(VendorClient):
    """VendorClient reading GitHub's own signals: rate limits (403/429) are transient, 404 is GitHubNotFound."""

    def __init__(self, client: httpx.AsyncClient, *, attempts: int, max_rate_wait_s: float) -> None:
        # a rate-limit reset may be waited for once on top of the usual budget
        budget = VENDOR_BUDGET.with_(total_s=VENDOR_BUDGET.total_s + max_rate_wait_s)
        super().__init__(client, provider="github", budget=budget, attempts=attempts,
                         max_wait_s=max(max_rate_wait_s, 1.0))
        self.max_rate_wait_s = max_rate_wait_s

    def translate(self, resp: httpx.Response, *, resource: str) -> None:
        wait = rate_limit_wait(resp)
        if wait is not None:
            reset = datetime.fromtimestamp(time.time() + wait, UTC).strftime("%H:%M:%S UTC")
            msg = f"HTTP {resp.status_code}: rate limited on {resp.request.url.path} until about {reset}"
            if wait > self.max_rate_wait_s:
                raise RateLimitExhausted(
                    f"{msg} ({wait:.0f} s away; this gate waits at most {self.max_rate_wait_s:.0f} s)",
                    provider=self.provider, resource=resource,
                )
            raise TransientError(msg, provider=self.provider, resource=resource, retry_after=wait)
        if resp.status_code == 404:
            raise GitHubNotFound(
                f"HTTP 404 on {resp.request.method} {resp.request.url.path}: not found (or no access)",
                provider=self.provider, resource=resource,
            )
        raise_for_vendor(resp, provider=self.provider, resource=resource)


class GitHubClient:
    """One repository's REST API: `get`, `paginate` (Link rel="next"), with the token sent only to `api_url`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        repository: str,
        token: SecretStr | None,
        settings: GitHubSettings,
    ) -> None:
        self.repository = repository
        self.settings = settings
        self.api_url = settings.api_url
        self._token = token
        self._vendor = _GitHubVendor(
            http, attempts=settings.attempts, max_rate_wait_s=settings.rate_limit_max_wait_s
        )

    def _headers(self) -> dict[str, str]:
        headers = {
            "Accept": MEDIA_TYPE,
            "X-GitHub-Api-Version": self.settings.api_version,
            "User-Agent": "aevon-deploy",
        }
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        return headers

    def repo_path(self, suffix: str) -> str:
        """`/repos/{owner}/{repo}` + suffix."""
        return f"/repos/{self.repository}{suffix}"

    def _url(self, path: str) -> str:
        return f"{self.api_url}{path}"

    def _same_origin(self, url: str) -> bool:
        a, b = httpx.URL(url), httpx.URL(self.api_url)
        return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port) and a.path.startswith(b.path)

    async def get(self, path: str, *, resource: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET `path` (relative to the API root) and decode its JSON."""
        url = self._url(path)
        return await self._vendor.json("GET", url, resource=resource, params=params, headers=self._headers())

    async def post(self, path: str, body: Mapping[str, Any], *, resource: str) -> Any:
        """POST a JSON body to `path` (relative to the API root) and decode the answer (not retried on 4xx)."""
        url = self._url(path)
        return await self._vendor.json("POST", url, resource=resource, json=dict(body), headers=self._headers())

    async def get_optional(self, path: str, *, resource: str) -> Any | None:
        """Like `get`, but None when GitHub answers 404."""
        try:
            return await self.get(path, resource=resource)
        except GitHubNotFound:
            return None

    async def paginate(
        self, path: str, *, resource: str, params: Mapping[str, Any] | None = None, items_key: str | None = None
    ) -> list[Any]:
        """Every item of a list endpoint, following Link rel="next" (page- or cursor-based) up to `max_pages`."""
        items: list[Any] = []
        url: str | None = self._url(path)
        query: dict[str, Any] | None = {"per_page": self.settings.per_page, **(params or {})}
        pages = 0
        while url is not None:
            if pages == self.settings.max_pages:
                raise PermanentError(
                    f"more than {self.settings.max_pages} pages on {httpx.URL(self._url(path)).path}",
                    provider="github", resource=resource,
                )
            resp = await self._vendor.request("GET", url, resource=resource, params=query, headers=self._headers())
            pages += 1
            body = resp.json()
            page = body.get(items_key, []) if items_key and isinstance(body, dict) else body
            if not isinstance(page, list):
                raise PermanentError(f"expected a list from {resp.request.url.path}", provider="github",
                                     resource=resource)
            items.extend(page)
            url = resp.links.get("next", {}).get("url")
            query = None  # the next link carries the whole query
            if url is not None and not self._same_origin(url):
                raise PermanentError("pagination link leaves the API host; not followed", provider="github",
                                     resource=resource)
        return items


@asynccontextmanager
async def github_session(
    settings: GitHubSettings, *, repository: str, token: SecretStr | None, http: httpx.AsyncClient | None = None
) -> AsyncIterator[GitHubClient]:
    """A GitHubClient on the injected `http` client, or on one opened (and closed) here."""
    if http is not None:
        yield GitHubClient(http, repository=repository, token=token, settings=settings)
        return
    async with httpx.AsyncClient(timeout=settings.request_timeout_s, follow_redirects=True) as own:
        yield GitHubClient(own, repository=repository, token=token, settings=settings)
