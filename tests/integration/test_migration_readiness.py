"""The migration-readiness gate and the migrator's plan (findings, inverse) against real PostgreSQL and Prisma."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from deployments.spec import CheckSpec, DatabaseSpec, EnvironmentSpec, ServiceSpec, SourceSpec
from providers.checks.base import GATES, CheckContext, CheckInput
from providers.gates.migration_readiness import MigrationReadiness, ReadinessSettings
from providers.migrators.base import MigratorContext
from providers.migrators.prisma.migrator import PrismaMigrator, make_migrator
from providers.models import Outcome, Release, Severity
from tests.pg import fetch, temp_database
from tests.sample_app import ensure_prisma_toolkit

pytestmark = pytest.mark.slow

A, B, C = "20250101000000_tasks", "20250201000000_note", "20250301000000_drop_title"
SQL = {
    A: 'CREATE TABLE "Task" ("id" SERIAL PRIMARY KEY, "title" TEXT NOT NULL);\n'
       "INSERT INTO \"Task\" (\"title\") VALUES ('seeded');\n",
    B: 'ALTER TABLE "Task" ADD COLUMN "note" TEXT;\n\nCREATE INDEX "Task_note_idx" ON "Task"("note");\n',
    C: 'ALTER TABLE "Task" DROP COLUMN "title";\n',
}
SCHEMA = ('generator client {\n  provider = "prisma-client-js"\n  engineType = "client"\n}\n'
          'datasource db {\n  provider = "postgresql"\n  url = env("DATABASE_URL")\n}\n')


@pytest.fixture(scope="module", autouse=True)
def _toolkit() -> None:
    ensure_prisma_toolkit()


def checkout(root: Path, names: list[str], sql: dict[str, str] | None = None) -> Path:
    mig = root / "prisma" / "migrations"
    mig.mkdir(parents=True)
    (root / "prisma" / "schema.prisma").write_text(SCHEMA)
    (mig / "migration_lock.toml").write_text('provider = "postgresql"\n')
    for name in names:
        (mig / name).mkdir()
        (mig / name / "migration.sql").write_text((sql or SQL)[name])
    return root


def migrator(url: str, tmp: Path) -> PrismaMigrator:
    return make_migrator(MigratorContext(env="t", spec=DatabaseSpec(), database_url=SecretStr(url),
                                         state_dir=tmp / "state"))


def gate(m: PrismaMigrator, kept: dict[str, str] | None = None) -> MigrationReadiness:
    async def lookup(env: str) -> dict[str, str]:
        assert env == "t"
        return kept or {}

    env = EnvironmentSpec(environment="t", source=SourceSpec(repo="/nowhere"),
                          services=[ServiceSpec(name="api", provider="memory")])
    ctx = CheckContext(env=env, spec=CheckSpec(name="migration-readiness", kind="migration_readiness"), secrets={},
                       artifacts_dir=Path("/nonexistent"), baseline_dir=Path("/nonexistent"), section=GATES, index=0)
    return MigrationReadiness(ctx, m, ReadinessSettings(), lookup)


async def run(g: MigrationReadiness, root: Path) -> tuple[Outcome, list[tuple[str, Severity]], str]:
    release = Release(release_id="r", env="t", ref="v", sha="0" * 40)
    res = await g.run(CheckInput(release=release, services={}, checkout_dir=root))
    return res.outcome, [(str(f.detail.get("rule", "")), f.severity) for f in res.findings], res.summary


async def test_ready_folder_reports_status(tmp_path: Path) -> None:
    root = checkout(tmp_path / "app", [A, B])
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await m.apply(checkout(tmp_path / "old", [A]))
        outcome, found, summary = await run(gate(m), root)
        assert (outcome, found) == (Outcome.PASSED, [])
        assert summary == f"1 applied, 1 pending ({B}), 0 failed, drift no"


async def test_inconsistent_folder_and_unparsable_pending_migration_block(tmp_path: Path) -> None:
    root = checkout(tmp_path / "app", [A, B], {A: SQL[A], B: "ALTER TABLE \"Task\" ADD COLUMN;\n"})
    async with temp_database() as url:
        g = gate(migrator(url, tmp_path))
        outcome, found, summary = await run(g, root)
        assert (outcome, found) == (Outcome.FAILED, [("parse", Severity.HIGH)])
        assert f"{B}/migration.sql:1" in summary
        (root / "prisma" / "migrations" / "20250401000000_empty_folder").mkdir()
        outcome, found, _ = await run(g, root)
        assert sorted(found) == [("missing-sql", Severity.HIGH), ("parse", Severity.HIGH)]
        # Prisma itself refuses this one (P3019): the folder's finding says why, so the gate FAILS (not ERROR)
        (root / "prisma" / "migrations" / "migration_lock.toml").write_text('provider = "mysql"\n')
        outcome, found, summary = await run(g, root)
        assert outcome == Outcome.FAILED and ("lock-provider", Severity.HIGH) in found and "P3019" in summary


async def test_applied_migration_missing_from_the_checkout_blocks_unless_a_rollback_kept_it(tmp_path: Path) -> None:
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await m.apply(checkout(tmp_path / "new", [A, B]))
        old = checkout(tmp_path / "old", [A])
        outcome, found, summary = await run(gate(m), old)
        assert (outcome, found) == (Outcome.FAILED, [("unknown-applied", Severity.HIGH)])
        assert f"migration {B} is applied in the database but missing" in summary
        outcome, found, _ = await run(gate(m, {B: "dev-abc-123"}), old)
        assert (outcome, found) == (Outcome.PASSED, [("kept-by-rollback", Severity.MEDIUM)])


async def test_failed_migration_blocks_with_instructions_that_work(tmp_path: Path) -> None:
    bad = {A: SQL[A], B: 'CREATE TABLE "Half" ("id" INT);\nSELECT CAST(\'x\' AS INTEGER);\n'}
    root = checkout(tmp_path / "app", [A, B], bad)
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        with pytest.raises(Exception, match="invalid input syntax"):
            await m.apply(root)
        res = await gate(m).run(CheckInput(release=Release(release_id="r", env="t", ref="v", sha="0" * 40),
                                           services={}, checkout_dir=root))
        assert res.outcome == Outcome.FAILED
        [finding] = res.findings
        assert finding.severity == Severity.CRITICAL and 'invalid input syntax for type integer: "x"' in finding.message
        sql = finding.message.split("toolkit cannot run): ", 1)[1].split(" then deploy again", 1)[0]
        await fetch(url, sql)
        (root / "prisma" / "migrations" / B / "migration.sql").write_text('CREATE TABLE "Half" ("id" INT);\n')
        outcome, found, _ = await run(gate(m), root)
        assert (outcome, found) == (Outcome.PASSED, [])
        assert (await m.apply(root)).applied == [B]


async def test_plan_findings_and_first_deploy_has_nothing_to_invert(tmp_path: Path) -> None:
    """Into an empty database nothing existed before: no inverse is prepared (issue 17), the finding says so."""
    root = checkout(tmp_path / "app", [A, B])
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        plan = await m.plan(root, None)
        assert plan.pending == [A, B] and not plan.destructive and not plan.inverse_loses_data
        assert [(f.location, f.detail.get("category")) for f in plan.findings[:4]] == [
            (f"{A}/migration.sql:1", "additive"), (f"{A}/migration.sql:2", "additive"),
            (f"{B}/migration.sql:1", "additive"), (f"{B}/migration.sql:3", "additive")]  # Task is new here too
        assert not plan.inverse_steps and plan.inverse_sql is None
        [inverse] = [f for f in plan.findings if f.detail.get("category") == "inverse"]
        assert "the database was empty before this deploy, so there is nothing to invert" in inverse.message
        assert (await m.apply(root)).applied == [A, B]
        assert (await m.status(root)).pending == []


async def test_destructive_plan_marks_the_inverse_as_losing_data(tmp_path: Path) -> None:
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await m.apply(checkout(tmp_path / "old", [A, B]))
        plan = await m.plan(checkout(tmp_path / "new", [A, B, C]), None)
        assert plan.pending == [C] and plan.destructive and plan.inverse_loses_data
        destructive = [f for f in plan.findings if f.detail.get("category") == "destructive"]
        assert [(f.location, f.severity) for f in destructive] == [(f"{C}/migration.sql:1", Severity.HIGH)]
        [inverse] = [f for f in plan.findings if f.detail.get("category") == "inverse"]
        assert "a rollback would revert the code only" in inverse.message and inverse.severity == Severity.MEDIUM
        assert '"title" TEXT NOT NULL' in str(plan.inverse_sql)  # the column comes back, its data does not
