"""One environment on Vercel, two GKE services and Render, deployed and rolled back by the real flow against fakes."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s

from flows.report import DeployOutcome, render_markdown
from providers.models import DeployStatus, Outcome
from providers.targets.kubernetes.rollout import RELEASE_ANNOTATION
from tests.fakes.gke import FakeCluster, FakeGkeServer
from tests.fakes.kubernetes import FakeKubeApiServer
from tests.fakes.render import RenderFake
from tests.fakes.vercel import VercelFake
from tests.integration.envs import write_spec
from tests.integration.flow_env import deploy, release_repo, rev
from tests.integration.mixed_support import (
    CLUSTER,
    DEPLOYMENTS,
    ENV,
    INITIAL,
    LOCATION,
    NAMESPACE,
    PROJECT,
    REGISTRY,
    RENDER_SERVICE,
    TEAM,
    VERCEL_PROJECT,
    HealthServer,
    mixed_spec,
)

pytestmark = [pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir"), pytest.mark.slow]

REVISION = "deployment.kubernetes.io/revision"


@dataclass
class Vendors:
    """The four services' vendors (Vercel, the GKE API and its cluster's kube-apiserver, Render) and their tokens."""

    vercel: VercelFake
    render: RenderFake
    kube: FakeKubeApiServer
    gke: FakeGkeServer
    health: HealthServer
    tokens: dict[str, str]  # secret name -> value
    repo: Path
    spec_dir: Path

    def kube_client(self) -> k8s.ApiClient:
        cfg = k8s.Configuration()
        cfg.host = self.kube.url
        cfg.ca_cert_data = self.kube.ca_pem
        cfg.api_key = {"BearerToken": self.tokens["GKE_TOKEN"]}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        return k8s.ApiClient(cfg)


@pytest.fixture
async def vendors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Vendors]:
    """Every fake started, the GKE Deployments running INITIAL, the tokens exported, the spec written."""
    tokens = {"VERCEL_TOKEN": f"vcp_{secrets.token_hex(12)}", "RENDER_API_KEY": f"rnd_{secrets.token_hex(12)}",
              "GKE_TOKEN": f"ya29.{secrets.token_hex(12)}"}
    for name, value in tokens.items():
        monkeypatch.setenv(name, value)
    vercel = VercelFake(tokens["VERCEL_TOKEN"], step_s=0.1, team_id=TEAM)
    render = RenderFake(tokens["RENDER_API_KEY"], step_s=0.1)
    # a pod is ready 0.1 s after it starts; progressDeadlineSeconds 600 scaled to 1.2 s
    kube = FakeKubeApiServer(tokens=[tokens["GKE_TOKEN"]], rollout_step_s=0.1, deadline_scale=0.002)
    gke = FakeGkeServer(tokens=[tokens["GKE_TOKEN"]])
    for fake in (vercel, render, kube, gke):
        fake.start()
    vercel.add_project(VERCEL_PROJECT)
    render.add_service(RENDER_SERVICE)
    gke.add_cluster(FakeCluster(PROJECT, LOCATION, CLUSTER, endpoint=kube.endpoint, ca_pem=kube.ca_pem))
    for name, deployment in DEPLOYMENTS.items():
        kube.create_deployment(deployment, f"{REGISTRY}/{name}:{INITIAL}", namespace=NAMESPACE, replicas=2,
                               containers=[name],
                               strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1,
                                                                                    "maxUnavailable": 0}})
    health = HealthServer(kube)
    repo = release_repo(tmp_path / "repo")
    spec_dir = tmp_path / "specs"
    write_spec(spec_dir, ENV, mixed_spec(repo, vercel, render, gke, health.url))
    try:
        yield Vendors(vercel, render, kube, gke, health, tokens, repo, spec_dir)
    finally:
        health.stop()
        for fake in (vercel, render, kube, gke):
            fake.stop()


# -- what each vendor's API says is serving --------------------------------------------------------------------------
async def vercel_production(v: Vendors) -> dict[str, Any]:
    """Vercel's current production deployment of the project (`GET /v9/projects/{name}` targets.production)."""
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{v.vercel.url}/v9/projects/{VERCEL_PROJECT}", params={"teamId": TEAM},
                                headers={"Authorization": f"Bearer {v.tokens['VERCEL_TOKEN']}"})
    resp.raise_for_status()
    production: dict[str, Any] = resp.json()["targets"]["production"]
    return production


async def render_deploys(v: Vendors, **params: Any) -> list[dict[str, Any]]:
    """Render's deploys of the service, newest first (`GET /v1/services/{id}/deploys`)."""
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{v.render.url}/v1/services/{RENDER_SERVICE}/deploys", params=params,
                                headers={"Authorization": f"Bearer {v.tokens['RENDER_API_KEY']}"})
    resp.raise_for_status()
    return [item["deploy"] for item in resp.json()]


