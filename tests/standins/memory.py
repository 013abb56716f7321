"""An in-process service target with fixed latencies: the bench's stand-in vendor (no network, no processes)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from providers.config import parse_settings
from providers.errors import ConfigError
from providers.models import DeployHandle, DeployResult, DeployStatus, Release, ServiceVersion
from providers.targets.base import TargetContext


class MemorySettings(BaseModel):
    """Settings of the memory target."""

    model_config = ConfigDict(extra="forbid")
    deploy_s: float = Field(default=0.0, ge=0, description="how long a deployment takes to become ready")
    fail_shas: list[str] = Field(default_factory=list, description="SHAs whose deployment fails")
    world: str = Field(default="default", description="targets naming the same world share their state")


@dataclass
class _Deployment:
    id: str
    version: str
    release_id: str | None
    ready_at: float
    fails: bool


@dataclass
class _Service:
    deployments: dict[str, _Deployment] = field(default_factory=dict)
    by_release: dict[str, str] = field(default_factory=dict)
    active: str | None = None


_WORLDS: dict[str, dict[str, _Service]] = {}
_IDS = itertools.count(1)


class MemoryTarget:
    """Keeps deployments in a dict; a deployment becomes READY (or FAILED) `deploy_s` after it was created."""

    provider = "memory"
    abandonable_rollout = True  # a deployment never stopped waiting for never becomes active (tasks/services.py)

    def __init__(self, service: str, settings: MemorySettings) -> None:
        self.service = service
        self.settings = settings
        self._svc = _WORLDS.setdefault(settings.world, {}).setdefault(service, _Service())

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _version(self, dep: _Deployment) -> ServiceVersion:
        return ServiceVersion(service=self.service, version=dep.version, release_id=dep.release_id, vendor_ref=dep.id)

    async def current(self) -> ServiceVersion | None:
        if self._svc.active is None:
            return None
        return self._version(self._svc.deployments[self._svc.active])

    async def deploy(self, release: Release) -> DeployHandle:
        dep_id = self._svc.by_release.get(release.release_id)
        if dep_id is None:
            dep_id = f"mem-{next(_IDS)}"
            self._svc.deployments[dep_id] = _Deployment(
                dep_id, release.sha, release.release_id, self._now() + self.settings.deploy_s,
                release.sha in self.settings.fail_shas,
            )
            self._svc.by_release[release.release_id] = dep_id
        return DeployHandle(service=self.service, version=release.sha, release_id=release.release_id, vendor_ref=dep_id)

    async def wait_ready(self, handle: DeployHandle, timeout: float) -> DeployResult:
        dep = self._svc.deployments[str(handle.vendor_ref)]
        wait = dep.ready_at - self._now()
        if wait > timeout:
            await asyncio.sleep(timeout)
            return DeployResult(handle=handle, status=DeployStatus.FAILED, message="not ready before the timeout")
        if wait > 0:
            await asyncio.sleep(wait)
        if dep.fails:
            return DeployResult(handle=handle, status=DeployStatus.FAILED, message="deployment failed")
        self._svc.active = dep.id
        return DeployResult(handle=handle, status=DeployStatus.READY)

    async def rollback(self, to: ServiceVersion) -> DeployHandle:
        dep_id = to.vendor_ref if to.vendor_ref in self._svc.deployments else None
        if dep_id is None:
            dep_id = next((d.id for d in self._svc.deployments.values() if d.version == to.version), None)
        if dep_id is None:
            raise ConfigError(f"memory target {self.service}: no deployment of {to.version} to roll back to")
        self._svc.active = dep_id
        dep = self._svc.deployments[dep_id]
        return DeployHandle(service=self.service, version=dep.version, release_id=dep.release_id, vendor_ref=dep_id)

    async def history(self) -> list[ServiceVersion]:
        return [self._version(d) for d in reversed(self._svc.deployments.values())]

    def deployment_count(self) -> int:
        return len(self._svc.deployments)

    async def aclose(self) -> None:
        return None


def make_target(ctx: TargetContext) -> MemoryTarget:
    """Factory registered as `memory`."""
    settings = parse_settings(MemorySettings, ctx.spec.settings, f"services.{ctx.spec.name}.settings")
    return MemoryTarget(ctx.spec.name, settings)
