"""Services, warm-up and validation as one DAG: a check starts as soon as the services it observes are deployed
and warmed up (deployments/check_graph.py says after what); the first failure anywhere stops the rest."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from prefect.client.schemas.objects import State
from prefect.logging import get_run_logger

from deployments.check_graph import CheckNode, check_graph
from deployments.spec import CheckSpec
from flows.canary import canary_service
from flows.publish import log_changes, log_verdicts
from flows.report import DeployReport, StepRecord
from flows.runtime import Runtime
from flows.validation import stage_detail
from providers.checks.base import Check, CheckInput
from providers.errors import AevonError
from providers.models import CheckResult, DeployStatus, Outcome, Release, ServiceVersion, utcnow
from providers.state.ledger import Ledger
from tasks.checks import is_blocking, run_check_state
from tasks.common import as_is, upstream
from tasks.services import ServiceChange, deploy_service, describe_error
from tasks.stop import StopSignal
from tasks.validation import StageRun, blocking, not_started
from tasks.warmup import merge_figures, of_service, warm_up


async def _either(event: asyncio.Event, stop: StopSignal) -> None:
    """Return when `event` is set or `stop` fires."""
    if event.is_set() or stop.is_set():
        return
    waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


@dataclass
class Outcomes:
    """What the DAG ended with: failed deploys (not the ones stopped), blocking check results, the services ready."""

    deploy_failed: list[ServiceChange] = field(default_factory=list)
    checks_failed: list[CheckResult] = field(default_factory=list)
    services: dict[str, ServiceVersion] = field(default_factory=dict)

    def reason(self) -> str | None:
        """Why the run must roll back (None: everything passed)."""
        parts = []
        if self.deploy_failed:
            parts.append("service deploy failed: " + "; ".join(f"{c.service}: {c.message}" for c in self.deploy_failed))
        if self.checks_failed:
            parts.append("validation failed: " + "; ".join(f"{r.name}: {r.summary}" for r in self.checks_failed))
        return "; ".join(parts) or None


@dataclass
class _Stage:
    index: int
    name: str
    checks: list[str]
    left: int
    rec: StepRecord | None = None
    t0: float = 0.0


class Pipeline:
    """One run's services → warm-up → checks DAG. Service layers (`depends_on`) deploy in order, each layer in
    parallel; a service is ready once deployed and warmed up; each check waits only for what its node needs.

    One stop signal serves the whole DAG: a failed deploy always fires it, a blocking check result with
    `validation.fail_fast` (the default). Then the deploys in flight give up their wait (their journal entries stay
    open, so the rollback covers them), no later layer starts, running checks are cancelled and the others never
    start. Canary rollouts are not interrupted mid-step: they have their own analysis and abort.
    """

    def __init__(self, rt: Runtime, ledger: Ledger, report: DeployReport, release: Release, checkout: Path) -> None:
        self.rt, self.ledger, self.report, self.release, self.checkout = rt, ledger, report, release, checkout
        self.stop = StopSignal()
        self.fail_fast = rt.spec.validation.fail_fast
        self.nodes = check_graph(rt.spec)
        self.ready = {s.name: asyncio.Event() for s in rt.spec.services}
        self.done = {n.name: asyncio.Event() for n in self.nodes}
        self.versions: dict[str, ServiceVersion] = {}
        self.upstream: dict[str, State[Any]] = {}  # service or check name -> the task state that finished it
        self.results: dict[str, CheckResult] = {}
        self.warmups: list[dict[str, float]] = []
        self.warming: list[asyncio.Future[None]] = []
        self.out = Outcomes()
        plan = rt.spec.validation.stage_plan()
        self.stages = [_Stage(i, st.name, list(st.checks), len(st.checks)) for i, st in enumerate(plan)]

    async def run(self) -> Outcomes:
        """Deploy, warm up and validate; return what failed (the caller rolls back) and the services ready."""
        pairs = {s.name: (s, c) for s, c in self.rt.checks}
        jobs = [self._rollout(), *(self._check(n, *pairs[n.name]) for n in self.nodes)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        self.report.warmup = merge_figures(self.warmups)
        specs = [s for s, _ in self.rt.checks]
        if any(self.results[s.name].started_at is not None for s in specs):
            self.report.checks = [self.results[s.name] for s in specs]
            log_verdicts(self.report.checks, "check")
        self.out.checks_failed = blocking(self.rt.checks, self.report.checks)
        self.out.services = dict(self.versions)
        crash = next((r for r in results if isinstance(r, BaseException)), None)
        if crash is not None:
            raise crash
        if self.stop.is_set() and self.out.checks_failed:
            get_run_logger().warning("validation: %s; rolling back now", self.stop.reason)
        return self.out

    async def _rollout(self) -> None:
        try:
            for i, layer in enumerate(self.rt.layers):
                name = f"deploy services: {', '.join(layer)}"
                if self.stop.is_set():
                    self.report.end_step(StepRecord(name=name, started_at=utcnow(), duration_s=0.0,
                                                    outcome="not started", detail=f"not started: {self.stop.reason}"))
                    continue
                await self._layer(name, i, layer)
        except BaseException as exc:
            self.stop.set(f"the rollout stopped: {describe_error(exc)}")
            raise
        finally:  # the warm-ups still going (the next layer did not wait for them)
            warming = await asyncio.gather(*self.warming, return_exceptions=True)
        crash = next((w for w in warming if isinstance(w, BaseException)), None)
        if crash is not None:
            raise crash

    async def _layer(self, name: str, i: int, layer: list[str]) -> None:
        with self.report.step(name) as st:
            results = await asyncio.gather(*(self._service(n, i) for n in layer), return_exceptions=True)
            changes = [_as_change(self.rt, n, r) for n, r in zip(layer, results, strict=True)]
            self.report.services.extend(changes)
            log_changes(changes)
            failed = [c for c in changes if c.status not in (DeployStatus.READY, DeployStatus.CANCELED)]
            stopped = [c for c in changes if c.status == DeployStatus.CANCELED]
            self.out.deploy_failed += failed
            if failed or stopped:
                st.outcome = "failed" if failed else "stopped"
                st.detail = "; ".join(f"{c.service}: {c.message}" for c in failed + stopped)

    async def _service(self, name: str, layer: int) -> ServiceChange:
        """Deploy one service (a task run, or the canary steps); once READY, warm it up and mark it ready, beside
        the next layer's deploys (which wait for this deploy, not its warm-up). Anything but READY fires the stop
        (a CANCELED deploy was stopped by it already): its checks must not wait for ever."""
        spec, target = self.rt.spec.service(name), self.rt.targets[name]
        state: State[Any] | None = None
        try:
            if spec.strategy.canary:
                change = await canary_service(self.rt, self.ledger, self.report, self.release, name, layer)
            else:
                state = await cast(Awaitable[State[ServiceChange]], deploy_service(  # an async task's call: a coroutine
                    as_is(self.ledger), as_is(self.release), name, as_is(target), layer, spec.ready_timeout_s,
                    as_is(self.stop), return_state=True))
                data = await state.aresult(raise_on_failure=False)
                if isinstance(data, BaseException):
                    raise data
                if not isinstance(data, ServiceChange):
                    raise AevonError(f"deploy of {name}: its task run ended {state.name} without a result")
                change = data
            if change.status == DeployStatus.READY:
                self.warming.append(asyncio.ensure_future(self._ready(name, state)))
        except BaseException:
            self.stop.set(f"deploy of {name} failed")
            raise
        if change.status not in (DeployStatus.READY, DeployStatus.CANCELED):
            self.stop.set(f"deploy of {name} failed")
        return change

    async def _ready(self, name: str, state: State[Any] | None) -> None:
        """Read what serves now, warm it up (its own warm-up requests), then let its checks start."""
        try:
            await self._warm(name, state)
        except BaseException as exc:
            self.stop.set(f"warm-up of {name} failed: {describe_error(exc)}")
            raise

    async def _warm(self, name: str, state: State[Any] | None) -> None:
        version = await self.rt.targets[name].current()
        warm = of_service(self.rt.spec.warmup, name)
        if version is not None and warm.requests and not self.stop.is_set():
            with self.report.step(f"warm-up: {name}") as st:
                wstate = await cast(Awaitable[State[dict[str, float]]], warm_up(
                    warm, {name: version}, name, return_state=True, wait_for=upstream([state])))
                w = await wstate.aresult(raise_on_failure=False)
                if not isinstance(w, dict):
                    raise AevonError(f"warm-up of {name}: {describe_error(w) if isinstance(w, BaseException) else '?'}")
                self.warmups.append(w)
                st.outcome = "degraded" if w.get("failed") else "ok"  # a warm-up with failed requests is not ok
                st.detail = f"{int(w.get('requests', 0))} requests, {int(w.get('failed', 0))} failed" + (
                    f", cold {w['cold_ms_max']:.0f} ms → warm {w['warm_p50_ms']:.0f} ms" if "warm_p50_ms" in w else "")
            state = wstate
        if version is not None:
            self.versions[name] = version
        if state is not None:
            self.upstream[name] = state
        self.ready[name].set()

    async def _check(self, node: CheckNode, spec: CheckSpec, chk: Check) -> None:
        state: State[Any] | None = None
        try:
            for svc in node.needs:
                await _either(self.ready[svc], self.stop)
            for before in node.after:
                await _either(self.done[before], self.stop)
            if self.stop.is_set():
                result = not_started(spec, self.stop)
            else:
                self._stage_started(node)
                inp = CheckInput(release=self.release, services=dict(self.versions), checkout_dir=self.checkout)
                upstream = [self.upstream.get(n) for n in (*node.needs, *node.after)]
                after = [s for s in upstream if s is not None and (s.is_completed() or s.is_failed())]
                result, state = await run_check_state(chk, spec, inp, "validate", self.stop, after)
                if self.fail_fast and is_blocking(result, spec):
                    self.stop.set(f"{result.name} failed" + (" (ERROR: could not measure)"
                                                              if result.outcome == Outcome.ERROR else ""))
        except BaseException as exc:
            self.stop.set(f"check {node.name} could not run: {describe_error(exc)}")
            result = not_started(spec, self.stop)
            raise
        finally:
            self.results[node.name] = result
            if state is not None:
                self.upstream[node.name] = state
            self.done[node.name].set()
            self._stage_progress(node)

    def _stage_started(self, node: CheckNode) -> None:
        st = self.stages[node.stage]
        if st.rec is None:
            st.rec, st.t0 = self.report.start_step(self._stage_name(st)), time.monotonic()

    def _stage_name(self, st: _Stage) -> str:
        return f"validation {st.index + 1}/{len(self.stages)}: {st.name}"

    def _stage_progress(self, node: CheckNode) -> None:
        st = self.stages[node.stage]
        st.left -= 1
        if st.left:
            return
        run = StageRun(name=st.name, checks=st.checks, results=[self.results[c] for c in st.checks])
        pairs = [(s, c) for s, c in self.rt.checks if s.name in st.checks]
        if st.rec is None:
            run.outcome = "not started"
            st.rec = StepRecord(name=self._stage_name(st), started_at=utcnow(), duration_s=0.0, outcome=run.outcome)
        else:
            run.outcome = ("failed" if blocking(pairs, run.results) else
                           "cancelled" if any(r.outcome == Outcome.CANCELLED for r in run.results) else "passed")
            st.rec.duration_s, st.rec.outcome = time.monotonic() - st.t0, run.outcome
        st.rec.detail = stage_detail(run)
        self.report.end_step(st.rec)


def _as_change(rt: Runtime, name: str, result: ServiceChange | BaseException) -> ServiceChange:
    if isinstance(result, ServiceChange):
        return result
    return ServiceChange(service=name, provider=rt.spec.service(name).provider, status=DeployStatus.FAILED,
                         message=describe_error(result), finished_at=utcnow())
