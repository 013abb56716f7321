"""Koyeb service target: a new service definition per release, status polling, rollback by definition."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from pydantic import Field

from providers.errors import PermanentError
from providers.models import DeployHandle, DeployStatus, Release, ServiceVersion
from providers.targets.base import TargetContext
from providers.targets.paas.base import (
    RELEASE_KEY,
    CancelsRollout,
    PaasSettings,
    PaasTarget,
    Rollout,
    ShaTemplate,
    load,
    parse_time,
    status_of,
)

STATUSES = {
    "PENDING": DeployStatus.PENDING,
    "PROVISIONING": DeployStatus.IN_PROGRESS,
    "SCHEDULED": DeployStatus.IN_PROGRESS,
    "ALLOCATING": DeployStatus.IN_PROGRESS,
    "STARTING": DeployStatus.IN_PROGRESS,
    "DEGRADED": DeployStatus.FAILED,  # koyeb-cli `service update --wait` ends in error on DEGRADED/UNHEALTHY
    "UNHEALTHY": DeployStatus.FAILED,
    "HEALTHY": DeployStatus.READY,
    "SLEEPING": DeployStatus.READY,  # scaled to zero after being healthy
    "ERRORING": DeployStatus.FAILED,
    "ERROR": DeployStatus.FAILED,
    "CANCELING": DeployStatus.CANCELED,
    "CANCELED": DeployStatus.CANCELED,
}
ENDED = ("STOPPING", "STOPPED", "STASHED")  # replaced: READY if it had become healthy, else CANCELED
# not healthy yet; Koyeb cancels the first three only (Cancel Deployment): ALLOCATING and STARTING run to their end
RUNNING = ("PENDING", "PROVISIONING", "SCHEDULED", "ALLOCATING", "STARTING")


class KoyebSettings(PaasSettings):
    """`services.<name>.settings` of a Koyeb service."""

    api_url: str = "https://app.koyeb.com"
    service_id: str = Field(min_length=1, description="the Koyeb service id")
    image: ShaTemplate | None = Field(
        default=None, description="docker services: image template with {sha}; unset: git services pinned to the SHA"
    )


def release_of(dep: dict[str, Any]) -> str | None:
    """The release id the deployment's definition carries, if any."""
    env = (dep.get("definition") or {}).get("env") or []
    return next((str(e.get("value")) for e in env if e.get("key") == RELEASE_KEY), None)


