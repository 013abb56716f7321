"""`make chaos`: the chaos scenarios (tests/chaos) against a Prefect server of their own; prints each one's figures.

The environment-lock scenarios (SIGKILL of a holder then a re-run, `unlock` while the holder lives, the Prefect
server restarted mid-hold, and around a production approval wait), the vendor-fault scenarios
(tests/chaos/fault_scenarios.py: the real deploy flow against the Vercel, Render and GKE fakes with 30 % or 60 % of
all vendor calls failing, lost answers and timeouts that act late among them), SIGKILL of a deploy at every step
boundary then a re-run (tests/chaos/kill_sweep.py) and the ledger database cut for seconds mid-deploy
(tests/chaos/ledger_outage.py). `--short` runs one round of the kill scenario (the CI form).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AEVON_PLUGINS", "tests.standins")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


async def run(only: list[str], rounds: int) -> int:
    from flows.server import start, stop_pid
    from tests.chaos.lock_scenarios import SCENARIOS, World
    from tests.conftest import free_port
    from tests.pg import ADMIN_URL, temp_database

    name = f"aevon_prefect_chaos_{secrets.token_hex(4)}"
    db_url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + name
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aevon-chaos-") as tmp:
        home = Path(tmp) / "prefect"
        pid = [(await asyncio.to_thread(start, db_url, port, home, home / "server.log")).pid]

        async def restart() -> None:
            await asyncio.to_thread(stop_pid, pid[0])
            await asyncio.sleep(5)  # down for longer than the holders' 3 s lease
            pid[0] = (await asyncio.to_thread(start, db_url, port, home, home / "server.log")).pid

        try:
            async with temp_database() as ledger:
                world = World(f"http://127.0.0.1:{port}/api", ledger, Path(tmp), restart)
                bad = 0
                print("=== chaos ===")
                for key in only or [*SCENARIOS, *FAULT_RATES, *OWN_WORLD]:
                    if key in FAULT_RATES:
                        out = await _faults(ledger, Path(tmp) / key, f"http://127.0.0.1:{port}/api",
                                            FAULT_RATES[key], rounds)
                    elif key in OWN_WORLD:
                        out = await OWN_WORLD[key](Path(tmp) / key, f"http://127.0.0.1:{port}/api", rounds)
                    else:
                        out = await SCENARIOS[key](world, rounds)
                    print(out.line(), flush=True)
                    for note in out.notes:
                        print(f"    {note}")
                    bad += out.duplicates + out.half_done + out.leftovers + out.failures
                print(f"result: {'0 duplicates, 0 half-done, 0 leftovers' if not bad else f'{bad} problems'}")
                return 0 if not bad else 1
        finally:
            await asyncio.to_thread(stop_pid, pid[0])
            import asyncpg

            conn = await asyncpg.connect(ADMIN_URL)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()


FAULT_RATES = {"faults-30": 0.3, "faults-60": 0.6}


async def _faults(ledger: str, tmp: Path, api: str, rate: float, rounds: int) -> Any:
    """One vendor-fault scenario in an environment of its own (state dir, fakes, spec), on the chaos server."""
    import pytest
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.chaos.fault_scenarios import fault_world, injected_faults

    await asyncio.to_thread((tmp / "state").mkdir, parents=True)
    with pytest.MonkeyPatch.context() as mp, temporary_settings({PREFECT_API_URL: api}):
        mp.setenv("AEVON_STATE_DB_URL", ledger)
        mp.setenv("AEVON_STATE_DIR", str(tmp / "state"))
        async with fault_world(tmp, mp) as world:
            return await injected_faults(world, rate, rounds)


async def _kill_sweep(tmp: Path, api: str, rounds: int) -> Any:
    """SIGKILL of a deploy at every step boundary then a re-run (tests/chaos/kill_sweep.py); `rounds` is ignored:
    one kill per boundary (16 boundaries, 3 deploys each)."""
    from tests.chaos.kill_sweep import Sweep, kill_sweep
    from tests.sample_app import build_sample_repo, ensure_prisma_toolkit

    await asyncio.to_thread(ensure_prisma_toolkit)
    repo = await asyncio.to_thread(build_sample_repo, tmp / "repo")
    return await kill_sweep(Sweep(repo, api, tmp))


async def _ledger_outage(tmp: Path, api: str, rounds: int) -> Any:
    """The ledger cut for 4 s during a service deploy and during validation, each then a clean deploy
    (tests/chaos/ledger_outage.py), on a ledger database of its own."""
    import pytest
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.chaos.ledger_outage import ledger_outages, outage_world
    from tests.pg import temp_database

    await asyncio.to_thread((tmp / "state").mkdir, parents=True)
    with pytest.MonkeyPatch.context() as mp, temporary_settings({PREFECT_API_URL: api}):
        mp.setenv("AEVON_STATE_DIR", str(tmp / "state"))
        async with temp_database() as ledger, outage_world(tmp, ledger, mp) as world:
            return await ledger_outages(world, rounds)


OWN_WORLD = {"kill-sweep": _kill_sweep, "ledger-outage": _ledger_outage}


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/chaos.py", description=__doc__)
    ap.add_argument("scenarios", nargs="*", help="kill, unlock, prefect-restart, approval-restart, faults-30, "
                    "faults-60, kill-sweep, ledger-outage (default: all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--short", action="store_true", help="one round of the kill scenario")
    a = ap.parse_args()
    if a.short:
        return asyncio.run(run(["kill"], 1))
    return asyncio.run(run(a.scenarios, a.rounds))


if __name__ == "__main__":
    sys.exit(main())
