"""The environment lock on real PostgreSQL and a real Prefect server: no overlap, safe unlock, fencing, crashes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Running, State, aget_state_exception
from pydantic import SecretStr

from flows.locking import LockLost, unlock
from providers.errors import ConfigError
from providers.state.lock import LeaseRow, LockTable
from tests.integration.lock_holder import hold_lock, lock_holder_flow

pytestmark = pytest.mark.usefixtures("prefect_api")
ROOT = Path(__file__).resolve().parents[2]
HANG = 120  # a guard against hanging forever, not a timing assertion


@pytest.fixture
async def table(ledger_url: str) -> AsyncIterator[LockTable]:
    t = await LockTable.connect(SecretStr(ledger_url))
    try:
        yield t
    finally:
        await t.close()


async def held_by_other_than(table: LockTable, env: str, token: int = 0) -> LeaseRow:
    """Wait until `env` is held with a token above `token`; the row."""
    async def poll() -> LeaseRow:
        while True:
            row = await table.read(env)
            if row is not None and row.held and row.token > token:
                return row
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(poll(), HANG)


def journal_pairs(path: Path) -> list[tuple[str, str]]:
    return [(ln.split()[0], ln.split()[1]) for ln in path.read_text().splitlines()]


def assert_no_overlap(path: Path, runs: int) -> None:
    lines = journal_pairs(path)
    assert [kind for kind, _ in lines] == ["enter", "exit"] * runs, lines
    assert all(lines[i][1] == lines[i + 1][1] for i in range(0, len(lines), 2)), lines


async def state_of(flow_run_id: str) -> State:
    async with get_client() as client:
        run = await client.read_flow_run(uuid.UUID(flow_run_id))
    assert run.state is not None
    return run.state


async def test_concurrent_holders_never_overlap_and_tokens_grow(
    ledger_url: str, table: LockTable, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    whos = [f"h{i}" for i in range(6)]
    await asyncio.gather(*(hold_lock("dev", 30, hold_s=0.05, journal=str(journal), who=w) for w in whos))
    assert_no_overlap(journal, len(whos))
    tokens = [int(ln.split()[2]) for ln in journal.read_text().splitlines() if ln.startswith("enter")]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    row = await table.read("dev")
    assert row is not None and not row.held


async def test_waiting_run_logs_who_holds_the_lock(
    ledger_url: str, table: LockTable, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    go = tmp_path / "go"
    first = asyncio.create_task(lock_holder_flow("dev", 30, until=str(go)))
    holder = await held_by_other_than(table, "dev")
    second = asyncio.create_task(hold_lock("dev", 30, who="second"))
    while "waiting for lock deploy-dev" not in caplog.text:
        await asyncio.sleep(0.05)
    go.touch()
    await asyncio.wait_for(asyncio.gather(first, second), HANG)
    assert f"environment dev is locked by another deploy (flow run {holder.flow_run_id}, pid {os.getpid()}" \
        in caplog.text


async def test_unlock_is_refused_while_the_holder_lives(ledger_url: str, table: LockTable, tmp_path: Path) -> None:
    go = tmp_path / "go"
    holder = asyncio.create_task(lock_holder_flow("dev", 30, until=str(go), journal=str(tmp_path / "j")))
    row = await held_by_other_than(table, "dev")
    with pytest.raises(ConfigError, match=r"may be alive.*its flow run is RUNNING.*unlock dev --force"):
        await unlock("dev", db_url=SecretStr(ledger_url))
    cli = subprocess.run([sys.executable, "-m", "flows.cli", "unlock", "dev"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "AEVON_STATE_DB_URL": ledger_url}, check=False)
    assert cli.returncode == 3 and "--force" in cli.stderr, cli.stderr
    after = await table.read("dev")
    assert after is not None and after.token == row.token and after.flow_run_id == row.flow_run_id
    go.touch()
    assert await asyncio.wait_for(holder, HANG) == row.flow_run_id
    assert (await state_of(str(row.flow_run_id))).is_completed()


async def test_forced_unlock_fences_off_the_old_holder(ledger_url: str, table: LockTable, tmp_path: Path) -> None:
    go, journal = tmp_path / "go", tmp_path / "journal"
    old = asyncio.create_task(lock_holder_flow("dev", 30, until=str(go), journal=str(journal), return_state=True))
    row = await held_by_other_than(table, "dev")
    cli = subprocess.run([sys.executable, "-m", "flows.cli", "unlock", "dev", "--force"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "AEVON_STATE_DB_URL": ledger_url},
                         check=False)
    assert cli.returncode == 0 and "WARNING" in cli.stderr and "fenced off" in cli.stderr, cli.stderr
    # a new holder takes the lock at once; the old one finds out at its next renewal and stops
    new = asyncio.create_task(hold_lock("dev", 30, until=str(go), journal=str(journal), who="new"))
    state = await asyncio.wait_for(old, HANG)
    assert state.is_failed()
    lost = await aget_state_exception(state)
    assert isinstance(lost, LockLost) and "taken from this run" in str(lost)
    now = await table.read("dev")
    assert now is not None and now.held and now.token > row.token and now.flow_run_id != row.flow_run_id
    go.touch()
    await asyncio.wait_for(new, HANG)
    # the old holder never reached its `exit` (it acted no more), and did not free the new holder's lock
    assert journal_pairs(journal) == [("enter", str(row.flow_run_id)), ("enter", "new"), ("exit", "new")]


async def test_killed_holder_is_taken_over_and_marked_crashed(
    ledger_url: str, table: LockTable, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    env = {**os.environ, "AEVON_STATE_DB_URL": ledger_url}
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.lock_holder", "dev", "--lease", "3600",
                             "--until", str(tmp_path / "never")], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    try:
        row = await held_by_other_than(table, "dev")
        assert (await state_of(str(row.flow_run_id))).is_running()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # its lease has an hour left: only seeing its process gone lets the next run in
    who = await asyncio.wait_for(hold_lock("dev", 30, who="next"), HANG)
    assert who == "next"
    assert f"took over lock deploy-dev from flow run {row.flow_run_id}: its process {proc.pid} is gone; " \
           "marked it Crashed" in caplog.text
    assert (await state_of(str(row.flow_run_id))).is_crashed()


@flow(name="lock-dead-holder")
async def _elsewhere() -> None:
    """Only its flow run is used: a run said to hold the lock from another host."""


async def test_expired_lease_of_a_holder_elsewhere_is_taken_over(
    ledger_url: str, table: LockTable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with get_client() as client:
        run = await client.create_flow_run(_elsewhere, state=Running())
    # a holder on another machine whose lease ends in 1 s and is never renewed (its process died there)
    await table._pool.execute(
        "INSERT INTO aevon_env_locks (env, token, flow_run_id, holder, host, pid, pid_start, acquired_at, renewed_at,"
        " expires_at) VALUES ('dev', 7, $1, 'deploy', 'elsewhere/boot', 4242, '1', now(), now(),"
        " now() + interval '1 second')", str(run.id))
    with pytest.raises(ConfigError, match="may be alive"):
        await unlock("dev", db_url=SecretStr(ledger_url))  # fresh lease, flow run Running: refused
    await asyncio.wait_for(hold_lock("dev", 30, who="next"), HANG)
    assert f"took over lock deploy-dev from flow run {run.id}: its lease expired; marked it Crashed" in caplog.text
    assert (await state_of(str(run.id))).is_crashed()
    row = await table.read("dev")
    assert row is not None and row.token == 8 and not row.held