class KoyebTarget(CancelsRollout, PaasTarget):
    """A Koyeb service as a service target.

    Follows the Koyeb REST API (https://www.koyeb.com/docs/reference/api, base https://app.koyeb.com, Bearer token;
    models as published in the OpenAPI-generated koyeb/koyeb-api-client-go docs):
    - Get Service, `GET /v1/services/{id}` (`service.active_deployment_id`, `service.latest_deployment_id`)
    - Update Service, `PUT /v1/services/{id}` (body `{"definition": DeploymentDefinition}`; a new deployment is
      created from it and becomes `latest_deployment_id`); DeploymentDefinition carries `git` {repository, branch, sha}
      or `docker` {image}, and `env` [{key, value}]
    - Get Deployment, `GET /v1/deployments/{id}` (`deployment.status`, `definition`, `messages`, `succeeded_at`)
    - List Deployments, `GET /v1/deployments?service_id=&limit=&offset=` (`deployments`, `has_next`), newest first
    - DeploymentStatus: PENDING, PROVISIONING, SCHEDULED, CANCELING, CANCELED, ALLOCATING, STARTING, HEALTHY, DEGRADED,
      UNHEALTHY, STOPPING, STOPPED, ERRORING, ERROR, STASHED, SLEEPING
    - Errors: the `Error` model `{"status", "code", "message"}` (401 for a bad token).
    - Outcome as koyeb-cli judges it (koyeb/koyeb-cli pkg/koyeb/services_update.go and services_redeploy.go, the
      `--wait` loops): ERROR, ERRORING, DEGRADED, UNHEALTHY and CANCELED end the wait as a failure at once;
      PENDING, PROVISIONING, SCHEDULED, ALLOCATING and STARTING are still in progress.
    - Cancel Deployment, `POST /v1/deployments/{id}/cancel` (no body; 200 `CancelDeploymentReply`, an empty
      object; 400 `ErrorWithFields`, 401/403/404/500/503 `Error`), "allowed for the following status: pending,
      provisioning, scheduled" (koyeb/koyeb-api-client-python spec/openapi.json, docs/DeploymentsApi.md
      `cancel_deployment`); the deployment then goes CANCELING, CANCELED and never HEALTHY. The error a later
      status gets is not stated beyond the 400 model, so a refusal is judged by reading the deployment again.
    Koyeb has no rollback call (`POST /v1/services/{id}/redeploy` only rebuilds the current definition with an optional
    sha), so a rollback re-applies the earlier deployment's definition with Update Service.

    Idempotency: the definition we apply carries the env var AEVON_RELEASE_ID; `deploy` lists the service's deployments
    and reuses the one whose definition names the release.
    """

    provider = "koyeb"

    def __init__(self, ctx: TargetContext) -> None:
        settings, token, client, owns = load(ctx, KoyebSettings)
        super().__init__(ctx.spec.name, settings, token, client, owns)
        self.cfg = settings
        self.res = f"service {settings.service_id}"

    def _kw(self, **params: Any) -> dict[str, Any]:
        return {"params": params or None, "headers": {"Authorization": f"Bearer {self._token.get_secret_value()}"}}

    async def _service(self) -> dict[str, Any]:
        body = await self.http.json("GET", self.url(f"/v1/services/{self.cfg.service_id}"), resource=self.res,
                                    **self._kw())
        return dict(body["service"])

    async def _deployment(self, dep_id: str) -> dict[str, Any]:
        body = await self.http.json("GET", self.url(f"/v1/deployments/{dep_id}"), resource=f"deployment {dep_id}",
                                    **self._kw())
        return dict(body["deployment"])

    async def _deployments(self, pages: int = 1) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        limit = self.cfg.history_limit
        for page in range(pages):
            body = await self.http.json("GET", self.url("/v1/deployments"), resource=f"{self.res} deployments",
                                        **self._kw(service_id=self.cfg.service_id, limit=limit, offset=page * limit))
            out.extend(body.get("deployments") or [])
            if not body.get("has_next"):
                break
        return out

    def _version(self, dep: dict[str, Any]) -> ServiceVersion:
        definition = dep.get("definition") or {}
        image = str((definition.get("docker") or {}).get("image") or "")
        sha = (definition.get("git") or {}).get("sha") or image.rpartition(":")[2]
        return ServiceVersion(service=self.service, version=str(sha), release_id=release_of(dep),
                              vendor_ref=str(dep["id"]), detail={"status": dep.get("status")})

    async def _apply(self, definition: dict[str, Any], resource: str) -> str:
        """Update Service with `definition` (sent once); the id of the deployment it starts."""
        body = await self.http_once.json("PUT", self.url(f"/v1/services/{self.cfg.service_id}"),
                                         json={"definition": definition}, resource=resource, **self._kw())
        return str(body["service"]["latest_deployment_id"])

    # -- PaasTarget ----------------------------------------------------------------------------------------------
    async def _find_release(self, release: Release) -> DeployHandle | None:
        for dep in await self._deployments(pages=5):
            if release_of(dep) == release.release_id:
                return self.handle(release.sha, str(dep["id"]), release_id=release.release_id)
        return None

    async def _create(self, release: Release) -> DeployHandle:
        latest = (await self._service()).get("latest_deployment_id")
        if not latest:
            raise PermanentError("service has no definition yet: create it in Koyeb first",
                                 provider=self.provider, resource=self.res)
        definition = copy.deepcopy((await self._deployment(str(latest))).get("definition") or {})
        if self.cfg.image is not None:
            definition.setdefault("docker", {})["image"] = self.cfg.image.format(sha=release.sha)
        elif "git" in definition:
            definition["git"]["sha"] = release.sha
        else:
            raise PermanentError("a docker service needs settings.image", provider=self.provider, resource=self.res)
        env = [e for e in definition.get("env") or [] if e.get("key") != RELEASE_KEY]
        definition["env"] = [*env, {"scopes": [], "key": RELEASE_KEY, "value": release.release_id}]
        dep_id = await self._apply(definition, f"{self.res} update")
        return self.handle(release.sha, dep_id, release_id=release.release_id)

    async def _poll(self, handle: DeployHandle) -> tuple[DeployStatus, str]:
        dep = await self._deployment(str(handle.vendor_ref))
        status = str(dep.get("status"))
        if status in ENDED:
            return (DeployStatus.READY if dep.get("succeeded_at") else DeployStatus.CANCELED), status
        said = status
        if STATUSES.get(status) is DeployStatus.FAILED:
            said = f"{status}: {'; '.join(str(m) for m in dep.get('messages') or []) or 'deployment failed'}"
        return status_of(STATUSES, status), said

    async def _rollback_to(self, vendor_ref: str, to: ServiceVersion) -> DeployHandle:
        definition = (await self._deployment(vendor_ref)).get("definition")
        if not definition:
            raise PermanentError("earlier deployment has no definition", provider=self.provider,
                                 resource=f"deployment {vendor_ref}")
        dep_id = await self._apply(definition, f"{self.res} rollback to {vendor_ref}")
        return self.handle(to.version, dep_id, release_id=to.release_id, kind="rollback", to=vendor_ref)

    async def _find_rollback(self, vendor_ref: str, to: ServiceVersion, since: datetime) -> DeployHandle | None:
        """A deployment of `to`'s version created since `since` (Update Service with the earlier definition)."""
        for dep in await self._deployments():
            created = parse_time(dep.get("created_at"))
            if (self._version(dep).version == to.version and str(dep["id"]) != vendor_ref
                    and created is not None and created >= since):
                return self.handle(to.version, str(dep["id"]), release_id=to.release_id, kind="rollback",
                                   to=vendor_ref)
        return None

    # -- CancelsRollout ------------------------------------------------------------------------------------------
    async def _rollout(self, handle: DeployHandle) -> Rollout:
        status = str((await self._deployment(str(handle.vendor_ref))).get("status"))
        if status in RUNNING:
            return Rollout.RUNNING
        return Rollout.CANCELLED if status in ("CANCELING", "CANCELED") else Rollout.ENDED

    async def _cancel(self, handle: DeployHandle) -> None:
        await self.http.json("POST", self.url(f"/v1/deployments/{handle.vendor_ref}/cancel"),
                             resource=f"deployment {handle.vendor_ref} cancel", **self._kw())

    async def current(self) -> ServiceVersion | None:
        active = (await self._service()).get("active_deployment_id")
        return self._version(await self._deployment(str(active))) if active else None

    async def history(self) -> list[ServiceVersion]:
        deps = [d for d in await self._deployments(pages=3) if d.get("succeeded_at")]
        return [self._version(d) for d in deps[: self.cfg.history_limit]]


def make_target(ctx: TargetContext) -> KoyebTarget:
    """Factory registered as `koyeb`."""
    return KoyebTarget(ctx)
