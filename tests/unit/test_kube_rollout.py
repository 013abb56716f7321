"""kubectl's rollout-status, fencepost and undo rules, and the kubernetes error translation, on plain data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from providers.errors import PermanentError, TransientError
from providers.targets.kubernetes.errors import RetryingCaller, translate_kube
from providers.targets.kubernetes.rollout import (
    ANNOTATIONS_TO_SKIP,
    capacity_drop,
    deployment_revision,
    equal_ignore_hash,
    no_rollout_history,
    resolve_fenceposts,
    revision_not_found,
    revisions_served,
    rollback_patch,
    rollback_skipped,
    rollout_status,
    scan_order,
    selector_string,
)


def dep(generation: int = 2, observed: int = 2, desired: int = 3, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "api",
            "generation": generation,
            "annotations": {"deployment.kubernetes.io/revision": "4"},
        },
        "spec": {"replicas": desired},
        "status": {"observedGeneration": observed, **status},
    }


TIMED_OUT = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]


@pytest.mark.parametrize(
    ("deployment", "done", "failed", "message"),
    [
        (dep(generation=3, observed=2, conditions=TIMED_OUT), False, False, "spec update to be observed"),
        (
            dep(conditions=TIMED_OUT, updatedReplicas=3, replicas=3, availableReplicas=3),
            False,
            True,
            "progress deadline",
        ),
        (dep(updatedReplicas=1, replicas=4, availableReplicas=3), False, False, "1 out of 3 new replicas"),
        (dep(updatedReplicas=3, replicas=4, availableReplicas=2), False, False, "1 old replicas are pending"),
        (
            dep(updatedReplicas=3, replicas=3, availableReplicas=2),
            False,
            False,
            "2 of 3 updated replicas are available",
        ),
        (dep(updatedReplicas=3, replicas=3, availableReplicas=3), True, False, "successfully rolled out"),
        (dep(desired=0), True, False, "successfully rolled out"),  # omitted (zero) status fields
    ],
)
def test_rollout_status_rules(deployment: dict[str, Any], done: bool, failed: bool, message: str) -> None:
    status = rollout_status(deployment)
    assert (status.done, status.failed) == (done, failed)
    assert message in status.message


def test_rollout_status_pinned_to_a_revision() -> None:
    status = rollout_status(dep(updatedReplicas=3, replicas=3, availableReplicas=3), revision=3)
    assert status.failed and "desired revision (3) is different from the running revision (4)" in status.message


@pytest.mark.parametrize(
    ("surge", "unavailable", "desired", "expected"),
    [
        ("25%", "25%", 4, (1, 1)),
        ("25%", "25%", 1, (1, 0)),  # surge rounds up, unavailable rounds down
        (0, 0, 3, (0, 1)),  # both zero: unavailable becomes 1
        ("0%", "10%", 3, (0, 1)),  # 10% of 3 rounds down to 0, then the fencepost rule
        (1, 0, 10, (1, 0)),
        (None, None, 5, (0, 1)),
    ],
)
def test_resolve_fenceposts(surge: Any, unavailable: Any, desired: int, expected: tuple[int, int]) -> None:
    assert resolve_fenceposts(surge, unavailable, desired) == expected


def test_capacity_drop() -> None:
    def d(strategy: dict[str, Any], replicas: int = 4) -> dict[str, Any]:
        return {"spec": {"replicas": replicas, "strategy": strategy}}

    assert capacity_drop(d({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})) is None
    assert capacity_drop(d({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}))
    assert capacity_drop(d({"type": "RollingUpdate"}, replicas=1)) is None  # defaults 25%/25% of 1
    assert "Recreate" in (capacity_drop(d({"type": "Recreate"})) or "")
    assert capacity_drop(d({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}))


def rs(revision: int, image: str, hash_: str = "abc") -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"api-{hash_}",
            "annotations": {
                "deployment.kubernetes.io/revision": str(revision),
                "deployment.kubernetes.io/desired-replicas": "2",
                "aevon.dev/release-id": f"rel-{revision}",
            },
        },
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "api", "pod-template-hash": hash_}},
                "spec": {"containers": [{"name": "api", "image": image}]},
            }
        },
    }


def test_deployment_revision_picks_like_kubectl() -> None:
    sets = [rs(1, "a:1", "h1"), rs(3, "a:3", "h3"), rs(2, "a:2", "h2")]
    assert deployment_revision(sets, 2) is sets[2]
    assert deployment_revision(sets, 0) is sets[2]  # 0 = the previous revision (second highest)
    assert deployment_revision(sets, 7) is None
    assert deployment_revision(sets[:1], 0) is None  # no rollout history


def created(replica_set: dict[str, Any], at: str) -> dict[str, Any]:
    replica_set["metadata"]["creationTimestamp"] = at
    return replica_set


def test_replica_sets_are_scanned_in_creation_order_with_the_new_one_last() -> None:
    """kubectl GetAllReplicaSets: sorted by creationTimestamp (name breaks ties), the new ReplicaSet appended."""
    old = created(rs(1, "a:1", "h1"), "2026-01-01T00:00:01Z")
    mid = created(rs(2, "a:2", "h2"), "2026-01-01T00:00:02Z")
    new = created(rs(3, "a:3", "h3"), "2026-01-01T00:00:00Z")  # oldest, but its template is the Deployment's
    deployment = {"spec": {"template": new["spec"]["template"]}}
    assert scan_order([mid, new, old], deployment) == [old, mid, new]
    assert scan_order([mid, new, old], None) == [new, old, mid]
    # two ReplicaSets claiming one revision: kubectl returns the first in its order, the older one
    twin_new = created(rs(2, "a:2b", "h4"), "2026-01-01T00:00:09Z")
    assert deployment_revision([twin_new, mid, old], 2, deployment) is mid


def test_malformed_revisions_are_skipped_not_raised() -> None:
    bad = rs(1, "a:1", "h1")
    bad["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "not-a-number"
    bad["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] = "x,2"
    good = rs(3, "a:3", "h3")
    assert deployment_revision([bad, good], 1) is None
    assert deployment_revision([bad, good], 0) is None  # only one numbered revision: no rollout history
    assert revisions_served(bad) == [2]


def test_kubectl_words() -> None:
    """pkg/polymorphichelpers/rollback.go and rollout_status.go: %q quotes the name with double quotes."""
    assert no_rollout_history("api") == 'no rollout history found for deployment "api"'
    assert revision_not_found(7) == "unable to find specified revision 7 in history"
    assert rollback_skipped(2) == "skipped rollback (current template already matches revision 2)"
    done = rollout_status(dep(updatedReplicas=3, replicas=3, availableReplicas=3))
    assert done.message == 'deployment "api" successfully rolled out'
    waiting = rollout_status(dep(updatedReplicas=1, replicas=3))
    assert waiting.message == (
        'Waiting for deployment "api" rollout to finish: 1 out of 3 new replicas have been updated...'
    )
    assert rollout_status(dep(conditions=TIMED_OUT)).message == 'deployment "api" exceeded its progress deadline'


def test_equal_ignore_hash_and_empty_fields() -> None:
    template = rs(1, "a:1")["spec"]["template"]
    other: dict[str, Any] = {
        "metadata": {"labels": {"app": "api"}, "annotations": {}},
        "spec": {"containers": [{"name": "api", "image": "a:1", "env": []}]},
    }
    assert equal_ignore_hash(template, other)
    other["spec"]["containers"][0]["image"] = "a:2"
    assert not equal_ignore_hash(template, other)


def test_rollback_patch_replaces_template_and_annotations() -> None:
    deployment = {
        "metadata": {
            "annotations": {
                "deployment.kubernetes.io/revision": "5",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "aevon.dev/release-id": "rel-5",
            }
        }
    }
    ops = rollback_patch(deployment, rs(2, "a:2"))
    assert [o["path"] for o in ops] == ["/spec/template", "/metadata/annotations"]
    assert "pod-template-hash" not in ops[0]["value"]["metadata"]["labels"]
    annotations = ops[1]["value"]
    assert annotations["deployment.kubernetes.io/revision"] == "5"  # kept from the Deployment
    assert annotations["kubectl.kubernetes.io/last-applied-configuration"] == "{}"
    assert annotations["aevon.dev/release-id"] == "rel-2"  # copied back from the ReplicaSet
    assert "deployment.kubernetes.io/desired-replicas" not in annotations
    assert "deployment.kubernetes.io/desired-replicas" in ANNOTATIONS_TO_SKIP


def test_selector_string() -> None:
    sel = {
        "matchLabels": {"tier": "api", "app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["b", "a"]},
            {"key": "x", "operator": "Exists"},
        ],
    }
    assert selector_string(sel) == "app=web,env in (a,b),tier=api,x"


def api_exception(status: int, body: str, headers: dict[str, str] | None = None) -> ApiException:
    exc = ApiException(status=status, reason="R", body=body)
    exc.headers = headers or {}
    return exc


def test_translate_kube_errors() -> None:
    status_429 = '{"kind":"Status","reason":"TooManyRequests","message":"slow down","details":{"retryAfterSeconds":3}}'
    err = translate_kube(api_exception(429, status_429, {"Retry-After": "2"}), provider="gke", resource="d", op="GET")
    assert isinstance(err, TransientError) and err.retry_after == 2.0 and "429 TooManyRequests" in str(err)
    err = translate_kube(api_exception(429, status_429), provider="gke", resource="d", op="GET")
    assert isinstance(err, TransientError) and err.retry_after == 3.0
    invalid = '{"kind":"Status","reason":"Invalid","message":"spec.template: Required value"}'
    err = translate_kube(api_exception(422, invalid), provider="gke", resource="d", op="PATCH")
    assert isinstance(err, PermanentError) and not isinstance(err, TransientError)
    assert str(err) == "gke d: HTTP 422 Invalid on PATCH: spec.template: Required value"
    err = translate_kube(urllib3.exceptions.ProtocolError("reset"), provider="gke", resource="d", op="GET")
    assert isinstance(err, TransientError)
    assert translate_kube(ValueError("x"), provider="gke", resource="d", op="GET") is None


async def test_retrying_caller_honours_retry_after() -> None:
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    calls: Iterator[ApiException | str] = iter(
        [api_exception(429, "", {"Retry-After": "4"}), api_exception(503, '{"message":"down"}'), "ok"]
    )

    def flaky() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    caller = RetryingCaller("kubernetes", attempts=3, backoff_s=0.01, max_wait_s=10, sleep=sleep)
    assert await caller.call("GET", "d", flaky) == "ok"
    assert len(waits) == 2 and waits[0] >= 4.0 and waits[1] < 1.0
    with pytest.raises(PermanentError):
        await caller.call("GET", "d", lambda: (_ for _ in ()).throw(api_exception(404, '{"message":"nf"}')))
