"""A `migrate deploy` killed mid-migration (issue 18 item 2): the gate tells the truth, settling never applies twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from providers.models import Outcome, Severity
from tests.integration.test_migration_readiness import SQL, A, B, checkout, gate, migrator, run
from tests.pg import fetch, temp_database
from tests.sample_app import ROOT, ensure_prisma_toolkit

pytestmark = pytest.mark.slow
SLOW_B = {A: SQL[A], B: SQL[B] + "SELECT pg_sleep(5);\n"}  # the DDL, then 5 s inside the same transaction


@pytest.fixture(scope="module", autouse=True)
def _toolkit() -> None:
    ensure_prisma_toolkit()


async def kill_inside_migrate_deploy(url: str, root: Path, state: Path, *, prisma_too: bool = True) -> None:
    """Start `migrate deploy` from a child process in its own group; while B's script sleeps (its row started,
    unfinished) SIGKILL that group and, with `prisma_too`, the Prisma CLI's own group the child recorded (what a
    crash of the whole deployer does). Without it the CLI, in its own session since 0447c82, runs on: what a kill
    of the deploy process alone does."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.chaos.migrate_child", url, str(root), str(state)],
                            cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    groups = state / "process-groups"
    try:
        for _ in range(600):
            assert proc.poll() is None, "migrate deploy ended before it reached the sleep"
            if await fetch(url, "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(5)%' "
                                "AND pid <> pg_backend_pid() AND state = 'active'"):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("never saw the migration sleeping")
        prisma = [int(p.stem) for p in groups.glob("*.pgid")]
        assert len(prisma) == 1, "the child recorded no Prisma process group"
        for pgid in [proc.pid, *(prisma if prisma_too else [])]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    rows = await fetch(url, 'SELECT finished_at, logs FROM "_prisma_migrations" WHERE migration_name = $1', B)
    assert [(r["finished_at"], r["logs"]) for r in rows] == [(None, None)]  # the instant of the issue


async def note_columns(url: str) -> int:
    return len(await fetch(url, "SELECT 1 FROM information_schema.columns WHERE table_name = 'Task' "
                                "AND column_name = 'note'"))


async def test_killed_inside_migrate_deploy_is_reported_applied_and_settled_once(tmp_path: Path) -> None:
    root = checkout(tmp_path / "app", [A, B], SLOW_B)
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await kill_inside_migrate_deploy(url, root, tmp_path / "child")

        outcome, found, summary = await run(gate(m), root)
        assert (outcome, found) == (Outcome.FAILED, [("interrupted-applied", Severity.HIGH)])
        assert "so it IS applied; never mark it rolled back" in summary
        assert "none of it is applied" not in summary and "already exists" in summary
        assert await note_columns(url) == 1  # the schema holds v2 although the row says unfinished

        assert await m.settle_interrupted(root) == [f"{B}: recorded finished (a dry run says: column \"note\" of "
                                                     "relation \"Task\" already exists)"]
        assert (await m.status(root)).applied == [A, B]
        assert (await m.apply(root)).applied == []  # nothing applied twice
        assert await note_columns(url) == 1
        assert (await run(gate(m), root))[0] == Outcome.PASSED
        assert await m.settle_interrupted(root) == []  # idempotent


async def test_a_killed_deploy_whose_prisma_cli_runs_on_is_judged_after_it_ends(tmp_path: Path) -> None:
    """The regression of 0447c82: the deploy killed, its Prisma CLI (own session) still running and about to
    record B finished. The gate read the status (B unfinished), waited for the live session, then reported that
    stale read as a CRITICAL "interrupted" finding; it must report what holds once the session ended."""
    root = checkout(tmp_path / "app", [A, B], SLOW_B)
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await kill_inside_migrate_deploy(url, root, tmp_path / "child", prisma_too=False)

        outcome, found, summary = await run(gate(m), root)
        assert (outcome, found) == (Outcome.PASSED, []), summary
        assert summary == "2 applied, 0 pending, 0 failed, drift no"
        rows = await fetch(url, 'SELECT finished_at FROM "_prisma_migrations" WHERE migration_name = $1', B)
        assert [r["finished_at"] is not None for r in rows] == [True]  # the CLI that ran on recorded it, once
        assert await note_columns(url) == 1
        assert await m.settle_interrupted(root) == []


async def test_killed_before_its_script_ran_is_reported_unapplied_and_applied_once(tmp_path: Path) -> None:
    root = checkout(tmp_path / "app", [A, B])
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await m.apply(checkout(tmp_path / "old", [A]))
        checksum = next(iter(m.local_migrations(root)[B]))
        # what Prisma writes before it runs the script: the row, started, no finished_at, no logs
        await fetch(url, 'INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, '
                         "applied_steps_count) VALUES ('killed', $1, $2, now(), 0)", checksum, B)
        outcome, found, summary = await run(gate(m), root)
        assert (outcome, found) == (Outcome.FAILED, [("interrupted-not-applied", Severity.HIGH)])
        assert "None of its script is applied" in summary
        assert await note_columns(url) == 0  # the dry run was rolled back

        [said] = await m.settle_interrupted(root)
        assert said.startswith(f"{B}: recorded rolled back")
        assert (await m.apply(root)).applied == [B]
        assert await note_columns(url) == 1


async def test_an_interrupted_script_that_can_run_twice_is_never_called_unapplied(tmp_path: Path) -> None:
    idempotent = {A: SQL[A], B: 'UPDATE "Task" SET "title" = "title" || \'!\';\n'}
    root = checkout(tmp_path / "app", [A, B], idempotent)
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await m.apply(checkout(tmp_path / "old", [A]))
        checksum = next(iter(m.local_migrations(root)[B]))
        await fetch(url, 'INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, '
                         "applied_steps_count) VALUES ('killed', $1, $2, now(), 0)", checksum, B)
        outcome, found, summary = await run(gate(m), root)
        assert (outcome, found) == (Outcome.FAILED, [("interrupted-unknown", Severity.HIGH)])
        assert "cannot be told from the schema" in summary and "rolled-back" not in summary
        assert await m.settle_interrupted(root) == []
        assert [r["title"] for r in await fetch(url, 'SELECT "title" FROM "Task"')] == ["seeded"]
