"""The service-target interface: a target acts on one service (deploy, wait, roll back) and reports its state."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from deployments.spec import EnvironmentSpec, ServiceSpec
from providers.errors import ConfigError
from providers.models import DeployHandle, DeployResult, Release, ServiceVersion
from providers.source.git import GitSource


@dataclass(frozen=True)
class TargetContext:
    """What a target factory gets besides its service spec.

    Attributes:
        env: environment name (dev, staging, prod).
        spec: the service's spec (provider settings live in `spec.settings`).
        secrets: resolved secrets for this service, keyed by provider setting name (`spec.secrets` keys).
        state_dir: a directory this target may keep local state in (created by the caller).
        source: the app's git source, to check out a SHA (used by targets that build locally).
        preview: True where the environment wants preview deployments (dev) instead of production ones.
    """

    env: str
    spec: ServiceSpec
    secrets: dict[str, SecretStr]
    state_dir: Path
    source: GitSource | None = None
    preview: bool = False
    extra: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class ServiceTarget(Protocol):
    """Acts on one service. Every method may raise TransientError (retried) or PermanentError (stops).

    Idempotency contract: `deploy(release)` called twice with the same `release.release_id` returns the handle of
    the same vendor deployment and never creates a second one; `rollback(to)` to the version already current is a
    no-op that returns a READY-able handle.
    """

    service: str
    provider: str

    async def current(self) -> ServiceVersion | None:
        """The version serving now, or None when the service has never been deployed."""
        ...

    async def deploy(self, release: Release) -> DeployHandle:
        """Start deploying `release.sha` (idempotent per `release.release_id`); does not wait."""
        ...

    async def wait_ready(self, handle: DeployHandle, timeout: float) -> DeployResult:
        """Follow a deployment (or rollback) until READY, FAILED or `timeout` seconds (then FAILED)."""
        ...

    async def rollback(self, to: ServiceVersion) -> DeployHandle:
        """Make `to` the serving version again (vendor rollback/undo where the vendor has one)."""
        ...

    async def history(self) -> list[ServiceVersion]:
        """Earlier versions, newest first, as far as the vendor remembers them."""
        ...

    async def aclose(self) -> None:
        """Release clients and connections (never stops the deployed service)."""
        ...


@runtime_checkable
class CanaryTarget(ServiceTarget, Protocol):
    """A target that can split traffic between the serving (stable) version and a canary (optional capability).

    A target offers it by setting `supports_canary = True` and these methods. Idempotency contract: each may be
    called again after a crash or a lost answer and converges to the same state; `abort_canary` with no canary in
    progress is a no-op.
    """

    supports_canary: bool

    async def set_canary(self, release: Release, weight: int, timeout: float) -> DeployResult:
        """Start the canary of `release` unless it runs, wait until it is ready, then send it `weight` % of the
        traffic (the rest stays on the stable version). READY carries the canary's own URL in `handle.url`."""
        ...

    async def promote_canary(self, release: Release, timeout: float) -> DeployResult:
        """The canary's version serves 100 % (the target's usual rollout); canary-only resources are removed."""
        ...

    async def abort_canary(self, stable: ServiceVersion | None) -> None:
        """All traffic back to `stable` (the version serving before the canary) at once; the canary is removed."""
        ...


def supports_canary(target: object) -> bool:
    """True when `target` declares the canary capability (`supports_canary = True`)."""
    return getattr(target, "supports_canary", False) is True and isinstance(target, CanaryTarget)


def require_canary(spec: EnvironmentSpec, targets: dict[str, ServiceTarget], spec_file: object = None) -> None:
    """Refuse (ConfigError naming `services[i].strategy`) a canary strategy on a target that cannot split traffic."""
    for i, svc in enumerate(spec.services):
        target = targets.get(svc.name)
        if svc.strategy.canary and target is not None and not supports_canary(target):
            where = f"services[{i}].strategy"
            raise ConfigError(
                f"provider {svc.provider!r} cannot split traffic, so it cannot run a canary for {svc.name!r}: "
                "use `strategy: {kind: all_at_once}` (or a target that supports canary: local, kubernetes, gke, "
                "vercel)", f"{spec_file}: {where}" if spec_file is not None else where,
            )
