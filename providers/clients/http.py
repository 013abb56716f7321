"""Vendor HTTP calls in one place: error translation (transient/permanent), Retry-After and bounded backoff."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from providers.clients.retry import VENDOR_BUDGET, RetryBudget, call_with_budget
from providers.errors import PermanentError, TransientError
from providers.models import utcnow

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_loopback_host(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8 or ::1."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def retry_after_seconds(resp: httpx.Response) -> float | None:
    """The wait the vendor asked for (Retry-After seconds or HTTP date), if any."""
    return parse_retry_after(resp.headers.get("retry-after"))


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header value (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
        except (TypeError, ValueError):
            return None


def _vendor_message(resp: httpx.Response) -> str:
    """A short message from the vendor's error body (never echoes request headers, so never the token)."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict):
        err = body.get("error", body.get("errors", body))
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or err)[:300]
        if isinstance(err, list) and err and isinstance(err[0], dict):
            return str(err[0].get("message", err[0]))[:300]
        if "message" in body:
            return str(body["message"])[:300]
    return str(body)[:300]


def raise_for_vendor(resp: httpx.Response, *, provider: str, resource: str) -> None:
    """Translate an error response into TransientError or PermanentError naming provider and resource."""
    if resp.is_success:
        return
    msg = f"HTTP {resp.status_code} on {resp.request.method} {resp.request.url.path}: {_vendor_message(resp)}"
    if resp.status_code in TRANSIENT_STATUS:
        raise TransientError(msg, provider=provider, resource=resource, retry_after=retry_after_seconds(resp))
    raise PermanentError(msg, provider=provider, resource=resource)


def _path(url: str) -> str:
    """The path of `url` for a message, or a placeholder when it does not parse (it may hold a secret)."""
    try:
        return httpx.URL(url).path
    except (httpx.InvalidURL, UnicodeError, TypeError):
        return "<malformed URL>"


def _malformed(exc: BaseException) -> str:
    if isinstance(exc, httpx.LocalProtocolError | UnicodeError):
        return "a request header value is malformed"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "the URL's scheme is not http(s)"
    return "the URL is malformed"


class VendorClient:
    """An injected `httpx.AsyncClient` plus the vendor's name; `request` retries transient failures.

    This is the one retry layer of vendor HTTP calls (see providers.clients.retry for why): up to `budget.attempts`
    tries with its backoff, never shorter than the vendor's Retry-After, never past its total time; only transient
    failures are retried. `attempts`, `backoff_s` and `max_wait_s` override the budget's fields (a target's
    settings); a client with `attempts=1` is the one non-idempotent creates go through.
    Errors that would quote a request header or URL (httpx's invalid-header / invalid-URL messages, which may
    hold a token) are replaced at this boundary by a PermanentError that quotes neither.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        provider: str,
        budget: RetryBudget = VENDOR_BUDGET,
        attempts: int | None = None,
        backoff_s: float | None = None,
        max_wait_s: float | None = None,
    ) -> None:
        self.client = client
        self.provider = provider
        self.budget = budget.with_(attempts=attempts, backoff_s=backoff_s, max_wait_s=max_wait_s)

    @property
    def attempts(self) -> int:
        return self.budget.attempts

    def translate(self, resp: httpx.Response, *, resource: str) -> None:
        """Raise the translated error for a failed `resp` (no-op on success).

        The one place a vendor's own signals are read: a subclass overrides it (GitHub's 403 with
        x-ratelimit-remaining 0 is transient; a registry's 401 challenge or 404 is an answer, not an error).
        """
        raise_for_vendor(resp, provider=self.provider, resource=resource)

    async def _once(
        self, method: str, url: str, resource: str, kw: dict[str, Any]
    ) -> httpx.Response:
        try:
            resp = await self.client.request(method, url, **kw)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise TransientError(
                f"{type(exc).__name__} on {method} {_path(url)}", provider=self.provider, resource=resource
            ) from None
        except (httpx.LocalProtocolError, httpx.InvalidURL, httpx.UnsupportedProtocol, UnicodeError) as exc:
            # Their text quotes the offending header value or URL (a token, a password): never let it through.
            raise PermanentError(
                f"{_malformed(exc)} on {method} {_path(url)} (a secret with a control or non-ASCII character, "
                "or a malformed api_url?)", provider=self.provider, resource=resource,
            ) from None
        self.translate(resp, resource=resource)
        return resp

    async def request(
        self,
        method: str,
        url: str,
        *,
        resource: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send one request; return the successful response or raise a translated error."""
        kw: dict[str, Any] = {"params": params, "json": json, "headers": headers, "content": content}
        return await call_with_budget(self.budget, lambda: self._once(method, url, resource, kw))

    async def json(self, method: str, url: str, *, resource: str, **kw: Any) -> Any:
        """`request` and decode the JSON body."""
        resp = await self.request(method, url, resource=resource, **kw)
        return resp.json() if resp.content else None
