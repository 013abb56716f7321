"""The canary step loop of one service: weight → pause → analysis → next weight; abort on a failed analysis."""

from __future__ import annotations

import asyncio
import time

from prefect.logging import get_run_logger

from deployments.spec import CanaryStep, CheckSpec
from flows.report import DeployReport
from flows.runtime import Runtime
from providers.checks.base import Check, CheckInput
from providers.models import CheckResult, DeployHandle, DeployStatus, Release, ServiceVersion
from providers.state.journal import CanaryDetail, CanaryEntry, CanaryUndo, JournalState, ServiceDetail, ServiceUndo
from providers.state.ledger import Ledger
from providers.targets.base import CanaryTarget, supports_canary
from tasks.checks import is_blocking, run_check
from tasks.common import as_is
from tasks.services import ServiceChange, deploy_service, describe_error
from tasks.stop import StopSignal


def canary_checks(rt: Runtime, service: str) -> list[tuple[CheckSpec, Check]]:
    """The validation checks marked `canary: true` that observe `service` (or name no service)."""
    return [(s, c) for s, c in rt.checks if s.canary and s.service in (None, service)]


async def canary_service(
    rt: Runtime, ledger: Ledger, report: DeployReport, release: Release, name: str, layer: int
) -> ServiceChange:
    """Deploy `release` to `name` in the spec's canary steps; FAILED (and the canary aborted) when an analysis fails.

    The canary is journalled (kind "canary": the stable version to go back to) before its first weight change, so a
    run killed mid-canary is compensated by the next one. A first deploy (nothing serving) has no stable version to
    protect and no traffic to split: it is deployed all at once.
    """
    spec = rt.spec.service(name)
    target = rt.targets[name]
    stable = await target.current()
    if stable is None or not supports_canary(target):
        get_run_logger().info("%s: nothing serves yet, so no canary: deployed all at once", name)
        return await deploy_service(as_is(ledger), release, name, as_is(target), layer, spec.ready_timeout_s)
    assert isinstance(target, CanaryTarget)
    t0 = time.monotonic()
    entry = await ledger.record_intent(release.release_id, name, CanaryUndo(
        provider=target.provider, stable=stable, canary_sha=release.sha, layer=layer))
    change = ServiceChange(service=name, provider=target.provider, before=stable.version, after=stable.version,
                           status=DeployStatus.FAILED)
    for step in spec.strategy.steps:
        if step.weight >= 100:
            break  # 100 %: the promotion below
        failed = await _step(rt, report, target, entry, release, stable, step)
        if failed:
            change.message, change.duration_s = failed, time.monotonic() - t0
            return change
    with report.step(f"canary {name}: promote") as st:
        svc = await ledger.record_intent(release.release_id, name, ServiceUndo(
            previous=stable, layer=layer, provider=target.provider))
        result = await target.promote_canary(release, spec.ready_timeout_s)
        await ledger.mark(svc.id, JournalState.DONE,
                          ServiceDetail(status=result.status.value, vendor_ref=result.handle.vendor_ref))
        ok = result.status == DeployStatus.READY
        await ledger.mark(entry.id, JournalState.DONE if ok else JournalState.INTENT,
                          CanaryDetail(outcome="promoted" if ok else None, weight=100 if ok else None))
        st.outcome, st.detail = ("ok" if ok else "failed"), result.message[:300]
    return ServiceChange(service=name, provider=target.provider, before=stable.version, after=release.sha,
                         status=result.status, message=result.message, url=result.handle.url,
                         duration_s=time.monotonic() - t0)


async def _step(
    rt: Runtime, report: DeployReport, target: CanaryTarget, entry: CanaryEntry, release: Release,
    stable: ServiceVersion, step: CanaryStep,
) -> str | None:
    """One canary step; None when it passed, else why it failed (the canary is aborted by then)."""
    name, ledger = target.service, rt.state.ledger
    with report.step(f"canary {name}: {step.weight}%") as st:
        result = await target.set_canary(release, step.weight, rt.spec.service(name).ready_timeout_s)
        handle = result.handle
        await ledger.mark(entry.id, JournalState.INTENT, CanaryDetail(
            handle=handle.vendor_ref, url=handle.url, weight=step.weight))
        if result.status != DeployStatus.READY:
            await _abort(target, entry, ledger, stable, f"the canary did not start: {result.message}", time.monotonic())
            st.outcome, st.detail = "failed", f"canary did not start: {result.message}"[:300]
            return st.detail
        served = f" [{result.message[:200]}]" if result.message else ""  # the target's own words: the real share
        if step.pause_s:
            await asyncio.sleep(step.pause_s)
        checks = canary_checks(rt, name) if step.analysis else []
        if not checks:
            st.detail = f"{step.weight}% for {step.pause_s:g}s, no analysis{served}"
            return None
        results, abort_s = await _analyse(rt, target, entry, release, stable, handle, step, checks)
        bad = [r for (s, _), r in zip(checks, results, strict=True) if is_blocking(r, s)]
        if not bad:
            st.detail = f"{step.weight}%: " + ", ".join(f"{r.name} {r.outcome}" for r in results) + served
            return None
        why = "; ".join(f"{r.name}: {r.summary}" for r in bad)[:400]
        st.outcome = "failed"
        st.detail = (f"analysis failed at {step.weight}%: {why}; traffic back on {stable.version[:12]} "
                     f"{abort_s:.2f}s after the first failing result{served}")[:800]
        get_run_logger().warning("canary %s: %s", name, st.detail)
        return f"canary aborted at {step.weight}%: {why} (traffic back on stable in {abort_s:.2f}s)"


