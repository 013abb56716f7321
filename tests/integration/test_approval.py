"""The production approval gate: signed answers from listed approvers only; every refusal keeps the run waiting."""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import aresume_flow_run
from pydantic import SecretStr

from flows.approve import _paused_run
from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from providers.approval.signing import load_private_key, parse_public_key, sign
from providers.approval.verify import Answer, message_for
from providers.state.store import StateStore
from tests.approval_keys import make_key
from tests.integration.envs import ROOT, memory_spec, write_spec
from tests.integration.test_flow_dag import repo, sha  # noqa: F401 - fixture
from tests.standins.memory import _WORLDS

pytestmark = pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir")
KEYS = ("ana", "ops", "sam", "mallory")


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Throwaway key pairs: ana.lead, ops.oncall, sam.starter (the OS user running these tests) and mallory."""
    return {n: make_key(tmp_path / "keys", n) for n in KEYS}


def prod_spec(repo: Path, world: str, keys: dict[str, tuple[Path, str]],  # noqa: F811
              timeout_s: float = 120) -> dict[str, Any]:
    spec = memory_spec(repo, ["api"], world=world)
    spec["approval"] = {"required": True, "timeout_s": timeout_s, "approvers": [
        {"name": "ana.lead", "public_key": keys["ana"][1]},
        {"name": "ops.oncall", "public_key": keys["ops"][1]},
        # the person who starts the runs below: `aevon-deploy deploy` in-process, as this OS user
        {"name": "sam.starter", "public_key": keys["sam"][1], "aliases": [getpass.getuser()]},
    ]}
    return spec


async def paused_run(name: str, spec_dir: Path, after: set[UUID] | None = None, timeout: float = 60) -> UUID:
    """The id of the paused flow run called `name` of this test (its spec_dir; optionally one not in `after`)."""
    async with get_client() as client:
        for _ in range(int(timeout * 5)):
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
            for run in runs:
                if (run.name == name and run.parameters.get("spec_dir") == str(spec_dir)
                        and (after is None or run.id not in after)):
                    return run.id
            await asyncio.sleep(0.2)
    raise AssertionError(f"no paused run {name}")


async def pause_key(run_id: UUID) -> str | None:
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
    assert run.state is not None
    return run.state.state_details.pause_key if run.state.is_paused() else None


async def signed_answer(run_id: UUID, keys: dict[str, tuple[Path, str]], signer: str, *, approver: str = "ana.lead",
                        approve: bool = True, reason: str = "staging green", for_run: str | None = None,
                        plan_suffix: str = "") -> dict[str, Any]:
    """The run input of an answer signed with `signer`'s key over the plan the run shows (or a tampered one)."""
    _, _, plan = await _paused_run(run_id)
    answer = Answer(approve, approver, reason, False, "")
    message = message_for(for_run or str(run_id), answer, plan + plan_suffix).canonical()
    signature = sign(load_private_key(keys[signer][0].read_bytes()), message)
    return {"approve": approve, "approver": approver, "reason": reason, "signature": signature}


async def refused_and_waiting(run_id: UUID, run_input: dict[str, Any], world: str) -> None:
    """Resume with `run_input`; the run must pause again (a new pause key) and have deployed nothing."""
    before = await pause_key(run_id)
    await aresume_flow_run(run_id, run_input=run_input)
    key = before
    for _ in range(150):
        key = await pause_key(run_id)
        if key is not None and key != before:
            break
        await asyncio.sleep(0.2)
    assert key is not None and key != before, f"the run did not pause again after {run_input.get('approver')}"
    assert not _WORLDS[world]["api"].deployments


async def refusal_logs(run_id: UUID, expected: int) -> list[str]:
    """The run's refusal log lines, once `expected` of them reached the API (logs are shipped in batches)."""
    found: list[str] = []
    async with get_client() as client:
        for _ in range(100):
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            found = [lg.message for lg in logs if lg.message.startswith("APPROVAL REFUSED")]
            if len(found) >= expected:
                break
            await asyncio.sleep(0.2)
    return found


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`aevon-deploy approve ARGS`, awaited: the flow runs in this test's event loop and must go on meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flows.cli", "approve", *args, cwd=ROOT, env=os.environ.copy(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return subprocess.CompletedProcess(list(args), proc.returncode or 0, out.decode(), err.decode())


