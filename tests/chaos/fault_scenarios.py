"""Chaos through the real deploy flow: every vendor fake fails a share of all calls (5xx, 429, dropped connections,
lost answers, timeouts that act late); count outcomes, duplicate vendor deployments, half-done states, leftovers.

The environment is the mixed one of tests/integration/mixed_support.py (web on Vercel, search on Render,
api and agents on GKE). Each round deploys v1 (good) then v2 (its api fails health: rolled back). After each run
the faults are switched off and every vendor is read directly:
- duplicates: a release with more than one Vercel deployment or Kubernetes ReplicaSet, or a run that made more
  than one non-rollback Render deploy;
- half-done: the services do not all serve what the outcome says (SUCCEEDED: the new SHA; REFUSED, ROLLED_BACK:
  the one before); a ROLLBACK_FAILED run is finished with `aevon-deploy rollback ENV RELEASE_ID` (faults off:
  the vendor answers again) and half-done only if that does not restore it; a run left `running` or FAILED;
- leftovers: late calls still in flight at a fake once the run has ended.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flows.report import DeployOutcome, DeployReport
from flows.rollback import rollback_flow
from providers.targets.kubernetes.rollout import RELEASE_ANNOTATION
from providers.targets.paas.base import RELEASE_KEY
from tests.fakes.base import FakeServer, Fault
from tests.fakes.gke import FakeCluster, FakeGkeServer
from tests.fakes.kubernetes import FakeKubeApiServer
from tests.fakes.render import RenderFake
from tests.fakes.vercel import VercelFake
from tests.integration.envs import write_spec
from tests.integration.flow_env import deploy, release_repo, rev
from tests.integration.mixed_support import (
    CLUSTER,
    DEPLOYMENTS,
    ENV,
    INITIAL,
    LOCATION,
    NAMESPACE,
    PROJECT,
    REGISTRY,
    RENDER_SERVICE,
    TEAM,
    VERCEL_PROJECT,
    HealthServer,
    mixed_spec,
)

KINDS: tuple[Fault, ...] = ("5xx", "429", "drop", "lost", "late")
REQUEST_TIMEOUT_S = 0.5  # the clients' timeout in this world; a "late" call acts after LATE_S, past it
LATE_S = 1.0
SETTLE_S = 4.0  # create_settle_s: how long a target looks for an ambiguous create before creating again


@dataclass
class FaultOutcome:
    """The figures of one fault scenario."""

    name: str
    runs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    half_done: int = 0
    leftovers: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        """Runs that ended FAILED (an unexpected error, or changes left without a rollback)."""
        return self.outcomes.get(DeployOutcome.FAILED.value, 0)

    def line(self) -> str:
        outs = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        served = sum(self.faults.values())
        return (f"{self.name:34} runs {self.runs:3}  duplicates {self.duplicates}  half-done {self.half_done}  "
                f"leftovers {self.leftovers}  outcomes: {outs}  (faults served: {served})")


@dataclass
class FaultWorld:
    """The four services' vendors, the spec and the repo (v1 good, v2 failing the api's health)."""

    vercel: VercelFake
    render: RenderFake
    kube: FakeKubeApiServer
    gke: FakeGkeServer
    health: HealthServer
    repo: Path
    spec_dir: Path

    @property
    def fakes(self) -> list[FakeServer]:
        return [self.vercel, self.render, self.kube, self.gke]

    def faults(self, rate: float, seed: int) -> None:
        for i, fake in enumerate(self.fakes):
            fake.late_s = LATE_S
            fake.set_fault_rate(rate, KINDS, seed=seed * 10 + i)

    def quiet(self) -> int:
        """Faults off; wait for late calls to act. Returns how many fakes still had one in flight after 10 s."""
        for fake in self.fakes:
            fake.set_fault_rate(0.0)
        return sum(0 if fake.settle(10.0) else 1 for fake in self.fakes)

    def serving(self) -> dict[str, str]:
        """service -> the SHA its vendor serves now, read from the fakes' own state."""
        with self.vercel.lock:
            project = next(p for p in self.vercel.projects.values() if p["name"] == VERCEL_PROJECT)
            prod = project["targets"]["production"]
            web = str(self.vercel.deployments[prod]["gitSource"].get("sha")) if prod else ""
        with self.render.lock:
            self.render.advance(time.time())
            live = [d for d in self.render.services[RENDER_SERVICE] if d["status"] == "live"]
            search = str(live[0]["commit"]["id"]) if live else ""
        out = {"web": web, "search": search}
        for service, name in DEPLOYMENTS.items():
            image = self.kube.deployment(name, NAMESPACE)["spec"]["template"]["spec"]["containers"][0]["image"]
            out[service] = str(image).rpartition(":")[2]
        return out

    def duplicates(self, release_id: str, since: float) -> list[str]:
        """What this release made twice at a vendor."""
        found: list[str] = []
        with self.vercel.lock:
            web = sum(1 for d in self.vercel.deployments.values() if (d["meta"] or {}).get(RELEASE_KEY) == release_id)
        if web > 1:
            found.append(f"vercel: {web} deployments of {release_id}")
        with self.render.lock:
            made = [d for d in self.render.services[RENDER_SERVICE] if d["trigger"] != "rollback"
                    and d["created"] >= since]
        if len(made) > 1:
            found.append(f"render: {len(made)} deploys in one run")
        for name in DEPLOYMENTS.values():
            sets = [rs for rs in self.kube.replica_sets(name, NAMESPACE)
                    if (rs["spec"]["template"]["metadata"].get("annotations") or {}).get(RELEASE_ANNOTATION)
                    == release_id]
            if len(sets) > 1:
                found.append(f"kubernetes {name}: {len(sets)} ReplicaSets of {release_id}")
        return found


