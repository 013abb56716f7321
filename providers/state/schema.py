"""Our own tables in the state database, versioned: a row per applied step in `aevon_schema_version`, steps in order."""

from __future__ import annotations

from typing import Any, NamedTuple

from providers.errors import PermanentError

# The fenced environment lease (providers/state/lock.py creates it too, for a lock taken before any store opened).
ENV_LOCKS_TABLE = """
CREATE TABLE IF NOT EXISTS aevon_env_locks (
    env          text PRIMARY KEY,
    token        bigint NOT NULL,
    flow_run_id  text,
    holder       text NOT NULL DEFAULT '',
    host         text NOT NULL DEFAULT '',
    pid          integer,
    pid_start    text NOT NULL DEFAULT '',
    acquired_at  timestamptz,
    renewed_at   timestamptz,
    expires_at   timestamptz
);
"""

ADVISORY_LOCK = 727272  # held while the schema is read or upgraded: two runs starting at once upgrade it once


class Step(NamedTuple):
    """One upgrade: applied once, in order, in one transaction with its version row."""

    version: int
    description: str
    sql: str


# Step 1 is the schema of main at a30e2d6 exactly (the ledger's and the backup catalog's CREATE statements), so a
# database created before versioning upgrades from version 0 through it without a change.
STEPS: tuple[Step, ...] = (
    Step(1, "release ledger, rollback journal, backup catalog", """
CREATE TABLE IF NOT EXISTS aevon_releases (
    release_id   text PRIMARY KEY,
    env          text NOT NULL,
    ref          text NOT NULL,
    sha          text NOT NULL,
    status       text NOT NULL,
    flow_run_id  text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    approver     text,
    approval_reason text,
    report       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS aevon_releases_env_started ON aevon_releases (env, started_at DESC);
CREATE TABLE IF NOT EXISTS aevon_journal (
    id           bigserial PRIMARY KEY,
    release_id   text NOT NULL REFERENCES aevon_releases(release_id),
    step         text NOT NULL,
    target       text NOT NULL,
    state        text NOT NULL,
    undo         jsonb NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (release_id, step, target)
);
CREATE TABLE IF NOT EXISTS aevon_backups (
    backup_id    text PRIMARY KEY,
    env          text NOT NULL,
    release_id   text,
    record       jsonb NOT NULL,
    verified     boolean NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    restored_at  timestamptz
);
CREATE INDEX IF NOT EXISTS aevon_backups_env_created ON aevon_backups (env, created_at DESC);
"""),
    # recorded_at was overwritten by every state change: it now stays the time the intent was recorded, and
    # updated_at says when the entry last changed state (rows from before keep NULL).
    Step(2, "journal: when an entry last changed state", """
ALTER TABLE aevon_journal ADD COLUMN updated_at timestamptz;
"""),
    # Steps 3 and 4: what main added before versioning (signed approvals, 702fc02; the fenced environment lock,
    # e54a491), with IF NOT EXISTS because databases of that main have them already.
    Step(3, "ledger: fingerprint of the SSH key that signed the approval", """
ALTER TABLE aevon_releases ADD COLUMN IF NOT EXISTS approval_key text;
"""),
    Step(4, "environment locks: a fenced lease per environment", ENV_LOCKS_TABLE),
    # Issue 17: the migration plan's down scripts, keyed by the checksums of the history they span, shared by every
    # worker and environment on this ledger (a pod's state dir starts empty; prod reuses what staging computed).
    Step(5, "inverse cache: down scripts by migration-history checksum, shared by workers", """
CREATE TABLE IF NOT EXISTS aevon_inverse_cache (
    key          text PRIMARY KEY,
    script       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
"""),
)
LATEST = STEPS[-1].version

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS aevon_schema_version (
    version      integer PRIMARY KEY,
    description  text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now()
);
"""


class SchemaTooNew(PermanentError):
    """The state database was upgraded by a newer aevon-deploy than this one."""


async def current_version(conn: Any) -> int:
    """The highest applied step; 0 for an empty database or one created before versioning."""
    if await conn.fetchval("SELECT to_regclass('aevon_schema_version') IS NOT NULL") is not True:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM aevon_schema_version"))


async def upgrade(conn: Any, steps: tuple[Step, ...] = STEPS) -> list[int]:
    """Apply the steps the database lacks, in order, each in a transaction with its version row; returns them.

    Refuses (SchemaTooNew, nothing changed) a database at a version newer than the last step known here.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK)
    try:
        found = await current_version(conn)
        known = steps[-1].version if steps else 0
        if found > known:
            raise SchemaTooNew(
                f"the state database is at schema version {found}, this aevon-deploy knows versions up to {known}: "
                "run a release of aevon-deploy at least as new as the one that upgraded it", provider="ledger",
            )
        done: list[int] = []
        for step in (s for s in steps if s.version > found):
            async with conn.transaction():
                await conn.execute(_VERSION_TABLE)
                await conn.execute(step.sql)
                await conn.execute("INSERT INTO aevon_schema_version (version, description) VALUES ($1, $2)",
                                   step.version, step.description)
            done.append(step.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK)
