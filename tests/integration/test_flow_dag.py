"""DAG behaviour with in-process `memory` services: environment lock, layers, idempotency, refusal before change."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from tests.integration.envs import memory_spec, write_spec
from tests.integration.flow_env import release_repo
from tests.integration.flow_env import rev as sha
from tests.standins.memory import _WORLDS

pytestmark = pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return release_repo(tmp_path / "repo")


async def deploy(spec_dir: Path, ref: str, env: str = "dev", **kw: Any) -> DeployReport:
    return await report_of(await deploy_flow(env, ref, spec_dir=str(spec_dir), return_state=True, **kw))


async def test_two_deploys_to_one_environment_run_one_after_the_other(
    repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = f"lock-{tmp_path.name}"
    write_spec(tmp_path / "specs", "dev", memory_spec(repo, ["api"], deploy_s=1.0, world=world))
    caplog.set_level(logging.INFO)
    a, b = await asyncio.gather(deploy(tmp_path / "specs", "v1"), deploy(tmp_path / "specs", "v2"))
    assert a.outcome == b.outcome == DeployOutcome.SUCCEEDED
    first, second = sorted((a, b), key=lambda r: r.steps[1].started_at)
    # the second run resolved its release only after the first had finished
    assert first.finished_at is not None and second.steps[1].started_at >= first.finished_at
    assert "is locked by another deploy" in caplog.text and "waiting for lock deploy-dev" in caplog.text
    # both ran, in order: the later run saw the earlier run's version as "before"
    assert second.services[0].before == first.sha
    # the first run was recorded finished before it let go of the lock: the second never took it for a crashed
    # run to compensate
    assert first.compensated == [] and second.compensated == []


async def test_layers_deploy_in_order_and_roll_back_in_reverse(repo: Path, tmp_path: Path) -> None:
    world = f"layers-{tmp_path.name}"
    spec = memory_spec(repo, ["db-api", "api", "web"], world=world, depends={"api": ["db-api"], "web": ["api"]})
    write_spec(tmp_path / "specs", "dev", spec)
    assert (await deploy(tmp_path / "specs", "v1")).outcome == DeployOutcome.SUCCEEDED
    spec["validation"]["checks"][2]["settings"]["outcome"] = "FAILED"  # web's: every layer is deployed by then
    write_spec(tmp_path / "specs", "dev", spec)
    report = await deploy(tmp_path / "specs", "v2")
    assert report.outcome == DeployOutcome.ROLLED_BACK
    assert [s.name for s in report.steps if s.name.startswith("deploy services")] == [
        "deploy services: db-api", "deploy services: api", "deploy services: web"]
    assert report.rollback is not None
    assert [c.service for c in report.rollback.services] == ["web", "api", "db-api"]
    services = _WORLDS[world]
    v1 = sha(repo, "v1")
    for name in ("db-api", "api", "web"):
        active = services[name].deployments[str(services[name].active)]
        assert active.version == v1, name


async def test_failed_deploy_of_one_service_rolls_back_the_rest_of_its_layer(repo: Path, tmp_path: Path) -> None:
    world = f"fail-{tmp_path.name}"
    write_spec(tmp_path / "specs", "dev", memory_spec(repo, ["a", "b"], world=world))
    assert (await deploy(tmp_path / "specs", "v1")).outcome == DeployOutcome.SUCCEEDED
    spec = memory_spec(repo, ["a", "b"], world=world)
    spec["services"][1]["settings"]["fail_shas"] = [sha(repo, "v2")]
    write_spec(tmp_path / "specs", "dev", spec)
    report = await deploy(tmp_path / "specs", "v2")
    assert report.outcome == DeployOutcome.ROLLED_BACK
    assert {c.service: c.status for c in report.services} == {"a": "READY", "b": "FAILED"}
    assert all(r.outcome in ("PASSED", "CANCELLED") for r in report.checks)  # a's check may have begun (a DAG)
    a = _WORLDS[world]["a"]
    assert a.deployments[str(a.active)].version == sha(repo, "v1")


async def test_retried_run_reuses_its_release_and_never_deploys_twice(repo: Path, tmp_path: Path) -> None:
    """The deploy task is idempotent per release id: running the same release again creates no second deployment."""
    from deployments.spec import ServiceSpec
    from providers.models import Release
    from providers.targets.base import TargetContext
    from tests.standins.memory import make_target

    world = f"idem-{tmp_path.name}"
    target = make_target(TargetContext(env="dev", spec=ServiceSpec(name="api", provider="memory",
                                                                    settings={"world": world}),
                                       secrets={}, state_dir=tmp_path))
    rel = Release(release_id="dev-x-1", env="dev", ref="v1", sha=sha(repo, "v1"))
    h1, h2 = await target.deploy(rel), await target.deploy(rel)
    assert h1.vendor_ref == h2.vendor_ref and target.deployment_count() == 1


async def test_refused_before_any_change(repo: Path, tmp_path: Path) -> None:
    world = f"refuse-{tmp_path.name}"
    spec = memory_spec(repo, ["api"], world=world)
    spec["source"]["ref_pattern"] = r"v\d+\.\d+\.\d+"
    write_spec(tmp_path / "specs", "prod", spec)
    report = await deploy(tmp_path / "specs", "v1", env="prod")
    assert report.outcome == DeployOutcome.REFUSED and report.exit_code == 3
    assert "does not match" in str(report.error)
    assert world not in _WORLDS or not _WORLDS[world]["api"].deployments

    spec["source"].pop("ref_pattern")
    spec["gates"] = [{"name": "always-no", "kind": "sleep", "settings": {"seconds": 0, "outcome": "FAILED"}}]
    write_spec(tmp_path / "specs", "prod", spec)
    report = await deploy(tmp_path / "specs", "v1", env="prod")
    assert report.outcome == DeployOutcome.REFUSED
    assert "gates failed: always-no" in str(report.error)
    assert not _WORLDS[world]["api"].deployments
