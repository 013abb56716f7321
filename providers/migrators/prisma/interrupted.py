"""A `migrate deploy` killed mid-migration: what the schema really holds, told apart from a failed migration."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from providers.migrators.prisma.history import MigrationRow, MigrationsTable
from providers.migrators.prisma.script import NotTransactional, transactional
from providers.models import Finding, Severity

# A statement that cannot run twice failed because its object is already there: the script ran before.
_DUPLICATE = (asyncpg.DuplicateTableError, asyncpg.DuplicateColumnError, asyncpg.DuplicateObjectError,
              asyncpg.DuplicateSchemaError, asyncpg.DuplicateFunctionError)
_LIVE_SQL = "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'aevon-migrate-%' AND pid <> pg_backend_pid()"
_FINISHED_SQL = """
UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1
WHERE migration_name = $1 AND checksum = $2 AND finished_at IS NULL AND rolled_back_at IS NULL AND logs IS NULL
"""
_ROLLED_BACK_SQL = """
UPDATE "_prisma_migrations" SET rolled_back_at = now()
WHERE migration_name = $1 AND checksum = $2 AND finished_at IS NULL AND rolled_back_at IS NULL AND logs IS NULL
"""
_SHADOWS_SQL = r"""
SELECT d.datname FROM pg_database d
WHERE d.datname ~ '^prisma_migrate_shadow_db_[0-9a-f-]{36}$'
  AND d.datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user)
  AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)
