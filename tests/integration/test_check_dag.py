"""Checks as a DAG in the real deploy flow: a check starts when the services it observes are ready, a whole-system
check when all are, and the first failure stops deploys in flight and rolls back every service the run touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun

from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from providers.models import DeployStatus, Outcome
from tests.integration.envs import write_spec
from tests.integration.flow_env import release_repo
from tests.integration.flow_env import rev as sha
from tests.integration.test_operator_view import run_logs
from tests.standins.memory import _WORLDS

pytestmark = pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return release_repo(tmp_path / "repo")


def spec_of(repo: Path, world: str, slow_s: float, *, fast_outcome: str = "PASSED") -> dict[str, Any]:
    """fast (0.2 s to deploy) and slow (`slow_s`) in one layer, `edge` after slow; a check per service and one of
    the whole system (no service named)."""
    def svc(name: str, deploy_s: float, depends: list[str] | None = None) -> dict[str, Any]:
        return {"name": name, "provider": "memory", "depends_on": depends or [],
                "settings": {"deploy_s": deploy_s, "world": world}}

    def check(name: str, service: str | None, outcome: str = "PASSED") -> dict[str, Any]:
        return {"name": name, "kind": "sleep", "error_retries": 0, "settings": {"seconds": 0.2, "outcome": outcome},
                **({"service": service} if service else {})}

    return {
        "source": {"repo": str(repo)},
        "services": [svc("fast", 0.2), svc("slow", slow_s), svc("edge", 0.1, ["slow"])],
        "validation": {
            "checks": [check("check-fast", "fast", fast_outcome), check("check-slow", "slow"),
                       check("check-edge", "edge"), check("whole", None)],
            "stages": [{"name": "smoke", "checks": ["check-fast", "check-slow", "check-edge"]},
                       {"name": "system", "checks": ["whole"]}],
        },
    }


async def deploy(spec_dir: Path, ref: str) -> tuple[DeployReport, dict[str, TaskRun]]:
    """(the report, the flow run's task runs by name, read back from the Prefect API)."""
    state = await deploy_flow("dev", ref, spec_dir=str(spec_dir), return_state=True)
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    async with get_client() as client:
        tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return await report_of(state), {t.name: t for t in tasks}


def upstream(run: TaskRun) -> set[UUID]:
    """The task runs Prefect's run graph draws as this one's upstream (its `wait_for`)."""
    return {i.id for i in run.task_inputs.get("wait_for", [])}


async def test_a_check_starts_when_its_service_is_ready_and_a_system_check_when_all_are(
    repo: Path, tmp_path: Path
) -> None:
    spec = spec_of(repo, f"dag-{tmp_path.name}", slow_s=3.0)
    spec["validation"] |= {"bake_s": 0.3, "bake_interval_s": 0.1, "bake_checks": ["check-fast"]}
    write_spec(tmp_path / "specs", "dev", spec)
    report, tasks = await deploy(tmp_path / "specs", "v1")
    assert report.outcome == DeployOutcome.SUCCEEDED, report.error
    done = {c.service: c.finished_at for c in report.services}
    started = {r.name: r.started_at for r in report.checks}
    assert all(done.values()) and all(started.values())
    assert started["check-fast"] < done["slow"]  # the fast service's check did not wait for the slow deploy
    assert started["check-slow"] >= done["slow"] and started["check-edge"] >= done["edge"] > done["slow"]
    assert started["whole"] >= max(done.values())  # the whole-system check waited for every service
    # the same from Prefect: start times of the task runs, and the dependencies the run graph shows
    assert tasks["validate-check-fast"].start_time < tasks["deploy-slow"].end_time
    assert upstream(tasks["validate-check-fast"]) == {tasks["deploy-fast"].id}
    assert upstream(tasks["validate-check-slow"]) == {tasks["deploy-slow"].id}
    assert {tasks[f"deploy-{s}"].id for s in ("fast", "slow", "edge")} <= upstream(tasks["validate-whole"])
    assert {tasks[f"validate-check-{s}"].id for s in ("fast", "slow", "edge")} <= upstream(tasks["validate-whole"])
    smoke = next(s for s in report.steps if s.name == "validation 1/2: smoke")
    system = next(s for s in report.steps if s.name == "validation 2/2: system")
    assert smoke.outcome == system.outcome == "passed" and smoke.started_at <= started["check-fast"] < done["slow"]
    assert system.started_at >= max(done.values())
    # each stage and the bake say in the run's Logs when they start and end, with outcome and duration
    assert report.flow_run_id is not None
    await run_logs(report.flow_run_id, [
        "step validation 1/2: smoke started", "step validation 1/2: smoke finished: passed in ",
        "step validation 2/2: system started", "step validation 2/2: system finished: passed in ",
        "step bake 0.3s started", "step bake 0.3s finished: ok in "])


async def test_a_failing_check_of_the_fast_service_stops_the_slow_deploy_and_rolls_back_both(
    repo: Path, tmp_path: Path
) -> None:
    world = f"dag-ff-{tmp_path.name}"
    write_spec(tmp_path / "specs", "dev", spec_of(repo, world, slow_s=0.2))
    first, _ = await deploy(tmp_path / "specs", "v1")
    assert first.outcome == DeployOutcome.SUCCEEDED, first.error
    write_spec(tmp_path / "specs", "dev", spec_of(repo, world, slow_s=600, fast_outcome="FAILED"))
    report, tasks = await deploy(tmp_path / "specs", "v2")  # slow would take 10 minutes to be ready
    assert report.outcome == DeployOutcome.ROLLED_BACK
    assert report.error is not None and report.error.startswith("validation failed: check-fast")
    changes = {c.service: c for c in report.services}
    assert changes["fast"].status == DeployStatus.READY
    assert changes["slow"].status == DeployStatus.CANCELED
    assert changes["slow"].message == "stopped mid-rollout: check-fast failed"
    assert "edge" not in changes  # its layer never started
    layer2 = next(s for s in report.steps if s.name == "deploy services: edge")
    assert (layer2.outcome, layer2.detail) == ("not started", "not started: check-fast failed")
    outcomes = {r.name: (r.outcome, r.summary) for r in report.checks}
    assert outcomes["check-fast"][0] == Outcome.FAILED
    for name in ("check-slow", "check-edge", "whole"):
        assert outcomes[name] == (Outcome.CANCELLED, "not started: check-fast failed"), name
    assert tasks["deploy-slow"].state_name == "Cancelled" and tasks["validate-check-fast"].state_name == "Failed"
    assert "validate-whole" not in tasks and "deploy-edge" not in tasks
    # the rollback covered the service stopped mid-rollout (its journal entry was open) as well as the fast one
    assert report.rollback is not None and report.rollback.ok
    assert sorted(c.service for c in report.rollback.services) == ["fast", "slow"]
    v1 = sha(repo, "v1")
    for name in ("fast", "slow", "edge"):
        svc = _WORLDS[world][name]
        assert svc.deployments[str(svc.active)].version == v1, name
    steps = [s.name for s in report.steps]
    assert steps.index("validation 1/2: smoke") < steps.index("rollback")
    assert next(s for s in report.steps if s.name == "validation 2/2: system").outcome == "not started"
    assert report.flow_run_id is not None
    await run_logs(report.flow_run_id, [
        "step validation 1/2: smoke finished: failed in ", "step validation 2/2: system finished: not started",
        "deployed slow [memory]", "stopped mid-rollout: check-fast failed"])
