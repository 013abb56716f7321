"""The ledger database unreachable for a few seconds mid-deploy (issue 18 item 8), through the real deploy flow.

Every connection of the run to its ledger (releases, journal, the environment lock's lease) goes through a TCP proxy
(tests/chaos/tcp_proxy.py) that is cut for `cut_s` seconds the instant a report step starts: a service deploy, or
the first validation stage. The services are `memory-file` stand-ins (state on disk: a vendor that outlives the
run) in two layers, validated by `sleep` checks. Each cut run must end SUCCEEDED (rode it out), ROLLED_BACK or
REFUSED, with the services serving what that outcome says; then a deploy with the ledger up must succeed and leave
no ledger row `running`. Counted: duplicates (a release deployed twice at a service), half-done (FAILED,
ROLLBACK_FAILED, services not serving what the outcome says, a row left running after the next run), leftovers
(none here: the proxy's connections are the only thing a run opens; counted as connections still open at the end).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from flows.report import DeployOutcome, StepRecord, add_step_listener
from tests.chaos.fault_scenarios import FaultOutcome
from tests.chaos.tcp_proxy import CuttableProxy
from tests.integration.envs import write_spec
from tests.integration.flow_env import deploy, release_repo, rev
from tests.pg import fetch

ENV = "outage"
SERVICES = {"db-api": [], "db-web": ["db-api"]}  # two layers: web waits for api
CUT_AT = {"service deploy": "deploy services: db-api", "validation": "validation 1/"}
OK_AFTER_CUT = {DeployOutcome.SUCCEEDED.value, DeployOutcome.ROLLED_BACK.value, DeployOutcome.REFUSED.value}


@dataclass
class OutageWorld:
    """The spec folder, the vendor's state folder, the repo (v1, v2), the proxy and the real ledger URL."""

    spec_dir: Path
    vendor_dir: Path
    repo: Path
    proxy: CuttableProxy
    ledger_url: str

    def serving(self) -> dict[str, str]:
        out = {}
        for svc in SERVICES:
            try:
                state = json.loads((self.vendor_dir / f"{svc}.json").read_text())
            except FileNotFoundError:
                out[svc] = ""
                continue
            active = state["active"]
            out[svc] = str(state["deployments"][active]["version"]) if active else ""
        return out

    def deployments_per_release(self) -> Counter[tuple[str, str]]:
        made: Counter[tuple[str, str]] = Counter()
        for svc in SERVICES:
            path = self.vendor_dir / f"{svc}.json"
            if path.exists():
                for dep in json.loads(path.read_text())["deployments"].values():
                    made[(svc, str(dep["release_id"]))] += 1
        return made


@asynccontextmanager
async def outage_world(tmp: Path, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OutageWorld]:
    """The environment, its ledger reached through the proxy (AEVON_STATE_DB_URL set through `monkeypatch`)."""
    where = urlsplit(ledger_url)
    proxy = CuttableProxy((where.hostname or "127.0.0.1", where.port or 5432))
    monkeypatch.setenv("AEVON_STATE_DB_URL", proxy.url(ledger_url))
    repo = release_repo(tmp / "repo")
    vendor = tmp / "vendor"
    spec = {
        "source": {"repo": str(repo)},
        "services": [{"name": s, "provider": "memory-file", "depends_on": deps,
                      "settings": {"deploy_s": 1.5, "dir": str(vendor)}} for s, deps in SERVICES.items()],
        "validation": {"checks": [{"name": f"check-{s}", "kind": "sleep", "service": s, "error_retries": 0,
                                   "settings": {"seconds": 2.0, "outcome": "PASSED"}} for s in SERVICES]},
    }
    write_spec(tmp / "specs", ENV, spec)
    try:
        yield OutageWorld(tmp / "specs", vendor, repo, proxy, ledger_url)
    finally:
        proxy.close()


async def ledger_outages(world: OutageWorld, rounds: int, cut_s: float = 4.0) -> FaultOutcome:
    """`rounds` × (a cut during a service deploy, a cut during validation), each followed by a clean deploy."""
    out = FaultOutcome(f"ledger down {cut_s:g}s mid-deploy")
    refs = {"v1": rev(world.repo, "v1"), "v2": rev(world.repo, "v2")}
    first = await deploy(world.spec_dir, "v1", ENV)
    if first.outcome != DeployOutcome.SUCCEEDED:
        raise AssertionError(f"the first deploy (ledger up) did not succeed: {first.error}")
    good, n = "v1", 0
    for _ in range(rounds):
        for where, prefix in CUT_AT.items():
            n += 1
            ref = "v2" if good == "v1" else "v1"
            fired: list[bool] = []

            def cut(rec: StepRecord, finished: bool, prefix: str = prefix, fired: list[bool] = fired) -> None:
                if not finished and not fired and rec.name.startswith(prefix):
                    fired.append(True)
                    world.proxy.cut(cut_s)

            remove = add_step_listener(cut)
            try:
                report = await deploy(world.spec_dir, ref, ENV)
            finally:
                remove()
            out.runs += 1
            outcome = report.outcome.value
            out.outcomes[f"cut during {where}: {outcome}"] += 1
            if not fired:
                out.notes.append(f"run {n}: the step {prefix!r} never started, no cut")
                out.half_done += 1
            expected = refs[ref] if outcome == DeployOutcome.SUCCEEDED.value else refs[good]
            if outcome not in OK_AFTER_CUT:
                out.half_done += 1
                out.notes.append(f"run {n} ({where}): {outcome}: {report.error}")
            elif any(v != expected for v in world.serving().values()):
                out.half_done += 1
                out.notes.append(f"run {n} ({where}): {outcome} but serving {world.serving()}, expected {expected[:8]}")
            elif outcome != DeployOutcome.SUCCEEDED.value:
                out.notes.append(f"run {n} ({where}): {outcome}: {(report.error or '')[:200]}")
            good = ref if outcome == DeployOutcome.SUCCEEDED.value else good
            # the next run, ledger up: it compensates whatever the cut run left and deploys
            ref = "v2" if good == "v1" else "v1"
            nxt = await deploy(world.spec_dir, ref, ENV)
            out.runs += 1
            out.outcomes[f"next run: {nxt.outcome.value}"] += 1
            if nxt.outcome != DeployOutcome.SUCCEEDED or any(v != refs[ref] for v in world.serving().values()):
                out.half_done += 1
                out.notes.append(f"run {n}: the next run ended {nxt.outcome.value}: {nxt.error}; serving "
                                 f"{world.serving()}")
            else:
                good = ref
            running = await fetch(world.ledger_url, "SELECT release_id FROM aevon_releases WHERE status = 'running'")
            if running:
                out.half_done += 1
                out.notes.append(f"run {n}: ledger rows still running after the next run: "
                                 + ", ".join(r["release_id"] for r in running))
    dup = {k: v for k, v in world.deployments_per_release().items() if v > 1}
    out.duplicates += sum(v - 1 for v in dup.values())
    out.notes += [f"{svc}: {v} deployments of {rel}" for (svc, rel), v in dup.items()]
    out.faults["ledger cuts"] += world.proxy.cuts
    out.faults["connections refused"] += world.proxy.refused
    return out