@dataclass
class Rollout:
    """A GKE Deployment as the kubernetes client reads it."""

    image: str
    revision: int
    complete: bool
    release_id: str | None
    replica_sets: dict[str, int]  # image tag -> desired replicas of the ReplicaSet running it


def gke_rollout(v: Vendors, service: str) -> Rollout:
    """Read the Deployment and its ReplicaSets with the official kubernetes client (blocking)."""
    with v.kube_client() as api:
        apps = k8s.AppsV1Api(api)
        dep: dict[str, Any] = api.sanitize_for_serialization(
            apps.read_namespaced_deployment(DEPLOYMENTS[service], NAMESPACE))
        sets: dict[str, Any] = api.sanitize_for_serialization(
            apps.list_namespaced_replica_set(NAMESPACE, label_selector=f"app={DEPLOYMENTS[service]}"))
    spec, status, template = dep["spec"], dep["status"], dep["spec"]["template"]
    complete = (status["observedGeneration"] >= dep["metadata"]["generation"]
                and status["updatedReplicas"] == status["replicas"] == status["availableReplicas"] == spec["replicas"])
    return Rollout(
        image=str(template["spec"]["containers"][0]["image"]),
        revision=int(dep["metadata"]["annotations"][REVISION]),
        complete=complete,
        release_id=(template["metadata"].get("annotations") or {}).get(RELEASE_ANNOTATION),
        replica_sets={str(rs["spec"]["template"]["spec"]["containers"][0]["image"]).rpartition(":")[2]:
                      int(rs["spec"]["replicas"]) for rs in sets["items"]},
    )


async def serving(v: Vendors) -> dict[str, str]:
    """service -> the SHA its vendor serves now, each read through the vendor's own API."""
    live = await render_deploys(v, status="live", limit=1)
    kube = {s: await asyncio.to_thread(gke_rollout, v, s) for s in DEPLOYMENTS}
    assert all(r.complete for r in kube.values()), kube
    return {
        "web": str((await vercel_production(v))["meta"]["githubCommitSha"]),
        "search": str(live[0]["commit"]["id"]) if live else "",
        **{s: r.image.removeprefix(f"{REGISTRY}/{s}:") for s, r in kube.items()},
    }


# -- the tests --------------------------------------------------------------------------------------------------------
async def test_failed_validation_returns_all_four_to_their_previous_versions(vendors: Vendors) -> None:
    v = vendors
    v1, v2 = rev(v.repo, "v1"), rev(v.repo, "v2")
    v.health.bad.add(v2)  # the api at v2 answers /health with 503: validation fails
    # a whole-system check in the first stage holds api-health until every service is deployed (checks as a DAG:
    # alone, api-health would start when the api is ready), so v2 reaches all four vendors before it fails
    spec = yaml.safe_load((v.spec_dir / f"{ENV}.yaml").read_text())
    spec["validation"]["checks"].append({"name": "all-deployed", "kind": "sleep", "settings": {"seconds": 0}})
    spec["validation"]["stages"] = [{"name": "system", "checks": ["all-deployed"]},
                                    {"name": "smoke", "checks": ["api-health"]}]
    write_spec(v.spec_dir, ENV, spec)

    first = await deploy(v.spec_dir, "v1", ENV)
    assert first.outcome == DeployOutcome.SUCCEEDED, first.error
    assert {c.service: (c.before, c.after) for c in first.services} == {
        "api": (INITIAL, v1), "agents": (INITIAL, v1), "search": (None, v1), "web": (None, v1)}
    assert await serving(v) == dict.fromkeys(("web", "search", "api", "agents"), v1)
    web_v1 = (await vercel_production(v))["id"]
    search_v1 = (await render_deploys(v, status="live"))[0]["id"]
    rollouts_v1 = {s: await asyncio.to_thread(gke_rollout, v, s) for s in DEPLOYMENTS}
    assert {s: r.revision for s, r in rollouts_v1.items()} == {"api": 2, "agents": 2}

    second = await deploy(v.spec_dir, "v2", ENV)
    assert second.outcome == DeployOutcome.ROLLED_BACK and second.exit_code == 4, second.error
    # v2 reached every vendor before validation failed on the api's health
    assert {c.service: (c.status, c.before, c.after) for c in second.services} == {
        s: (DeployStatus.READY, v1, v2) for s in ("api", "agents", "search", "web")}
    assert [(r.name, r.outcome) for r in second.checks] == [("api-health", Outcome.FAILED),
                                                            ("all-deployed", Outcome.PASSED)]
    assert second.error == "validation failed: api-health: GET /health answered 503, expected [200]"

    rb = second.rollback
    assert rb is not None and rb.ok, rb
    order = [c.service for c in rb.services]
    assert order[:2] == ["web", "agents"] and sorted(order[2:]) == ["api", "search"]  # last layer first
    assert {c.service: (c.status, c.before, c.after) for c in rb.services} == {
        s: (DeployStatus.READY, v2, v1) for s in ("api", "agents", "search", "web")}
    assert [(r.name, r.outcome) for r in rb.health] == [("api-health", Outcome.PASSED)]  # re-checked at v1

    # each vendor, asked through its own API, serves v1 again
    assert await serving(v) == dict.fromkeys(("web", "search", "api", "agents"), v1)
    web = await vercel_production(v)
    assert web["id"] == web_v1  # Vercel instant rollback: the v1 deployment itself is production again
    project_deps = v.vercel.count(VERCEL_PROJECT)
    assert project_deps == 2  # v1 and v2; a rollback creates no deployment
    deploys = await render_deploys(v)
    assert [(d["commit"]["id"], d["status"], d["trigger"]) for d in deploys] == [
        (v1, "live", "rollback"), (v2, "deactivated", "api"), (v1, "deactivated", "api")]
    assert deploys[0]["id"] != search_v1  # Render's rollback is a new deploy of the earlier one
    for service, before in rollouts_v1.items():
        now = await asyncio.to_thread(gke_rollout, v, service)
        # `kubectl rollout undo`: the v1 ReplicaSet is reused and becomes the newest revision; v2's is scaled down
        assert now.revision == 4 and now.release_id == before.release_id == first.release_id, now
        assert now.replica_sets == {INITIAL: 0, v1: 2, v2: 0}, now


