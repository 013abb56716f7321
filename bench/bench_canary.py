"""Bench: what users see during a bad deploy, all_at_once vs canary (first step 10 %), through the local proxy.

One `local` service (real processes behind the real stable-port proxy, tests/fakes/versioned_app.py) and one
health check on /health. v1 is healthy; `sick` answers 503 on /health. Steady user traffic (one request on a new
connection every `--gap-ms`, GET /health through the stable port) runs from before the bad deploy starts until
it has ended; a failed user request is a 5xx or no answer. Each round deploys v1, then `sick`:

- all_at_once: sick takes all traffic, validation's health check fails, the rollback puts v1 back;
- canary: sick takes 10 % of new connections for `--pause-s`, then the canary analysis (the same health check,
  `canary: true`, against the canary's own URL) fails and aborts the canary.

Figures (medians of `--runs`): the share of failed user requests during the bad deploy, and for the canary the
time from the first failing analysis result to all traffic back on stable (the journal's `abort_s`).

    PREFECT_API_URL=... AEVON_STATE_DB_URL=... AEVON_STATE_DIR=... .venv/bin/python bench/bench_canary.py
(`make bench` sets them.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def spec(repo: Path, port: int, canary: bool, pause_s: float) -> dict[str, Any]:
    service: dict[str, Any] = {
        "name": "api", "provider": "local", "ready_timeout_s": 60,
        "settings": {"command": ["{python}", "app.py", "--port", "{port}"], "port": port, "startup_timeout_s": 20,
                     "stop_grace_s": 3},
    }
    if canary:
        service["strategy"] = {"kind": "canary", "steps": [{"weight": 10, "pause_s": pause_s}, {"weight": 100}]}
    check = {"name": "api-health", "kind": "health", "service": "api", "canary": canary, "error_retries": 0,
             "settings": {"endpoints": [{"path": "/health"}]}}
    return {"environment": "bench", "source": {"repo": str(repo)}, "services": [service],
            "validation": {"checks": [check]}}


class Users:
    """Steady traffic: one GET /health on a new connection every `gap_s`; counts answers and failures."""

    def __init__(self, url: str, gap_s: float) -> None:
        self.url, self.gap_s = url, gap_s
        self.total = self.failed = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(trust_env=False, timeout=5, limits=limits) as client:
            while not self._stop.is_set():
                self.total += 1
                try:
                    resp = await client.get(self.url + "/health", headers={"Connection": "close"})
                    self.failed += resp.status_code >= 500
                except httpx.HTTPError:
                    self.failed += 1
                await asyncio.sleep(self.gap_s)

    def stop(self) -> None:
        self._stop.set()


async def deploy(spec_dir: Path, ref: str) -> Any:
    from flows.deploy import deploy_flow, report_of

    return await report_of(await deploy_flow("bench", ref, spec_dir=str(spec_dir), return_state=True))


async def abort_seconds(release_id: str) -> float | None:
    from pydantic import SecretStr

    from providers.state.journal import CanaryEntry
    from providers.state.store import StateStore

    state = await StateStore(SecretStr(os.environ["AEVON_STATE_DB_URL"])).open()
    try:
        entries = await state.ledger.entries(release_id)
    finally:
        await state.close()
    return next((e.detail.abort_s for e in entries if isinstance(e, CanaryEntry)), None)


async def one(tmp: Path, shas: dict[str, str], canary: bool, pause_s: float, gap_s: float) -> tuple[float, float]:
    from providers.targets.local.process import free_port
    from providers.targets.local.target import stop_all

    port = free_port(())
    spec_dir = tmp / f"specs-{'canary' if canary else 'all'}-{port}"
    spec_dir.mkdir()
    (spec_dir / "bench.yaml").write_text(yaml.safe_dump(spec(tmp / "repo", port, canary, pause_s), sort_keys=False))
    state = Path(os.environ["AEVON_STATE_DIR"]) / "targets" / "bench" / "api"
    try:
        first = await deploy(spec_dir, shas["v1"])
        assert first.outcome == "SUCCEEDED", first.error
        users = Users(f"http://127.0.0.1:{port}", gap_s)
        traffic = asyncio.create_task(users.run())
        await asyncio.sleep(0.5)  # users before the deploy starts
        bad = await deploy(spec_dir, shas["sick"])
        await asyncio.sleep(0.5)  # and after it ended
        users.stop()
        await traffic
        assert bad.outcome == "ROLLED_BACK", (bad.outcome, bad.error)
        abort = await abort_seconds(bad.release_id) if canary else None
        return users.failed / max(1, users.total), abort if abort is not None else float("nan")
    finally:
        await stop_all(state, "api", grace=3)


async def bench(runs: int, pause_s: float, gap_s: float) -> int:
    from tests.contract.harness_local import build_app_repo

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        shas = await asyncio.to_thread(build_app_repo, tmp / "repo", [("v1", "ok"), ("sick", "unhealthy")])
        figures: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(runs):
            for canary in (False, True):
                figures[canary].append(await one(tmp, shas, canary, pause_s, gap_s))
    print(f"bad version (503 on /health), {runs} run(s) each, one user request every {gap_s * 1000:.0f} ms, "
          f"canary first step 10 % for {pause_s:g} s")
    for canary, label in ((False, "all_at_once"), (True, "canary 10%")):
        share = statistics.median(f[0] for f in figures[canary])
        line = f"  {label:12s} failed user requests during the bad deploy: {share * 100:5.2f} %"
        if canary:
            line += (f"; first failing analysis -> traffic back on stable: "
                     f"{statistics.median(f[1] for f in figures[canary]) * 1000:.0f} ms")
        print(line)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pause-s", type=float, default=2.0, help="time at the 10 %% step before the analysis")
    parser.add_argument("--gap-ms", type=float, default=10.0, help="time between two user requests")
    args = parser.parse_args()
    return asyncio.run(bench(args.runs, args.pause_s, args.gap_ms / 1000))


if __name__ == "__main__":
    sys.exit(main())
