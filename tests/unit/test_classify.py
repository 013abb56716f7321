"""Migration SQL classification (pglast), inverse analysis and migrations-folder consistency: no database needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.migrators.classify import Category, classify, findings, is_destructive, loses_data
from providers.migrators.prisma.consistency import check_folder, check_pending, schema_provider
from providers.migrators.prisma.inverse import compose, destroyed_by, grown, is_empty, not_undone
from providers.migrators.prisma.preconditions import needs
from providers.migrators.prisma.script import NotTransactional, transactional
from providers.models import Severity

M = "20250301000000_change"


def one(sql: str, *, before: str = "") -> tuple[Category, str]:
    """Category and reason of the last classified item of `sql` (after the statements of `before`)."""
    items = classify([("20250101000000_before", before), (M, sql)] if before else [(M, sql)])
    return items[-1].category, items[-1].reason


@pytest.mark.parametrize(("sql", "category", "words"), [
    ('CREATE TABLE "Audit" ("id" SERIAL PRIMARY KEY)', Category.ADDITIVE, "creates table Audit"),
    ('ALTER TABLE "Task" ADD COLUMN "note" TEXT', Category.ADDITIVE, "nullable"),
    ("ALTER TABLE \"Task\" ADD COLUMN \"p\" TEXT NOT NULL DEFAULT 'normal'", Category.ADDITIVE, "constant default"),
    ('ALTER TABLE "Task" ADD COLUMN "at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP', Category.ADDITIVE,
     "constant default"),
    ('ALTER TABLE "Task" ADD COLUMN "u" UUID NOT NULL DEFAULT gen_random_uuid()', Category.LOCKING, "volatile"),
    ('ALTER TABLE "Task" ADD COLUMN "n" SERIAL', Category.LOCKING, "rewrites"),
    ('ALTER TABLE "Task" ADD COLUMN "n" INTEGER NOT NULL', Category.DESTRUCTIVE, "NOT NULL without a default"),
    ('ALTER TABLE "Task" DROP COLUMN "done"', Category.DESTRUCTIVE, "drops column Task.done"),
    ('ALTER TABLE "Task" ALTER COLUMN "title" SET DATA TYPE VARCHAR(20)', Category.DESTRUCTIVE, "type of Task.title"),
    ('ALTER TABLE "Task" ALTER COLUMN "title" SET NOT NULL', Category.DESTRUCTIVE, "NOT NULL without a default"),
    ('ALTER TABLE "Task" ALTER COLUMN "title" DROP NOT NULL', Category.ADDITIVE, "allows NULL"),
    ('ALTER TABLE "Task" DROP CONSTRAINT "Task_userId_fkey"', Category.DESTRUCTIVE, "drops constraint"),
    ('ALTER TABLE "Task" RENAME COLUMN "done" TO "finished"', Category.DESTRUCTIVE, "renames column Task.done"),
    ('ALTER TABLE "Task" RENAME TO "Todo"', Category.DESTRUCTIVE, "renames table Task"),
    ('ALTER INDEX "a_idx" RENAME TO "b_idx"', Category.ADDITIVE, "renames index a_idx"),
    ('DROP TABLE "Task"', Category.DESTRUCTIVE, "drops table Task and its data"),
    ('DROP TYPE "Mood"', Category.DESTRUCTIVE, "drops type Mood"),
    ('DROP INDEX "Task_userId_idx"', Category.LOCKING, "locks its table"),
    ('CREATE INDEX "t_idx" ON "Task"("title")', Category.LOCKING, "without CONCURRENTLY"),
    ('CREATE INDEX CONCURRENTLY "t_idx" ON "Task"("title")', Category.ADDITIVE, "concurrently"),
    ('ALTER TABLE "Task" ADD CONSTRAINT "c" CHECK ("id" > 0)', Category.LOCKING, "scans every row"),
    ('ALTER TABLE "Task" ADD CONSTRAINT "c" CHECK ("id" > 0) NOT VALID', Category.ADDITIVE, "NOT VALID"),
    ('ALTER TABLE "Task" ADD CONSTRAINT "u" UNIQUE ("title")', Category.LOCKING, "builds an index"),
    ('TRUNCATE "Task"', Category.DESTRUCTIVE, "empties Task"),
    ('DELETE FROM "Session"', Category.DESTRUCTIVE, "deletes rows of Session"),
    ("UPDATE \"Task\" SET \"title\" = 'x'", Category.REVIEW, "updates rows"),
    ("INSERT INTO \"Task\" (\"title\") VALUES ('x')", Category.ADDITIVE, "inserts rows"),
    ("ALTER TYPE \"Mood\" ADD VALUE 'calm'", Category.ADDITIVE, "adds enum value"),
    ("ALTER TYPE \"Mood\" RENAME VALUE 'sad' TO 'blue'", Category.DESTRUCTIVE, "renames enum value"),
    ("DO $$ BEGIN PERFORM 1; END $$", Category.REVIEW, "DO block"),
])
def test_statement_categories(sql: str, category: Category, words: str) -> None:
    got, reason = one(sql)
    assert got == category, reason
    assert words in reason


def test_tables_new_in_the_same_deploy_are_additive() -> None:
    created = 'CREATE TABLE "Note" ("id" INT, "body" TEXT);\n'
    assert one('CREATE INDEX "n_idx" ON "Note"("body")', before=created)[0] == Category.ADDITIVE
    assert one('ALTER TABLE "Note" ADD COLUMN "x" INT NOT NULL', before=created)[0] == Category.ADDITIVE
    assert one('ALTER TABLE "Note" ALTER COLUMN "body" SET NOT NULL', before=created)[0] == Category.ADDITIVE
    # the same statements on a table that already exists
    assert one('CREATE INDEX "n_idx" ON "Other"("body")', before=created)[0] == Category.LOCKING


def test_set_not_null_after_a_default_only_locks() -> None:
    sql = ("ALTER TABLE \"Task\" ALTER COLUMN \"p\" SET DEFAULT 'normal';\n"
           'ALTER TABLE "Task" ALTER COLUMN "p" SET NOT NULL;\n')
    assert [c.category for c in classify([(M, sql)])] == [Category.ADDITIVE, Category.LOCKING]


def test_each_sub_command_of_an_alter_table_is_a_finding_with_its_line() -> None:
    sql = ("-- AlterTable\n\nALTER TABLE \"Task\" ADD COLUMN \"a\" TEXT,\n"
           '    DROP COLUMN "b";\n-- CreateIndex\nCREATE INDEX "i" ON "Task"("a");\n')
    got = findings([(M, sql)])
    assert [(f.location, f.detail["category"]) for f in got] == [
        (f"{M}/migration.sql:3", "additive"), (f"{M}/migration.sql:3", "destructive"),
        (f"{M}/migration.sql:6", "locking"),
    ]
    assert got[1].severity == Severity.HIGH and got[2].severity == Severity.MEDIUM
    assert got[1].detail["statement"].startswith('ALTER TABLE "Task" ADD COLUMN "a" TEXT, DROP COLUMN "b"')
    assert 'DROP COLUMN "b"' in got[1].message
    assert is_destructive(got)
    assert not is_destructive(got[:1] + got[2:])


def test_lines_count_characters_not_bytes() -> None:
    sql = "-- Λ Ξ é: multi-byte comment\nCREATE TABLE \"A\" (\"id\" INT);\n\n\nDROP TABLE \"B\";\n"
    assert [f.location for f in findings([(M, sql)])] == [f"{M}/migration.sql:2", f"{M}/migration.sql:5"]


def test_a_migration_that_does_not_parse_is_invalid_at_its_line_and_others_still_count() -> None:
    got = findings([(M, "CREATE TABLE \"A\" (\"id\" INT);\nCREATE TABLEX \"B\";\n"),
                    ("20250302000000_next", 'DROP TABLE "C";\n')])
    assert got[0].detail["category"] == "invalid" and got[0].severity == Severity.HIGH
    assert got[0].location == f"{M}/migration.sql:2"
    assert "TABLEX" in got[0].message
    assert got[1].detail["category"] == "destructive"


def test_concurrent_index_inside_a_multi_statement_migration_is_flagged() -> None:
    sql = 'CREATE INDEX CONCURRENTLY "i" ON "Task"("a");\nCREATE INDEX CONCURRENTLY "j" ON "Task"("b");\n'
    assert {c.category for c in classify([(M, sql)])} == {Category.REVIEW}


# -- the inverse ---------------------------------------------------------------------------------------------

DOWN = """-- DropIndex
DROP INDEX "public"."Task_userId_priority_idx";