async def _analyse(
    rt: Runtime, target: CanaryTarget, entry: CanaryEntry, release: Release, stable: ServiceVersion,
    handle: DeployHandle, step: CanaryStep, checks: list[tuple[CheckSpec, Check]],
) -> tuple[list[CheckResult], float]:
    """Run the canary checks together against the canary; the first blocking result aborts the canary at once
    (while the others are being cancelled). Returns the results and the abort's seconds (0: not aborted)."""
    name = target.service
    canary = ServiceVersion(service=name, version=release.sha, release_id=release.release_id,
                            vendor_ref=handle.vendor_ref, url=handle.url,
                            detail={"canary": True, "weight": step.weight, "stable": stable.version})
    inp = CheckInput(release=release, services={name: canary}, checkout_dir=None)
    stop = StopSignal()

    async def one(spec: CheckSpec, chk: Check) -> CheckResult:
        res = await run_check(chk, spec, inp, f"canary-{name}-{step.weight}", stop)
        if is_blocking(res, spec):
            stop.set(f"{spec.name}: {res.summary}")
        return res

    analysis = asyncio.ensure_future(asyncio.gather(*(one(s, c) for s, c in checks)))
    waiter = asyncio.ensure_future(stop.wait())
    try:
        pending: list[asyncio.Future[object]] = [analysis, waiter]  # type: ignore[list-item]
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        abort_s = 0.0
        if stop.is_set():  # traffic back on stable now, not once the other checks have wound down
            abort_s = await _abort(target, entry, rt.state.ledger, stable, stop.reason, stop.at or time.monotonic())
        results = list(await analysis)
    finally:
        waiter.cancel()
    return results, abort_s


async def _abort(
    target: CanaryTarget, entry: CanaryEntry, ledger: Ledger, stable: ServiceVersion, why: str, since: float
) -> float:
    """Abort the canary (all traffic to stable); journal it (left open: the rollback subflow closes it)."""
    await target.abort_canary(stable)
    took = time.monotonic() - since
    await ledger.mark(entry.id, JournalState.DONE, CanaryDetail(outcome="aborted", why=why[:500], abort_s=took))
    return took


async def undo_canary(rt: Runtime, entry: CanaryEntry) -> ServiceChange | None:
    """Rollback / compensation of a journalled canary: traffic back to the stable version, the canary removed.

    A promoted canary is closed without acting (its service entry rolls the service back); an aborted or unfinished
    one (a run killed mid-canary) is aborted again (idempotent) and checked: the stable version serves.
    """
    ledger = rt.state.ledger
    if entry.detail.outcome == "promoted":
        await ledger.mark(entry.id, JournalState.UNDONE, CanaryDetail(note="promoted; its service entry undoes it"))
        return None
    stable = entry.undo.stable
    target = rt.targets.get(entry.target)
    change = ServiceChange(service=entry.target, provider=entry.undo.provider, before=entry.undo.canary_sha,
                           after=stable.version if stable else None, status=DeployStatus.FAILED)
    if target is None or not supports_canary(target):
        change.message = "service no longer in the spec (or no longer a canary target): remove its canary by hand"
        return change
    assert isinstance(target, CanaryTarget)
    t0 = time.monotonic()
    try:
        await target.abort_canary(stable)
        now = await target.current()
    except Exception as exc:
        change.message = f"canary abort failed: {describe_error(exc)}"
        return change
    serving = now.version if now else None
    change.after, change.duration_s = serving, time.monotonic() - t0
    if stable is not None and serving != stable.version:
        change.message = f"after aborting the canary {entry.target} serves {serving or 'nothing'}, not the stable " \
                         f"{stable.version[:12]}"
        return change
    await ledger.mark(entry.id, JournalState.UNDONE, CanaryDetail(note="canary aborted; stable serves"))
    change.status = DeployStatus.READY
    change.message = f"canary {entry.undo.canary_sha[:12]} removed; {serving[:12] if serving else 'nothing'} serves all"
    return change
