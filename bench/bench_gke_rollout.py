"""Bench: N GKE services rolled out concurrently through the gke target, wall time vs the slowest single rollout.

The fake GKE API and kube-apiserver (HTTPS, with the deployment controller) run in a child process so that their
CPU does not share our interpreter. Each Deployment has 2 replicas, maxSurge 1 / maxUnavailable 0, and pods that
become ready `--step` seconds after they start, so one rollout takes about 2 x step on the fake's own clock
(the fixed fake rollout time). Each service does what the deploy task does: build its target, read `current()`
(the GKE cluster lookup happens here), `deploy`, `wait_ready`. "slowest" is the longest single rollout (deploy ->
READY) in the batch, "wall" the whole batch from the first target built to the last READY. Side by side in the same
run: N=1 (an uncontended rollout) and N=20. Figures are medians of `--runs` runs (BENCHMARKS.md).

    .venv/bin/python bench/bench_gke_rollout.py [--n 20] [--runs 5] [--step 1.0] [--poll 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOKEN = "bench-token"  # a fake's token, not a credential
REPO = "europe-west1-docker.pkg.dev/aevon-bench/backend/svc"
SURGE = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def fake_process(conn: Connection, step: float) -> None:
    """Child process: start the fakes, answer `create` commands, stop on `stop`."""
    from tests.fakes.gke import FakeCluster, FakeGkeServer
    from tests.fakes.kubernetes import FakeKubeApiServer

    kube = FakeKubeApiServer(tokens=[TOKEN], rollout_step_s=step)
    kube.start()
    gke = FakeGkeServer(tokens=[TOKEN])
    gke.start()
    gke.add_cluster(FakeCluster("aevon-bench", "europe-west1", "backend", kube.endpoint, kube.ca_pem))
    conn.send(gke.url)
    while True:
        cmd, arg = conn.recv()
        if cmd == "stop":
            break
        if cmd == "create":  # arg: list of deployment names
            for name in arg:
                kube.create_deployment(name, f"{REPO}:{'0' * 40}", replicas=2, strategy=SURGE)
            conn.send("ok")
    gke.stop()
    kube.stop()


@dataclass
class Run:
    wall: float
    slowest: float


async def one_service(name: str, gke_url: str, sha: str, poll: float, tmp: Path) -> float:
    from pydantic import SecretStr

    from deployments.spec import ServiceSpec
    from providers.models import DeployStatus
    from providers.targets.base import TargetContext
    from providers.targets.kubernetes.target import make_gke_target
    from tests.contract.harness import make_release

    settings: dict[str, Any] = {
        "project": "aevon-bench",
        "location": "europe-west1",
        "cluster": "backend",
        "gke_api_url": gke_url,
        "deployment": name,
        "repository": REPO,
        "poll_interval_s": poll,
    }
    spec = ServiceSpec(name=name, provider="gke", settings=settings)
    ctx = TargetContext(env="bench", spec=spec, secrets={"token": SecretStr(TOKEN)}, state_dir=tmp)
    target = make_gke_target(ctx)
    await target.current()  # what the deploy task records first; also reads the cluster from the GKE API
    started = time.perf_counter()
    try:
        handle = await target.deploy(make_release("bench", sha))
        result = await target.wait_ready(handle, 120)
    finally:
        await target.aclose()
    if result.status != DeployStatus.READY:
        raise RuntimeError(f"{name}: {result.status} {result.message}")
    return time.perf_counter() - started


async def run_once(names: list[str], gke_url: str, sha: str, poll: float, tmp: Path) -> Run:
    started = time.perf_counter()
    durations = await asyncio.gather(*(one_service(n, gke_url, sha, poll, tmp) for n in names))
    return Run(wall=time.perf_counter() - started, slowest=max(durations))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--step", type=float, default=1.0, help="fake pod start-to-ready seconds")
    parser.add_argument("--poll", type=float, default=0.1, help="wait_ready polling interval")
    args = parser.parse_args(argv)

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=fake_process, args=(child, args.step), daemon=True)
    proc.start()
    gke_url = parent.recv()
    results: dict[int, list[Run]] = {1: [], args.n: []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            parent.send(("create", ["warm-up"]))
            parent.recv()
            asyncio.run(run_once(["warm-up"], gke_url, "f" * 40, args.poll, Path(tmp)))  # imports, first TLS setup
            for run in range(args.runs):
                for n in results:
                    names = [f"r{run}-n{n}-svc-{i:02d}" for i in range(n)]
                    parent.send(("create", names))
                    parent.recv()
                    sha = f"{run + 1:040x}"
                    results[n].append(asyncio.run(run_once(names, gke_url, sha, args.poll, Path(tmp))))
    finally:
        parent.send(("stop", None))
        proc.join(10)
    print(
        f"# gke target vs fake GKE + kube-apiserver (child process, HTTPS); fake rollout ~{2 * args.step:g}s "
        f"(2 replicas, {args.step:g}s/pod), poll {args.poll:g}s, medians of {args.runs} runs"
    )
    for n, runs in results.items():
        wall = statistics.median(r.wall for r in runs)
        slowest = statistics.median(r.slowest for r in runs)
        print(f"gke_rollout N={n}: wall {wall:.2f}s slowest {slowest:.2f}s ratio {wall / slowest:.2f}")
    solo = statistics.median(r.slowest for r in results[1])
    crowd = statistics.median(r.slowest for r in results[args.n])
    print(f"gke_rollout slowest N={args.n} vs N=1: {crowd / solo:.2f}")


if __name__ == "__main__":
    main()
