"""Backup records (`aevon_backups`, beside the release ledger) and the migrations that rollbacks kept applied."""

from __future__ import annotations

import json
import secrets

from providers.migrators.backup import BackupRecord
from providers.models import utcnow
from providers.state.connect import Connect
from providers.state.journal import JournalStep


def new_backup_id(env: str) -> str:
    """`<env>-<UTC time>-<random>`: sortable, unique, safe as a file name."""
    return f"{env}-{utcnow():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class BackupCatalog:
    """Backup records in the state database (`aevon_backups`; release_id names the run that took it, no foreign
    key); connections from the run's StateStore."""

    def __init__(self, connect: Connect) -> None:
        self._conn = connect

    async def record(self, rec: BackupRecord) -> None:
        """Insert or update one backup record (idempotent per backup id)."""
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO aevon_backups (backup_id, env, release_id, record, verified, created_at) "
                "VALUES ($1, $2, $3, $4::jsonb, $5, $6) ON CONFLICT (backup_id) DO UPDATE SET "
                "record = EXCLUDED.record, verified = EXCLUDED.verified",
                rec.backup_id, rec.env, rec.release_id, rec.model_dump_json(), rec.verified, rec.created_at,
            )

    async def get(self, env: str, backup_id: str) -> BackupRecord | None:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT record, restored_at FROM aevon_backups WHERE env = $1 AND backup_id = $2",
                                      env, backup_id)
        if row is None:
            return None
        return BackupRecord(**{**json.loads(row["record"]), "restored_at": row["restored_at"]})

    async def latest(self, env: str, limit: int = 20) -> list[BackupRecord]:
        """The latest backups of `env`, newest first."""
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT record, restored_at FROM aevon_backups WHERE env = $1 "
                                    "ORDER BY created_at DESC LIMIT $2", env, limit)
        return [BackupRecord(**{**json.loads(r["record"]), "restored_at": r["restored_at"]}) for r in rows]

    async def mark_restored(self, backup_id: str) -> None:
        async with self._conn() as conn:
            await conn.execute("UPDATE aevon_backups SET restored_at = now() WHERE backup_id = $1", backup_id)

    async def kept_migrations(self, env: str) -> dict[str, str]:
        """Migrations a code-only rollback of `env` left applied -> the release that applied them.

        Read from the rollback journal (entries of step `migration` whose detail has `kept`); {} before any run.
        """
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT j.release_id, j.detail -> 'kept' AS kept FROM aevon_journal j "
                "JOIN aevon_releases r ON r.release_id = j.release_id "
                "WHERE r.env = $1 AND j.step = $2 AND j.detail ? 'kept' ORDER BY j.id", env,
                JournalStep.MIGRATION.value,
            )
        out: dict[str, str] = {}
        for r in rows:
            for name in json.loads(r["kept"]) or []:
                out[str(name)] = r["release_id"]
        return out
