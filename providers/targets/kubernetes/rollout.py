"""Rollout status, capacity and undo rules of a Deployment, ported from kubectl (plain-dict logic, no I/O)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

# kubectl pkg/util/deployment/deployment.go and k8s.io/api/apps/v1 constants.
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
DEPRECATED_ROLLBACK_TO = "deprecated.deployment.rollback.to"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
RELEASE_ANNOTATION = "aevon.dev/release-id"  # ours: the release a pod template (or canary Deployment) runs

# kubectl rollback.go `annotationsToSkip`: kept from the Deployment, never copied back from the ReplicaSet.
ANNOTATIONS_TO_SKIP = frozenset(
    {
        LAST_APPLIED_ANNOTATION,
        REVISION_ANNOTATION,
        REVISION_HISTORY_ANNOTATION,
        DESIRED_REPLICAS_ANNOTATION,
        MAX_REPLICAS_ANNOTATION,
        DEPRECATED_ROLLBACK_TO,
    }
)


@dataclass(frozen=True)
class RolloutStatus:
    """kubectl's (message, done, error) triple: `failed` is the error case (progress deadline exceeded)."""

    done: bool
    failed: bool
    message: str


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def revision_of(obj: dict[str, Any]) -> int:
    """deploymentutil.Revision: the revision annotation as an int, 0 when absent (ValueError when malformed)."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    return int(value) if value is not None else 0


def revision_or_none(obj: dict[str, Any]) -> int | None:
    """The revision annotation as an int, or None when it is not a number (kubectl skips such ReplicaSets)."""
    try:
        return revision_of(obj)
    except ValueError:
        return None


def quoted(name: str) -> str:
    """Go's %q of a Kubernetes object name (a DNS label: nothing to escape), as kubectl prints it."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def get_condition(status: dict[str, Any], cond_type: str) -> dict[str, Any] | None:
    """deploymentutil.GetDeploymentCondition."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == cond_type:
            return dict(cond)
    return None


def rollout_status(deployment: dict[str, Any], revision: int = 0) -> RolloutStatus:
    """DeploymentStatusViewer.Status from kubectl pkg/polymorphichelpers/rollout_status.go, rule for rule.

    `revision` > 0 pins the rollout (kubectl `--revision`): another running revision is an error (failed).
    """
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = quoted(str(meta.get("name", "")))
    if revision > 0:
        running = revision_of(deployment)
        if revision != running:
            return RolloutStatus(
                False, True, f"desired revision ({revision}) is different from the running revision ({running})"
            )
    if _int(meta.get("generation")) <= _int(status.get("observedGeneration")):
        cond = get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT_REASON:
            return RolloutStatus(False, True, f"deployment {name} exceeded its progress deadline")
        replicas = spec.get("replicas")
        updated = _int(status.get("updatedReplicas"))
        if replicas is not None and updated < int(replicas):
            return RolloutStatus(
                False,
                False,
                f"Waiting for deployment {name} rollout to finish: "
                f"{updated} out of {replicas} new replicas have been updated...",
            )
        total = _int(status.get("replicas"))
        if total > updated:
            return RolloutStatus(
                False,
                False,
                f"Waiting for deployment {name} rollout to finish: "
                f"{total - updated} old replicas are pending termination...",
            )
        available = _int(status.get("availableReplicas"))
        if available < updated:
            return RolloutStatus(
                False,
                False,
                f"Waiting for deployment {name} rollout to finish: "
                f"{available} of {updated} updated replicas are available...",
            )
        return RolloutStatus(True, False, f"deployment {name} successfully rolled out")
    return RolloutStatus(False, False, "Waiting for deployment spec update to be observed...")


def scaled_value(value: int | str | None, total: int, round_up: bool, default: int | str) -> int:
    """intstr.GetScaledValueFromIntOrPercent(ValueOrDefault(value, default), total, roundUp)."""
    v = default if value is None else value
    if isinstance(v, int):
        return v
    if not v.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {v!r}")
    pct = int(v[:-1])
    exact = pct * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None, desired: int) -> tuple[int, int]:
    """deploymentutil.ResolveFenceposts: (surge, unavailable); both zero resolves unavailable to 1."""
    surge = scaled_value(max_surge, desired, True, 0)
    unavailable = scaled_value(max_unavailable, desired, False, 0)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def capacity_drop(deployment: dict[str, Any]) -> str | None:
    """Why a rollout of this Deployment can take serving capacity below `spec.replicas`, or None when it cannot.

    Recreate always does; RollingUpdate does when maxUnavailable resolves above 0 (API defaults 25%/25%).
    """
    spec = deployment.get("spec") or {}
    strategy = spec.get("strategy") or {}
    kind = strategy.get("type") or "RollingUpdate"
    if kind == "Recreate":
        return "strategy Recreate stops every old pod before starting new ones"
    rolling = strategy.get("rollingUpdate") or {}
    desired = _int(spec.get("replicas", 1))
    raw_unavailable = rolling.get("maxUnavailable", "25%")
    _surge, unavailable = resolve_fenceposts(rolling.get("maxSurge", "25%"), raw_unavailable, desired)
    if unavailable > 0:
        return (
            f"strategy RollingUpdate maxUnavailable={raw_unavailable} resolves to {unavailable} of {desired} "
            "replicas (zero downtime needs maxUnavailable: 0 and maxSurge >= 1)"
        )
    return None


def _prune(value: Any) -> Any:
    """Drop None, empty maps and empty lists, recursively: apiequality.Semantic treats unset and empty alike."""
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def strip_hash(template: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a pod template without the pod-template-hash label."""
    out = copy.deepcopy(template)
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return out


