"""Promote only what changed (spec promotion.skip_unchanged): a validated, serving SHA is not deployed again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from flows.rollback import rollback_flow
from providers.state.store import StateStore
from tests.fakes.github import GitHubFake
from tests.integration.envs import memory_spec, write_spec
from tests.integration.flow_env import release_repo, rev
from tests.standins.memory import _WORLDS

pytestmark = pytest.mark.usefixtures("prefect_api", "state_dir")
TOKEN = "ghp_promotion_token_0123456789abcdef"
REPOSITORY = "aevon/app"


@pytest.fixture()
def gh() -> Iterator[GitHubFake]:
    fake = GitHubFake(token=TOKEN)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture()
def e(tmp_path: Path, gh: GitHubFake, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Staging of one memory service with a sleep check and GitHub records (the vendor calls we can count)."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    src = release_repo(tmp_path / "repo", ("v1", "v2", "v3"))
    shas = {t: rev(src, t) for t in ("v1", "v2", "v3")}
    for sha in shas.values():
        gh.repo(REPOSITORY).commit(sha)
    world = f"promo-{tmp_path.name}"
    spec = memory_spec(src, ["api"], world=world, fail_shas=[shas["v2"]])  # v2 fails its deploy: rolled back
    spec["records"] = {"github": {"repository": REPOSITORY, "api_url": gh.api_url}}
    spec["promotion"] = {"skip_unchanged": True}
    write_spec(tmp_path / "specs", "staging", spec)
    return {"specs": tmp_path / "specs", "world": world, **shas}


async def deploy(e: dict[str, Any], ref: str, **kw: Any) -> tuple[DeployReport, Any]:
    state = await deploy_flow("staging", ref, spec_dir=str(e["specs"]), return_state=True, **kw)
    return await report_of(state), state


def api(e: dict[str, Any]) -> Any:
    return _WORLDS[e["world"]]["api"]


async def history(ledger_url: str) -> list[Any]:
    async with StateStore(SecretStr(ledger_url)) as store:
        return await store.ledger.history("staging")


async def test_the_same_ref_again_is_nothing_to_promote(e: dict[str, Any], gh: GitHubFake, ledger_url: str) -> None:
    first, _ = await deploy(e, "v1")
    assert first.outcome == DeployOutcome.SUCCEEDED, first.error
    deployments, calls = len(api(e).deployments), len(gh.requests)

    again, state = await deploy(e, e["v1"])  # v1 by its SHA: the commit decides, not the ref
    assert again.outcome == DeployOutcome.NOTHING_TO_PROMOTE and again.exit_code == 0
    assert state.is_completed() and state.name == "NothingToPromote"
    assert again.note is not None and again.note.startswith(f"nothing to promote: {e['v1'][:12]} already serving "
                                                            "and validated since ")
    assert f"release {first.release_id}" in again.note and str(first.flow_run_id) in again.note
    assert state.message == again.note
    # nothing changed, nothing was asked: no release row (so no journal), no gate, no check, no vendor call
    assert again.release_id is None and again.gates == [] and again.checks == [] and again.services == []
    assert [r.release_id for r in await history(ledger_url)] == [first.release_id]
    assert len(api(e).deployments) == deployments and len(gh.requests) == calls

    forced, _ = await deploy(e, "v1", force=True)
    assert forced.outcome == DeployOutcome.SUCCEEDED, forced.error
    assert forced.release_id not in (None, first.release_id) and len(forced.checks) == 1
    assert len(api(e).deployments) == deployments + 1  # a new deployment of the same SHA
    assert len(gh.requests) > calls


async def test_a_rolled_back_sha_is_not_already_validated(e: dict[str, Any], ledger_url: str) -> None:
    assert (await deploy(e, "v1"))[0].outcome == DeployOutcome.SUCCEEDED
    bad, _ = await deploy(e, "v2")
    assert bad.outcome == DeployOutcome.ROLLED_BACK, bad.error
    again, _ = await deploy(e, "v2")  # never validated: deployed (and rolled back) again
    assert again.outcome == DeployOutcome.ROLLED_BACK and again.release_id is not None
    # v1 serves again, but only by a rollback since its validation: deployed and validated anew
    back, _ = await deploy(e, "v1")
    assert back.outcome == DeployOutcome.SUCCEEDED and back.checks, back.error
    assert (await deploy(e, "v1"))[0].outcome == DeployOutcome.NOTHING_TO_PROMOTE


async def test_a_rollback_command_after_validation_makes_it_deployable_again(e: dict[str, Any]) -> None:
    assert (await deploy(e, "v3"))[0].outcome == DeployOutcome.SUCCEEDED
    good, _ = await deploy(e, "v1")
    assert good.outcome == DeployOutcome.SUCCEEDED and good.release_id is not None
    undone = await rollback_flow("staging", good.release_id, "test: undo a good release", spec_dir=str(e["specs"]))
    assert undone.ok, undone.notes
    assert api(e).deployments[api(e).active].version == e["v3"]  # v1's row still says succeeded; its journal not
    again, _ = await deploy(e, "v1")
    assert again.outcome == DeployOutcome.SUCCEEDED and again.release_id != good.release_id, again.error


async def test_off_by_default(tmp_path: Path, e: dict[str, Any]) -> None:
    spec = memory_spec(Path(tmp_path / "repo"), ["api"], world=f"{e['world']}-off")
    write_spec(tmp_path / "off", "staging", spec)
    off = {**e, "specs": tmp_path / "off"}
    assert (await deploy(off, "v1"))[0].outcome == DeployOutcome.SUCCEEDED
    assert (await deploy(off, "v1"))[0].outcome == DeployOutcome.SUCCEEDED


@pytest.mark.usefixtures("ledger_url")
def test_cli_says_nothing_to_promote_and_force_deploys(tmp_path: Path) -> None:
    from tests.integration.test_cli import run

    spec = memory_spec(release_repo(tmp_path / "cli-repo"), ["api"])
    spec["promotion"] = {"skip_unchanged": True}
    write_spec(tmp_path / "cli", "dev", spec)
    first = run("deploy", "dev", "--ref", "v1", spec_dir=tmp_path / "cli")
    assert first.returncode == 0, first.stdout + first.stderr
    second = run("deploy", "dev", "--ref", "v1", "--json", spec_dir=tmp_path / "cli")
    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads(second.stdout)
    assert report["outcome"] == "NOTHING_TO_PROMOTE" and report["release_id"] is None
    assert report["note"].startswith("nothing to promote: ")
    plain = run("deploy", "dev", "--ref", "v1", spec_dir=tmp_path / "cli")
    assert plain.returncode == 0 and "NOTHING_TO_PROMOTE" in plain.stdout and "nothing to promote: " in plain.stdout
    forced = run("deploy", "dev", "--ref", "v1", "--force", "--json", spec_dir=tmp_path / "cli")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert json.loads(forced.stdout)["outcome"] == "SUCCEEDED"
