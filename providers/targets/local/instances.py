"""The local target's instances of one service: start, route the stable port (and a canary share), fail, stop."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Literal

import httpx

from providers.errors import ConfigError, DeployFailed, PermanentError
from providers.models import DeployHandle, DeployResult, DeployStatus, ServiceVersion, utcnow
from providers.targets.base import TargetContext
from providers.targets.local import proxy
from providers.targets.local.process import (
    base_env,
    free_port,
    log_tail,
    pid_alive,
    proc_start_time,
    read_pidfile,
    spawn_detached,
    terminate,
)
from providers.targets.local.settings import LocalSettings
from providers.targets.local.state import LIVE, HistoryEntry, Instance, State, StateStore

_NEVER_STARTED = timedelta(seconds=60)  # a recorded instance with no pid (nor pid file) after this never started


class Instances:
    """The processes of one local service and their state file (`<state_dir>/local-<service>/`).

    Every instance is recorded before its process exists (a crash leaves a trace and a pid file); `reconcile` brings
    the state back in line with the processes; `activate` switches the stable port's proxy to a ready instance,
    keeps the previous one as a warm standby and stops older ones.
    """

    def __init__(self, ctx: TargetContext, settings: LocalSettings, http: httpx.AsyncClient) -> None:
        self.service = ctx.spec.name
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.port}"
        self.ctx = ctx
        self.store = StateStore(ctx.state_dir / f"local-{self.service}", self.service)
        self.http = http

    async def start(
        self, st: State, sha: str, release_id: str | None, checkout: Path, kind: Literal["deploy", "rollback"]
    ) -> Instance:
        st.seq += 1
        used = {i.port for i in st.instances.values() if i.status in LIVE} | {self.settings.port}
        inst_id = f"i{st.seq}-{sha[:8]}"
        inst = Instance(
            id=inst_id, seq=st.seq, sha=sha, release_id=release_id, kind=kind, checkout=str(checkout),
            port=free_port(used), log=str(self.store.log_path(inst_id)),
        )
        st.instances[inst.id] = inst
        self.store.save(st)  # recorded before it exists: a crash from here on leaves a trace (and a pid file)
        subst = {"{python}": sys.executable, "{port}": str(inst.port), "{checkout}": str(checkout)}
        argv = [expand(a, subst) for a in self.settings.command]
        env = base_env() | {"PORT": str(inst.port)} | {k: expand(v, subst) for k, v in self.settings.env.items()}
        env |= {name: value.get_secret_value() for name, value in self.ctx.secrets.items()}
        env |= {"AEVON_SERVICE": self.service, "AEVON_RELEASE_SHA": sha, "AEVON_RELEASE_ID": release_id or "",
                "AEVON_INSTANCE_ID": inst.id}
        try:
            inst.pid, inst.start_time = await spawn_detached(
                argv, cwd=checkout, env=env, log=Path(inst.log), pidfile=self.store.pid_path(inst.id)
            )
        except PermanentError as exc:
            inst.status, inst.message = "failed", f"could not start: {exc}"
        return inst

    async def activate(self, instance_id: str, event: str | None = None) -> str | None:
        """Switch the stable port to a ready instance; keep the previous one as standby; stop older ones."""
        async with self.store.transaction() as st:
            stale = self.reconcile(st)
            inst = st.get(instance_id)
            if inst is None or inst.status not in ("starting", "standby", "active"):
                return "the instance was stopped before it could be switched to"
            if not pid_alive(inst.pid, inst.start_time):
                return "the process exited before the switch"
            try:
                await proxy.ensure_proxy(port=self.settings.port, control=self.store.control_path,
                                         info=self.store.proxy_info_path, log=self.store.proxy_log)
            except DeployFailed as exc:
                return str(exc)
            if st.active != inst.id:
                prev, old_standby = st.get(st.active), st.get(st.standby)
                keep = prev if prev is not None and pid_alive(prev.pid, prev.start_time) else old_standby
                for other in st.instances.values():
                    if other is inst or other is keep:
                        continue
                    if other.status in ("active", "standby") or (other.status == "starting" and other.seq < inst.seq):
                        other.status, other.message = "stopping", f"replaced by {inst.id}"
                        stale.append(other)
                if keep is not None and keep is not inst:
                    keep.status = "standby"
                inst.status, inst.activated_at, inst.message = "active", utcnow(), ""
                st.active, st.standby = inst.id, keep.id if keep is not None and keep is not inst else None
                st.canary, st.canary_weight = None, 0  # the control file below has no canary: it ends here
                st.history.append(HistoryEntry(version=inst.sha, release_id=inst.release_id, instance=inst.id,
                                               event="rollback" if (event or inst.kind) == "rollback" else "deploy"))
                self.store.save(st)  # the intent first; the proxy follows it (a crash in between is repaired)
            proxy.write_upstream(self.store.control_path, proxy.Upstream(inst.port, inst.id, inst.sha))
        await self.stop(stale)
        return None

    async def fail(self, inst: Instance, reason: str, handle: DeployHandle, t0: float) -> DeployResult:
        await terminate(inst.pid, inst.start_time, self.settings.stop_grace_s)
        async with self.store.transaction() as st:
            rec = st.get(inst.id)
            if rec is not None and rec.status in ("starting", "stopping"):
                rec.status, rec.message = "failed", reason
        tail = log_tail(Path(inst.log), [s.get_secret_value() for s in self.ctx.secrets.values()])
        message = f"{self.where(inst)}: {reason} (stopped; the stable port was not switched to it)"
        if tail:
            message += f"\n--- last lines of {inst.log} ---\n{tail}"
        return result(handle, DeployStatus.FAILED, message, t0)

    def reconcile(self, st: State) -> list[Instance]:
        """Bring the state in line with the processes (after a crash); return instances still to be stopped."""
        stale: list[Instance] = []
        for inst in st.instances.values():
            if inst.status not in LIVE:
                continue
            if inst.pid is None:  # started but not recorded: the launcher's pid file knows
                inst.pid = read_pidfile(self.store.pid_path(inst.id))
                inst.start_time = proc_start_time(inst.pid) if inst.pid else None
                if inst.pid is None and utcnow() - inst.created_at > _NEVER_STARTED:
                    inst.status, inst.message = "failed", "the process never started (launch interrupted)"
                    continue
            alive = pid_alive(inst.pid, inst.start_time)
            if inst.status == "stopping" or (inst.status == "active" and inst.id != st.active):
                inst.status = "stopping" if alive else "stopped"
                if alive:
                    stale.append(inst)
            elif inst.status == "standby" and not alive:
                inst.status, inst.message = "stopped", "exited while on standby"
        if st.standby is not None and (s := st.get(st.standby)) is not None and s.status != "standby":
            st.standby = None
        active = st.get(st.active)
        if active is not None and pid_alive(active.pid, active.start_time):
            canary_route(st, self.store.control_path, active)  # crashed between state and control: repaired
        return stale

    async def stop(self, instances: list[Instance]) -> None:
        if not instances:
            return
        grace = self.settings.stop_grace_s
        await asyncio.gather(*(terminate(i.pid, i.start_time, grace) for i in instances))
        async with self.store.transaction() as st:
            for i in instances:
                rec = st.get(i.id)
                if rec is not None and rec.status == "stopping" and not pid_alive(rec.pid, rec.start_time):
                    rec.status = "stopped"

    async def checkout(self, sha: str, checkout_dir: str | None) -> Path:
        if checkout_dir is None and self.ctx.source is not None:
            return await self.ctx.source.checkout(sha)
        return self._existing_checkout(sha, checkout_dir)

    def _existing_checkout(self, sha: str, checkout_dir: str | None) -> Path:
        if checkout_dir is not None:
            if not Path(checkout_dir).is_dir():
                raise ConfigError(f"checkout directory {checkout_dir} does not exist", "release.checkout_dir")
            return Path(checkout_dir)
        for inst in self.store.load().instances.values():  # no git source: reuse a checkout an instance ran from
            if inst.sha == sha and Path(inst.checkout).is_dir():
                return Path(inst.checkout)
        raise PermanentError(f"no checkout of {sha[:12]} and no git source to make one", provider="local",
                             resource=self.service)

    async def probe(self, port: int, timeout: float = 2.0) -> int | None:
        """The HTTP status the health path answers on `port`, or None when nothing answers."""
        try:
            resp = await self.http.get(f"http://127.0.0.1:{port}{self.settings.health_path}", timeout=timeout,
                                        headers={"Connection": "close"})
        except httpx.HTTPError:
            return None
        return resp.status_code

    def where(self, inst: Instance) -> str:
        return f"{self.service} {inst.sha[:12]} (instance {inst.id}, port {inst.port})"

    def version(self, inst: Instance) -> ServiceVersion:
        return ServiceVersion(service=self.service, version=inst.sha, release_id=inst.release_id,
                              vendor_ref=inst.id, url=self.url, detail=detail(inst))

    def handle(self, inst: Instance) -> DeployHandle:
        return DeployHandle(service=self.service, version=inst.sha, release_id=inst.release_id,
                            vendor_ref=inst.id, url=self.url, detail=detail(inst))


def canary_route(st: State, control: Path, active: Instance) -> None:
    """Make the control file say what the state says: `active` serves, and the canary (if one is alive) takes its
    weight. Written only when it differs (a crash between the state and the control file is repaired here)."""
    canary = st.get(st.canary)
    if canary is not None and (canary.status not in LIVE or not pid_alive(canary.pid, canary.start_time)):
        st.canary, st.canary_weight, canary = None, 0, None  # a canary that died takes no more traffic
    want = proxy.Route(proxy.Upstream(active.port, active.id, active.sha),
                       proxy.Upstream(canary.port, canary.id, canary.sha) if canary else None,
                       st.canary_weight if canary else 0)
    if proxy.read_route(control) != want:
        proxy.write_upstream(control, want.stable, want.canary, want.weight)


def detail(inst: Instance) -> dict[str, object]:
    return {"instance": inst.id, "backend_port": inst.port, "pid": inst.pid, "status": inst.status, "log": inst.log}


def by_release(st: State, release_id: str) -> Instance | None:
    found = [i for i in st.instances.values()
             if i.release_id == release_id and i.status in ("starting", "active", "standby", "failed")]
    return max(found, key=lambda i: i.seq) if found else None


def result(handle: DeployHandle, status: DeployStatus, message: str, t0: float) -> DeployResult:
    return DeployResult(handle=handle, status=status, message=message, duration_s=time.monotonic() - t0)


def expand(template: str, subst: dict[str, str]) -> str:
    for key, value in subst.items():
        template = template.replace(key, value)
    return template
