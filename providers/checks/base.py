"""The one base of pre-deploy gates and post-deploy checks: context, settings, timing, ERROR when it cannot measure."""

from __future__ import annotations

import asyncio
import time
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, runtime_checkable

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from deployments.spec import CheckSpec, EnvironmentSpec
from providers.errors import AevonError, ConfigError, ProviderError
from providers.models import CheckResult, Finding, Outcome, Release, ServiceVersion, Severity

if TYPE_CHECKING:
    from providers.state.store import StateStore

S = TypeVar("S", bound=BaseModel)
Section = Literal["gates", "validation.checks"]  # where the spec lists a check, spelled as the spec spells it
GATES: Section = "gates"
VALIDATION: Section = "validation.checks"
MAX_SUMMARY_ITEMS = 6
MAX_ERROR_TEXT = 500


def field_path(parts: tuple[str | int, ...]) -> str:
    """`("settings", "images", 0)` -> `settings.images[0]`: list positions in brackets, as the spec loader does."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True)
class CheckContext:
    """What a check factory gets.

    Attributes:
        env: the environment spec.
        spec: this check's spec (settings in `spec.settings`).
        secrets: resolved secrets keyed like `spec.secrets`.
        artifacts_dir: where the check may write screenshots, traces, reports.
        baseline_dir: per-environment store of baselines from the last good release (checks that compare).
        extra: objects a caller injects (tests: `http_client`, `sentry_http_client` ...).
        section, index: where the spec lists this check (`gates[2]`, `validation.checks[4]`).
        spec_file: the spec file it comes from, named in ConfigError locations when known.
    """

    env: EnvironmentSpec
    spec: CheckSpec
    secrets: dict[str, SecretStr]
    artifacts_dir: Path
    baseline_dir: Path
    extra: dict[str, object] = field(default_factory=dict)
    _: KW_ONLY
    section: Section
    index: int
    spec_file: Path | None = None
    state: StateStore | None = None  # the run's state database (ledger, backup catalog), for gates that read it

    def location(self, *parts: str | int) -> str:
        """Where a field of this check lives: `deployments/prod.yaml: gates[2].settings.token_scope`."""
        where = field_path((f"{self.section}[{self.index}]", *parts))
        return f"{self.spec_file}: {where}" if self.spec_file is not None else where

    def settings(self, model: type[S]) -> S:
        """`spec.settings` validated into `model`; ConfigError names the first bad field's full location."""
        try:
            return model.model_validate(self.spec.settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(first["msg"], self.location("settings", *first["loc"])) from exc

    def secret(self, key: str) -> SecretStr | None:
        """`secrets[key]` when set and non-empty."""
        value = self.secrets.get(key)
        return value if value is not None and value.get_secret_value() else None

    def require_secret(self, key: str, what: str) -> SecretStr:
        """`secrets[key]`, or ConfigError at `<location>.secrets` saying what the secret is for."""
        value = self.secrets.get(key)
        if value is None:
            raise ConfigError(f"needs `secrets: {{{key}: <secret name>}}` ({what})", self.location("secrets"))
        return value

    def http_client(self, key: str = "http_client") -> httpx.AsyncClient | None:
        """The `httpx.AsyncClient` a caller injected as `extra[key]`, if any."""
        client = self.extra.get(key)
        return client if isinstance(client, httpx.AsyncClient) else None


@dataclass(frozen=True)
class CheckInput:
    """What a run gives a check: the release and where each service is reachable now."""

    release: Release
    services: dict[str, ServiceVersion]  # service name -> version deployed (url set where known)
    checkout_dir: Path | None = None


@runtime_checkable
class Check(Protocol):
    """Observes; never changes anything. Returns ERROR (not raises) when it cannot measure."""

    name: str
    kind: str

    async def run(self, inp: CheckInput) -> CheckResult:
        """Measure once and return PASSED, FAILED or ERROR with findings and metrics."""
        ...

    async def record_baseline(self, inp: CheckInput, result: CheckResult) -> None:
        """Keep what the next deploy compares against (called after a release is recorded good)."""
        ...


def summarize(findings: list[Finding]) -> str:
    """The findings' messages joined, the first few of them, for a one-line summary."""
    head = "; ".join(f.message for f in findings[:MAX_SUMMARY_ITEMS])
    more = len(findings) - MAX_SUMMARY_ITEMS
    return head + (f"; and {more} more" if more > 0 else "")


class BaseCheck:
    """Base of every gate and check: `measure` observes; `run` bounds and times it and never raises.

    PASSED: the release may go on. FAILED: it must not (findings say why). ERROR: the check could not measure
    (a provider error, an answer not shaped as documented, no answer within the spec's `timeout_s`); the task
    re-runs it per `error_retries` and counts it per `on_error`.
    """

    kind = "check"

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.name = ctx.spec.name

    async def measure(self, inp: CheckInput) -> CheckResult:
        """Observe once; raise ProviderError (or let a malformed answer raise) when it cannot."""
        raise NotImplementedError

    async def run(self, inp: CheckInput) -> CheckResult:
        """Measure once within `spec.timeout_s`; PASSED, FAILED or ERROR with `duration_s` set."""
        start = time.monotonic()
        limit = self.spec.timeout_s
        bound = asyncio.timeout(limit)
        try:
            async with bound:
                result = await self.measure(inp)
        except TimeoutError as exc:
            result = self.error(f"did not finish within {limit:g}s" if bound.expired()
                                else f"could not measure: {type(exc).__name__}")
        except ProviderError as exc:
            result = self.error(f"could not measure: {exc}", resource=exc.resource)
        except AevonError as exc:
            result = self.error(f"could not measure: {exc}")
        except (KeyError, TypeError, ValueError) as exc:  # an answer not shaped as documented
            result = self.error(f"could not measure: unexpected answer ({type(exc).__name__}: {exc})")
        except Exception as exc:  # a check must not take the run down; its text is not ours to show
            result = self.error(f"could not measure: {type(exc).__name__} while measuring")
        return result.model_copy(update={"duration_s": round(time.monotonic() - start, 3)})

    async def record_baseline(self, inp: CheckInput, result: CheckResult) -> None:
        """Nothing to keep, unless the check compares against the last good release."""
        return None

    def result(self, outcome: Outcome, summary: str, *, findings: list[Finding] | None = None,
               metrics: dict[str, float] | None = None, artifacts: dict[str, str] | None = None) -> CheckResult:
        """A result of this check (`duration_s` is set by `run`)."""
        return CheckResult(name=self.name, kind=self.kind, outcome=outcome, summary=summary, findings=findings or [],
                           metrics=metrics or {}, artifacts=artifacts or {})

    def passed(self, summary: str, findings: list[Finding] | None = None, metrics: dict[str, float] | None = None,
               artifacts: dict[str, str] | None = None) -> CheckResult:
        return self.result(Outcome.PASSED, summary, findings=findings, metrics=metrics, artifacts=artifacts)

    def failed(self, findings: list[Finding], metrics: dict[str, float] | None = None, prefix: str = "", *,
               summary: str | None = None, artifacts: dict[str, str] | None = None) -> CheckResult:
        """FAILED; the summary is `prefix` + the first findings' messages unless given."""
        text = summary if summary is not None else prefix + summarize(findings)
        return self.result(Outcome.FAILED, text, findings=findings, metrics=metrics, artifacts=artifacts)

    def error(self, message: str, resource: str | None = None, *, findings: list[Finding] | None = None,
              metrics: dict[str, float] | None = None, artifacts: dict[str, str] | None = None) -> CheckResult:
        """ERROR (could not measure); one HIGH finding carries `message` unless `findings` are given."""
        message = message[:MAX_ERROR_TEXT]
        found = findings if findings is not None else [Finding(message=message, severity=Severity.HIGH,
                                                               location=resource)]
        return self.result(Outcome.ERROR, message, findings=found, metrics=metrics, artifacts=artifacts)


def service_url(spec: CheckSpec, inp: CheckInput, override: str | None = None) -> str:
    """The base URL a check observes, without a trailing slash: `override` (its settings.url) or its service's URL."""
    if override:
        return override.rstrip("/")
    version = inp.services.get(spec.service or "")
    if version is None or not version.url:
        raise ConfigError(f"check {spec.name}: service {spec.service!r} has no URL; set settings.url")
    return version.url.rstrip("/")
