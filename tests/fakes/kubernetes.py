"""A stateful fake kube-apiserver (apps/v1 Deployments and ReplicaSets) with a small deployment controller.

Follows the Kubernetes API reference (https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/
deployment-v1/ and replica-set-v1/) and API concepts (https://kubernetes.io/docs/reference/using-api/
api-concepts/): `GET|PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}` (strategic merge, JSON merge and
JSON patch), `GET .../deployments`, `GET .../replicasets?labelSelector=...`, `GET .../replicasets/{name}`;
`POST .../deployments` and `DELETE .../deployments/{name}` (kube_workloads.py); core/v1 pods, services and
endpoints (kube_core.py), with ready pods really listening on their podIP (kube_network.py); errors are
`kind: Status` bodies (reason NotFound, AlreadyExists, Unauthorized, Forbidden, Invalid, UnsupportedMediaType,
TooManyRequests + Retry-After, ServiceUnavailable). Bearer-token auth; a read-only token gets 403 on writes.
Speaks HTTPS with a throwaway cluster CA (`ca_pem`) like a GKE control plane, or plain HTTP (`tls=False`).
The official kubernetes client talks to it unmodified.
"""

from __future__ import annotations

import copy
import ssl
import time
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.base import FakeServer, Request, Response, bearer_auth
from tests.fakes.kube_controller import DeploymentController
from tests.fakes.kube_core import PodView, get_endpoints, get_service, list_pods, make_service, pod_views
from tests.fakes.kube_network import PodNetwork
from tests.fakes.kube_objects import (
    DeploymentState,
    default_deployment_spec,
    equal_ignore_hash,
    selector_matches,
    status_body,
)
from tests.fakes.kube_objects import revision as revision_of_rs
from tests.fakes.kube_patch import PatchError, json_patch, merge_patch, strategic_merge
from tests.fakes.kube_tls import make_cluster_tls
from tests.fakes.kube_workloads import create_deployment, delete_deployment

Json = dict[str, Any]
DROP_HEADER = "X-Fake-Drop-Answer"
NS = r"(?P<ns>[a-z0-9-]+)"
NAME = r"(?P<name>[a-z0-9.-]+)"
PATCH_TYPES = {
    "application/strategic-merge-patch+json": strategic_merge,
    "application/merge-patch+json": merge_patch,
    "application/json-patch+json": json_patch,
}


def _invalid(name: str, field: str, message: str, cause: str = "FieldValueInvalid") -> Response:
    return Response(
        422,
        status_body(
            422,
            f'Deployment.apps "{name}" is invalid: {field}: {message}',
            details={
                "name": name,
                "group": "apps",
                "kind": "Deployment",
                "causes": [{"reason": cause, "message": message, "field": field}],
            },
        ),
    )


