"""Vercel canary through Rolling Releases: stages from the spec's steps, approve-stage per step, complete, abort.

Follows Vercel's documents: /docs/rolling-releases ("new deployments won't be immediately served to 100% of
traffic ... At any point, you can use Instant Rollback to revert from the current release candidate") and the REST
reference /docs/rest-api/rolling-release/* (vercel/sdk docs/sdks/rollingrelease/README.md):
- `PATCH /v1/projects/{idOrName}/rolling-release/config` {target, stages[{targetPercentage, requireApproval}]}:
  the configuration production deployments roll out with from now on (the last stage is 100);
- `GET /v1/projects/{idOrName}/rolling-release`: {rollingRelease: {state ACTIVE | COMPLETE | ABORTED,
  canaryDeployment, activeStage {index, targetPercentage}, stages ...}};
- `POST .../rolling-release/start` {canaryDeploymentId} (/docs/rest-api/rolling-release/start-a-rolling-release-for-
  the-project): starts the rolling release of a deployment, idempotent for the same canary (`start` below);
- `POST .../rolling-release/approve-stage` {nextStageIndex, canaryDeploymentId}: the next stage;
- `POST .../rolling-release/complete` {canaryDeploymentId}: the canary serves 100 %;
- `DELETE .../rolling-release/config` (/docs/rest-api/rolling-release/delete-rolling-release-configuration):
  "future deployments will not undergo a rolling release. Changing the config never alters a rollout that's already
  in-flight ... If you want to also stop the current rollout, call this endpoint to disable the feature, and then
  call either the /complete or /abort endpoint". Every promotion and abort ends with it: a config left enabled would
  make the next all_at_once production deployment wait as the canary of a rolling release nobody approves;
- abort: Instant Rollback to the deployment serving before (`POST /v1/projects/{projectId}/rollback/{id}`). The
  sentence above names an "/abort endpoint", but the REST reference and vercel/sdk (operations: billing status,
  get/update/delete config, get, approve-stage, complete, start) document none, and the CLI's own
  `vercel rolling-release abort` sends an Instant Rollback (vercel/vercel packages/cli/src/commands/rolling-release/
  abort-rolling-release.ts, `POST /v9/projects/{id}/rollback/{dpl}`); PATCH config's `disableRolloutAction: abort`
  is documented behind a "resolve-on-disable feature flag", so it is not relied on either.
Every stage requires approval: aevon-deploy's analysis decides when a stage advances, never a timer.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from providers.errors import DeployFailed
from providers.models import DeployResult, DeployStatus, Release, ServiceVersion

if TYPE_CHECKING:
    from providers.targets.paas.vercel import VercelTarget


def stages_of(weights: list[int]) -> list[dict[str, Any]]:
    """Vercel stages for the spec's canary weights: each requires approval; the last is 100 %."""
    pcts = [w for w in weights if w < 100] + [100]
    return [{"targetPercentage": p, "requireApproval": True} for p in pcts]


async def rollout(t: VercelTarget) -> dict[str, Any] | None:
    """The project's rolling release document (None when it never had one)."""
    pid = await t.project_id()
    body = await t.http.json("GET", t.url(f"/v1/projects/{pid}/rolling-release"),
                             resource=f"project {t.cfg.project} rolling release", **t._kw())
    doc = body.get("rollingRelease") if isinstance(body, dict) else None
    return doc if isinstance(doc, dict) else None


async def disable(t: VercelTarget) -> None:
    """Delete the project's rolling release config (idempotent): later production deployments go out at once."""
    pid = await t.project_id()
    await t.http.request("DELETE", t.url(f"/v1/projects/{pid}/rolling-release/config"),
                         resource=f"project {t.cfg.project} rolling release config", **t._kw())


async def start(t: VercelTarget, dep_id: str) -> dict[str, Any] | None:
    """Start the rolling release of `dep_id` (`POST .../rolling-release/start` {canaryDeploymentId}; documented as
    idempotent: "If a rolling release is already active for the same canary deployment, returns the current state
    without side effects"). Vercel's how-to (/docs/rolling-releases/rolling-release-deployment) both says a
    production deployment "triggers rolling release automatically" and lists "Start the rolling release" after it,
    so a canary deployment that is READY without being the canary of the project's rolling release is started."""
    pid = await t.project_id()
    body = await t.http.json("POST", t.url(f"/v1/projects/{pid}/rolling-release/start"),
                             json={"canaryDeploymentId": dep_id},
                             resource=f"project {t.cfg.project} rolling release", **t._kw())
    doc = body.get("rollingRelease") if isinstance(body, dict) else None
    return doc if isinstance(doc, dict) else None


