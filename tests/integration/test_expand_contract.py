"""Expand before the services, contract after validation, through the real deploy flow (issue 13; issue 19's case).

Real PostgreSQL, the Prisma CLI, the sample app's local processes and a Prefect server. The sample app's safe
rename of Task.title to Task.name (tags v5-task-name, v6-drop-title) is the release pair under test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from flows.report import DeployOutcome
from flows.rollback import rollback_flow
from providers.state.store import StateStore
from providers.targets.local.target import stop_all
from tests.integration.envs import ROOT
from tests.integration.migration_support import Env, columns, derive_repo, make_env, step
from tests.pg import fetch, temp_database
from tests.sample_app import build_sample_repo, ensure_prisma_toolkit

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

TASK_NAME = "20250501000000_task_name"  # v5-task-name: ADD COLUMN name + backfill (expand)
BACKFILL = "20250601000000_task_name_backfill"  # v6-drop-title: expand
DROP_TITLE = "20250601000001_drop_task_title"  # v6-drop-title: contract
DEMO = {"email": "demo@aevon.dev", "password": "demo-password"}
SLOW_CHECK = {"name": "slow-smoke", "kind": "sleep", "error_retries": 0, "settings": {"seconds": 60}}


@pytest.fixture(scope="session")
def sample_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    return build_sample_repo(tmp_path_factory.mktemp("sample-phases") / "repo")


@asynccontextmanager
async def _open_env(repo: Path, tmp_path: Path, state_dir: Path,
                    monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    async with temp_database() as db_url:
        monkeypatch.setenv("DATABASE_URL", db_url)
        try:
            yield make_env("dev", repo, tmp_path / "specs", db_url, state_dir)
        finally:
            for svc in ("web", "api"):
                await stop_all(state_dir / "targets" / "dev" / svc, svc)


@pytest.fixture
async def dev(sample_repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    async with _open_env(sample_repo, tmp_path, state_dir, monkeypatch) as env:
        yield env


def rev(repo: Path, ref: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", f"{ref}^{{commit}}"], capture_output=True,
                          text=True, check=True).stdout.strip()


def api_port(env: Env, service: str = "api") -> int:
    return int(next(s for s in env.spec["services"] if s["name"] == service)["settings"]["port"])


async def serving_sha(env: Env, service: str = "api") -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        return str((await client.get(f"http://127.0.0.1:{api_port(env, service)}/health")).json()["sha"])


async def api_task_titles(env: Env) -> list[str]:
    """The task titles the serving api lists for the demo user (the API field stays `title` throughout)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port(env)}", timeout=10) as client:
        token = (await client.post("/auth/login", json=DEMO)).json()["token"]
        res = await client.get("/tasks", headers={"Authorization": f"Bearer {token}"})
        assert res.status_code == 200, res.text
        return sorted(t["title"] for t in res.json()["tasks"])


async def insert_task(url: str, title: str) -> None:
    """A task as the release before v5 writes it: `title` only."""
    await fetch(url, 'INSERT INTO "Task" ("title", "userId") SELECT $1, id FROM "User" LIMIT 1', title)


async def task_names(url: str) -> list[str]:
    return sorted(str(r["name"]) for r in await fetch(url, 'SELECT "name" FROM "Task"'))


def step_index(report_steps: list[str], name: str) -> int:
    assert name in report_steps, report_steps
    return report_steps.index(name)


async def test_rename_in_two_releases_expand_before_the_services_contract_after_validation(
    dev: Env, ledger_url: str
) -> None:
    assert (await dev.deploy("v2")).outcome == DeployOutcome.SUCCEEDED
    await insert_task(dev.db_url, "written by v2")

    v5 = await dev.deploy("v5-task-name")  # expand only: nothing to contract
    assert v5.outcome == DeployOutcome.SUCCEEDED, v5.error
    assert v5.migrations_applied == [TASK_NAME] and v5.migration_plan is not None
    assert (v5.migration_plan.expand, v5.migration_plan.contract) == ([TASK_NAME], [])
    assert step(v5, "database: contract phase") is None
    assert step(v5, "serving release on the new schema").detail == "2/2 health checks passed"  # v2 on the new one
    assert {"title", "name"} <= set(await columns(dev.db_url, "Task"))
    assert await task_names(dev.db_url) == ["written by v2"]  # backfilled
    await insert_task(dev.db_url, "written by v2 meanwhile")  # title only: v6's own backfill fills its name
    assert await api_task_titles(dev) == ["written by v2", "written by v2 meanwhile"]

    v6 = await dev.deploy("v6-drop-title", allow_destructive=True)
    assert v6.outcome == DeployOutcome.SUCCEEDED, v6.error
    plan = v6.migration_plan
    assert plan is not None and (plan.pending, plan.expand, plan.contract) == (
        [BACKFILL, DROP_TITLE], [BACKFILL], [DROP_TITLE])
    assert not plan.expand_inverse_loses_data and plan.inverse_loses_data  # the contract alone loses data
    assert v6.migrations_applied == [BACKFILL]
    assert (v6.contract_applied, v6.contract_left) == ([DROP_TITLE], [])
    names = [s.name.split(":")[0] for s in v6.steps]
    order = [step_index(names, n) for n in ("migrate", "serving release on the new schema", "deploy services",
                                            "validation 1/1", "database", "record good release")]
    assert order == sorted(order), names
    assert step(v6, "database: contract phase").detail == f"applied {DROP_TITLE}"
    # The journal, in the order things happened: expand, then every service, then the contract phase.
    async with StateStore(SecretStr(ledger_url)) as state:
        journal = [e.target for e in await state.ledger.entries(str(v6.release_id))]
    assert journal[0] == "database" and journal[-1] == "database:contract", journal
    assert set(journal[1:-1]) == {"api", "web"}, journal
    assert "title" not in await columns(dev.db_url, "Task")
    assert await task_names(dev.db_url) == ["written by v2", "written by v2 meanwhile"]  # no row lost a value
    assert await api_task_titles(dev) == ["written by v2", "written by v2 meanwhile"]
    assert (await dev.status("v6-drop-title")).pending == []


