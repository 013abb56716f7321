"""The kubernetes/gke canary against the fake apiserver: a `<name>-canary` Deployment behind the same Service."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.errors import PermanentError
from providers.models import DeployStatus
from providers.targets.base import CanaryTarget, supports_canary
from providers.targets.kubernetes.canary import canary_replicas, effective_share
from tests.contract.harness import make_release
from tests.contract.harness_gke import GkeHarness
from tests.contract.harness_kubernetes import NAMESPACE, REPOSITORY, KubeHarnessBase, KubernetesHarness
from tests.fakes.kubernetes import FakeKubeApiServer

SERVICE = "api"
CANARY = "api-canary"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=[KubernetesHarness, GkeHarness], ids=["kubernetes", "gke"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KubeHarnessBase]:
    h: KubeHarnessBase = request.param()
    await h.start(tmp_path)
    h.canary_setup(SERVICE, port=free_port())
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def target(harness: KubeHarnessBase) -> AsyncIterator[CanaryTarget]:
    t = harness.make_target(SERVICE)
    assert supports_canary(t) and isinstance(t, CanaryTarget)
    try:
        yield t
    finally:
        await t.aclose()


def fake(h: KubeHarnessBase) -> FakeKubeApiServer:
    assert h.kube is not None
    return h.kube


def endpoint_tracks(h: KubeHarnessBase) -> Counter[str]:
    """track label -> ready pods among the Service's endpoints."""
    return Counter(p.labels.get("track", "") for p in fake(h).ready_endpoints(SERVICE, NAMESPACE))


async def served(url: str, n: int) -> Counter[str]:
    """The version (image tag) answering each of `n` new connections to `url`."""
    seen: Counter[str] = Counter()
    async with httpx.AsyncClient(trust_env=False, timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        for _ in range(n):
            resp = await c.get(url + "/", headers={"Connection": "close"})
            seen[str(resp.json()["version"])] += 1
    return seen


def stable_state(h: KubeHarnessBase) -> tuple[int, str]:
    dep = fake(h).deployment(SERVICE, NAMESPACE)
    return dep["metadata"]["generation"], dep["spec"]["template"]["spec"]["containers"][0]["image"]


def test_replicas_and_effective_share() -> None:
    assert [canary_replicas(w, 4) for w in (1, 10, 25, 50, 99)] == [1, 1, 1, 2, 4]
    assert canary_replicas(10, 0) == 1
    assert effective_share(1, 4) == pytest.approx(0.2) and effective_share(2, 4) == pytest.approx(1 / 3)


async def test_steps_of_10_then_50_percent_put_canary_pods_behind_the_same_service(
    harness: KubeHarnessBase, target: CanaryTarget
) -> None:
    before = stable_state(harness)
    new = make_release("staging", harness.sha(1))
    result = await target.set_canary(new, 10, 30)
    assert result.status == DeployStatus.READY, result.message
    assert "1 pod(s) beside 4 stable" in result.message and "20%" in result.message
    dep = fake(harness).deployment(CANARY, NAMESPACE)
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["selector"]["matchLabels"] == {"app": SERVICE, "track": "canary"}
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REPOSITORY}:{new.sha}"
    assert endpoint_tracks(harness) == Counter({"stable": 4, "canary": 1})
    assert result.handle.url is not None  # a ready canary pod's own address: only the canary answers there
    assert await served(result.handle.url, 5) == Counter({new.sha: 5})

    result = await target.set_canary(new, 50, 30)
    assert result.status == DeployStatus.READY, result.message
    assert fake(harness).deployment(CANARY, NAMESPACE)["spec"]["replicas"] == 2
    assert result.handle.detail["effective_share"] == pytest.approx(1 / 3, abs=1e-3)
    assert endpoint_tracks(harness) == Counter({"stable": 4, "canary": 2})
    url = harness.overrides["url"]
    assert await served(url, 60) == Counter({harness.sha(0): 40, new.sha: 20})  # per pod: 2 of 6 endpoints
    assert stable_state(harness) == before  # the stable Deployment was never changed
    assert [w for w in fake(harness).writes if w[0] == "POST"] == [("POST", NAMESPACE, CANARY)]