"""
RESOLVE_APPLIED = ('UPDATE "_prisma_migrations" SET "finished_at" = now(), "applied_steps_count" = 1 WHERE '
                   '"migration_name" = \'{name}\' AND "finished_at" IS NULL AND "rolled_back_at" IS NULL;')
RESOLVE_ROLLED_BACK = ('UPDATE "_prisma_migrations" SET "rolled_back_at" = now() WHERE "migration_name" = \'{name}\' '
                       'AND "finished_at" IS NULL AND "rolled_back_at" IS NULL;')


class Verdict(enum.StrEnum):
    APPLIED = "applied"  # the schema holds the whole script (it ran in one transaction that committed)
    NOT_APPLIED = "not-applied"  # the script would apply now, and could not twice: none of it ran
    UNKNOWN = "unknown"  # the dry run cannot tell (an idempotent script, another error, a changed file)
    RUNNING = "running"  # a `migrate deploy` of ours still has a session open: it may still commit


@dataclass(frozen=True)
class Interrupted:
    """A `_prisma_migrations` row started, never finished, with no logs (Prisma records logs when it fails)."""

    name: str
    verdict: Verdict
    evidence: str

    def finding(self) -> Finding:
        """What the readiness gate says: true, and never a step that would apply the migration twice."""
        head = (f"migration {self.name} was interrupted (its run was killed inside `migrate deploy`: the row is "
                "started, never finished, and Prisma recorded no error)")
        if self.verdict == Verdict.APPLIED:
            msg = (f"{head}. The schema holds its whole script ({self.evidence}), so it IS applied; never mark it "
                   "rolled back (that would apply it twice). Record it finished, what `prisma migrate resolve "
                   f"--applied` does: {RESOLVE_APPLIED.format(name=self.name)} then deploy again (a deploy "
                   "that compensates the killed run does this itself)")
        elif self.verdict == Verdict.NOT_APPLIED:
            msg = (f"{head}. None of its script is applied ({self.evidence}). Mark the attempt rolled back, what "
                   "`prisma migrate resolve --rolled-back` does (safe: nothing of it is applied): "
                   f"{RESOLVE_ROLLED_BACK.format(name=self.name)} then deploy again: it applies once (a deploy "
                   "that compensates the killed run does this itself)")
        elif self.verdict == Verdict.RUNNING:
            msg = f"{head}. A migrate session of ours is still open ({self.evidence}): wait for it, then look again"
        else:
            msg = (f"{head}. Whether its script is applied cannot be told from the schema ({self.evidence}). Compare "
                   "the schema with the migration (`prisma migrate diff --from-url ... --to-migrations ...`) before "
                   "resolving it, or restore a backup (`aevon-deploy db restore`); marking it rolled back when it "
                   "is applied would apply it twice")
        return Finding(message=msg, severity=Severity.HIGH,
                       location=self.name, detail={"rule": f"interrupted-{self.verdict.value}"})


async def drop_shadow_databases(conn: Any) -> list[str]:
    """Drop Prisma's shadow databases (`prisma_migrate_shadow_db_<uuid>`, @prisma/adapter-pg connectToShadowDb)
    owned by our role that nobody is connected to: a live `migrate diff` (another environment's, on the same
    server) is connected to its own, and DROP DATABASE without FORCE refuses one in use anyway."""
    names = [r["datname"] for r in await conn.fetch(_SHADOWS_SQL)]
    done = []
    for name in names:
        try:
            await conn.execute(f'DROP DATABASE "{name}"')  # a name from pg_database matching the fixed pattern
        except asyncpg.ObjectInUseError:
            continue
        done.append(f"dropped shadow database {name} left by a killed migrate diff")
    return done


def interrupted_rows(rows: list[MigrationRow]) -> list[MigrationRow]:
    """Rows of killed attempts: started, not finished, not rolled back, no logs, and not applied since."""
    applied = {r.name for r in rows if r.applied}
    return [r for r in rows if r.failed and not r.logs and r.name not in applied]


async def live_sessions(conn: Any) -> list[int]:
    """Backends of our `migrate deploy` runs (PGAPPNAME aevon-migrate-*) still connected."""
    return [int(r["pid"]) for r in await conn.fetch(_LIVE_SQL)]


async def judge(table: MigrationsTable, migrations: Path, local: dict[str, set[str]],
                *, wait_s: float = 30.0) -> list[Interrupted]:
    """The verdict on every interrupted row, by a dry run of its script in a transaction that is rolled back.

    The script ran in one implicit transaction (Prisma sends it as one query), so it is applied whole or not at
    all. Dry run: a statement failing with "already exists" proves it applied. A dry run that succeeds proves it
    unapplied only when a second run in the same transaction fails with "already exists" (a script that can run
    twice cannot tell). A killed client's backend may still be running the script: wait up to `wait_s` for it.
    """
    rows = interrupted_rows(await table.rows())
    if not rows:
        return []
    out = []
    async with table.connection("interrupted migrations") as conn:
        for _ in range(int(wait_s * 10)):
            if not await live_sessions(conn):
                break
            await asyncio.sleep(0.1)
        rows = interrupted_rows(await table.rows())  # a backend that finished may have changed nothing here
        live = await live_sessions(conn)
        for row in rows:
            if live:
                out.append(Interrupted(row.name, Verdict.RUNNING, f"backend pid {', '.join(map(str, live))}"))
            else:
                out.append(await _dry_run(conn, row, migrations, local))
    return out


async def _dry_run(conn: Any, row: MigrationRow, migrations: Path, local: dict[str, set[str]]) -> Interrupted:
    path = migrations / row.name / "migration.sql"
    if row.checksum not in local.get(row.name, set()) or not path.is_file():
        return Interrupted(row.name, Verdict.UNKNOWN, "the checkout's migration.sql is not the one that ran")
    try:
        sql = transactional(path.read_text(errors="replace"))
    except NotTransactional as exc:
        return Interrupted(row.name, Verdict.UNKNOWN, f"its script cannot be dry-run in a transaction: {exc}")
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        try:
            await conn.execute(sql)
        except _DUPLICATE as exc:
            return Interrupted(row.name, Verdict.APPLIED, f"a dry run says: {exc}")
        except asyncpg.PostgresError as exc:
            return Interrupted(row.name, Verdict.UNKNOWN, f"a dry run failed otherwise: {exc}")
        try:
            await conn.execute(sql)
        except _DUPLICATE as exc:
            return Interrupted(row.name, Verdict.NOT_APPLIED, f"a dry run applies it, and a second says: {exc}")
        except asyncpg.PostgresError as exc:
            return Interrupted(row.name, Verdict.UNKNOWN, f"a second dry run failed otherwise: {exc}")
        return Interrupted(row.name, Verdict.UNKNOWN, "the script runs twice without error")
    finally:
        await tx.rollback()


async def settle(table: MigrationsTable, found: list[Interrupted], local: dict[str, set[str]]) -> list[str]:
    """Record proven verdicts (applied: finished; not applied: rolled back), as `prisma migrate resolve` would.
    Returns what it recorded, as sentences. Call only while holding the environment's lock."""
    done = []
    async with table.connection("settle interrupted migrations") as conn:
        for it in found:
            sql = {Verdict.APPLIED: _FINISHED_SQL, Verdict.NOT_APPLIED: _ROLLED_BACK_SQL}.get(it.verdict)
            if sql is None:
                continue
            for checksum in sorted(local.get(it.name, set())):
                if (await conn.execute(sql, it.name, checksum)).endswith(" 1"):
                    what = "finished" if it.verdict == Verdict.APPLIED else "rolled back"
                    done.append(f"{it.name}: recorded {what} ({it.evidence})")
    return done
