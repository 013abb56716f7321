"""Vercel service target: git deployments by SHA, readyState polling, promote and instant rollback."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from providers.errors import PermanentError
from providers.models import DeployHandle, DeployResult, DeployStatus, Release, ServiceVersion
from providers.targets.base import TargetContext
from providers.targets.paas import vercel_canary
from providers.targets.paas.base import RELEASE_KEY, PaasSettings, PaasTarget, load, status_of

READY_STATES = {
    "QUEUED": DeployStatus.PENDING,
    "INITIALIZING": DeployStatus.IN_PROGRESS,
    "BUILDING": DeployStatus.IN_PROGRESS,
    "READY": DeployStatus.READY,
    "ERROR": DeployStatus.FAILED,
    "BLOCKED": DeployStatus.FAILED,  # held by Vercel (e.g. a commit author without team access): never builds
    "CANCELED": DeployStatus.CANCELED,
}
ALIAS_JOBS = {"succeeded": DeployStatus.READY, "skipped": DeployStatus.READY, "failed": DeployStatus.FAILED}


class VercelSettings(PaasSettings):
    """`services.<name>.settings` of a Vercel service."""

    api_url: str = "https://api.vercel.com"
    project: str = Field(min_length=1, description="the Vercel project id (prj_...) or name")
    team_id: str | None = Field(default=None, description="teamId query parameter, for team-owned projects")
    repo: str | None = Field(default=None, description="GitHub org/repo the project deploys from")
    repo_id: str | None = Field(default=None, description="GitHub repository id (instead of repo)")
    target: Literal["production", "preview"] | None = Field(
        default=None, description="deployment target; unset: preview where the environment wants previews"
    )

    @model_validator(mode="after")
    def _source(self) -> VercelSettings:
        if (self.repo is None) == (self.repo_id is None):
            raise ValueError("set exactly one of repo (org/repo) and repo_id")
        if self.repo is not None and not re.match(r"^[\w.-]+/[\w.-]+$", self.repo):
            raise ValueError("repo must look like org/repo")
        return self


class VercelTarget(PaasTarget):
    """A Vercel project as a service target (production or preview deployments).

    Follows the Vercel REST API reference (https://vercel.com/docs/rest-api):
    - Create a new deployment, `POST /v13/deployments` (body `name`, `project`, `target`, `gitSource`
      {type github, repoId | org+repo, ref, sha}, `meta`; query `teamId`):
      /docs/rest-api/deployments/create-a-new-deployment
    - Get a deployment, `GET /v13/deployments/{idOrUrl}` (`readyState` QUEUED | INITIALIZING | BUILDING | READY | ERROR
      | CANCELED | BLOCKED, `readySubstate` STAGED | ROLLING | PROMOTED, `errorMessage`):
      /docs/rest-api/deployments/get-a-deployment-by-id-or-url (values as in vercel/sdk
      docs/models/getdeploymentresponsebodyreadystate.md and ...readysubstate.md). BLOCKED fails at once; a READY
      deployment ROLLING is "in the process of having production traffic gradually transitioned" (a rolling
      release): it is waited for, never promoted over.
    - List deployments, `GET /v6/deployments` (`projectId`, `target`, `state`, `sha`, `limit`, `until`,
      `rollbackCandidate`; answer `deployments[]` with `uid`, `state`, `meta`, `isRollbackCandidate`, and
      `pagination.next`): /docs/rest-api/deployments/list-deployments (vercel/sdk docs/models/getdeploymentsrequest.md,
      deployments.md). `target=preview` lists preview deployments (whose own `target` is null), as the CLI's
      util/parse-target passes it. Production history and rollback targets are the rollback candidates
      (/docs/instant-rollback#eligible-deployments: deployments previously aliased to production), not every
      READY production deployment.
    - Find a project, `GET /v9/projects/{idOrName}` (`targets.production`, `lastAliasRequest` {toDeploymentId,
      jobStatus pending | in-progress | succeeded | failed | skipped, type promote | rollback}): /docs/rest-api/projects
    - Point production traffic to a given deployment, `POST /v10/projects/{projectId}/promote/{deploymentId}`
    - Point production traffic to a previous production deployment,
      `POST /v1/projects/{projectId}/rollback/{deploymentId}` (the CLI still sends the older /v9 path)
      (/docs/instant-rollback: after a rollback, new production deployments are not assigned the production domains
      until one is promoted; so a deployment READY but STAGED is promoted by `wait_ready`).
    - Errors: `{"error": {"code", "message"}}`; an invalid token is `403 {"error": {"code": "forbidden",
      "message": "Not authorized", "invalidToken": true}}`.

    Idempotency: every deployment we create carries `meta.AEVON_RELEASE_ID`; `deploy` lists the project's deployments of
    the SHA and reuses the one whose meta names the release.
    """

    provider = "vercel"
    # fail fast may stop waiting for a rollout (tasks/services.py): after an instant rollback a new production
    # deployment becomes production only when promoted (/docs/instant-rollback)
    abandonable_rollout = True

    def __init__(self, ctx: TargetContext) -> None:
        settings, token, client, owns = load(ctx, VercelSettings)
        super().__init__(ctx.spec.name, settings, token, client, owns)
        self.cfg = settings
        self.target = settings.target or ("preview" if ctx.preview else "production")
        self._project_id: str | None = None
        # canary through Rolling Releases (providers/targets/paas/vercel_canary.py): production deployments only
        self.supports_canary = self.target == "production"
        self._weights = [s.weight for s in ctx.spec.strategy.steps]

    async def set_canary(self, release: Release, weight: int, timeout: float) -> DeployResult:
        return await vercel_canary.set_canary(self, release, weight, self._weights, timeout)

    async def promote_canary(self, release: Release, timeout: float) -> DeployResult:
        return await vercel_canary.promote_canary(self, release, timeout)

    async def abort_canary(self, stable: ServiceVersion | None) -> None:
        await vercel_canary.abort_canary(self, stable)

    # -- calls ---------------------------------------------------------------------------------------------------
    def _kw(self, **params: Any) -> dict[str, Any]:
        if self.cfg.team_id:
            params["teamId"] = self.cfg.team_id
        return {"params": params, "headers": {"Authorization": f"Bearer {self._token.get_secret_value()}"}}

    async def _project(self) -> dict[str, Any]:
        res = f"project {self.cfg.project}"
        body: dict[str, Any] = await self.http.json("GET", self.url(f"/v9/projects/{self.cfg.project}"),
                                                    resource=res, **self._kw())
        self._project_id = str(body["id"])
        return body

    async def project_id(self) -> str:
        return self._project_id or str((await self._project())["id"])

    async def _deployment(self, dep_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.http.json("GET", self.url(f"/v13/deployments/{dep_id}"),
                                                    resource=f"deployment {dep_id}", **self._kw())
        return body

    async def _list(self, pages: int = 1, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        params = {"projectId": await self.project_id(), "limit": self.cfg.history_limit, **params}
        for _ in range(pages):
            body = await self.http.json("GET", self.url("/v6/deployments"),
                                        resource=f"project {self.cfg.project} deployments", **self._kw(**params))
            out.extend(body.get("deployments") or [])
            nxt = (body.get("pagination") or {}).get("next")
            if not nxt:
                break
            params["until"] = nxt
        return out

    def _version(self, dep: dict[str, Any]) -> ServiceVersion:
        meta = dep.get("meta") or {}
        sha = meta.get("githubCommitSha") or (dep.get("gitSource") or {}).get("sha") or ""
        url = dep.get("url")
        return ServiceVersion(service=self.service, version=str(sha), release_id=meta.get(RELEASE_KEY),
                              vendor_ref=str(dep.get("uid") or dep.get("id")), url=f"https://{url}" if url else None,
                              detail={"target": dep.get("target")})

    # -- PaasTarget ----------------------------------------------------------------------------------------------
    async def _find_release(self, release: Release) -> DeployHandle | None:
        for dep in await self._list(pages=5, sha=release.sha):
            if (dep.get("meta") or {}).get(RELEASE_KEY) == release.release_id:
                return self.handle(release.sha, str(dep["uid"]), release_id=release.release_id,
                                   url=f"https://{dep['url']}" if dep.get("url") else None)
        return None

    async def _create(self, release: Release) -> DeployHandle:
        source: dict[str, Any] = {"type": "github", "ref": release.ref, "sha": release.sha}
        if self.cfg.repo_id is not None:
            source["repoId"] = self.cfg.repo_id
        else:
            source["org"], source["repo"] = str(self.cfg.repo).split("/", 1)
        body: dict[str, Any] = {"name": self.cfg.project, "project": self.cfg.project, "gitSource": source,
                                "meta": {RELEASE_KEY: release.release_id}}
        if self.target == "production":
            body["target"] = "production"
        dep = await self.http_once.json("POST", self.url("/v13/deployments"), json=body,
                                        resource=f"project {self.cfg.project} deployments", **self._kw())
        return self.handle(release.sha, str(dep["id"]), release_id=release.release_id, url=f"https://{dep['url']}")

    async def _poll(self, handle: DeployHandle) -> tuple[DeployStatus, str]:
        ref = str(handle.vendor_ref)
        if handle.detail.get("kind") == "rollback":
            return await self._alias_job(ref, promote=False)
        dep = await self._deployment(ref)
        state = str(dep.get("readyState"))
        status = status_of(READY_STATES, state)
        if state == "BLOCKED":
            return status, f"BLOCKED: {dep.get('errorMessage') or 'Vercel blocked this deployment; it will not build'}"
        if status is DeployStatus.FAILED:
            return status, f"{state}: {dep.get('errorMessage') or dep.get('errorCode') or 'build failed'}"
        if status is not DeployStatus.READY or dep.get("target") != "production":
            return status, state
        if dep.get("readySubstate") in (None, "PROMOTED"):
            return status, state
        if dep.get("readySubstate") == "ROLLING":  # a rolling release moves traffic over: never promote mid-way
            return DeployStatus.IN_PROGRESS, "READY, ROLLING: rolling release in progress"
        return await self._alias_job(ref, promote=True)  # READY but STAGED: production domains not assigned yet

    async def _alias_job(self, ref: str, *, promote: bool) -> tuple[DeployStatus, str]:
        """Follow the project's alias job that points production at `ref` (promoting first where asked)."""
        project = await self._project()
        job = project.get("lastAliasRequest") or {}
        if job.get("toDeploymentId") == ref:
            said = f"{job.get('type')} {job.get('jobStatus')}"
            return ALIAS_JOBS.get(str(job.get("jobStatus")), DeployStatus.IN_PROGRESS), said
        if ((project.get("targets") or {}).get("production") or {}).get("id") == ref:
            return DeployStatus.READY, "production"
        if promote:
            await self.http.request("POST", self.url(f"/v10/projects/{project['id']}/promote/{ref}"),
                                    resource=f"project {self.cfg.project} promote {ref}", **self._kw())
            return DeployStatus.IN_PROGRESS, "promote requested"
        return DeployStatus.IN_PROGRESS, "alias job not started"

    async def _rollback_to(self, vendor_ref: str, to: ServiceVersion) -> DeployHandle:
        if self.target != "production":  # previews have no production alias: redeploy the earlier deployment
            body: dict[str, Any] = {"name": self.cfg.project, "project": self.cfg.project, "deploymentId": vendor_ref}
            if to.release_id:
                body["meta"] = {RELEASE_KEY: to.release_id}
            dep = await self.http_once.json("POST", self.url("/v13/deployments"), json=body,
                                            resource=f"project {self.cfg.project} deployments", **self._kw())
            return self.handle(to.version, str(dep["id"]), release_id=to.release_id, kind="redeploy")
        listed = await self._list(pages=5, target="production", rollbackCandidate="true")
        candidates = {str(d.get("uid")) for d in listed if d.get("isRollbackCandidate", True)}
        if vendor_ref not in candidates:
            raise PermanentError(
                f"deployment {vendor_ref} is not a rollback candidate (Vercel rolls back only to deployments that "
                "were aliased to production, and Hobby plans only to the previous one)",
                provider=self.provider, resource=f"project {self.cfg.project}",
            )
        pid = await self.project_id()
        await self.http_once.request("POST", self.url(f"/v1/projects/{pid}/rollback/{vendor_ref}"),
                                resource=f"project {self.cfg.project} rollback {vendor_ref}",
                                **self._kw(description="aevon-deploy rollback"))
        return self.handle(to.version, vendor_ref, release_id=to.release_id, kind="rollback", url=to.url)

    async def _find_rollback(self, vendor_ref: str, to: ServiceVersion, since: datetime) -> DeployHandle | None:
        """Production: the project's alias job rolling back to `vendor_ref`, requested since `since`."""
        if self.target != "production":
            return None
        job = (await self._project()).get("lastAliasRequest") or {}
        asked = job.get("requestedAt")
        if (job.get("type") == "rollback" and job.get("toDeploymentId") == vendor_ref
                and isinstance(asked, int | float) and asked >= since.timestamp() * 1000):
            return self.handle(to.version, vendor_ref, release_id=to.release_id, kind="rollback", url=to.url)
        return None

    async def current(self) -> ServiceVersion | None:
        if self.target == "production":
            dep = ((await self._project()).get("targets") or {}).get("production")
            if not dep:
                return None
            if not (dep.get("meta") or {}).get("githubCommitSha"):
                dep = await self._deployment(str(dep["id"]))
            return self._version(dep)
        ready = await self._list(target=self.target, state="READY", limit=1)
        return self._version(ready[0]) if ready else None

    async def history(self) -> list[ServiceVersion]:
        """Preview: READY previews. Production: the rollback candidates (what instant rollback accepts)."""
        extra: dict[str, Any] = {"rollbackCandidate": "true"} if self.target == "production" else {}
        deps = await self._list(target=self.target, state="READY", **extra)
        if self.target == "production":
            deps = [d for d in deps if d.get("isRollbackCandidate", True)]
        return [self._version(d) for d in deps[: self.cfg.history_limit]]


def make_target(ctx: TargetContext) -> VercelTarget:
    """Factory registered as `vercel`."""
    return VercelTarget(ctx)