async def test_abort_deletes_the_canary_and_stable_keeps_serving(
    harness: KubeHarnessBase, target: CanaryTarget
) -> None:
    before = stable_state(harness)
    stable = await target.current()
    assert stable is not None and stable.url == harness.overrides["url"]
    assert (await target.set_canary(make_release("staging", harness.sha(1)), 10, 30)).status == DeployStatus.READY
    await target.abort_canary(stable)
    assert not fake(harness).has_deployment(CANARY, NAMESPACE)
    assert endpoint_tracks(harness) == Counter({"stable": 4})
    assert stable_state(harness) == before
    assert await served(harness.overrides["url"], 20) == Counter({harness.sha(0): 20})
    deletes = [w for w in fake(harness).writes if w[0] == "DELETE"]
    await target.abort_canary(stable)  # again, and with none at all: no-ops
    assert [w for w in fake(harness).writes if w[0] == "DELETE"] == deletes == [("DELETE", NAMESPACE, CANARY)]
    now = await target.current()
    assert now is not None and now.version == harness.sha(0)


async def test_promote_rolls_the_main_deployment_then_removes_the_canary(
    harness: KubeHarnessBase, target: CanaryTarget
) -> None:
    new = make_release("staging", harness.sha(2))
    assert (await target.set_canary(new, 10, 30)).status == DeployStatus.READY
    result = await target.promote_canary(new, 30)
    assert result.status == DeployStatus.READY, result.message
    assert "canary api-canary deleted" in result.message
    assert not fake(harness).has_deployment(CANARY, NAMESPACE)
    dep = fake(harness).wait_settled(SERVICE, NAMESPACE)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REPOSITORY}:{new.sha}"
    assert dep["spec"]["selector"] == {"matchLabels": {"app": SERVICE}}  # immutable: untouched
    now = await target.current()
    assert now is not None and now.version == new.sha
    assert await served(harness.overrides["url"], 8) == Counter({new.sha: 8})


async def test_set_canary_twice_is_one_canary(harness: KubeHarnessBase, target: CanaryTarget) -> None:
    new = make_release("staging", harness.sha(3))
    first = await target.set_canary(new, 10, 30)
    again = await target.set_canary(new, 10, 30)
    assert first.status == again.status == DeployStatus.READY
    assert [w for w in fake(harness).writes if w[0] == "POST"] == [("POST", NAMESPACE, CANARY)]
    assert fake(harness).deployment(CANARY, NAMESPACE)["spec"]["replicas"] == 1
    assert endpoint_tracks(harness) == Counter({"stable": 4, "canary": 1})


async def test_a_canary_left_by_another_release_is_taken_over(harness: KubeHarnessBase, target: CanaryTarget) -> None:
    assert (await target.set_canary(make_release("staging", harness.sha(4)), 50, 30)).status == DeployStatus.READY
    new = make_release("staging", harness.sha(5))
    result = await target.set_canary(new, 10, 30)  # POST answers 409 AlreadyExists: patched to this release
    assert result.status == DeployStatus.READY, result.message
    dep = fake(harness).deployment(CANARY, NAMESPACE)
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REPOSITORY}:{new.sha}"
    assert result.handle.url is not None and await served(result.handle.url, 3) == Counter({new.sha: 3})


async def test_a_canary_that_cannot_start_fails_its_step(harness: KubeHarnessBase, target: CanaryTarget) -> None:
    before = stable_state(harness)
    result = await target.set_canary(make_release("staging", harness.failing_sha()), 10, 30)
    assert result.status == DeployStatus.FAILED and "exceeded its progress deadline" in result.message
    await target.abort_canary(await target.current())
    assert not fake(harness).has_deployment(CANARY, NAMESPACE) and stable_state(harness) == before


async def test_a_service_that_would_not_route_to_the_canary_is_refused_before_anything(
    harness: KubeHarnessBase,
) -> None:
    fake(harness).create_service("api-stable", {"app": SERVICE, "track": "stable"}, target_port=80,
                                 namespace=NAMESPACE)
    harness.overrides["service"] = "api-stable"
    t = harness.make_target(SERVICE)
    assert isinstance(t, CanaryTarget)
    try:
        with pytest.raises(PermanentError, match="selects track=stable"):
            await t.set_canary(make_release("staging", harness.sha(1)), 10, 30)
    finally:
        await t.aclose()
    assert fake(harness).writes == []


def _apps(h: KubeHarnessBase) -> Any:
    from kubernetes import client as k8s

    cfg = k8s.Configuration()
    cfg.host, cfg.ca_cert_data = fake(h).url, fake(h).ca_pem
    cfg.api_key, cfg.api_key_prefix = {"BearerToken": h.secret}, {"BearerToken": "Bearer"}
    return k8s.AppsV1Api(k8s.ApiClient(cfg))


