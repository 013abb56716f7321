"""The local target's stable-port proxy: a detached asyncio TCP splice daemon routed by a control file (+canary)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# The daemon half of this module needs the standard library only (the helpers below import nothing else), so that
# it starts fast and keeps running whatever happens to the orchestrator that launched it.
from providers.errors import DeployFailed
from providers.targets.local.process import (
    atomic_write_text,
    log_tail,
    pid_alive,
    proc_start_time,
    read_json,
    spawn_detached,
    terminate,
)

_CHUNK = 256 * 1024
_CONNECT_TIMEOUT = 5.0
_DRAIN_S = 10.0  # how long a stopping proxy lets open connections finish
_PROJECT_ROOT = str(Path(__file__).resolve().parents[3])  # where `providers` is importable from


@dataclass(frozen=True)
class Upstream:
    """Where new connections go: a backend port on 127.0.0.1 and the instance serving it."""

    port: int
    instance: str
    version: str = ""


@dataclass(frozen=True)
class Route:
    """Where new connections go: the stable upstream, and a canary taking `weight` % of them (a canary step)."""

    stable: Upstream
    canary: Upstream | None = None
    weight: int = 0


def write_upstream(control: Path, upstream: Upstream, canary: Upstream | None = None, weight: int = 0) -> None:
    """Point the proxy at `upstream` (and `weight` % of new connections at `canary`): one atomic rename, so every
    new connection sees the old or the new route. Writing without a canary ends any canary at once."""
    doc: dict[str, object] = {"host": "127.0.0.1", "port": upstream.port, "instance": upstream.instance,
                              "version": upstream.version}
    if canary is not None and weight > 0:
        doc["canary"] = {"port": canary.port, "instance": canary.instance, "version": canary.version,
                         "weight": min(100, weight)}
    atomic_write_text(control, json.dumps(doc) + "\n")


def read_route(control: Path) -> Route | None:
    """The route the control file names, or None."""
    doc = read_json(control)
    if doc is None or not isinstance(doc.get("port"), int):
        return None
    stable = Upstream(port=doc["port"], instance=str(doc.get("instance", "")), version=str(doc.get("version", "")))
    c = doc.get("canary")
    if not isinstance(c, dict) or not isinstance(c.get("port"), int) or not isinstance(c.get("weight"), int):
        return Route(stable)
    canary = Upstream(port=c["port"], instance=str(c.get("instance", "")), version=str(c.get("version", "")))
    return Route(stable, canary, max(0, min(100, c["weight"])))


def read_upstream(control: Path) -> Upstream | None:
    """The stable upstream the control file names, or None."""
    route = read_route(control)
    return route.stable if route is not None else None


class _Control:
    """Re-reads the control file when it changed (one stat per new connection; a rename changes the inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._route: Route | None = None

    def current(self, force: bool = False) -> Route | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._key, self._route = None, None
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if force or key != self._key:
            route = read_route(self.path)
            if route is not None:
                if route != self._route:
                    _log(f"upstream -> 127.0.0.1:{route.stable.port} ({route.stable.instance})" + (
                        f", canary {route.weight}% -> 127.0.0.1:{route.canary.port} ({route.canary.instance})"
                        if route.canary is not None else ""))
                self._key, self._route = key, route
        return self._route


class _Splitter:
    """Weighted choice per connection, deterministic: of every 100 consecutive connections exactly `weight` go to
    the canary, spread evenly (connection n goes there when floor(n*w/100) steps up), so a 10 % step is 10 %."""

    def __init__(self) -> None:
        self._n = 0

    def to_canary(self, weight: int) -> bool:
        self._n += 1
        return (self._n * weight) // 100 != ((self._n - 1) * weight) // 100


def _log(message: str) -> None:
    print(f"{datetime.now(UTC).isoformat(timespec='milliseconds')} proxy[{os.getpid()}] {message}", flush=True)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if dst.can_write_eof() and not dst.is_closing():
                dst.write_eof()


class _Proxy:
    def __init__(self, control: Path) -> None:
        self.control = _Control(control)
        self.splitter = _Splitter()
        self.connections: set[asyncio.Task[None]] = set()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await self._splice(client_r, client_w)
        finally:
            self.connections.discard(task)
            client_w.close()

    async def _splice(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        streams = await self._connect()
        if streams is None:
            return
        up_r, up_w = streams
        to_upstream = asyncio.create_task(_pipe(client_r, up_w))
        try:
            # the client may half-close after its request; once the upstream side ends nothing more comes back
            await _pipe(up_r, client_w)
        finally:
            to_upstream.cancel()
            await asyncio.wait([to_upstream])
            up_w.close()

    def _pick(self, route: Route | None) -> Upstream | None:
        if route is None:
            return None
        if route.canary is not None and route.weight > 0 and self.splitter.to_canary(route.weight):
            return route.canary
        return route.stable

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        upstream = self._pick(self.control.current())
        for attempt in range(2):
            if upstream is None:
                return None
            try:
                return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", upstream.port), _CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                if attempt == 1:
                    _log(f"cannot reach 127.0.0.1:{upstream.port} ({upstream.instance}): {type(exc).__name__}")
                    return None
            await asyncio.sleep(0.05)  # a switch may be under way: look at the control file again
            route = self.control.current(force=True)
            upstream = route.stable if route is not None else None  # a retry goes to the stable version
        return None


async def _serve(port: int, control: Path, info: Path) -> int:
    proxy = _Proxy(control)
    try:
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", port, backlog=1024)
    except OSError as exc:
        _log(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}")
        return 3
    doc = {"pid": os.getpid(), "start_time": proc_start_time(os.getpid()), "port": port, "control": str(control)}
    atomic_write_text(info, json.dumps(doc) + "\n")
    _log(f"listening on 127.0.0.1:{port}, control file {control}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    await stop.wait()
    _log("stopping: no new connections, letting open ones finish")
    server.close()
    if proxy.connections:
        _, pending = await asyncio.wait(set(proxy.connections), timeout=_DRAIN_S)
        for task in pending:
            task.cancel()
    _remove_info(info, only_pid=os.getpid())
    return 0


def _remove_info(info: Path, only_pid: int | None = None) -> None:
    doc = read_json(info)
    if only_pid is None or (doc is not None and doc.get("pid") == only_pid):
        with contextlib.suppress(OSError):
            info.unlink()


def main(argv: list[str] | None = None) -> int:
    """Run the proxy daemon: listen on 127.0.0.1:--port, forward each connection to the control file's upstream."""
    parser = argparse.ArgumentParser(prog="python -m providers.targets.local.proxy", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="stable port to listen on (127.0.0.1)")
    parser.add_argument("--control", type=Path, required=True, help="JSON file naming the upstream port")
    parser.add_argument("--info", type=Path, required=True, help="JSON file this daemon writes once it listens")
    args = parser.parse_args(argv)
    return asyncio.run(_serve(args.port, args.control, args.info))


# ---- orchestrator side -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyInfo:
    """A running proxy daemon, as it described itself in its info file."""

    pid: int
    start_time: int | None
    port: int


def running_proxy(info: Path) -> ProxyInfo | None:
    """The proxy daemon the info file names, when it still runs."""
    doc = read_json(info)
    if doc is None or not isinstance(doc.get("pid"), int) or not isinstance(doc.get("port"), int):
        return None
    start = doc.get("start_time")
    proxy = ProxyInfo(pid=doc["pid"], start_time=start if isinstance(start, int) else None, port=doc["port"])
    return proxy if pid_alive(proxy.pid, proxy.start_time) else None


async def ensure_proxy(*, port: int, control: Path, info: Path, log: Path, wait_s: float = 15) -> ProxyInfo:
    """A proxy daemon listening on `port` (reused when running, restarted on another port, else started).

    Raises DeployFailed when it cannot listen (the port is taken by another program ...).
    """
    proxy = running_proxy(info)
    if proxy is not None and proxy.port == port:
        return proxy
    if proxy is not None:
        await terminate(proxy.pid, proxy.start_time, grace=_DRAIN_S)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": _PROJECT_ROOT, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "providers.targets.local.proxy", "--port", str(port),
            "--control", str(control), "--info", str(info)]
    pid, start = await spawn_detached(argv, cwd=control.parent, env=env, log=log, pidfile=control.parent / "proxy.pid")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        doc = read_json(info)
        if doc is not None and doc.get("pid") == pid:
            return ProxyInfo(pid=pid, start_time=start, port=port)
        if not pid_alive(pid, start):
            break
        await asyncio.sleep(0.05)
    await terminate(pid, start, grace=1)
    tail = log_tail(log, (), lines=3)
    raise DeployFailed(f"proxy could not listen on 127.0.0.1:{port}: {tail or 'no output'}", provider="local")


async def stop_proxy(info: Path) -> None:
    """Stop the proxy daemon named by the info file (open connections get a moment to finish)."""
    proxy = running_proxy(info)
    if proxy is not None:
        await terminate(proxy.pid, proxy.start_time, grace=_DRAIN_S + 2)
    _remove_info(info)


if __name__ == "__main__":
    sys.exit(main())
