"""The GitHub gates (review, CI, dependency scan, release tag) against the GitHub fake, each failing for its reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.errors import ConfigError
from providers.gates.review import ReviewGate
from providers.models import Outcome
from tests.fakes.github import GitHubFake
from tests.fakes.github_state import Repo, new_sha
from tests.integration.gates_support import (
    NPM_V2,
    PNPM,
    TOKEN,
    audit_script,
    environment,
    git,
    make_gate,
    messages,
    release_input,
    run,
)


@pytest.fixture(scope="module")
def gh() -> Iterator[GitHubFake]:
    fake = GitHubFake(token=TOKEN)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def repo(gh: GitHubFake) -> Repo:
    """A fresh aevon/app (every test asking for the fake asks for this, so each starts from a clean fake)."""
    gh.reset()
    return gh.repo("aevon/app")


# -- review ---------------------------------------------------------------------------------------------------------
async def test_review_passes_with_an_approval(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    pr = repo.pull([repo.commit(), sha])
    repo.review(pr, "bob", "COMMENTED")
    repo.review(pr, "bob", "APPROVED")
    result = await run(gh, "review", tmp_path, sha)
    assert result.outcome is Outcome.PASSED, result.summary
    assert "bob" in result.summary and f"#{pr}" in result.summary
    seen = gh.headers_seen[-1]
    assert seen["accept"] == "application/vnd.github+json" and seen["x-github-api-version"] == "2022-11-28"


async def test_review_fails_unreviewed(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    pr = repo.pull([sha])
    repo.review(pr, "bob", "COMMENTED")
    result = await run(gh, "review", tmp_path, sha)
    assert result.outcome is Outcome.FAILED
    assert f"PR #{pr} has 0 of 1 required approval(s)" in messages(result)


async def test_review_fails_on_changes_requested(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    pr = repo.pull([sha])
    repo.review(pr, "bob", "APPROVED")
    repo.review(pr, "carol", "CHANGES_REQUESTED")
    repo.review(pr, "carol", "COMMENTED")  # a later comment does not lift a change request
    repo.review(pr, "dave", "CHANGES_REQUESTED")
    repo.review(pr, "dave", "APPROVED")  # ... a later approval does
    result = await run(gh, "review", tmp_path, sha)
    assert result.outcome is Outcome.FAILED
    assert [f.detail.get("reviewer") for f in result.findings] == ["carol"]
    assert "changes requested by carol" in result.summary


async def test_review_dismissed_approval_does_not_count(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    pr = repo.pull([sha])
    repo.review(pr, "bob", "APPROVED")
    repo.review(pr, "bob", "DISMISSED")
    result = await run(gh, "review", tmp_path, sha)
    assert result.outcome is Outcome.FAILED and "0 of 1" in result.summary


async def test_review_self_approval(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit(author="mallory")  # mallory wrote the commit; alice opened the PR; mallory approved
    pr = repo.pull([sha], author="alice")
    repo.review(pr, "mallory", "APPROVED")
    refused = await run(gh, "review", tmp_path, sha)
    assert refused.outcome is Outcome.FAILED and "self-approval by mallory does not count" in refused.summary
    allowed = await run(gh, "review", tmp_path, sha, forbid_self_approval=False)
    assert allowed.outcome is Outcome.PASSED


async def test_review_direct_push(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    refused = await run(gh, "review", tmp_path, sha)
    assert refused.outcome is Outcome.FAILED and "pushed without a pull request" in refused.summary
    allowed = await run(gh, "review", tmp_path, sha, allow_direct_push=True)
    assert allowed.outcome is Outcome.PASSED


async def test_review_follows_pagination(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    pr = repo.pull([sha])
    for i in range(7):
        repo.review(pr, f"reviewer{i}", "COMMENTED")
    repo.review(pr, "bob", "APPROVED")
    repo.review(pr, "erin", "APPROVED")  # the 9th review: on page 5 of 2 per page
    one_page = await run(gh, "review", tmp_path, sha, required_approvals=2, per_page=2, max_pages=1)
    assert one_page.outcome is Outcome.ERROR and "more than 1 pages" in one_page.summary
    result = await run(gh, "review", tmp_path, sha, required_approvals=2, per_page=2)
    assert result.outcome is Outcome.PASSED, result.summary
    pages = [p for m, p in gh.requests if p.endswith(f"/pulls/{pr}/reviews")]
    assert len(pages) >= 1 + 5


# -- CI -------------------------------------------------------------------------------------------------------------
REQUIRED = ["lint", "unit", "integration", "sast"]


def green(repo: Repo, sha: str, skip: str | None = None) -> dict[str, int]:
    ids = {name: repo.check_run(sha, name) for name in ["lint", "unit", "integration"] if name != skip}
    if skip != "sast":
        repo.status(sha, "sast", "success")
    return ids


async def test_ci_passes_when_required_checks_succeed(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    green(repo, sha)
    repo.check_run(sha, "docs", conclusion="failure")  # not required
    result = await run(gh, "ci_status", tmp_path, sha, required_checks=REQUIRED)
    assert result.outcome is Outcome.PASSED, result.summary


async def test_ci_fails_on_failed_sast_with_link(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    green(repo, sha, skip="sast")
    repo.status(sha, "sast", "pending")
    repo.status(sha, "sast", "failure", target_url="https://ci.example.com/sast/77")
    result = await run(gh, "ci_status", tmp_path, sha, required_checks=REQUIRED)
    assert result.outcome is Outcome.FAILED
    assert "check sast concluded failure (https://ci.example.com/sast/77)" in messages(result)
    assert "lint" not in result.summary


async def test_ci_failed_check_run_names_its_html_url(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    ids = green(repo, sha)
    repo.update_check_run(ids["unit"], "completed", "failure")
    result = await run(gh, "ci_status", tmp_path, sha, required_checks=REQUIRED)
    assert result.outcome is Outcome.FAILED
    assert f"check unit concluded failure (https://github.com/aevon/app/runs/{ids['unit']})" in result.summary


async def test_ci_still_running_past_timeout(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    ids = green(repo, sha)
    repo.update_check_run(ids["integration"], "in_progress")
    result = await run(gh, "ci_status", tmp_path, sha, required_checks=REQUIRED, timeout_s=0.3,
                       poll_initial_s=0.05, poll_max_s=0.1)
    assert result.outcome is Outcome.FAILED
    assert "check integration still in_progress after" in result.summary
    assert result.metrics["polls"] >= 2


async def test_ci_waits_for_a_running_check_that_then_succeeds(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    ids = green(repo, sha)
    repo.update_check_run(ids["lint"], "queued")

    async def finish_after_two_polls() -> None:
        while sum(1 for _, p in gh.requests if p.endswith("/check-runs")) < 2:
            await asyncio.sleep(0.02)
        with gh.lock:
            repo.update_check_run(ids["lint"], "completed", "success")

    finisher = asyncio.create_task(finish_after_two_polls())
    result = await run(gh, "ci_status", tmp_path, sha, required_checks=REQUIRED, timeout_s=60, poll_initial_s=0.05,
                       poll_max_s=0.2)
    await finisher
    assert result.outcome is Outcome.PASSED, result.summary
    assert result.metrics["polls"] >= 3


async def test_ci_missing_required_check(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    green(repo, sha, skip="sast")
    result = await run(gh, "ci_status", tmp_path, sha, required_checks=REQUIRED, timeout_s=0.1, poll_initial_s=0.05)
    assert result.outcome is Outcome.FAILED
    assert f"required check sast was never reported for {sha[:12]}" in result.summary


async def test_ci_neutral_and_skipped_are_configurable(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    green(repo, sha)
    repo.check_run(sha, "e2e", conclusion="skipped")
    strict = await run(gh, "ci_status", tmp_path, sha, required_checks=[*REQUIRED, "e2e"])
    assert strict.outcome is Outcome.FAILED and "check e2e concluded skipped" in strict.summary
    lenient = await run(gh, "ci_status", tmp_path, sha, required_checks=[*REQUIRED, "e2e"], allow_skipped=True)
    assert lenient.outcome is Outcome.PASSED


async def test_ci_follows_pagination_of_check_runs(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    run_ids = [repo.check_run(sha, f"shard-{i}") for i in range(7)]
    repo.update_check_run(run_ids[0], "completed", "failure")  # oldest: listed last, on page 3 of 3 per page
    result = await run(gh, "ci_status", tmp_path, sha, per_page=3)  # no names: every reported check counts
    assert result.outcome is Outcome.FAILED
    assert [f.detail["check"] for f in result.findings] == ["shard-0"]
    assert result.metrics["checks_seen"] == 7


# -- dependency scan ------------------------------------------------------------------------------------------------
async def test_dependency_scan_fails_on_open_critical_alert(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    for i in range(4):
        repo.alert(f"pkg{i}", "high" if i % 2 else "low", f"GHSA-aaaa-bbbb-cc{i}{i}")
    repo.alert("lodash", "critical", "GHSA-jf85-cpcp-j695", patched="4.17.12", state="open")
    repo.alert("minimist", "critical", "GHSA-xvch-5gv4-984h", state="dismissed")
    result = await run(gh, "dependency_scan", tmp_path, new_sha(), per_page=2)  # default: high and above
    assert result.outcome is Outcome.FAILED
    assert [f.detail["package"] for f in result.findings] == ["lodash (npm)", "pkg1 (npm)", "pkg3 (npm)"]
    assert result.summary.startswith("3 open advisory(ies) at or above high: lodash (npm) GHSA-jf85-cpcp-j695 "
                                     "critical: lodash issue; fixed in 4.17.12")
    assert sum(1 for _, p in gh.requests if p.endswith("/dependabot/alerts")) >= 2  # cursor pages followed


async def test_dependency_scan_passes_below_threshold(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    repo.alert("chalk", "medium", "GHSA-aaaa-bbbb-cccc")
    repo.alert("lodash", "critical", "GHSA-jf85-cpcp-j695", state="fixed")
    result = await run(gh, "dependency_scan", tmp_path, new_sha())
    assert result.outcome is Outcome.PASSED, result.summary


async def test_dependency_scan_error_when_dependabot_is_off(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    repo.dependabot_enabled = False
    result = await run(gh, "dependency_scan", tmp_path, new_sha())
    assert result.outcome is Outcome.ERROR
    assert "Dependabot alerts are disabled" in result.summary


@pytest.mark.parametrize(("report", "severity"), [(NPM_V2, "critical"), (PNPM, "high")])
async def test_dependency_scan_audit_command(tmp_path: Path, report: str, severity: str) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    argv = audit_script(checkout, report)
    gate = make_gate("dependency_scan", {"audit_command": argv}, tmp_path,
                     env=environment(repo=str(tmp_path / "repo")))
    result = await gate.run(release_input(new_sha(), checkout=checkout))
    assert result.outcome is Outcome.FAILED
    assert [f.message.split(":")[0] for f in result.findings] == [f"minimist GHSA-xvch-5gv4-984h {severity}"]


async def test_dependency_scan_audit_error_report_is_error(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    argv = audit_script(checkout, '{"error": {"code": "ENOLOCK", "summary": "This command requires a lockfile"}}')
    gate = make_gate("dependency_scan", {"audit_command": argv}, tmp_path, env=environment(repo=str(tmp_path)))
    result = await gate.run(release_input(new_sha(), checkout=checkout))
    assert result.outcome is Outcome.ERROR and "ENOLOCK" in result.summary


# -- release tag ----------------------------------------------------------------------------------------------------
async def test_release_tag_passes_for_an_annotated_tag(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    repo.tag("v1.4.0", sha, annotated=True)
    result = await run(gh, "release_tag", tmp_path, sha, ref="v1.4.0")
    assert result.outcome is Outcome.PASSED, result.summary
    lightweight = repo.commit()
    repo.tag("v1.4.1", lightweight)
    assert (await run(gh, "release_tag", tmp_path, lightweight, ref="refs/tags/v1.4.1")).outcome is Outcome.PASSED


async def test_release_tag_refuses_a_branch(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    repo.branch("main", sha)
    result = await run(gh, "release_tag", tmp_path, sha, ref="main")
    assert result.outcome is Outcome.FAILED
    assert result.summary == "prod deploys only release tags: ref 'main' is a branch"
    bare = await run(gh, "release_tag", tmp_path, sha, ref=sha)
    assert bare.outcome is Outcome.FAILED and "is a commit SHA" in bare.summary


async def test_release_tag_pattern_and_target(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha, other = repo.commit(), repo.commit()
    repo.tag("nightly-5", sha)
    repo.tag("v2.0.0", other, annotated=True)
    bad_name = await run(gh, "release_tag", tmp_path, sha, ref="nightly-5")
    assert bad_name.outcome is Outcome.FAILED and "does not match the release pattern" in bad_name.summary
    custom = await run(gh, "release_tag", tmp_path, sha, ref="nightly-5", pattern=r"^nightly-\d+$")
    assert custom.outcome is Outcome.PASSED
    moved = await run(gh, "release_tag", tmp_path, sha, ref="v2.0.0")
    assert moved.outcome is Outcome.FAILED
    assert f"tag v2.0.0 points at {other[:12]}, not at the release SHA {sha[:12]}" in moved.summary


async def test_release_tag_from_local_git(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q", "-b", "main")
    git(src, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "one")
    git(src, "-c", "user.name=t", "-c", "user.email=t@t", "tag", "-a", "v0.1.0", "-m", "release")
    sha = git(src, "rev-parse", "HEAD")
    env = environment(repo=str(src))
    gate = make_gate("release_tag", {"source": "git"}, tmp_path, env=env)
    assert (await gate.run(release_input(sha, ref="v0.1.0"))).outcome is Outcome.PASSED
    branch = await gate.run(release_input(sha, ref="main"))
    assert branch.outcome is Outcome.FAILED and "is a branch" in branch.summary


# -- the client: rate limits, GHE, auth, transient faults, settings --------------------------------------------------
@pytest.mark.parametrize("status", [403, 429])
async def test_rate_limit_is_waited_out(gh: GitHubFake, repo: Repo, tmp_path: Path, status: int) -> None:
    sha = repo.commit()
    gh.rate_limit(1, reset_in_s=1.0, status=status)  # refused until the reset, a second ahead
    result = await run(gh, "review", tmp_path, sha, allow_direct_push=True)  # 2 attempts: only a wait passes
    assert result.outcome is Outcome.PASSED, result.summary


async def test_secondary_rate_limit_retry_after(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    gh.secondary_limit(1, retry_after_s=1)
    result = await run(gh, "review", tmp_path, sha, allow_direct_push=True)
    assert result.outcome is Outcome.PASSED, result.summary


async def test_rate_limit_longer_than_allowed_is_error(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    gh.rate_limit(1, reset_in_s=3600)
    result = await run(gh, "review", tmp_path, sha, rate_limit_max_wait_s=5)
    assert result.outcome is Outcome.ERROR
    assert "rate limited" in result.summary and "waits at most 5 s" in result.summary
    assert len(gh.requests) == 1  # not hammered


async def test_enterprise_base_url(tmp_path: Path) -> None:
    ghe = GitHubFake(token=TOKEN, enterprise=True)
    ghe.start()
    try:
        repo = ghe.repo("aevon/app")
        sha = repo.commit()
        repo.status(sha, "build", "success")
        result = await run(ghe, "ci_status", tmp_path, sha)
        assert result.outcome is Outcome.PASSED, result.summary
        assert all(p.startswith("/api/v3/repos/aevon/app/") for _, p in ghe.requests)
    finally:
        ghe.stop()


async def test_bad_token_is_error_without_the_token(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    result = await run(gh, "review", tmp_path, sha, token="ghp_wrong_token_fedcba9876543210")
    assert result.outcome is Outcome.ERROR
    assert "HTTP 401" in result.summary and "Bad credentials" in result.summary


async def test_transient_5xx_is_retried(gh: GitHubFake, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit()
    gh.inject_fault("5xx", 1)
    assert (await run(gh, "review", tmp_path, sha, allow_direct_push=True)).outcome is Outcome.PASSED
    gh.inject_fault("5xx", 2)
    down = await run(gh, "review", tmp_path, sha, allow_direct_push=True)
    assert down.outcome is Outcome.ERROR and "HTTP 503" in down.summary


async def test_unreachable_github_is_error(tmp_path: Path) -> None:
    gate = make_gate("review", {"api_url": "http://127.0.0.1:9", "attempts": 1}, tmp_path, secrets={"token": TOKEN})
    result = await gate.run(release_input(new_sha()))
    assert result.outcome is Outcome.ERROR and "could not measure" in result.summary


@pytest.mark.parametrize(("kind", "settings", "field"), [
    ("review", {"required_approvals": -1}, "gates[0].settings.required_approvals"),
    ("ci_status", {"required_check": ["lint"]}, "gates[0].settings.required_check"),
    ("dependency_scan", {"min_severity": "urgent"}, "gates[0].settings.min_severity"),
    ("release_tag", {"pattern": "v(("}, "gates[0].settings.pattern"),
    ("review", {"api_url": "http://github.example.com"}, "gates[0].settings.api_url"),
    ("review", {"repository": "not a repo"}, "gates[0].settings.repository"),
])
def test_bad_settings_name_the_field(tmp_path: Path, kind: str, settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_gate(kind, settings, tmp_path)
    assert err.value.location == field


def test_repository_comes_from_the_source_url_or_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        make_gate("review", {}, tmp_path, env=environment(repo="/srv/git/app"))
    assert err.value.location == "gates[0].settings.repository"
    gate = make_gate("review", {"repository": "aevon/other"}, tmp_path, env=environment(repo="/srv/git/app"))
    assert isinstance(gate, ReviewGate) and gate.repository == "aevon/other"
    from_url = make_gate("review", {}, tmp_path, env=environment("git@github.com:aevon/app.git"))
    assert isinstance(from_url, ReviewGate) and from_url.repository == "aevon/app"
