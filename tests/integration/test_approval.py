"""The production approval gate: listed approvers only, reject and timeout change nothing, the lock stays held."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import aresume_flow_run
from pydantic import SecretStr

from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from providers.state.ledger import Ledger
from tests.integration.envs import ROOT, memory_spec, write_spec
from tests.integration.test_flow_dag import repo, sha  # noqa: F401 - fixture
from tests.standins.memory import _WORLDS

pytestmark = pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir")


def prod_spec(repo: Path, world: str, timeout_s: float = 120) -> dict[str, Any]:  # noqa: F811
    spec = memory_spec(repo, ["api"], world=world)
    spec["approval"] = {"required": True, "approvers": ["ana.lead"], "timeout_s": timeout_s}
    return spec


async def paused_run(name: str, after: set[UUID] | None = None, timeout: float = 60) -> UUID:
    """The id of the paused flow run called `name` (optionally one not in `after`)."""
    async with get_client() as client:
        for _ in range(int(timeout * 5)):
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
            for run in runs:
                if run.name == name and (after is None or run.id not in after):
                    return run.id
            await asyncio.sleep(0.2)
    raise AssertionError(f"no paused run {name}")


async def pause_key(run_id: UUID) -> str | None:
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
    assert run.state is not None
    return run.state.state_details.pause_key if run.state.is_paused() else None


async def test_only_a_listed_approver_can_approve(repo: Path, tmp_path: Path, ledger_url: str) -> None:  # noqa: F811
    world = f"appr-{tmp_path.name}"
    write_spec(tmp_path, "prod", prod_spec(repo, world))
    task = asyncio.create_task(deploy_flow("prod", "v1", spec_dir=str(tmp_path), return_state=True))
    run_id = await paused_run("deploy-prod-v1")
    assert not _WORLDS[world]["api"].deployments  # nothing deployed while waiting

    # someone not listed: refused, the run pauses again and keeps waiting
    first_key = await pause_key(run_id)
    await aresume_flow_run(run_id, run_input={"approve": True, "approver": "mallory", "reason": "trust me"})
    for _ in range(100):
        key = await pause_key(run_id)
        if key is not None and key != first_key:
            break
        await asyncio.sleep(0.2)
    assert key == "approval-2"
    assert not task.done() and not _WORLDS[world]["api"].deployments

    # the CLI refuses a non-approver before resuming anything, then a listed approver approves
    cli = [sys.executable, "-m", "flows.cli", "approve", str(run_id), "--reason", "staging green, change CR-42"]
    out = subprocess.run([*cli, "--as", "mallory"], capture_output=True, text=True, cwd=ROOT, env=os.environ.copy())
    assert out.returncode == 3 and "'mallory' is not an approver of prod" in out.stderr
    out = subprocess.run([*cli, "--as", "ana.lead"], capture_output=True, text=True, cwd=ROOT, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    report: DeployReport = await report_of(await task)
    assert report.outcome == DeployOutcome.SUCCEEDED, report.error
    assert report.approval is not None and report.approval.approver == "ana.lead"
    assert _WORLDS[world]["api"].deployments
    ledger = await Ledger.connect(SecretStr(ledger_url))
    try:
        row = await ledger.get(str(report.release_id))
    finally:
        await ledger.close()
    assert row is not None and row.approver == "ana.lead"
    assert row.approval_reason == "approved: staging green, change CR-42"


async def test_reject_and_timeout_change_nothing(repo: Path, tmp_path: Path) -> None:  # noqa: F811
    world = f"rej-{tmp_path.name}"
    write_spec(tmp_path, "prod", prod_spec(repo, world))
    task = asyncio.create_task(deploy_flow("prod", "v1", spec_dir=str(tmp_path), return_state=True))
    run_id = await paused_run("deploy-prod-v1")
    await aresume_flow_run(run_id, run_input={"approve": False, "approver": "ana.lead", "reason": "freeze week"})
    report = await report_of(await task)
    assert report.outcome == DeployOutcome.REFUSED and report.exit_code == 3
    assert "rejected by ana.lead: freeze week" in str(report.error)
    assert not _WORLDS[world]["api"].deployments

    write_spec(tmp_path, "prod", prod_spec(repo, world, timeout_s=3))
    report = await report_of(await deploy_flow("prod", "v1", spec_dir=str(tmp_path), return_state=True))
    assert report.outcome == DeployOutcome.REFUSED and "no approval within 3s" in str(report.error)
    assert report.approval is not None and report.approval.decision == "timed out"
    assert not _WORLDS[world]["api"].deployments


async def test_environment_stays_locked_while_waiting(repo: Path, tmp_path: Path) -> None:  # noqa: F811
    world = f"lockw-{tmp_path.name}"
    write_spec(tmp_path, "prod", prod_spec(repo, world))
    first = asyncio.create_task(deploy_flow("prod", "v1", spec_dir=str(tmp_path), return_state=True))
    run_id = await paused_run("deploy-prod-v1")
    second = asyncio.create_task(deploy_flow("prod", "v2", spec_dir=str(tmp_path), return_state=True))
    await asyncio.sleep(4)
    assert not second.done()
    async with get_client() as client:
        runs = await client.read_flow_runs()
    v2 = [r for r in runs if r.name == "deploy-prod-v2"]
    assert v2 and all(r.state is not None and r.state.is_running() for r in v2)  # waiting for the lock, not paused
    await aresume_flow_run(run_id, run_input={"approve": True, "approver": "ana.lead", "reason": "go"})
    assert (await report_of(await first)).outcome == DeployOutcome.SUCCEEDED
    run2 = await paused_run("deploy-prod-v2")  # only now does the second run reach its own gate
    await aresume_flow_run(run2, run_input={"approve": True, "approver": "ana.lead", "reason": "go"})
    second_report = await report_of(await second)
    assert second_report.outcome == DeployOutcome.SUCCEEDED
    assert second_report.services[0].before == sha(repo, "v1")
