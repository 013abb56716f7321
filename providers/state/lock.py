"""The fenced environment lease in the ledger's PostgreSQL: one row per environment, a token per acquisition."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from pydantic import BaseModel, SecretStr

from providers.errors import PermanentError, TransientError
from providers.state.schema import ENV_LOCKS_TABLE
from providers.state.store import NO_SLOT, OUTAGE, create_pool, with_slot

SCHEMA = ENV_LOCKS_TABLE  # step 4 of the versioned schema, also created here (idempotent) before a lock

_SCHEMA_LOCK = 727273  # advisory lock key while creating the table (the ledger uses 727272)

_COLUMNS = "env, token, flow_run_id, holder, host, pid, pid_start, acquired_at, renewed_at, expires_at"
_FREE = "flow_run_id=NULL, holder='', host='', pid=NULL, pid_start='', expires_at=now()"


def host_id() -> str:
    """This machine: host name and boot id (a pid means something only on the same host since the same boot)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def process_start(pid: int) -> str:
    """The start time of process `pid` in clock ticks since boot ('' when there is no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the name before ')' may hold spaces


@dataclass(frozen=True)
class Owner:
    """Who takes the lock: the flow run, what it is (a deploy, a database restore) and its process."""

    flow_run_id: str
    holder: str
    host: str
    pid: int
    pid_start: str

    @classmethod
    def this_process(cls, flow_run_id: str, holder: str) -> Owner:
        pid = os.getpid()
        return cls(flow_run_id, holder, host_id(), pid, process_start(pid))


class LeaseRow(BaseModel):
    """An environment's lease as stored; `expired` is computed by the database clock."""

    env: str
    token: int
    flow_run_id: str | None
    holder: str
    host: str
    pid: int | None
    pid_start: str
    acquired_at: datetime | None
    renewed_at: datetime | None
    expires_at: datetime | None
    expired: bool
    seconds_left: float

    @property
    def held(self) -> bool:
        return self.flow_run_id is not None

    def process_gone(self) -> bool:
        """True only when the holder ran on this host (same boot) and its process no longer exists."""
        if not self.held or self.pid is None or self.host != host_id():
            return False
        return process_start(self.pid) != self.pid_start

    def dead(self) -> bool:
        """The holder cannot be acting any more: its lease expired, or its process here is gone."""
        return self.held and (self.expired or self.process_gone())


class LockTable:
    """Lease rows of every environment. Each change is one statement conditioned on the token it saw."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: SecretStr, *, setup: bool = True, size: int = 3) -> LockTable:
        """A small pool on the ledger database (which must exist); with `setup`, creates the lease table if missing."""
        try:
            pool = await with_slot(lambda: create_pool(url.get_secret_value(), min_size=1, max_size=size))
        except (*OUTAGE, *NO_SLOT) as exc:
            raise TransientError(f"cannot reach the ledger database ({type(exc).__name__})",
                                 provider="ledger") from None
        except asyncpg.PostgresError as exc:
            raise PermanentError(f"ledger database refused: {type(exc).__name__}", provider="ledger") from None
        assert pool is not None
        if not setup:
            return cls(pool)
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", _SCHEMA_LOCK)
            try:
                await conn.execute(SCHEMA)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _SCHEMA_LOCK)
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def read(self, env: str) -> LeaseRow | None:
        """The environment's lease row (None when no run ever locked it)."""
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS}, coalesce(expires_at < now(), true) AS expired, "  # noqa: S608 - fixed fragments
            "coalesce(extract(epoch FROM expires_at - now()), 0)::float8 AS seconds_left "
            "FROM aevon_env_locks WHERE env=$1", env)
        return LeaseRow(**dict(row)) if row else None

    async def try_acquire(self, env: str, owner: Owner, lease_s: float, seen: LeaseRow | None) -> int | None:
        """Take the lease when it is still as `seen` and free or dead; returns the new fencing token, else None.

        One statement: the row changes only if its token is the one seen, so two runs that both saw a free (or
        dead) lease cannot both take it, and a lease retaken in between is never stolen.
        """
        seen_token = seen.token if seen else 0
        dead = bool(seen and seen.process_gone())
        token = await self._pool.fetchval(
            "INSERT INTO aevon_env_locks AS l (env, token, flow_run_id, holder, host, pid, pid_start, acquired_at, "
            "renewed_at, expires_at) VALUES ($1, 1, $2, $3, $4, $5, $6, now(), now(), now() + make_interval("
            "secs => $7)) ON CONFLICT (env) DO UPDATE SET token = l.token + 1, flow_run_id = EXCLUDED.flow_run_id, "
            "holder = EXCLUDED.holder, host = EXCLUDED.host, pid = EXCLUDED.pid, pid_start = EXCLUDED.pid_start, "
            "acquired_at = now(), renewed_at = now(), expires_at = EXCLUDED.expires_at "
            "WHERE l.token = $8 AND (l.flow_run_id IS NULL OR l.expires_at < now() OR $9) RETURNING token",
            env, owner.flow_run_id, owner.holder, owner.host, owner.pid, owner.pid_start, float(lease_s),
            seen_token, dead,
        )
        return int(token) if token is not None else None

    async def renew(self, env: str, token: int, lease_s: float) -> bool:
        """Extend the lease of the holder of `token`; False when the token is no longer the environment's."""
        got = await self._pool.fetchval(
            "UPDATE aevon_env_locks SET renewed_at = now(), expires_at = now() + make_interval(secs => $3) "
            "WHERE env=$1 AND token=$2 AND flow_run_id IS NOT NULL RETURNING token",
            env, token, float(lease_s),
        )
        return got is not None

    async def holds(self, env: str, token: int) -> bool:
        """Whether `token` is still the environment's live lease (the check before a fenced side effect)."""
        got = await self._pool.fetchval(
            "SELECT 1 FROM aevon_env_locks WHERE env=$1 AND token=$2 AND flow_run_id IS NOT NULL "
            "AND expires_at >= now()", env, token)
        return got is not None

    async def release(self, env: str, token: int) -> bool:
        """Free the lease held with `token` (False when it was no longer ours: nothing changed)."""
        got = await self._pool.fetchval(
            f"UPDATE aevon_env_locks SET {_FREE} WHERE env=$1 AND token=$2 "  # noqa: S608 - fixed fragments
            "AND flow_run_id IS NOT NULL RETURNING token", env, token)
        return got is not None

    async def force_release(self, env: str, seen_token: int) -> bool:
        """Free the lease as seen and move the token on: its holder, if alive, finds out at its next renewal."""
        got = await self._pool.fetchval(
            f"UPDATE aevon_env_locks SET token = token + 1, {_FREE} "  # noqa: S608 - fixed fragments
            "WHERE env=$1 AND token=$2 AND flow_run_id IS NOT NULL RETURNING token", env, seen_token)
        return got is not None

    async def release_of(self, flow_run_id: str) -> tuple[str, str, str] | None:
        """The ledger's release (id, ref, sha) of a flow run, for the waiting run's log; None when unknown."""
        if await self._pool.fetchval("SELECT to_regclass('aevon_releases')") is None:
            return None
        row = await self._pool.fetchrow(
            "SELECT release_id, ref, sha FROM aevon_releases WHERE flow_run_id=$1 ORDER BY started_at DESC LIMIT 1",
            flow_run_id)
        return (str(row["release_id"]), str(row["ref"]), str(row["sha"])) if row else None
