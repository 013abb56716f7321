"""The release ledger and rollback journal in PostgreSQL: every run, every side effect and how to undo it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pydantic import BaseModel, Field, SecretStr

from providers.errors import PermanentError, TransientError

SCHEMA = """
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
ALTER TABLE aevon_releases ADD COLUMN IF NOT EXISTS approval_key text;
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
"""

# Release statuses: running -> succeeded | rolled_back | rollback_failed | refused | failed | compensated
RUNNING = "running"
FINAL_GOOD = "succeeded"

# Journal entry states: intent (recorded before the side effect) -> done -> undone
INTENT, DONE, UNDONE = "intent", "done", "undone"


class ReleaseRow(BaseModel):
    """One run of one environment as the ledger keeps it."""

    release_id: str
    env: str
    ref: str
    sha: str
    status: str
    flow_run_id: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    approver: str | None = None
    approval_reason: str | None = None
    approval_key: str | None = None  # SHA256 fingerprint of the SSH key that signed the approval
    report: dict[str, Any] = Field(default_factory=dict)


class JournalEntry(BaseModel):
    """One side effect: what was (about to be) done, and what undoes it."""

    id: int
    release_id: str
    step: str  # "service" | "migration"
    target: str  # service name, or the database
    state: str
    undo: dict[str, Any]
    detail: dict[str, Any] = Field(default_factory=dict)


def _connect_error(exc: BaseException) -> TransientError:
    return TransientError(f"cannot reach the ledger database ({type(exc).__name__})", provider="ledger")


def _admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres")), parts.path.lstrip("/")


class Ledger:
    """Durable record of releases and their journal. Writes are single statements (atomic) and idempotent."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: SecretStr, *, create: bool = True) -> Ledger:
        """Open a pool on the ledger database; create the database and tables when missing."""
        raw = url.get_secret_value()
        try:
            try:
                pool = await asyncpg.create_pool(raw, min_size=1, max_size=10)
            except asyncpg.InvalidCatalogNameError:
                if not create:
                    raise
                admin, name = _admin_url(raw)
                conn = await asyncpg.connect(admin)
                try:
                    await conn.execute(f'CREATE DATABASE "{name}"')
                except asyncpg.DuplicateDatabaseError:
                    pass
                finally:
                    await conn.close()
                pool = await asyncpg.create_pool(raw, min_size=1, max_size=10)
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
            raise _connect_error(exc) from None
        except asyncpg.PostgresError as exc:
            raise PermanentError(f"ledger database refused: {type(exc).__name__}", provider="ledger") from None
        assert pool is not None
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(727272)")
            try:
                await conn.execute(SCHEMA)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(727272)")
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            raise _connect_error(exc) from None

    # -- releases ----------------------------------------------------------------------------------------------
    async def start_release(self, release_id: str, env: str, ref: str, sha: str, flow_run_id: str | None) -> None:
        """Record a run as running (idempotent: a retried flow run reuses its row and is running again)."""
        async with self._conn() as c:
            await c.execute(
                "INSERT INTO aevon_releases (release_id, env, ref, sha, status, flow_run_id) "
                "VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (release_id) DO UPDATE SET status=EXCLUDED.status, finished_at=NULL",
                release_id, env, ref, sha, RUNNING, flow_run_id,
            )

    async def finish_release(self, release_id: str, status: str, report: dict[str, Any]) -> None:
        """Record the run's end state and its report."""
        async with self._conn() as c:
            await c.execute(
                "UPDATE aevon_releases SET status=$2, finished_at=now(), report=$3::jsonb WHERE release_id=$1",
                release_id, status, json.dumps(report, default=str),
            )

    async def record_approval(self, release_id: str, approver: str, reason: str, key: str | None = None) -> None:
        async with self._conn() as c:
            await c.execute(
                "UPDATE aevon_releases SET approver=$2, approval_reason=$3, approval_key=$4 WHERE release_id=$1",
                release_id, approver, reason, key,
            )

    async def unfinished(self, env: str) -> list[ReleaseRow]:
        """Runs of `env` that started and never finished (their process died), oldest first."""
        return await self._releases("WHERE env=$1 AND status=$2 ORDER BY started_at", env, RUNNING)

    async def history(self, env: str, limit: int = 20) -> list[ReleaseRow]:
        """The latest runs of `env`, newest first."""
        return await self._releases("WHERE env=$1 ORDER BY started_at DESC LIMIT $2", env, limit)

    async def last_good(self, env: str) -> ReleaseRow | None:
        """The latest release of `env` that passed validation."""
        rows = await self._releases(
            "WHERE env=$1 AND status=$2 ORDER BY finished_at DESC LIMIT 1", env, FINAL_GOOD
        )
        return rows[0] if rows else None

    async def passed(self, env: str, sha: str) -> ReleaseRow | None:
        """The latest good release of `sha` in `env` (promotion rule: prod needs it in staging)."""
        rows = await self._releases(
            "WHERE env=$1 AND sha=$2 AND status=$3 ORDER BY finished_at DESC LIMIT 1", env, sha, FINAL_GOOD
        )
        return rows[0] if rows else None

    async def get(self, release_id: str) -> ReleaseRow | None:
        rows = await self._releases("WHERE release_id=$1", release_id)
        return rows[0] if rows else None

    async def _releases(self, where: str, *args: Any) -> list[ReleaseRow]:
        async with self._conn() as c:
            rows = await c.fetch(f"SELECT * FROM aevon_releases {where}", *args)  # noqa: S608 - fixed fragments
        return [ReleaseRow(**{**dict(r), "report": json.loads(r["report"])}) for r in rows]

    # -- journal -----------------------------------------------------------------------------------------------
    async def record_intent(self, release_id: str, step: str, target: str, undo: dict[str, Any]) -> JournalEntry:
        """Before a side effect: what would undo it. Idempotent per (release, step, target): the first undo wins;
        an entry undone by a compensation is re-opened (the same release is being deployed again)."""
        async with self._conn() as c:
            row = await c.fetchrow(
                "INSERT INTO aevon_journal (release_id, step, target, state, undo) VALUES ($1, $2, $3, $4, $5::jsonb) "
                "ON CONFLICT (release_id, step, target) DO UPDATE SET state = CASE WHEN aevon_journal.state = $6 "
                "THEN $4 ELSE aevon_journal.state END RETURNING *",
                release_id, step, target, INTENT, json.dumps(undo, default=str), UNDONE,
            )
        return _entry(row)

    async def mark(self, entry_id: int, state: str, detail: dict[str, Any] | None = None) -> None:
        """Move a journal entry to `state` (done / undone), merging `detail`."""
        async with self._conn() as c:
            await c.execute(
                "UPDATE aevon_journal SET state=$2, detail = detail || $3::jsonb, recorded_at=now() WHERE id=$1",
                entry_id, state, json.dumps(detail or {}, default=str),
            )

    async def open_entries(self, release_id: str) -> list[JournalEntry]:
        """Entries of a release not yet undone, newest first (the order to undo them in)."""
        async with self._conn() as c:
            rows = await c.fetch(
                "SELECT * FROM aevon_journal WHERE release_id=$1 AND state <> $2 ORDER BY id DESC", release_id, UNDONE
            )
        return [_entry(r) for r in rows]

    async def entries(self, release_id: str) -> list[JournalEntry]:
        async with self._conn() as c:
            rows = await c.fetch("SELECT * FROM aevon_journal WHERE release_id=$1 ORDER BY id", release_id)
        return [_entry(r) for r in rows]


def _entry(row: Any) -> JournalEntry:
    d = dict(row)
    d["undo"] = json.loads(d["undo"])
    d["detail"] = json.loads(d["detail"])
    d.pop("recorded_at", None)
    return JournalEntry(**d)
