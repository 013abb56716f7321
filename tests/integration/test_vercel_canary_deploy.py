"""Vercel canary deploys through the real deploy flow (Rolling Releases on the Vercel fake, real Prefect)."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.report import DeployOutcome
from providers.state.journal import CanaryEntry
from tests.fakes.vercel import VercelFake
from tests.integration.envs import write_spec
from tests.integration.flow_env import deploy, release_repo, rev
from tests.integration.test_canary_deploy import journal

pytestmark = [pytest.mark.usefixtures("prefect_api", "state_dir"), pytest.mark.slow]

ENV, PROJECT = "prod", "aevon-web"


class CanaryHealth:
    """The web's /health as Vercel would serve it to the check: the canary of an ACTIVE rolling release when there is
    one (the deployment a canary analysis looks at), else the production deployment; 503 for a SHA in `bad`."""

    def __init__(self, fake: VercelFake) -> None:
        self.fake, self.bad = fake, set[str]()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                sha = outer.serving_sha()
                bad = sha in outer.bad
                body = json.dumps({"status": "degraded" if bad else "ok", "sha": sha}).encode()
                self.send_response(503 if bad else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serving_sha(self) -> str:
        with self.fake.lock:
            project = next(p for p in self.fake.projects.values() if p["name"] == PROJECT)
            rollout = project.get("rollout") or {}
            if rollout.get("state") == "ACTIVE":
                dep_id = rollout["canaryDeployment"]["id"]
            else:
                dep_id = project["targets"]["production"]
            return str(self.fake.deployments[dep_id]["gitSource"]["sha"]) if dep_id else ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Env:
    fake: VercelFake
    health: CanaryHealth
    token: str
    repo: Path
    spec_dir: Path

    def project(self) -> dict[str, Any]:
        return next(p for p in self.fake.projects.values() if p["name"] == PROJECT)

    def write(self, *, canary: bool) -> None:
        write_spec(self.spec_dir, ENV, vercel_spec(self.repo, self.fake.url, self.health.url, canary=canary))

    async def production_sha(self) -> str:
        """The SHA of the project's production deployment, read through the vendor's API (GET /v9/projects)."""
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(f"{self.fake.url}/v9/projects/{PROJECT}",
                                    headers={"Authorization": f"Bearer {self.token}"})
        resp.raise_for_status()
        return str(resp.json()["targets"]["production"]["meta"]["githubCommitSha"])

    async def rolling_config(self) -> Any:
        """The project's rolling release config (GET /v1/projects/{idOrName}/rolling-release/config)."""
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(f"{self.fake.url}/v1/projects/{PROJECT}/rolling-release/config",
                                    headers={"Authorization": f"Bearer {self.token}"})
        resp.raise_for_status()
        return resp.json()["rollingRelease"]


def vercel_spec(repo: Path, api_url: str, health_url: str, *, canary: bool) -> dict[str, Any]:
    service: dict[str, Any] = {
        "name": "web", "provider": "vercel", "secrets": {"token": "VERCEL_TOKEN"}, "ready_timeout_s": 30,
        "settings": {"api_url": api_url, "project": PROJECT, "repo": "aevon/aevon-os", "target": "production",
                     "poll_interval_s": 0.05, "backoff_s": 0.05, "max_wait_s": 1.0}}
    if canary:
        service["strategy"] = {"kind": "canary", "steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]}
    return {
        "source": {"repo": str(repo)},
        "services": [service],
        "validation": {"checks": [{
            "name": "web-health", "kind": "health", "service": "web", "canary": canary, "error_retries": 0,
            "settings": {"url": health_url, "endpoints": [{"path": "/health", "json_field": "status",
                                                          "json_value": "ok"}]},
        }]},
        "rollback": {"automatic": True},
        "approval": {"required": False},
    }


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    token = f"vcp_{secrets.token_hex(12)}"
    monkeypatch.setenv("VERCEL_TOKEN", token)
    fake = VercelFake(token, step_s=0.1)
    fake.start()
    fake.add_project(PROJECT)
    health = CanaryHealth(fake)
    e = Env(fake, health, token, release_repo(tmp_path / "repo", ("v1", "v2", "v3")), tmp_path / "specs")
    e.write(canary=True)
    try:
        yield e
    finally:
        health.stop()
        fake.stop()


async def test_bad_version_is_aborted_at_the_first_stage_and_the_config_removed(env: Env, ledger_url: str) -> None:
    v1, v2 = rev(env.repo, "v1"), rev(env.repo, "v2")
    env.health.bad.add(v2)
    first = await deploy(env.spec_dir, "v1", ENV)
    assert first.outcome == DeployOutcome.SUCCEEDED, first.error  # nothing served before: all at once
    assert env.project().get("rollout") is None

    bad = await deploy(env.spec_dir, "v2", ENV)
    assert bad.outcome == DeployOutcome.ROLLED_BACK and bad.exit_code == 4, bad.error
    assert [s.name for s in bad.steps if s.name.startswith("canary")] == ["canary web: 10%"]
    step = next(s for s in bad.steps if s.name == "canary web: 10%")
    assert step.outcome == "failed" and "GET /health answered 503" in step.detail, step.detail
    assert bad.checks == []  # caught by the canary analysis, before the usual validation
    assert bad.rollback is not None and bad.rollback.ok, bad.rollback
    rollout = env.project()["rollout"]
    assert rollout["state"] == "ABORTED" and rollout["canaryDeployment"]["meta"]["githubCommitSha"] == v2
    assert await env.production_sha() == v1  # stable never stopped being production
    assert await env.rolling_config() is None  # cleaned: the next production deployment is not a rolling release
    entries = [e for e in await journal(ledger_url, bad.release_id) if isinstance(e, CanaryEntry)]
    assert len(entries) == 1 and entries[0].detail.outcome == "aborted" and entries[0].state == "undone"


async def test_good_version_promotes_then_an_all_at_once_deploy_goes_straight_to_production(env: Env) -> None:
    v2, v3 = rev(env.repo, "v2"), rev(env.repo, "v3")
    assert (await deploy(env.spec_dir, "v1", ENV)).outcome == DeployOutcome.SUCCEEDED
    good = await deploy(env.spec_dir, "v2", ENV)
    assert good.outcome == DeployOutcome.SUCCEEDED, good.error
    assert [s.name for s in good.steps if s.name.startswith("canary")] == [
        "canary web: 10%", "canary web: 50%", "canary web: promote"]
    assert [c.outcome for c in good.checks] == ["PASSED"]
    assert env.project()["rollout"]["state"] == "COMPLETE"
    assert await env.production_sha() == v2
    assert await env.rolling_config() is None

    env.write(canary=False)
    plain = await deploy(env.spec_dir, "v3", ENV)
    assert plain.outcome == DeployOutcome.SUCCEEDED, plain.error
    assert not [s for s in plain.steps if s.name.startswith("canary")]
    assert await env.production_sha() == v3
    rollout = env.project()["rollout"]  # still v2's: no rolling release started for v3
    assert rollout["state"] == "COMPLETE" and rollout["canaryDeployment"]["meta"]["githubCommitSha"] == v2
