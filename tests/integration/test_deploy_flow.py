"""The deploy flow end to end on one machine: real PostgreSQL, Prisma, local processes, a real Prefect server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from providers.state.store import StateStore
from providers.targets.local.target import stop_all
from tests.integration.envs import ROOT, sample_dev_spec, write_spec
from tests.pg import temp_database
from tests.sample_app import build_sample_repo, ensure_prisma_toolkit

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(scope="session")
def sample_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


def rev(repo: Path, ref: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", f"{ref}^{{commit}}"], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
async def dev_env(sample_repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shipped dev spec on free ports, a fresh app database; services stopped afterwards."""
    spec = sample_dev_spec(sample_repo)
    spec_dir = tmp_path / "specs"
    write_spec(spec_dir, "dev", spec)
    async with temp_database() as db_url:
        monkeypatch.setenv("DATABASE_URL", db_url)
        ports = {s["name"]: s["settings"]["port"] for s in spec["services"]}
        try:
            yield spec_dir, ports, db_url, spec
        finally:
            for name in ("web", "api"):
                await stop_all(state_dir / "targets" / "dev" / name, name)


async def deploy(spec_dir: Path, ref: str, env: str = "dev") -> DeployReport:
    state = await deploy_flow(env, ref, spec_dir=str(spec_dir), return_state=True)
    return await report_of(state)


async def serving_sha(port: int) -> str:
    """The SHA the service on the stable `port` reports (api and web both identify themselves on /health)."""
    async with httpx.AsyncClient(timeout=5) as client:
        return str((await client.get(f"http://127.0.0.1:{port}/health")).json()["sha"])


async def test_deploy_then_failed_validation_rolls_back(dev_env: Any, sample_repo: Path, ledger_url: str) -> None:
    spec_dir, ports, _, _ = dev_env
    first = await deploy(spec_dir, "v1")
    assert first.outcome == DeployOutcome.SUCCEEDED, first.error
    assert await serving_sha(ports["api"]) == rev(sample_repo, "v1")
    assert first.migrations_applied == ["20250101000000_init"]

    second = await deploy(spec_dir, "v2")
    assert second.outcome == DeployOutcome.SUCCEEDED, second.error
    assert {c.service: (c.before, c.after) for c in second.services} == {
        "api": (rev(sample_repo, "v1"), rev(sample_repo, "v2")),
        "web": (rev(sample_repo, "v1"), rev(sample_repo, "v2")),
    }
    assert await serving_sha(ports["api"]) == rev(sample_repo, "v2")

    broken = await deploy(spec_dir, "v3-broken")
    assert broken.outcome == DeployOutcome.ROLLED_BACK
    assert broken.exit_code == 4
    failed = {c.name: c for c in broken.checks if c.outcome in ("FAILED", "ERROR")}  # not the ones it cancelled
    assert "api-health" in failed and "GET /health answered 503" in failed["api-health"].summary
    assert "web-health" not in failed  # the web role is healthy: only the api's health is broken in v3
    assert broken.rollback is not None and broken.rollback.ok
    # services went back in reverse order of their layers: web first, then api
    assert [s.service for s in broken.rollback.services] == ["web", "api"]
    assert await serving_sha(ports["api"]) == rev(sample_repo, "v2")
    assert all(r.outcome == "PASSED" for r in broken.rollback.health)
    # the rollback ran as its own flow run, a child of the deploy run
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[broken.flow_run_id]))
        )
    assert [r.name for r in runs] == [f"rollback-dev-{broken.release_id}"]

    state = await StateStore(__import__("pydantic").SecretStr(ledger_url)).open()
    ledger = state.ledger
    try:
        history = await ledger.history("dev")
    finally:
        await state.close()
    assert [h.status for h in history] == ["rolled_back", "succeeded", "succeeded"]


async def test_failed_service_deploy_rolls_back_the_others(
    dev_env: Any, sample_repo: Path, tmp_path: Path
) -> None:
    """web's new instance exits at start (a bad flag): api, already switched in the layer before, goes back."""
    spec_dir, ports, _, spec = dev_env
    assert (await deploy(spec_dir, "v1")).outcome == DeployOutcome.SUCCEEDED
    web = next(s for s in spec["services"] if s["name"] == "web")
    web["settings"]["command"] = [*web["settings"]["command"], "--no-such-flag"]
    write_spec(spec_dir, "dev", spec)
    report = await deploy(spec_dir, "v2")
    assert report.outcome == DeployOutcome.ROLLED_BACK, report.error
    by_name = {c.service: c for c in report.services}
    assert by_name["api"].status == "READY" and by_name["web"].status == "FAILED"
    # api's checks may have run, or been cancelled, once api was ready (checks as a DAG); none failed
    assert all(r.outcome in ("PASSED", "CANCELLED") for r in report.checks)
    assert report.error is not None and report.error.startswith("service deploy failed: web: ")
    assert report.rollback is not None and report.rollback.ok
    assert await serving_sha(ports["api"]) == rev(sample_repo, "v1")
    assert await serving_sha(ports["web"]) == rev(sample_repo, "v1")


async def test_kill_after_switch_then_rerun_compensates(
    dev_env: Any, sample_repo: Path, ledger_url: str, state_dir: Path
) -> None:
    """SIGKILL the CLI right after api switched to v2; the next run undoes the dead run, then deploys."""
    spec_dir, ports, db_url, _ = dev_env
    assert (await deploy(spec_dir, "v1")).outcome == DeployOutcome.SUCCEEDED
    env = {**os.environ, "DATABASE_URL": db_url}
    cli = [sys.executable, "-m", "flows.cli", "--spec-dir", str(spec_dir)]
    proc = subprocess.Popen([*cli, "deploy", "dev", "--ref", "v2"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    v2 = rev(sample_repo, "v2")
    try:
        for _ in range(3000):
            if proc.poll() is not None:
                pytest.fail("the deploy finished before the switch was seen")
            try:
                if await serving_sha(ports["api"]) == v2:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert await serving_sha(ports["api"]) == v2  # the dead run left api switched

    state = await StateStore(__import__("pydantic").SecretStr(ledger_url)).open()
    ledger = state.ledger
    try:
        dead = await ledger.unfinished("dev")
        assert [d.sha for d in dead] == [v2]
        # the dead run still holds the environment lock; its process is gone, so `unlock` frees it without --force
        out = subprocess.run([*cli, "unlock", "dev"], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        assert "deploy-dev: unlocked: the deploy holding it was dead (its process" in out.stdout

        again = await deploy(spec_dir, "v2")
        assert again.outcome == DeployOutcome.SUCCEEDED, again.error
        assert [c.release_id for c in again.compensated] == [dead[0].release_id]
        restored = {s.service: s.after for s in again.compensated[0].services}
        assert restored["api"] == rev(sample_repo, "v1")
        assert await serving_sha(ports["api"]) == v2
        row = await ledger.get(dead[0].release_id)
        assert row is not None and row.status == "compensated"
        assert all(e.state == "undone" for e in await ledger.entries(dead[0].release_id) if e.step == "service")
    finally:
        await state.close()
