"""Real Prometheus and blackbox exporter (Debian packages) on free loopback ports, configured in a temp folder.

The config is the demo's (deployments/monitoring/stack.py): the blackbox exporter probes the app (`http_2xx` on a
URL); Prometheus scrapes it every second with a `service` label, scrapes itself, and evaluates the dev rules of
deployments/monitoring/dev-rules.yml every second (`--rules.alert.resend-delay=1s`): the app's /status is slow
(`AevonApiSlow`, fires on the bad-slow version), the app is down for a minute (`AevonApiDown`, never fires in a
test), the app answers (`AevonApiProbed`, a warning) and, on request, a rule that fails to evaluate
(`AevonBrokenRule`).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from deployments.monitoring.stack import blackbox_argv, prometheus_argv, write_config
from tests.conftest import free_port
from tests.sample_app import stop_process

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "ensure-prometheus.sh"

# Valid PromQL that fails at every evaluation (the regex is compiled at run time): health `err`.
BROKEN_RULE = {"alert": "AevonBrokenRule", "expr": 'label_replace(vector(1), "x", "$1", "y", "(")',
               "labels": {"severity": "critical"}}


def ensure_prometheus() -> None:
    """Install the Debian packages when missing (scripts/ensure-prometheus.sh; fast when present)."""
    subprocess.run(["bash", str(SETUP)], check=True, capture_output=True)


async def _ready(url: str, proc: asyncio.subprocess.Process, log: Path, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"{url} exited {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"{url} not ready in {timeout_s}s:\n{log.read_text()[-2000:]}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def _process(argv: list[str], log: Path, ready_url: str) -> AsyncIterator[None]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        await _ready(ready_url, proc, log)
        yield
    finally:
        await stop_process(proc)


@asynccontextmanager
async def prometheus(tmp: Path, probe_url: str, *, broken_rule: bool = False) -> AsyncIterator[str]:
    """Blackbox exporter probing `probe_url` as service `api`, and Prometheus over it; yields Prometheus's URL."""
    bb_port, prom_port = free_port(), free_port()
    write_config(tmp, prometheus_port=prom_port, blackbox_port=bb_port, probe_url=probe_url,
                 extra_rules=[BROKEN_RULE] if broken_rule else None)
    bb, prom = blackbox_argv(tmp, bb_port), prometheus_argv(tmp, prom_port)
    url = f"http://127.0.0.1:{prom_port}"
    async with _process(bb, tmp / "blackbox.log", f"http://127.0.0.1:{bb_port}/metrics"), \
            _process(prom, tmp / "prometheus.log", f"{url}/-/ready"):
        yield url


async def wait_evaluated(url: str, timeout_s: float = 20.0) -> None:
    """Until every alert rule has been evaluated once (health no longer `unknown`)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while True:
            groups = (await client.get("/api/v1/rules")).json()["data"]["groups"]
            if groups and all(r["health"] != "unknown" for g in groups for r in g["rules"]):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"rules not evaluated in {timeout_s}s: {groups}")
            await asyncio.sleep(0.2)


async def wait_probed(url: str, timeout_s: float = 20.0) -> None:
    """Until Prometheus holds a few probe samples (so `avg_over_time` has data to average)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while True:
            query = 'count_over_time(probe_success{service="api"}[10s])'
            q = await client.get("/api/v1/query", params={"query": query})
            result = q.json()["data"]["result"]
            if result and float(result[0]["value"][1]) >= 3:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"no probe samples in {timeout_s}s")
            await asyncio.sleep(0.3)
