"""The pre-deploy gates through the real deploy flow: green proceeds; each failure refuses the run before any change."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from flows.report import DeployOutcome, DeployReport
from providers.models import Outcome
from providers.state.store import StateStore
from tests.fakes.github import GitHubFake
from tests.fakes.github_state import Repo
from tests.integration.envs import ROOT, write_spec
from tests.integration.flow_env import deploy, release_repo, rev
from tests.integration.gates_support import TOKEN
from tests.integration.oci_registry import Pusher, RegistryProcess, ensure_binary
from tests.standins.memory import _WORLDS

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

REPOSITORY = "aevon/aevon-os"
TAG = "v1.4.0"
REQUIRED = ["lint", "unit", "integration", "sast"]
SAST_URL = "https://ci.example.com/sast/77"
_images = itertools.count(1)


@pytest.fixture(scope="module")
def gh() -> Iterator[GitHubFake]:
    fake = GitHubFake(token=TOKEN)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    binary = ensure_binary()
    if binary is None:
        pytest.fail("docker-registry is not installed and scripts/ensure-registry.sh could not install it")
    reg = RegistryProcess(tmp_path_factory.mktemp("registry")).start(binary)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's git repo: one release commit on `main`, tagged TAG (the flow resolves refs here)."""
    return release_repo(tmp_path_factory.mktemp("source") / "repo", (TAG,))


@dataclass
class World:
    """One test's environment: the spec folder, the memory world its services live in, the release SHA."""

    spec_dir: Path
    world: str
    sha: str
    image: str  # repository (host/path) the image gate checks
    gh: Repo
    registry: RegistryProcess


def gate_spec(source: Path, gh: GitHubFake, registry: RegistryProcess, world: str, image: str,
              prod: bool) -> dict[str, Any]:
    """deployments/staging.yaml's gates (prod.yaml's with release_tag) against the fakes; services in memory."""
    github = {"repository": REPOSITORY, "api_url": gh.api_url, "attempts": 2}
    token = {"token": "GITHUB_TOKEN"}
    gates: list[dict[str, Any]] = [
        {"name": "review", "kind": "review", "secrets": token, "settings": {
            **github, "required_approvals": 1, "forbid_self_approval": True, "allow_direct_push": False}},
        {"name": "ci", "kind": "ci_status", "secrets": token, "timeout_s": 60, "settings": {
            **github, "required_checks": REQUIRED, "timeout_s": 0.5, "poll_initial_s": 0.05, "poll_max_s": 0.1}},
        {"name": "dependency-scan", "kind": "dependency_scan", "secrets": token,
         "settings": {**github, "min_severity": "high"}},
        {"name": "images", "kind": "image_exists", "settings": {
            "images": [image], "insecure_registries": [registry.host], "attempts": 2}},
    ]
    if prod:
        gates.append({"name": "release-tag", "kind": "release_tag", "secrets": token,
                      "settings": {**github, "pattern": r"^v\d+\.\d+\.\d+$", "source": "github"}})
    return {
        "source": {"repo": str(source)},
        "services": [{"name": "api", "provider": "memory", "settings": {"world": world}},
                     {"name": "web", "provider": "memory", "depends_on": ["api"], "settings": {"world": world}}],
        "gates": gates,
    }


