"""A stand-in vendor whose state is a JSON file per service: like `memory`, but it outlives a killed run's process.

The `memory` target keeps its deployments in the run's process, so after a SIGKILL nothing is left to compensate
against (and the next process sees a vendor that never heard of the service). A real vendor keeps serving what it
served; this one does too, which is what a kill scenario (bench_scaleout, chaos) needs.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from providers.config import parse_settings
from providers.errors import ConfigError
from providers.models import DeployHandle, DeployResult, DeployStatus, Release, ServiceVersion
from providers.targets.base import TargetContext


class FiledSettings(BaseModel):
    """Settings of the `memory-file` target."""

    model_config = ConfigDict(extra="forbid")
    deploy_s: float = Field(default=0.0, ge=0, description="how long a deployment takes to become ready")
    dir: str = Field(description="folder of the vendor's state (one JSON file per service)")


class FiledTarget:
    """Deployments in `<dir>/<service>.json`; one becomes READY `deploy_s` (wall clock) after it was created."""

    provider = "memory-file"

    def __init__(self, service: str, settings: FiledSettings) -> None:
        self.service, self.settings = service, settings
        self.file = Path(settings.dir) / f"{service}.json"

    def _load(self) -> dict[str, object]:
        try:
            data: dict[str, object] = json.loads(self.file.read_text())
            return data
        except FileNotFoundError:
            return {"deployments": {}, "by_release": {}, "active": None}

    def _save(self, state: dict[str, object]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.file)  # atomic: a kill never leaves half a file

    def _deps(self, state: dict[str, object]) -> dict[str, dict[str, object]]:
        deps = state["deployments"]
        assert isinstance(deps, dict)
        return deps

    def _version(self, dep: dict[str, object]) -> ServiceVersion:
        return ServiceVersion(service=self.service, version=str(dep["version"]), release_id=str(dep["release_id"]),
                              vendor_ref=str(dep["id"]))

    async def current(self) -> ServiceVersion | None:
        state = self._load()
        active = state["active"]
        return self._version(self._deps(state)[str(active)]) if active else None

    async def deploy(self, release: Release) -> DeployHandle:
        state = self._load()
        by_release = state["by_release"]
        assert isinstance(by_release, dict)
        dep_id = by_release.get(release.release_id)
        if dep_id is None:
            dep_id = f"file-{uuid.uuid4().hex[:12]}"
            self._deps(state)[dep_id] = {"id": dep_id, "version": release.sha, "release_id": release.release_id,
                                         "ready_at": time.time() + self.settings.deploy_s}
            by_release[release.release_id] = dep_id
            self._save(state)
        return DeployHandle(service=self.service, version=release.sha, release_id=release.release_id,
                            vendor_ref=str(dep_id))

    async def wait_ready(self, handle: DeployHandle, timeout: float) -> DeployResult:
        dep = self._deps(self._load())[str(handle.vendor_ref)]
        wait = float(str(dep["ready_at"])) - time.time()
        if wait > timeout:
            await asyncio.sleep(timeout)
            return DeployResult(handle=handle, status=DeployStatus.FAILED, message="not ready before the timeout")
        if wait > 0:
            await asyncio.sleep(wait)
        state = self._load()
        state["active"] = handle.vendor_ref
        self._save(state)
        return DeployResult(handle=handle, status=DeployStatus.READY)

    async def rollback(self, to: ServiceVersion) -> DeployHandle:
        state = self._load()
        deps = self._deps(state)
        dep_id = to.vendor_ref if to.vendor_ref in deps else next(
            (k for k, d in deps.items() if d["version"] == to.version), None)
        if dep_id is None:
            raise ConfigError(f"memory-file target {self.service}: no deployment of {to.version} to roll back to")
        state["active"] = dep_id
        self._save(state)
        dep = deps[dep_id]
        return DeployHandle(service=self.service, version=str(dep["version"]), release_id=str(dep["release_id"]),
                            vendor_ref=dep_id)

    async def history(self) -> list[ServiceVersion]:
        return [self._version(d) for d in reversed(self._deps(self._load()).values())]

    async def aclose(self) -> None:
        return None


def make_target(ctx: TargetContext) -> FiledTarget:
    """Factory registered as `memory-file`."""
    return FiledTarget(ctx.spec.name, parse_settings(FiledSettings, ctx.spec.settings,
                                                     f"services.{ctx.spec.name}.settings"))
