"""The `kubernetes`/`gke` canary: a second Deployment `<name>-canary` whose pods the same Service routes to.

The pattern of the Kubernetes docs ("Canary deployments", https://kubernetes.io/docs/concepts/workloads/management/):
the canary Deployment's pods carry the labels the Service selects plus `track: canary`, so the Service sends them
their share of the connections. The stable Deployment is never changed (its selector is immutable anyway).

The Service balances per pod, not per weight: with `s` stable and `c` canary pods the canary gets about
c / (s + c) of the connections. A step of `weight` % asks for c = ceil(weight / 100 * s) pods (at least 1), so the
real share is c / (s + c), below the weight at high weights (50 % of 4 pods: 2 canary pods, 2/6 = 33 %); every
step reports that effective share. Promotion is the usual rolling update of the main Deployment to the canary's
image; the canary Deployment is then deleted. Abort deletes it at once.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
from typing import Any, Protocol

from providers.errors import PermanentError
from providers.models import DeployHandle, DeployResult, DeployStatus, Release
from providers.targets.kubernetes.api import DeploymentApi
from providers.targets.kubernetes.rollout import RELEASE_ANNOTATION, rollout_status, selector_string, strip_hash
from providers.targets.kubernetes.settings import KubeSettings

log = logging.getLogger(__name__)

TRACK_LABEL = "track"
CANARY_TRACK = "canary"
CANARY_OF_ANNOTATION = "aevon.dev/canary-of"
STRATEGIC = "application/strategic-merge-patch+json"
# Background: the Deployment is gone when DELETE answers (its name is free for the next canary at once, no 409 on
# an object waiting on a foregroundDeletion finalizer) and the garbage collector removes its ReplicaSet and pods
# right after; a pod being deleted leaves the Service's endpoints as soon as it is marked. The stable Deployment is
# not touched, so it never stopped serving. abort() then waits until no canary pod is left serving.
PROPAGATION = "Background"
ABORT_WAIT_S = 30.0

Json = dict[str, Any]


class KubeTarget(Protocol):
    """What the canary needs of KubernetesTarget (a protocol: no import cycle with target.py)."""

    provider: str
    service: str
    name: str
    namespace: str
    settings: KubeSettings
    _api: DeploymentApi

    def _container_names(self, template: Json) -> list[str]: ...

    async def deploy(self, release: Release) -> DeployHandle: ...

    async def wait_ready(self, handle: DeployHandle, timeout: float) -> DeployResult: ...


def canary_name(name: str) -> str:
    """The canary Deployment's name: `<name>-canary`."""
    return f"{name}-canary"


def canary_replicas(weight: int, stable_replicas: int) -> int:
    """Pods for a step of `weight` %: ceil(weight / 100 * stable replicas), at least 1."""
    return max(1, math.ceil(weight * stable_replicas / 100))


def effective_share(canary: int, stable: int) -> float:
    """The share of connections the canary really gets when the Service balances per pod."""
    return canary / (canary + stable) if canary + stable else 0.0


def manifest(t: KubeTarget, stable: Json, release: Release, replicas: int) -> Json:
    """The canary Deployment: the stable one's pod template with the release's image, its labels + track=canary."""
    spec = stable["spec"]
    selector = copy.deepcopy(spec["selector"])
    if any(e.get("key") == TRACK_LABEL for e in selector.get("matchExpressions") or []):
        raise PermanentError(f"the Deployment's selector has an expression on {TRACK_LABEL!r}: a canary cannot "
                             "share it", provider=t.provider, resource=f"deployment {t.namespace}/{t.name}")
    selector.setdefault("matchLabels", {})[TRACK_LABEL] = CANARY_TRACK
    template = strip_hash(spec["template"])
    meta = template.setdefault("metadata", {})
    meta.setdefault("labels", {})[TRACK_LABEL] = CANARY_TRACK
    meta.setdefault("annotations", {})[RELEASE_ANNOTATION] = release.release_id
    image = f"{t.settings.repository}:{release.sha}"
    names = t._container_names(template)
    for c in template["spec"]["containers"]:
        if c["name"] in names:
            c["image"] = image
    labels = dict(stable["metadata"].get("labels") or {})
    labels[TRACK_LABEL] = CANARY_TRACK
    body: Json = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary_name(t.name), "namespace": t.namespace, "labels": labels,
            "annotations": {RELEASE_ANNOTATION: release.release_id, CANARY_OF_ANNOTATION: t.name},
        },
        "spec": {"replicas": replicas, "selector": selector, "template": template, "revisionHistoryLimit": 1},
    }
    for key in ("minReadySeconds", "progressDeadlineSeconds", "strategy"):
        if key in spec:
            body["spec"][key] = copy.deepcopy(spec[key])
    return body


async def _check_service(t: KubeTarget, api: DeploymentApi, pod_labels: dict[str, str]) -> None:
    """Refuse (before creating anything) when the named Service would not send the canary's pods any traffic."""
    if not t.settings.service:
        return
    svc = await api.service(t.settings.service)
    where = f"service {t.namespace}/{t.settings.service}"
    if svc is None:
        raise PermanentError(f"Service {t.settings.service!r} not found (services.{t.service}.settings.service)",
                             provider=t.provider, resource=where)
    selector = (svc.get("spec") or {}).get("selector") or {}
    missing = {k: v for k, v in selector.items() if pod_labels.get(k) != v}
    if not selector or missing:
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(missing.items())) or "nothing (no selector)"
        raise PermanentError(f"the Service selects {wanted}, which the canary's pods do not carry: it would get no "
                             f"traffic (select only the labels stable and canary pods share, not {TRACK_LABEL})",
                             provider=t.provider, resource=where)


