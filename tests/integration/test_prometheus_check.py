"""The prometheus check against a real Prometheus and blackbox exporter probing the sample app (v2 vs bad-slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.checks.base import CheckInput
from providers.models import Outcome, Release
from tests.integration.app_under_test import example_check, serving
from tests.integration.prometheus_support import ensure_prometheus, prometheus, wait_evaluated, wait_probed
from tests.sample_app import build_sample_repo, ensure_prisma_toolkit

pytestmark = pytest.mark.slow
REQUIRED = ["AevonApiSlow", "AevonApiDown"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    ensure_prometheus()
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


def no_services(tag: str = "v2") -> CheckInput:
    return CheckInput(release=Release(release_id=f"dev-{tag}", env="dev", ref=tag, sha="0" * 40), services={})


async def test_passes_on_v2_and_fails_on_bad_slow(repo: Path, tmp_path: Path) -> None:
    async with serving(repo, "v2", tmp_path) as v2, prometheus(tmp_path / "prom-v2", v2.api + "/status") as url:
        await wait_evaluated(url)
        await wait_probed(url)
        check = example_check("alerts", tmp_path, {"url": url, "required_rules": REQUIRED, "observe_s": 3,
                                                   "poll_s": 1})
        good = await check.run(no_services())
        assert good.outcome == Outcome.PASSED, good.summary
        assert good.metrics["polls"] >= 2
        # AevonApiProbed fires all along (severity warning): active, but never blocking
        assert good.metrics["alerts_active"] >= 1 and good.metrics["alerts_blocking"] == 0

    async with serving(repo, "bad-slow", tmp_path) as slow, \
            prometheus(tmp_path / "prom-slow", slow.api + "/status") as url:
        await wait_evaluated(url)
        check = example_check("alerts", tmp_path, {"url": url, "required_rules": REQUIRED, "observe_s": 30,
                                                   "poll_s": 1})
        bad = await check.run(no_services("bad-slow"))
        assert bad.outcome == Outcome.FAILED, bad.summary
        assert [f.location for f in bad.findings] == ["alert AevonApiSlow"]
        assert bad.findings[0].detail["labels"]["service"] == "api"
        assert "firing for api" in bad.findings[0].message

        # the same alert does not block a release of other services
        others = example_check("alerts", tmp_path, {"url": url, "required_rules": REQUIRED, "observe_s": 0,
                                                    "services": ["web"]})
        assert (await others.run(no_services("bad-slow"))).outcome == Outcome.PASSED


async def test_missing_and_broken_rules_fail(tmp_path: Path) -> None:
    ensure_prometheus()
    async with prometheus(tmp_path / "prom", "http://127.0.0.1:9/status", broken_rule=True) as url:
        await wait_evaluated(url)
        check = example_check("alerts", tmp_path, {
            "url": url, "required_rules": ["AevonApiSlow", "AevonBrokenRule", "AevonNoSuchRule"],
        })
        result = await check.run(no_services())
    assert result.outcome == Outcome.FAILED
    assert [f.location for f in result.findings] == ["rule AevonBrokenRule (group aevon)", "rule AevonNoSuchRule"]
    broken = result.findings[0].message
    assert "fails to evaluate" in broken and "invalid regular expression" in broken
    assert "is not loaded" in result.findings[1].message


async def test_unreachable_or_unevaluated_prometheus_is_error(tmp_path: Path) -> None:
    """Could not measure: ERROR (retried by the task), never PASSED and never FAILED."""
    ensure_prometheus()
    check = example_check("alerts", tmp_path, {"url": "http://127.0.0.1:9", "required_rules": REQUIRED})
    result = await check.run(no_services())
    assert result.outcome == Outcome.ERROR and "prometheus" in result.summary

    async with prometheus(tmp_path / "prom", "http://127.0.0.1:9/status") as url:
        check = example_check("alerts", tmp_path, {"url": url, "required_rules": REQUIRED})
        first = await check.run(no_services())  # right after start: rules not evaluated yet
        if first.outcome != Outcome.PASSED:  # (unless the first evaluation already happened)
            assert first.outcome == Outcome.ERROR and "not evaluated yet" in first.summary