async def test_only_a_signed_answer_of_a_listed_approver_deploys(
    repo: Path,  # noqa: F811
    tmp_path: Path, ledger_url: str, keys: dict[str, tuple[Path, str]]
) -> None:
    world = f"appr-{tmp_path.name}"
    write_spec(tmp_path / "specs", "prod", prod_spec(repo, world, keys))
    task = asyncio.create_task(deploy_flow("prod", "v1", spec_dir=str(tmp_path / "specs"), return_state=True))
    run_id = await paused_run("deploy-prod-v1", tmp_path / "specs")
    assert not _WORLDS[world]["api"].deployments  # nothing deployed while waiting
    _, _, plan = await _paused_run(run_id)
    assert f"aevon-deploy approve {run_id} --as NAME --key" in plan  # the dialog says how to sign

    # every refusal: logged, the run pauses again, nothing changes
    unsigned = {"approve": True, "approver": "ana.lead", "reason": "trust me"}
    await refused_and_waiting(run_id, {**unsigned, "approver": "mallory"}, world)
    await refused_and_waiting(run_id, unsigned, world)
    await refused_and_waiting(run_id, await signed_answer(run_id, keys, "mallory"), world)  # forged: not ana's key
    await refused_and_waiting(run_id, await signed_answer(run_id, keys, "ana", for_run=str(uuid4())), world)
    await refused_and_waiting(run_id, await signed_answer(run_id, keys, "ana", plan_suffix="\nolder plan"), world)
    tampered = await signed_answer(run_id, keys, "ana", approve=False, reason="freeze")
    await refused_and_waiting(run_id, {**tampered, "approve": True}, world)  # a signed reject turned into approve
    await refused_and_waiting(run_id, await signed_answer(run_id, keys, "sam", approver="sam.starter"), world)
    kinds = [line.split("(", 1)[1].split(")", 1)[0] for line in await refusal_logs(run_id, 7)]
    assert kinds == ["not an approver", "missing signature", "unknown key", "bad signature", "bad signature",
                     "bad signature", "self-approval"]
    assert not task.done()

    # the CLI: a non-approver and a key that is not theirs are refused before resuming; a self-approval is refused
    # by the run (the CLI says so, exit 3); then ana.lead signs with her key and the run deploys
    base = [str(run_id), "--reason", "staging green, change CR-42"]
    out = await cli(*base, "--as", "mallory", "--key", str(keys["mallory"][0]))
    assert out.returncode == 3 and "'mallory' is not an approver of prod" in out.stderr
    out = await cli(*base, "--as", "ana.lead", "--key", str(keys["ops"][0]))
    assert out.returncode == 3 and "is not a key of ana.lead" in out.stderr
    out = await cli(*base, "--as", "sam.starter", "--key", str(keys["sam"][0]))
    assert out.returncode == 3 and "self-approval" in out.stderr, out.stderr
    assert not _WORLDS[world]["api"].deployments
    out = await cli(*base, "--as", "ana.lead", "--key", str(keys["ana"][0]))
    assert out.returncode == 0, out.stderr
    fingerprint = parse_public_key(keys["ana"][1]).fingerprint
    assert fingerprint in out.stdout
    report: DeployReport = await report_of(await task)
    assert report.outcome == DeployOutcome.SUCCEEDED, report.error
    assert report.approval is not None and report.approval.approver == "ana.lead"
    assert report.approval.key == fingerprint
    assert _WORLDS[world]["api"].deployments
    state = await StateStore(SecretStr(ledger_url)).open()
    ledger = state.ledger
    try:
        row = await ledger.get(str(report.release_id))
    finally:
        await state.close()
    assert row is not None and row.approver == "ana.lead" and row.approval_key == fingerprint
    assert row.approval_reason == "approved: staging green, change CR-42"


