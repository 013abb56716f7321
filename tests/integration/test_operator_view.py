"""What the operator sees is true: live status after a rollback and after drift, run logs, tags and artifacts in
Prefect, history rows and DORA figures from the ledger (in-process `memory` services share their world)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)

from deployments.settings import AevonSettings
from flows.deploy import deploy_flow, report_of
from flows.history import history
from flows.report import DeployOutcome, DeployReport
from flows.stats import dora, publish
from flows.status import Verdict, environment_status
from providers.models import Release, utcnow
from tests.integration.envs import memory_spec, write_spec
from tests.integration.flow_env import release_repo, rev
from tests.standins.memory import MemorySettings, MemoryTarget

pytestmark = pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir")


async def deploy(spec_dir: Path, ref: str) -> DeployReport:
    return await report_of(await deploy_flow("dev", ref, spec_dir=str(spec_dir), return_state=True))


async def run_logs(flow_run_id: str, needles: list[str], timeout_s: float = 30) -> list[str]:
    """The run's log messages once every needle is in them (logs reach the API in batches)."""
    async with get_client() as client:
        for _ in range(int(timeout_s * 2)):
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])))
            text = [lg.message for lg in logs]
            if all(any(n in t for t in text) for n in needles):
                return text
            await asyncio.sleep(0.5)
    missing = [n for n in needles if not any(n in t for t in text)]
    raise AssertionError(f"log lines never arrived: {missing}; got {text}")


@pytest.fixture
def repo_and_specs(tmp_path: Path) -> tuple[Path, Path]:
    return release_repo(tmp_path / "repo"), tmp_path / "specs"


async def test_status_history_logs_and_artifacts_after_a_rollback(repo_and_specs: tuple[Path, Path]) -> None:
    repo, specs = repo_and_specs
    world = f"view-{specs.parent.name}"
    spec: dict[str, Any] = memory_spec(repo, ["api"], world=world)
    write_spec(specs, "dev", spec)
    assert (await deploy(specs, "v1")).outcome == DeployOutcome.SUCCEEDED
    spec["validation"]["checks"][0]["settings"]["outcome"] = "FAILED"
    write_spec(specs, "dev", spec)
    bad = await deploy(specs, "v2")
    assert bad.outcome == DeployOutcome.ROLLED_BACK and bad.flow_run_id

    # live status: the target is asked, and it serves v1 again, as the ledger expects after the rollback
    st = await environment_status("dev", specs, AevonSettings())
    [api] = st.services
    assert api.serving == rev(repo, "v1") and api.verdict == Verdict.AS_EXPECTED
    assert api.expected is not None and f"restored by the rollback of {bad.release_id}" == api.expected.why

    # the run's Logs tab: steps with durations, versions before → after, verdicts, what the rollback restored and why
    v1, v2 = rev(repo, "v1")[:12], rev(repo, "v2")[:12]
    await run_logs(bad.flow_run_id, [
        "step deploy services: api started", "step deploy services: api finished: ok in ",
        f"deployed api [memory]: {v1} → {v2} READY", "check check-api [sleep]: FAILED",
    ])
    async with get_client() as client:
        run = await client.read_flow_run(UUID(bad.flow_run_id))
        assert "env:dev" in run.tags and run.state_name == "RolledBack"
        [child] = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
        assert child.name.startswith("rollback-dev-") and "env:dev" in child.tags
        arts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[child.id])))
        [rb_art] = [a for a in arts if a.key == "rollback-dev"]
        assert rb_art.description and rb_art.description.startswith("completed: rollback of ")
        assert f"| api | memory | {v2} | {v1} | **READY**" in str(rb_art.data)
        arts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
        deploy_art = next(a for a in arts if a.key == "deploy-dev")
        assert deploy_art.description == f"ROLLED_BACK: deploy dev @ v2 ({v2})"
    await run_logs(str(child.id), [f"restored api [memory]: {v2} → {v1} READY", "rollback of ",
                                   "because: validation failed: check-api"])

    # history: who started it, how long, why, where to look
    rows = await history(AevonSettings(), "dev", 10)
    assert [r.status for r in rows] == ["rolled_back", "succeeded"]
    assert rows[0].started_by and "@" in rows[0].started_by  # in-process run: the OS user
    assert rows[0].duration_s is not None and rows[0].reason and "check-api" in rows[0].reason
    assert rows[0].run_url and rows[0].run_url.endswith(f"/runs/flow-run/{bad.flow_run_id}")
    assert rows[1].reason is None

    # stats --publish: the DORA figures as a table artifact
    from flows.readonly import read_only_runtime
    from providers.state.store import StateStore

    ro = read_only_runtime("dev", specs, AevonSettings())
    async with StateStore(AevonSettings().state_db_url) as store:
        figures = await dora("dev", await store.ledger.history("dev"), ro.rt.source, 30, utcnow())
    await ro.rt.aclose()
    assert (figures.deployments, figures.failures, figures.change_failure_rate) == (1, 1, 0.5)
    assert figures.lead_time_s is not None and figures.time_to_restore_s is not None
    await publish(figures)
    async with get_client() as client:
        [art] = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["stats-dev"])),
                                            limit=1)
    assert "change failure rate" in str(art.data) and "50%" in str(art.data)


async def test_status_flags_drift_and_unreachable_targets(repo_and_specs: tuple[Path, Path]) -> None:
    repo, specs = repo_and_specs
    world = f"drift-{specs.parent.name}"
    spec: dict[str, Any] = memory_spec(repo, ["api", "web"], world=world)
    write_spec(specs, "dev", spec)
    assert (await deploy(specs, "v1")).outcome == DeployOutcome.SUCCEEDED
    # someone deploys v2 of api by hand, outside aevon-deploy
    target = MemoryTarget("api", MemorySettings(world=world))
    handle = await target.deploy(Release(release_id="by-hand", env="dev", ref="v2", sha=rev(repo, "v2")))
    await target.wait_ready(handle, 10)
    # and web now needs a token this machine does not have
    spec["services"][1]["secrets"] = {"token": "WEB_TOKEN_NOT_SET_HERE"}
    write_spec(specs, "dev", spec)

    st = await environment_status("dev", specs, AevonSettings())
    by = {s.service: s for s in st.services}
    assert by["api"].verdict == Verdict.DRIFT and by["api"].serving == rev(repo, "v2")
    assert "changed outside aevon-deploy" in by["api"].note
    assert by["web"].verdict == Verdict.UNREACHABLE
    assert by["web"].unreachable == "secret WEB_TOKEN_NOT_SET_HERE is not set"
    assert st.missing_secrets == ["WEB_TOKEN_NOT_SET_HERE"] and not st.healthy
