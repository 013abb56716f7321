"""Render service target: deploy a commit (or image), follow the deploy, roll back to an earlier deploy."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx
from pydantic import Field, field_validator

from providers.clients.http import VendorClient, raise_for_vendor
from providers.errors import PermanentError, TransientError
from providers.models import DeployHandle, DeployStatus, Release, ServiceVersion, utcnow
from providers.targets.base import TargetContext
from providers.targets.paas.base import (
    CancelsRollout,
    IndexedTarget,
    PaasSettings,
    ReleaseIndex,
    Rollout,
    ShaTemplate,
    load,
    parse_time,
    status_of,
)

STATUSES = {
    "created": DeployStatus.PENDING,
    "queued": DeployStatus.PENDING,
    "build_in_progress": DeployStatus.IN_PROGRESS,
    "pre_deploy_in_progress": DeployStatus.IN_PROGRESS,
    "update_in_progress": DeployStatus.IN_PROGRESS,
    "live": DeployStatus.READY,
    "deactivated": DeployStatus.READY,  # it went live, then a newer deploy replaced it
    "build_failed": DeployStatus.FAILED,
    "pre_deploy_failed": DeployStatus.FAILED,
    "update_failed": DeployStatus.FAILED,
    "canceled": DeployStatus.CANCELED,
}
SERVED = ("live", "deactivated")
# statuses Cancel deploy acts on: the official CLI offers cancel for these only (render-oss/cli pkg/deploy/util.go
# `cancellableStatuses`); a queued deploy is read as still running, and a refused cancel of it as not cancellable
CANCELLABLE = ("created", "build_in_progress", "update_in_progress", "pre_deploy_in_progress")
RUNNING = (*CANCELLABLE, "queued")
AUTODEPLOY_ON = ("autodeploy is on for this Render service: the next push to its branch deploys over this "
                 "{what} (settings.disable_autodeploy: true turns it off through Update service)")


class RenderClient(VendorClient):
    """VendorClient that words Render's 409 on a deploy trigger (/reference/create-deploy: "The current state of the
    resource conflicts with this request", e.g. a suspended service) as what it means for a deploy."""

    def translate(self, resp: httpx.Response, *, resource: str) -> None:
        if resp.status_code == 409:
            try:
                said = str(resp.json().get("message") or "conflict")
            except (ValueError, AttributeError):
                said = "conflict"
            raise PermanentError(
                f"HTTP 409 on {resp.request.method} {resp.request.url.path}: Render refused it because the service's "
                f"current state conflicts with it ({said[:200]}); a suspended service must be resumed first",
                provider=self.provider, resource=resource,
            )
        raise_for_vendor(resp, provider=self.provider, resource=resource)


class RenderSettings(PaasSettings):
    """`services.<name>.settings` of a Render service."""

    api_url: str = "https://api.render.com/v1"
    service_id: str = Field(description="the Render service id (srv-...)")
    image_url: ShaTemplate | None = Field(
        default=None, description="image-backed services: image URL template with {sha}, e.g. ghcr.io/org/api:{sha}"
    )
    disable_autodeploy: bool = Field(
        default=False, description="turn the service's autodeploy off (Update service, autoDeploy: no) before each "
        "deploy and rollback, so that a push to its branch cannot overwrite them; otherwise reported",
    )

    @field_validator("service_id")
    @classmethod
    def _sid(cls, v: str) -> str:
        if not re.match(r"^srv-[a-z0-9]+$", v):
            raise ValueError("must be a Render service id such as srv-abc123")
        return v