async def test_transient_faults_mid_deploy_are_survived(vendors: Vendors) -> None:
    v = vendors
    v1 = rev(v.repo, "v1")
    # each create acts at the vendor but its answer is lost (Vercel, Render: 503; kube: connection dropped) ...
    v.vercel.lose_answers(1)
    v.render.lose_answers(1)
    v.kube.lose_answers(1)
    # ... and the next calls meet 429 + Retry-After and 503
    v.render.inject_fault("429", 1)
    v.vercel.inject_fault("5xx", 2)
    v.kube.inject_fault("5xx", 2)

    report = await deploy(v.spec_dir, "v1", ENV)
    assert report.outcome == DeployOutcome.SUCCEEDED, report.error
    assert await serving(v) == dict.fromkeys(("web", "search", "api", "agents"), v1)
    # every fault was met ...
    assert (v.vercel._lost, v.render._lost, v.kube._lose_answers) == (0, 0, 0)
    assert not (v.vercel._faults or v.render._faults or v.kube._faults)
    # ... and no retry made a second deployment or rollout
    assert v.vercel.count(VERCEL_PROJECT) == 1 and v.render.count(RENDER_SERVICE) == 1
    for service in DEPLOYMENTS:
        rs = v.kube.replica_sets(DEPLOYMENTS[service], NAMESPACE)
        ours = [r for r in rs if RELEASE_ANNOTATION in (r["spec"]["template"]["metadata"].get("annotations") or {})]
        assert len(ours) == 1, service


async def test_bad_token_fails_naming_the_provider_never_the_token(
    vendors: Vendors, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    v = vendors
    bad = f"rnd_{secrets.token_hex(12)}"
    monkeypatch.setenv("RENDER_API_KEY", bad)
    caplog.set_level(logging.DEBUG)

    report = await deploy(v.spec_dir, "v1", ENV)
    # search (Render) fails at its first call; api's rollout beside it (GKE) is stopped mid-way and put back (its
    # journal entry is open); the next layers never start
    assert report.outcome == DeployOutcome.ROLLED_BACK and report.exit_code == 4
    assert report.error is not None
    assert "render service srv-aevonsearch" in report.error and "HTTP 401" in report.error, report.error
    statuses = {c.service: c.status for c in report.services}
    assert statuses.keys() == {"api", "search"} and statuses["search"] == DeployStatus.FAILED
    api = next(c for c in report.services if c.service == "api")
    assert (api.status, api.message) == (DeployStatus.CANCELED, "stopped mid-rollout: deploy of search failed") or \
        api.status == DeployStatus.READY  # READY only if its rollout won the race with Render's 401
    search = next(c for c in report.services if c.service == "search")
    assert "render service srv-aevonsearch" in search.message and "HTTP 401" in search.message
    assert (await asyncio.to_thread(gke_rollout, v, "api")).image == f"{REGISTRY}/api:{INITIAL}"
    assert v.vercel.count(VERCEL_PROJECT) == 0 and v.render.count(RENDER_SERVICE) == 0
    assert "render service srv-aevonsearch" in caplog.text  # the task's failure is in the flow logs ...
    for text in (report.model_dump_json(), render_markdown(report), caplog.text):
        for token in (bad, *v.tokens.values()):  # ... and no token shows anywhere
            assert token not in text
    assert report.rollback is not None and report.rollback.ok
    assert any("cannot read search" in n for n in report.rollback.notes)
    assert [c.service for c in report.rollback.services] == ["api"]
