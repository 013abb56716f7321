"""Creating and deleting apps/v1 Deployments on the fake kube-apiserver, with the apiserver's answers and checks.

Follows the API reference, https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/deployment-v1/
("create": `POST /apis/apps/v1/namespaces/{namespace}/deployments` → 201 Deployment, 409 when the name is taken;
"delete": `DELETE .../deployments/{name}` with a DeleteOptions body or `propagationPolicy` query → 200/202 Status),
the garbage-collection page https://kubernetes.io/docs/concepts/architecture/garbage-collection/ (Foreground,
Background, Orphan) and the apiserver's code for the exact bodies: a failure is a `kind: Status` with reason
AlreadyExists / NotFound / Invalid (apimachinery pkg/api/errors); a delete that removed the object at once answers
`Status{status: Success, details{name, group, kind: <resource>, uid}}` (apiserver registry/generic/registry/store.go
finalizeDelete), and one that waits on a finalizer (Foreground, Orphan) answers the object with its
deletionTimestamp and finalizers (handlers/delete.go: 200; 202 only for the deprecated orphanDependents=false).
Validation (pkg/apis/apps/validation ValidateDeployment): name a DNS-1123 subdomain, selector required and
non-empty, template labels matched by the selector, containers with name and image, replicas >= 0: else 422.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from tests.fakes.base import Request, Response
from tests.fakes.kube_objects import DeploymentState, default_deployment_spec, status_body

if TYPE_CHECKING:
    from tests.fakes.kubernetes import FakeKubeApiServer

Json = dict[str, Any]
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
PROPAGATION = ("Foreground", "Background", "Orphan")
RFC1123 = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def invalid(kind: str, name: str, causes: list[tuple[str, str]]) -> Response:
    """422 Invalid: `<Kind>.apps "<name>" is invalid: field: message[, ...]` with one cause per field."""
    text = ", ".join(f"{field}: {message}" for field, message in causes)
    group = "apps" if kind == "Deployment" else "meta.k8s.io"
    return Response(422, status_body(422, f'{kind}.{group} "{name}" is invalid: {text}', details={
        "name": name, "group": group, "kind": kind,
        "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
    }))


def label_selector_matches(selector: Json, labels: dict[str, str]) -> bool:
    """metav1.LabelSelectorAsSelector(selector).Matches(labels) for matchLabels and matchExpressions."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and present and labels[key] in values):
            return False
        if (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def validate_deployment(name: str, spec: Any) -> list[tuple[str, str]]:
    """The ValidateDeploymentSpec problems of a new Deployment (field, message); [] when valid."""
    if not isinstance(spec, dict):
        return [("spec", "Required value")]
    out: list[tuple[str, str]] = []
    selector = spec.get("selector")
    template = spec.get("template")
    if not isinstance(selector, dict):
        out.append(("spec.selector", "Required value"))
    elif not (selector.get("matchLabels") or selector.get("matchExpressions")):
        out.append(("spec.selector", "Invalid value: \"null\": empty selector is invalid for deployment"))
    if not isinstance(template, dict):
        return [*out, ("spec.template", "Required value")]
    labels = (template.get("metadata") or {}).get("labels") or {}
    if isinstance(selector, dict) and not out and not label_selector_matches(selector, labels):
        out.append(("spec.template.metadata.labels",
                    f"Invalid value: {json.dumps(labels, sort_keys=True)}: `selector` does not match template "
                    "`labels`"))
    containers = (template.get("spec") or {}).get("containers")
    if not containers:
        out.append(("spec.template.spec.containers", "Required value"))
    for i, c in enumerate(containers or []):
        out += [(f"spec.template.spec.containers[{i}].{key}", "Required value") for key in ("name", "image")
                if not c.get(key)]
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        out.append(("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0"))
    return out


def create_deployment(fake: FakeKubeApiServer, req: Request) -> Response:
    """POST .../deployments: 201 with the stored object, 409 AlreadyExists, 422 Invalid, 400 namespace mismatch."""
    ns = req.params["ns"]
    try:
        body = req.json()
    except ValueError as exc:
        return Response(400, status_body(400, f"the object provided is unrecognized: {exc}"))
    if not isinstance(body, dict) or body.get("kind", "Deployment") != "Deployment":
        return Response(400, status_body(400, "the object provided is not a Deployment"))
    meta = body.get("metadata") or {}
    name = str(meta.get("name") or "")
    if meta.get("namespace") not in (None, ns):
        return Response(400, status_body(
            400, "the namespace of the provided object does not match the namespace sent on the request"))
    if not name:
        return invalid("Deployment", name, [("metadata.name", "Required value: name or generateName is required")])
    if not DNS_SUBDOMAIN.match(name):
        return invalid("Deployment", name, [("metadata.name", f'Invalid value: "{name}": {RFC1123}')])
    problems = validate_deployment(name, body.get("spec"))
    if problems:
        return invalid("Deployment", name, problems)
    with fake.lock:
        ctl = fake.controller
        ctl.advance()
        if (ns, name) in ctl.deployments:
            return Response(409, status_body(409, f'deployments.apps "{name}" already exists', "AlreadyExists",
                                             details={"name": name, "group": "apps", "kind": "deployments"}))
        spec = copy.deepcopy(body["spec"])
        default_deployment_spec(spec)
        obj: Json = {
            "metadata": {
                "name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                "resourceVersion": ctl.next_resource_version(), "generation": 1,
                "creationTimestamp": ctl.stamp(),
                "labels": dict(meta.get("labels") or {}), "annotations": dict(meta.get("annotations") or {}),
            },
            "spec": spec,
            "status": {},
        }
        st = DeploymentState(obj=obj, changed_at=ctl.now)
        ctl.add_deployment(st)
        ctl.advance(ctl.now)
        fake.writes.append(("POST", ns, name))
        return Response(201, fake.out(st.obj, "Deployment"))


def delete_deployment(fake: FakeKubeApiServer, req: Request) -> Response:
    """DELETE .../deployments/{name}: DeleteOptions from the body or the query; 404 NotFound when absent."""
    ns, name = req.params["ns"], req.params["name"]
    try:
        options = req.json() or {}
    except ValueError as exc:
        return Response(400, status_body(400, f"the object provided is unrecognized: {exc}"))
    policy = options.get("propagationPolicy") if isinstance(options, dict) else None
    policy = policy or req.q("propagationPolicy") or "Background"  # apps/v1: DeleteDependents (Background)
    if policy not in PROPAGATION:
        supported = ", ".join(f'"{p}"' for p in PROPAGATION)
        return invalid("DeleteOptions", "", [("propagationPolicy",
                                              f'Unsupported value: "{policy}": supported values: {supported}')])
    with fake.lock:
        ctl = fake.controller
        ctl.advance()
        st = ctl.deployments.get((ns, name))
        if st is None:
            return Response(404, status_body(404, f'deployments.apps "{name}" not found',
                                             details={"name": name, "group": "apps", "kind": "deployments"}))
        ctl.delete_deployment(ns, name, policy)
        ctl.advance(ctl.now)
        fake.writes.append(("DELETE", ns, name))
        if policy == "Background":
            return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "details": {"name": name, "group": "apps", "kind": "deployments",
                                              "uid": st.obj["metadata"]["uid"]}})
        gone = fake.out(st.obj, "Deployment")  # waited on its finalizer: the object as it was at that moment
        gone["metadata"]["deletionTimestamp"] = ctl.stamp()
        gone["metadata"]["deletionGracePeriodSeconds"] = 0
        gone["metadata"]["finalizers"] = ["foregroundDeletion" if policy == "Foreground" else "orphan"]
        return Response(200, gone)