@pytest.fixture
def world(gh: GitHubFake, registry: RegistryProcess, source: Path, tmp_path: Path, ledger_url: str,
          state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A clean GitHub fake knowing the release commit (on `main`, tagged TAG); staging and prod specs written."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    gh.reset()
    repo = gh.repo(REPOSITORY)
    sha = repo.commit(rev(source, TAG), author="alice")
    repo.branch("main", sha)
    repo.tag(TAG, sha, annotated=True)
    name = f"gates-{tmp_path.name}"
    image = f"{registry.host}/aevon/api-{next(_images)}"  # a repository of its own: nothing pushed to it yet
    spec_dir = tmp_path / "specs"
    write_spec(spec_dir, "staging", gate_spec(source, gh, registry, name, image, prod=False))
    write_spec(spec_dir, "prod", gate_spec(source, gh, registry, name, image, prod=True))
    return World(spec_dir, name, sha, image, repo, registry)


def make_green(w: World, *, but: str | None = None) -> None:
    """Everything the gates want, except what `but` names (one failure, set up for its own reason)."""
    repo, sha = w.gh, w.sha
    pr = repo.pull([sha], author="alice")
    if but == "unreviewed":
        repo.review(pr, "bob", "COMMENTED")
    else:
        repo.review(pr, "bob", "APPROVED")
    if but == "changes requested":
        repo.review(pr, "carol", "CHANGES_REQUESTED")
    for name in ("lint", "unit", "integration"):
        still_running = but == "check still running" and name == "integration"
        repo.check_run(sha, name, status="in_progress" if still_running else "completed")
    repo.status(sha, "sast", "pending")
    repo.status(sha, "sast", "failure" if but == "failed SAST" else "success", target_url=SAST_URL)
    repo.alert("chalk", "medium", "GHSA-aaaa-bbbb-cccc")  # below the spec's threshold
    if but == "critical alert":
        repo.alert("lodash", "critical", "GHSA-jf85-cpcp-j695", patched="4.17.12")
    if but != "image never pushed":
        repository = w.image.split("/", 1)[1]
        Pusher(w.registry.url).image(repository, sha)


async def no_change(w: World, report: DeployReport, ledger_url: str) -> None:
    """Nothing was deployed, journalled or migrated: the run stopped at the gates."""
    assert report.services == [] and report.migrations_applied == [] and report.rollback is None
    assert all(not s.name.startswith(("deploy services", "migrat", "database")) for s in report.steps)
    services = _WORLDS.get(w.world, {})
    assert all(not svc.deployments for svc in services.values())
    assert report.release_id is not None
    state = await StateStore(SecretStr(ledger_url)).open()
    ledger = state.ledger
    try:
        assert await ledger.entries(report.release_id) == []
        row = await ledger.get(report.release_id)
        assert row is not None and row.status == "refused"
    finally:
        await state.close()


@pytest.mark.parametrize(("env", "ref"), [("staging", "main"), ("prod", TAG)])
async def test_all_gates_green_deploy_proceeds(world: World, env: str, ref: str) -> None:
    make_green(world)
    report = await deploy(world.spec_dir, ref, env)
    assert report.outcome == DeployOutcome.SUCCEEDED, report.error
    expected = ["review", "ci", "dependency-scan", "images"] + (["release-tag"] if env == "prod" else [])
    assert [(g.name, g.outcome) for g in report.gates] == [(n, Outcome.PASSED) for n in expected], report.gates
    summaries = {g.name: g.summary for g in report.gates}
    assert "bob" in summaries["review"]
    if env == "prod":
        assert summaries["release-tag"] == f"tag {TAG} matches ^v\\d+\\.\\d+\\.\\d+$ and points at {world.sha[:12]}"
    services = _WORLDS[world.world]
    assert {name: svc.deployments[str(svc.active)].version for name, svc in services.items()} == {
        "api": world.sha, "web": world.sha}


REFUSALS = [
    # (why, environment, ref, the gate that refuses, what its findings say)
    ("unreviewed", "staging", "main", "review", "PR #1 has 0 of 1 required approval(s)"),
    ("changes requested", "staging", "main", "review", "changes requested by carol"),
    ("failed SAST", "staging", "main", "ci", f"check sast concluded failure ({SAST_URL})"),
    ("check still running", "staging", "main", "ci", "check integration still in_progress after"),
    ("critical alert", "staging", "main", "dependency-scan", "lodash (npm) GHSA-jf85-cpcp-j695 critical"),
    ("image never pushed", "staging", "main", "images", "was never pushed"),
    ("branch ref for prod", "prod", "main", "release-tag", "prod deploys only release tags: ref 'main' is a branch"),
]


@pytest.mark.parametrize(("why", "env", "ref", "gate", "cause"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_each_failing_gate_refuses_before_any_change(
    world: World, ledger_url: str, why: str, env: str, ref: str, gate: str, cause: str
) -> None:
    make_green(world, but=why)
    report = await deploy(world.spec_dir, ref, env)
    assert report.outcome == DeployOutcome.REFUSED and report.exit_code == 3, report.error
    outcomes = {g.name: g.outcome for g in report.gates}
    assert outcomes.pop(gate) == Outcome.FAILED, report.gates
    assert set(outcomes.values()) == {Outcome.PASSED}, report.gates  # only this gate failed, for its own reason
    failed = next(g for g in report.gates if g.name == gate)
    assert any(cause in f.message for f in failed.findings), failed
    if why == "image never pushed":
        assert failed.findings[0].message == f"image {world.image}:{world.sha} was never pushed"
    assert report.error is not None and report.error.startswith(f"gates failed: {gate}: ")
    assert cause in report.error
    await no_change(world, report, ledger_url)


def cli(*args: str, spec_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", "--spec-dir", str(spec_dir), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=dict(os.environ), check=False)


async def test_plan_shows_each_gate_now_and_the_cli_refuses_with_exit_code_3(world: World, ledger_url: str) -> None:
    make_green(world, but="changes requested")
    plan = await asyncio.to_thread(cli, "plan", "prod", "--ref", TAG, spec_dir=world.spec_dir)
    assert plan.returncode == 0, plan.stderr
    lines = {line.strip().split(" [", 1)[0].removeprefix("- "): line.strip() for line in plan.stdout.splitlines()
             if line.strip().startswith("- ") and " [" in line}
    assert lines["review"].startswith("- review [review]: FAILED ") and "changes requested by carol" in lines["review"]
    assert lines["ci"].startswith("- ci [ci_status]: PASSED ")
    assert lines["dependency-scan"].startswith("- dependency-scan [dependency_scan]: PASSED ")
    assert lines["images"].startswith("- images [image_exists]: PASSED ")
    assert lines["release-tag"] == (f"- release-tag [release_tag]: PASSED tag {TAG} matches ^v\\d+\\.\\d+\\.\\d+$ "
                                    f"and points at {world.sha[:12]}")
    assert TOKEN not in plan.stdout + plan.stderr
    state = await StateStore(SecretStr(ledger_url)).open()
    ledger = state.ledger
    try:
        assert await ledger.history("prod") == []  # plan started no run
        run = await asyncio.to_thread(cli, "deploy", "prod", "--ref", TAG, spec_dir=world.spec_dir)
        assert run.returncode == 3, run.stdout + run.stderr
        (row,) = await ledger.history("prod")
        assert row.status == "refused" and await ledger.entries(row.release_id) == []
    finally:
        await state.close()
    assert "REFUSED" in run.stdout and "changes requested by carol" in run.stdout + run.stderr
    assert TOKEN not in run.stdout + run.stderr
