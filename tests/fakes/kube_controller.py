"""A small Deployment controller for the fake kube-apiserver, on plain API dicts.

Follows kubernetes pkg/controller/deployment (sync.go getNewReplicaSet/calculateStatus/syncRolloutStatus/
cleanupDeployment, rolling.go, recreate.go, util/deployment_util.go): a template change creates (or reuses) the
ReplicaSet of that template with the next `deployment.kubernetes.io/revision` (a reused one keeps its old revisions
in `revision-history`, Deployment annotations are copied onto it); the rolling update honours maxSurge and
maxUnavailable; Recreate scales the old pods away first; the Progressing condition turns into
ProgressDeadlineExceeded once no progress was made for `progressDeadlineSeconds * deadline_scale`. Time and pods
live in kube_cluster.py.
"""

from __future__ import annotations

import copy
import json
import uuid

from tests.fakes.kube_cluster import ClusterState
from tests.fakes.kube_objects import (
    DESIRED_REPLICAS,
    HASH_LABEL,
    MAX_REPLICAS,
    MIN_AVAILABLE,
    MIN_UNAVAILABLE,
    REVISION,
    REVISION_HISTORY,
    SKIP_COPY,
    DeploymentState,
    Json,
    ReplicaSetState,
    equal_ignore_hash,
    fenceposts,
    pod_template_hash,
    revision,
)


