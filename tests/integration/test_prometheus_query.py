"""prometheus_query against a real Prometheus: constant PromQL vectors judged like Argo Rollouts' metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from providers.checks.base import CheckInput
from providers.checks.prometheus_query import make_check
from providers.models import Outcome, Release, ServiceVersion
from tests.integration.prometheus_support import ensure_prometheus, prometheus
from tests.unit.test_prometheus_query import context

pytestmark = pytest.mark.slow
SHA = "a" * 40


def canary_input() -> CheckInput:
    svc = ServiceVersion(service="api", version=SHA, url="http://127.0.0.1:9",
                         detail={"canary": True, "stable": "b" * 40})
    return CheckInput(release=Release(release_id="dev-x", env="dev", ref="v9", sha=SHA), services={"api": svc})


@pytest.fixture(scope="module")
def _tools() -> None:
    ensure_prometheus()


async def run(url: str, **settings: Any) -> Any:
    return await make_check(context({"url": url, **settings})).run(canary_input())


@pytest.mark.usefixtures("_tools")
async def test_conditions_limits_and_errors_on_a_real_prometheus(tmp_path: Path) -> None:
    async with prometheus(tmp_path, "http://127.0.0.1:9/") as url:
        ok = await run(url, query="vector(0.01)", success_condition="result[0] < 0.05", count=2, interval_s=0.2)
        assert ok.outcome == Outcome.PASSED, ok.summary
        assert ok.metrics["measurements_successful"] == 2 and ok.metrics["last_value"] == 0.01

        bad = await run(url, query="vector(0.2)", success_condition="result[0] < 0.05", count=3, interval_s=0.2)
        assert bad.outcome == Outcome.FAILED and "failure_limit 0" in bad.summary
        assert bad.metrics["measurements_failed"] == 1  # stops at the first failure past the limit

        tolerated = await run(url, query="vector(0.2)", success_condition="result[0] < 0.05", count=2,
                              interval_s=0.1, failure_limit=2)
        assert tolerated.outcome == Outcome.PASSED and tolerated.metrics["measurements_failed"] == 2

        # an empty vector: result[0] cannot be evaluated -> Error measurements, past the consecutive limit
        empty = await run(url, query='up{job="no-such-job"}', success_condition="result[0] < 0.05", count=3,
                          interval_s=0.1, consecutive_error_limit=1)
        assert empty.outcome == Outcome.ERROR and "consecutive errors" in empty.summary

        # the placeholders: the canary's SHA and the stable's, as label values Prometheus echoes back
        labelled = await run(url, query='label_replace(vector(1), "v", "{{sha}}-{{stable_sha}}", "", "")',
                             success_condition="result[0] == 1")
        assert labelled.outcome == Outcome.PASSED and SHA in labelled.summary and "b" * 40 in labelled.summary

        inconclusive = await run(url, query="scalar(vector(0.07))", success_condition="result < 0.05",
                                 failure_condition="result > 0.1")
        assert inconclusive.outcome == Outcome.ERROR and "inconclusive" in inconclusive.summary
