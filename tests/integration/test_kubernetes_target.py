"""The kubernetes/gke target against the fake kube-apiserver and GKE API: what the contract suite does not cover."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.auth import credentials as ga_credentials
from kubernetes import client as k8s
from pydantic import SecretStr

from deployments.spec import EnvironmentSpec, ServiceSpec
from providers.errors import ConfigError, PermanentError, TransientError
from providers.models import DeployStatus, ServiceVersion
from providers.targets.base import ServiceTarget, TargetContext
from providers.targets.kubernetes.client import cluster_manager
from providers.targets.kubernetes.rollout import RELEASE_ANNOTATION
from providers.targets.kubernetes.target import KubernetesTarget, make_gke_target, make_target
from tests.contract.harness import make_release
from tests.fakes.gke import FakeCluster, FakeGkeServer
from tests.fakes.kube_tls import make_cluster_tls
from tests.fakes.kubernetes import FakeKubeApiServer

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "integration-kube-token"
READ_ONLY = "integration-read-only-token"
REPO = "europe-docker.pkg.dev/aevon/api"
SURGE = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def sha(n: int) -> str:
    return hashlib.sha1(f"it-{n}".encode()).hexdigest()


class ManualClock:
    """The fake controller's clock, moved by hand: state changes only when a test says time has passed."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def tick(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def kube() -> Iterator[FakeKubeApiServer]:
    fake = FakeKubeApiServer(tokens=[TOKEN], read_only_tokens=[READ_ONLY], rollout_step_s=0.05)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def slow_kube(clock: ManualClock) -> Iterator[FakeKubeApiServer]:
    """Pods take 1 s to become ready; the controller sees a spec change 0.5 s after it is written."""
    fake = FakeKubeApiServer(tokens=[TOKEN], rollout_step_s=1.0, observe_delay_s=0.5, clock=clock)
    fake.start()
    yield fake
    fake.stop()


def api_client(fake: FakeKubeApiServer, token: str = TOKEN) -> k8s.ApiClient:
    cfg = k8s.Configuration()
    cfg.host = fake.url
    cfg.ca_cert_data = fake.ca_pem
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    return k8s.ApiClient(cfg)


def context(tmp: Path, name: str, provider: str, settings: dict[str, Any], **extra: Any) -> TargetContext:
    spec = ServiceSpec(name=name, provider=provider, settings=settings)
    secrets = {"token": SecretStr(extra.pop("token"))} if "token" in extra else {}
    return TargetContext(env="staging", spec=spec, secrets=secrets, state_dir=tmp, extra=extra)


def target(fake: FakeKubeApiServer, tmp_path: Path, name: str, token: str = TOKEN, **settings: Any) -> KubernetesTarget:
    base = {"repository": REPO, "poll_interval_s": 0.02, "api_backoff_s": 0.01, "request_timeout_s": 10}
    return make_target(context(tmp_path, name, "kubernetes", {**base, **settings}, api_client=api_client(fake, token)))


async def ready(t: ServiceTarget, n: int) -> None:
    handle = await t.deploy(make_release("staging", sha(n)))
    result = await t.wait_ready(handle, 20)
    assert result.status == DeployStatus.READY, result.message


async def sample(t: ServiceTarget, handle: Any) -> str:
    """One look at the rollout, as `kubectl rollout status --watch=false` would take it."""
    result = await t.wait_ready(handle, 0)
    return result.message.removeprefix("not ready after 0s: ") if result.status != DeployStatus.READY else "READY"


