"""GitHub as the system of record: the deploy flow's runs as GitHub deployments, statuses and commit statuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.report import DeployOutcome
from tests.fakes.github import GitHubFake
from tests.integration.envs import memory_spec, write_spec
from tests.integration.flow_env import deploy, release_repo, rev

pytestmark = pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir")
TOKEN = "ghp_records_token_0123456789abcdef"
REPOSITORY = "aevon/app"


@pytest.fixture()
def gh() -> Iterator[GitHubFake]:
    fake = GitHubFake(token=TOKEN)
    fake.start()
    yield fake
    fake.stop()


def staging(repo: Path, gh: GitHubFake, world: str, fail: list[str] | None = None) -> dict[str, Any]:
    spec = memory_spec(repo, ["api"], world=world, fail_shas=fail)
    spec["records"] = {"github": {"repository": REPOSITORY, "api_url": gh.api_url,
                                  "environment_url": "https://staging.aevon.dev"}}
    return spec


def states(gh: GitHubFake, index: int) -> list[str]:
    repo = gh.repos[REPOSITORY]
    return [s["state"] for s in repo.deployment_statuses[repo.deployments[index]["id"]]]


async def test_statuses_follow_a_good_run_and_a_rolled_back_one(
    gh: GitHubFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    src = release_repo(tmp_path / "repo")
    v1, v2 = rev(src, "v1"), rev(src, "v2")
    repo = gh.repo(REPOSITORY)
    repo.commit(v1)
    repo.commit(v2)
    world = f"rec-{tmp_path.name}"
    write_spec(tmp_path / "specs", "staging", staging(src, gh, world))
    good = await deploy(tmp_path / "specs", "v1", "staging")
    assert good.outcome == DeployOutcome.SUCCEEDED, good.error

    dep = repo.deployments[0]
    assert (dep["sha"], dep["environment"], dep["payload"]["release_id"]) == (v1, "staging", good.release_id)
    assert dep["production_environment"] is False
    assert states(gh, 0) == ["in_progress", "success"]
    final = repo.deployment_statuses[dep["id"]][-1]
    assert final["environment_url"] == "https://staging.aevon.dev"
    assert final["log_url"].endswith(f"/runs/flow-run/{good.flow_run_id}")
    commit = [(s["context"], s["state"]) for s in repo.statuses if s["sha"] == v1]
    assert commit == [("aevon-deploy/staging", "pending"), ("aevon-deploy/staging", "success")]

    write_spec(tmp_path / "specs", "staging", staging(src, gh, world, fail=[v2]))
    bad = await deploy(tmp_path / "specs", "v2", "staging")
    assert bad.outcome == DeployOutcome.ROLLED_BACK, bad.error
    assert states(gh, 1) == ["in_progress", "inactive"]  # rolled back: shown as no longer serving
    assert states(gh, 0) == ["in_progress", "success"]  # v1 serves again, untouched
    assert [s["state"] for s in repo.statuses if s["sha"] == v2] == ["pending", "failure"]
    assert [st.name for st in bad.steps if st.name.startswith("GitHub")] == [
        "GitHub record: started", "GitHub record: finished"]


async def test_a_failing_github_never_fails_the_deploy(
    gh: GitHubFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token without `repo_deployment`/`repo:status`: GitHub answers 403; the deploy goes on, the report says so."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    gh.scopes = {"read:org"}
    src = release_repo(tmp_path / "repo")
    gh.repo(REPOSITORY).commit(rev(src, "v1"))
    write_spec(tmp_path / "specs", "staging", staging(src, gh, f"rec403-{tmp_path.name}"))
    report = await deploy(tmp_path / "specs", "v1", "staging")
    assert report.outcome == DeployOutcome.SUCCEEDED, report.error
    step = next(st for st in report.steps if st.name == "GitHub record: started")
    assert step.outcome == "failed" and "403" in step.detail
    assert TOKEN not in report.model_dump_json()
    assert not gh.repos[REPOSITORY].deployments


async def test_the_fake_refuses_what_github_refuses(gh: GitHubFake) -> None:
    repo = gh.repo(REPOSITORY)
    sha = repo.commit()
    repo.status(sha, "ci/unit", "failure")
    repo.branch("main", repo.commit())
    api = f"{gh.api_url}/repos/{REPOSITORY}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(headers=auth) as http:
        merged = await http.post(f"{api}/deployments", json={"ref": sha})  # auto_merge defaults to true
        assert merged.status_code == 202 and "Auto-merged main" in merged.json()["message"]
        red = await http.post(f"{api}/deployments", json={"ref": sha, "auto_merge": False})
        assert red.status_code == 409 and "Commit status checks failed" in red.json()["message"]
        made = await http.post(f"{api}/deployments", json={"ref": sha, "auto_merge": False, "required_contexts": []})
        assert made.status_code == 201 and made.json()["environment"] == "production"
        dep = made.json()["id"]
        bad = await http.post(f"{api}/deployments/{dep}/statuses", json={"state": "rolled_back"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "state"
        long = await http.post(f"{api}/deployments/{dep}/statuses", json={"state": "success", "description": "x" * 141})
        assert long.status_code == 422
        assert (await http.post(f"{api}/deployments/999/statuses", json={"state": "success"})).status_code == 404
        assert (await http.post(f"{api}/statuses/{sha}", json={"state": "inactive"})).status_code == 422
        gh.scopes = {"repo:status"}
        denied = await http.post(f"{api}/deployments", json={"ref": sha, "required_contexts": []})
        assert denied.status_code == 403 and denied.headers["X-Accepted-OAuth-Scopes"] == "repo, repo_deployment"
        assert (await http.post(f"{api}/statuses/{sha}", json={"state": "success"})).status_code == 201