def _ours(t: KubeTarget, dep: Json) -> None:
    """Refuse to change or delete a `<name>-canary` Deployment that aevon-deploy did not make for `name`."""
    if ((dep.get("metadata") or {}).get("annotations") or {}).get(CANARY_OF_ANNOTATION) != t.name:
        raise PermanentError(f"deployment {canary_name(t.name)} exists but was not made by aevon-deploy (no "
                             f"{CANARY_OF_ANNOTATION}={t.name} annotation): not touching it; rename or delete it",
                             provider=t.provider, resource=f"deployment {t.namespace}/{canary_name(t.name)}")


def _ready(pod: Json) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def _url(t: KubeTarget, api: DeploymentApi, dep: Json, image: str) -> str | None:
    """`canary_url`, else http://<podIP>:<port> of a ready canary pod running `image` (None without a port)."""
    if t.settings.canary_url:
        return t.settings.canary_url
    template = dep["spec"]["template"]
    names = t._container_names(template)
    port = t.settings.port
    if port is None:
        ports = [p for c in template["spec"]["containers"] if c["name"] in names for p in c.get("ports") or []]
        port = int(ports[0]["containerPort"]) if ports else None
    if port is None:
        return None
    for pod in await api.pods(selector_string(dep["spec"]["selector"])):
        images = {c.get("image") for c in (pod.get("spec") or {}).get("containers") or []}
        ip = (pod.get("status") or {}).get("podIP")
        if _ready(pod) and ip and image in images:
            return f"http://{ip}:{port}"
    return None


async def set_canary(t: KubeTarget, release: Release, weight: int, timeout: float) -> DeployResult:
    """Create (or bring to this release and size) `<name>-canary`, wait for its rollout; READY with its URL."""
    t0 = time.monotonic()
    api = t._api.named(canary_name(t.name))
    stable = await t._api.read()
    stable_replicas = int(stable["spec"].get("replicas", 1))
    replicas = canary_replicas(weight, stable_replicas)
    body = manifest(t, stable, release, replicas)
    template = body["spec"]["template"]
    await _check_service(t, api, template["metadata"]["labels"])
    image = f"{t.settings.repository}:{release.sha}"
    created = await api.create(body)
    if created is None:  # it exists (an earlier step, a retry, a crashed run): this release, this size
        _ours(t, await api.read())
        names = t._container_names(template)
        await api.patch({"metadata": {"annotations": body["metadata"]["annotations"]},
                         "spec": {"replicas": replicas, "template": {
                             "metadata": {"annotations": {RELEASE_ANNOTATION: release.release_id}},
                             "spec": {"containers": [{"name": n, "image": image} for n in names]}}}},
                        STRATEGIC, "PATCH canary deployment (image, replicas)")
    share = effective_share(replicas, stable_replicas)
    detail = {"deployment": api.name, "weight": weight, "replicas": replicas, "stable_replicas": stable_replicas,
              "effective_share": round(share, 4), "created": created is not None}
    handle = DeployHandle(service=t.service, version=release.sha, release_id=release.release_id,
                          vendor_ref=api.name, detail=detail)
    deadline = time.monotonic() + timeout
    while True:
        dep = await api.read()
        status = rollout_status(dep)
        running = ((dep["spec"]["template"].get("metadata") or {}).get("annotations") or {}).get(RELEASE_ANNOTATION)
        if status.failed or running != release.release_id:
            why = status.message if status.failed else f"superseded by release {running}"
            return DeployResult(handle=handle, status=DeployStatus.FAILED, message=f"canary {api.name}: {why}",
                                duration_s=time.monotonic() - t0)
        if status.done:
            break
        if time.monotonic() >= deadline:
            return DeployResult(handle=handle, status=DeployStatus.FAILED, duration_s=time.monotonic() - t0,
                                message=f"canary {api.name} not ready after {timeout:g}s: {status.message}")
        await asyncio.sleep(t.settings.poll_interval_s)
    url = await _url(t, api, dep, image)
    message = (f"canary {api.name} ({release.short_sha}): {replicas} pod(s) beside {stable_replicas} stable for "
               f"{weight}%: the Service gives it {share:.0%} of connections (it balances per pod)")
    log.info("%s %s: %s", t.provider, t.service, message)
    return DeployResult(handle=handle.model_copy(update={"url": url}), status=DeployStatus.READY, message=message,
                        duration_s=time.monotonic() - t0)


async def remove(t: KubeTarget) -> bool:
    """DELETE `<name>-canary` (propagationPolicy Background), then wait until none of its pods is left serving
    (bounded: ABORT_WAIT_S, then a warning). False when there was no canary: a no-op."""
    api = t._api.named(canary_name(t.name))
    dep = await api.read_or_none()
    if dep is None:
        return False
    _ours(t, dep)
    if not await api.delete(PROPAGATION):
        return False
    selector = selector_string(dep["spec"]["selector"])  # has track=canary: stable pods never match it
    deadline = time.monotonic() + ABORT_WAIT_S
    while True:
        left = [p for p in await api.pods(selector) if not (p.get("metadata") or {}).get("deletionTimestamp")]
        if not left:
            return True
        if time.monotonic() >= deadline:
            log.warning("%s %s: %d canary pod(s) still serving %gs after the delete", t.provider, t.service,
                        len(left), ABORT_WAIT_S)
            return True
        await asyncio.sleep(t.settings.poll_interval_s)


async def promote_canary(t: KubeTarget, release: Release, timeout: float) -> DeployResult:
    """The usual rolling update of the main Deployment to the canary's image; then the canary is deleted."""
    handle = await t.deploy(release)
    result = await t.wait_ready(handle, timeout)
    if result.status == DeployStatus.READY:
        removed = await remove(t)
        note = f"; canary {canary_name(t.name)} deleted" if removed else ""
        result = result.model_copy(update={"message": result.message + note})
    return result
