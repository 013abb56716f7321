"""SIGKILL of a whole deploy inside `migrate deploy` (issue 18 item 2), then a re-run through the real flow: the
schema and `_prisma_migrations` agree, nothing is applied twice, and no process of the killed run is left."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flows.report import DeployOutcome
from providers.targets.local.target import stop_all
from tests.integration.migration_support import Env, columns, derive_repo, make_env
from tests.pg import fetch, temp_database
from tests.sample_app import ROOT, build_sample_repo, ensure_prisma_toolkit

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]
SLOW = "20250301000000_slow_note"
SLOW_SQL = 'ALTER TABLE "Task" ADD COLUMN "slow_note" TEXT;\nSELECT pg_sleep(5);\n'


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    base = build_sample_repo(tmp_path_factory.mktemp("kill-migrate") / "repo")
    return derive_repo(base, base.parent / "derived", {"v2-slow": ("v2", {SLOW: SLOW_SQL})})


@pytest.fixture
async def dev(repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    async with temp_database() as db_url:
        monkeypatch.setenv("DATABASE_URL", db_url)
        try:
            yield make_env("dev", repo, tmp_path / "specs", db_url, state_dir)
        finally:
            for svc in ("web", "api"):
                await stop_all(state_dir / "targets" / "dev" / svc, svc)


def kill_everything(proc: subprocess.Popen[bytes], groups: Path) -> None:
    """What a crash of the machine's deployer does: the deploy's process group and every child group it recorded."""
    for pgid in [proc.pid, *(int(p.stem) for p in groups.glob("*.pgid"))]:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


async def test_deploy_killed_inside_migrate_deploy_then_rerun_applies_once(dev: Env, state_dir: Path) -> None:
    assert (await dev.deploy("v2")).outcome == DeployOutcome.SUCCEEDED
    env = {**os.environ, "DATABASE_URL": dev.db_url}
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "--spec-dir", str(dev.spec_dir), "deploy", "dev",
                             "--ref", "v2-slow"], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    groups = state_dir / "process-groups" / "dev"
    try:
        for _ in range(6000):
            assert proc.poll() is None, "the deploy ended before its migration slept"
            if await fetch(dev.db_url, "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(5)%' "  # not
                                       "AND state = 'active' AND datname = current_database() "  # the plan's shadow
                                       "AND application_name LIKE 'aevon-migrate-%'"):  # db: `migrate deploy`'s
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("never saw the migration sleeping")
        kill_everything(proc, groups)
    finally:
        if proc.poll() is None:
            kill_everything(proc, groups)
    rows = await fetch(dev.db_url, 'SELECT finished_at, logs FROM "_prisma_migrations" WHERE migration_name = $1',
                       SLOW)
    assert [(r["finished_at"], r["logs"]) for r in rows] == [(None, None)]  # the instant of the issue

    again = await dev.deploy("v2-slow")
    assert again.outcome == DeployOutcome.SUCCEEDED, again.error
    [comp] = again.compensated
    assert any(n.startswith(f"{SLOW}: recorded finished (a dry run says: column \"slow_note\"") for n in comp.notes)
    assert (await columns(dev.db_url, "Task")).count("slow_note") == 1
    applied = await fetch(dev.db_url, 'SELECT count(*) AS n FROM "_prisma_migrations" WHERE migration_name = $1 '
                                      "AND finished_at IS NOT NULL AND rolled_back_at IS NULL", SLOW)
    assert applied[0]["n"] == 1
    status = await dev.status("v2-slow")
    assert (status.failed, status.pending) == ([], [])
    assert not list(groups.glob("*.pgid"))  # this run's children ended; the killed run's were killed
