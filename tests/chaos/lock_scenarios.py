"""Chaos scenarios of the environment lock: kill the holder, restart Prefect, unlock a live holder; count the damage.

Each holder is a real process running a real flow (tests/integration/lock_holder.py) against a real Prefect server
and the ledger's PostgreSQL; while it holds the lock it "acts" (a fenced side effect every 50 ms, noted in a
journal). A scenario reports runs, outcomes, duplicates (a holder acting while another holds the lock), half-done
states (a dead holder's flow run left Running in Prefect, a fenced holder that ended without a final state) and
leftovers (the lock still held, or a holder process still alive, at the end).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from providers.state.lock import LockTable

ROOT = Path(__file__).resolve().parents[2]
HANG = 180.0  # a guard against a scenario hanging forever


@dataclass
class Outcome:
    """The figures of one scenario."""

    name: str
    runs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    half_done: int = 0
    leftovers: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        """Runs that ended otherwise than the scenario expects (an exit code, a live lock freed)."""
        return sum(n for k, n in self.outcomes.items() if "exit" in k or "FREED" in k)

    def line(self) -> str:
        outs = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return (f"{self.name:34} runs {self.runs:3}  duplicates {self.duplicates}  half-done {self.half_done}  "
                f"leftovers {self.leftovers}  outcomes: {outs}")


@dataclass
class World:
    """Where the scenarios run: a Prefect API, a ledger database and a scratch folder."""

    api: str
    ledger_url: str
    work: Path
    restart_prefect: Callable[[], Awaitable[None]] | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "PREFECT_API_URL": self.api, "AEVON_STATE_DB_URL": self.ledger_url}

    def holder(self, env: str, journal: Path, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.lock_holder", env, "--journal", str(journal), "--act", "0.05",
             *args], cwd=ROOT, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    async def state(self, flow_run_id: str) -> str:
        with temporary_settings(updates={PREFECT_API_URL: self.api}):
            async with get_client() as client:
                run = await client.read_flow_run(uuid.UUID(flow_run_id))
        return run.state.type.value if run.state else "NONE"

    async def running(self, count: int) -> None:
        """Wait until `count` flow runs are Running (a holder's or a waiter's flow run has started)."""
        with temporary_settings(updates={PREFECT_API_URL: self.api}):
            async with get_client() as client:
                while sum(1 for r in await client.read_flow_runs() if r.state and r.state.is_running()) < count:
                    await asyncio.sleep(0.1)

    async def lock_held(self, env: str) -> bool:
        table = await LockTable.connect(SecretStr(self.ledger_url))
        try:
            row = await table.read(env)
            return bool(row and row.held)
        finally:
            await table.close()


async def held(proc: subprocess.Popen[str]) -> str:
    """Wait for the holder's `HELD <flow run> <token>` line; its flow run id."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), HANG)
    if not line.startswith("HELD "):
        raise RuntimeError(f"holder did not take the lock: {line!r}")
    return line.split()[1]


async def ended(proc: subprocess.Popen[str]) -> int:
    return await asyncio.wait_for(asyncio.to_thread(proc.wait), HANG)


def overlaps(journal: Path) -> int:
    """Lines of a holder written while another one held the lock (the lock's whole point is that there are none)."""
    current, bad = "", 0
    for ln in journal.read_text().splitlines():
        kind, who = ln.split()[:2]
        if kind == "enter":
            current = who
        elif who != current:
            bad += 1
    return bad


def stop(*procs: subprocess.Popen[str] | None) -> int:
    """Kill holders still alive (each one is a leftover)."""
    alive = 0
    for p in procs:
        if p is not None and p.poll() is None:
            alive += 1
            p.kill()
            p.wait()
    return alive


async def kill_while_holding(w: World, rounds: int, seed: int = 7) -> Outcome:
    """SIGKILL a holder at a random instant while it acts, then re-run: the re-run must take over at once."""
    out, rnd = Outcome("SIGKILL holder, then re-run"), random.Random(seed)
    for i in range(rounds):
        env, journal = f"chaos-kill-{i}-{uuid.uuid4().hex[:6]}", w.work / f"kill-{i}.journal"
        dead = w.holder(env, journal, "--lease", "3600", "--until", str(w.work / "never"))
        rerun = None
        try:
            dead_run = await held(dead)
            await asyncio.sleep(rnd.uniform(0.0, 0.5))
            dead.send_signal(signal.SIGKILL)
            dead.wait()
            rerun = w.holder(env, journal, "--hold", "0.2")  # its lease has an hour left
            rc = await ended(rerun)
            out.runs += 2
            out.outcomes["killed"] += 1
            out.outcomes["re-run took over" if rc == 0 else f"re-run exit {rc}"] += 1
            out.duplicates += overlaps(journal)
            if await w.state(dead_run) != "CRASHED":
                out.half_done += 1
                out.notes.append(f"round {i}: killed run {dead_run} is {await w.state(dead_run)}")
            out.leftovers += int(await w.lock_held(env))
        finally:
            out.leftovers += stop(dead, rerun)
    return out


