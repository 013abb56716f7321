"""Service tasks: deploy one service (journalled first), roll one back, each verified through its target."""

from __future__ import annotations

import time

from prefect import task
from pydantic import BaseModel

from providers.errors import AevonError
from providers.models import DeployStatus, Release, ServiceVersion
from providers.state.journal import JournalState, ServiceDetail, ServiceUndo
from providers.state.ledger import Ledger
from providers.targets.base import ServiceTarget
from tasks.common import TASK_DEFAULTS


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


@task(name="deploy-service", task_run_name="deploy-{service}", **TASK_DEFAULTS)
async def deploy_service(
    ledger: Ledger, release: Release, service: str, target: ServiceTarget, layer: int, timeout: float
) -> ServiceChange:
    """Record how to undo, then deploy `release` to `service` and wait until it is ready or failed.

    The undo record (the version serving before) is written before the first side effect and is kept on retries,
    so a crash at any point leaves enough to compensate.
    """
    start = time.monotonic()
    current = await target.current()
    entry = await ledger.record_intent(
        release.release_id, service, ServiceUndo(previous=current, layer=layer, provider=target.provider)
    )
    previous = entry.undo.previous
    before = previous.version if previous else None
    handle = await target.deploy(release)
    result = await target.wait_ready(handle, timeout)
    await ledger.mark(entry.id, JournalState.DONE,
                      ServiceDetail(status=result.status.value, vendor_ref=handle.vendor_ref))
    return ServiceChange(
        service=service, provider=target.provider, before=before, after=release.sha, status=result.status,
        message=result.message, url=handle.url, duration_s=time.monotonic() - start,
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
    result = await target.wait_ready(handle, timeout)
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


def describe_error(exc: BaseException) -> str:
    """A one-line, secret-free description of an exception for reports."""
    if isinstance(exc, AevonError):
        return str(exc)
    return f"{type(exc).__name__}: unexpected error (see the flow run logs)"