async def test_failed_validation_leaves_the_contract_unapplied_and_every_row(dev: Env, sample_repo: Path) -> None:
    dev.spec["database"]["rollback"] = "code_only"  # staging and prod settings: no inverse, no row dropped
    dev.write()
    assert (await dev.deploy("v2")).outcome == DeployOutcome.SUCCEEDED
    await insert_task(dev.db_url, "kept")

    dev.write(failing=True)
    bad = await dev.deploy("v6-drop-title", allow_destructive=True)  # v2 -> v6: expand + contract pending
    assert bad.outcome == DeployOutcome.ROLLED_BACK, bad.error
    assert bad.migrations_applied == [TASK_NAME, BACKFILL]
    assert bad.contract_applied == [] and step(bad, "database: contract phase") is None
    assert bad.rollback is not None and bad.rollback.ok and bad.rollback.migrations_reverted == []
    note = " ".join(bad.rollback.notes)
    assert "code reverted only" in note and "database.rollback is code_only" in note
    assert {"title", "name"} <= set(await columns(dev.db_url, "Task"))  # the contract never ran
    assert [r["title"] for r in await fetch(dev.db_url, 'SELECT "title" FROM "Task"')] == ["kept"]
    assert await task_names(dev.db_url) == ["kept"]
    assert await serving_sha(dev) == rev(sample_repo, "v2")  # the old code serves on the expanded schema
    assert await api_task_titles(dev) == ["kept"]
    status = await dev.status("v6-drop-title")
    assert (status.pending, status.failed) == ([DROP_TITLE], [])


