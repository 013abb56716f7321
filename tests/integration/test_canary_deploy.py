"""Canary deploys through the real deploy flow (local target, real proxy, real Prefect): abort, promote, crash."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from flows.report import DeployOutcome
from providers.state.journal import CanaryEntry
from providers.state.store import StateStore
from providers.targets.local.process import free_port, pid_alive
from providers.targets.local.state import StateStore as LocalState
from providers.targets.local.target import stop_all
from tests.contract.harness_local import COMMAND, GOOD_VERSIONS, build_app_repo
from tests.integration.envs import ROOT, write_spec
from tests.integration.flow_env import deploy

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def canary_spec(repo: Path, port: int, pause_s: float = 0) -> dict[str, Any]:
    return {
        "source": {"repo": str(repo)},
        "services": [{
            "name": "api", "provider": "local", "ready_timeout_s": 60,
            "settings": {"command": COMMAND, "port": port, "startup_timeout_s": 20, "stop_grace_s": 3},
            "strategy": {"kind": "canary", "steps": [{"weight": 10, "pause_s": pause_s}, {"weight": 50},
                                                     {"weight": 100}]},
        }],
        "validation": {"checks": [{
            "name": "api-health", "kind": "health", "service": "api", "canary": True, "error_retries": 0,
            "settings": {"endpoints": [{"path": "/health"}]},
        }]},
    }


@pytest.fixture
async def env(tmp_path: Path, ledger_url: str, state_dir: Path) -> AsyncIterator[tuple[Path, dict[str, str], int]]:
    plan = [(v, "ok") for v in GOOD_VERSIONS[:3]] + [("sick", "unhealthy")]
    shas = await asyncio.to_thread(build_app_repo, tmp_path / "repo", plan)
    port = free_port(())
    spec_dir = tmp_path / "specs"
    write_spec(spec_dir, "dev", canary_spec(tmp_path / "repo", port))
    try:
        yield spec_dir, shas, port
    finally:
        await stop_all(state_dir / "targets" / "dev" / "api", "api", grace=3)


async def served(port: int, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    async with httpx.AsyncClient(trust_env=False, timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        for _ in range(n):
            resp = await c.get(f"http://127.0.0.1:{port}/", headers={"Connection": "close"})
            seen[str(resp.json()["version"])] += 1
    return seen


async def journal(ledger_url: str, release_id: str) -> list[Any]:
    state = await StateStore(SecretStr(ledger_url)).open()
    try:
        return await state.ledger.entries(release_id)
    finally:
        await state.close()


async def test_bad_version_is_aborted_at_the_first_step_and_stable_never_stops(
    env: tuple[Path, dict[str, str], int], ledger_url: str
) -> None:
    spec_dir, shas, port = env
    first = await deploy(spec_dir, shas["v1"], "dev")
    assert first.outcome == DeployOutcome.SUCCEEDED, first.error  # first deploy: nothing to protect, all at once
    bad = await deploy(spec_dir, shas["sick"], "dev")
    assert bad.outcome == DeployOutcome.ROLLED_BACK and bad.exit_code == 4, bad.error
    assert [s.name for s in bad.steps if s.name.startswith("canary")] == ["canary api: 10%"]  # never reached 50%
    step = next(s for s in bad.steps if s.name == "canary api: 10%")
    assert step.outcome == "failed" and "GET /health answered 503" in step.detail, step.detail
    change = bad.services[0]
    assert change.status == "FAILED" and "canary aborted at 10%" in change.message
    assert bad.checks == []  # the usual validation never ran: the canary was caught first
    assert bad.rollback is not None and bad.rollback.ok, bad.rollback
    assert await served(port, 40) == Counter({"v1": 40})
    entries = [e for e in await journal(ledger_url, bad.release_id) if isinstance(e, CanaryEntry)]
    assert len(entries) == 1 and entries[0].state == "undone" and entries[0].detail.outcome == "aborted"
    assert entries[0].detail.abort_s is not None and entries[0].detail.abort_s >= 0  # recorded (speed: bench_canary)
    assert entries[0].undo.stable is not None and entries[0].undo.stable.version == shas["v1"]


async def test_good_version_goes_through_every_step_then_validation(env: tuple[Path, dict[str, str], int]) -> None:
    spec_dir, shas, port = env
    assert (await deploy(spec_dir, shas["v1"], "dev")).outcome == DeployOutcome.SUCCEEDED
    good = await deploy(spec_dir, shas["v2"], "dev")
    assert good.outcome == DeployOutcome.SUCCEEDED, good.error
    names = [s.name for s in good.steps]
    assert [n for n in names if n.startswith("canary")] == ["canary api: 10%", "canary api: 50%",
                                                            "canary api: promote"]
    assert names.index("canary api: promote") < names.index("validation 1/1: smoke")
    assert [c.outcome for c in good.checks] == ["PASSED"]
    assert await served(port, 20) == Counter({"v2": 20})


async def test_a_run_killed_mid_canary_is_put_back_on_stable_by_the_next_run(
    env: tuple[Path, dict[str, str], int], ledger_url: str, state_dir: Path
) -> None:
    spec_dir, shas, port = env
    assert (await deploy(spec_dir, shas["v1"], "dev")).outcome == DeployOutcome.SUCCEEDED
    write_spec(spec_dir, "dev", canary_spec(spec_dir.parent / "repo", port, pause_s=120))
    cli = [sys.executable, "-m", "flows.cli", "--spec-dir", str(spec_dir)]
    proc = subprocess.Popen([*cli, "deploy", "dev", "--ref", shas["v2"]], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    local = LocalState(state_dir / "targets" / "dev" / "api" / "local-api", "api")
    try:
        for _ in range(1200):
            assert proc.poll() is None, "the deploy ended before its canary was seen"
            if local.load().canary is not None:
                break
            await asyncio.sleep(0.05)
        assert (await served(port, 100))["v2"] == 10  # mid-canary: 10 % on the new version
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    st = local.load()
    canary = st.get(st.canary)
    assert canary is not None and pid_alive(canary.pid, canary.start_time)  # the dead run left its canary

    subprocess.run([*cli, "unlock", "dev"], cwd=ROOT, env=dict(os.environ), capture_output=True, check=True)
    write_spec(spec_dir, "dev", canary_spec(spec_dir.parent / "repo", port))
    again = await deploy(spec_dir, shas["v1"], "dev")  # the same version again: only the compensation changes
    assert again.outcome == DeployOutcome.SUCCEEDED, again.error
    assert len(again.compensated) == 1 and again.compensated[0].ok, again.compensated
    undone = again.compensated[0].services[0]
    assert undone.service == "api" and undone.after == shas["v1"] and "removed" in undone.message
    assert await served(port, 50) == Counter({"v1": 50})
    for _ in range(50):
        if not pid_alive(canary.pid, canary.start_time):
            break
        await asyncio.sleep(0.1)
    assert not pid_alive(canary.pid, canary.start_time)
    dead = [e for e in await journal(ledger_url, again.compensated[0].release_id) if isinstance(e, CanaryEntry)]
    assert dead and all(e.state == "undone" for e in dead)
