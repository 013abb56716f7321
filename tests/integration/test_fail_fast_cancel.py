"""Fail fast on Render: a check fails while a slow Render rollout is in flight, which is cancelled, never live."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from providers.models import DeployStatus
from tests.fakes.render import RenderFake
from tests.integration.envs import memory_spec, write_spec
from tests.integration.flow_env import release_repo
from tests.integration.flow_env import rev as sha

pytestmark = pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir")

SERVICE_ID = "srv-aevonsearch"
SLOW_STEP_S = 3.0  # each Render state of the second rollout: 9 s from created to live


@pytest.fixture
def render(monkeypatch: pytest.MonkeyPatch) -> Iterator[RenderFake]:
    token = f"rnd_{secrets.token_hex(12)}"
    monkeypatch.setenv("RENDER_API_KEY", token)
    fake = RenderFake(token, step_s=0.1)
    fake.start()
    fake.add_service(SERVICE_ID, auto_deploy="no")
    try:
        yield fake
    finally:
        fake.stop()


async def deploy(spec_dir: Path, ref: str) -> tuple[DeployReport, str, dict[str, str]]:
    """(report, the flow run's state name in the Prefect API, task run name -> state name)."""
    state = await deploy_flow("dev", ref, spec_dir=str(spec_dir), return_state=True)
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return await report_of(state), str(run.state_name), {t.name: str(t.state_name) for t in tasks}


async def test_a_failing_check_cancels_a_slow_render_rollout(render: RenderFake, tmp_path: Path) -> None:
    repo = release_repo(tmp_path / "repo")
    spec = memory_spec(repo, ["api"], world=f"cancel-{tmp_path.name}")
    spec["services"].append({
        "name": "search", "provider": "render", "secrets": {"token": "RENDER_API_KEY"}, "ready_timeout_s": 120,
        "settings": {"api_url": f"{render.url}/v1", "service_id": SERVICE_ID, "poll_interval_s": 0.1,
                     "backoff_s": 0.05, "max_wait_s": 2.0}})
    write_spec(tmp_path / "specs", "dev", spec)
    report, _, _ = await deploy(tmp_path / "specs", "v1")
    assert report.outcome == DeployOutcome.SUCCEEDED, report.error
    v1_deploy = render.services[SERVICE_ID][0]["id"]

    render.step_s = SLOW_STEP_S  # search's next rollout is slow; api's check fails as soon as api is ready
    spec["validation"]["checks"][0]["settings"]["outcome"] = "FAILED"
    write_spec(tmp_path / "specs", "dev", spec)
    t0 = time.monotonic()
    report, state_name, tasks = await deploy(tmp_path / "specs", "v2")
    took = time.monotonic() - t0
    assert report.outcome == DeployOutcome.ROLLED_BACK and state_name == "RolledBack", report.error

    # Render shows the second deploy cancelled, never live, and the first one still live (no rollback deploy)
    v2_deploy = render.services[SERVICE_ID][0]
    assert v2_deploy["id"] != v1_deploy and v2_deploy["commit"]["id"] == sha(repo, "v2")
    assert render.status_of(v2_deploy["id"]) == ("canceled", False)
    assert render.status_of(v1_deploy) == ("live", True) and render.count(SERVICE_ID) == 2

    # the report says so, and the run did not wait for the slow rollout
    search = next(c for c in report.services if c.service == "search")
    assert search.status == DeployStatus.CANCELED and search.after is None
    assert search.message.startswith("stopped mid-rollout: ") and \
        "Render cancelled the rollout before it went live (vendor status: canceled)" in search.message
    assert search.duration_s < 3 * SLOW_STEP_S, search.duration_s
    assert tasks["deploy-search"] == "Cancelled"
    detail = " ".join(s.detail for s in report.steps)
    assert "search: stopped mid-rollout" in detail and "Render cancelled the rollout" in detail
    assert report.rollback is not None and report.rollback.ok
    print(f"v2 run {took:.1f}s, search stopped after {search.duration_s:.1f}s (rollout {3 * SLOW_STEP_S:.0f}s)")