async def test_a_signature_pasted_in_the_form_counts(
    repo: Path,  # noqa: F811
    tmp_path: Path, keys: dict[str, tuple[Path, str]]
) -> None:
    """`--print-signature` prints a one-line signature; resumed with it (as the UI form would), the run deploys."""
    world = f"paste-{tmp_path.name}"
    write_spec(tmp_path / "specs", "prod", prod_spec(repo, world, keys))
    task = asyncio.create_task(deploy_flow("prod", "v1", spec_dir=str(tmp_path / "specs"), return_state=True))
    run_id = await paused_run("deploy-prod-v1", tmp_path / "specs")
    out = await cli(str(run_id), "--as", "ops.oncall", "--key", str(keys["ops"][0]), "--reason", "go",
                    "--print-signature")
    assert out.returncode == 0, out.stderr
    signature = out.stdout.strip()
    assert "\n" not in signature and await pause_key(run_id) == "approval-1"  # printed, nothing sent
    await aresume_flow_run(run_id, run_input={"approve": True, "approver": "ops.oncall", "reason": "go",
                                              "signature": signature})
    report = await report_of(await task)
    assert report.outcome == DeployOutcome.SUCCEEDED and report.approval is not None
    assert report.approval.key == parse_public_key(keys["ops"][1]).fingerprint


async def test_reject_and_timeout_change_nothing(
    repo: Path,  # noqa: F811
    tmp_path: Path, keys: dict[str, tuple[Path, str]]
) -> None:
    world = f"rej-{tmp_path.name}"
    write_spec(tmp_path, "prod", prod_spec(repo, world, keys))
    task = asyncio.create_task(deploy_flow("prod", "v1", spec_dir=str(tmp_path), return_state=True))
    run_id = await paused_run("deploy-prod-v1", tmp_path)
    # the starter may reject their own run
    await aresume_flow_run(run_id, run_input=await signed_answer(run_id, keys, "sam", approver="sam.starter",
                                                                 approve=False, reason="freeze week"))
    report = await report_of(await task)
    assert report.outcome == DeployOutcome.REFUSED and report.exit_code == 3
    assert "rejected by sam.starter: freeze week" in str(report.error)
    assert not _WORLDS[world]["api"].deployments

    # refused answers only, then nobody: the run times out with nothing changed
    write_spec(tmp_path, "prod", prod_spec(repo, world, keys, timeout_s=12))
    task = asyncio.create_task(deploy_flow("prod", "v1", spec_dir=str(tmp_path), return_state=True))
    run_id = await paused_run("deploy-prod-v1", tmp_path, after={run_id})
    await refused_and_waiting(run_id, await signed_answer(run_id, keys, "mallory"), world)
    report = await report_of(await task)
    assert report.outcome == DeployOutcome.REFUSED and "no approval within 12s" in str(report.error)
    assert report.approval is not None and report.approval.decision == "timed out"
    assert not _WORLDS[world]["api"].deployments


async def test_environment_stays_locked_while_waiting(
    repo: Path,  # noqa: F811
    tmp_path: Path, keys: dict[str, tuple[Path, str]]
) -> None:
    world = f"lockw-{tmp_path.name}"
    write_spec(tmp_path, "prod", prod_spec(repo, world, keys))
    first = asyncio.create_task(deploy_flow("prod", "v1", spec_dir=str(tmp_path), return_state=True))
    run_id = await paused_run("deploy-prod-v1", tmp_path)
    second = asyncio.create_task(deploy_flow("prod", "v2", spec_dir=str(tmp_path), return_state=True))
    await asyncio.sleep(4)
    assert not second.done()
    async with get_client() as client:
        runs = await client.read_flow_runs()
    v2 = [r for r in runs if r.name == "deploy-prod-v2"]
    assert v2 and all(r.state is not None and r.state.is_running() for r in v2)  # waiting for the lock, not paused
    await aresume_flow_run(run_id, run_input=await signed_answer(run_id, keys, "ana", reason="go"))
    assert (await report_of(await first)).outcome == DeployOutcome.SUCCEEDED
    run2 = await paused_run("deploy-prod-v2", tmp_path)  # only now does the second run reach its own gate
    await aresume_flow_run(run2, run_input=await signed_answer(run2, keys, "ana", reason="go"))
    second_report = await report_of(await second)
    assert second_report.outcome == DeployOutcome.SUCCEEDED
    assert second_report.services[0].before == sha(repo, "v1")
