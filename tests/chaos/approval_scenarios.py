"""Chaos around the production approval wait: the Prefect server restarted before, during and after the pause.

Each round runs six real production deploys (tests/chaos/approval_child.py: the deploy flow in a process of its
own, as a worker runs it; a memory target and a signed approval gate) and restarts the Prefect server (a) just
before the run pauses (while a 4 s gate runs), (b) while it is paused, answering the approval only after the
restart, (c) right after the approval resumed it (while its service deploys); each once as it is and once with
the outage outlasting the Prefect client's own retries in the run's process. Each must end clearly (SUCCEEDED, or
REFUSED / ROLLED_BACK with a reason) with its ledger row settled, the environment lock released, its flow run in
a final state and nothing done twice. Figures as in lock_scenarios: runs, outcomes, duplicates (a second flow run
attempt, release row or vendor deployment), half-done states (a row left `running`, a flow run left Paused or
Running, a SUCCEEDED run whose service never deployed) and leftovers (the lock still held, a process still alive).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter, LogFilterFlowRunId
from prefect.flow_runs import aresume_flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.approve import _paused_run
from providers.approval.signing import load_private_key, sign
from providers.approval.verify import Answer, message_for
from tests.approval_keys import make_key
from tests.chaos.lock_scenarios import HANG, ROOT, Outcome, World
from tests.integration.envs import memory_spec, write_spec
from tests.integration.flow_env import release_repo

MOMENTS = ("before", "before-long", "during", "during-long", "after", "after-long")
# *-long: the outage outlasts the Prefect client's own retries (about a minute by default; none in that run's
# process, so a few seconds down stand for a long outage)
GATE_S = 4.0  # the gate the run passes just before its pause: the server goes down while it runs
DEPLOY_S = 3.0  # the service deploy right after the approval: the server goes down while it runs
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
CLEAR = {"SUCCEEDED", "REFUSED", "ROLLED_BACK"}


def _spec(repo: Path, env: str, public_key: str) -> dict[str, Any]:
    spec = memory_spec(repo, ["api"], world=env, deploy_s=DEPLOY_S)
    spec["gates"] = [{"name": "slow-gate", "kind": "sleep", "settings": {"seconds": GATE_S}}]
    spec["approval"] = {"required": True, "timeout_s": 300,
                        "approvers": [{"name": "ana.lead", "public_key": public_key}]}
    return spec


async def _run_of(name: str) -> Any | None:
    """The flow run called `name` (one per scenario environment), or None while it does not exist yet."""
    try:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    except Exception:  # the server is restarting
        return None
    return runs[0] if runs else None


async def _until(name: str, state: str) -> Any:
    """Wait until the flow run `name` is in state type `state` (RUNNING, PAUSED)."""
    while True:
        run = await _run_of(name)
        if run is not None and run.state is not None and run.state.type.value == state:
            return run
        await asyncio.sleep(0.2)


async def _answer(run_id: uuid.UUID, key: Path) -> None:
    """ana.lead approves, signed with her key over the plan the paused run shows (as `aevon-deploy approve` does)."""
    _, _, plan = await _paused_run(run_id)
    answer = Answer(True, "ana.lead", "chaos: approved", False, "")
    signature = sign(load_private_key(key.read_bytes()), message_for(str(run_id), answer, plan).canonical())
    await aresume_flow_run(run_id, run_input={"approve": True, "approver": "ana.lead", "reason": "chaos: approved",
                                              "signature": signature})


async def _started(run_id: uuid.UUID) -> int:
    """How often the run's flow body began (its `load spec and secrets` step, in the run's logs)."""
    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return sum(1 for lg in logs if lg.message.startswith("step load spec and secrets started"))


async def _ledger(url: str, env: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch("SELECT release_id, status FROM aevon_releases WHERE env = $1", env))
    finally:
        await conn.close()


async def _one(w: World, moment: str, env: str, repo: Path, key: tuple[Path, str], out: Outcome) -> None:
    specs = w.work / env
    write_spec(specs, env, _spec(repo, env, key[1]))
    name = f"deploy-{env}-v1"
    child_env = {**os.environ, "PREFECT_API_URL": w.api, "AEVON_STATE_DB_URL": w.ledger_url,
                 "AEVON_STATE_DIR": str(specs / "state"), "AEVON_PLUGINS": "tests.standins", "PYTHONPATH": str(ROOT)}
    if moment.endswith("-long"):
        child_env["PREFECT_CLIENT_MAX_RETRIES"] = "0"
    child = subprocess.Popen([sys.executable, "-m", "tests.chaos.approval_child", env, "v1", str(specs)], cwd=ROOT,
                             env=child_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert w.restart_prefect is not None
    try:
        if moment.startswith("before"):
            await asyncio.wait_for(_until(name, "RUNNING"), HANG)  # its gate runs: the pause is seconds away
            await w.restart_prefect()
        run = await asyncio.wait_for(_until(name, "PAUSED"), HANG)
        if moment.startswith("during"):
            await w.restart_prefect()
        await _answer(run.id, key[0])
        if moment.startswith("after"):
            await w.restart_prefect()
        stdout, _ = await asyncio.wait_for(asyncio.to_thread(child.communicate), HANG)
    except TimeoutError:
        out.outcomes[f"{moment}: hung"] += 1
        out.notes.append(f"{moment}: {env} did not reach its next step within {HANG:.0f}s")
        stdout = ""
    finally:
        if child.poll() is None:
            out.leftovers += 1
            child.kill()
            child.wait()
    out.runs += 1
    line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT ")) if line else {"outcome": "no result"}
    outcome = str(result["outcome"])
    if outcome in CLEAR:
        out.outcomes[f"{moment}: {outcome}"] += 1
    else:  # a crash, FAILED, ROLLBACK_FAILED or no answer: counted as a failure of the scenario
        out.outcomes[f"{moment}: exit {child.returncode} {outcome.split(':')[0]}"] += 1
    if outcome != "SUCCEEDED":
        out.notes.append(f"{moment}: {outcome}: {result.get('error')}")
    await _judge(w, moment, env, name, result, out)


async def _judge(w: World, moment: str, env: str, name: str, result: dict[str, Any], out: Outcome) -> None:
    rows = await _ledger(w.ledger_url, env)
    out.duplicates += max(0, len(rows) - 1)
    unsettled = [r["release_id"] for r in rows if r["status"] == "running"]
    if unsettled:
        out.half_done += len(unsettled)
        out.notes.append(f"{moment}: ledger row(s) left running: {', '.join(unsettled)}")
    deployed = sum(n for k, n in result.get("deployments", {}).items() if k.startswith(f"{env}/"))
    out.duplicates += max(0, deployed - 1)
    if result.get("outcome") == "SUCCEEDED" and deployed != 1:
        out.half_done += 1
        out.notes.append(f"{moment}: SUCCEEDED with {deployed} deployments")
    run = await _run_of(name)
    if run is None or run.state is None or run.state.type.value not in FINAL:
        out.half_done += 1
        out.notes.append(f"{moment}: flow run left {run.state.type.value if run and run.state else 'missing'}")
    else:  # (run_count is 2 after any resume from a pause: the body's own first step says how often it ran)
        bodies = await _started(run.id)
        out.duplicates += max(0, bodies - 1)
        if bodies > 1:
            out.notes.append(f"{moment}: the flow body started {bodies} times")
    out.leftovers += int(await w.lock_held(env))


async def approval_restarts(w: World, rounds: int, moments: tuple[str, ...] = MOMENTS) -> Outcome:
    """The Prefect server restarted just before, during and right after (`moments`) a production approval wait."""
    out = Outcome("Prefect restarted around approval")
    if w.restart_prefect is None:
        out.notes.append("skipped: no restartable Prefect server")
        return out
    key = make_key(w.work / "approval-keys", "ana")
    repo = release_repo(w.work / f"approval-repo-{uuid.uuid4().hex[:6]}")
    with temporary_settings(updates={PREFECT_API_URL: w.api}):
        for i in range(rounds):
            for moment in moments:
                await _one(w, moment, f"chaos-appr-{moment}-{i}-{uuid.uuid4().hex[:6]}", repo, key, out)
    return out
