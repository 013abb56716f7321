"""The DAST check against the real sample app with the real wapiti3: good vs bad-xss, the baseline, a rollback."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flows.report import DeployOutcome
from providers.checks.dast.check import DastCheck, make_check
from providers.models import CheckResult, Outcome
from providers.state.baselines import BaselineStore
from tests.integration.app_under_test import Serving, serving
from tests.integration.checks_support import check_input, context, deploy, dev_env, rev, serving_sha, shipped_check
from tests.sample_app import ROOT, build_sample_repo, ensure_prisma_toolkit

pytestmark = pytest.mark.slow
XSS = "Reflected Cross Site Scripting: GET /search (q)"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    subprocess.run(["bash", str(ROOT / "scripts" / "setup-wapiti.sh")], check=True, capture_output=True)
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


@pytest.fixture(scope="module")
async def v2(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Serving]:
    async with serving(repo, "v2", tmp_path_factory.mktemp("v2")) as app:
        yield app


@pytest.fixture(scope="module")
async def bad_xss(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Serving]:
    async with serving(repo, "bad-xss", tmp_path_factory.mktemp("bad-xss")) as app:
        yield app


def shipped(tmp: Path) -> DastCheck:
    return make_check(context(tmp, "dast"))


def labels(result: CheckResult, status: str) -> list[str]:
    return [f"{f.detail['category']}: {f.detail['method']} {f.detail['path']}" + (f" ({f.detail['key']})"
            if f.detail.get("key") else "") for f in result.findings if f.detail.get("status") == status]


async def test_passes_on_v2_and_fails_on_bad_xss_as_new(v2: Serving, bad_xss: Serving, tmp_path: Path) -> None:
    check = shipped(tmp_path)
    good = await check.run(check_input(v2))
    assert good.outcome == Outcome.PASSED, good.summary
    assert good.metrics["findings.new_blocking"] == 0 and good.metrics["wapiti.crawled_pages"] > 0
    assert "no baseline yet" in good.summary
    await check.record_baseline(check_input(v2), good)
    saved = BaselineStore(tmp_path / "baselines").latest("web-dast")
    assert saved is not None and saved["release_id"] == v2.release().release_id
    assert len(saved["findings"]) == good.metrics["findings.total"]

    bad = await check.run(check_input(bad_xss))
    assert bad.outcome == Outcome.FAILED, bad.summary
    assert labels(bad, "new") == [XSS]
    assert bad.findings[0].message.startswith("NEW MEDIUM Reflected Cross Site Scripting")
    assert f"1 new (1 at or above MEDIUM), {int(good.metrics['findings.total'])} unchanged, 0 fixed" in bad.summary
    assert f"vs baseline {v2.release().release_id}; new: MEDIUM {XSS}" in bad.summary
    report = json.loads(Path(bad.artifacts["wapiti report"]).read_text())
    assert report["vulnerabilities"]["Reflected Cross Site Scripting"][0]["parameter"] == "q"
    assert Path(bad.artifacts["findings"]).parent == tmp_path / "artifacts" / bad_xss.release().release_id


async def test_a_known_finding_does_not_fail_and_a_fixed_one_is_listed(bad_xss: Serving, v2: Serving,
                                                                       tmp_path: Path) -> None:
    check = shipped(tmp_path)
    first = await check.run(check_input(bad_xss))
    assert first.outcome == Outcome.FAILED  # no baseline: the XSS is new
    await check.record_baseline(check_input(bad_xss), first)  # accepted, as if that release had been recorded good

    again = await check.run(check_input(bad_xss))
    assert again.outcome == Outcome.PASSED, again.summary
    assert XSS in labels(again, "unchanged") and labels(again, "new") == []

    fixed = await check.run(check_input(v2))
    assert fixed.outcome == Outcome.PASSED
    assert [f.message for f in fixed.findings if f.detail["status"] == "fixed"] == [
        "FIXED MEDIUM Reflected Cross Site Scripting: GET /search (q)"]
    assert fixed.metrics["findings.fixed"] == 1


async def test_a_lower_fail_level_or_default_level_decides(bad_xss: Serving, tmp_path: Path) -> None:
    """The default fail level (HIGH) lets wapiti's MEDIUM XSS through; ERROR when wapiti cannot run."""
    default = make_check(context(tmp_path / "a", "dast", {}))
    result = await default.run(check_input(bad_xss))
    assert result.outcome == Outcome.PASSED and XSS in labels(result, "new")
    settings = {**shipped_check("dast")["settings"], "wapiti": {"executable": str(tmp_path / "no-wapiti")}}
    missing = await make_check(context(tmp_path / "b", "dast", settings)).run(check_input(bad_xss))
    assert missing.outcome == Outcome.ERROR and "wapiti is not installed" in missing.summary


async def test_refuses_a_host_that_is_not_loopback(v2: Serving, tmp_path: Path) -> None:
    check = make_check(context(tmp_path, "dast", {"url": "http://example.com"}))
    result = await check.run(check_input(v2))
    assert result.outcome == Outcome.ERROR and "not a loopback address" in result.summary
    assert not (tmp_path / "artifacts").exists()


async def test_flow_bad_xss_fails_and_rolls_back_to_v2(
    repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str
) -> None:
    async with dev_env(repo, tmp_path, state_dir, monkeypatch, {"health", "dast"}) as (spec_dir, ports):
        good = await deploy(spec_dir, "v2")
        assert good.outcome == DeployOutcome.SUCCEEDED, good.error
        baseline = BaselineStore(state_dir / "baselines" / "dev").latest("web-dast")
        assert baseline is not None and baseline["release_id"] == good.release_id

        bad = await deploy(spec_dir, "bad-xss")
        assert bad.outcome == DeployOutcome.ROLLED_BACK, bad.error
        failed = [c for c in bad.checks if c.outcome != "PASSED"]
        assert [c.name for c in failed] == ["web-dast"]
        assert f"new: MEDIUM {XSS}" in failed[0].summary
        assert bad.rollback is not None and bad.rollback.ok
        assert await serving_sha(ports["web"]) == rev(repo, "v2")
        after = BaselineStore(state_dir / "baselines" / "dev").latest("web-dast")
        assert after is not None and after["release_id"] == good.release_id  # a failed release records nothing