class FakeKubeApiServer(FakeServer):
    """kube-apiserver + deployment controller. Tune time with `rollout_step_s` (a pod's start-to-ready time),
    `observe_delay_s` (spec change -> controller sees it) and `deadline_scale` (x progressDeadlineSeconds)."""

    def __init__(
        self,
        *,
        tokens: Iterable[str] = ("kube-test-token",),
        read_only_tokens: Iterable[str] = (),
        rollout_step_s: float = 0.2,
        observe_delay_s: float = 0.0,
        deadline_scale: float = 1.0,
        tls: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = set(tokens)
        self.read_only_tokens = set(read_only_tokens)
        self.controller = DeploymentController(
            rollout_step_s=rollout_step_s, observe_delay_s=observe_delay_s, deadline_scale=deadline_scale, clock=clock
        )
        self._tls = make_cluster_tls() if tls else None
        self.patches: list[tuple[str, str, str]] = []  # (namespace, name, content type) of every accepted PATCH
        self.writes: list[tuple[str, str, str]] = []  # (POST | DELETE, namespace, name) of every accepted one
        self.services: dict[tuple[str, str], Json] = {}
        self.network = PodNetwork()
        self.controller.on_advance = lambda: self.network.sync(pod_views(self))
        self._lose_answers = 0
        super().__init__()

    # -- server plumbing ----------------------------------------------------------------------------------------
    def start(self) -> FakeKubeApiServer:
        super().start()
        if self._tls is not None:
            assert self._server is not None
            self._server.socket = self._tls.server_context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        return self

    @property
    def url(self) -> str:
        base = super().url
        return base.replace("http://", "https://", 1) if self._tls is not None else base

    @property
    def endpoint(self) -> str:
        """host:port, as GKE's `Cluster.endpoint` names the control plane (there without a port)."""
        return self.url.split("://", 1)[1]

    @property
    def ca_pem(self) -> str:
        assert self._tls is not None, "tls=False: no CA"
        return self._tls.ca_pem

    def client_ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem)

    def lose_answers(self, count: int) -> None:
        """The next `count` accepted PATCHes are applied, but the connection closes before the answer is sent."""
        with self.lock:
            self._lose_answers += count

    def _send(self, h: BaseHTTPRequestHandler, resp: Response) -> None:
        if resp.headers.pop(DROP_HEADER, None):
            h.close_connection = True
            h.connection.close()
            return
        super()._send(h, resp)

    def error_body(self, status: int, message: str) -> Any:
        details = {"retryAfterSeconds": int(self.retry_after_s)} if status == 429 else None
        if status == 429:
            message = "Too many requests, please try again later."
        return status_body(status, message, details=details)

    def authorize(self, req: Request) -> Response | None:
        if any(bearer_auth(req, t) for t in self.tokens):
            return None
        if any(bearer_auth(req, t) for t in self.read_only_tokens):
            if req.method in ("GET", "HEAD"):
                return None
            ns, _, rest = req.path.split("/namespaces/", 1)[-1].partition("/")
            resource, _, name = rest.partition("/")
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(req.method, "get")
            what = f'{resource}.apps "{name}"' if name else f"{resource}.apps"  # a create names no object
            return Response(
                403,
                status_body(
                    403,
                    f'{what} is forbidden: User "system:serviceaccount:ci:read-only" cannot '
                    f'{verb} resource "{resource}" in API group "apps" in the namespace "{ns}"',
                    details={"name": name, "group": "apps", "kind": resource} if name else
                    {"group": "apps", "kind": resource},
                ),
            )
        return Response(401, status_body(401, "Unauthorized"))

    def routes(self) -> None:
        base = f"/apis/apps/v1/namespaces/{NS}"
        self.route("GET", "/version", self._version)
        self.route("GET", f"{base}/deployments", self._list_deployments)
        self.route("GET", f"{base}/deployments/{NAME}", self._get_deployment)
        self.route("PATCH", f"{base}/deployments/{NAME}", self._patch_deployment)
        self.route("GET", f"{base}/replicasets", self._list_replicasets)
        self.route("GET", f"{base}/replicasets/{NAME}", self._get_replicaset)
        self.route("POST", f"{base}/deployments", lambda req: create_deployment(self, req))
        self.route("DELETE", f"{base}/deployments/{NAME}", lambda req: delete_deployment(self, req))
        core = f"/api/v1/namespaces/{NS}"
        self.route("GET", f"{core}/pods", lambda req: list_pods(self, req))
        self.route("GET", f"{core}/services/{NAME}", lambda req: get_service(self, req))
        self.route("GET", f"{core}/endpoints/{NAME}", lambda req: get_endpoints(self, req))

    # -- handlers -----------------------------------------------------------------------------------------------
    def _version(self, req: Request) -> Response:
        return Response(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "platform": "linux/amd64"})

    @staticmethod
    def _out(obj: Json, kind: str) -> Json:
        return {"kind": kind, "apiVersion": "apps/v1", **copy.deepcopy(obj)}

    out = _out

    def _not_found(self, kind: str, name: str) -> Response:
        return Response(
            404,
            status_body(404, f'{kind}.apps "{name}" not found', details={"name": name, "group": "apps", "kind": kind}),
        )

    def _get_deployment(self, req: Request) -> Response:
        with self.lock:
            self.controller.advance()
            st = self.controller.deployments.get((req.params["ns"], req.params["name"]))
            if st is None:
                return self._not_found("deployments", req.params["name"])
            return Response(200, self._out(st.obj, "Deployment"))

    def _list_deployments(self, req: Request) -> Response:
        with self.lock:
            self.controller.advance()
            selector = req.q("labelSelector")
            items = [
                copy.deepcopy(st.obj)
                for (ns, _), st in sorted(self.controller.deployments.items())
                if ns == req.params["ns"] and selector_matches(selector, st.obj["metadata"].get("labels", {}))
            ]
            return Response(200, self._list("DeploymentList", items))

    def _list(self, kind: str, items: list[Json]) -> Json:
        return {
            "kind": kind,
            "apiVersion": "apps/v1",
            "metadata": {"resourceVersion": str(self.controller._rv)},
            "items": items,
        }

    def _list_replicasets(self, req: Request) -> Response:
        with self.lock:
            self.controller.advance()
            selector = req.q("labelSelector")
            items = [
                copy.deepcopy(rs.obj)
                for (ns, _), rs in sorted(self.controller.replicasets.items())
                if ns == req.params["ns"] and selector_matches(selector, rs.obj["metadata"].get("labels", {}))
            ]
            return Response(200, self._list("ReplicaSetList", items))

    def _get_replicaset(self, req: Request) -> Response:
        with self.lock:
            self.controller.advance()
            rs = self.controller.replicasets.get((req.params["ns"], req.params["name"]))
            if rs is None:
                return self._not_found("replicasets", req.params["name"])
            return Response(200, self._out(rs.obj, "ReplicaSet"))

    def _patch_deployment(self, req: Request) -> Response:
        content_type = req.headers.get("content-type", "").split(";")[0].strip()
        apply = PATCH_TYPES.get(content_type)
        if apply is None:
            return Response(
                415,
                status_body(
                    415,
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{', '.join(PATCH_TYPES)}",
                ),
            )
        ns, name = req.params["ns"], req.params["name"]
        with self.lock:
            self.controller.advance()
            st = self.controller.deployments.get((ns, name))
            if st is None:
                return self._not_found("deployments", name)
            try:
                patched = apply(copy.deepcopy(st.obj), req.json())
            except (PatchError, ValueError, TypeError, KeyError) as exc:
                message = f"the server rejected our request due to an error in our request: {exc}"
                return Response(422, status_body(422, message))
            problem = self._validate(st.obj, patched)
            if problem is not None:
                return problem
            self._store(st, patched)
            self.patches.append((ns, name, content_type))
            resp = Response(200, self._out(st.obj, "Deployment"))
            if self._lose_answers:
                self._lose_answers -= 1
                resp.headers[DROP_HEADER] = "1"
            return resp

    def _validate(self, old: Json, new: Json) -> Response | None:
        name = old["metadata"]["name"]
        spec = new.get("spec")
        if not isinstance(spec, dict) or not isinstance(spec.get("template"), dict):
            return _invalid(name, "spec.template", "Required value", "FieldValueRequired")
        if spec.get("selector") != old["spec"]["selector"]:
            return _invalid(name, "spec.selector", "Invalid value: field is immutable")
        containers = (spec["template"].get("spec") or {}).get("containers")
        if not containers:
            return _invalid(name, "spec.template.spec.containers", "Required value", "FieldValueRequired")
        for i, c in enumerate(containers):
            for key in ("name", "image"):
                if not c.get(key):
                    return _invalid(
                        name, f"spec.template.spec.containers[{i}].{key}", "Required value", "FieldValueRequired"
                    )
        labels = (spec["template"].get("metadata") or {}).get("labels") or {}
        match = spec["selector"].get("matchLabels") or {}
        if any(labels.get(k) != v for k, v in match.items()):
            return _invalid(
                name, "spec.template.metadata.labels", "Invalid value: `selector` does not match template `labels`"
            )
        return None

    def _store(self, st: DeploymentState, new: Json) -> None:
        """Write `new` over the stored object: system metadata and status are the server's, not the patch's."""
        old = st.obj
        meta = new.setdefault("metadata", {})
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"):
            meta[key] = old["metadata"][key]
        new["status"] = old.get("status", {})
        default_deployment_spec(new["spec"])
        new.pop("kind", None)
        new.pop("apiVersion", None)
        if new["spec"] != old["spec"]:
            meta["generation"] = old["metadata"]["generation"] + 1
            st.changed_at = self.controller.now
            st.dirty = True
        if new != old:
            meta["resourceVersion"] = self.controller.next_resource_version()
        st.obj = new

    # -- test helpers -------------------------------------------------------------------------------------------
    def create_deployment(
        self,
        name: str,
        image: str,
        *,
        namespace: str = "default",
        replicas: int = 2,
        containers: list[str] | None = None,
        strategy: Json | None = None,
        progress_deadline_s: int = 600,
        annotations: dict[str, str] | None = None,
        settled: bool = True,
        port: int | None = None,
        pod_labels: dict[str, str] | None = None,
    ) -> Json:
        """Create a Deployment (as `kubectl apply` would); `settled` makes its first rollout complete at once.

        Selector `app: <name>`; `pod_labels` are more template labels (e.g. `track: stable`); `port` is the
        containers' containerPort (its ready pods then listen on podIP:port)."""
        labels = {"app": name}
        ports = {"ports": [{"containerPort": port, "protocol": "TCP"}]} if port else {}
        spec: Json = {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": {**labels, **(pod_labels or {})}},
                "spec": {"containers": [{"name": c, "image": image, **ports} for c in (containers or [name])]},
            },
            "progressDeadlineSeconds": progress_deadline_s,
        }
        if strategy is not None:
            spec["strategy"] = strategy
        default_deployment_spec(spec)
        with self.lock:
            ctl = self.controller
            ctl.advance()
            obj: Json = {
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": str(uuid.uuid4()),
                    "resourceVersion": ctl.next_resource_version(),
                    "generation": 1,
                    "creationTimestamp": ctl.stamp(),
                    "labels": dict(labels),
                    "annotations": dict(annotations or {}),
                },
                "spec": spec,
                "status": {},
            }
            st = DeploymentState(obj=obj, changed_at=ctl.now - ctl.observe_delay_s)
            ctl.add_deployment(st)
            step = ctl.rollout_step_s
            if settled:
                ctl.rollout_step_s = 0.0
            try:
                ctl.advance(ctl.now)
            finally:
                ctl.rollout_step_s = step
            return copy.deepcopy(st.obj)

    def stop(self) -> None:
        super().stop()
        self.network.close()

    def create_service(
        self, name: str, selector: dict[str, str], *, port: int = 80, target_port: int, namespace: str = "default"
    ) -> Json:
        """A ClusterIP Service (as `kubectl apply` would make it); its endpoints follow the pods it selects."""
        with self.lock:
            svc = make_service(namespace, name, selector, port, target_port)
            self.services[(namespace, name)] = svc
            return copy.deepcopy(svc)

    def ready_endpoints(self, name: str, namespace: str = "default") -> list[PodView]:
        """The ready pods the Service `name` selects (its Endpoints' `addresses`)."""
        with self.lock:
            self.controller.advance()
            selector = self.services[(namespace, name)]["spec"]["selector"]
            return [p for p in pod_views(self) if p.namespace == namespace and p.ready
                    and all(p.labels.get(k) == v for k, v in selector.items())]

    def expose_service(self, name: str, namespace: str = "default") -> str:
        """A URL in front of the Service (a LoadBalancer's address): each connection to the next ready endpoint."""
        return self.network.expose(lambda: self.ready_endpoints(name, namespace))

    def unhealthy(self, image: str) -> None:
        """Pods running `image` become ready and serve, but their /health answers 503 (a broken release)."""
        with self.lock:
            self.network.unhealthy.add(image)

    def has_deployment(self, name: str, namespace: str = "default") -> bool:
        with self.lock:
            self.controller.advance()
            return (namespace, name) in self.controller.deployments

    def deployment(self, name: str, namespace: str = "default") -> Json:
        with self.lock:
            self.controller.advance()
            return copy.deepcopy(self.controller.deployments[(namespace, name)].obj)

    def replica_sets(self, name: str, namespace: str = "default") -> list[Json]:
        """The ReplicaSets the Deployment owns, oldest first."""
        with self.lock:
            self.controller.advance()
            dep = self.controller.deployments[(namespace, name)].obj
            return [copy.deepcopy(rs.obj) for rs in self.controller.owned(dep)]

    def cannot_start(self, image: str) -> None:
        """Pods running `image` never become ready (crash loop / image pull error)."""
        with self.lock:
            self.controller.cannot_start.add(image)

    def set_spec(self, name: str, namespace: str = "default", **changes: Any) -> None:
        """Change spec fields directly (as another client would), e.g. strategy= or paused=."""
        with self.lock:
            self.controller.advance()
            st = self.controller.deployments[(namespace, name)]
            new = copy.deepcopy(st.obj)
            new["spec"].update(changes)
            self._store(st, new)

    def annotate_replica_set(self, name: str, revision: int, namespace: str = "default", **annotations: str) -> str:
        """Overwrite annotations of the Deployment's ReplicaSet of `revision` (as `kubectl annotate rs` would).

        Pass annotation keys with `**{"deployment.kubernetes.io/revision": "x"}`; returns the ReplicaSet's name.
        """
        with self.lock:
            self.controller.advance()
            dep = self.controller.deployments[(namespace, name)].obj
            rs = next(r for r in self.controller.owned(dep) if revision_of_rs(r.obj) == revision)
            rs.obj["metadata"].setdefault("annotations", {}).update(annotations)
            return str(rs.obj["metadata"]["name"])

    def template_matches(self, name: str, template: Json, namespace: str = "default") -> bool:
        with self.lock:
            return equal_ignore_hash(self.controller.deployments[(namespace, name)].obj["spec"]["template"], template)

    def wait_settled(self, name: str, namespace: str = "default", timeout: float = 30.0) -> Json:
        """Block until the Deployment's rollout is complete (test helper; polls the controller clock)."""
        end = time.monotonic() + timeout
        while True:
            dep = self.deployment(name, namespace)
            st = dep.get("status", {})
            want = dep["spec"]["replicas"]
            if st.get("observedGeneration", 0) >= dep["metadata"]["generation"] and st.get(
                "updatedReplicas", 0
            ) == want == st.get("replicas", 0) == st.get("availableReplicas", 0):
                return dep
            if time.monotonic() > end:
                raise TimeoutError(f"deployment {namespace}/{name} did not settle: {st}")
            time.sleep(0.02)
