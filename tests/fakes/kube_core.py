"""core/v1 Pods, Services and Endpoints of the fake cluster, as the apiserver shows them (read-only views).

Follows the API reference: Pod (https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/:
`GET /api/v1/namespaces/{ns}/pods?labelSelector=`, status.phase, status.podIP/podIPs, the Ready condition),
Service (https://kubernetes.io/docs/reference/kubernetes-api/service-resources/service-v1/: spec.selector, ports
port/targetPort) and Endpoints (https://kubernetes.io/docs/reference/kubernetes-api/service-resources/endpoints-v1/:
subsets of `addresses` (ready pods) and `notReadyAddresses` with a Pod targetRef, and the target ports). As the
endpoints controller does, a Service's endpoints are EVERY pod in its namespace whose labels its selector matches,
whichever Deployment (or none) owns it: the Kubernetes canary pattern ("Canary deployments" in
https://kubernetes.io/docs/concepts/workloads/management/ -- a second Deployment whose pods carry the Service's
labels plus `track: canary`) relies on exactly that.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.fakes.base import Request, Response
from tests.fakes.kube_objects import Pod, ReplicaSetState, selector_matches, status_body

if TYPE_CHECKING:
    from tests.fakes.kubernetes import FakeKubeApiServer

Json = dict[str, Any]


@dataclass(frozen=True)
class PodView:
    """A pod of the fake cluster as the network sees it: where it listens and what its container runs."""

    namespace: str
    name: str
    ip: str
    port: int | None  # the first container's first containerPort (None: it declares none)
    image: str
    labels: dict[str, str]
    ready: bool


def pod_views(fake: FakeKubeApiServer) -> list[PodView]:
    """Every pod of every ReplicaSet (call with the fake's lock held), sorted by namespace and name."""
    out: list[PodView] = []
    ctl = fake.controller
    for (ns, _), rs in sorted(ctl.replicasets.items()):
        template = rs.obj["spec"]["template"]
        containers = template["spec"]["containers"]
        ports = containers[0].get("ports") or []
        port = int(ports[0]["containerPort"]) if ports else None
        labels = dict(template["metadata"].get("labels") or {})
        out += [PodView(ns, p.name, p.ip, port, containers[0]["image"], labels, ctl._ready(p)) for p in rs.pods]
    return sorted(out, key=lambda v: (v.namespace, v.name))


def _pod(fake: FakeKubeApiServer, rs: ReplicaSetState, pod: Pod) -> Json:
    ctl = fake.controller
    template = rs.obj["spec"]["template"]
    ready = ctl._ready(pod)
    return {
        "metadata": {
            "name": pod.name, "namespace": rs.obj["metadata"]["namespace"],
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"pod/{pod.name}")),
            "labels": dict(template["metadata"].get("labels") or {}),
            "creationTimestamp": ctl.stamp(pod.started),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs.obj["metadata"]["name"],
                                 "uid": rs.obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": template["spec"],
        "status": {
            "phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}], "startTime": ctl.stamp(pod.started),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def list_pods(fake: FakeKubeApiServer, req: Request) -> Response:
    """GET /api/v1/namespaces/{ns}/pods?labelSelector=..."""
    ns, selector = req.params["ns"], req.q("labelSelector")
    with fake.lock:
        fake.controller.advance()
        items = [
            _pod(fake, rs, p)
            for (rs_ns, _), rs in sorted(fake.controller.replicasets.items())
            if rs_ns == ns and selector_matches(selector, rs.obj["spec"]["template"]["metadata"].get("labels") or {})
            for p in rs.pods
        ]
        rv = fake.controller.next_resource_version()
    return Response(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv},
                          "items": sorted(items, key=lambda p: p["metadata"]["name"])})


def _service_not_found(kind: str, name: str) -> Response:
    return Response(404, status_body(404, f'{kind} "{name}" not found', details={"name": name, "kind": kind}))


def get_service(fake: FakeKubeApiServer, req: Request) -> Response:
    """GET /api/v1/namespaces/{ns}/services/{name}."""
    with fake.lock:
        svc = fake.services.get((req.params["ns"], req.params["name"]))
        if svc is None:
            return _service_not_found("services", req.params["name"])
        return Response(200, {"kind": "Service", "apiVersion": "v1", **svc})


def endpoints_of(fake: FakeKubeApiServer, svc: Json) -> Json:
    """The Endpoints object the endpoints controller keeps for `svc` (call with the lock held, after advance)."""
    ns = svc["metadata"]["namespace"]
    selector = svc["spec"].get("selector") or {}
    pods = [v for v in pod_views(fake) if v.namespace == ns and selector
            and all(v.labels.get(k) == val for k, val in selector.items())]

    def address(v: PodView) -> Json:
        return {"ip": v.ip, "targetRef": {"kind": "Pod", "namespace": ns, "name": v.name,
                                          "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"pod/{v.name}"))}}

    ready = [address(v) for v in pods if v.ready]
    not_ready = [address(v) for v in pods if not v.ready]
    ports = [{"name": p["name"], "port": p["targetPort"], "protocol": "TCP"} if p.get("name")
             else {"port": p["targetPort"], "protocol": "TCP"} for p in svc["spec"]["ports"]]
    subset: Json = {"ports": ports}
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    meta = {"name": svc["metadata"]["name"], "namespace": ns, "labels": dict(svc["metadata"].get("labels") or {})}
    out: Json = {"kind": "Endpoints", "apiVersion": "v1", "metadata": meta}
    if pods:
        out["subsets"] = [subset]
    return out


def get_endpoints(fake: FakeKubeApiServer, req: Request) -> Response:
    """GET /api/v1/namespaces/{ns}/endpoints/{name}: exists while its Service (with a selector) does."""
    with fake.lock:
        fake.controller.advance()
        svc = fake.services.get((req.params["ns"], req.params["name"]))
        if svc is None:
            return _service_not_found("endpoints", req.params["name"])
        return Response(200, endpoints_of(fake, svc))


def make_service(namespace: str, name: str, selector: dict[str, str], port: int, target_port: int) -> Json:
    """A ClusterIP Service object as `kubectl apply` leaves it (defaults filled in)."""
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "labels": {"app": name}},
        "spec": {
            "type": "ClusterIP", "selector": dict(selector), "sessionAffinity": "None",
            "ports": [{"port": port, "targetPort": target_port, "protocol": "TCP"}],
        },
        "status": {"loadBalancer": {}},
    }