-- AlterTable
ALTER TABLE "public"."Task" DROP COLUMN "priority";

-- DropTable
DROP TABLE "public"."AuditEvent";
"""


def test_destroyed_by_reads_prismas_down_script() -> None:
    targets, unknown = destroyed_by(DOWN)
    assert [(t.label, t.how) for t in targets] == [
        ("public.Task.priority", "drops column"), ("public.AuditEvent", "drops table")]
    assert unknown == []
    assert destroyed_by("DROP SCHEMA app CASCADE;")[1] == ["line 1: DROP SCHEMA app CASCADE"]


def test_not_undone_blocks_the_inverse_only_when_a_reapply_would_fail() -> None:
    ok, breaks = not_undone([(M, 'CREATE TABLE "N" ("id" INT);\nINSERT INTO "N" VALUES (1);\n'
                                 "CREATE EXTENSION IF NOT EXISTS pgcrypto;\n")])
    assert not breaks and [f.severity for f in ok] == [Severity.LOW]  # only the extension, re-apply-safe
    for sql in ("CREATE EXTENSION pgcrypto;", "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql;",
                "INSERT INTO \"Existing\" VALUES (1);", 'ALTER TABLE "T" ADD CONSTRAINT "c" CHECK ("a" > 0);',
                "DO $$ BEGIN END $$;"):
        found, breaks = not_undone([(M, sql)])
        assert breaks, sql
        assert found[0].location == f"{M}/migration.sql:1"


def test_compose_undoes_the_newest_first_and_only_what_was_applied() -> None:
    steps = {"a": "DROP TABLE \"A\";\n", "b": "", "c": "DROP TABLE \"C\";\n"}
    assert compose(steps, ["a", "b", "c"]) == 'DROP TABLE "C";\n;\nDROP TABLE "A";\n'
    assert compose(steps, ["a"]) == 'DROP TABLE "A";\n'
    assert compose(steps, ["b"]) == ""
    assert is_empty("-- This is an empty migration.\n") and is_empty(None) and not is_empty(DOWN)


def test_grown_counts_everything_as_new_without_a_baseline() -> None:
    assert grown({"t": 1, "c": 0}, {"t": 1, "c": 2}) == {"c": 2}
    assert grown({"t": 3}, {"t": 1}) == {}
    assert grown(None, {"t": 1, "u": 0}) == {"t": 1}


# -- the migrations folder -----------------------------------------------------------------------------------

SCHEMA = 'datasource db {\n  provider = "postgresql"  // the database\n  url = env("DATABASE_URL")\n}\n'


def folder(tmp: Path, entries: dict[str, str | None], lock: str | None = 'provider = "postgresql"\n') -> Path:
    mig = tmp / "migrations"
    mig.mkdir()
    (tmp / "schema.prisma").write_text(SCHEMA)
    if lock is not None:
        (mig / "migration_lock.toml").write_text(lock)
    for name, sql in entries.items():
        (mig / name).mkdir()
        if sql is not None:
            (mig / name / "migration.sql").write_text(sql)
    return mig


def rules(found: list[object]) -> list[tuple[str, str]]:
    return [(f.detail["rule"], f.severity.value) for f in found]  # type: ignore[attr-defined]


def test_a_consistent_folder_has_no_findings(tmp_path: Path) -> None:
    mig = folder(tmp_path, {"20250101000000_init": "SELECT 1;", "20250201000000_next": "SELECT 2;"})
    assert schema_provider(tmp_path / "schema.prisma") == "postgresql"
    assert check_folder(tmp_path / "schema.prisma", mig) == []
    assert check_pending(mig, ["20250201000000_next"], ["20250101000000_init"]) == []


def test_folder_rules(tmp_path: Path) -> None:
    mig = folder(tmp_path, {"20250101000000_init": "SELECT 1;", "init_without_stamp": "SELECT 1;",
                            "20251399000000_bad_month": "SELECT 1;", "20250101000000_twin": "SELECT 1;",
                            "20250301000000_no_sql": None, "20250401000000_empty": "  \n"},
                 lock='provider = "mysql"\n')
    (mig / "notes.txt").write_text("x")
    assert sorted(rules(check_folder(tmp_path / "schema.prisma", mig))) == sorted([
        ("duplicate-timestamp", "MEDIUM"), ("name", "HIGH"), ("missing-sql", "HIGH"), ("name", "HIGH"),
        ("empty-sql", "LOW"), ("stray-file", "LOW"), ("lock-provider", "HIGH"),
    ])


def test_missing_lock_file_and_a_non_postgres_schema(tmp_path: Path) -> None:
    mig = folder(tmp_path, {"20250101000000_init": "SELECT 1;"}, lock=None)
    assert rules(check_folder(tmp_path / "schema.prisma", mig)) == [("lock-missing", "MEDIUM")]
    (tmp_path / "schema.prisma").write_text(SCHEMA.replace("postgresql", "sqlite"))
    assert ("provider", "HIGH") in rules(check_folder(tmp_path / "schema.prisma", mig))


def test_pending_rules(tmp_path: Path) -> None:
    mig = folder(tmp_path, {"20250101000000_init": "SELECT 1;", "20250102000000_late": "SELECT 1;",
                            "20250301000000_broken": "SELECT 1;\nALTER TABLE;\n"})
    found = check_pending(mig, ["20250102000000_late", "20250301000000_broken"], ["20250201000000_applied"])
    assert rules(found) == [("out-of-order", "MEDIUM"), ("parse", "HIGH")]
    assert found[1].location == "20250301000000_broken/migration.sql:2"


async def test_judge_rules() -> None:
    from providers.migrators.prisma.inverse import judge

    measured: list[str | None] = []

    async def measure(sql: str | None) -> dict[str, int]:
        measured.append(sql)
        return {"public.Old": 3, "public.Task.note": 0}

    additive = [(M, 'ALTER TABLE "Task" ADD COLUMN "note" TEXT;\n')]
    down = {M: 'ALTER TABLE "public"."Task" DROP COLUMN "note";\nDROP TABLE "public"."Old";\n'}
    # the down script would destroy rows that exist before the deploy: code-only rollback
    verdict = await judge(additive, findings(additive), down, measure)
    assert verdict.loses_data and verdict.steps == down and measured == [down[M]]
    assert "exists before this deploy: public.Old (3 rows)" in verdict.findings[-1].message
    # a destructive forward statement: lost data no down script brings back (nothing to measure for that)
    dropping = [(M, 'ALTER TABLE "Task" DROP COLUMN "title";\n')]
    verdict = await judge(dropping, findings(dropping), {M: 'ALTER TABLE "Task" ADD COLUMN "title" TEXT;\n'}, measure)
    assert verdict.loses_data and "destroys data that no down script brings back" in verdict.findings[-1].message
    # a statement the diff cannot undo and whose re-apply fails: no inverse at all
    function = [(M, "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql;\n")]
    verdict = await judge(function, findings(function), {M: ""}, measure)
    assert verdict.steps == {} and not verdict.loses_data
    assert verdict.findings[-1].message.startswith("inverse: no inverse for")
    # additive, down script drops only what is new (nothing there yet): kept, nothing lost
    async def nothing(sql: str | None) -> dict[str, int]:
        return {"public.Task.note": 0}

    verdict = await judge(additive, findings(additive), {M: down[M].split("\n")[0] + "\n"}, nothing)
    assert not verdict.loses_data and verdict.findings[-1].severity == Severity.INFO
    assert "drops column public.Task.note" in verdict.findings[-1].message


# -- honest verdicts: "loses data" only where stored values are dropped or rewritten ------------------------------

@pytest.mark.parametrize(("sql", "loses"), [
    ('ALTER TABLE "Task" DROP COLUMN "done"', True),
    ('ALTER TABLE "Task" ALTER COLUMN "title" SET DATA TYPE VARCHAR(20)', True),
    ('DROP TABLE "Task"', True),
    ('TRUNCATE "Task"', True),
    ('DELETE FROM "Session"', True),
    ('DROP SEQUENCE "Task_n_seq"', True),
    ('DROP TYPE "Mood" CASCADE', True),
    # destructive for the running code, but every stored value stays: the inverse can bring the schema back
    ('ALTER TABLE "Task" DROP CONSTRAINT "Task_userId_fkey"', False),
    ('ALTER TABLE "Task" ALTER COLUMN "title" SET NOT NULL', False),
    ('ALTER TABLE "Task" RENAME COLUMN "done" TO "finished"', False),
    ('DROP TYPE "Mood"', False),
    ('DROP FUNCTION "f"', False),
    ("ALTER TYPE \"Mood\" RENAME VALUE 'sad' TO 'blue'", False),
    ("ALTER TYPE \"Mood\" ADD VALUE 'calm'", False),
    ('DROP INDEX "Task_title_key"', False),
    ('ALTER TABLE "Task" ADD COLUMN "n" INTEGER NOT NULL', False),
])
def test_loses_data_per_statement_kind(sql: str, loses: bool) -> None:
    got = findings([(M, sql)])
    assert loses_data(got) is loses, got[-1].message


def test_a_foreign_key_swap_loses_nothing() -> None:
    swap = ('ALTER TABLE "Task" DROP CONSTRAINT "Task_userId_fkey";\n'
            'ALTER TABLE "Task" ADD CONSTRAINT "Task_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"("id") '
            "ON DELETE CASCADE ON UPDATE CASCADE;\n")
    got = findings([(M, swap)])
    assert is_destructive(got) and not loses_data(got)


# -- the new-object exemption --------------------------------------------------------------------------------

CREATED = ('CREATE TYPE "Mood" AS ENUM (\'a\');\nCREATE TABLE "Log" ("id" SERIAL NOT NULL, "m" "Mood");\n'
           'CREATE SEQUENCE "counter";\nCREATE FUNCTION "f"() RETURNS int AS \'select 1\' LANGUAGE sql;\n')


@pytest.mark.parametrize("sql", [
    'DELETE FROM "Log"', 'TRUNCATE "Log"', 'DROP SEQUENCE "counter"', 'DROP SEQUENCE "Log_id_seq"',
    'DROP TYPE "Mood"', 'DROP FUNCTION IF EXISTS "f"', 'DROP FUNCTION "f"()', 'ALTER TABLE "Log" RENAME TO "Journal"',
    "ALTER TYPE \"Mood\" RENAME VALUE 'a' TO 'b'",
])
def test_statements_on_objects_created_earlier_in_the_deploy_are_not_destructive(sql: str) -> None:
    category, reason = one(sql, before=CREATED)
    assert category == Category.ADDITIVE, reason
    assert one(sql)[0] == Category.DESTRUCTIVE  # the same on an object that existed before


def test_on_an_empty_database_nothing_existed_before() -> None:
    drops = 'DROP FUNCTION IF EXISTS "legacy"();\nDELETE FROM "Seeded";\nDROP TABLE "Old";\n'
    assert not is_destructive(findings([(M, drops)], fresh=True))
    assert is_destructive(findings([(M, drops)]))


# -- inverse scripts: one transaction, the preconditions they depend on ----------------------------------------

ENUM_DOWN = """-- AlterEnum
BEGIN;
CREATE TYPE "public"."Mood_new" AS ENUM ('calm', 'busy');
ALTER TABLE "public"."Task" ALTER COLUMN "mood" DROP DEFAULT;
ALTER TABLE "public"."Task" ALTER COLUMN "mood" TYPE "public"."Mood_new" USING ("mood"::text::"public"."Mood_new");
ALTER TYPE "public"."Mood" RENAME TO "Mood_old";
ALTER TYPE "public"."Mood_new" RENAME TO "Mood";
DROP TYPE "public"."Mood_old";
ALTER TABLE "public"."Task" ALTER COLUMN "mood" SET DEFAULT 'calm';
COMMIT;
"""


def test_prismas_begin_and_commit_are_removed_and_what_breaks_one_transaction_refused() -> None:
    out = transactional(ENUM_DOWN + 'DO $$ BEGIN\n  PERFORM 1; END $$;\n')
    assert "BEGIN;" not in out.replace("DO $$ BEGIN", "") and "COMMIT" not in out
    assert 'CREATE TYPE "public"."Mood_new"' in out and "DO $$ BEGIN\n  PERFORM 1; END $$" in out
    for sql in ("ROLLBACK;", "SAVEPOINT s;", 'CREATE INDEX CONCURRENTLY "i" ON "T"("a");', "VACUUM;"):
        with pytest.raises(NotTransactional, match="line 1"):
            transactional(sql)


def test_an_enum_recreation_converts_no_value_it_is_a_precondition() -> None:
    assert destroyed_by(ENUM_DOWN) == ([], [])
    [p] = needs(ENUM_DOWN)
    assert (p.kind, p.table, p.columns, p.values) == ("enum", "Task", ("mood",), ("calm", "busy"))
    assert p.label == "every public.Task.mood value is one of 'calm', 'busy' (enum Mood_new recreated)"


def test_preconditions_per_inverse_statement_kind() -> None:
    down = ('CREATE UNIQUE INDEX "Task_title_key" ON "public"."Task"("title" ASC);\n'
            'ALTER TABLE "public"."Task" ALTER COLUMN "note" SET NOT NULL;\n'
            'ALTER TABLE "public"."Task" ADD COLUMN "owner" TEXT NOT NULL;\n'
            'ALTER TABLE "public"."Task" ADD CONSTRAINT "Task_userId_fkey" FOREIGN KEY ("userId") '
            'REFERENCES "public"."User"("id") ON DELETE RESTRICT ON UPDATE CASCADE;\n'
            'CREATE TABLE "public"."New" ("id" INT);\nCREATE UNIQUE INDEX "New_id_key" ON "public"."New"("id");\n'
            'ALTER TABLE "public"."Task" ADD COLUMN "extra" TEXT;\n')
    assert [(p.kind, p.columns) for p in needs(down)] == [
        ("unique", ("title",)), ("not_null", ("note",)), ("empty", ()), ("foreign_key", ("userId",))]
    assert needs(down)[3].label == "every (userId) of public.Task exists in User (foreign key Task_userId_fkey)"


async def test_judge_keeps_the_inverse_of_an_fk_swap_and_an_added_enum_value_and_names_preconditions() -> None:
    from providers.migrators.prisma.inverse import judge

    async def rows(sql: str | None) -> dict[str, int]:
        return {"public.Task.mood": 5}  # what a naive footprint of the enum conversion would count

    forward = [(M, "ALTER TYPE \"Mood\" ADD VALUE 'urgent';\n"),
               ("20250302000000_fk", 'ALTER TABLE "Task" DROP CONSTRAINT "Task_userId_fkey";\n')]
    steps = {M: ENUM_DOWN, "20250302000000_fk": 'ALTER TABLE "public"."Task" ADD CONSTRAINT "Task_userId_fkey" '
             'FOREIGN KEY ("userId") REFERENCES "public"."User"("id");\n'}
    verdict = await judge(forward, findings(forward), steps, rows)
    assert not verdict.loses_data and verdict.steps == steps
    assert verdict.preconditions == [
        "every (userId) of public.Task exists in User (foreign key Task_userId_fkey)",
        "every public.Task.mood value is one of 'calm', 'busy' (enum Mood_new recreated)"]
    assert "it depends on: every (userId)" in verdict.findings[-1].message
    assert verdict.findings[-1].detail["preconditions"] == verdict.preconditions
    # an inverse that cannot run in one transaction is no inverse
    verdict = await judge(forward[:1], findings(forward[:1]), {M: 'DROP INDEX CONCURRENTLY "i";\n'}, rows)
    assert verdict.steps == {} and "cannot run in one transaction" in verdict.findings[-1].message


# -- any Prisma project: what the schema asks of the offline toolkit -----------------------------------------

VERCEL_SCHEMA = """generator client {
  provider = "prisma-client-js"
}

datasource db {
  provider          = "postgresql"
  url               = env("POSTGRES_PRISMA_URL") // pooled
  directUrl         = env("POSTGRES_URL_NON_POOLING")
  shadowDatabaseUrl = env("SHADOW_URL")
}
"""


def test_the_schema_says_what_to_set(tmp_path: Path) -> None:
    from providers.migrators.prisma import schema_file

    schema = tmp_path / "schema.prisma"
    schema.write_text(VERCEL_SCHEMA)
    assert schema_file.filled_with_database_url(schema) == ["POSTGRES_PRISMA_URL", "POSTGRES_URL_NON_POOLING"]
    got = schema_file.findings(schema, {})
    assert [(f.detail["rule"], f.severity, f.location) for f in got] == [
        ("engine-type", Severity.HIGH, "schema.prisma:1"), ("env", Severity.HIGH, "schema.prisma:5")]
    assert 'engineType = "client"' in got[0].message and "set SHADOW_URL" in got[1].message
    schema.write_text(VERCEL_SCHEMA.replace('"prisma-client-js"', '"prisma-client-js"\n  engineType = "client"'))
    assert schema_file.findings(schema, {"SHADOW_URL": "postgresql://x"}) == []
