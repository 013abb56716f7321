"""Service tasks: deploy one service (journalled first), roll one back, each verified through its target."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from datetime import datetime
from typing import Literal, Protocol, TypeVar, cast, runtime_checkable

from prefect import task
from prefect.states import Cancelled
from pydantic import BaseModel

from providers.errors import AevonError
from providers.models import DeployHandle, DeployStatus, Release, ServiceVersion, utcnow
from providers.state.journal import JournalState, ServiceDetail, ServiceUndo
from providers.state.ledger import Ledger
from providers.targets.base import ServiceTarget
from tasks.common import TASK_DEFAULTS
from tasks.stop import StopSignal, until_stopped

log = logging.getLogger("aevon.run")  # forwarded to the run's Logs tab (flows/observe.py)
PROGRESS_EVERY_S = 30.0  # a long rollout says it is still going, so that it never looks frozen
# What fail fast does with a rollout in flight is up to the target, which declares it (see stop_action):
# `abandonable_rollout = True`: its rollback supersedes a rollout still in flight, so the wait is simply given up
# (Kubernetes, GKE, Vercel, local); `cancellable_rollout = True` with `cancel_rollout(handle)`: the vendor puts a
# deploy live by itself once it is ready, even after a rollback, so the rollout is cancelled through the vendor's
# API and followed to its end before the rollback starts (Render, Railway, Koyeb: CancelsRollout in
# providers/targets/paas/base.py). Any other target's rollout runs to its end first.
T = TypeVar("T")


async def _following(what: str, timeout: float, waiting: Awaitable[T]) -> T:
    """Await `waiting` (a target's wait_ready), logging every PROGRESS_EVERY_S that the rollout is still going."""
    t0 = time.monotonic()
    job = asyncio.ensure_future(waiting)
    try:
        while True:
            done, _ = await asyncio.wait({job}, timeout=PROGRESS_EVERY_S)
            if done:
                return job.result()
            log.info("%s: still rolling out after %.0fs (timeout %.0fs)", what, time.monotonic() - t0, timeout)
    finally:
        if not job.done():  # cancelled from outside (fail fast, the run ends): the wait goes with it
            job.cancel()


class ServiceChange(BaseModel):
    """What happened to one service in a run (or a rollback)."""

    service: str
    provider: str
    before: str | None = None
    after: str | None = None
    status: DeployStatus
    message: str = ""
    url: str | None = None
    duration_s: float = 0.0
    finished_at: datetime | None = None  # when it was ready, failed or stopped


@task(name="deploy-service", task_run_name="deploy-{service}", **TASK_DEFAULTS)
async def deploy_service(
    ledger: Ledger, release: Release, service: str, target: ServiceTarget, layer: int, timeout: float,
    stop: StopSignal | None = None,
) -> ServiceChange:
    """Record how to undo, then deploy `release` to `service` and wait until it is ready or failed.

    The undo record (the version serving before) is written before the first side effect and is kept on retries,
    so a crash at any point leaves enough to compensate. When `stop` fires during the rollout (a check or another
    deploy failed) and the target allows it (`stop_action`), the wait is given up at once, or the rollout is
    cancelled through the vendor and followed to its end (quick once cancelled); either way the task run ends
    Cancelled with status CANCELED, and the journal entry stays open (noted "stopped mid-rollout", with what the
    vendor answered to the cancel), so the rollback that follows puts the previous version back. Other targets'
    rollouts run to their end first.
    """
    start = time.monotonic()
    current = await target.current()
    entry = await ledger.record_intent(
        release.release_id, service, ServiceUndo(previous=current, layer=layer, provider=target.provider)
    )
    previous = entry.undo.previous
    before = previous.version if previous else None
    handle = await target.deploy(release)
    what = f"{service} [{target.provider}] {before[:12] if before else 'nothing'} → {release.sha[:12]}"
    log.info("%s: rollout started%s", what, f" ({handle.vendor_ref})" if handle.vendor_ref else "")
    waiting = asyncio.ensure_future(target.wait_ready(handle, timeout))  # a task: cancelled below if never awaited
    action = stop_action(target)
    try:
        result, stopped = await until_stopped(_following(what, timeout, waiting), stop if action else None)
    finally:
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
    if stopped or result is None:
        why = f"stopped mid-rollout: {stop.reason if stop is not None else 'stopped'}"
        if action == "cancel":
            left = max(timeout - (time.monotonic() - start), 1.0)
            why = f"{why}; {await _cancel_in_flight(cast(CancellableTarget, target), handle, what, left)}"
        await ledger.mark(entry.id, JournalState.INTENT, ServiceDetail(vendor_ref=handle.vendor_ref, note=why))
        log.warning("%s: %s", what, why)
        change = ServiceChange(service=service, provider=target.provider, before=before, after=None,
                               status=DeployStatus.CANCELED, message=why, url=handle.url,
                               duration_s=time.monotonic() - start, finished_at=utcnow())
        return cast(ServiceChange, Cancelled(data=change, message=why))  # the UI shows it stopped, not completed
    await ledger.mark(entry.id, JournalState.DONE,
                      ServiceDetail(status=result.status.value, vendor_ref=handle.vendor_ref))
    return ServiceChange(
        service=service, provider=target.provider, before=before, after=release.sha, status=result.status,
        message=result.message, url=handle.url, duration_s=time.monotonic() - start, finished_at=utcnow(),
    )


@task(name="rollback-service", task_run_name="rollback-{service}", **TASK_DEFAULTS)
async def rollback_service(
    ledger: Ledger, entry_id: int, service: str, target: ServiceTarget, previous: ServiceVersion | None, timeout: float
) -> ServiceChange:
    """Put `previous` back on `service` and verify through the target that it serves again."""
    start = time.monotonic()
    current = await target.current()
    now = current.version if current else None
    if previous is None:
        await ledger.mark(entry_id, JournalState.UNDONE,
                          ServiceDetail(note="no earlier version existed; nothing to roll back to"))
        return ServiceChange(
            service=service, provider=target.provider, before=now, after=now, status=DeployStatus.FAILED,
            message="no earlier version to roll back to (first deploy of this service)",
        )
    handle = await target.rollback(previous)
    what = f"rollback of {service} [{target.provider}] {now[:12] if now else 'nothing'} → {previous.version[:12]}"
    log.info("%s: started", what)
    result = await _following(what, timeout, target.wait_ready(handle, timeout))
    after = await target.current()
    ok = result.status == DeployStatus.READY and after is not None and after.version == previous.version
    if ok:
        await ledger.mark(entry_id, JournalState.UNDONE, ServiceDetail(restored=previous.version))
    message = result.message or ("" if ok else f"serving {after.version if after else 'nothing'} after rollback")
    return ServiceChange(
        service=service, provider=target.provider, before=now, after=after.version if after else None,
        status=DeployStatus.READY if ok else DeployStatus.FAILED, message=message,
        url=after.url if after else None, duration_s=time.monotonic() - start,
    )


@runtime_checkable
class CancellableTarget(ServiceTarget, Protocol):
    """A target that can cancel its rollout in flight through the vendor (`cancellable_rollout = True`)."""

    cancellable_rollout: bool

    async def cancel_rollout(self, handle: DeployHandle) -> bool:
        """True when the vendor cancelled the rollout before it went live; False when it had gone live or ended
        already, or can no longer be cancelled (it then ends by itself). Idempotent."""
        ...


def stop_action(target: ServiceTarget) -> Literal["abandon", "cancel"] | None:
    """What fail fast does with `target`'s rollout in flight, as the target declares it: give the wait up
    (`abandonable_rollout`), cancel it through the vendor (`cancellable_rollout`), or nothing (None: it runs to
    its end)."""
    if getattr(target, "abandonable_rollout", False) is True:
        return "abandon"
    if getattr(target, "cancellable_rollout", False) is True and isinstance(target, CancellableTarget):
        return "cancel"
    return None


async def _cancel_in_flight(target: CancellableTarget, handle: DeployHandle, what: str, timeout: float) -> str:
    """Cancel a rollout the vendor would put live by itself, then follow it to its end, so that the rollback that
    follows never races it; returns what the vendor answered, in words."""
    vendor = target.provider.capitalize()
    try:
        cancelled: bool | None = await target.cancel_rollout(handle)
        failure = ""
    except AevonError as exc:
        cancelled, failure = None, describe_error(exc)
    log.info("%s: cancel asked of %s: %s", what, vendor,
             {True: "cancelled", False: "not cancellable", None: f"failed ({failure})"}[cancelled])
    try:
        end = await _following(what, timeout, target.wait_ready(handle, timeout))
    except AevonError as exc:
        return f"cancel at {vendor}: {'sent' if cancelled else failure or 'refused'}; its end could not be read " \
               f"({describe_error(exc)})"
    if cancelled and end.status is not DeployStatus.READY:
        return f"{vendor} cancelled the rollout before it went live (vendor status: {end.message})"
    if end.status is DeployStatus.READY:
        return f"{vendor} had put it live already, too late to cancel (vendor status: {end.message})"
    how = f"the cancel failed ({failure})" if cancelled is None else f"{vendor} could not cancel it any more"
    return f"{how}; it ended {end.status.value} (vendor status: {end.message})"


def describe_error(exc: BaseException) -> str:
    """A one-line, secret-free description of an exception for reports."""
    if isinstance(exc, AevonError):
        return str(exc)
    return f"{type(exc).__name__}: unexpected error (see the flow run logs)"