def equal_ignore_hash(template1: dict[str, Any], template2: dict[str, Any]) -> bool:
    """kubectl equalIgnoreHash: pod templates equal once the pod-template-hash label is removed."""
    return bool(_prune(strip_hash(template1)) == _prune(strip_hash(template2)))


def is_controlled_by(rs: dict[str, Any], deployment: dict[str, Any]) -> bool:
    """metav1.IsControlledBy: the RS's controller ownerReference has the Deployment's uid."""
    uid = (deployment.get("metadata") or {}).get("uid")
    for ref in (rs.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") == uid:
            return True
    return False


def selector_string(selector: dict[str, Any]) -> str:
    """metav1.LabelSelectorAsSelector(...).String() for matchLabels and matchExpressions."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], sorted(expr.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ValueError(f"{op!r} is not a valid label selector operator")
    return ",".join(sorted(parts))


def revisions_served(rs: dict[str, Any]) -> list[int]:
    """Every revision this ReplicaSet has served: its revision plus its revision-history annotation.

    Entries that are not numbers are left out (no revision at all when the revision annotation is malformed).
    """
    annotations = (rs.get("metadata") or {}).get("annotations") or {}
    own = revision_or_none(rs)
    out = [] if own is None else [own]
    history = annotations.get(REVISION_HISTORY_ANNOTATION) or ""
    out += [int(r) for r in history.split(",") if r.strip().isdigit()]
    return out


def scan_order(replica_sets: list[dict[str, Any]], deployment: dict[str, Any] | None) -> list[dict[str, Any]]:
    """kubectl GetAllReplicaSets' order: by creation time (name breaks ties), then the new ReplicaSet last.

    findNewReplicaSet sorts the list by creationTimestamp and takes the oldest one whose template equals the
    Deployment's; deploymentRevision then scans `allOldRSs + [newRS]` (pkg/util/deployment/deployment.go).
    """
    ordered = sorted(replica_sets, key=lambda r: (str((r.get("metadata") or {}).get("creationTimestamp") or ""),
                                                  str((r.get("metadata") or {}).get("name") or "")))
    if deployment is None:
        return ordered
    template = (deployment.get("spec") or {}).get("template") or {}
    new = next((r for r in ordered if equal_ignore_hash((r.get("spec") or {}).get("template") or {}, template)), None)
    if new is None:
        return ordered
    return [r for r in ordered if r is not new] + [new]


def deployment_revision(
    replica_sets: list[dict[str, Any]], to_revision: int, deployment: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """kubectl rollback.go deploymentRevision: the RS of `to_revision`, or the previous one when it is 0.

    ReplicaSets are scanned in kubectl's order (`scan_order`); one whose revision annotation is not a number is
    skipped. Returns None when kubectl fails: see `revision_not_found` and `no_rollout_history`.
    """
    latest: dict[str, Any] | None = None
    latest_rev = -1
    previous: dict[str, Any] | None = None
    previous_rev = -1
    for rs in scan_order(replica_sets, deployment):
        v = revision_or_none(rs)
        if v is None:
            continue
        if to_revision == 0:
            if latest_rev < v:
                previous_rev, previous = latest_rev, latest
                latest_rev, latest = v, rs
            elif previous_rev < v:
                previous_rev, previous = v, rs
        elif to_revision == v:
            return rs
    if to_revision > 0:
        return None
    return previous


def revision_not_found(to_revision: int) -> str:
    """kubectl rollback.go revisionNotFoundErr."""
    return f"unable to find specified revision {to_revision} in history"


def no_rollout_history(name: str) -> str:
    """kubectl deploymentRevision's error when there is no previous revision."""
    return f"no rollout history found for deployment {quoted(name)}"


PAUSED_ROLLBACK = "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again"


def rollback_skipped(to_revision: int) -> str:
    """kubectl's answer when the revision's template is the current one (`to_revision` as requested)."""
    return f"skipped rollback (current template already matches revision {to_revision})"


def rollback_annotations(deployment: dict[str, Any], rs: dict[str, Any]) -> dict[str, str]:
    """kubectl rollback.go: the Deployment's skipped annotations plus the RS's other annotations."""
    current = (deployment.get("metadata") or {}).get("annotations") or {}
    out = {k: v for k, v in current.items() if k in ANNOTATIONS_TO_SKIP}
    for k, v in ((rs.get("metadata") or {}).get("annotations") or {}).items():
        if k not in ANNOTATIONS_TO_SKIP:
            out[k] = v
    return out


def rollback_patch(deployment: dict[str, Any], rs: dict[str, Any]) -> list[dict[str, Any]]:
    """kubectl getDeploymentPatch: a JSON patch replacing /spec/template (hash label removed) and the annotations."""
    template = strip_hash((rs.get("spec") or {}).get("template") or {})
    return [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": rollback_annotations(deployment, rs)},
    ]
