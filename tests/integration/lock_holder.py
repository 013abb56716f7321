"""A flow that holds an environment lock: the live, fenced-off or killed holder of the lock tests and the chaos bench.

`python -m tests.integration.lock_holder ENV --lease 60 --until FILE --journal FILE` holds the lock of ENV (the
ledger database from AEVON_STATE_DB_URL, Prefect from PREFECT_API_URL), prints `HELD <flow run id> <token>`, and
keeps it until FILE exists. The journal gets `enter <who>` when the lock is taken and `exit <who>` just before it
is let go: between the two the holder "acts", so two holders overlapping show as enter, enter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from prefect import flow
from prefect.context import FlowRunContext

from flows.locking import environment_lock


def note(journal: str | None, line: str) -> None:
    """Append one line to the journal file (O_APPEND: lines of concurrent holders never mix)."""
    if journal:
        fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


async def hold_lock(
    env: str, lease_s: float, until: str | None = None, hold_s: float = 0.0, journal: str | None = None,
    renew_s: float = 0.3, who: str = "", act_s: float = 0.0,
) -> str:
    """Take the lock, note `enter`, wait for the file `until` (or `hold_s`), note `exit`, let go.

    With `act_s`, it "acts" every `act_s` seconds meanwhile: a fenced side effect (check the lease, then note
    `act`), so a holder whose lock was taken away notes nothing more.
    """
    ctx = FlowRunContext.get()
    who = who or (str(ctx.flow_run.id) if ctx and ctx.flow_run else f"pid{os.getpid()}")
    async with environment_lock(env, lease_s, "deploy", poll_s=0.05, renew_s=renew_s) as lease:
        note(journal, f"enter {who} {lease.token}")
        print(f"HELD {who} {lease.token}", flush=True)
        if until:
            while not Path(until).exists():
                await asyncio.sleep(act_s or 0.05)
                if act_s:
                    await lease.check()
                    note(journal, f"act {who} {lease.token}")
        if hold_s:
            await asyncio.sleep(hold_s)
        note(journal, f"exit {who} {lease.token}")
    return who


@flow(name="lock-holder", flow_run_name="lock-holder-{env}")
async def lock_holder_flow(
    env: str, lease_s: float, until: str | None = None, hold_s: float = 0.0, journal: str | None = None,
    renew_s: float = 0.3, act_s: float = 0.0,
) -> str:
    """A flow run holding the lock of `env` (see hold_lock)."""
    return await hold_lock(env, lease_s, until, hold_s, journal, renew_s, act_s=act_s)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.integration.lock_holder")
    ap.add_argument("env")
    ap.add_argument("--lease", type=float, default=60.0)
    ap.add_argument("--until", default=None)
    ap.add_argument("--hold", type=float, default=0.0)
    ap.add_argument("--journal", default=None)
    ap.add_argument("--renew", type=float, default=0.3)
    ap.add_argument("--act", type=float, default=0.0, help="act (fenced) every this many seconds while holding")
    a = ap.parse_args()
    asyncio.run(lock_holder_flow(a.env, a.lease, a.until, a.hold, a.journal, a.renew, a.act))
    sys.exit(0)


if __name__ == "__main__":
    main()
