"""The check interface shared by pre-deploy gates and post-deploy validation checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from deployments.spec import CheckSpec, EnvironmentSpec
from providers.errors import ConfigError
from providers.models import CheckResult, Release, ServiceVersion


@dataclass(frozen=True)
class CheckContext:
    """What a check factory gets.

    Attributes:
        env: the environment spec.
        spec: this check's spec (settings in `spec.settings`).
        secrets: resolved secrets keyed like `spec.secrets`.
        artifacts_dir: where the check may write screenshots, traces, reports.
        baseline_dir: per-environment store of baselines from the last good release (checks that compare).
    """

    env: EnvironmentSpec
    spec: CheckSpec
    secrets: dict[str, SecretStr]
    artifacts_dir: Path
    baseline_dir: Path
    extra: dict[str, object] = field(default_factory=dict)


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


def service_url(spec: CheckSpec, inp: CheckInput, override: str | None = None) -> str:
    """The base URL a check observes, without a trailing slash: `override` (its settings.url) or its service's URL."""
    if override:
        return override.rstrip("/")
    version = inp.services.get(spec.service or "")
    if version is None or not version.url:
        raise ConfigError(f"check {spec.name}: service {spec.service!r} has no URL; set settings.url")
    return version.url.rstrip("/")
