"""The calls one Deployment needs (read, patch, list its ReplicaSets), made with the kubernetes client off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from providers.targets.kubernetes.errors import RetryingCaller
from providers.targets.kubernetes.rollout import is_controlled_by, selector_string

Json = dict[str, Any]


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

    async def _apps(self) -> k8s.AppsV1Api:
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
        if client is not None and self.connection.owns_client:
            await asyncio.to_thread(client.close)
