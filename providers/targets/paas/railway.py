"""Railway service target over the public GraphQL API: deploy a commit, follow the deployment, roll back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import Field

from providers.clients.http import VendorClient
from providers.errors import PermanentError, TransientError
from providers.models import DeployHandle, DeployStatus, Release, ServiceVersion
from providers.targets.base import TargetContext
from providers.targets.paas.base import (
    CancelsRollout,
    IndexedTarget,
    PaasSettings,
    Rollout,
    load,
    parse_time,
    status_of,
)

STATUSES = {
    "INITIALIZING": DeployStatus.PENDING,
    "QUEUED": DeployStatus.PENDING,
    "WAITING": DeployStatus.PENDING,
    "NEEDS_APPROVAL": DeployStatus.PENDING,
    "BUILDING": DeployStatus.IN_PROGRESS,
    "DEPLOYING": DeployStatus.IN_PROGRESS,
    "SUCCESS": DeployStatus.READY,
    "SLEEPING": DeployStatus.READY,  # serverless: up, scaled to zero
    "REMOVED": DeployStatus.CANCELED,  # no longer served: replaced by a newer deployment, or removed
    "REMOVING": DeployStatus.CANCELED,
    "FAILED": DeployStatus.FAILED,
    "CRASHED": DeployStatus.FAILED,
    "SKIPPED": DeployStatus.CANCELED,
}
SERVED = ("SUCCESS", "SLEEPING")  # REMOVED / REMOVING deployments serve nothing
RUNNING = ("INITIALIZING", "QUEUED", "WAITING", "NEEDS_APPROVAL", "BUILDING", "DEPLOYING")  # not live yet
GONE = ("REMOVED", "REMOVING", "SKIPPED")  # what a cancelled deployment shows (the enum has no CANCELED)
FIELDS = "id status createdAt staticUrl meta canRollback"
RESTORES_VARIABLES = ("a Railway rollback restores that deployment's image and its custom variables as they were "
                      "then (https://docs.railway.com/deployments/deployment-actions#rollback)")
DEPLOY = ("mutation Deploy($serviceId: String!, $environmentId: String!, $commitSha: String) {"
          " serviceInstanceDeployV2(serviceId: $serviceId, environmentId: $environmentId, commitSha: $commitSha) }")
DEPLOYMENT = f"query Deployment($id: String!) {{ deployment(id: $id) {{ {FIELDS} }} }}"
DEPLOYMENTS = ("query Deployments($input: DeploymentListInput!, $first: Int, $after: String) {"
               f" deployments(input: $input, first: $first, after: $after) {{ edges {{ node {{ {FIELDS} }} }}"
               " pageInfo { hasNextPage endCursor } } }")
ROLLBACK = "mutation Rollback($id: String!) { deploymentRollback(id: $id) }"
CANCEL = "mutation Cancel($id: String!) { deploymentCancel(id: $id) }"


class GraphQLClient(VendorClient):
    """VendorClient that also reads GraphQL's HTTP-200 `errors` array: rate limits transient, the rest permanent."""

    def translate(self, resp: httpx.Response, *, resource: str) -> None:
        super().translate(resp, resource=resource)
        try:
            errors = resp.json().get("errors")
        except (ValueError, AttributeError):
            raise TransientError("answer is not GraphQL JSON", provider=self.provider, resource=resource) from None
        if not errors:
            return
        msg = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))[:300] or str(errors)[:300]
        if "rate limit" in msg.lower():
            raise TransientError(f"GraphQL: {msg}", provider=self.provider, resource=resource)
        raise PermanentError(f"GraphQL: {msg}", provider=self.provider, resource=resource)


class RailwaySettings(PaasSettings):
    """`services.<name>.settings` of a Railway service."""

    api_url: str = "https://backboard.railway.com/graphql/v2"
    service_id: str = Field(min_length=1, description="the Railway service id")
    environment_id: str = Field(min_length=1, description="the Railway environment id (production, staging ...)")
    token_kind: Literal["account", "team", "project"] = Field(
        default="account", description="account/team tokens go as Bearer, project tokens as Project-Access-Token"
    )


