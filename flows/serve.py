"""`make serve` / `make stop`: a Prefect server on PostgreSQL, the work pool, the deployments, a worker, evidence."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

from flows import evidence
from flows.server import start, stop_pid, wait_ready

ROOT = Path(__file__).resolve().parents[1]
POOL = "aevon-local"


async def prepare(pool: str) -> list[str]:
    """Create the process work pool and the notification automations (deployments/automations/, sent to the
    `aevon-notify` block: flows/notify.py), idempotently; returns the environments (each locked by its ledger lease)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    from deployments.loader import available_environments

    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
    from flows.notify import prepare_notifications

    print(await prepare_notifications())
    return available_environments()


def deploy_all(env: dict[str, str]) -> None:
    """`prefect --no-prompt deploy` of prefect.yaml's local deployments (the *-gke ones build a Docker image: not
    here), with AEVON_HOME pointing at this checkout."""
    names = [arg for name in ("deploy-dev", "deploy-staging", "deploy-prod") for arg in ("--name", name)]
    out = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", *names], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"prefect deploy --all failed:\n{(out.stdout + out.stderr)[-3000:]}")


def start_worker(env: dict[str, str], pool: str, home: Path) -> int:
    """A process worker, detached, logging to <home>/worker.log; returns its pid."""
    with open(home / "worker.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return proc.pid


def start_evidence(port: int | None, home: Path) -> str | None:
    """The evidence server (flows/evidence.py) on `port` for the worker's runs; returns the AEVON_EVIDENCE_URL they
    get. None: not started (no port, or AEVON_EVIDENCE_URL already names a server of the operator's own)."""
    if os.environ.get("AEVON_EVIDENCE_URL"):
        return os.environ["AEVON_EVIDENCE_URL"]
    if not port:
        return None
    from deployments.settings import AevonSettings

    evidence.start(AevonSettings().state_dir, port, home)
    return evidence.evidence_url(port)


def serve(port: int, db: str, home: Path, pool: str = POOL, evidence_port: int | None = None) -> dict[str, int]:
    """Start everything; returns the pids (server, worker). Safe to call again: what runs is kept.

    With `evidence_port`, the state folder's artifacts/ are served there and the worker's runs link their
    screenshots and reports to it (AEVON_EVIDENCE_URL), so they open from the Prefect UI."""
    home.mkdir(parents=True, exist_ok=True)
    api = f"http://127.0.0.1:{port}/api"
    pids: dict[str, int] = {}
    server_pid = home / f"server-{port}.pid"
    try:
        wait_ready(api, timeout=2)
    except TimeoutError:
        proc = start(db, port, home, home / "server.log")
        server_pid.write_text(str(proc.pid))
    pids["server"] = int(server_pid.read_text()) if server_pid.exists() else 0
    env = {**os.environ, "PREFECT_API_URL": api, "AEVON_HOME": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if (evidence_url := start_evidence(evidence_port, home)) is not None:
        env["AEVON_EVIDENCE_URL"] = evidence_url
    os.environ["PREFECT_API_URL"] = api
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}):  # this process may have loaded its settings already
        asyncio.run(prepare(pool))
    deploy_all(env)
    worker_pid = home / "worker.pid"
    if worker_pid.exists():
        stop_pid(int(worker_pid.read_text()), grace=40)
    pids["worker"] = start_worker(env, pool, home)
    worker_pid.write_text(str(pids["worker"]))
    return pids


def stop(port: int, home: Path) -> None:
    """Worker first (it may take a while to honour SIGTERM), then the server, then the evidence server."""
    for name in ("worker.pid", f"server-{port}.pid"):
        pidfile = home / name
        if pidfile.exists():
            stop_pid(int(pidfile.read_text()), grace=40)
            pidfile.unlink()
    evidence.stop(home)


def main() -> None:
    """Command line of `make serve` and `make stop`."""
    ap = argparse.ArgumentParser(prog="python -m flows.serve", description=main.__doc__)
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--port", type=int, default=4200)
    ap.add_argument("--db", default="postgresql+asyncpg://postgres@127.0.0.1:5432/aevon_prefect")
    ap.add_argument("--home", type=Path, default=ROOT / ".aevon" / "prefect")
    ap.add_argument("--evidence-port", type=int, default=evidence.DEFAULT_PORT,
                    help="where the state folder's artifacts/ are served for the UI's links (0: not served)")
    a = ap.parse_args()
    if a.action == "stop":
        stop(a.port, a.home)
        print("worker, Prefect server and evidence server stopped")
        return
    pids = serve(a.port, a.db, a.home, evidence_port=a.evidence_port)
    print(f"Prefect UI: http://127.0.0.1:{a.port}  (server pid {pids['server']}, worker pid {pids['worker']}, "
          f"pool {POOL}; deployments deploy-dev, deploy-staging, deploy-prod; logs in {a.home})")
    url = os.environ.get("AEVON_EVIDENCE_URL") or (evidence.evidence_url(a.evidence_port) if a.evidence_port else "")
    print(f"evidence (screenshots, reports) linked from the UI: {url or 'not served (--evidence-port 0)'}")


if __name__ == "__main__":
    main()