class RenderTarget(CancelsRollout, IndexedTarget):
    """A Render web service or worker as a service target.

    Follows the Render public API reference (https://api-docs.render.com/reference), base URL https://api.render.com/v1,
    `Authorization: Bearer <API key>`:
    - Trigger deploy, `POST /services/{serviceId}/deploys` (body `clearCache`, `commitId` or `imageUrl`; 201 the deploy,
      202 queued with no body: the queued deploy is then found in the list; 409 the service's state conflicts,
      e.g. suspended): /reference/create-deploy. "Deploying a specific commit with this endpoint does not disable
      autodeploys for the service"; neither does a rollback: either is reported, or with `disable_autodeploy`
      autodeploy is turned off first with Update service, `PATCH /services/{serviceId}` `{"autoDeploy": "no"}`
      (/reference/update-service; Retrieve service `GET /services/{serviceId}` tells `autoDeploy` yes | no).
    - Retrieve deploy, `GET /services/{serviceId}/deploys/{deployId}`: /reference/retrieve-deploy
    - List deploys, `GET /services/{serviceId}/deploys` (`status`, `limit`, `cursor`; answer `[{"deploy", "cursor"}]`,
      the next page starts after the last item's cursor): /reference/list-deploys
    - Roll back deploy, `POST /services/{serviceId}/rollback` (body `deployId`; 201 the new deploy):
      /reference/rollback-deploy
    - Cancel deploy, `POST /services/{serviceId}/deploys/{deployId}/cancel` (no body; 200 the deploy, status
      `canceled`; errors 400, 401, 403, 404, 429, 500, 503 as `{"id", "message"}`): "Cancel an in-progress deploy
      for a service" (/reference/cancel-deploy; render-oss/cli pkg/client/client_gen.go `CancelDeploy`,
      `CancelDeployResponse`). The CLI offers it for created, build_in_progress, update_in_progress and
      pre_deploy_in_progress only (pkg/deploy/util.go). Which error a finished deploy gets is not stated, so a
      refused cancel is judged by reading the deploy again, never by the error's words.
    - Deploy `status`: created, queued, build_in_progress, update_in_progress, pre_deploy_in_progress, live,
      deactivated (was live, replaced), build_failed, update_failed, pre_deploy_failed, canceled.
    - Errors: `{"id", "message"}` with 401 (bad key), 404, 429 (rate limit), 5xx.

    Idempotency: a Render deploy has no field we can set, so a ReleaseIndex in the target's state dir maps release ids
    to deploy ids (intent written before the trigger call; a lost answer is resolved by adopting the deploy of the same
    commit created since the intent).
    """

    provider = "render"
    vendor_class = RenderClient

    def __init__(self, ctx: TargetContext) -> None:
        settings, token, client, owns = load(ctx, RenderSettings)
        super().__init__(ctx.spec.name, settings, token, client, owns, ctx.state_dir)
        self.cfg = settings
        self.res = f"service {settings.service_id}"

    def _kw(self, **params: Any) -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {self._token.get_secret_value()}", "Accept": "application/json"}
        return {"params": params or None, "headers": auth}

    def _path(self, suffix: str = "") -> str:
        return self.url(f"/services/{self.cfg.service_id}{suffix}")

    async def _deploys(self, pages: int = 1, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        params = {"limit": self.cfg.history_limit, **params}
        for _ in range(pages):
            items = await self.http.json("GET", self._path("/deploys"), resource=f"{self.res} deploys",
                                         **self._kw(**params)) or []
            out.extend(item["deploy"] for item in items)
            if len(items) < params["limit"]:
                break
            params["cursor"] = items[-1]["cursor"]
        return out

    def _matches(self, dep: dict[str, Any], sha: str) -> bool:
        if self.cfg.image_url is not None:
            return (dep.get("image") or {}).get("ref") == self.cfg.image_url.format(sha=sha)
        return (dep.get("commit") or {}).get("id") == sha

    async def _version(self, dep: dict[str, Any]) -> ServiceVersion:
        dep_id = str(dep["id"])
        sha = (dep.get("commit") or {}).get("id") or (dep.get("image") or {}).get("ref") or ""
        return ServiceVersion(service=self.service, version=str(sha), release_id=await self.index.release_of(dep_id),
                              vendor_ref=dep_id, detail={"status": dep.get("status"), "trigger": dep.get("trigger")})

    # -- IndexedTarget -------------------------------------------------------------------------------------------
    async def _adopt(self, release: Release, since: datetime) -> str | None:
        for dep in await self._deploys():
            created = parse_time(dep.get("createdAt"))
            if self._matches(dep, release.sha) and created is not None and created >= since:
                return str(dep["id"])
        return None

    async def _autodeploy(self, what: str) -> str | None:
        """Turn autodeploy off where the settings ask; else a warning when it is on (None when it is off)."""
        service = await self.http.json("GET", self._path(), resource=self.res, **self._kw())
        if (service or {}).get("autoDeploy") != "yes":
            return None
        if self.cfg.disable_autodeploy:
            await self.http.json("PATCH", self._path(), json={"autoDeploy": "no"}, resource=f"{self.res} autodeploy",
                                 **self._kw())
            return None
        return AUTODEPLOY_ON.format(what=what)

    async def _start(self, release: Release) -> str:
        await self._autodeploy("deploy")
        body: dict[str, Any] = {"clearCache": "do_not_clear"}
        if self.cfg.image_url is not None:
            body["imageUrl"] = self.cfg.image_url.format(sha=release.sha)
        else:
            body["commitId"] = release.sha
        resp = await self.http_once.request("POST", self._path("/deploys"), json=body,
                                            resource=f"{self.res} deploys", **self._kw())
        if resp.status_code == 202 or not resp.content:  # queued behind a running deploy: no body to read
            entry = await self.index.get(release.release_id)
            since = (entry.requested_at if entry else utcnow()) - ReleaseIndex.SKEW
            queued = await self._adopt(release, since)
            if queued is None:
                raise TransientError("deploy queued (202) and not listed yet", provider=self.provider,
                                     resource=self.res)
            return queued
        return str(resp.json()["id"])

    async def _poll(self, handle: DeployHandle) -> tuple[DeployStatus, str]:
        dep = await self.http.json("GET", self._path(f"/deploys/{handle.vendor_ref}"),
                                   resource=f"{self.res} deploy {handle.vendor_ref}", **self._kw())
        status = str(dep.get("status"))
        ours = status_of(STATUSES, status)
        if ours is DeployStatus.READY and status == "live":
            warning = await self._autodeploy(str(handle.detail.get("kind") or "deploy"))
            if warning:
                return ours, f"{status}; {warning}"
        return ours, status

    async def _rollback_to(self, vendor_ref: str, to: ServiceVersion) -> DeployHandle:
        warning = await self._autodeploy("rollback")
        dep = await self.http_once.json("POST", self._path("/rollback"), json={"deployId": vendor_ref},
                                        resource=f"{self.res} rollback to {vendor_ref}", **self._kw())
        return self.handle(to.version, str(dep["id"]), release_id=to.release_id, kind="rollback", to=vendor_ref,
                           warning=warning)

    async def _find_rollback(self, vendor_ref: str, to: ServiceVersion, since: datetime) -> DeployHandle | None:
        """A deploy with trigger `rollback` of `to`'s commit (or image) created since `since`."""
        for dep in await self._deploys():
            created = parse_time(dep.get("createdAt"))
            version = (dep.get("commit") or {}).get("id") or (dep.get("image") or {}).get("ref")
            if (dep.get("trigger") == "rollback" and version == to.version and str(dep.get("id")) != vendor_ref
                    and created is not None and created >= since):
                return self.handle(to.version, str(dep["id"]), release_id=to.release_id, kind="rollback",
                                   to=vendor_ref)
        return None

    # -- CancelsRollout ------------------------------------------------------------------------------------------
    async def _rollout(self, handle: DeployHandle) -> Rollout:
        dep = await self.http.json("GET", self._path(f"/deploys/{handle.vendor_ref}"),
                                   resource=f"{self.res} deploy {handle.vendor_ref}", **self._kw())
        status = str(dep.get("status"))
        if status in RUNNING:
            return Rollout.RUNNING
        return Rollout.CANCELLED if status == "canceled" else Rollout.ENDED

    async def _cancel(self, handle: DeployHandle) -> None:
        await self.http.json("POST", self._path(f"/deploys/{handle.vendor_ref}/cancel"),
                             resource=f"{self.res} deploy {handle.vendor_ref} cancel", **self._kw())

    async def current(self) -> ServiceVersion | None:
        live = await self._deploys(status="live", limit=1)
        return await self._version(live[0]) if live else None

    async def history(self) -> list[ServiceVersion]:
        deps = [d for d in await self._deploys(pages=3) if d.get("status") in SERVED]
        return [await self._version(d) for d in deps[: self.cfg.history_limit]]


def make_target(ctx: TargetContext) -> RenderTarget:
    """Factory registered as `render`."""
    return RenderTarget(ctx)