async def unlock_live_holder(w: World, rounds: int) -> Outcome:
    """`unlock` while the holder lives (refused), then `--force`: the old holder must stop acting at once."""
    out = Outcome("unlock while the holder lives")
    for i in range(rounds):
        env, journal = f"chaos-unlock-{i}-{uuid.uuid4().hex[:6]}", w.work / f"unlock-{i}.journal"
        go = w.work / f"unlock-{i}.go"
        old = w.holder(env, journal, "--lease", "60", "--until", str(go))
        new = None
        try:
            old_run = await held(old)
            refused = await _unlock_refused(w, env)  # (the CLI path is tested in tests/integration)
            out.outcomes["plain unlock refused" if refused else "plain unlock FREED A LIVE LOCK"] += 1
            await _force_unlock(w, env)
            new = w.holder(env, journal, "--until", str(go))
            await held(new)
            rc_old = await ended(old)
            go.touch()
            rc_new = await ended(new)
            out.runs += 2
            out.outcomes["old holder fenced off" if rc_old != 0 else "old holder finished"] += 1
            out.outcomes["new holder done" if rc_new == 0 else f"new holder exit {rc_new}"] += 1
            out.duplicates += overlaps(journal)
            if await w.state(old_run) not in ("FAILED", "CRASHED"):
                out.half_done += 1
            out.leftovers += int(await w.lock_held(env))
        finally:
            out.leftovers += stop(old, new)
    return out


async def _unlock_refused(w: World, env: str) -> bool:
    from flows.locking import unlock
    from providers.errors import ConfigError

    with temporary_settings(updates={PREFECT_API_URL: w.api}):
        try:
            await unlock(env, db_url=SecretStr(w.ledger_url))
        except ConfigError:
            return True
    return False


async def _force_unlock(w: World, env: str) -> None:
    from flows.locking import unlock

    with temporary_settings(updates={PREFECT_API_URL: w.api}):
        await unlock(env, force=True, db_url=SecretStr(w.ledger_url))


async def prefect_restart_mid_hold(w: World, rounds: int) -> Outcome:
    """Restart the Prefect server while a run holds the lock and another waits: neither dies, nor waits forever."""
    out = Outcome("Prefect server restarted mid-hold")
    if w.restart_prefect is None:
        out.notes.append("skipped: no restartable Prefect server")
        return out
    for i in range(rounds):
        env, journal = f"chaos-restart-{i}-{uuid.uuid4().hex[:6]}", w.work / f"restart-{i}.journal"
        go = w.work / f"restart-{i}.go"
        first = w.holder(env, journal, "--lease", "3", "--until", str(go))
        second = None
        try:
            first_run = await held(first)
            second = w.holder(env, journal, "--lease", "3", "--hold", "0.2")
            await asyncio.wait_for(w.running(2), HANG)  # the waiter's flow run started: it is waiting
            await w.restart_prefect()
            go.touch()
            rc1, rc2 = await ended(first), await ended(second)
            out.runs += 2
            out.outcomes["holder completed" if rc1 == 0 else f"holder exit {rc1}"] += 1
            out.outcomes["waiter got the lock" if rc2 == 0 else f"waiter exit {rc2}"] += 1
            out.duplicates += overlaps(journal)
            if await w.state(first_run) != "COMPLETED":
                out.half_done += 1
            out.leftovers += int(await w.lock_held(env))
        finally:
            out.leftovers += stop(first, second)
    return out


async def _approval_restarts(w: World, rounds: int) -> Outcome:
    from tests.chaos.approval_scenarios import approval_restarts  # (it builds on World and Outcome above)

    return await approval_restarts(w, rounds)


SCENARIOS: dict[str, Callable[[World, int], Awaitable[Outcome]]] = {
    "kill": kill_while_holding,
    "unlock": unlock_live_holder,
    "prefect-restart": prefect_restart_mid_hold,
    "approval-restart": _approval_restarts,
}
