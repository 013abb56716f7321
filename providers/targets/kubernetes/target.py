"""The `kubernetes` and `gke` service targets: set a Deployment's image to the release SHA, follow, undo."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from providers.errors import PermanentError
from providers.models import DeployHandle, DeployResult, DeployStatus, Release, ServiceVersion
from providers.targets.base import TargetContext
from providers.targets.kubernetes import canary, rollback
from providers.targets.kubernetes.api import Connection, DeploymentApi
from providers.targets.kubernetes.client import gke_connection, kubeconfig_connection
from providers.targets.kubernetes.errors import RetryingCaller
from providers.targets.kubernetes.rollout import (
    CHANGE_CAUSE_ANNOTATION,
    PAUSED_ROLLBACK,
    RELEASE_ANNOTATION,
    capacity_drop,
    revision_or_none,
    rollout_status,
)
from providers.targets.kubernetes.settings import KubeSettings, parse_settings

log = logging.getLogger(__name__)

SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")
STRATEGIC = "application/strategic-merge-patch+json"

Json = dict[str, Any]


class KubernetesTarget:
    """One service = one Deployment. Deploy sets the containers' image to `<repository>:<sha>`.

    Idempotency: a Deployment whose template already has that image and our release annotation is not patched
    again. Readiness follows `kubectl rollout status`; rollback follows `kubectl rollout undo --to-revision`.
    Blocking client calls run in worker threads; transient failures are retried inside (RetryingCaller).
    Canary (canary.py): a `<name>-canary` Deployment behind the same Service, sized to each step's share.
    Rollback (rollback.py): the ReplicaSet of the revision asked for, and the template patched back to it.
    """

    supports_canary = True
    # fail fast may stop waiting for a rollout (tasks/services.py): the rollback patches the Deployment back and
    # the controller drops the new ReplicaSet
    abandonable_rollout = True

    def __init__(self, *, service: str, provider: str, settings: KubeSettings, connection: Connection) -> None:
        self.service = service
        self.provider = provider
        self.settings = settings
        self.namespace = settings.namespace
        self.name = settings.deployment or service
        self.resource = f"deployment {self.namespace}/{self.name}"
        caller = RetryingCaller(
            provider,
            attempts=settings.api_attempts,
            backoff_s=settings.api_backoff_s,
            max_wait_s=settings.api_max_wait_s,
        )
        self._api = DeploymentApi(
            connection, caller, self.namespace, self.name, self.resource, settings.request_timeout_s
        )

    def _container_names(self, template: Json) -> list[str]:
        containers = (template.get("spec") or {}).get("containers") or []
        have = [c["name"] for c in containers]
        if self.settings.containers:
            missing = [n for n in self.settings.containers if n not in have]
            if missing:
                raise PermanentError(
                    f"container(s) {', '.join(missing)} not in the pod template (has: {', '.join(have)})",
                    provider=self.provider,
                    resource=self.resource,
                )
            return list(self.settings.containers)
        if len(have) != 1:
            raise PermanentError(
                f"the pod template has {len(have)} containers ({', '.join(have)}); "
                f"name the ones to update in services.{self.service}.settings.containers",
                provider=self.provider,
                resource=self.resource,
            )
        return have

    def _images(self, template: Json) -> dict[str, str]:
        containers = (template.get("spec") or {}).get("containers") or []
        return {c["name"]: c.get("image", "") for c in containers}

    def _version_of(self, template: Json) -> tuple[str, str]:
        """(version, image) of a pod template: the tag of our repository's image, else the image itself."""
        images = self._images(template)
        names = [n for n in self.settings.containers if n in images] or list(images)
        image = images[names[0]] if names else ""
        prefix = f"{self.settings.repository}:"
        return (image[len(prefix) :] if image.startswith(prefix) else image), image

    @staticmethod
    def _release_of(template: Json) -> str | None:
        value = ((template.get("metadata") or {}).get("annotations") or {}).get(RELEASE_ANNOTATION)
        return str(value) if value is not None else None

    def _check_capacity(self, dep: Json, *, refuse: bool) -> str | None:
        if self.settings.zero_downtime == "off":
            return None
        try:
            why = capacity_drop(dep)
        except ValueError as exc:
            message = f"unreadable rollout strategy: {exc}"
            raise PermanentError(message, provider=self.provider, resource=self.resource) from exc
        if why is None:
            return None
        if refuse and self.settings.zero_downtime == "refuse":
            raise PermanentError(
                f"refusing to roll out: {why}; or set services.{self.service}.settings.zero_downtime to warn or off",
                provider=self.provider,
                resource=self.resource,
            )
        log.warning("%s %s: rollout may drop capacity: %s", self.provider, self.resource, why)
        return why

    def _refuse_paused(self, dep: Json, what: str) -> None:
        if (dep.get("spec") or {}).get("paused"):
            message = (
                PAUSED_ROLLBACK
                if what == "rollback"
                else f"you cannot {what} a paused deployment; resume it first with "
                f"'kubectl rollout resume deployment/{self.name}' and try again"
            )
            raise PermanentError(message, provider=self.provider, resource=self.resource)

    def _service_version(self, obj: Json, template: Json, revision: int) -> ServiceVersion:
        version, image = self._version_of(template)
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return ServiceVersion(
            service=self.service,
            version=version,
            release_id=self._release_of(template) or annotations.get(RELEASE_ANNOTATION),
            vendor_ref=str(revision) if revision else None,
            url=self.settings.url,
            detail={
                "image": image,
                "namespace": self.namespace,
                "deployment": self.name,
                "change_cause": annotations.get(CHANGE_CAUSE_ANNOTATION),
            },
        )

    # -- ServiceTarget ------------------------------------------------------------------------------------------
    async def current(self) -> ServiceVersion | None:
        """The version serving now: the pod template's image tag (the SHA) and revision once its rollout is
        complete; while a rollout is unfinished or failed, the ReplicaSet with the most available pods."""
        dep = await self._api.read()
        status = rollout_status(dep)
        if status.done:
            return self._service_version(dep, dep["spec"]["template"], (revision_or_none(dep) or 0))
        serving = [
            rs
            for rs in await self._api.replica_sets(dep)
            if int((rs.get("status") or {}).get("availableReplicas") or 0)
        ]
        if not serving:
            version = self._service_version(dep, dep["spec"]["template"], (revision_or_none(dep) or 0))
        else:
            rs = max(serving, key=lambda r: (int(r["status"]["availableReplicas"]), revision_or_none(r) or 0))
            version = self._service_version(rs, rs["spec"]["template"], revision_or_none(rs) or 0)
        version.detail["rollout"] = status.message
        version.detail["desired_version"] = self._version_of(dep["spec"]["template"])[0]
        return version

    async def deploy(self, release: Release) -> DeployHandle:
        """Strategic-merge patch of the containers' image + release annotations; skipped when already there."""
        self._check_sha(release)
        dep = await self._api.read()
        template = dep["spec"]["template"]
        names = self._container_names(template)
        image = f"{self.settings.repository}:{release.sha}"
        images = self._images(template)
        detail: dict[str, Any] = {
            "namespace": self.namespace,
            "deployment": self.name,
            "image": image,
            "template_release": release.release_id,
            "previous_revision": (revision_or_none(dep) or 0),
        }
        if all(images[n] == image for n in names) and self._release_of(template) == release.release_id:
            detail["patched"] = False
            return self._handle(release.sha, release.release_id, detail)
        self._refuse_paused(dep, "roll out")
        warning = self._check_capacity(dep, refuse=True)
        if warning:
            detail["warning"] = warning
        annotations = {
            RELEASE_ANNOTATION: release.release_id,
            CHANGE_CAUSE_ANNOTATION: f"aevon-deploy {release.release_id}: {image}",
        }
        body = {
            "metadata": {"annotations": annotations},
            "spec": {
                "template": {
                    "metadata": {"annotations": {RELEASE_ANNOTATION: release.release_id}},
                    "spec": {"containers": [{"name": n, "image": image} for n in names]},
                }
            },
        }
        patched = await self._api.patch(body, STRATEGIC, "PATCH deployment (set image)")
        detail["patched"] = True
        detail["generation"] = (patched.get("metadata") or {}).get("generation")
        return self._handle(release.sha, release.release_id, detail)

    def _check_sha(self, release: Release) -> None:
        if not SHA_RE.match(release.sha):
            raise PermanentError(
                f"release sha {release.sha!r} is not a git SHA", provider=self.provider, resource=self.resource
            )

    def _handle(self, version: str, release_id: str | None, detail: dict[str, Any]) -> DeployHandle:
        return DeployHandle(service=self.service, version=version, release_id=release_id, detail=detail)

    async def wait_ready(self, handle: DeployHandle, timeout: float) -> DeployResult:
        """Poll the Deployment and decide exactly as `kubectl rollout status` does, until done/failed/timeout."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        deadline = loop.time() + timeout
        expected = handle.detail.get("template_release")
        message = ""
        while True:
            dep = await self._api.read()
            template = dep["spec"]["template"]
            running = self._release_of(template)
            if expected is not None and running != expected:
                return self._result(
                    handle, DeployStatus.FAILED, f"superseded: the Deployment now runs release {running}", started
                )
            status = rollout_status(dep)
            message = status.message
            if status.failed:
                return self._result(handle, DeployStatus.FAILED, message, started)
            if status.done:
                ready = handle.model_copy(update={"vendor_ref": str(revision_or_none(dep) or 0)})
                return self._result(ready, DeployStatus.READY, message, started)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return self._result(handle, DeployStatus.FAILED, f"not ready after {timeout:g}s: {message}", started)
            await asyncio.sleep(min(self.settings.poll_interval_s, remaining))

    @staticmethod
    def _result(handle: DeployHandle, status: DeployStatus, message: str, started: float) -> DeployResult:
        return DeployResult(handle=handle, status=status, message=message, duration_s=time.monotonic() - started)

    async def rollback(self, to: ServiceVersion) -> DeployHandle:
        """`kubectl rollout undo --to-revision`: patch the template back to that revision's ReplicaSet (rollback.py)."""
        return await rollback.undo(self, to)

    async def history(self) -> list[ServiceVersion]:
        """The Deployment's ReplicaSets by revision, newest first (what `kubectl rollout history` lists)."""
        dep = await self._api.read()
        numbered = [(rev, rs) for rs in await self._api.replica_sets(dep) if (rev := revision_or_none(rs)) is not None]
        numbered.sort(key=lambda pair: pair[0], reverse=True)  # a ReplicaSet whose revision is not a number: left out
        return [self._service_version(rs, rs["spec"]["template"], rev) for rev, rs in numbered]

    # -- CanaryTarget (canary.py) ---------------------------------------------------------------------------------
    async def set_canary(self, release: Release, weight: int, timeout: float) -> DeployResult:
        """`<name>-canary` with ceil(weight % of the stable replicas) pods behind the same Service; READY + URL."""
        self._check_sha(release)
        return await canary.set_canary(self, release, weight, timeout)

    async def promote_canary(self, release: Release, timeout: float) -> DeployResult:
        """Roll the main Deployment to the canary's image (the usual rollout), then delete the canary."""
        return await canary.promote_canary(self, release, timeout)

    async def abort_canary(self, stable: ServiceVersion | None) -> None:
        """Delete `<name>-canary` at once (a no-op when there is none); the stable Deployment is untouched."""
        await canary.remove(self)

    async def aclose(self) -> None:
        """Close the ApiClient when this target built it (an injected one belongs to its owner)."""
        await self._api.aclose()


