"""The calls one Deployment needs (read, patch, create, delete, its ReplicaSets and pods), made off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from providers.targets.kubernetes.errors import RetryingCaller
from providers.targets.kubernetes.rollout import is_controlled_by, selector_string

Json = dict[str, Any]


def _absent_as_none(fn: Callable[..., Any], status: int) -> Callable[..., Any]:
    """`fn`, answering None where the API answers `status` (404 NotFound, 409 AlreadyExists): an expected outcome,
    not an error, so it is neither retried nor translated."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == status:
                return None
            raise

    return call


@dataclass(frozen=True)
class Connection:
    """How to get the ApiClient: `connect` is blocking (kubeconfig load, GKE lookup) and runs once, in a thread.

    `resource` and `op` name it in errors; `owns_client` says whether closing the target closes the client
    (an injected client belongs to whoever injected it).
    """

    connect: Callable[[], k8s.ApiClient]
    resource: str
    op: str
    owns_client: bool


class DeploymentApi:
    """apps/v1 calls on one Deployment; objects come back as the API's JSON dicts (camelCase, unset fields absent).

    Every call runs in a worker thread through the RetryingCaller (translated errors, transient ones retried).
    """

    def __init__(
        self,
        connection: Connection,
        caller: RetryingCaller,
        namespace: str,
        name: str,
        resource: str,
        request_timeout_s: float,
    ) -> None:
        self.connection = connection
        self.caller = caller
        self.namespace = namespace
        self.name = name
        self.resource = resource
        self.timeout = request_timeout_s
        self._client: k8s.ApiClient | None = None
        self._lock = asyncio.Lock()
        self._parent: DeploymentApi | None = None

    def named(self, name: str) -> DeploymentApi:
        """The same calls on another Deployment of the namespace, over this one's client (connected once)."""
        other = DeploymentApi(self.connection, self.caller, self.namespace, name,
                              f"deployment {self.namespace}/{name}", self.timeout)
        other._parent = self
        return other

    async def _apps(self) -> k8s.AppsV1Api:
        if self._parent is not None:
            apps = await self._parent._apps()
            self._client = self._parent._client
            return apps
        async with self._lock:
            if self._client is None:
                conn = self.connection
                self._client = await self.caller.call(conn.op, conn.resource, conn.connect)
        return k8s.AppsV1Api(self._client)

    def _to_dict(self, obj: Any) -> Json:
        assert self._client is not None
        out = self._client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        assert isinstance(out, dict)
        return out

    async def read(self) -> Json:
        """GET /apis/apps/v1/namespaces/{ns}/deployments/{name}."""
        apps = await self._apps()
        dep = await self.caller.call(
            "GET deployment",
            self.resource,
            apps.read_namespaced_deployment,
            self.name,
            self.namespace,
            _request_timeout=self.timeout,
        )
        return self._to_dict(dep)

    async def patch(self, body: Any, content_type: str, op: str) -> Json:
        """PATCH the Deployment with `body` as `content_type` (strategic merge or JSON patch)."""
        apps = await self._apps()
        dep = await self.caller.call(
            op,
            self.resource,
            apps.patch_namespaced_deployment,
            self.name,
            self.namespace,
            body,
            _content_type=content_type,
            _request_timeout=self.timeout,
        )
        return self._to_dict(dep)

    async def read_or_none(self) -> Json | None:
        """GET the Deployment; None when it does not exist (404)."""
        apps = await self._apps()
        dep = await self.caller.call(
            "GET deployment", self.resource, _absent_as_none(apps.read_namespaced_deployment, 404),
            self.name, self.namespace, _request_timeout=self.timeout,
        )
        return None if dep is None else self._to_dict(dep)

    async def create(self, body: Json) -> Json | None:
        """POST a new Deployment named `self.name`; None when one already exists (409 AlreadyExists)."""
        apps = await self._apps()
        dep = await self.caller.call(
            "POST deployment", self.resource, _absent_as_none(apps.create_namespaced_deployment, 409),
            self.namespace, body, _request_timeout=self.timeout,
        )
        return None if dep is None else self._to_dict(dep)

    async def delete(self, propagation: str) -> bool:
        """DELETE the Deployment with DeleteOptions{propagationPolicy}; False when there was none (404)."""
        apps = await self._apps()
        done = await self.caller.call(
            "DELETE deployment", self.resource, _absent_as_none(apps.delete_namespaced_deployment, 404),
            self.name, self.namespace, body=k8s.V1DeleteOptions(propagation_policy=propagation),
            _request_timeout=self.timeout,
        )
        return done is not None

    async def pods(self, selector: str) -> list[Json]:
        """GET /api/v1/namespaces/{ns}/pods?labelSelector=`selector`."""
        core = k8s.CoreV1Api(await self._apps_client())
        listed = await self.caller.call(
            "LIST pods", self.resource, core.list_namespaced_pod, self.namespace, label_selector=selector,
            _request_timeout=self.timeout,
        )
        return list(self._to_dict(listed).get("items") or [])

    async def service(self, name: str) -> Json | None:
        """GET /api/v1/namespaces/{ns}/services/{name}; None when there is no such Service."""
        core = k8s.CoreV1Api(await self._apps_client())
        svc = await self.caller.call(
            "GET service", f"service {self.namespace}/{name}", _absent_as_none(core.read_namespaced_service, 404),
            name, self.namespace, _request_timeout=self.timeout,
        )
        return None if svc is None else self._to_dict(svc)

    async def _apps_client(self) -> k8s.ApiClient:
        await self._apps()
        assert self._client is not None
        return self._client

    async def replica_sets(self, dep: Json) -> list[Json]:
        """deploymentutil.listReplicaSets: list by the Deployment's selector, keep the ones it controls."""
        apps = await self._apps()
        listed = await self.caller.call(
            "LIST replicasets",
            self.resource,
            apps.list_namespaced_replica_set,
            self.namespace,
            label_selector=selector_string(dep["spec"]["selector"]),
            _request_timeout=self.timeout,
        )
        items = self._to_dict(listed).get("items") or []
        return [rs for rs in items if is_controlled_by(rs, dep)]

    async def aclose(self) -> None:
        """Close the client when the connection built it."""
        client, self._client = self._client, None
        if client is not None and self.connection.owns_client and self._parent is None:
            await asyncio.to_thread(client.close)