async def _rollout_of(t: VercelTarget, dep_id: str, timeout: float) -> dict[str, Any]:
    """Wait until `dep_id` is READY and the canary of an ACTIVE rolling release; DeployFailed otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        dep = await t._deployment(dep_id)
        state = str(dep.get("readyState"))
        if state in ("ERROR", "CANCELED", "BLOCKED"):
            raise DeployFailed(f"canary deployment {dep_id} {state}: {dep.get('errorMessage') or ''}".strip(),
                               provider=t.provider, resource=t.service)
        if state == "READY":
            doc = await rollout(t)
            if doc is None or (doc.get("canaryDeployment") or {}).get("id") != dep_id:
                doc = await start(t, dep_id)
            if doc is not None and (doc.get("canaryDeployment") or {}).get("id") == dep_id:
                if doc.get("state") == "ACTIVE":
                    return doc
                raise DeployFailed(f"the rolling release of {dep_id} is {doc.get('state')}", provider=t.provider,
                                   resource=t.service)
        if time.monotonic() >= deadline:
            raise DeployFailed(f"canary {dep_id} not rolling within {timeout:g}s ({state})", provider=t.provider,
                               resource=t.service)
        await asyncio.sleep(t.settings.poll_interval_s)


async def set_canary(t: VercelTarget, release: Release, weight: int, steps: list[int], timeout: float) -> DeployResult:
    """Configure the stages (first step only), create the production deployment, then approve stages until the
    active one serves `weight` %. READY's handle URL is the canary deployment's own URL."""
    t0 = time.monotonic()
    pid = await t.project_id()
    if weight not in steps or weight >= 100:
        raise DeployFailed(f"weight {weight} is not a canary step of {steps}", provider=t.provider)
    doc = await rollout(t)
    found = await t._find_release(release)
    if found is None:  # not created yet: the rolling release config applies to the next production deployment
        await t.http.request("PATCH", t.url(f"/v1/projects/{pid}/rolling-release/config"),
                             json={"target": "production", "stages": stages_of(steps)},
                             resource=f"project {t.cfg.project} rolling release config", **t._kw())
    handle = found or await t.deploy(release)
    dep_id = str(handle.vendor_ref)
    doc = await _rollout_of(t, dep_id, timeout)
    index = [s["targetPercentage"] for s in doc["stages"]].index(weight)
    while int(doc["activeStage"]["index"]) < index:
        body = await t.http.json("POST", t.url(f"/v1/projects/{pid}/rolling-release/approve-stage"),
                                 json={"nextStageIndex": int(doc["activeStage"]["index"]) + 1,
                                       "canaryDeploymentId": dep_id},
                                 resource=f"project {t.cfg.project} rolling release", **t._kw())
        doc = body["rollingRelease"]
    url = doc["canaryDeployment"].get("url")
    ready = handle.model_copy(update={"url": f"https://{url}" if url else handle.url,
                                      "detail": {**handle.detail, "weight": weight}})
    return DeployResult(handle=ready, status=DeployStatus.READY, duration_s=time.monotonic() - t0,
                        message=f"canary {dep_id} serves {doc['activeStage']['targetPercentage']}% of visitors")


async def promote_canary(t: VercelTarget, release: Release, timeout: float) -> DeployResult:
    """Disable Rolling Releases for the project, complete the rolling release (the canary takes 100 %), then follow
    it to production. The config goes first, as the DELETE's reference orders it to stop the current rollout."""
    handle = await t._find_release(release)
    if handle is None:
        raise DeployFailed("no canary deployment of this release to promote", provider=t.provider,
                           resource=t.service)
    await disable(t)
    doc = await rollout(t)
    if doc is not None and doc.get("state") == "ACTIVE" and doc["canaryDeployment"]["id"] == handle.vendor_ref:
        pid = await t.project_id()
        await t.http.request("POST", t.url(f"/v1/projects/{pid}/rolling-release/complete"),
                             json={"canaryDeploymentId": handle.vendor_ref},
                             resource=f"project {t.cfg.project} rolling release", **t._kw())
    return await t.wait_ready(handle, timeout)


async def abort_canary(t: VercelTarget, stable: ServiceVersion | None) -> None:
    """Instant Rollback to the deployment serving before, which aborts an ACTIVE rolling release, then disable Rolling
    Releases for the project (traffic first: the config only matters to the next deployment). Without an active
    release only the config is deleted (a run killed between the PATCH and its deployment leaves one behind). Without
    a stable version to go back to the canary cannot be taken away: DeployFailed."""
    doc = await rollout(t)
    if doc is not None and doc.get("state") == "ACTIVE":
        current = (doc.get("currentDeployment") or {}).get("id") or (stable.vendor_ref if stable else None)
        if not current:
            await disable(t)
            raise DeployFailed("no deployment served before the canary: abort it in the Vercel dashboard",
                               provider=t.provider, resource=t.service)
        pid = await t.project_id()
        await t.http_once.request("POST", t.url(f"/v1/projects/{pid}/rollback/{current}"),
                                  resource=f"project {t.cfg.project} rollback {current}",
                                  **t._kw(description="aevon-deploy canary aborted"))
    await disable(t)
