"""Stopping local services: every instance and the proxy of a service (tests, `make stop`, demo teardown)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from providers.targets.local import proxy
from providers.targets.local.process import pid_alive, proc_start_time, read_pidfile, terminate
from providers.targets.local.state import LIVE, StateStore


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
