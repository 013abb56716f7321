"""Lock-safe `prisma migrate deploy`: lock and statement timeouts, bounded retries on a lock timeout, phases."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployments.spec import DatabaseSpec
from providers.migrators.base import MigrationLocked
from providers.migrators.prisma.history import MigrationsTable

log = logging.getLogger(__name__)

PROVIDER = "prisma"
# PostgreSQL's message for SQLSTATE 55P03 (lock_not_available) raised by lock_timeout, and the code itself.
_LOCK_TIMEOUT_RE = re.compile(r"\b55P03\b|canceling statement due to lock timeout|lock_not_available", re.IGNORECASE)
_WATCH_SQL = """
SELECT w.pid AS waiter, b.pid, b.state, b.application_name, b.usename,
       left(b.query, 300) AS query, extract(epoch FROM now() - b.xact_start) AS xact_age_s,
       b.wait_event_type
FROM pg_stat_activity w
JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocker(pid) ON true
JOIN pg_stat_activity b ON b.pid = blocker.pid
WHERE w.application_name = $1
"""
_ROLLED_BACK_SQL = """
UPDATE "_prisma_migrations" SET rolled_back_at = now()
WHERE migration_name = $1 AND finished_at IS NULL AND rolled_back_at IS NULL
"""


@dataclass(frozen=True)
class Blocker:
    """A session that held a lock a migration waited for (pg_blocking_pids), as pg_stat_activity showed it."""

    pid: int
    state: str
    application_name: str
    user: str
    query: str
    xact_age_s: float

    def describe(self) -> str:
        app = f" ({self.application_name})" if self.application_name else ""
        return (f"pid {self.pid}{app}, user {self.user}, {self.state}, transaction open {self.xact_age_s:.0f}s, "
                f"last query: {self.query!r}")


@dataclass
class LockWatch:
    """Polls pg_stat_activity while a migration runs: who blocks the backends named `app_name`."""

    app_name: str
    seen: list[Blocker] = field(default_factory=list)


def pg_options(spec: DatabaseSpec) -> str:
    """The PGOPTIONS value for Prisma's connections (node-postgres sends it as the startup `options`): every
    migration statement, Prisma's own included, runs under these timeouts."""
    opts = []
    if spec.lock_timeout_ms is not None:
        opts.append(f"-c lock_timeout={int(spec.lock_timeout_ms)}")
    if spec.statement_timeout_ms is not None:
        opts.append(f"-c statement_timeout={int(spec.statement_timeout_ms)}")
    return " ".join(opts)


def is_lock_timeout(output: str) -> bool:
    """True when Prisma's output carries PostgreSQL's lock-timeout error (SQLSTATE 55P03)."""
    return _LOCK_TIMEOUT_RE.search(output) is not None


def new_app_name() -> str:
    """A per-attempt application_name (PGAPPNAME) that tells our Prisma backends apart from everyone else's."""
    return f"aevon-migrate-{secrets.token_hex(4)}"


@asynccontextmanager
async def watching(table: MigrationsTable, app_name: str, interval_s: float = 0.1) -> AsyncIterator[LockWatch]:
    """While the body runs, record the sessions blocking backends named `app_name` (best effort: never raises)."""
    watch = LockWatch(app_name)

    async def poll() -> None:
        try:
            async with table.connection("lock watch") as conn:
                while True:
                    for r in await conn.fetch(_WATCH_SQL, app_name):
                        b = Blocker(pid=r["pid"], state=r["state"] or "?", application_name=r["application_name"] or "",
                                    user=r["usename"] or "?", query=" ".join((r["query"] or "").split()),
                                    xact_age_s=float(r["xact_age_s"] or 0))
                        if all(s.pid != b.pid for s in watch.seen):
                            watch.seen.append(b)
                    await asyncio.sleep(interval_s)
        except Exception as exc:  # the watch only explains a failure; it must never cause one
            log.info("lock watch stopped: %s", type(exc).__name__)

    task = asyncio.create_task(poll())
    try:
        yield watch
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def forget_failed(table: MigrationsTable, names: list[str]) -> list[str]:
    """Mark the failed attempts of `names` rolled back (what `prisma migrate resolve --rolled-back` does): the
    script ran in one transaction that was rolled back, so nothing of it is applied and it is pending again."""
    done = []
    async with table.connection("resolve rolled back") as conn:
        for name in names:
            if (await conn.execute(_ROLLED_BACK_SQL, name)).endswith(" 1"):
                done.append(name)
    return done


def subset_dir(migrations: Path, keep: list[str], work: Path) -> Path:
    """A copy of the migrations folder holding only `keep` (and migration_lock.toml): `migrate deploy` on it applies
    the expand phase and leaves the contract migrations pending."""
    dest = work / f"phase-{secrets.token_hex(4)}" / "migrations"
    dest.mkdir(parents=True)
    lock = migrations / "migration_lock.toml"
    if lock.is_file():
        shutil.copy2(lock, dest / lock.name)
    for name in keep:
        shutil.copytree(migrations / name, dest / name)
    return dest


Deploy = Callable[[str], Awaitable[Any]]  # app_name -> the CLI result (returncode, output)


async def deploy_with_retries(
    spec: DatabaseSpec, table: MigrationsTable, run: Deploy, applied_now: Callable[[], Awaitable[set[str]]],
    *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[Any, list[Blocker], int]:
    """Run `migrate deploy` (via `run`); on a lock timeout forget the failed attempt and retry after a backoff that
    doubles, at most `spec.lock_retries` times. Returns (last CLI result, blockers seen, attempts).

    Raises MigrationLocked after the last attempt, naming the migration, the timeout and the blocking sessions.
    """
    before = await applied_now()
    failed_before = {r.name for r in await table.rows() if r.failed}
    blockers: list[Blocker] = []
    attempt = 0
    while True:
        attempt += 1
        app = new_app_name()
        async with watching(table, app) as watch:
            cli = await run(app)
        blockers += [b for b in watch.seen if all(b.pid != s.pid for s in blockers)]
        if cli.returncode == 0 or not is_lock_timeout(cli.output):
            return cli, blockers, attempt
        failed = [r.name for r in await table.rows() if r.failed and r.name not in failed_before]
        forgotten = await forget_failed(table, failed)
        applied = sorted(await applied_now() - before)
        if attempt > spec.lock_retries:
            who = "; ".join(b.describe() for b in blockers) or "not seen (the lock was released before we looked)"
            raise MigrationLocked(
                f"{', '.join(forgotten) or 'a migration'} waited longer than lock_timeout "
                f"{spec.lock_timeout_ms} ms for a lock on {attempt} attempt(s) and was not applied (each attempt ran "
                f"in one transaction, rolled back; it is pending again). Blocking session: {who}. End that "
                "transaction or deploy when it is over"
                + (f"; applied before it: {', '.join(applied)}" if applied else ""),
                provider=PROVIDER, resource="migrate deploy", applied=applied,
                blockers=[b.describe() for b in blockers],
            )
        wait = spec.lock_retry_backoff_s * (2 ** (attempt - 1))
        log.warning("migration %s hit lock_timeout (attempt %d); retrying in %.1fs", forgotten, attempt, wait)
        await sleep(wait)
