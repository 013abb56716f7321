"""The perf check (locust in a child process) against the sample app: v2 passes, bad-slow fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.spec import CheckSpec, EnvironmentSpec
from providers.checks.base import VALIDATION, CheckContext, CheckInput
from providers.checks.perf.check import PerfCheck, make_check
from providers.errors import ConfigError
from providers.models import Outcome, Release, ServiceVersion
from tests.integration.app_under_test import serving
from tests.integration.envs import ROOT
from tests.sample_app import build_sample_repo, ensure_prisma_toolkit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


def dev_perf(tmp: Path, baselines: Path, **overrides: Any) -> PerfCheck:
    """deployments/dev.yaml's `api-perf` check, settings overridden, baselines in `baselines`."""
    raw = yaml.safe_load((ROOT / "deployments" / "dev.yaml").read_text())
    env = EnvironmentSpec.model_validate(raw)
    index, spec = next((i, c) for i, c in enumerate(env.validation.checks) if c.kind == "perf")
    spec = spec.model_copy(update={"settings": {**spec.settings, **overrides}})
    return make_check(CheckContext(env=env, spec=spec, secrets={}, artifacts_dir=tmp / "artifacts",
                                   baseline_dir=baselines, section=VALIDATION, index=index))


async def test_passes_on_v2_then_bad_slow_regresses(repo: Path, tmp_path: Path) -> None:
    baselines = tmp_path / "baselines"
    check = dev_perf(tmp_path, baselines)
    async with serving(repo, "v2", tmp_path) as v2:
        inp = CheckInput(release=v2.release(), services=v2.services())
        good = await check.run(inp)
        assert good.outcome == Outcome.PASSED, good.summary
        for label in ("GET /status", "GET /health"):
            assert good.metrics[f"{label}.requests"] > 10
            assert 0 < good.metrics[f"{label}.p50_ms"] <= good.metrics[f"{label}.p95_ms"] <= good.metrics[
                f"{label}.p99_ms"] <= good.metrics[f"{label}.max_ms"]
            assert good.metrics[f"{label}.rps"] > 0 and good.metrics[f"{label}.error_rate"] == 0
        figures = json.loads(Path(good.artifacts["figures"]).read_text())
        assert figures["users"] == 5 and set(figures["endpoints"]) == {"GET /status", "GET /health"}
        await check.record_baseline(inp, good)  # what the deploy flow does once v2 is recorded good

        # an endpoint answering the wrong status counts as failed requests: over the error-rate limit
        wrong = await dev_perf(tmp_path, tmp_path / "none", duration_s=1,
                               endpoints=[{"path": "/no-such-page"}]).run(inp)
        assert wrong.outcome == Outcome.FAILED and wrong.metrics["GET /no-such-page.error_rate"] == 1.0
        assert wrong.findings[0].severity == "CRITICAL"

    async with serving(repo, "bad-slow", tmp_path) as slow:
        inp = CheckInput(release=slow.release(), services=slow.services())
        bad = await dev_perf(tmp_path, baselines).run(inp)
        assert bad.outcome == Outcome.FAILED, bad.summary
        regressed = [f for f in bad.findings if f.location == "GET /status"]
        assert regressed and "the last good release's" in regressed[0].message
        assert regressed[0].detail["baseline_release"] == v2.release().release_id
        assert bad.metrics["GET /status.p50_ms"] >= 300  # the 300 ms the version adds

        # without a baseline, an absolute limit catches it too
        strict = dev_perf(tmp_path, tmp_path / "empty", endpoints=[{"path": "/status", "p95_ms": 250}])
        absolute = await strict.run(inp)
        assert absolute.outcome == Outcome.FAILED
        assert [f.detail.get("limit") for f in absolute.findings] == [250]


def test_only_loopback_targets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        dev_perf(tmp_path, tmp_path, url="http://10.0.0.8:8080")
    check = dev_perf(tmp_path, tmp_path)
    inp = CheckInput(release=Release(release_id="r", env="dev", ref="v2", sha="0" * 40),
                     services={"api": ServiceVersion(service="api", version="x", url="http://example.com")})
    with pytest.raises(ConfigError, match="loopback"):
        check._base_url(inp)


def test_settings_are_bounded(tmp_path: Path) -> None:
    env = EnvironmentSpec.model_validate(yaml.safe_load((ROOT / "deployments" / "dev.yaml").read_text()))
    for bad in ({"users": 500}, {"duration_s": 3600}, {"endpoints": []}, {"regression": {"factor": 0.9}}):
        spec = CheckSpec(name="p", kind="perf", service="api",
                         settings={"endpoints": [{"path": "/status"}], **bad})
        with pytest.raises(ConfigError):
            make_check(CheckContext(env=env, spec=spec, secrets={}, artifacts_dir=tmp_path, baseline_dir=tmp_path,
                                    section=VALIDATION, index=0))