async def test_the_fake_apiserver_answers_create_and_delete_as_documented(harness: KubeHarnessBase) -> None:
    from kubernetes.client.exceptions import ApiException

    apps = _apps(harness)
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "y"}},
                                  "spec": {"containers": [{"name": "x", "image": "x:1"}]}}}}
    with pytest.raises(ApiException) as bad:
        apps.create_namespaced_deployment(NAMESPACE, body)
    assert bad.value.status == 422 and "`selector` does not match template `labels`" in bad.value.body
    body["spec"]["template"]["metadata"]["labels"] = {"app": "x"}
    created = apps.create_namespaced_deployment(NAMESPACE, body)
    assert created.metadata.uid and created.spec.replicas == 1
    with pytest.raises(ApiException) as taken:
        apps.create_namespaced_deployment(NAMESPACE, body)
    assert taken.value.status == 409 and '"reason":"AlreadyExists"' in taken.value.body.replace(" ", "")
    gone = apps.api_client.sanitize_for_serialization(
        apps.delete_namespaced_deployment("x", NAMESPACE, propagation_policy="Background"))
    assert gone["kind"] == "Status" and gone["status"] == "Success"
    assert gone["details"] == {"name": "x", "group": "apps", "kind": "deployments", "uid": created.metadata.uid}
    with pytest.raises(ApiException) as missing:
        apps.delete_namespaced_deployment("x", NAMESPACE)
    assert missing.value.status == 404 and '"reason":"NotFound"' in missing.value.body.replace(" ", "")
    with pytest.raises(ApiException) as policy:
        apps.delete_namespaced_deployment(SERVICE, NAMESPACE, propagation_policy="Sometimes")
    assert policy.value.status == 422
    apps.api_client.close()


def test_the_gke_canary_example_loads_and_its_target_can_split_traffic(tmp_path: Path) -> None:
    import yaml

    from deployments.spec import EnvironmentSpec
    from providers.targets.base import TargetContext, require_canary
    from providers.targets.kubernetes.target import make_gke_target

    root = Path(__file__).resolve().parents[2]
    spec = EnvironmentSpec.model_validate(yaml.safe_load((root / "deployments/examples/canary-gke.yaml").read_text()))
    svc = spec.services[0]
    target = make_gke_target(TargetContext(env="canary-gke", spec=svc, secrets={}, state_dir=tmp_path))
    assert svc.strategy.canary and supports_canary(target)
    require_canary(spec, {svc.name: target})  # no ConfigError: gke splits traffic


async def test_a_lost_create_answer_still_makes_one_canary(harness: KubeHarnessBase, target: CanaryTarget) -> None:
    fake(harness).inject_fault("lost", 1, creates_only=True)  # the POST is applied, its answer never arrives
    result = await target.set_canary(make_release("staging", harness.sha(6)), 10, 30)
    assert result.status == DeployStatus.READY, result.message
    assert [w for w in fake(harness).writes if w[0] == "POST"] == [("POST", NAMESPACE, CANARY)]  # the retry: 409
    assert fake(harness).deployment(CANARY, NAMESPACE)["spec"]["replicas"] == 1


async def test_a_read_only_token_creates_nothing(harness: KubeHarnessBase) -> None:
    fake(harness).read_only_tokens.add(harness.bad_secret)
    if isinstance(harness, GkeHarness):
        assert harness.gke is not None
        harness.gke.tokens.add(harness.bad_secret)  # GKE lets it read the cluster; the cluster lets it only read
    t = harness.make_target_bad_token(SERVICE)
    assert isinstance(t, CanaryTarget)
    try:
        with pytest.raises(PermanentError, match=r'HTTP 403.*cannot create resource "deployments"') as err:
            await t.set_canary(make_release("staging", harness.sha(1)), 10, 30)
        await t.abort_canary(None)  # reading is allowed: no canary, nothing to delete
    finally:
        await t.aclose()
    assert harness.bad_secret not in str(err.value) and fake(harness).writes == []


async def test_a_foreign_deployment_named_like_the_canary_is_never_touched(
    harness: KubeHarnessBase, target: CanaryTarget
) -> None:
    fake(harness).create_deployment(CANARY, "someone/else:1", namespace=NAMESPACE, replicas=1)
    with pytest.raises(PermanentError, match="not made by aevon-deploy"):
        await target.set_canary(make_release("staging", harness.sha(1)), 10, 30)
    with pytest.raises(PermanentError, match="not touching it"):
        await target.abort_canary(None)
    dep = fake(harness).deployment(CANARY, NAMESPACE)
    assert dep["metadata"]["generation"] == 1 and fake(harness).patches == []
    assert [w for w in fake(harness).writes if w[0] == "DELETE"] == []
