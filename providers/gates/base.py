"""Shared plumbing of the pre-deploy gates: settings, injected HTTP client, timing, and ERROR on provider failure."""

from __future__ import annotations

import time
from typing import TypeVar

import httpx
from pydantic import BaseModel, SecretStr

from providers.checks.base import CheckContext, CheckInput
from providers.clients.github import GitHubSettings, repository_of
from providers.config import parse_settings
from providers.errors import ProviderError
from providers.models import CheckResult, Finding, Outcome, Severity

S = TypeVar("S", bound=BaseModel)

MAX_SUMMARY_ITEMS = 6


def settings_location(ctx: CheckContext) -> str:
    """Where a gate's settings live in the spec, for ConfigError: `gates.<name>.settings`."""
    return f"gates.{ctx.spec.name}.settings"


def gate_settings(model: type[S], ctx: CheckContext) -> S:
    """The gate's settings validated into `model`; ConfigError names `gates.<name>.settings.<field>`."""
    return parse_settings(model, ctx.spec.settings, settings_location(ctx))


def injected_http(ctx: CheckContext) -> httpx.AsyncClient | None:
    """The `httpx.AsyncClient` a caller injected through `ctx.extra["http_client"]`, if any."""
    client = ctx.extra.get("http_client")
    return client if isinstance(client, httpx.AsyncClient) else None


def secret(ctx: CheckContext, key: str) -> SecretStr | None:
    """`ctx.secrets[key]` when set and non-empty."""
    value = ctx.secrets.get(key)
    return value if value is not None and value.get_secret_value() else None


def summarize(findings: list[Finding]) -> str:
    """The findings' messages joined, the first few of them, for a one-line summary."""
    head = "; ".join(f.message for f in findings[:MAX_SUMMARY_ITEMS])
    more = len(findings) - MAX_SUMMARY_ITEMS
    return head + (f"; and {more} more" if more > 0 else "")


class Gate:
    """Base of the gates: `evaluate` measures; `run` times it and turns provider failures into ERROR.

    A gate only observes. FAILED means the release must not ship (findings say what is missing); ERROR means
    the gate could not measure (GitHub or the registry unreachable, refused credentials, exhausted rate limit).
    """

    kind = "gate"

    def __init__(self, ctx: CheckContext) -> None:
        self.name = ctx.spec.name
        self.ctx = ctx

    async def evaluate(self, inp: CheckInput) -> CheckResult:
        raise NotImplementedError

    async def run(self, inp: CheckInput) -> CheckResult:
        """Measure once and return PASSED, FAILED or ERROR (never raises for a provider failure)."""
        start = time.monotonic()
        try:
            result = await self.evaluate(inp)
        except ProviderError as exc:
            result = self.error(f"could not measure: {exc}", resource=exc.resource)
        except (KeyError, TypeError, ValueError) as exc:  # an answer not shaped as documented
            result = self.error(f"could not measure: unexpected answer ({type(exc).__name__}: {exc})"[:500])
        return result.model_copy(update={"duration_s": round(time.monotonic() - start, 3)})

    async def record_baseline(self, inp: CheckInput, result: CheckResult) -> None:
        return None

    def passed(self, summary: str, findings: list[Finding] | None = None,
               metrics: dict[str, float] | None = None) -> CheckResult:
        return CheckResult(name=self.name, kind=self.kind, outcome=Outcome.PASSED, summary=summary,
                           findings=findings or [], metrics=metrics or {})

    def failed(self, findings: list[Finding], metrics: dict[str, float] | None = None,
               prefix: str = "") -> CheckResult:
        return CheckResult(name=self.name, kind=self.kind, outcome=Outcome.FAILED,
                           summary=prefix + summarize(findings), findings=findings, metrics=metrics or {})

    def error(self, message: str, resource: str | None = None) -> CheckResult:
        finding = Finding(message=message, severity=Severity.HIGH, location=resource)
        return CheckResult(name=self.name, kind=self.kind, outcome=Outcome.ERROR, summary=message,
                           findings=[finding])


class GitHubGate(Gate):
    """A gate reading one GitHub repository (owner/name from settings or the spec's source URL)."""

    def __init__(self, ctx: CheckContext, settings: GitHubSettings, *, uses_github: bool = True) -> None:
        super().__init__(ctx)
        self.gh_settings = settings
        self.repository = (
            repository_of(settings, ctx.env.source.repo, f"{settings_location(ctx)}.repository") if uses_github
            else settings.repository or ""
        )
        self.token = secret(ctx, "token")
        self.http = injected_http(ctx)
