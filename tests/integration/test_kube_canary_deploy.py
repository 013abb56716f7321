"""Canary deploys on the kubernetes target through the real deploy flow (fake apiserver whose pods serve, real
Prefect, real ledger): a broken release is aborted at 10 %, and a run killed mid-canary is compensated."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.report import DeployOutcome
from tests.contract.harness_kubernetes import NAMESPACE, REPOSITORY, KubernetesHarness
from tests.fakes.kubernetes import FakeKubeApiServer
from tests.integration.envs import ROOT, write_spec
from tests.integration.flow_env import deploy, release_repo, rev

pytestmark = [pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir"), pytest.mark.slow]

ENV = "dev"
CANARY = "api-canary"


@dataclass
class Cluster:
    """The fake cluster (api: 4 pods of v1 behind Service `api`), the spec directory and the release SHAs."""

    kube: FakeKubeApiServer
    url: str  # the Service's front: what users reach
    spec_dir: Path
    shas: dict[str, str]
    settings: dict[str, Any]


def canary_spec(repo: Path, settings: dict[str, Any], pause_s: float = 0) -> dict[str, Any]:
    return {
        "source": {"repo": str(repo)},
        "services": [{
            "name": "api", "provider": "kubernetes", "ready_timeout_s": 60, "secrets": {"token": "KUBE_TOKEN"},
            "settings": settings,
            "strategy": {"kind": "canary", "steps": [{"weight": 10, "pause_s": pause_s}, {"weight": 50},
                                                     {"weight": 100}]},
        }],
        "validation": {"checks": [{
            "name": "api-health", "kind": "health", "service": "api", "canary": True, "error_retries": 0,
            "settings": {"endpoints": [{"path": "/health", "json_field": "status", "json_value": "ok"}]},
        }]},
    }


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    repo = release_repo(tmp_path / "repo", ("v1", "v2", "sick"))
    shas = {t: rev(repo, t) for t in ("v1", "v2", "sick")}
    h = KubernetesHarness()
    await h.start(tmp_path)
    kube = h.kube
    assert kube is not None
    kube.unhealthy(f"{REPOSITORY}:{shas['sick']}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    kube.create_deployment("api", f"{REPOSITORY}:{shas['v1']}", namespace=NAMESPACE, replicas=4, port=port,
                           strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    kube.create_service("api", {"app": "api"}, target_port=port, namespace=NAMESPACE)
    url = kube.expose_service("api", NAMESPACE)
    monkeypatch.setenv("KUBE_TOKEN", h.secret)
    settings = {**h.settings("api"), "kubeconfig": str(h._kubeconfig()), "context": "fake", "service": "api",
                "url": url}
    spec_dir = tmp_path / "specs"
    write_spec(spec_dir, ENV, canary_spec(repo, settings))
    try:
        yield Cluster(kube, url, spec_dir, shas, settings)
    finally:
        await h.stop()


async def served(url: str, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    async with httpx.AsyncClient(trust_env=False, timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        for _ in range(n):
            resp = await c.get(url + "/", headers={"Connection": "close"})
            seen[str(resp.json()["version"])] += 1
    return seen


def tracks(c: Cluster) -> Counter[str]:
    return Counter(p.labels.get("track", "stable") for p in c.kube.ready_endpoints("api", NAMESPACE))


async def test_a_broken_release_is_aborted_at_10_percent_and_stable_keeps_serving(cluster: Cluster) -> None:
    c = cluster
    before = c.kube.deployment("api", NAMESPACE)
    bad = await deploy(c.spec_dir, c.shas["sick"], ENV)
    assert bad.outcome == DeployOutcome.ROLLED_BACK and bad.exit_code == 4, bad.error
    assert [s.name for s in bad.steps if s.name.startswith("canary")] == ["canary api: 10%"]  # never reached 50%
    step = next(s for s in bad.steps if s.name == "canary api: 10%")
    assert step.outcome == "failed" and "GET /health answered 503" in step.detail, step.detail
    assert "1 pod(s) beside 4 stable for 10%: the Service gives it 20% of connections" in step.detail  # real share
    assert "canary aborted at 10%" in bad.services[0].message
    assert bad.checks == []  # caught by the canary analysis: the usual validation never ran
    assert bad.rollback is not None and bad.rollback.ok, bad.rollback
    assert not c.kube.has_deployment(CANARY, NAMESPACE)
    assert tracks(c) == Counter({"stable": 4})
    after = c.kube.deployment("api", NAMESPACE)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]  # stable never touched
    assert after["spec"]["template"] == before["spec"]["template"]
    assert await served(c.url, 20) == Counter({c.shas["v1"]: 20})


async def test_a_run_killed_mid_canary_is_put_back_on_stable_by_the_next_run(cluster: Cluster) -> None:
    c = cluster
    repo = c.spec_dir.parent / "repo"
    write_spec(c.spec_dir, ENV, canary_spec(repo, c.settings, pause_s=120))
    cli = [sys.executable, "-m", "flows.cli", "--spec-dir", str(c.spec_dir)]
    proc = subprocess.Popen([*cli, "deploy", ENV, "--ref", c.shas["v2"]], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(1200):
            assert proc.poll() is None, "the deploy ended before its canary was seen"
            if tracks(c)["canary"] == 1:
                break
            await asyncio.sleep(0.05)
        assert tracks(c) == Counter({"stable": 4, "canary": 1})
        assert (await served(c.url, 50))[c.shas["v2"]] == 10  # mid-canary: 1 of 5 endpoints
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert c.kube.has_deployment(CANARY, NAMESPACE)  # the dead run left its canary

    subprocess.run([*cli, "unlock", ENV], cwd=ROOT, env=dict(os.environ), capture_output=True, check=True)
    write_spec(c.spec_dir, ENV, canary_spec(repo, c.settings))
    again = await deploy(c.spec_dir, c.shas["v1"], ENV)  # the version serving: only the compensation acts
    assert again.outcome == DeployOutcome.SUCCEEDED, again.error
    assert len(again.compensated) == 1 and again.compensated[0].ok, again.compensated
    undone = again.compensated[0].services[0]
    assert undone.service == "api" and undone.after == c.shas["v1"] and "removed" in undone.message
    assert not c.kube.has_deployment(CANARY, NAMESPACE)
    assert tracks(c) == Counter({"stable": 4})
    assert await served(c.url, 20) == Counter({c.shas["v1"]: 20})