# -- rollout status, rule by rule, on a controller clock moved by hand --------------------------------------------
async def test_rolling_update_passes_through_each_waiting_rule(
    slow_kube: FakeKubeApiServer, clock: ManualClock, tmp_path: Path
) -> None:
    slow_kube.create_deployment("api", f"{REPO}:{sha(0)}", replicas=2, strategy=SURGE)
    t = target(slow_kube, tmp_path, "api")
    handle = await t.deploy(make_release("staging", sha(1)))
    seen = [await sample(t, handle)]
    for step in (0.5, 1.0, 1.0):
        clock.tick(step)
        seen.append(await sample(t, handle))
    assert seen == [
        "Waiting for deployment spec update to be observed...",
        "Waiting for deployment \"api\" rollout to finish: 1 out of 2 new replicas have been updated...",
        "Waiting for deployment \"api\" rollout to finish: 1 old replicas are pending termination...",
        "READY",
    ]
    await t.aclose()


async def test_recreate_waits_for_updated_replicas_to_be_available(
    slow_kube: FakeKubeApiServer, clock: ManualClock, tmp_path: Path
) -> None:
    slow_kube.create_deployment("api", f"{REPO}:{sha(0)}", replicas=2, strategy={"type": "Recreate"})
    t = target(slow_kube, tmp_path, "api", zero_downtime="off")
    handle = await t.deploy(make_release("staging", sha(1)))
    clock.tick(0.5)
    assert (
        await sample(t, handle)
        == "Waiting for deployment \"api\" rollout to finish: 0 of 2 updated replicas are available..."
    )
    clock.tick(1.0)
    assert await sample(t, handle) == "READY"


async def test_progress_deadline_exceeded_is_failed_only_after_the_deadline(
    slow_kube: FakeKubeApiServer, clock: ManualClock, tmp_path: Path
) -> None:
    slow_kube.create_deployment("api", f"{REPO}:{sha(0)}", replicas=2, strategy=SURGE, progress_deadline_s=10)
    slow_kube.cannot_start(f"{REPO}:{sha(9)}")
    t = target(slow_kube, tmp_path, "api")
    handle = await t.deploy(make_release("staging", sha(9)))
    clock.tick(0.5)
    clock.tick(9.0)
    waiting = await t.wait_ready(handle, 0)
    assert waiting.status == DeployStatus.FAILED and "new replicas have been updated" in waiting.message
    clock.tick(2.0)
    failed = await t.wait_ready(handle, 0)
    assert failed.status == DeployStatus.FAILED
    assert failed.message == 'deployment "api" exceeded its progress deadline'
    cond = next(c for c in slow_kube.deployment("api")["status"]["conditions"] if c["type"] == "Progressing")
    assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded")


async def test_stale_deadline_is_ignored_until_the_new_generation_is_observed(
    slow_kube: FakeKubeApiServer, clock: ManualClock, tmp_path: Path
) -> None:
    slow_kube.create_deployment("api", f"{REPO}:{sha(0)}", replicas=2, strategy=SURGE, progress_deadline_s=5)
    slow_kube.cannot_start(f"{REPO}:{sha(9)}")
    t = target(slow_kube, tmp_path, "api")
    good = await t.current()
    assert good is not None
    await t.deploy(make_release("staging", sha(9)))
    clock.tick(10.0)
    handle = await t.rollback(good)
    assert await sample(t, handle) == "Waiting for deployment spec update to be observed..."
    clock.tick(0.5)
    clock.tick(1.0)
    assert await sample(t, handle) == "READY"


