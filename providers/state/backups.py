"""Backup records (`aevon_backups`, beside the release ledger) and the migrations that rollbacks kept applied."""

from __future__ import annotations

import json
import secrets
from typing import Any

import asyncpg
from pydantic import SecretStr

from providers.errors import PermanentError, TransientError
from providers.migrators.backup import BackupRecord
from providers.models import utcnow

# In the ledger database (AEVON_STATE_DB_URL). release_id names the aevon_releases row of the run that took it;
# no foreign key, so that this table does not depend on the ledger's creation order.
SCHEMA = """
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
"""


def new_backup_id(env: str) -> str:
    """`<env>-<UTC time>-<random>`: sortable, unique, safe as a file name."""
    return f"{env}-{utcnow():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class BackupCatalog:
    """Short-lived connections to the ledger database; the table is created on first use."""

    def __init__(self, url: SecretStr) -> None:
        self._url = url

    async def _conn(self) -> Any:
        try:
            conn = await asyncpg.connect(self._url.get_secret_value(), timeout=10)
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
            raise TransientError(f"cannot reach the ledger database ({type(exc).__name__})",
                                 provider="ledger") from None
        except asyncpg.PostgresError as exc:
            raise PermanentError(f"ledger database refused: {type(exc).__name__}", provider="ledger") from None
        await conn.execute(SCHEMA)
        return conn

    async def record(self, rec: BackupRecord) -> None:
        """Insert or update one backup record (idempotent per backup id)."""
        conn = await self._conn()
        try:
            await conn.execute(
                "INSERT INTO aevon_backups (backup_id, env, release_id, record, verified, created_at) "
                "VALUES ($1, $2, $3, $4::jsonb, $5, $6) ON CONFLICT (backup_id) DO UPDATE SET "
                "record = EXCLUDED.record, verified = EXCLUDED.verified",
                rec.backup_id, rec.env, rec.release_id, rec.model_dump_json(), rec.verified, rec.created_at,
            )
        finally:
            await conn.close()

    async def get(self, env: str, backup_id: str) -> BackupRecord | None:
        conn = await self._conn()
        try:
            row = await conn.fetchrow("SELECT record, restored_at FROM aevon_backups WHERE env = $1 AND backup_id = $2",
                                      env, backup_id)
        finally:
            await conn.close()
        if row is None:
            return None
        return BackupRecord(**{**json.loads(row["record"]), "restored_at": row["restored_at"]})

    async def latest(self, env: str, limit: int = 20) -> list[BackupRecord]:
        """The latest backups of `env`, newest first."""
        conn = await self._conn()
        try:
            rows = await conn.fetch("SELECT record, restored_at FROM aevon_backups WHERE env = $1 "
                                    "ORDER BY created_at DESC LIMIT $2", env, limit)
        finally:
            await conn.close()
        return [BackupRecord(**{**json.loads(r["record"]), "restored_at": r["restored_at"]}) for r in rows]

    async def mark_restored(self, backup_id: str) -> None:
        conn = await self._conn()
        try:
            await conn.execute("UPDATE aevon_backups SET restored_at = now() WHERE backup_id = $1", backup_id)
        finally:
            await conn.close()

    async def kept_migrations(self, env: str) -> dict[str, str]:
        """Migrations a code-only rollback of `env` left applied -> the release that applied them.

        Read from the rollback journal (entries of step `migration` whose detail has `kept`); {} before any run.
        """
        conn = await self._conn()
        try:
            if await conn.fetchval("SELECT to_regclass('aevon_journal') IS NOT NULL") is not True:
                return {}
            rows = await conn.fetch(
                "SELECT j.release_id, j.detail -> 'kept' AS kept FROM aevon_journal j "
                "JOIN aevon_releases r ON r.release_id = j.release_id "
                "WHERE r.env = $1 AND j.step = 'migration' AND j.detail ? 'kept' ORDER BY j.id", env,
            )
        finally:
            await conn.close()
        out: dict[str, str] = {}
        for r in rows:
            for name in json.loads(r["kept"]) or []:
                out[str(name)] = r["release_id"]
        return out
