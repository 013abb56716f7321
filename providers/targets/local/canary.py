"""The local target's canary: a second instance behind the same stable port, given a share of new connections."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from providers.errors import DeployFailed
from providers.models import DeployResult, DeployStatus, Release
from providers.targets.local import proxy
from providers.targets.local.instances import canary_route
from providers.targets.local.process import pid_alive, proc_start_time, read_pidfile
from providers.targets.local.state import Instance

if TYPE_CHECKING:
    from providers.targets.local.target import LocalTarget


async def _listening(t: LocalTarget, inst: Instance, budget: float) -> str | None:
    """Wait until `inst` answers HTTP on its backend port; the reason it did not, or None."""
    t0 = time.monotonic()
    while True:
        if inst.pid is None:
            inst.pid = read_pidfile(t.instances.store.pid_path(inst.id))
            inst.start_time = proc_start_time(inst.pid) if inst.pid else None
        if not pid_alive(inst.pid, inst.start_time):
            return "the process exited before it was ready"
        status = await t.instances.probe(inst.port, min(2.0, max(0.2, budget - (time.monotonic() - t0))))
        if status is not None and (not t.settings.ready_requires_2xx or 200 <= status < 300):
            return None
        if time.monotonic() - t0 >= budget:
            return f"not ready within {budget:g}s"
        await asyncio.sleep(0.1)


async def set_canary(t: LocalTarget, release: Release, weight: int, timeout: float) -> DeployResult:
    """Start the release's instance (idempotent per release id) and give it `weight` % of new connections.

    The stable instance keeps serving the rest; READY's `handle.url` is the canary's own backend URL (analysis).
    """
    t0 = time.monotonic()
    handle = await t.deploy(release)
    inst = t.instances.store.load().get(handle.vendor_ref)
    if inst is None or inst.status not in ("starting", "standby"):
        why = "is already serving everything" if inst is not None and inst.status == "active" else (
            inst.message or inst.status if inst is not None else "is unknown")
        return DeployResult(handle=handle, status=DeployStatus.FAILED, message=f"canary {handle.vendor_ref} {why}",
                            duration_s=time.monotonic() - t0)
    error = await _listening(t, inst, min(timeout, t.settings.startup_timeout_s))
    if error is not None:
        return await t.instances.fail(inst, f"canary {error}", handle, t0)
    async with t.instances.store.transaction() as st:
        active = st.get(st.active)
        if active is None or not pid_alive(active.pid, active.start_time):
            raise DeployFailed("no stable instance serves to split traffic with", provider="local",
                               resource=t.service)
        await proxy.ensure_proxy(port=t.settings.port, control=t.instances.store.control_path,
                                 info=t.instances.store.proxy_info_path, log=t.instances.store.proxy_log)
        rec = st.get(inst.id)
        if rec is not None:
            rec.pid, rec.start_time = inst.pid, inst.start_time
        st.canary, st.canary_weight = inst.id, weight
        canary_route(st, t.instances.store.control_path, active)
    url = f"http://127.0.0.1:{inst.port}"
    ready = handle.model_copy(update={"url": url, "detail": {**handle.detail, "weight": weight}})
    return DeployResult(handle=ready, status=DeployStatus.READY, duration_s=time.monotonic() - t0,
                        message=f"canary {inst.id} ({release.short_sha}) takes {weight}% of new connections on {t.url}")


async def promote_canary(t: LocalTarget, release: Release, timeout: float) -> DeployResult:
    """The canary instance becomes the active one (the usual blue/green switch); the canary route ends with it."""
    handle = await t.deploy(release)  # the canary's instance (idempotent per release id)
    return await t.wait_ready(handle, timeout)


async def abort_canary(t: LocalTarget) -> None:
    """All new connections back to the active instance at once, then the canary instance (and any instance still
    starting: what a killed run left) stopped. A no-op when there is no canary."""
    async with t.instances.store.transaction() as st:
        st.canary, st.canary_weight = None, 0
        active = st.get(st.active)
        if active is not None:
            canary_route(st, t.instances.store.control_path, active)  # first: traffic back on stable
        leftovers = [i for i in st.instances.values() if i.status == "starting" and i.id != st.active]
        for inst in leftovers:
            if inst.pid is None:
                inst.pid = read_pidfile(t.instances.store.pid_path(inst.id))
                inst.start_time = proc_start_time(inst.pid) if inst.pid else None
            inst.status, inst.message = "stopping", "canary aborted"
    await t.instances.stop(leftovers)
    async with t.instances.store.transaction() as st:
        for inst in leftovers:
            if (rec := st.get(inst.id)) is not None and rec.status == "stopped":
                rec.status, rec.message = "failed", "canary aborted"
