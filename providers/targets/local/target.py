"""The `local` service target: a service runs as local processes behind a stable-port proxy, switched blue/green."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Literal

import httpx

from providers.errors import ConfigError, DeployFailed, PermanentError
from providers.models import DeployHandle, DeployResult, DeployStatus, Release, ServiceVersion, utcnow
from providers.source.refs import require_sha
from providers.targets.base import TargetContext
from providers.targets.local import proxy
from providers.targets.local.canary import abort_canary, canary_route, promote_canary, set_canary
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
from providers.targets.local.settings import LocalSettings, load_settings
from providers.targets.local.state import LIVE, HistoryEntry, Instance, State, StateStore

_NEVER_STARTED = timedelta(seconds=60)  # a recorded instance with no pid (nor pid file) after this never started


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

    def __init__(self, ctx: TargetContext, settings: LocalSettings, *, http: httpx.AsyncClient | None = None) -> None:
        self.service = ctx.spec.name
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.port}"
        self._ctx = ctx
        self._store = StateStore(ctx.state_dir / f"local-{self.service}", self.service)
        self._http = http or httpx.AsyncClient(trust_env=False, timeout=2.0)
        self._owns_http = http is None

    # ---- the ServiceTarget protocol ----------------------------------------------------------------------------

    async def current(self) -> ServiceVersion | None:
        st = self._store.load()
        active = st.get(st.active)
        if active is None:
            return None
        version = self._version(active)
        version.detail["alive"] = pid_alive(active.pid, active.start_time)
        version.detail["proxy_alive"] = proxy.running_proxy(self._store.proxy_info_path) is not None
        standby = st.get(st.standby)
        version.detail["standby"] = standby.sha if standby else None
        return version

    async def deploy(self, release: Release) -> DeployHandle:
        sha = _check_sha(release.sha)
        async with self._store.transaction() as st:
            stale = self._reconcile(st)
            found = _by_release(st, release.release_id)
        await self._stop(stale)
        if found is not None:
            return self._handle(found)
        checkout = await self._checkout(sha, release.checkout_dir)
        async with self._store.transaction() as st:
            found = _by_release(st, release.release_id)  # another process may have started it meanwhile
            if found is None:
                found = await self._start(st, sha, release.release_id, checkout, "deploy")
        return self._handle(found)

    async def wait_ready(self, handle: DeployHandle, timeout: float) -> DeployResult:
        t0 = time.monotonic()
        inst = self._store.load().get(handle.vendor_ref)
        if inst is None:
            return _result(handle, DeployStatus.FAILED, f"unknown local instance {handle.vendor_ref!r}", t0)
        if inst.status == "active":
            if pid_alive(inst.pid, inst.start_time):
                return _result(self._handle(inst), DeployStatus.READY, f"{self._where(inst)} is serving", t0)
            return _result(handle, DeployStatus.FAILED, f"{self._where(inst)}: process is gone", t0)
        if inst.status not in ("starting", "standby"):
            return _result(handle, DeployStatus.FAILED, f"{self._where(inst)}: {inst.message or inst.status}", t0)
        budget = min(timeout, self.settings.startup_timeout_s)
        last = "no HTTP answer"
        while True:
            if inst.pid is None:
                inst.pid = read_pidfile(self._store.pid_path(inst.id))
                inst.start_time = proc_start_time(inst.pid) if inst.pid else None
            if not pid_alive(inst.pid, inst.start_time):
                return await self._fail(inst, "the process exited before it was ready", handle, t0)
            status = await self._probe(inst.port, min(2.0, max(0.2, budget - (time.monotonic() - t0))))
            if status is not None:
                if not self.settings.ready_requires_2xx or 200 <= status < 300:
                    break
                last = f"{self.settings.health_path} answered {status}"
            if time.monotonic() - t0 >= budget:
                return await self._fail(inst, f"not ready within {budget:g}s ({last})", handle, t0)
            await asyncio.sleep(0.1)
        error = await self._activate(inst.id)
        if error is not None:
            if inst.status == "starting":
                return await self._fail(inst, error, handle, t0)
            return _result(handle, DeployStatus.FAILED, f"{self._where(inst)}: {error}", t0)
        return _result(self._handle(inst), DeployStatus.READY, f"{self._where(inst)} is serving on {self.url}", t0)

    async def rollback(self, to: ServiceVersion) -> DeployHandle:
        sha = _check_sha(to.version)
        async with self._store.transaction() as st:
            stale = self._reconcile(st)
            active, standby = st.get(st.active), st.get(st.standby)
            starting = [i for i in st.instances.values() if i.status == "starting" and i.sha == sha]
            abandoned = [i for i in st.instances.values() if i.status == "starting" and i.sha != sha]
            for i in abandoned:  # a deploy stopped mid-rollout (fail fast): its process goes with the rollback
                i.pid = i.pid or read_pidfile(self._store.pid_path(i.id))
                i.start_time = i.start_time or (proc_start_time(i.pid) if i.pid else None)
                i.status, i.message = "stopping", "rolled back while it was starting"
        await self._stop(stale + abandoned)
        if active is not None and active.sha == sha and pid_alive(active.pid, active.start_time):
            return self._handle(active)  # already serving: a no-op
        if standby is not None and standby.sha == sha and await self._probe(standby.port) is not None:
            error = await self._activate(standby.id, event="rollback")  # instant: the standby is warm
            if error is not None:
                raise DeployFailed(error, provider=self.provider, resource=self.service)
            return self._handle(self._store.load().get(standby.id) or standby)
        if starting:
            return self._handle(max(starting, key=lambda i: i.seq))
        checkout = await self._checkout(sha, None)
        async with self._store.transaction() as st:
            inst = await self._start(st, sha, to.release_id, checkout, "rollback")
        return self._handle(inst)

    # ---- the canary capability (providers.targets.base.CanaryTarget; local/canary.py, per-connection split) ------
    supports_canary = True

    async def set_canary(self, release: Release, weight: int, timeout: float) -> DeployResult:
        return await set_canary(self, release, weight, timeout)

    async def promote_canary(self, release: Release, timeout: float) -> DeployResult:
        return await promote_canary(self, release, timeout)

    async def abort_canary(self, stable: ServiceVersion | None) -> None:
        await abort_canary(self)

    async def history(self) -> list[ServiceVersion]:
        st = self._store.load()
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

    # ---- instances ---------------------------------------------------------------------------------------------

    async def _start(
        self, st: State, sha: str, release_id: str | None, checkout: Path, kind: Literal["deploy", "rollback"]
    ) -> Instance:
        st.seq += 1
        used = {i.port for i in st.instances.values() if i.status in LIVE} | {self.settings.port}
        inst_id = f"i{st.seq}-{sha[:8]}"
        inst = Instance(
            id=inst_id, seq=st.seq, sha=sha, release_id=release_id, kind=kind, checkout=str(checkout),
            port=free_port(used), log=str(self._store.log_path(inst_id)),
        )
        st.instances[inst.id] = inst
        self._store.save(st)  # recorded before it exists: a crash from here on leaves a trace (and a pid file)
        subst = {"{python}": sys.executable, "{port}": str(inst.port), "{checkout}": str(checkout)}
        argv = [_expand(a, subst) for a in self.settings.command]
        env = base_env() | {"PORT": str(inst.port)} | {k: _expand(v, subst) for k, v in self.settings.env.items()}
        env |= {name: value.get_secret_value() for name, value in self._ctx.secrets.items()}
        env |= {"AEVON_SERVICE": self.service, "AEVON_RELEASE_SHA": sha, "AEVON_RELEASE_ID": release_id or "",
                "AEVON_INSTANCE_ID": inst.id}
        try:
            inst.pid, inst.start_time = await spawn_detached(
                argv, cwd=checkout, env=env, log=Path(inst.log), pidfile=self._store.pid_path(inst.id)
            )
        except PermanentError as exc:
            inst.status, inst.message = "failed", f"could not start: {exc}"
        return inst

    async def _activate(self, instance_id: str, event: str | None = None) -> str | None:
        """Switch the stable port to a ready instance; keep the previous one as standby; stop older ones."""
        async with self._store.transaction() as st:
            stale = self._reconcile(st)
            inst = st.get(instance_id)
            if inst is None or inst.status not in ("starting", "standby", "active"):
                return "the instance was stopped before it could be switched to"
            if not pid_alive(inst.pid, inst.start_time):
                return "the process exited before the switch"
            try:
                await proxy.ensure_proxy(port=self.settings.port, control=self._store.control_path,
                                         info=self._store.proxy_info_path, log=self._store.proxy_log)
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
                self._store.save(st)  # the intent first; the proxy follows it (a crash in between is repaired)
            proxy.write_upstream(self._store.control_path, proxy.Upstream(inst.port, inst.id, inst.sha))
        await self._stop(stale)
        return None

    async def _fail(self, inst: Instance, reason: str, handle: DeployHandle, t0: float) -> DeployResult:
        await terminate(inst.pid, inst.start_time, self.settings.stop_grace_s)
        async with self._store.transaction() as st:
            rec = st.get(inst.id)
            if rec is not None and rec.status in ("starting", "stopping"):
                rec.status, rec.message = "failed", reason
        tail = log_tail(Path(inst.log), [s.get_secret_value() for s in self._ctx.secrets.values()])
        message = f"{self._where(inst)}: {reason} (stopped; the stable port was not switched to it)"
        if tail:
            message += f"\n--- last lines of {inst.log} ---\n{tail}"
        return _result(handle, DeployStatus.FAILED, message, t0)

    def _reconcile(self, st: State) -> list[Instance]:
        """Bring the state in line with the processes (after a crash); return instances still to be stopped."""
        stale: list[Instance] = []
        for inst in st.instances.values():
            if inst.status not in LIVE:
                continue
            if inst.pid is None:  # started but not recorded: the launcher's pid file knows
                inst.pid = read_pidfile(self._store.pid_path(inst.id))
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
            canary_route(st, self._store.control_path, active)  # crashed between state and control: repaired
        return stale

    async def _stop(self, instances: list[Instance]) -> None:
        if not instances:
            return
        grace = self.settings.stop_grace_s
        await asyncio.gather(*(terminate(i.pid, i.start_time, grace) for i in instances))
        async with self._store.transaction() as st:
            for i in instances:
                rec = st.get(i.id)
                if rec is not None and rec.status == "stopping" and not pid_alive(rec.pid, rec.start_time):
                    rec.status = "stopped"

    async def _checkout(self, sha: str, checkout_dir: str | None) -> Path:
        if checkout_dir is None and self._ctx.source is not None:
            return await self._ctx.source.checkout(sha)
        return self._existing_checkout(sha, checkout_dir)

    def _existing_checkout(self, sha: str, checkout_dir: str | None) -> Path:
        if checkout_dir is not None:
            if not Path(checkout_dir).is_dir():
                raise ConfigError(f"checkout directory {checkout_dir} does not exist", "release.checkout_dir")
            return Path(checkout_dir)
        for inst in self._store.load().instances.values():  # no git source: reuse a checkout an instance ran from
            if inst.sha == sha and Path(inst.checkout).is_dir():
                return Path(inst.checkout)
        raise PermanentError(f"no checkout of {sha[:12]} and no git source to make one", provider="local",
                             resource=self.service)

    async def _probe(self, port: int, timeout: float = 2.0) -> int | None:
        """The HTTP status the health path answers on `port`, or None when nothing answers."""
        try:
            resp = await self._http.get(f"http://127.0.0.1:{port}{self.settings.health_path}", timeout=timeout,
                                        headers={"Connection": "close"})
        except httpx.HTTPError:
            return None
        return resp.status_code

    def _where(self, inst: Instance) -> str:
        return f"{self.service} {inst.sha[:12]} (instance {inst.id}, port {inst.port})"

    def _version(self, inst: Instance) -> ServiceVersion:
        return ServiceVersion(service=self.service, version=inst.sha, release_id=inst.release_id,
                              vendor_ref=inst.id, url=self.url, detail=_detail(inst))

    def _handle(self, inst: Instance) -> DeployHandle:
        return DeployHandle(service=self.service, version=inst.sha, release_id=inst.release_id,
                            vendor_ref=inst.id, url=self.url, detail=_detail(inst))


def _detail(inst: Instance) -> dict[str, object]:
    return {"instance": inst.id, "backend_port": inst.port, "pid": inst.pid, "status": inst.status, "log": inst.log}


def _by_release(st: State, release_id: str) -> Instance | None:
    found = [i for i in st.instances.values()
             if i.release_id == release_id and i.status in ("starting", "active", "standby", "failed")]
    return max(found, key=lambda i: i.seq) if found else None


def _result(handle: DeployHandle, status: DeployStatus, message: str, t0: float) -> DeployResult:
    return DeployResult(handle=handle, status=status, message=message, duration_s=time.monotonic() - t0)


def _check_sha(sha: str) -> str:
    return require_sha(sha)


def _expand(template: str, subst: dict[str, str]) -> str:
    for key, value in subst.items():
        template = template.replace(key, value)
    return template


async def stop_all(state_dir: Path, service: str, grace: float = 10) -> None:
    """Stop the proxy and every instance of `service` kept under `state_dir`; the history is kept."""
    store = StateStore(state_dir / f"local-{service}", service)
    async with store.transaction() as st:
        live = [i for i in st.instances.values() if i.status in LIVE]
        for inst in live:
            if inst.pid is None and (pid := read_pidfile(store.pid_path(inst.id))) is not None:
                inst.pid, inst.start_time = pid, proc_start_time(pid)
            inst.status, inst.message = "stopping", "stop_all"
        st.active = st.standby = None
    store.control_path.unlink(missing_ok=True)
    await proxy.stop_proxy(store.proxy_info_path)
    await asyncio.gather(*(terminate(i.pid, i.start_time, grace) for i in live))
    async with store.transaction() as st:
        for inst in live:
            if (rec := st.get(inst.id)) is not None and not pid_alive(rec.pid, rec.start_time):
                rec.status = "stopped"


def local_services(state_dir: Path) -> list[str]:
    """The services the local target keeps state for under `state_dir`."""
    return sorted(p.parent.name.removeprefix("local-") for p in state_dir.glob("local-*/state.json"))


def make_target(ctx: TargetContext) -> LocalTarget:
    """Factory registered as `local`."""
    settings = load_settings(ctx)
    http = ctx.extra.get("http_client")
    return LocalTarget(ctx, settings, http=http if isinstance(http, httpx.AsyncClient) else None)


def main(argv: list[str] | None = None) -> int:
    """`python -m providers.targets.local.target stop STATE_DIR [SERVICE ...]`: stop services and their proxies.

    For `make stop` and demo teardown; stops every service kept under STATE_DIR when none is named.
    """
    parser = argparse.ArgumentParser(prog="python -m providers.targets.local.target", description=main.__doc__)
    parser.add_argument("command", choices=["stop"])
    parser.add_argument("state_dir", type=Path, help="the state directory the targets were given")
    parser.add_argument("services", nargs="*", help="services to stop (default: all of them)")
    args = parser.parse_args(argv)

    async def run(services: list[str]) -> list[str]:
        await asyncio.gather(*(stop_all(args.state_dir, name) for name in services))
        return services

    stopped = asyncio.run(run(args.services or local_services(args.state_dir)))
    print(f"stopped: {', '.join(stopped) or 'nothing to stop'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
