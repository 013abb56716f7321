"""Bench: scale-out on one Prefect server (PostgreSQL) with a process work pool of 4 workers (issue 17 item 3).

20 environments (10 memory services each: deploy 2 s, two 1 s checks per service; critical path 3 s) deployed at
once through their Prefect deployments (one per environment), plus a second run of 4 of them at the same moment
(the environment lock must serialise them). Printed: wall time from the first trigger to the last terminal state
beside the critical path, overlaps (two runs of one environment inside each other's started..finished window in
the ledger's aevon_releases), runs lost or stuck (not Completed at the end), and peak RSS of the server, of one
worker and of one flow-run process (sampled from /proc every 0.25 s). Then one environment (scale-kill, whose
stand-in vendor keeps its state in files, as a real one outlives our process) is deployed at v1, its deploy of v2
(30 s) killed mid-run with its worker, the worker restarted and v2 deployed again: the new run must take the lock
over, mark the dead run Crashed, compensate it (services back on v1) and succeed (every service on v2).

2 cores: every flow run is a Python process importing Prefect and aevon-deploy (~3 s of CPU each), so the wall
time here measures start-up contention more than orchestration; workers poll every 2 s.

    AEVON_BENCH_SERVER_PID=... .venv/bin/python bench/bench_scaleout.py [--envs 20] [--workers 4]  (via bench/run.py)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import yaml  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.actions import WorkPoolCreate  # noqa: E402

from bench.bench_orchestration import make_repo  # noqa: E402

DEPLOY_S, CHECK_S, SERVICES = 2.0, 1.0, 10
CRITICAL_PATH = DEPLOY_S + CHECK_S
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def write_spec(spec_dir: Path, repo: Path, env: str, deploy_s: float = DEPLOY_S, vendor: Path | None = None) -> None:
    names = [f"svc-{i:02d}" for i in range(SERVICES)]
    spec = {
        "environment": env, "source": {"repo": str(repo)},
        "services": [{"name": s, "provider": "memory", "settings": {"deploy_s": deploy_s, "world": env}}
                     if vendor is None else
                     {"name": s, "provider": "memory-file", "settings": {"deploy_s": deploy_s, "dir": str(vendor)}}
                     for s in names],
        "validation": {"checks": [{"name": f"{s}-{k}", "kind": "sleep", "service": s, "error_retries": 0,
                                   "settings": {"seconds": CHECK_S}} for s in names for k in ("a", "b")]},
    }
    (spec_dir / f"{env}.yaml").write_text(yaml.safe_dump(spec))


def tag_v2(repo: Path) -> str:
    """A second commit, tagged v2, in the bench repo; returns its SHA."""
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@aevon.dev"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "v2"], check=True)
    subprocess.run([*git, "tag", "v2"], check=True)
    return subprocess.run([*git, "rev-parse", "v2"], check=True, capture_output=True, text=True).stdout.strip()


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out + [g for c in out for g in children(c)]


class Peaks(threading.Thread):
    """Peak RSS (MB) of the server, of any worker process, and of any flow-run process (a worker's descendant)."""

    def __init__(self, server: int | None, workers: list[subprocess.Popen[bytes]]) -> None:
        super().__init__(daemon=True)
        self.server, self.workers, self.stop = server, workers, threading.Event()
        self.peak = {"server": 0, "worker": 0, "flow_run": 0}

    def run(self) -> None:
        while not self.stop.wait(0.25):
            if self.server:
                self.peak["server"] = max(self.peak["server"], rss_kb(self.server) + sum(
                    rss_kb(c) for c in children(self.server)))
            for w in list(self.workers):
                self.peak["worker"] = max(self.peak["worker"], rss_kb(w.pid))
                for c in children(w.pid):
                    self.peak["flow_run"] = max(self.peak["flow_run"], rss_kb(c))


def start_worker(pool: str, name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type",
                                 "process", "--name", name, "--limit", "10"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


async def overlaps(ledger: str, envs: list[str]) -> int:
    conn = await asyncpg.connect(ledger)
    try:
        rows = await conn.fetch("SELECT env, started_at, finished_at FROM aevon_releases WHERE env = ANY($1) "
                                "ORDER BY env, started_at", envs)
    finally:
        await conn.close()
    count = 0
    for a, b in itertools.pairwise(rows):
        if a["env"] == b["env"] and (a["finished_at"] is None or b["started_at"] < a["finished_at"]):
            count += 1
    return count


async def wait_all(ids: list[object], timeout_s: float) -> dict[str, str]:
    """Each run's final state type (or its current one after `timeout_s`); prints why runs did not complete."""
    deadline = time.monotonic() + timeout_s
    async with get_client() as client:
        while True:
            runs = [await client.read_flow_run(i) for i in ids]  # type: ignore[arg-type]
            states = {str(r.id): r.state_type.value if r.state_type else "NONE" for r in runs}
            if all(s in TERMINAL for s in states.values()) or time.monotonic() > deadline:
                why = {f"{r.state_name}: {(r.state.message or '')[:300]}" for r in runs
                       if r.state is not None and r.state_type is not None and r.state_type.value != "COMPLETED"}
                for line in sorted(why):
                    print(f"#   not completed: {line}", flush=True)
                return states
            await asyncio.sleep(1.0)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--envs", type=int, default=20)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--timeout", type=float, default=600.0)
    a = p.parse_args()
    ledger = os.environ["AEVON_STATE_DB_URL"]
    server = int(os.environ["AEVON_BENCH_SERVER_PID"]) if os.environ.get("AEVON_BENCH_SERVER_PID") else None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo, spec_dir = make_repo(root), root / "specs"
        spec_dir.mkdir()
        envs = [f"scale-{i:02d}" for i in range(a.envs)]
        for env in envs:
            write_spec(spec_dir, repo, env)
        vendor, slow_dir = root / "vendor-kill", root / "specs-slow"
        slow_dir.mkdir()
        write_spec(spec_dir, repo, "scale-kill", vendor=vendor)
        write_spec(slow_dir, repo, "scale-kill", deploy_s=30.0, vendor=vendor)
        v2 = tag_v2(repo)
        pool = f"aevon-scaleout-{os.getpid()}"
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            flow_id = await client.create_flow_from_name("deploy")
            deployments = {env: await client.create_deployment(
                flow_id=flow_id, name=f"{pool}-{env}", entrypoint="flows/deploy.py:deploy_flow",
                work_pool_name=pool, parameters={"env": env, "ref": "v1", "spec_dir": str(spec_dir)},
                pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}])
                for env in [*envs, "scale-kill"]}
        wenv = {**os.environ, "PYTHONPATH": str(ROOT), "AEVON_PLUGINS": "tests.standins",
                "PREFECT_WORKER_QUERY_SECONDS": "2"}
        workers = [start_worker(pool, f"w{i}", wenv, root / f"worker{i}.log") for i in range(a.workers)]
        peaks = Peaks(server, workers)
        peaks.start()
        try:
            t0 = time.perf_counter()
            async with get_client() as client:
                runs = [(await client.create_flow_run_from_deployment(deployments[e])).id
                        for e in [*envs, *envs[:4]]]
            states = await wait_all(runs, a.timeout)
            wall = time.perf_counter() - t0
            lost = sum(1 for s in states.values() if s != "COMPLETED")
            over = await overlaps(ledger, envs)
            print(f"scaleout envs={a.envs} workers={a.workers}: wall {wall:.1f} s, lost {lost}, overlaps {over} "
                  f"({len(runs)} runs: one per environment + a second run of 4 of them; critical path "
                  f"{CRITICAL_PATH:.0f} s per run, {2 * CRITICAL_PATH:.0f} s for a serialised pair; "
                  f"states {sorted(set(states.values()))})", flush=True)
            print(f"scaleout peak RSS: server {peaks.peak['server'] / 1024:.0f} MB (with its children), worker "
                  f"{peaks.peak['worker'] / 1024:.0f} MB, one flow-run process {peaks.peak['flow_run'] / 1024:.0f} MB",
                  flush=True)
            await kill_scenario(deployments["scale-kill"], workers, pool, wenv, root, ledger, a.timeout,
                                {"fast": str(spec_dir), "slow": str(slow_dir), "vendor": str(vendor), "v2": v2})
        finally:
            peaks.stop.set()
            for w in workers:
                if w.poll() is None:
                    os.killpg(w.pid, signal.SIGTERM)
            for w in workers:
                try:
                    w.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(w.pid, signal.SIGKILL)