async def test_serving_release_failing_on_the_expanded_schema_stops_before_any_service(
    sample_repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unsafe rename (RENAME COLUMN, not backward compatible): v2's health fails on it, no service moves."""
    rename = "20250501000000_rename_title"
    repo = derive_repo(sample_repo, tmp_path / "rename-repo", {
        "v2-rename": ("v2", {rename: 'ALTER TABLE "Task" RENAME COLUMN "title" TO "name";\n'})})
    async with _open_env(repo, tmp_path, state_dir, monkeypatch) as env:
        assert (await env.deploy("v2")).outcome == DeployOutcome.SUCCEEDED
        await insert_task(env.db_url, "still here")
        report = await env.deploy("v2-rename", allow_destructive=True)
        # v2 still serves, on a schema it cannot use: the rollback re-checks it and does not claim all is well
        assert report.outcome == DeployOutcome.ROLLBACK_FAILED, report.error
        assert report.migrations_applied == [rename]
        assert report.services == [] and report.checks == []  # no service moved, validation never ran
        st = step(report, "serving release on the new schema")
        assert st.outcome == "failed" and st.detail == "1/2 health checks passed"
        error = str(report.error)
        assert "the serving release fails its health checks on the new schema" in error
        assert "not backward compatible (no service was changed)" in error and "api-health" in error
        # The way back: Prisma's diff sees a rename as drop + add NOT NULL, which fails on the rows there, so the
        # inverse is not run (not even in dev) and the report names the precondition and the backup route.
        assert report.rollback is not None and report.rollback.migrations_reverted == []
        note = " ".join(report.rollback.notes)
        assert f"migrations {rename} stay applied because its inverse would fail on the data now" in note, note
        assert "`aevon-deploy db backups dev` lists earlier ones" in note
        assert "serving release is unhealthy: api-health FAILED" in note, note
        assert "name" in await columns(env.db_url, "Task") and "title" not in await columns(env.db_url, "Task")
        assert await task_names(env.db_url) == ["still here"]  # no row lost
        assert await serving_sha(env) == rev(repo, "v2")  # nothing moved


async def test_crash_between_expand_and_contract_is_compensated_by_the_next_run(
    dev: Env, sample_repo: Path, ledger_url: str
) -> None:
    """SIGKILL the deploy of v6 while it validates (expand applied, services switched, contract not yet run)."""
    assert (await dev.deploy("v2")).outcome == DeployOutcome.SUCCEEDED
    await insert_task(dev.db_url, "survives")
    dev.spec["validation"]["checks"].append(SLOW_CHECK)  # keeps the dead run in validation long enough
    dev.write()
    v6 = rev(sample_repo, "v6-drop-title")
    cli = [sys.executable, "-m", "flows.cli", "--spec-dir", str(dev.spec_dir)]
    proc = subprocess.Popen([*cli, "deploy", "dev", "--ref", "v6-drop-title", "--allow-destructive"],
                            env={**os.environ, "DATABASE_URL": dev.db_url}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(6000):
            if proc.poll() is not None:
                pytest.fail("the deploy finished before the switch was seen")
            try:  # both switched: with checks as a DAG, api's checks may start while web still rolls out
                if await serving_sha(dev) == v6 and await serving_sha(dev, "web") == v6:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert await serving_sha(dev) == v6 and await serving_sha(dev, "web") == v6
    assert {"title", "name"} <= set(await columns(dev.db_url, "Task"))  # expanded, not contracted
    assert (await dev.status("v6-drop-title")).pending == [DROP_TITLE]

    dev.spec["validation"]["checks"].remove(SLOW_CHECK)
    dev.write()
    async with StateStore(SecretStr(ledger_url)) as state:
        [dead] = await state.ledger.unfinished("dev")
        again = await dev.deploy("v6-drop-title", allow_destructive=True)
        assert again.outcome == DeployOutcome.SUCCEEDED, again.error
        assert [c.release_id for c in again.compensated] == [dead.release_id]
        undone = again.compensated[0]
        assert {s.service: s.after for s in undone.services} == {"web": rev(sample_repo, "v2"),
                                                                 "api": rev(sample_repo, "v2")}
        assert undone.migrations_reverted == [TASK_NAME, BACKFILL]  # dev: the expand's inverse, nothing written
        row = await state.ledger.get(dead.release_id)
        assert row is not None and row.status == "compensated"
    assert again.migrations_applied == [TASK_NAME, BACKFILL] and again.contract_applied == [DROP_TITLE]
    assert "title" not in await columns(dev.db_url, "Task")
    assert await task_names(dev.db_url) == ["survives"]
    assert await serving_sha(dev) == v6 and await api_task_titles(dev) == ["survives"]


async def test_duplicates_under_a_dropped_unique_index_make_the_rollback_code_only(
    sample_repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: the release drops User_email_key and writes duplicates; its inverse (re-create the unique index)
    would fail on that data, so even dev's `inverse` rollback reverts the code only, the precondition named."""
    handles = "20250501000000_user_handle"
    repo = derive_repo(sample_repo, tmp_path / "unique-repo", {"v2-handles": ("v2", {handles: (
        'ALTER TABLE "User" ADD COLUMN "handle" TEXT;\nDROP INDEX "User_email_key";\n')})})
    async with _open_env(repo, tmp_path, state_dir, monkeypatch) as env:
        assert (await env.deploy("v2")).outcome == DeployOutcome.SUCCEEDED
        release = await env.deploy("v2-handles", allow_destructive=True)
        assert release.outcome == DeployOutcome.SUCCEEDED, release.error
        plan = release.migration_plan
        assert plan is not None and plan.expand == [handles] and plan.contract == [] and plan.destructive
        assert any(f.detail.get("category") == "phases" and handles in f.message for f in plan.findings)
        await fetch(env.db_url, 'INSERT INTO "User" ("email", "passwordHash") '
                                'SELECT "email", "passwordHash" FROM "User"')  # what the release wrote
        assert release.release_id is not None
        rb = await rollback_flow("dev", release.release_id, "operator rollback", str(env.spec_dir))
        assert rb.ok and rb.migrations_reverted == [], rb.notes
        note = " ".join(rb.notes)
        assert f"code reverted only; migrations {handles} stay applied because its inverse would fail on the data " \
               "now: " in note
        assert "User_email_key" in note, note
        assert "handle" in await columns(env.db_url, "User")
        rows = await fetch(env.db_url, 'SELECT "email" FROM "User"')
        assert [r["email"] for r in rows] == ["demo@aevon.dev", "demo@aevon.dev"]  # both rows kept
        assert await serving_sha(env) == rev(repo, "v2")
