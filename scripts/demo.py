"""`make demo`: monitoring up, the sample app deployed to dev as v1, v2 and the broken v3 (rolled back to v2), then
v3-broken again as a canary of the api (10 % -> 50 % -> 100 %), aborted at its first step while v2 keeps serving."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import yaml
from dotenv import dotenv_values

from deployments.monitoring.stack import start_detached, start_local, stop_detached, stop_local

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".aevon"
MONITORING = STATE / "monitoring"  # pid files, logs, Prometheus's config and data
BLACKBOX_PORT = 8112  # the exporter Prometheus probes the api through (the other ports are dev.yaml's)
REPO = STATE / "sample-repo"
CANARY_SPECS = STATE / "demo-canary"  # dev.yaml with the api released in canary steps (written by the demo)
DB_NAME = "aevon_dev"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
NAMES = {0: "deployed", 1: "failed", 3: "refused before any change", 4: "failed validation and was rolled back",
         5: "rollback FAILED"}


async def reset_database() -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()


async def stop_services() -> None:
    from providers.targets.local.stop import stop_all

    for service in ("web", "api"):
        d = STATE / "targets" / "dev" / service
        if d.exists():
            await stop_all(d, service)


def ensure_env_file(path: Path, defaults: dict[str, str]) -> dict[str, str]:
    """Add the keys of `defaults` that `path` lacks (the file is created when missing); return the file's values."""
    have = {k: v for k, v in dotenv_values(path).items() if v} if path.exists() else {}
    missing = {k: v for k, v in defaults.items() if k not in have}
    if missing:
        text = path.read_text() if path.exists() else ""
        lines = "".join(f"{k}={v}\n" for k, v in missing.items())
        path.write_text(text + ("\n" if text and not text.endswith("\n") else "") + lines)
        path.chmod(0o600)
        print(f"{path.name}: added {', '.join(missing)}")
    return {**have, **missing}


def monitoring_targets() -> dict[str, int | str]:
    """Where dev.yaml's monitoring checks look (their URLs' ports) and what Prometheus probes (the api's /status)."""
    spec = yaml.safe_load((ROOT / "deployments" / "dev.yaml").read_text())
    out: dict[str, int | str] = {}
    for check in spec["validation"]["checks"]:
        if check["kind"] in ("sentry", "prometheus"):
            out[check["kind"]] = urlsplit(check["settings"]["url"]).port or 80
    api = next(s for s in spec["services"] if s["name"] == "api")
    out["probe_url"] = f"http://127.0.0.1:{api['settings']['port']}/status"
    return out


def start_monitoring(token: str) -> list[str]:
    """The Sentry stand-in and Prometheus (+ blackbox exporter) that dev.yaml's checks watch, detached."""
    stop_monitoring()
    targets, started = monitoring_targets(), []
    if isinstance(port := targets.get("sentry"), int):
        log = MONITORING / "sentry.log"
        log.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "tests.fakes.sentry", "--port", str(port)]
        start_detached(argv, MONITORING / "sentry.pid", log, f"http://127.0.0.1:{port}/api/0/",
                       env={**os.environ, "SENTRY_AUTH_TOKEN": token}, cwd=ROOT)
        started.append(f"Sentry stand-in http://127.0.0.1:{port}")
    if isinstance(port := targets.get("prometheus"), int):
        url = start_local(MONITORING, prometheus_port=port, blackbox_port=BLACKBOX_PORT,
                          probe_url=str(targets["probe_url"]))
        started.append(f"Prometheus {url}")
    return started


def stop_monitoring() -> list[str]:
    """Stop what start_monitoring started (pid files under .aevon/monitoring); the names of those running."""
    return stop_local(MONITORING) + (["sentry"] if stop_detached(MONITORING / "sentry.pid") else [])