def serving(vendor: Path) -> set[str]:
    """The versions the file-backed stand-in vendor serves, over all services of scale-kill."""
    out = set()
    for f in vendor.glob("*.json"):
        state = json.loads(f.read_text())
        out.add(state["deployments"][state["active"]]["version"] if state["active"] else "nothing")
    return out


async def kill_scenario(deployment: object, workers: list[subprocess.Popen[bytes]], pool: str,
                        wenv: dict[str, str], root: Path, ledger: str, timeout_s: float, where: dict[str, str]) -> None:
    """scale-kill at v1; its v2 deploy killed with its worker (and its flow-run process) once it holds the lock and
    its services are rolling out; a worker restarted; v2 deployed again: the second run must take the lock over,
    compensate the dead run (services back on v1) and succeed."""
    async def start(ref: str, spec_dir: str) -> object:
        async with get_client() as client:
            return (await client.create_flow_run_from_deployment(
                deployment, parameters={"env": "scale-kill", "ref": ref, "spec_dir": spec_dir})).id  # type: ignore[arg-type]

    base = await wait_all([await start("v1", where["fast"])], timeout_s)
    if set(base.values()) != {"COMPLETED"}:
        print(f"scaleout kill: the first deploy of scale-kill did not complete ({base}); not run", flush=True)
        return
    t0 = time.perf_counter()
    first = await start("v2", where["slow"])
    conn = await asyncpg.connect(ledger)
    try:
        holder = None
        while holder is None and time.perf_counter() - t0 < timeout_s:
            holder = await conn.fetchrow("SELECT pid FROM aevon_env_locks WHERE env = 'scale-kill' AND "
                                         "flow_run_id = $1", str(first))
            await asyncio.sleep(0.5)
        if holder is None:
            print("scaleout kill: the deploy never took its lock", flush=True)
            return
        started = 0
        while started < SERVICES and time.perf_counter() - t0 < timeout_s:  # every service's rollout has started
            await asyncio.sleep(0.2)
            started = await conn.fetchval("SELECT count(*) FROM aevon_journal j JOIN aevon_releases r USING "
                                          "(release_id) WHERE r.flow_run_id = $1", str(first))
    finally:
        await conn.close()
    await asyncio.sleep(1.0)  # mid-deploy: the services take 30 s
    victim = next((w for w in workers if int(holder["pid"]) in children(w.pid)), None)
    os.kill(int(holder["pid"]), signal.SIGKILL)
    if victim is not None:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        workers[workers.index(victim)] = start_worker(pool, "w-restarted", wenv, root / "worker-restarted.log")
    killed_at = time.perf_counter()
    second = await start("v2", where["fast"])
    states = await wait_all([first, second], timeout_s)
    over = await overlaps(ledger, ["scale-kill"])
    conn = await asyncpg.connect(ledger)
    try:
        dead = await conn.fetchval("SELECT status FROM aevon_releases WHERE flow_run_id = $1", str(first))
    finally:
        await conn.close()
    now = serving(Path(where["vendor"]))
    print(f"scaleout kill: v2 deploy killed with its worker ({'restarted' if victim else 'worker not found'}) "
          f"after its {SERVICES} rollouts started; the killed run ended {states[str(first)]} (ledger: {dead}), the "
          f"next run {states[str(second)]} {time.perf_counter() - killed_at:.1f} s after the kill; services serve "
          f"{'v2' if now == {where['v2']} else sorted(now)}; overlaps {over}, "
          f"lost {sum(1 for s in states.values() if s not in TERMINAL)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
