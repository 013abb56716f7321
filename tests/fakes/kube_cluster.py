"""The fake cluster's state and clock, and the ReplicaSet controller: pods that start and become ready over time.

State advances only when `advance(now)` runs (every API request calls it): it replays, in order, each moment
something would have happened (observation of a new generation, a pod turning ready, a progress deadline), one
Deployment at a time (a Deployment only depends on its own ReplicaSets and pods); one with nothing pending costs
nothing. The Deployment controller proper (kube_controller.py) implements `_sync_deployment`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.fakes.kube_objects import (
    DESIRED_REPLICAS,
    MAX_INT32,
    MAX_REPLICAS,
    DeploymentState,
    Json,
    Pod,
    ReplicaSetState,
    fenceposts,
)


class ClusterState:
    """Deployments, their ReplicaSets and pods, the controller clock, and the ReplicaSet controller."""

    def __init__(
        self,
        *,
        rollout_step_s: float = 0.2,
        observe_delay_s: float = 0.0,
        deadline_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rollout_step_s = rollout_step_s
        self.observe_delay_s = observe_delay_s
        self.deadline_scale = deadline_scale
        self.cannot_start: set[str] = set()
        self.deployments: dict[tuple[str, str], DeploymentState] = {}
        self.replicasets: dict[tuple[str, str], ReplicaSetState] = {}
        self._by_owner: dict[str, list[ReplicaSetState]] = {}
        self._clock = clock
        self.now = clock()
        self._wall0 = datetime.now(UTC)
        self._mono0 = self.now
        self._rv = 1000
        self._ip_net = random.randrange(16, 250)  # 127.<net>.x.y: pod IPs of this fake cluster
        self._ip_next = 0
        self.on_advance: Callable[[], None] | None = None  # called after each advance (the pod network syncs)

    def next_pod_ip(self) -> str:
        """A pod IP no other pod of this cluster has: 127.<net>.<hi>.<lo> (the whole 127/8 is loopback)."""
        self._ip_next += 1
        return f"127.{self._ip_net}.{self._ip_next // 250 % 250}.{self._ip_next % 250 + 1}"

    def next_resource_version(self) -> str:
        self._rv += 1
        return str(self._rv)

    def stamp(self, t: float | None = None) -> str:
        """RFC 3339 (seconds) wall time of controller-clock instant `t`."""
        wall = self._wall0 + timedelta(seconds=(self.now if t is None else t) - self._mono0)
        return wall.strftime("%Y-%m-%dT%H:%M:%SZ")

    def owned(self, dep: Json) -> list[ReplicaSetState]:
        """The ReplicaSets whose controller ownerReference is this Deployment, oldest first."""
        out = self._by_owner.get(dep["metadata"]["uid"], [])
        return sorted(out, key=lambda r: (r.created, r.obj["metadata"]["name"]))

    def add_deployment(self, st: DeploymentState) -> None:
        st.clock = self.now
        st.dirty = True
        meta = st.obj["metadata"]
        self.deployments[(meta["namespace"], meta["name"])] = st

    def _pod_ready_at(self, image_set: set[str], start: float) -> float | None:
        if image_set & self.cannot_start:
            return None
        return start + self.rollout_step_s

    def advance(self, now: float | None = None) -> None:
        """Replay, Deployment by Deployment, every controller event up to `now` in time order (a Deployment only
        depends on its own ReplicaSets and pods), then settle the ones written since their last look."""
        target = self._clock() if now is None else now
        for st in list(self.deployments.values()):
            while True:
                t = self._next_event(st)
                if t is None or t > target:
                    break
                self.now = t
                self._settle(st)
                st.clock, st.dirty = t, False
            if st.dirty:
                self.now = max(st.clock, target)
                self._settle(st)
                st.dirty = False
            st.clock = max(st.clock, target)
        self.now = max(self.now, target)
        if self.on_advance is not None:
            self.on_advance()

    def delete_deployment(self, namespace: str, name: str, propagation: str) -> DeploymentState | None:
        """Remove a Deployment; the garbage collector's part (its ReplicaSets and their pods) happens at once for
        Background and Foreground, while Orphan leaves the ReplicaSets running without an owner."""
        st = self.deployments.pop((namespace, name), None)
        if st is None:
            return None
        for rs in self._by_owner.pop(st.obj["metadata"]["uid"], []):
            if propagation == "Orphan":
                rs.obj["metadata"].pop("ownerReferences", None)
                rs.owner_uid = ""
                continue
            self.replicasets.pop((rs.obj["metadata"]["namespace"], rs.obj["metadata"]["name"]), None)
        return st

    def _next_event(self, st: DeploymentState) -> float | None:
        times: list[float] = []
        status = st.obj.get("status") or {}
        if st.obj["metadata"]["generation"] > status.get("observedGeneration", 0):
            times.append(st.changed_at + self.observe_delay_s)
        deadline = self._deadline_at(st)
        if deadline is not None:
            times.append(deadline + 1e-6)
        for rs in self._by_owner.get(st.obj["metadata"]["uid"], []):
            times += [p.ready_at for p in rs.pods if p.ready_at is not None]
        future = [t for t in times if t > st.clock]
        return min(future) if future else None

    def _deadline_at(self, st: DeploymentState) -> float | None:
        spec = st.obj["spec"]
        seconds = spec.get("progressDeadlineSeconds")
        cond = self._condition(st.obj, "Progressing")
        if seconds is None or seconds == MAX_INT32 or cond is None or st.progress_at is None:
            return None
        if cond["reason"] in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded"):
            return None
        return st.progress_at + float(seconds) * self.deadline_scale

    def _settle(self, st: DeploymentState) -> None:
        """Run the ReplicaSet and Deployment controllers for `st` until nothing changes at this instant."""
        for _ in range(100):
            changed = False
            for rs in self.owned(st.obj):
                changed |= self._sync_replica_set(rs)
            changed |= self._sync_deployment(st)
            if not changed:
                return

    def _sync_replica_set(self, rs: ReplicaSetState) -> bool:
        spec = rs.obj["spec"]
        want = spec["replicas"]
        before = (len(rs.pods), rs.obj.get("status"))
        images = {c["image"] for c in spec["template"]["spec"]["containers"]}
        while len(rs.pods) < want:
            name = f"{rs.obj['metadata']['name']}-{uuid.uuid4().hex[:5]}"
            rs.pods.append(Pod(name, self.now, self._pod_ready_at(images, self.now), self.next_pod_ip()))
        if len(rs.pods) > want:  # controller.ActivePods order: not-ready first, then the youngest
            rs.pods.sort(key=lambda p: (self._ready(p), -p.started))
            del rs.pods[: len(rs.pods) - want]
        ready = sum(1 for p in rs.pods if self._ready(p))
        status: Json = {"replicas": len(rs.pods), "observedGeneration": rs.obj["metadata"]["generation"]}
        if len(rs.pods):
            status["fullyLabeledReplicas"] = len(rs.pods)
        if ready:
            status["readyReplicas"] = ready
            status["availableReplicas"] = ready
        rs.obj["status"] = status
        if (len(rs.pods), rs.obj.get("status")) != before:
            rs.obj["metadata"]["resourceVersion"] = self.next_resource_version()
            return True
        return False

    def _ready(self, pod: Pod) -> bool:
        return pod.ready_at is not None and pod.ready_at <= self.now

    def _scale(self, dep: Json, rs: ReplicaSetState, replicas: int) -> bool:
        if rs.obj["spec"]["replicas"] == replicas:
            return False
        rs.obj["spec"]["replicas"] = replicas
        surge = fenceposts(dep)[0] if dep["spec"]["strategy"]["type"] == "RollingUpdate" else 0
        annotations = rs.obj["metadata"].setdefault("annotations", {})
        annotations[DESIRED_REPLICAS] = str(dep["spec"]["replicas"])
        annotations[MAX_REPLICAS] = str(dep["spec"]["replicas"] + surge)
        rs.obj["metadata"]["generation"] += 1
        rs.obj["metadata"]["resourceVersion"] = self.next_resource_version()
        return True

    @staticmethod
    def _condition(dep: Json, kind: str) -> Json | None:
        for cond in (dep.get("status") or {}).get("conditions") or []:
            if cond["type"] == kind:
                return dict(cond)
        return None

    def _set_condition(self, status: Json, kind: str, state: str, reason: str, message: str) -> bool:
        """deploymentutil.SetDeploymentCondition; True when the condition changed."""
        conds = status.setdefault("conditions", [])
        current = next((c for c in conds if c["type"] == kind), None)
        if current is not None and current["status"] == state and current["reason"] == reason:
            return False
        now = self.stamp()
        cond = {
            "type": kind,
            "status": state,
            "lastUpdateTime": now,
            "lastTransitionTime": current["lastTransitionTime"] if current and current["status"] == state else now,
            "reason": reason,
            "message": message,
        }
        status["conditions"] = [c for c in conds if c["type"] != kind] + [cond]
        return True

    @staticmethod
    def _has_deadline(dep: Json) -> bool:
        seconds = dep["spec"].get("progressDeadlineSeconds")
        return seconds is not None and seconds != MAX_INT32

    def _progress(self, st: DeploymentState, state: str, reason: str, message: str) -> bool:
        status = st.obj.setdefault("status", {})
        if self._set_condition(status, "Progressing", state, reason, message):
            st.progress_at = self.now
            return True
        return False

    def _sync_deployment(self, st: DeploymentState) -> bool:
        raise NotImplementedError