def _token(ctx: TargetContext) -> str | None:
    secret = ctx.secrets.get("token")
    return secret.get_secret_value() if secret is not None else None


def make_target(ctx: TargetContext) -> KubernetesTarget:
    """Factory for `kubernetes`: a kubeconfig (path/context), or an injected `ctx.extra["api_client"]`."""
    settings = parse_settings(ctx.spec.name, "kubernetes", ctx.spec.settings)
    connection = kubeconfig_connection(settings, _token(ctx), ctx.extra.get("api_client"))
    return KubernetesTarget(service=ctx.spec.name, provider="kubernetes", settings=settings, connection=connection)


def make_gke_target(ctx: TargetContext) -> KubernetesTarget:
    """Factory for `gke`: reads the cluster (endpoint, CA) with google-cloud-container on first use.

    Injectable through `ctx.extra`: "api_client" (skips the lookup), "cluster_manager" (a ClusterManagerClient),
    "google_credentials". Without them: ctx.secrets["token"] as a static access token, else ADC.
    """
    settings = parse_settings(ctx.spec.name, "gke", ctx.spec.settings)
    connection = gke_connection(settings, _token(ctx), ctx.extra)
    return KubernetesTarget(service=ctx.spec.name, provider="gke", settings=settings, connection=connection)
