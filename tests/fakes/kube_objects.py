"""Kubernetes API objects as the fake control plane keeps them: state records, defaulting, hashing, selectors."""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
SKIP_COPY = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deployment.kubernetes.io/error-selector-overlapping-with",
        "deployment.kubernetes.io/selector-updated-at",
    }
)
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand SafeEncodeString
MAX_INT32 = 2**31 - 1
MIN_AVAILABLE = "Deployment has minimum availability."
MIN_UNAVAILABLE = "Deployment does not have minimum availability."

Json = dict[str, Any]


@dataclass
class Pod:
    """One pod of a ReplicaSet: when it started and when it turns ready (None: never)."""

    name: str
    started: float
    ready_at: float | None
    ip: str = ""  # status.podIP: a distinct loopback address (127.x.y.z), so a pod can really listen on it


@dataclass
class DeploymentState:
    """A Deployment's API object plus what the controller keeps beside it."""

    obj: Json
    changed_at: float  # when the spec (generation) last changed
    progress_at: float | None = None  # lastUpdateTime of the Progressing condition, on the controller clock
    clock: float = 0.0  # the instant this Deployment was last brought up to
    dirty: bool = True  # written since then (created, patched): settle it at the next advance


@dataclass
class ReplicaSetState:
    """A ReplicaSet's API object and its pods."""

    obj: Json
    created: float
    owner_uid: str
    pods: list[Pod] = field(default_factory=list)


def pod_template_hash(template: Json, collision_count: int = 0) -> str:
    """controller.ComputeHash: fnv-32a of the template (+ collisionCount), SafeEncodeString of its decimal form."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in str(h))


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def equal_ignore_hash(t1: Json, t2: Json) -> bool:
    """deploymentutil.EqualIgnoreHash."""
    a, b = copy.deepcopy(t1), copy.deepcopy(t2)
    for t in (a, b):
        (t.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return bool(_prune(a) == _prune(b))


def scaled(value: int | str, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, int):
        return value
    pct = int(value.rstrip("%")) * total / 100
    return math.ceil(pct) if round_up else math.floor(pct)


def fenceposts(dep: Json) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a RollingUpdate Deployment, as ResolveFenceposts gives them."""
    spec = dep["spec"]
    rolling = spec["strategy"].get("rollingUpdate") or {}
    desired = spec["replicas"]
    surge = scaled(rolling.get("maxSurge", "25%"), desired, True)
    unavailable = scaled(rolling.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def revision(obj: Json) -> int:
    """The revision annotation; 0 when it is not a number (the controller's MaxRevision logs and skips those)."""
    value = str((obj["metadata"].get("annotations") or {}).get(REVISION, "0"))
    return int(value) if value.isdigit() else 0


REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status_body(code: int, message: str, reason: str | None = None, details: Json | None = None) -> Json:
    """A metav1.Status failure body, as the apiserver sends it."""
    body: Json = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def default_template(template: Json) -> None:
    """The apiserver's defaulting of a PodTemplateSpec (the fields that show in a GET)."""
    spec = template.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in spec.get("containers") or []:
        image = c.get("image", "")
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})


def default_deployment_spec(spec: Json) -> None:
    """apps/v1 SetDefaults_Deployment."""
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    default_template(spec["template"])


def selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """labels.Parse(selector).Matches(labels): =, ==, !=, in, notin, exists, !exists."""
    if not selector:
        return True
    for req in re.split(r",(?![^(]*\))", selector):
        req = req.strip()
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", req):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (op == "in") != (labels.get(key) in values):
                return False
        elif m := re.fullmatch(r"([\w./-]+)\s*(!=|==|=)\s*([\w.-]*)", req):
            key, op, value = m.groups()
            if (op == "!=") == (labels.get(key) == value):
                return False
        elif req.startswith("!"):
            if req[1:] in labels:
                return False
        elif req not in labels:
            return False
    return True
