"""Kubernetes and GKE client errors translated once into Transient/Permanent errors, and a retrying call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from providers.clients.http import TRANSIENT_STATUS, parse_retry_after
from providers.clients.retry import VENDOR_BUDGET, call_with_budget
from providers.errors import AevonError, PermanentError, TransientError

T = TypeVar("T")



def _status_message(body: Any) -> tuple[str, str, float | None]:
    """(reason, message, retryAfterSeconds) of a `kind: Status` body; the raw text head when it is not one."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return "", "", None
    try:
        status = json.loads(body)
    except ValueError:
        return "", str(body)[:300], None
    if not isinstance(status, dict):
        return "", str(body)[:300], None
    details = status.get("details") or {}
    retry = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    return str(status.get("reason") or ""), str(status.get("message") or "")[:300], retry


def translate_kube(exc: BaseException, *, provider: str, resource: str, op: str) -> AevonError | None:
    """The aevon error for a kubernetes-client failure, or None when `exc` is not a vendor failure."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        reason, message, retry_body = _status_message(exc.body)
        headers = exc.headers or {}
        retry = parse_retry_after(headers.get("Retry-After") if hasattr(headers, "get") else None)
        if retry is None and retry_body is not None:
            retry = float(retry_body)
        text = f"HTTP {status} {reason or exc.reason or ''} on {op}: {message or 'no message'}".replace("  ", " ")
        if status in TRANSIENT_STATUS or status == 0:
            return TransientError(text, provider=provider, resource=resource, retry_after=retry)
        return PermanentError(text, provider=provider, resource=resource)
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and isinstance(exc.reason, urllib3.exceptions.SSLError):
        return PermanentError(
            f"TLS verification failed on {op} (cluster CA?): {type(exc.reason).__name__}",
            provider=provider,
            resource=resource,
        )
    if isinstance(exc, urllib3.exceptions.SSLError):
        return PermanentError(f"TLS error on {op}: {type(exc).__name__}", provider=provider, resource=resource)
    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
        inner = getattr(exc, "reason", None)
        kind = type(inner).__name__ if isinstance(inner, BaseException) else type(exc).__name__
        return TransientError(f"{kind} on {op}", provider=provider, resource=resource)
    return None


def translate_google(exc: BaseException, *, provider: str, resource: str, op: str) -> AevonError | None:
    """The aevon error for a google-cloud-container / google-auth failure, or None when it is none of theirs."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.GoogleAPICallError):
        code = int(exc.code or 0)
        response = getattr(exc, "response", None)
        retry = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        text = f"HTTP {code} on {op}: {exc.message}"[:400]
        if code in TRANSIENT_STATUS:
            return TransientError(text, provider=provider, resource=resource, retry_after=retry)
        return PermanentError(text, provider=provider, resource=resource)
    if isinstance(exc, gexc.RetryError):
        return TransientError(f"retries exhausted on {op}", provider=provider, resource=resource)
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return PermanentError("no Google credentials found (set up ADC or give a token secret)", provider=provider)
    if isinstance(exc, auth_exc.TransportError):
        return TransientError(f"credential refresh failed on {op} (transport)", provider=provider, resource=resource)
    if isinstance(exc, auth_exc.RefreshError):
        # google-auth's session refreshes on 401 and raises this when the credentials cannot be refreshed.
        return PermanentError(
            f"credentials refused on {op} (HTTP 401) and could not be refreshed", provider=provider, resource=resource
        )
    try:
        import requests
    except ImportError:  # pragma: no cover - google-api-core depends on requests
        return None
    if isinstance(exc, requests.exceptions.SSLError):
        return PermanentError(f"TLS error on {op}", provider=provider, resource=resource)
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return TransientError(f"{type(exc).__name__} on {op}", provider=provider, resource=resource)
    return None


class RetryingCaller:
    """Runs one blocking client call in a worker thread; retries transient failures within a RetryBudget.

    The one retry layer of Kubernetes/GKE API calls (providers.clients.retry says why): `attempts`, `backoff_s`
    and `max_wait_s` override VENDOR_BUDGET's fields; never shorter than the server's Retry-After. What is still
    transient after that is raised as RetriesSpent, which no task retries again.
    """

    def __init__(
        self,
        provider: str,
        *,
        attempts: int | None = None,
        backoff_s: float | None = None,
        max_wait_s: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.provider = provider
        self.budget = VENDOR_BUDGET.with_(attempts=attempts, backoff_s=backoff_s, max_wait_s=max_wait_s)
        self._sleep = sleep

    async def call(self, op: str, resource: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a thread; the result, or the translated error once retries are spent."""

        async def once() -> T:
            try:
                return await asyncio.to_thread(fn, *args, **kwargs)
            except Exception as exc:
                err = translate_kube(exc, provider=self.provider, resource=resource, op=op) or translate_google(
                    exc, provider=self.provider, resource=resource, op=op
                )
                if err is None:
                    raise
                raise err from exc

        return await call_with_budget(self.budget, once, sleep=self._sleep)
