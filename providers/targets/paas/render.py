"""Render service target: deploy a commit (or image), follow the deploy, roll back to an earlier deploy."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from providers.errors import TransientError
from providers.models import DeployHandle, DeployStatus, Release, ServiceVersion
from providers.targets.base import TargetContext
from providers.targets.paas.base import IndexedTarget, PaasSettings, ShaTemplate, load, parse_time, status_of

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


class RenderSettings(PaasSettings):
    """`services.<name>.settings` of a Render service."""

    api_url: str = "https://api.render.com/v1"
    service_id: str = Field(description="the Render service id (srv-...)")
    image_url: ShaTemplate | None = Field(
        default=None, description="image-backed services: image URL template with {sha}, e.g. ghcr.io/org/api:{sha}"
    )

    @field_validator("service_id")
    @classmethod
    def _sid(cls, v: str) -> str:
        if not re.match(r"^srv-[a-z0-9]+$", v):
            raise ValueError("must be a Render service id such as srv-abc123")
        return v


class RenderTarget(IndexedTarget):
    """A Render web service or worker as a service target.

    Follows the Render public API reference (https://api-docs.render.com/reference), base URL https://api.render.com/v1,
    `Authorization: Bearer <API key>`:
    - Trigger deploy, `POST /services/{serviceId}/deploys` (body `clearCache`, `commitId` or `imageUrl`; 201 the deploy,
      202 queued): /reference/create-deploy
    - Retrieve deploy, `GET /services/{serviceId}/deploys/{deployId}`: /reference/retrieve-deploy
    - List deploys, `GET /services/{serviceId}/deploys` (`status`, `limit`, `cursor`; answer `[{"deploy", "cursor"}]`,
      the next page starts after the last item's cursor): /reference/list-deploys
    - Roll back deploy, `POST /services/{serviceId}/rollback` (body `deployId`; 201 the new deploy):
      /reference/rollback-deploy
    - Deploy `status`: created, queued, build_in_progress, update_in_progress, pre_deploy_in_progress, live,
      deactivated (was live, replaced), build_failed, update_failed, pre_deploy_failed, canceled.
    - Errors: `{"id", "message"}` with 401 (bad key), 404, 429 (rate limit), 5xx.

    Idempotency: a Render deploy has no field we can set, so a ReleaseIndex in the target's state dir maps release ids
    to deploy ids (intent written before the trigger call; a lost answer is resolved by adopting the deploy of the same
    commit created since the intent).
    """

    provider = "render"

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

    async def _start(self, release: Release) -> str:
        body: dict[str, Any] = {"clearCache": "do_not_clear"}
        if self.cfg.image_url is not None:
            body["imageUrl"] = self.cfg.image_url.format(sha=release.sha)
        else:
            body["commitId"] = release.sha
        resp = await self.http_once.request("POST", self._path("/deploys"), json=body,
                                            resource=f"{self.res} deploys", **self._kw())
        if resp.status_code == 202 or not resp.content:  # queued behind a running deploy: no body to read
            raise TransientError("deploy queued; its id is not known yet", provider=self.provider, resource=self.res)
        return str(resp.json()["id"])

    async def _poll(self, handle: DeployHandle) -> tuple[DeployStatus, str]:
        dep = await self.http.json("GET", self._path(f"/deploys/{handle.vendor_ref}"),
                                   resource=f"{self.res} deploy {handle.vendor_ref}", **self._kw())
        status = str(dep.get("status"))
        return status_of(STATUSES, status), status

    async def _rollback_to(self, vendor_ref: str, to: ServiceVersion) -> DeployHandle:
        dep = await self.http_once.json("POST", self._path("/rollback"), json={"deployId": vendor_ref},
                                        resource=f"{self.res} rollback to {vendor_ref}", **self._kw())
        return self.handle(to.version, str(dep["id"]), release_id=to.release_id, kind="rollback", to=vendor_ref)

    async def current(self) -> ServiceVersion | None:
        live = await self._deploys(status="live", limit=1)
        return await self._version(live[0]) if live else None

    async def history(self) -> list[ServiceVersion]:
        deps = [d for d in await self._deploys(pages=3) if d.get("status") in SERVED]
        return [await self._version(d) for d in deps[: self.cfg.history_limit]]


def make_target(ctx: TargetContext) -> RenderTarget:
    """Factory registered as `render`."""
    return RenderTarget(ctx)
