"""The fake kube-apiserver's own semantics: PATCH flavours, label selectors and the controller's revisions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.kube_objects import selector_matches
from tests.fakes.kube_patch import PatchError, json_patch, merge_patch, strategic_merge
from tests.fakes.kubernetes import FakeKubeApiServer


def pod(*containers: dict[str, str]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": list(containers)}}}}


def test_strategic_merge_merges_containers_by_name() -> None:
    original = pod({"name": "api", "image": "a:1"}, {"name": "proxy", "image": "p:1"})
    patched = strategic_merge(original, pod({"name": "api", "image": "a:2"}, {"name": "new", "image": "n:1"}))
    assert patched["spec"]["template"]["spec"]["containers"] == [
        {"name": "api", "image": "a:2"},
        {"name": "proxy", "image": "p:1"},
        {"name": "new", "image": "n:1"},
    ]
    deleted = strategic_merge(original, pod({"name": "proxy", "$patch": "delete"}))
    assert [c["name"] for c in deleted["spec"]["template"]["spec"]["containers"]] == ["api"]
    assert original["spec"]["template"]["spec"]["containers"][1]["image"] == "p:1"


def test_strategic_merge_nulls_replace_and_plain_lists() -> None:
    original = {"metadata": {"annotations": {"a": "1", "b": "2"}}, "spec": {"args": ["x", "y"]}}
    out = strategic_merge(original, {"metadata": {"annotations": {"a": None, "c": "3"}}, "spec": {"args": ["z"]}})
    assert out == {"metadata": {"annotations": {"b": "2", "c": "3"}}, "spec": {"args": ["z"]}}
    replaced = strategic_merge(original, {"metadata": {"annotations": {"$patch": "replace", "only": "1"}}})
    assert replaced["metadata"]["annotations"] == {"only": "1"}


def test_merge_patch_and_json_patch() -> None:
    assert merge_patch({"a": {"b": 1, "c": [1]}}, {"a": {"b": None, "c": [2]}}) == {"a": {"c": [2]}}
    doc = {"spec": {"template": {"x": 1}}, "metadata": {"annotations": {"k": "v"}}}
    out = json_patch(
        doc,
        [
            {"op": "replace", "path": "/spec/template", "value": {"y": 2}},
            {"op": "add", "path": "/metadata/annotations/a~1b", "value": "1"},
            {"op": "test", "path": "/spec/template/y", "value": 2},
        ],
    )
    assert out == {"spec": {"template": {"y": 2}}, "metadata": {"annotations": {"k": "v", "a/b": "1"}}}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "replace", "path": "/metadata/labels", "value": {}}])


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", True),
        ("app==web,tier=api", True),
        ("app!=web", False),
        ("tier in (api,db)", True),
        ("tier notin (api)", False),
        ("app", True),
        ("!app", False),
        ("app=web,missing", False),
    ],
)
def test_selector_matches(selector: str, expected: bool) -> None:
    assert selector_matches(selector, {"app": "web", "tier": "api"}) is expected


@pytest.fixture
def kube() -> Iterator[FakeKubeApiServer]:
    fake = FakeKubeApiServer(tokens=["t"], tls=False, rollout_step_s=0.0)
    fake.start()
    yield fake
    fake.stop()


def _set_image(kube: FakeKubeApiServer, image: str) -> None:
    dep = kube.deployment("web")
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = image
    kube.set_spec("web", template=dep["spec"]["template"])


def test_controller_revisions_and_reuse(kube: FakeKubeApiServer) -> None:
    kube.create_deployment("web", "img:1", annotations={"note": "first"})
    _set_image(kube, "img:2")
    kube.wait_settled("web")
    _set_image(kube, "img:1")  # back to the first template: its ReplicaSet is reused with the next revision
    dep = kube.wait_settled("web")
    sets = kube.replica_sets("web")
    assert len(sets) == 2
    first, second = sets
    assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert first["metadata"]["annotations"]["note"] == "first"  # Deployment annotations are copied
    assert second["spec"]["replicas"] == 0 and first["spec"]["replicas"] == 2
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert dep["metadata"]["generation"] == 3 and dep["status"]["observedGeneration"] == 3
    hashes = {rs["metadata"]["labels"]["pod-template-hash"] for rs in sets}
    assert len(hashes) == 2 and all(rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment" for rs in sets)


def test_controller_keeps_revision_history_limit(kube: FakeKubeApiServer) -> None:
    kube.create_deployment("web", "img:0")
    kube.set_spec("web", revisionHistoryLimit=2)
    for n in range(1, 6):
        _set_image(kube, f"img:{n}")
        kube.wait_settled("web")
    revisions = sorted(
        int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for rs in kube.replica_sets("web")
    )
    assert revisions == [4, 5, 6]  # the current one + revisionHistoryLimit old ones
