"""Expand/contract phases of pending migrations, and the classification rules the phases rely on (pglast)."""

from __future__ import annotations

from providers.migrators import phases
from providers.migrators.classify import Category, classify

ADD = ("20250101000000_add_title_text", 'ALTER TABLE "Task" ADD COLUMN "titleText" TEXT;\n'
       'UPDATE "Task" SET "titleText" = "title";\n')
IDX = ("20250102000000_index", 'CREATE INDEX CONCURRENTLY "Task_titleText_idx" ON "Task"("titleText");\n')
DROP_COL = ("20250103000000_drop_title", 'ALTER TABLE "Task" DROP COLUMN "title";\n')
DROP_TYPE = ("20250104000000_drop_enum", 'DROP TYPE "OldKind";\n')
MIXED = ("20250105000000_mixed", 'ALTER TABLE "Task" ADD COLUMN "note" TEXT;\nALTER TABLE "Task" DROP COLUMN "x";\n')


def test_a_trailing_run_of_contract_only_migrations_is_the_contract_phase() -> None:
    got = phases.split([ADD, IDX, DROP_COL, DROP_TYPE])
    assert got.expand == [ADD[0], IDX[0]]
    assert got.contract == [DROP_COL[0], DROP_TYPE[0]]
    assert got.findings == [] and got.mixed == []
    assert "contract (after validation and the bake): 20250103000000_drop_title" in phases.describe(got)


def test_a_contract_only_migration_before_an_expanding_one_stays_in_expand_with_a_finding() -> None:
    got = phases.split([DROP_COL, ADD])
    assert (got.expand, got.contract) == ([DROP_COL[0], ADD[0]], [])
    assert [f.location for f in got.findings] == [f"{DROP_COL[0]}/migration.sql"]
    assert "order it after the expanding migrations" in got.findings[0].message


def test_a_mixed_migration_gets_a_finding_saying_how_to_split_it() -> None:
    got = phases.split([MIXED])
    assert (got.expand, got.contract, got.mixed) == ([MIXED[0]], [], [MIXED[0]])
    assert "split it" in got.findings[0].message and "migration of their own" in got.findings[0].message


def test_drops_of_objects_created_by_the_same_deploy_are_expand() -> None:
    create = ("20250101000000_t", 'CREATE TABLE "Tmp" ("id" INT);\n')
    drop = ("20250102000000_drop_tmp", 'DROP TABLE "Tmp";\n')
    assert phases.split([create, drop]).contract == []


def test_into_an_empty_database_nothing_is_contracted() -> None:
    assert phases.split([ADD, DROP_COL], fresh=True).contract == []


def test_dropping_indexes_and_constraints_is_contract() -> None:
    idx = ("20250101000000_i", 'DROP INDEX "Task_userId_idx";\n')
    con = ("20250102000000_c", 'ALTER TABLE "Task" DROP CONSTRAINT "Task_userId_fkey";\n')
    assert phases.split([idx, con]).contract == [idx[0], con[0]]


def test_dropping_a_unique_index_is_destructive_a_plain_one_only_locking() -> None:
    applied = [("20240101000000_init", 'CREATE TABLE "Task" ("id" INT, "title" TEXT);\n'
                'CREATE UNIQUE INDEX "Task_title_key" ON "Task"("title");\n'
                'CREATE INDEX "Task_id_idx" ON "Task"("id");\n')]
    unique = phases.unique_in(applied)
    assert unique == {"Task_title_key"}
    drop_u = classify([("m", 'DROP INDEX "public"."Task_title_key";\n')], unique=unique)
    drop_p = classify([("m", 'DROP INDEX "Task_id_idx";\n')], unique=unique)
    assert drop_u[0].category == Category.DESTRUCTIVE and "its inverse cannot re-create it" in drop_u[0].reason
    assert not drop_u[0].loses_data  # no stored value goes: it is the inverse that can fail
    assert drop_p[0].category == Category.LOCKING


def test_dropping_a_unique_constraint_says_its_inverse_can_fail() -> None:
    applied = [("20240101000000_init", 'ALTER TABLE "Task" ADD CONSTRAINT "Task_title_uq" UNIQUE ("title");\n')]
    got = classify([("m", 'ALTER TABLE "Task" DROP CONSTRAINT "Task_title_uq";\n')],
                   unique=phases.unique_in(applied))
    assert got[0].category == Category.DESTRUCTIVE and "unique: once duplicates exist" in got[0].reason


def test_a_unique_index_created_earlier_in_the_same_deploy_counts_too() -> None:
    got = classify([("a", 'CREATE UNIQUE INDEX "T_k" ON "Task"("k");\n'), ("b", 'DROP INDEX "T_k";\n')])
    assert got[1].category == Category.DESTRUCTIVE


def test_a_backfill_of_a_column_added_in_the_same_migration_stays_a_review_item() -> None:
    got = classify([ADD])
    assert [c.category for c in got] == [Category.ADDITIVE, Category.REVIEW]
    assert "updates rows of Task" in got[1].reason


def test_the_locking_index_finding_recommends_a_concurrent_build_of_its_own() -> None:
    got = classify([("m", 'CREATE INDEX "t_idx" ON "Task"("title");\n')])
    assert got[0].category == Category.LOCKING
    assert "CREATE INDEX CONCURRENTLY in a migration of its own" in got[0].reason
