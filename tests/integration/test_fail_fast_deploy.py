"""Fail fast and the bake in the deploy flow: the rollback starts at the first failure; final state names in the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from flows.validation import time_to_rollback
from providers.models import Outcome
from tests.integration.envs import memory_spec, write_spec
from tests.integration.flow_env import release_repo
from tests.integration.flow_env import rev as sha
from tests.standins.memory import _WORLDS

pytestmark = pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return release_repo(tmp_path / "repo")


async def deploy(spec_dir: Path, ref: str) -> tuple[DeployReport, str, dict[str, str]]:
    """(report, the flow run's state name in the Prefect API, task run name -> state name)."""
    state = await deploy_flow("dev", ref, spec_dir=str(spec_dir), return_state=True)
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return await report_of(state), str(run.state_name), {t.name: str(t.state_name) for t in tasks}


def sleep_check(name: str, seconds: float, **settings: Any) -> dict[str, Any]:
    return {"name": name, "kind": "sleep", "error_retries": 0, "settings": {"seconds": seconds, **settings}}


async def test_a_failing_check_rolls_back_at_once_and_cancels_the_slow_ones(repo: Path, tmp_path: Path) -> None:
    world = f"ff-{tmp_path.name}"
    spec = memory_spec(repo, ["api"], world=world)
    write_spec(tmp_path / "specs", "dev", spec)
    report, state_name, _ = await deploy(tmp_path / "specs", "v1")
    assert report.outcome == DeployOutcome.SUCCEEDED and state_name == "Completed"
    spec["validation"]["checks"] = [sleep_check("fast-fail", 0.1, outcome="FAILED"), sleep_check("slow", 600),
                                    sleep_check("load", 600) | {"exclusive": True}]
    write_spec(tmp_path / "specs", "dev", spec)
    report, state_name, tasks = await deploy(tmp_path / "specs", "v2")
    assert report.outcome == DeployOutcome.ROLLED_BACK and state_name == "RolledBack"
    outcomes = {r.name: (r.outcome, r.summary) for r in report.checks}
    assert outcomes["fast-fail"][0] == Outcome.FAILED
    assert outcomes["slow"] == (Outcome.CANCELLED, "cancelled: fast-fail failed")
    assert outcomes["load"] == (Outcome.CANCELLED, "not started: fast-fail failed")
    assert tasks["validate-fast-fail"] == "Failed" and tasks["validate-slow"] == "Cancelled"
    steps = [s.name for s in report.steps]
    assert steps.index("validation 1/2: functional") < steps.index("rollback")
    assert next(s for s in report.steps if s.name == "validation 2/2: load").outcome == "not started"
    assert time_to_rollback(report) is not None  # the report's times say when the rollback began (demo summary)
    active = _WORLDS[world]["api"]
    assert active.deployments[str(active.active)].version == sha(repo, "v1")


async def test_a_regression_during_the_bake_rolls_back(repo: Path, tmp_path: Path) -> None:
    world = f"bake-{tmp_path.name}"
    spec = memory_spec(repo, ["api"], world=world)
    write_spec(tmp_path / "specs", "dev", spec)
    assert (await deploy(tmp_path / "specs", "v1"))[0].outcome == DeployOutcome.SUCCEEDED
    spec["validation"] |= {"bake_s": 600, "bake_interval_s": 0.1, "bake_checks": ["errors"]}
    spec["validation"]["checks"].append(sleep_check("errors", 0.05, fail_from_run=3))  # stage, bake 1, bake 2 FAILED
    write_spec(tmp_path / "specs", "dev", spec)
    report, state_name, tasks = await deploy(tmp_path / "specs", "v2")
    assert report.outcome == DeployOutcome.ROLLED_BACK and state_name == "RolledBack"
    bake = next(s for s in report.steps if s.name == "bake 600s")
    assert bake.outcome == "failed" and "watched errors;" in bake.detail and "round 2" in bake.detail
    errors = next(r for r in report.checks if r.name == "errors")
    assert errors.outcome == Outcome.FAILED and errors.summary.startswith("bake round 2: ")
    assert tasks["validate-errors"] == "Completed" and tasks["bake-1-errors"] == "Completed"
    assert tasks["bake-2-errors"] == "Failed" and "check-api" not in "".join(t for t in tasks if t.startswith("bake"))
    active = _WORLDS[world]["api"]
    assert active.deployments[str(active.active)].version == sha(repo, "v1")


async def test_a_quiet_bake_passes_and_a_failed_gate_is_refused(repo: Path, tmp_path: Path) -> None:
    spec = memory_spec(repo, ["api"], world=f"quiet-{tmp_path.name}")
    spec["validation"] |= {"bake_s": 0.3, "bake_interval_s": 0.1, "bake_checks": ["check-api"]}
    write_spec(tmp_path / "specs", "dev", spec)
    report, state_name, _ = await deploy(tmp_path / "specs", "v1")
    assert report.outcome == DeployOutcome.SUCCEEDED and state_name == "Completed"
    bake = next(s for s in report.steps if s.name == "bake 0.3s")
    assert bake.outcome == "ok" and "no regression" in bake.detail
    spec["gates"] = [sleep_check("review", 0.01, outcome="FAILED")]
    write_spec(tmp_path / "specs", "dev", spec)
    report, state_name, tasks = await deploy(tmp_path / "specs", "v2")
    assert report.outcome == DeployOutcome.REFUSED and state_name == "Refused"
    assert [(g.name, g.outcome) for g in report.gates] == [("review", Outcome.FAILED)]  # measured, not crashed
    assert tasks["gate-review"] == "Failed"
