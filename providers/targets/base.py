"""The service-target interface: a target acts on one service (deploy, wait, roll back) and reports its state."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from deployments.spec import ServiceSpec
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
