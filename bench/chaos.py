"""`make chaos`: the chaos scenarios (tests/chaos) against a Prefect server of their own; prints each one's figures.

So far the environment-lock scenarios: SIGKILL of a holder then a re-run, `unlock` while the holder lives, and the
Prefect server restarted mid-hold. `--short` runs one round of the kill scenario (the CI form).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path

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
                for key in only or list(SCENARIOS):
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


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/chaos.py", description=__doc__)
    ap.add_argument("scenarios", nargs="*", help="kill, unlock, prefect-restart (default: all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--short", action="store_true", help="one round of the kill scenario")
    a = ap.parse_args()
    if a.short:
        return asyncio.run(run(["kill"], 1))
    return asyncio.run(run(a.scenarios, a.rounds))


if __name__ == "__main__":
    sys.exit(main())