class DeploymentController(ClusterState):
    """The Deployment controller: one `_sync_deployment` per Deployment and instant, until nothing changes."""

    def _new_replica_set(self, st: DeploymentState, owned: list[ReplicaSetState]) -> tuple[ReplicaSetState, bool]:
        """sync.go getNewReplicaSet: find the RS of the current template (oldest first) or create it."""
        dep = st.obj
        old = [rs for rs in owned if not equal_ignore_hash(rs.obj["spec"]["template"], dep["spec"]["template"])]
        new_revision = max((revision(rs.obj) for rs in old), default=0) + 1
        found = next((rs for rs in owned if rs not in old), None)
        changed = False
        if found is not None:
            annotations = found.obj["metadata"].setdefault("annotations", {})
            for k, v in (dep["metadata"].get("annotations") or {}).items():
                if k not in SKIP_COPY and annotations.get(k) != v:
                    annotations[k] = v
                    changed = True
            old_rev = annotations.get(REVISION)
            if old_rev is None or int(old_rev) < new_revision:
                annotations[REVISION] = str(new_revision)
                changed = True
                if old_rev is not None:
                    history = annotations.get(REVISION_HISTORY)
                    annotations[REVISION_HISTORY] = f"{history},{old_rev}" if history else old_rev
            if changed:
                found.obj["metadata"]["resourceVersion"] = self.next_resource_version()
            if self._condition(dep, "Progressing") is None and self._has_deadline(dep):
                message = f'Found new replica set "{found.obj["metadata"]["name"]}"'
                changed |= self._progress(st, "True", "FoundNewReplicaSet", message)
            return found, changed
        collision = (dep.get("status") or {}).get("collisionCount", 0)
        h = pod_template_hash(dep["spec"]["template"], collision)
        template = copy.deepcopy(dep["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(dep["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        name = f"{dep['metadata']['name']}-{h}"
        annotations = {k: v for k, v in (dep["metadata"].get("annotations") or {}).items() if k not in SKIP_COPY}
        annotations[REVISION] = str(new_revision)
        surge = fenceposts(dep)[0] if dep["spec"]["strategy"]["type"] == "RollingUpdate" else 0
        annotations[DESIRED_REPLICAS] = str(dep["spec"]["replicas"])
        annotations[MAX_REPLICAS] = str(dep["spec"]["replicas"] + surge)
        obj: Json = {
            "metadata": {
                "name": name,
                "namespace": dep["metadata"]["namespace"],
                "uid": str(uuid.uuid4()),
                "resourceVersion": self.next_resource_version(),
                "generation": 1,
                "creationTimestamp": self.stamp(),
                "labels": dict(template["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": dep["metadata"]["name"],
                        "uid": dep["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }
        rs = ReplicaSetState(obj=obj, created=self.now, owner_uid=dep["metadata"]["uid"])
        self.replicasets[(dep["metadata"]["namespace"], name)] = rs
        self._by_owner.setdefault(rs.owner_uid, []).append(rs)
        if self._has_deadline(dep):
            self._progress(st, "True", "NewReplicaSetCreated", f'Created new replica set "{name}"')
        return rs, True

    def _sync_deployment(self, st: DeploymentState) -> bool:
        dep = st.obj
        status = dep.setdefault("status", {})
        if dep["metadata"]["generation"] > status.get("observedGeneration", 0):
            if self.now < st.changed_at + self.observe_delay_s:
                return False
        before = json.dumps(dep, sort_keys=True)
        owned = self.owned(dep)
        if dep["spec"].get("paused"):
            new_rs = next(
                (rs for rs in owned if equal_ignore_hash(rs.obj["spec"]["template"], dep["spec"]["template"])), None
            )
            self._sync_status(st, owned, new_rs)
            return json.dumps(dep, sort_keys=True) != before
        new_rs, _ = self._new_replica_set(st, owned)
        owned = self.owned(dep)
        annotations = dep["metadata"].setdefault("annotations", {})
        annotations[REVISION] = new_rs.obj["metadata"]["annotations"][REVISION]
        old = [rs for rs in owned if rs is not new_rs]
        if dep["spec"]["strategy"]["type"] == "Recreate":
            self._recreate(dep, new_rs, old)
        else:
            self._rolling(dep, new_rs, old)
        self._sync_status(st, owned, new_rs)
        if self._complete(dep, dep["status"]):
            self._cleanup(dep, old)
        changed = json.dumps(dep, sort_keys=True) != before
        if changed:
            dep["metadata"]["resourceVersion"] = self.next_resource_version()
        return changed

    def _rolling(self, dep: Json, new_rs: ReplicaSetState, old: list[ReplicaSetState]) -> bool:
        """rolling.go rolloutRolling: reconcileNewReplicaSet, else reconcileOldReplicaSets."""
        desired = dep["spec"]["replicas"]
        surge, unavailable = fenceposts(dep)
        every = [*old, new_rs]
        new_count = new_rs.obj["spec"]["replicas"]
        if new_count > desired:
            return self._scale(dep, new_rs, desired)
        if new_count < desired:
            current = sum(rs.obj["spec"]["replicas"] for rs in every)
            if current < desired + surge:
                up = min(desired + surge - current, desired - new_count)
                if self._scale(dep, new_rs, new_count + up):
                    return True
        active_old = [rs for rs in old if rs.obj["spec"]["replicas"] > 0]
        if not active_old:
            return False
        all_pods = sum(rs.obj["spec"]["replicas"] for rs in every)
        min_available = desired - min(unavailable, desired)
        new_unavailable = new_rs.obj["spec"]["replicas"] - new_rs.obj["status"].get("availableReplicas", 0)
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        scaled_down = 0
        for rs in active_old:  # cleanupUnhealthyReplicas, oldest first
            if scaled_down >= max_scaled_down:
                break
            healthy = rs.obj["status"].get("availableReplicas", 0)
            count = rs.obj["spec"]["replicas"]
            if count == healthy:
                continue
            down = min(max_scaled_down - scaled_down, count - healthy)
            self._scale(dep, rs, count - down)
            scaled_down += down
        available = sum(rs.obj["status"].get("availableReplicas", 0) for rs in every)
        if available > min_available:  # scaleDownOldReplicaSetsForRollingUpdate
            total = available - min_available
            done = 0
            for rs in active_old:
                count = rs.obj["spec"]["replicas"]
                if done >= total or count == 0:
                    continue
                down = min(count, total - done)
                self._scale(dep, rs, count - down)
                done += down
            scaled_down += done
        return scaled_down > 0

    def _recreate(self, dep: Json, new_rs: ReplicaSetState, old: list[ReplicaSetState]) -> bool:
        """recreate.go: scale every old RS to 0, wait until their pods are gone, then scale the new one up."""
        scaled = False
        for rs in old:
            scaled |= self._scale(dep, rs, 0)
        if scaled or any(rs.obj["status"].get("replicas", 0) for rs in old):
            return scaled
        return self._scale(dep, new_rs, dep["spec"]["replicas"])

    def _sync_status(self, st: DeploymentState, owned: list[ReplicaSetState], new_rs: ReplicaSetState | None) -> None:
        """sync.go calculateStatus + syncRolloutStatus."""
        dep = st.obj
        old_status = copy.deepcopy(dep.get("status") or {})
        every = [rs.obj for rs in owned]
        available = sum(rs["status"].get("availableReplicas", 0) for rs in every)
        total = sum(rs["spec"]["replicas"] for rs in every)
        new: Json = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": sum(rs["status"].get("replicas", 0) for rs in every),
            "updatedReplicas": new_rs.obj["status"].get("replicas", 0) if new_rs else 0,
            "readyReplicas": sum(rs["status"].get("readyReplicas", 0) for rs in every),
            "availableReplicas": available,
            "unavailableReplicas": max(total - available, 0),
            "conditions": copy.deepcopy(old_status.get("conditions") or []),
        }
        if "collisionCount" in old_status:
            new["collisionCount"] = old_status["collisionCount"]
        desired = dep["spec"]["replicas"]
        max_unavailable = 0
        if dep["spec"]["strategy"]["type"] == "RollingUpdate" and desired:
            max_unavailable = min(fenceposts(dep)[1], desired)
        if available >= desired - max_unavailable:
            self._set_condition(new, "Available", "True", "MinimumReplicasAvailable", MIN_AVAILABLE)
        else:
            self._set_condition(new, "Available", "False", "MinimumReplicasUnavailable", MIN_UNAVAILABLE)
        cond = next((c for c in new["conditions"] if c["type"] == "Progressing"), None)
        complete_already = new["replicas"] == new["updatedReplicas"] and (
            cond is not None and cond["reason"] == "NewReplicaSetAvailable"
        )
        rs_name = new_rs.obj["metadata"]["name"] if new_rs else ""
        if self._has_deadline(dep) and not complete_already:
            if self._complete(dep, new):
                message = f'ReplicaSet "{rs_name}" has successfully progressed.'
                if self._set_condition(new, "Progressing", "True", "NewReplicaSetAvailable", message):
                    st.progress_at = self.now
            elif self._progressing(old_status, new):
                new["conditions"] = [c for c in new["conditions"] if c["type"] != "Progressing"]
                now = self.stamp()
                transition = cond["lastTransitionTime"] if cond and cond["status"] == "True" else now
                new["conditions"].append(
                    {
                        "type": "Progressing",
                        "status": "True",
                        "lastUpdateTime": now,
                        "lastTransitionTime": transition,
                        "reason": "ReplicaSetUpdated",
                        "message": f'ReplicaSet "{rs_name}" is progressing.',
                    }
                )
                st.progress_at = self.now
            elif cond is not None and self._timed_out(st, cond):
                message = f'ReplicaSet "{rs_name}" has timed out progressing.'
                self._set_condition(new, "Progressing", "False", "ProgressDeadlineExceeded", message)
        # DeploymentStatus int fields are omitempty.
        dep["status"] = {k: v for k, v in new.items() if v not in (0, [])}

    @staticmethod
    def _complete(dep: Json, status: Json) -> bool:
        desired = dep["spec"]["replicas"]
        return bool(
            status.get("updatedReplicas", 0) == desired
            and status.get("replicas", 0) == desired
            and status.get("availableReplicas", 0) == desired
            and status.get("observedGeneration", 0) >= dep["metadata"]["generation"]
        )

    @staticmethod
    def _progressing(old: Json, new: Json) -> bool:
        old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
        new_old = new["replicas"] - new["updatedReplicas"]
        return bool(
            new["updatedReplicas"] > old.get("updatedReplicas", 0)
            or new_old < old_old
            or new["readyReplicas"] > old.get("readyReplicas", 0)
            or new["availableReplicas"] > old.get("availableReplicas", 0)
        )

    def _timed_out(self, st: DeploymentState, cond: Json) -> bool:
        if cond["reason"] == "NewReplicaSetAvailable":
            return False
        if cond["reason"] == "ProgressDeadlineExceeded":
            return True
        deadline = self._deadline_at(st)
        return deadline is not None and self.now > deadline

    def _cleanup(self, dep: Json, old: list[ReplicaSetState]) -> None:
        """sync.go cleanupDeployment: delete the oldest idle ReplicaSets beyond revisionHistoryLimit."""
        limit = dep["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        idle = sorted(
            (rs for rs in old if rs.obj["spec"]["replicas"] == 0 and rs.obj["status"].get("replicas", 0) == 0),
            key=lambda rs: revision(rs.obj),
        )
        for rs in idle[: max(len(idle) - limit, 0)]:
            self.replicasets.pop((rs.obj["metadata"]["namespace"], rs.obj["metadata"]["name"]), None)
            self._by_owner[rs.owner_uid].remove(rs)