class RailwayTarget(CancelsRollout, IndexedTarget):
    """A Railway service instance (service x environment) as a service target.

    Follows the Railway public API (https://docs.railway.com/reference/public-api, endpoint
    https://backboard.railway.com/graphql/v2; account/team tokens as `Authorization: Bearer`, project tokens as
    `Project-Access-Token`):
    - `mutation serviceInstanceDeployV2(serviceId, environmentId, commitSha): String!` (the new deployment's id)
    - `query deployment(id) { id status createdAt staticUrl meta }`; `meta.commitHash` is the deployed commit
    - `query deployments(input: {serviceId, environmentId}, first, after)` (Relay connection: edges/node, pageInfo)
    - `mutation deploymentRollback(id): Boolean!` (redeploys the image of an earlier deployment as a new deployment);
      allowed where the deployment's `canRollback` is true. Deployment Actions
      (https://docs.railway.com/deployments/deployment-actions#rollback): "Both the Docker image and custom
      variables are restored during the rollback process"; "Deployments older than your plan's retention policy
      cannot be restored via rollback". The rollback's report says so.
    - `mutation deploymentCancel(id: String!): Boolean!` "Cancels a deployment." (the public schema as the
      official CLI vendors it: railwayapp/cli src/gql/schema.json). `DeploymentStatus` has no cancelled value:
      a cancelled deployment leaves the running states for REMOVED without ever being SUCCESS, and nothing
      documents the error for one that is no longer running, so a refusal is judged by reading it again.
    - `DeploymentStatus`: INITIALIZING, QUEUED, WAITING, NEEDS_APPROVAL, BUILDING, DEPLOYING, SUCCESS, FAILED, CRASHED,
      REMOVING, REMOVED, SKIPPED, SLEEPING. Only SUCCESS and SLEEPING serve; the connection's order is not
      documented, so deployments are sorted by `createdAt` (newest first) here.
    - Errors arrive as HTTP 200 with an `errors` array (`{"errors": [{"message": "Not Authorized"}]}` for a bad
      token); rate limits as HTTP 429 with Retry-After (https://docs.railway.com/reference/public-api#rate-limits).

    Idempotency: a Railway deployment carries no field we can set, so a ReleaseIndex in the target's state dir maps
    release ids to deployment ids (a lost answer is resolved by adopting the deployment of `meta.commitHash` == SHA
    created since the intent).
    """

    provider = "railway"
    vendor_class = GraphQLClient

    def __init__(self, ctx: TargetContext) -> None:
        settings, token, client, owns = load(ctx, RailwaySettings)
        super().__init__(ctx.spec.name, settings, token, client, owns, ctx.state_dir)
        self.cfg = settings
        self.res = f"service {settings.service_id}"

    async def _gql(self, query: str, variables: dict[str, Any], *, resource: str, once: bool = False) -> Any:
        secret = self._token.get_secret_value()
        project_token = self.cfg.token_kind == "project"  # noqa: S105 (a kind, not a secret)
        auth = {"Project-Access-Token": secret} if project_token else {"Authorization": f"Bearer {secret}"}
        client = self.http_once if once else self.http
        body = await client.json("POST", self.cfg.api_url, json={"query": query, "variables": variables},
                                 resource=resource, headers=auth)
        return body["data"]

    async def _deployments(self, pages: int = 1) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        variables: dict[str, Any] = {"input": {"serviceId": self.cfg.service_id,
                                               "environmentId": self.cfg.environment_id},
                                     "first": self.cfg.history_limit}
        for _ in range(pages):
            conn = (await self._gql(DEPLOYMENTS, variables, resource=f"{self.res} deployments"))["deployments"]
            out.extend(edge["node"] for edge in conn["edges"])
            if not conn["pageInfo"]["hasNextPage"]:
                break
            variables["after"] = conn["pageInfo"]["endCursor"]
        return sorted(out, key=_created, reverse=True)

    async def _version(self, dep: dict[str, Any]) -> ServiceVersion:
        dep_id = str(dep["id"])
        url = dep.get("staticUrl")
        return ServiceVersion(service=self.service, version=str((dep.get("meta") or {}).get("commitHash") or ""),
                              release_id=await self.index.release_of(dep_id), vendor_ref=dep_id,
                              url=f"https://{url}" if url else None, detail={"status": dep.get("status")})

    # -- IndexedTarget -------------------------------------------------------------------------------------------
    async def _adopt(self, release: Release, since: datetime) -> str | None:
        for dep in await self._deployments():
            created = parse_time(dep.get("createdAt"))
            sha = (dep.get("meta") or {}).get("commitHash")
            if sha == release.sha and created is not None and created >= since:
                return str(dep["id"])
        return None

    async def _start(self, release: Release) -> str:
        variables = {"serviceId": self.cfg.service_id, "environmentId": self.cfg.environment_id,
                     "commitSha": release.sha}
        data = await self._gql(DEPLOY, variables, resource=f"{self.res} deploy", once=True)
        return str(data["serviceInstanceDeployV2"])

    async def _poll(self, handle: DeployHandle) -> tuple[DeployStatus, str]:
        if not handle.vendor_ref:  # a rollback whose new deployment was not listed yet: judge by what serves
            now = await self.current()
            if now is not None and now.version == handle.version:
                return DeployStatus.READY, "SUCCESS"
            return DeployStatus.PENDING, "rollback requested"
        dep = (await self._gql(DEPLOYMENT, {"id": handle.vendor_ref},
                               resource=f"deployment {handle.vendor_ref}"))["deployment"]
        status = str(dep.get("status"))
        ours = status_of(STATUSES, status)
        if ours is DeployStatus.READY and handle.detail.get("kind") == "rollback":
            return ours, f"{status}; {RESTORES_VARIABLES}"
        return ours, status

    async def _rollback_to(self, vendor_ref: str, to: ServiceVersion) -> DeployHandle:
        earlier = (await self._gql(DEPLOYMENT, {"id": vendor_ref}, resource=f"deployment {vendor_ref}"))["deployment"]
        if not earlier.get("canRollback"):
            status = earlier.get("status")
            why = (f"it ended {status} and never served" if status not in (*SERVED, "REMOVED", "REMOVING") else
                   "it is older than the plan's deployment retention (Railway keeps rollbacks only that long)")
            raise PermanentError(f"Railway says deployment {vendor_ref} cannot be rolled back to (canRollback is "
                                 f"false): {why}", provider=self.provider, resource=f"deployment {vendor_ref}")
        before = {d["id"] for d in await self._deployments()}
        done = await self._gql(ROLLBACK, {"id": vendor_ref}, resource=f"deployment {vendor_ref} rollback", once=True)
        if not done.get("deploymentRollback"):
            raise PermanentError("rollback refused", provider=self.provider, resource=f"deployment {vendor_ref}")
        fresh = [d for d in await self._deployments() if d["id"] not in before]
        new_ref = str(fresh[0]["id"]) if fresh else ""
        return self.handle(to.version, new_ref, release_id=to.release_id, kind="rollback", to=vendor_ref,
                           note=RESTORES_VARIABLES)

    async def _find_rollback(self, vendor_ref: str, to: ServiceVersion, since: datetime) -> DeployHandle | None:
        """A deployment of `to`'s commit created since `since` (what deploymentRollback makes)."""
        for dep in await self._deployments():
            created = parse_time(dep.get("createdAt"))
            if ((dep.get("meta") or {}).get("commitHash") == to.version and str(dep["id"]) != vendor_ref
                    and created is not None and created >= since):
                return self.handle(to.version, str(dep["id"]), release_id=to.release_id, kind="rollback",
                                   to=vendor_ref, note=RESTORES_VARIABLES)
        return None

    # -- CancelsRollout ------------------------------------------------------------------------------------------
    async def _rollout(self, handle: DeployHandle) -> Rollout:
        if not handle.vendor_ref:  # a rollback not listed yet: never cancelled
            return Rollout.ENDED
        dep = (await self._gql(DEPLOYMENT, {"id": handle.vendor_ref},
                               resource=f"deployment {handle.vendor_ref}"))["deployment"]
        status = str(dep.get("status"))
        if status in RUNNING:
            return Rollout.RUNNING
        # removed without ever serving (nothing to roll back to): cancelled; a removed one that served can be
        return Rollout.CANCELLED if status in GONE and not dep.get("canRollback") else Rollout.ENDED

    async def _cancel(self, handle: DeployHandle) -> None:
        done = await self._gql(CANCEL, {"id": handle.vendor_ref}, resource=f"deployment {handle.vendor_ref} cancel")
        if not done.get("deploymentCancel"):
            raise PermanentError("cancel refused", provider=self.provider, resource=f"deployment {handle.vendor_ref}")

    async def current(self) -> ServiceVersion | None:
        live = next((d for d in await self._deployments() if d.get("status") in SERVED), None)
        return await self._version(live) if live else None

    async def history(self) -> list[ServiceVersion]:
        """What serves now and what Railway can still roll back to (`canRollback`), newest first."""
        deps = [d for d in await self._deployments(pages=3) if d.get("status") in SERVED or d.get("canRollback")]
        return [await self._version(d) for d in deps[: self.cfg.history_limit]]


def _created(dep: dict[str, Any]) -> str:
    """A sort key: the deployment's createdAt as a UTC ISO string ("" when missing: sorts oldest)."""
    when = parse_time(dep.get("createdAt"))
    return when.astimezone(UTC).isoformat() if when is not None else ""


def make_target(ctx: TargetContext) -> RailwayTarget:
    """Factory registered as `railway`."""
    return RailwayTarget(ctx)
