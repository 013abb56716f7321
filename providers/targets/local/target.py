"""The `local` service target: a service runs as local processes behind a stable-port proxy, switched blue/green."""

from __future__ import annotations

import asyncio
import sys
import time

import httpx

from providers.errors import DeployFailed
from providers.models import DeployHandle, DeployResult, DeployStatus, Release, ServiceVersion
from providers.source.refs import require_sha
from providers.targets.base import TargetContext
from providers.targets.local import proxy
from providers.targets.local.canary import abort_canary, promote_canary, set_canary
from providers.targets.local.instances import Instances, by_release, result
from providers.targets.local.process import pid_alive, proc_start_time, read_pidfile
from providers.targets.local.settings import LocalSettings, load_settings
from providers.targets.local.stop import local_services, main, stop_all

__all__ = ["LocalTarget", "local_services", "main", "make_target", "stop_all"]


class LocalTarget:
    """Runs one service as processes on 127.0.0.1: the active one, a warm standby, any starting one (or canary).

    Each deploy starts a new instance (the release's SHA, checked out) on a free backend port as a detached
    session leader; users hit the stable `port`, where a detached proxy daemon (local_proxy) splices each new TCP
    connection to the upstream named in a control file, which a switch replaces with one atomic rename. Open
    connections finish where they are; the previous instance stays up as a warm standby (instant rollback); older
    ones get SIGTERM, then SIGKILL after `stop_grace_s`. State (local_state) lives in
    `<state_dir>/local-<service>/`, written atomically under an flock; every call first reconciles it with the
    processes, so a CLI that died anywhere leaves nothing a re-run cannot sort out.

    Readiness rule: an instance is ready once its process is alive and answers HTTP on `health_path` with any
    status (a 503 still means it started and listens: post-deploy validation judges health and rolls back);
    `ready_requires_2xx` makes it strict. A process that exits or never answers in time is FAILED, stopped, and
    the stable port stays where it was.
    """

    provider = "local"
    abandonable_rollout = True  # fail fast may stop waiting: the rollback stops an instance abandoned while starting

    def __init__(self, ctx: TargetContext, settings: LocalSettings, *, http: httpx.AsyncClient | None = None) -> None:
        self.service = ctx.spec.name
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.port}"
        self._ctx = ctx
        self._http = http or httpx.AsyncClient(trust_env=False, timeout=2.0)
        self._owns_http = http is None
        self.instances = Instances(ctx, settings, self._http)  # local/instances.py: processes and state file

    # ---- the ServiceTarget protocol ----------------------------------------------------------------------------

    async def current(self) -> ServiceVersion | None:
        st = self.instances.store.load()
        active = st.get(st.active)
        if active is None:
            return None
        version = self.instances.version(active)
        version.detail["alive"] = pid_alive(active.pid, active.start_time)
        version.detail["proxy_alive"] = proxy.running_proxy(self.instances.store.proxy_info_path) is not None
        standby = st.get(st.standby)
        version.detail["standby"] = standby.sha if standby else None
        return version

    async def deploy(self, release: Release) -> DeployHandle:
        sha = _check_sha(release.sha)
        async with self.instances.store.transaction() as st:
            stale = self.instances.reconcile(st)
            found = by_release(st, release.release_id)
        await self.instances.stop(stale)
        if found is not None:
            return self.instances.handle(found)
        checkout = await self.instances.checkout(sha, release.checkout_dir)
        async with self.instances.store.transaction() as st:
            found = by_release(st, release.release_id)  # another process may have started it meanwhile
            if found is None:
                found = await self.instances.start(st, sha, release.release_id, checkout, "deploy")
        return self.instances.handle(found)

    async def wait_ready(self, handle: DeployHandle, timeout: float) -> DeployResult:
        t0, ins = time.monotonic(), self.instances
        inst = ins.store.load().get(handle.vendor_ref)
        if inst is None:
            return result(handle, DeployStatus.FAILED, f"unknown local instance {handle.vendor_ref!r}", t0)
        if inst.status == "active":
            if pid_alive(inst.pid, inst.start_time):
                return result(ins.handle(inst), DeployStatus.READY, f"{ins.where(inst)} is serving", t0)
            return result(handle, DeployStatus.FAILED, f"{ins.where(inst)}: process is gone", t0)
        if inst.status not in ("starting", "standby"):
            return result(handle, DeployStatus.FAILED, f"{ins.where(inst)}: {inst.message or inst.status}", t0)
        budget = min(timeout, self.settings.startup_timeout_s)
        last = "no HTTP answer"
        while True:
            if inst.pid is None:
                inst.pid = read_pidfile(ins.store.pid_path(inst.id))
                inst.start_time = proc_start_time(inst.pid) if inst.pid else None
            if not pid_alive(inst.pid, inst.start_time):
                return await ins.fail(inst, "the process exited before it was ready", handle, t0)
            status = await ins.probe(inst.port, min(2.0, max(0.2, budget - (time.monotonic() - t0))))
            if status is not None:
                if not self.settings.ready_requires_2xx or 200 <= status < 300:
                    break
                last = f"{self.settings.health_path} answered {status}"
            if time.monotonic() - t0 >= budget:
                return await ins.fail(inst, f"not ready within {budget:g}s ({last})", handle, t0)
            await asyncio.sleep(0.1)
        error = await ins.activate(inst.id)
        if error is not None:
            if inst.status == "starting":
                return await ins.fail(inst, error, handle, t0)
            return result(handle, DeployStatus.FAILED, f"{ins.where(inst)}: {error}", t0)
        return result(ins.handle(inst), DeployStatus.READY, f"{ins.where(inst)} is serving on {self.url}", t0)

    async def rollback(self, to: ServiceVersion) -> DeployHandle:
        sha = _check_sha(to.version)
        async with self.instances.store.transaction() as st:
            stale = self.instances.reconcile(st)
            active, standby = st.get(st.active), st.get(st.standby)
            starting = [i for i in st.instances.values() if i.status == "starting" and i.sha == sha]
            abandoned = [i for i in st.instances.values() if i.status == "starting" and i.sha != sha]
            for i in abandoned:  # a deploy stopped mid-rollout (fail fast): its process goes with the rollback
                i.pid = i.pid or read_pidfile(self.instances.store.pid_path(i.id))
                i.start_time = i.start_time or (proc_start_time(i.pid) if i.pid else None)
                i.status, i.message = "stopping", "rolled back while it was starting"
        await self.instances.stop(stale + abandoned)
        if active is not None and active.sha == sha and pid_alive(active.pid, active.start_time):
            return self.instances.handle(active)  # already serving: a no-op
        if standby is not None and standby.sha == sha and await self.instances.probe(standby.port) is not None:
            error = await self.instances.activate(standby.id, event="rollback")  # instant: the standby is warm
            if error is not None:
                raise DeployFailed(error, provider=self.provider, resource=self.service)
            return self.instances.handle(self.instances.store.load().get(standby.id) or standby)
        if starting:
            return self.instances.handle(max(starting, key=lambda i: i.seq))
        checkout = await self.instances.checkout(sha, None)
        async with self.instances.store.transaction() as st:
            inst = await self.instances.start(st, sha, to.release_id, checkout, "rollback")
        return self.instances.handle(inst)

    # ---- the canary capability (providers.targets.base.CanaryTarget; local/canary.py, per-connection split) ------
    supports_canary = True

    async def set_canary(self, release: Release, weight: int, timeout: float) -> DeployResult:
        return await set_canary(self, release, weight, timeout)

    async def promote_canary(self, release: Release, timeout: float) -> DeployResult:
        return await promote_canary(self, release, timeout)

    async def abort_canary(self, stable: ServiceVersion | None) -> None:
        await abort_canary(self)

    async def history(self) -> list[ServiceVersion]:
        st = self.instances.store.load()
        return [
            ServiceVersion(
                service=self.service, version=h.version, release_id=h.release_id, vendor_ref=h.instance, url=self.url,
                detail={"event": h.event, "at": h.at.isoformat()},
            )
            for h in reversed(st.history)
        ]

    async def aclose(self) -> None:
        """Close the HTTP client; the service, its standby and the proxy keep running."""
        if self._owns_http:
            await self._http.aclose()

    async def stop_all(self) -> None:
        """Stop the proxy and every instance of this service (tests, `make stop`, demo teardown)."""
        await stop_all(self._ctx.state_dir, self.service, grace=self.settings.stop_grace_s)


def _check_sha(sha: str) -> str:
    return require_sha(sha)


def make_target(ctx: TargetContext) -> LocalTarget:
    """Factory registered as `local`."""
    settings = load_settings(ctx)
    http = ctx.extra.get("http_client")
    return LocalTarget(ctx, settings, http=http if isinstance(http, httpx.AsyncClient) else None)


if __name__ == "__main__":  # `python -m providers.targets.local.target stop STATE_DIR [SERVICE ...]` (local/stop.py)
    sys.exit(main())