def chaos_spec(world_repo: Path, vercel: VercelFake, render: RenderFake, gke: FakeGkeServer,
               health_url: str) -> dict[str, Any]:
    """The mixed spec with short client timeouts (a late call outlives them) and a short settle window."""
    spec = mixed_spec(world_repo, vercel, render, gke, health_url)
    for svc in spec["services"]:
        svc["settings"]["request_timeout_s"] = REQUEST_TIMEOUT_S
        if svc["provider"] in ("vercel", "render"):
            svc["settings"]["create_settle_s"] = SETTLE_S
    return spec


@asynccontextmanager
async def fault_world(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FaultWorld]:
    """Every fake started, tokens exported (through `monkeypatch`), the spec written."""
    tokens = {"VERCEL_TOKEN": f"vcp_{secrets.token_hex(12)}", "RENDER_API_KEY": f"rnd_{secrets.token_hex(12)}",
              "GKE_TOKEN": f"ya29.{secrets.token_hex(12)}"}
    for name, value in tokens.items():
        monkeypatch.setenv(name, value)
    vercel = VercelFake(tokens["VERCEL_TOKEN"], step_s=0.1, team_id=TEAM)
    render = RenderFake(tokens["RENDER_API_KEY"], step_s=0.1)
    kube = FakeKubeApiServer(tokens=[tokens["GKE_TOKEN"]], rollout_step_s=0.1, deadline_scale=0.002)
    gke = FakeGkeServer(tokens=[tokens["GKE_TOKEN"]])
    for fake in (vercel, render, kube, gke):
        fake.start()
    vercel.add_project(VERCEL_PROJECT)
    render.add_service(RENDER_SERVICE)
    gke.add_cluster(FakeCluster(PROJECT, LOCATION, CLUSTER, endpoint=kube.endpoint, ca_pem=kube.ca_pem))
    for name, deployment in DEPLOYMENTS.items():
        kube.create_deployment(deployment, f"{REGISTRY}/{name}:{INITIAL}", namespace=NAMESPACE, replicas=2,
                               containers=[name],
                               strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1,
                                                                                    "maxUnavailable": 0}})
    health = HealthServer(kube)
    repo = release_repo(tmp / "repo")
    spec_dir = tmp / "specs"
    write_spec(spec_dir, ENV, chaos_spec(repo, vercel, render, gke, health.url))
    try:
        yield FaultWorld(vercel, render, kube, gke, health, repo, spec_dir)
    finally:
        health.stop()
        for fake in (vercel, render, kube, gke):
            fake.stop()


async def injected_faults(world: FaultWorld, rate: float, rounds: int, seed: int = 1) -> FaultOutcome:
    """`rounds` × (v1, then the failing v2) with `rate` of all vendor calls failing; v1 is first deployed clean."""
    out = FaultOutcome(f"vendor faults {rate:.0%}")
    v1, v2 = rev(world.repo, "v1"), rev(world.repo, "v2")
    world.health.bad.add(v2)
    first = await deploy(world.spec_dir, "v1", ENV)  # the baseline every rollback returns to
    if first.outcome != DeployOutcome.SUCCEEDED:
        raise AssertionError(f"the clean first deploy did not succeed: {first.error}")
    good = v1
    for n in range(rounds * 2):
        ref, sha = ("v1", v1) if n % 2 == 0 else ("v2", v2)
        since = time.time()
        world.faults(rate, seed * 1000 + n)
        report = await deploy(world.spec_dir, ref, ENV)
        out.leftovers += world.quiet()
        out.runs += 1
        out.outcomes[report.outcome.value] += 1
        for fake in world.fakes:
            out.faults.update(fake.faults_served)
            fake.faults_served.clear()
        dup = world.duplicates(str(report.release_id), since)
        out.duplicates += len(dup)
        out.notes.extend(f"{ref}: {d}" for d in dup)
        good = await _judge(world, report, ref, sha, good, out)
    return out


async def _judge(world: FaultWorld, report: DeployReport, ref: str, sha: str, good: str, out: FaultOutcome) -> str:
    """Count a half-done state; return the SHA that serves (or should) from now on."""
    expected = sha if report.outcome == DeployOutcome.SUCCEEDED else good
    if report.outcome == DeployOutcome.ROLLBACK_FAILED:
        left = "; ".join(report.rollback.notes if report.rollback else [])
        rb = await rollback_flow(ENV, str(report.release_id), "chaos: finish after the faults stopped",
                                 spec_dir=str(world.spec_dir))
        out.notes.append(f"{ref}: ROLLBACK_FAILED ({left[:200]}); finished with the rollback command: "
                         f"{'ok' if rb.ok else 'NOT ok: ' + '; '.join(rb.notes)}")
    elif report.outcome == DeployOutcome.FAILED:
        out.notes.append(f"{ref}: FAILED: {report.error}")
    now = await asyncio.to_thread(world.serving)
    wrong = {s: v for s, v in now.items() if v != expected}
    if wrong or report.outcome == DeployOutcome.FAILED:
        out.half_done += 1
        out.notes.append(f"{ref} {report.outcome.value}: expected {expected[:8]} everywhere, got "
                         + ", ".join(f"{s} {v[:8]}" for s, v in now.items()))
    return expected
