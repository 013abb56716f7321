"""`kubectl rollout undo --to-revision` for the `kubernetes`/`gke` target: find the ReplicaSet, patch back to it."""

from __future__ import annotations

from typing import Any, Protocol

from providers.errors import PermanentError
from providers.models import DeployHandle, ServiceVersion
from providers.targets.kubernetes.api import DeploymentApi
from providers.targets.kubernetes.rollout import (
    deployment_revision,
    equal_ignore_hash,
    no_rollout_history,
    revision_not_found,
    revision_or_none,
    revisions_served,
    rollback_patch,
    rollback_skipped,
    scan_order,
)
from providers.targets.kubernetes.settings import KubeSettings

JSON_PATCH = "application/json-patch+json"

Json = dict[str, Any]


class KubeTarget(Protocol):
    """What a rollback needs of KubernetesTarget (a protocol: no import cycle with target.py)."""

    provider: str
    name: str
    namespace: str
    resource: str
    settings: KubeSettings
    _api: DeploymentApi

    def _container_names(self, template: Json) -> list[str]: ...

    def _images(self, template: Json) -> dict[str, str]: ...

    def _version_of(self, template: Json) -> tuple[str, str]: ...

    @staticmethod
    def _release_of(template: Json) -> str | None: ...

    def _check_capacity(self, dep: Json, *, refuse: bool) -> str | None: ...

    def _refuse_paused(self, dep: Json, what: str) -> None: ...

    def _handle(self, version: str, release_id: str | None, detail: dict[str, Any]) -> DeployHandle: ...


def requested_revision(t: KubeTarget, to: ServiceVersion) -> int | None:
    """The revision `to.vendor_ref` asks for (None: none asked); a PermanentError when it cannot be one."""
    if not to.vendor_ref:
        return None
    try:
        wanted = int(to.vendor_ref)
    except ValueError as exc:
        raise PermanentError(
            f"vendor_ref {to.vendor_ref!r} is not a revision", provider=t.provider, resource=t.resource
        ) from exc
    if wanted < 0:
        raise PermanentError(revision_not_found(wanted), provider=t.provider, resource=t.resource)
    return wanted


async def find_replica_set(t: KubeTarget, dep: Json, to: ServiceVersion) -> Json:
    """The ReplicaSet to undo to: by revision (kubectl deploymentRevision), else by image tag, else previous.

    ReplicaSets are scanned in kubectl's order (creation time, the new one last); one whose revision
    annotation is not a number is skipped, never a crash.
    """
    replica_sets = scan_order(await t._api.replica_sets(dep), dep)
    wanted = requested_revision(t, to)
    rs: Json | None = None
    if wanted is not None:
        rs = deployment_revision(replica_sets, wanted, dep)
        if rs is None and wanted > 0:  # a reused ReplicaSet moved on and keeps the old one in its history
            rs = next((r for r in replica_sets if wanted in revisions_served(r)), None)
        if rs is None:
            message = revision_not_found(wanted) if wanted > 0 else no_rollout_history(t.name)
            raise PermanentError(message, provider=t.provider, resource=t.resource)
    elif to.version:
        image = f"{t.settings.repository}:{to.version}"
        names = t._container_names(dep["spec"]["template"])
        matches = [
            r
            for r in replica_sets
            if revision_or_none(r) is not None
            and all(t._images(r["spec"]["template"]).get(n) == image for n in names)
        ]
        same_release = [r for r in matches if t._release_of(r["spec"]["template"]) == to.release_id]
        pool = same_release or matches
        rs = max(pool, key=lambda r: revision_or_none(r) or 0) if pool else None
        if rs is None:
            raise PermanentError(
                f"unable to find image tag {to.version} in history",
                provider=t.provider,
                resource=t.resource,
            )
    else:
        rs = deployment_revision(replica_sets, 0, dep)
        if rs is None:
            raise PermanentError(no_rollout_history(t.name), provider=t.provider, resource=t.resource)
    found_version, _image = t._version_of(rs["spec"]["template"])
    if to.version and found_version != to.version:
        raise PermanentError(
            f"revision {to.vendor_ref} runs {found_version}, not {to.version}; refusing to roll back to it",
            provider=t.provider,
            resource=t.resource,
        )
    return rs


async def undo(t: KubeTarget, to: ServiceVersion) -> DeployHandle:
    """`kubectl rollout undo --to-revision`: patch the template back to that revision's ReplicaSet."""
    dep = await t._api.read()
    rs = await find_replica_set(t, dep, to)
    to_revision = revision_or_none(rs) or 0
    requested = requested_revision(t, to)
    version, image = t._version_of(rs["spec"]["template"])
    detail: dict[str, Any] = {
        "namespace": t.namespace,
        "deployment": t.name,
        "image": image,
        "to_revision": to_revision,
        "from_revision": revision_or_none(dep) or 0,
        "template_release": t._release_of(rs["spec"]["template"]),
    }
    release_id = detail["template_release"] or to.release_id
    t._refuse_paused(dep, "rollback")
    if equal_ignore_hash(rs["spec"]["template"], dep["spec"]["template"]):
        detail["skipped"] = rollback_skipped(to_revision if requested is None else requested)
        handle = t._handle(version, release_id, detail)
        return handle.model_copy(update={"vendor_ref": str(revision_or_none(dep) or 0)})
    warning = t._check_capacity(dep, refuse=False)
    if warning:
        detail["warning"] = warning
    await t._api.patch(rollback_patch(dep, rs), JSON_PATCH, f"PATCH deployment (undo to revision {to_revision})")
    detail["skipped"] = None
    return t._handle(version, release_id, detail)
