"""Each post-deploy gate through the real deploy flow: v2 passes, its bad version fails it, the rollback restores v2.

Real PostgreSQL, Prisma, local services and a Prefect server on PostgreSQL; the perf gate runs locust, the Sentry
gate talks to the Sentry fake (the app's sentry-sdk sends to its envelope endpoint), the Prometheus gate asks a real
Prometheus whose blackbox exporter probes the api's stable port. Each test keeps only the health checks of the dev
spec besides the gate under test, so that the gate alone decides.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from providers.targets.local.target import stop_all
from tests.fakes.sentry import FakeSentry
from tests.integration.app_under_test import example_spec
from tests.integration.envs import sample_dev_spec, write_spec
from tests.integration.prometheus_support import ensure_prometheus, prometheus
from tests.pg import temp_database
from tests.sample_app import build_sample_repo, ensure_prisma_toolkit

pytestmark = [pytest.mark.usefixtures("prefect_api", "ledger_url"), pytest.mark.slow]
SENTRY_TOKEN = "sntrys_flow_test_token_never_printed_42"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry(tokens=[SENTRY_TOKEN]).start()
    try:
        yield fake
    finally:
        fake.stop()


def rev(repo: Path, ref: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", f"{ref}^{{commit}}"], capture_output=True,
                          text=True, check=True).stdout.strip()


def dev_spec(repo: Path, keep: set[str], extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The shipped dev spec on free ports, with only the checks of kinds `keep`, plus `extra` checks."""
    spec = sample_dev_spec(repo)
    spec["validation"]["checks"] = [c for c in spec["validation"]["checks"] if c["kind"] in keep] + (extra or [])
    return spec


def example_gate(name: str, **settings: Any) -> dict[str, Any]:
    """A check of deployments/examples/monitoring.yaml with `settings` merged over its own."""
    check: dict[str, Any] = next(c for c in example_spec()["validation"]["checks"] if c["name"] == name)
    return {**check, "settings": {**check["settings"], **settings}}


@asynccontextmanager
async def environment(spec: dict[str, Any], tmp: Path, state_dir: Path,
                      monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
    """Write the spec, give it a fresh app database; stop its services afterwards. Yields the spec folder."""
    write_spec(tmp / "specs", "dev", spec)
    async with temp_database() as db_url:
        monkeypatch.setenv("DATABASE_URL", db_url)
        try:
            yield tmp / "specs"
        finally:
            for name in ("web", "api"):
                await stop_all(state_dir / "targets" / "dev" / name, name)


async def deploy(spec_dir: Path, ref: str) -> DeployReport:
    return await report_of(await deploy_flow("dev", ref, spec_dir=str(spec_dir), return_state=True))


async def serving_sha(port: int) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        return str((await client.get(f"http://127.0.0.1:{port}/health")).json()["sha"])


async def good_then_bad(spec_dir: Path, repo: Path, spec: dict[str, Any], bad: str, gate: str) -> DeployReport:
    """Deploy v2 (every check passes), then `bad`: only `gate` fails, the rollback subflow runs, v2 serves again."""
    api_port = next(s["settings"]["port"] for s in spec["services"] if s["name"] == "api")
    good = await deploy(spec_dir, "v2")
    assert good.outcome == DeployOutcome.SUCCEEDED, (good.error, [(c.name, c.summary) for c in good.checks])
    assert {c.name: c.outcome.value for c in good.checks}[gate] == "PASSED"
    assert good.warmup["requests"] > 0 and good.warmup["failed"] == 0

    broken = await deploy(spec_dir, bad)
    assert broken.outcome == DeployOutcome.ROLLED_BACK, broken.error
    assert [c.name for c in broken.checks if c.outcome != "PASSED"] == [gate], broken.checks
    assert broken.error is not None and gate in broken.error
    assert broken.rollback is not None and broken.rollback.ok
    assert [s.service for s in broken.rollback.services] == ["web", "api"]
    assert await serving_sha(api_port) == rev(repo, "v2")

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[broken.flow_run_id]))
        )
    assert [r.name for r in runs] == [f"rollback-dev-{broken.release_id}"]
    return broken


async def test_perf_gate_rolls_back_bad_slow(repo: Path, tmp_path: Path, state_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    spec = dev_spec(repo, {"health", "perf"})
    async with environment(spec, tmp_path, state_dir, monkeypatch) as spec_dir:
        broken = await good_then_bad(spec_dir, repo, spec, "bad-slow", "api-perf")
    perf = next(c for c in broken.checks if c.name == "api-perf")
    assert any(f.location == "GET /status" and "last good release" in f.message for f in perf.findings)
    latest = json.loads((state_dir / "baselines" / "dev" / "api-perf" / "latest.json").read_text())
    assert latest["sha"] == rev(repo, "v2")  # the failed release recorded no baseline


async def test_sentry_gate_rolls_back_bad_errors(repo: Path, tmp_path: Path, state_dir: Path, sentry: FakeSentry,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """bad-errors answers 200, as fast as v2 (the perf smoke beside it passes), but its scheduler reports errors."""
    gate = example_gate("errors", url=sentry.url, environment="dev", window_s=6, before_window_s=6)
    spec = dev_spec(repo, {"health", "perf"}, [gate])
    api = next(s for s in spec["services"] if s["name"] == "api")
    api["settings"]["env"] = {**api["settings"].get("env", {}), "SENTRY_DSN": sentry.dsn(1),
                              "SENTRY_ENVIRONMENT": "dev"}
    monkeypatch.setenv("SENTRY_AUTH_TOKEN", SENTRY_TOKEN)
    async with environment(spec, tmp_path, state_dir, monkeypatch) as spec_dir:
        broken = await good_then_bad(spec_dir, repo, spec, "bad-errors", "errors")
    errors = next(c for c in broken.checks if c.name == "errors")
    assert errors.metrics["errors_after"] >= 10 and errors.findings[0].severity == "CRITICAL"
    assert set(sentry.releases) == {rev(repo, "v2"), rev(repo, "bad-errors")}
    assert all(d["environment"] == "dev" for ds in sentry.deploys.values() for d in ds)
    assert SENTRY_TOKEN not in broken.model_dump_json()


async def test_prometheus_gate_rolls_back_bad_slow(repo: Path, tmp_path: Path, state_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The blackbox exporter probes the api's stable port: what users hit, whichever version serves."""
    ensure_prometheus()
    spec = dev_spec(repo, {"health"})
    api_port = next(s["settings"]["port"] for s in spec["services"] if s["name"] == "api")
    async with prometheus(tmp_path / "prom", f"http://127.0.0.1:{api_port}/status") as url:
        spec["validation"]["checks"].append(example_gate("alerts", url=url, observe_s=10, poll_s=1))
        async with environment(spec, tmp_path, state_dir, monkeypatch) as spec_dir:
            broken = await good_then_bad(spec_dir, repo, spec, "bad-slow", "alerts")
    alerts = next(c for c in broken.checks if c.name == "alerts")
    assert [f.location for f in alerts.findings] == ["alert AevonApiSlow"]