async def test_wait_ready_reports_a_superseded_rollout(kube: FakeKubeApiServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    t = target(kube, tmp_path, "api")
    first = await t.deploy(make_release("staging", sha(1)))
    await t.deploy(make_release("staging", sha(2)))
    result = await t.wait_ready(first, 10)
    assert result.status == DeployStatus.FAILED and result.message.startswith("superseded")


# -- undo -----------------------------------------------------------------------------------------------------------
async def test_undo_to_a_specific_revision_reuses_its_replicaset(kube: FakeKubeApiServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    t = target(kube, tmp_path, "api")
    for n in (1, 2, 3):
        await ready(t, n)
    history = await t.history()
    assert [(v.version, v.vendor_ref) for v in history] == [(sha(n), str(n + 1)) for n in (3, 2, 1, 0)]
    release_1 = history[2].release_id
    handle = await t.rollback(ServiceVersion(service="api", version=sha(1), vendor_ref="2"))
    assert handle.detail["to_revision"] == 2 and handle.detail["from_revision"] == 4
    result = await t.wait_ready(handle, 10)
    assert result.status == DeployStatus.READY and result.handle.vendor_ref == "5"
    now = await t.current()
    assert now is not None and (now.version, now.vendor_ref, now.release_id) == (sha(1), "5", release_1)
    dep = kube.deployment("api")
    assert "pod-template-hash" not in dep["spec"]["template"]["metadata"]["labels"]
    assert dep["metadata"]["annotations"][RELEASE_ANNOTATION] == release_1
    assert kube.patches[-1][2] == "application/json-patch+json"
    reused = [
        rs
        for rs in kube.replica_sets("api")
        if rs["spec"]["template"]["spec"]["containers"][0]["image"].endswith(sha(1))
    ]
    assert len(reused) == 1
    annotations = reused[0]["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "5"
    assert annotations["deployment.kubernetes.io/revision-history"] == "2"


async def test_undo_by_version_when_no_revision_is_known(kube: FakeKubeApiServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    t = target(kube, tmp_path, "api")
    await ready(t, 1)
    await ready(t, 2)
    handle = await t.rollback(ServiceVersion(service="api", version=sha(1)))
    assert handle.detail["to_revision"] == 2
    assert (await t.wait_ready(handle, 10)).status == DeployStatus.READY
    now = await t.current()
    assert now is not None and now.version == sha(1)


async def test_undo_to_the_current_revision_is_skipped(kube: FakeKubeApiServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    t = target(kube, tmp_path, "api")
    await ready(t, 1)
    await ready(t, 2)
    back = await t.rollback(ServiceVersion(service="api", version=sha(1), vendor_ref="2"))
    await t.wait_ready(back, 10)
    patches = len(kube.patches)
    now = await t.current()
    assert now is not None
    again = await t.rollback(now)
    assert again.detail["skipped"] == "skipped rollback (current template already matches revision 4)"
    stale = await t.rollback(ServiceVersion(service="api", version=sha(1), vendor_ref="2"))  # kept in revision-history
    # kubectl names the revision as requested (2), though the ReplicaSet now carries revision 4
    assert stale.detail["skipped"] == "skipped rollback (current template already matches revision 2)"
    assert stale.detail["to_revision"] == 4
    assert len(kube.patches) == patches
    assert (await t.wait_ready(stale, 5)).status == DeployStatus.READY


async def test_undo_refuses_unknown_or_mismatched_revisions(kube: FakeKubeApiServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    t = target(kube, tmp_path, "api")
    await ready(t, 1)
    with pytest.raises(PermanentError, match="unable to find specified revision 42 in history"):
        await t.rollback(ServiceVersion(service="api", version=sha(0), vendor_ref="42"))
    with pytest.raises(PermanentError, match="refusing to roll back"):
        await t.rollback(ServiceVersion(service="api", version=sha(7), vendor_ref="1"))
    assert len(kube.patches) == 1


# -- deploy ---------------------------------------------------------------------------------------------------------
async def test_deploy_is_idempotent_and_updates_only_the_named_containers(
    kube: FakeKubeApiServer, tmp_path: Path
) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", containers=["api", "worker", "proxy"], strategy=SURGE)
    kube.set_spec("api")  # no-op write: generation stays
    t = target(kube, tmp_path, "api", containers=["api", "worker"])
    release = make_release("staging", sha(1))
    first = await t.deploy(release)
    second = await t.deploy(release)
    assert (first.detail["patched"], second.detail["patched"]) == (True, False)
    assert len(kube.patches) == 1
    containers = {c["name"]: c["image"] for c in kube.deployment("api")["spec"]["template"]["spec"]["containers"]}
    assert containers == {"api": f"{REPO}:{sha(1)}", "worker": f"{REPO}:{sha(1)}", "proxy": f"{REPO}:{sha(0)}"}
    annotations = kube.deployment("api")["metadata"]["annotations"]
    assert annotations[RELEASE_ANNOTATION] == release.release_id
    assert release.release_id in annotations["kubernetes.io/change-cause"]


async def test_several_containers_need_the_containers_setting(kube: FakeKubeApiServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", containers=["api", "proxy"], strategy=SURGE)
    with pytest.raises(PermanentError, match=r"services\.api\.settings\.containers"):
        await target(kube, tmp_path, "api").deploy(make_release("staging", sha(1)))
    with pytest.raises(PermanentError, match="container"):
        await target(kube, tmp_path, "api", containers=["nope"]).deploy(make_release("staging", sha(1)))


async def test_paused_deployment_is_refused(kube: FakeKubeApiServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    t = target(kube, tmp_path, "api")
    await ready(t, 1)
    patches = len(kube.patches)
    kube.set_spec("api", paused=True)
    with pytest.raises(PermanentError, match="paused"):
        await t.deploy(make_release("staging", sha(2)))
    with pytest.raises(PermanentError) as caught:
        await t.rollback(ServiceVersion(service="api", version=sha(0), vendor_ref="1"))
    assert str(caught.value).endswith(  # kubectl rollback.go, word for word
        "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again"
    )
    assert len(kube.patches) == patches


async def test_no_history_and_malformed_revisions_are_kubectl_errors(kube: FakeKubeApiServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    t = target(kube, tmp_path, "api")
    with pytest.raises(PermanentError, match='no rollout history found for deployment "api"'):
        await t.rollback(ServiceVersion(service="api", version="", vendor_ref="0"))
    await ready(t, 1)
    # someone wrote a revision that is not a number on the first ReplicaSet: it is skipped, never a ValueError
    kube.annotate_replica_set("api", 1, **{"deployment.kubernetes.io/revision": "one"})
    assert [v.vendor_ref for v in await t.history()] == ["2"]
    with pytest.raises(PermanentError, match=f"unable to find image tag {sha(0)} in history"):
        await t.rollback(ServiceVersion(service="api", version=sha(0)))
    with pytest.raises(PermanentError, match="unable to find specified revision 1 in history"):
        await t.rollback(ServiceVersion(service="api", version=sha(0), vendor_ref="1"))
    with pytest.raises(PermanentError, match='no rollout history found for deployment "api"'):
        await t.rollback(ServiceVersion(service="api", version=""))


# -- zero downtime --------------------------------------------------------------------------------------------------
async def test_zero_downtime_refuses_capacity_dropping_strategies(kube: FakeKubeApiServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", replicas=4)  # API defaults: maxUnavailable 25% -> 1 of 4
    kube.create_deployment("batch", f"{REPO}:{sha(0)}", replicas=2, strategy={"type": "Recreate"})
    kube.create_deployment("solo", f"{REPO}:{sha(0)}", replicas=1)  # 25% of 1 rounds down to 0: no drop
    with pytest.raises(PermanentError, match=r"maxUnavailable=25% resolves to 1 of 4") as info:
        await target(kube, tmp_path, "api").deploy(make_release("staging", sha(1)))
    assert "zero_downtime" in str(info.value)
    with pytest.raises(PermanentError, match="Recreate"):
        await target(kube, tmp_path, "batch").deploy(make_release("staging", sha(1)))
    assert kube.patches == []
    solo = await target(kube, tmp_path, "solo").deploy(make_release("staging", sha(1)))
    assert solo.detail["patched"] and "warning" not in solo.detail


async def test_zero_downtime_warn_and_off(
    kube: FakeKubeApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", replicas=4)
    with caplog.at_level(logging.WARNING, logger="providers.targets.kubernetes.target"):
        warned = await target(kube, tmp_path, "api", zero_downtime="warn").deploy(make_release("staging", sha(1)))
    assert warned.detail["patched"] and "maxUnavailable" in warned.detail["warning"]
    assert any("may drop capacity" in r.getMessage() for r in caplog.records)
    silent = await target(kube, tmp_path, "api", zero_downtime="off").deploy(make_release("staging", sha(2)))
    assert silent.detail["patched"] and "warning" not in silent.detail


# -- errors ---------------------------------------------------------------------------------------------------------
async def test_permanent_errors_name_the_resource_and_never_the_token(kube: FakeKubeApiServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    with pytest.raises(PermanentError) as missing:
        await target(kube, tmp_path, "missing", namespace="aevon").current()
    assert "deployment aevon/missing" in str(missing.value) and "404 NotFound" in str(missing.value)
    with pytest.raises(PermanentError) as forbidden:
        await target(kube, tmp_path, "api", token=READ_ONLY).deploy(make_release("staging", sha(1)))
    assert "403 Forbidden" in str(forbidden.value)
    with pytest.raises(PermanentError) as unauthorized:
        await target(kube, tmp_path, "api", token="wrong-token-value").current()
    assert "401 Unauthorized" in str(unauthorized.value)
    for exc in (missing.value, forbidden.value, unauthorized.value):
        assert all(secret not in str(exc) for secret in (TOKEN, READ_ONLY, "wrong-token-value"))
        assert exc.provider == "kubernetes"


async def test_transient_errors_are_retried_then_surface(kube: FakeKubeApiServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    t = target(kube, tmp_path, "api", api_attempts=3)
    kube.inject_fault("5xx", 2)
    assert await t.current() is not None
    kube.inject_fault("5xx", 3)
    before = len(kube.requests)
    with pytest.raises(TransientError, match="503 ServiceUnavailable"):
        await t.current()
    assert len(kube.requests) - before == 3


# -- settings -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("provider", "settings", "field"),
    [
        ("kubernetes", {"repository": "repo/app:v1"}, "repository"),
        ("kubernetes", {"repository": "repo/app", "namespace": "Bad_NS"}, "namespace"),
        ("kubernetes", {"repository": "repo/app", "zero_downtime": "maybe"}, "zero_downtime"),
        ("kubernetes", {"repository": "repo/app", "project": "p"}, "project"),
        ("kubernetes", {}, "repository"),
        ("gke", {"repository": "repo/app", "location": "l", "cluster": "c"}, "project"),
        (
            "gke",
            {"repository": "repo/app", "project": "p", "location": "l", "cluster": "c", "kubeconfig": "x"},
            "kubeconfig",
        ),
    ],
)
def test_bad_settings_name_the_field(provider: str, settings: dict[str, Any], field: str, tmp_path: Path) -> None:
    factory = make_gke_target if provider == "gke" else make_target
    with pytest.raises(ConfigError) as info:
        factory(context(tmp_path, "api", provider, settings))
    assert info.value.location == f"services.api.settings.{field}"


# -- GKE ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def gke(kube: FakeKubeApiServer) -> Iterator[FakeGkeServer]:
    fake = FakeGkeServer(tokens=[TOKEN], no_access_tokens=["no-access"])
    fake.start()
    fake.add_cluster(FakeCluster("aevon", "europe-west1", "main", endpoint=kube.endpoint, ca_pem=kube.ca_pem))
    fake.add_cluster(FakeCluster("aevon", "europe-west1", "new", kube.endpoint, kube.ca_pem, status="PROVISIONING"))
    fake.add_cluster(FakeCluster("aevon", "europe-west1", "forged", kube.endpoint, make_cluster_tls().ca_pem))
    yield fake
    fake.stop()


def gke_target(gke: FakeGkeServer, tmp_path: Path, cluster: str = "main", token: str = TOKEN) -> KubernetesTarget:
    settings = {
        "project": "aevon",
        "location": "europe-west1",
        "cluster": cluster,
        "gke_api_url": gke.url,
        "repository": REPO,
        "poll_interval_s": 0.02,
        "api_backoff_s": 0.01,
        "api_attempts": 2,
    }
    return make_gke_target(context(tmp_path, "api", "gke", settings, token=token))


async def test_gke_reads_the_cluster_once_and_deploys_through_its_endpoint(
    kube: FakeKubeApiServer, gke: FakeGkeServer, tmp_path: Path
) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    gke.inject_fault("5xx", 1)
    t = gke_target(gke, tmp_path)
    handle = await t.deploy(make_release("staging", sha(1)))
    assert (await t.wait_ready(handle, 10)).status == DeployStatus.READY
    assert (await t.history())[0].version == sha(1)
    lookups = [p for m, p in gke.requests if m == "GET"]
    assert lookups == ["/v1/projects/aevon/locations/europe-west1/clusters/main"] * 2  # one 503, one answer
    assert ("PATCH", "/apis/apps/v1/namespaces/default/deployments/api") in kube.requests
    await t.aclose()


async def test_gke_lookup_errors(kube: FakeKubeApiServer, gke: FakeGkeServer, tmp_path: Path) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    with pytest.raises(PermanentError, match="404") as missing:
        await gke_target(gke, tmp_path, cluster="absent").current()
    assert missing.value.resource == "projects/aevon/locations/europe-west1/clusters/absent"
    with pytest.raises(PermanentError, match="403"):
        await gke_target(gke, tmp_path, token="no-access").current()
    with pytest.raises(PermanentError, match="401") as refused:
        await gke_target(gke, tmp_path, token="not-a-valid-token").current()
    assert "not-a-valid-token" not in str(refused.value)
    with pytest.raises(TransientError, match="PROVISIONING"):
        await gke_target(gke, tmp_path, cluster="new").current()
    with pytest.raises(PermanentError, match="TLS"):
        await gke_target(gke, tmp_path, cluster="forged").current()
    assert not any(m == "PATCH" for m, _ in kube.requests)


class MintingCredentials(ga_credentials.Credentials):
    """Stands in for Application Default Credentials: no token until refreshed, then a fresh one."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.refreshes = 0

    def refresh(self, request: Any) -> None:
        self.token = TOKEN
        self.refreshes += 1


async def test_gke_with_injected_manager_and_refreshed_google_credentials(
    kube: FakeKubeApiServer, gke: FakeGkeServer, tmp_path: Path
) -> None:
    kube.create_deployment("api", f"{REPO}:{sha(0)}", strategy=SURGE)
    credentials = MintingCredentials()
    manager = cluster_manager(credentials, gke.url)
    settings = {"project": "aevon", "location": "europe-west1", "cluster": "main", "repository": REPO}
    ctx = context(tmp_path, "api", "gke", settings, cluster_manager=manager, google_credentials=credentials)
    t = make_gke_target(ctx)
    now = await t.current()
    assert now is not None and now.version == sha(0)
    assert credentials.refreshes >= 1 and credentials.valid
    assert gke.requests == [("GET", "/v1/projects/aevon/locations/europe-west1/clusters/main")]


async def test_kubeconfig_that_cannot_be_loaded_is_permanent(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    t = make_target(context(tmp_path, "api", "kubernetes", {"repository": REPO, "kubeconfig": str(missing)}))
    with pytest.raises(PermanentError, match="cannot load"):
        await t.current()


def test_example_spec_builds_its_gke_targets(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "deployments/examples/gke-staging.yaml").read_text())
    spec = EnvironmentSpec.model_validate(raw)
    gke_services = [s for s in spec.services if s.provider == "gke"]
    assert len(gke_services) == 2 and any(s.provider == "vercel" for s in spec.services)
    for service in gke_services:
        ctx = TargetContext(env="staging", spec=service, secrets={}, state_dir=tmp_path)
        built = make_gke_target(ctx)
        assert built.resource.startswith("deployment aevon/") and built.settings.zero_downtime in ("refuse", "warn")
