"""Bench: time to rollback when one fast check fails while slow ones run, fail fast vs wait-for-all, side by side.

One `memory` service (tests/standins) and `sleep` checks standing in for the dev validation: api-health fails
after 0.3 s while E2E (6 s), DAST (5 s), Sentry and Prometheus (3 s) run beside it, then the perf smoke (3 s)
runs alone, all in one stage so that only `validation.fail_fast` differs between the two runs:

- fail fast (the default): the failure cancels the running checks and the rollback subflow starts at once;
- wait for all (`fail_fast: false`, the behaviour before issue 11, kept only as this baseline): every check runs
  to its end, then the perf smoke, then the rollback.

Each run deploys v1 (all checks pass), then v2 (api-health FAILED) once each way, alternating. Figures, from the
Prefect API and the journal, medians of `--runs`:

- time_to_rollback_s: from the failing result (the end time of its `validate-api-health` task run) to the first
  rollback side effect (the first journal entry of the run marked undone: the previous version serves again);
- bad version served: from the end of the v2 service deploy step (v2 serves) to that same moment.

    PREFECT_API_URL=... AEVON_STATE_DB_URL=... .venv/bin/python bench/bench_fail_fast.py [--runs 3]
(`make bench` sets both.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("AEVON_PLUGINS", "tests.standins")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

FAIL_AFTER_S = 0.3
SLOW = {"web-e2e": 6.0, "web-dast": 5.0, "errors": 3.0, "alerts": 3.0}
PERF_S = 3.0


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@aevon.dev"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for tag in ("v1", "v2"):
        (repo / "VERSION").write_text(tag + "\n")
        subprocess.run([*git, "add", "VERSION"], check=True)
        subprocess.run([*git, "commit", "-qm", tag], check=True)
        subprocess.run([*git, "tag", tag], check=True)
    return repo


def spec(repo: Path, world: str, health: str, fail_fast: bool) -> dict[str, Any]:
    def sleep(name: str, seconds: float, **extra: Any) -> dict[str, Any]:
        outcome = health if name == "api-health" else "PASSED"
        return {"name": name, "kind": "sleep", "error_retries": 0, **extra,
                "settings": {"seconds": seconds, "outcome": outcome}}

    checks = [sleep("api-health", FAIL_AFTER_S), *(sleep(n, s) for n, s in SLOW.items()),
              sleep("api-perf", PERF_S, exclusive=True)]
    return {
        "environment": "bench",
        "source": {"repo": str(repo)},
        "services": [{"name": "api", "provider": "memory", "settings": {"deploy_s": 0.2, "world": world}}],
        "validation": {"checks": checks, "fail_fast": fail_fast,
                       "stages": [{"name": "all", "checks": [c["name"] for c in checks]}]},
        "rollback": {"health_recheck": False},
    }


def write_spec(spec_dir: Path, body: dict[str, Any]) -> None:
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "bench.yaml").write_text(yaml.safe_dump(body, sort_keys=False))


async def deploy(spec_dir: Path, body: dict[str, Any], ref: str) -> tuple[Any, str]:
    from flows.deploy import deploy_flow, report_of

    await asyncio.to_thread(write_spec, spec_dir, body)
    state = await deploy_flow("bench", ref, spec_dir=str(spec_dir), return_state=True)
    return await report_of(state), str(state.state_details.flow_run_id)


async def measure(report: Any, flow_run_id: str) -> tuple[float, float]:
    """(time to rollback, bad version served) of one rolled-back run, in seconds."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from deployments.settings import AevonSettings
    from providers.state.journal import JournalState
    from providers.state.store import StateStore

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
    failed = next(r for r in runs if r.name == "validate-api-health")
    assert failed.end_time is not None
    async with StateStore(AevonSettings().state_db_url) as store:
        entries = await store.ledger.entries(report.release_id)
    undone = min(e.updated_at for e in entries if e.state == JournalState.UNDONE and e.updated_at is not None)
    deployed = next(s for s in report.steps if s.name.startswith("deploy services"))
    serving = deployed.started_at.timestamp() + deployed.duration_s
    return undone.timestamp() - failed.end_time.timestamp(), undone.timestamp() - serving


async def bench(runs: int) -> int:
    figures: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        repo = make_repo(tmp)
        for i in range(runs):
            world = f"ff-{i}"
            report, _ = await deploy(tmp / "specs", spec(repo, world, "PASSED", True), "v1")
            if report.outcome != "SUCCEEDED":
                print(f"# v1 did not deploy: {report.outcome} {report.error}")
                return 1
            for fail_fast in (True, False) if i % 2 == 0 else (False, True):
                report, run_id = await deploy(tmp / "specs", spec(repo, world, "FAILED", fail_fast), "v2")
                if report.outcome != "ROLLED_BACK":
                    print(f"# v2 was not rolled back: {report.outcome} {report.error}")
                    return 1
                ttr, served = await measure(report, run_id)
                figures[fail_fast].append((ttr, served))
                cancelled = sum(r.outcome == "CANCELLED" for r in report.checks)
                print(f"# run {i + 1}/{runs} {'fail fast   ' if fail_fast else 'wait for all'}: time to rollback "
                      f"{ttr:.2f}s, bad version served {served:.2f}s, {cancelled} check(s) cancelled", flush=True)

    def med(fail_fast: bool, k: int) -> float:
        return statistics.median(f[k] for f in figures[fail_fast])

    print(f"time_to_rollback_s: {med(True, 0):.2f} (fail fast; goal < 1 s)")
    print(f"time_to_rollback_s: {med(False, 0):.2f} (wait for all, the old behaviour: baseline)")
    print(f"bad_version_served_s: {med(True, 1):.2f} (fail fast) vs {med(False, 1):.2f} (wait for all): from v2 "
          f"serving to v1 serving again; checks: api-health fails after {FAIL_AFTER_S:g}s beside "
          + ", ".join(f"{n} {s:g}s" for n, s in SLOW.items()) + f", then api-perf {PERF_S:g}s alone")
    api = os.environ.get("PREFECT_API_URL") or "ephemeral (no PREFECT_API_URL)"
    print(f"# medians of {runs} runs each way; Prefect API: {api}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    return asyncio.run(bench(args.runs))


if __name__ == "__main__":
    sys.exit(main())