def deploy(ref: str, env: dict[str, str], spec_dir: Path | None = None) -> int:
    where = ["--spec-dir", str(spec_dir)] if spec_dir else []
    print(f"\n$ aevon-deploy {' '.join([*where, 'deploy', 'dev', '--ref', ref])}", flush=True)
    cli = str(ROOT / ".venv" / "bin" / "aevon-deploy")
    return subprocess.run([cli, *where, "deploy", "dev", "--ref", ref], cwd=ROOT, env=env, check=False).returncode


def write_canary_spec() -> Path:
    """deployments/dev.yaml with the api in canary steps 10 -> 50 -> 100 and api-health judging each step.

    The same environment (its lock, its ledger, its running services): the canary shares the stable port 8101 with
    the v2 the third outcome left serving. No pause: the analysis runs as soon as a step's share is routed.
    """
    spec = yaml.safe_load((ROOT / "deployments" / "dev.yaml").read_text())
    spec["source"]["repo"] = str(REPO)
    api = next(s for s in spec["services"] if s["name"] == "api")
    api["strategy"] = {"kind": "canary", "steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]}
    next(c for c in spec["validation"]["checks"] if c["name"] == "api-health")["canary"] = True
    CANARY_SPECS.mkdir(parents=True, exist_ok=True)
    (CANARY_SPECS / "dev.yaml").write_text("# written by scripts/demo.py from deployments/dev.yaml\n"
                                           + yaml.safe_dump(spec, sort_keys=False))
    return CANARY_SPECS


class Watcher:
    """A user of the api's stable port during the canary deploy: a new connection every 20 ms to /status."""

    def __init__(self, url: str) -> None:
        self.url, self.seen, self.failed = url, Counter[str](), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                resp = httpx.get(self.url, headers={"Connection": "close"}, timeout=2)
                ok = resp.status_code == 200
                self.seen[str(resp.json().get("version")) if ok else f"HTTP {resp.status_code}"] += 1
            except (httpx.HTTPError, ValueError):
                self.failed += 1
            time.sleep(0.02)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


async def rollback_timing(nth: int = 0) -> str:
    """The summary line of the nth latest dev run (v3-broken): how soon its rollback began after the failing check."""
    from deployments.settings import AevonSettings
    from flows.report import DeployReport
    from flows.validation import time_to_rollback
    from providers.state.store import StateStore

    try:
        async with StateStore(AevonSettings().state_db_url) as store:
            rows = await store.ledger.history("dev", nth + 1)
        report = DeployReport.model_validate(rows[nth].report)
    except Exception as exc:  # the summary must not fail the demo
        return f"  time to rollback: unknown ({type(exc).__name__})"
    delay = time_to_rollback(report)
    rollback = next((s for s in report.steps if s.name == "rollback"), None)
    if delay is None or rollback is None:
        return f"  time to rollback: none ({report.ref} was not rolled back after a validation failure)"
    failed = ", ".join(f"{r.name} {r.outcome}" for r in report.checks if r.outcome in ("FAILED", "ERROR"))
    cancelled = sum(r.outcome == "CANCELLED" for r in report.checks)
    return (f"  {report.ref}: rollback began {delay:.2f}s after {failed} ({cancelled} check(s) cancelled or not "
            f"started), took {rollback.duration_s:.1f}s")


async def canary_outcome() -> tuple[bool, str]:
    """Whether the last dev run (the canary of v3-broken) stopped at its first step, and its summary lines."""
    from deployments.settings import AevonSettings
    from flows.report import DeployReport
    from providers.state.journal import CanaryEntry
    from providers.state.store import StateStore

    try:
        async with StateStore(AevonSettings().state_db_url) as store:
            report = DeployReport.model_validate((await store.ledger.history("dev", 1))[0].report)
            entries = [e for e in await store.ledger.entries(report.release_id or "") if isinstance(e, CanaryEntry)]
    except Exception as exc:  # the summary must not fail the demo
        return False, f"  canary: unknown ({type(exc).__name__})"
    steps = [s for s in report.steps if s.name.startswith("canary")]
    detail = entries[0].detail if entries else None
    first = [s.name for s in steps] == ["canary api: 10%"] and steps[0].outcome == "failed"
    if detail is None or detail.abort_s is None or not first:
        return False, f"  canary: {report.ref} was not aborted at its first step ({[s.name for s in steps]})"
    return True, (f"  canary {report.ref}: aborted at 10 % ({(detail.why or '')[:90]}); traffic back on stable "
                  f"{detail.abort_s * 1000:.0f} ms after the failing analysis")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stop", action="store_true", help="stop the demo's services and exit")
    args = ap.parse_args()
    asyncio.run(stop_services())
    stopped = stop_monitoring()
    if args.stop:
        print("demo services stopped" + (f" (monitoring: {', '.join(stopped)})" if stopped else ""))
        return 0
    subprocess.run([sys.executable, str(ROOT / "examples" / "sample-app" / "make_repo.py"), str(REPO)], check=True)
    asyncio.run(reset_database())
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}")
    # .env.dev: so that deploy-dev runs from the Prefect UI (`make serve`) find the database and the stand-in's token
    token = "sntrys_demo_" + secrets.token_urlsafe(24)
    values = ensure_env_file(ROOT / ".env.dev", {"DATABASE_URL": env["DATABASE_URL"], "SENTRY_AUTH_TOKEN": token})
    env["SENTRY_AUTH_TOKEN"] = values["SENTRY_AUTH_TOKEN"]  # the one the stand-in accepts, whatever the shell has
    env.setdefault("AEVON_STATE_DIR", str(STATE))
    monitoring = start_monitoring(env["SENTRY_AUTH_TOKEN"])
    if monitoring:
        print("monitoring up: " + ", ".join(monitoring), flush=True)
    outcomes = [(ref, deploy(ref, env)) for ref in ("v1", "v2", "v3-broken")]
    stable = str(httpx.get("http://127.0.0.1:8101/status", timeout=5).json().get("version"))  # v2's, e.g. 1.1.0
    t0 = time.monotonic()
    with Watcher("http://127.0.0.1:8101/status") as users:
        outcomes.append(("v3-broken as a canary", deploy("v3-broken", env, write_canary_spec())))
    canary_s = time.monotonic() - t0
    after = Counter(str(httpx.get(users.url, headers={"Connection": "close"}, timeout=5).json().get("version"))
                    for _ in range(20))
    status = httpx.get("http://127.0.0.1:8101/status", timeout=5).json()
    print("\n=== demo summary ===")
    for ref, code in outcomes:
        said = "canary aborted by its analysis, rolled back" if "canary" in ref and code == 4 else NAMES.get(code)
        print(f"  {ref:21} exit {code}: {said or 'unexpected'}")
    print(f"  serving now: api {status.get('version')} ({str(status.get('sha'))[:12]}) on http://127.0.0.1:8101,"
          " web on http://127.0.0.1:8102")
    if monitoring:
        print(f"  monitoring: {', '.join(monitoring)}")
    print(asyncio.run(rollback_timing(1)))  # the third outcome's run (the canary's came after it)
    canary_ok, canary_line = asyncio.run(canary_outcome())
    print(canary_line)
    served = ", ".join(f"{v} {n}" for v, n in users.seen.most_common())
    print(f"  during the canary deploy ({canary_s:.1f}s) the stable port answered {sum(users.seen.values())} new "
          f"connections: {served}; {users.failed} failed. After it: {dict(after)}")
    print(f"  Prefect UI: {env.get('PREFECT_API_URL', '').removesuffix('/api')}  |  stop everything: make stop")
    git = ["git", "-C", str(REPO), "rev-parse", "v2^{commit}"]
    v2 = subprocess.run(git, capture_output=True, text=True, check=True)
    stable_kept = users.failed == 0 and users.seen[stable] > 0 and after == Counter({stable: 20})
    ok = [c for _, c in outcomes] == [0, 0, 4, 4] and status.get("sha") == v2.stdout.strip()
    ok = ok and canary_ok and stable_kept
    print("  result: " + ("as expected (v1 ok, v2 ok, v3-broken rolled back to v2, its canary aborted at 10 % while "
                          "v2 kept serving)" if ok else "NOT as expected"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
