"""Reads Prisma's `_prisma_migrations` table with asyncpg: the reliable record of what a database has applied."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import SecretStr

from providers.errors import PermanentError, TransientError

PROVIDER = "prisma"
Connect = Callable[..., Awaitable[Any]]

_QUERY = """
SELECT migration_name, checksum, started_at, finished_at, rolled_back_at, logs
FROM "_prisma_migrations" ORDER BY started_at, migration_name
"""
_EMPTY_SQL = """
SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relname <> '_prisma_migrations'
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%')
   AND NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                   WHERE t.typtype IN ('e', 'd') AND n.nspname NOT IN ('pg_catalog', 'information_schema'))
   AND NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e'))
"""
_TRANSIENT_PG = (
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
)


@dataclass(frozen=True)
class MigrationRow:
    """One row of `_prisma_migrations` (a migration may have several: failed, rolled back, then applied)."""

    name: str
    checksum: str
    started_at: datetime | None
    finished_at: datetime | None
    rolled_back_at: datetime | None
    logs: str | None

    @property
    def applied(self) -> bool:
        return self.finished_at is not None and self.rolled_back_at is None

    @property
    def failed(self) -> bool:
        return self.finished_at is None and self.rolled_back_at is None


class MigrationsTable:
    """The `_prisma_migrations` table of one database; errors become TransientError / PermanentError.

    `connect` is injectable (defaults to `asyncpg.connect`); `scrub` removes secrets from any text raised.
    """

    def __init__(
        self,
        database_url: SecretStr,
        scrub: Callable[[str], str],
        *,
        connect: Connect = asyncpg.connect,
        timeout_s: float = 10.0,
    ) -> None:
        self._url = database_url
        self._scrub = scrub
        self._connect = connect
        self.timeout_s = timeout_s

    @asynccontextmanager
    async def connection(self, resource: str = "database") -> AsyncIterator[Any]:
        """A connection to the database; connection and query errors become TransientError / PermanentError."""
        try:
            conn = await self._connect(self._url.get_secret_value(), timeout=self.timeout_s)
        except (ValueError, asyncpg.ClientConfigurationError):
            # A malformed URL: the parser's message may quote it, so it is not chained.
            raise PermanentError("the database URL is malformed", provider=PROVIDER, resource="database") from None
        except (OSError, TimeoutError, *_TRANSIENT_PG) as exc:
            raise TransientError(self._describe(exc), provider=PROVIDER, resource="database") from exc
        except asyncpg.PostgresError as exc:
            raise PermanentError(self._describe(exc), provider=PROVIDER, resource="database") from exc
        try:
            yield conn
        except (OSError, TimeoutError, *_TRANSIENT_PG) as exc:
            raise TransientError(self._describe(exc), provider=PROVIDER, resource=resource) from exc
        except asyncpg.PostgresError as exc:
            raise PermanentError(self._describe(exc), provider=PROVIDER, resource=resource) from exc
        finally:
            await asyncio.shield(conn.close())

    async def rows(self) -> list[MigrationRow]:
        """Every row, oldest first; [] when the table does not exist yet (nothing ever applied)."""
        async with self.connection("_prisma_migrations") as conn:
            try:
                records = await conn.fetch(_QUERY, timeout=self.timeout_s)
            except asyncpg.UndefinedTableError:
                return []
        return [
            MigrationRow(
                name=r["migration_name"], checksum=r["checksum"], started_at=r["started_at"],
                finished_at=r["finished_at"], rolled_back_at=r["rolled_back_at"], logs=r["logs"],
            )
            for r in records
        ]

    async def database_is_empty(self) -> bool:
        """No table, sequence, view, user type or function outside the system schemas (but this table)."""
        async with self.connection("database contents") as conn:
            return await conn.fetchval(_EMPTY_SQL) is True

    def _describe(self, exc: BaseException) -> str:
        detail = self._scrub(str(exc)) or type(exc).__name__
        return f"cannot read the database ({type(exc).__name__}): {detail}"


def summarize(rows: list[MigrationRow], local: dict[str, set[str]]) -> tuple[list[str], list[str], bool, list[str]]:
    """Compare the table with the checkout's migrations (name -> accepted checksums, in apply order).

    Returns (applied, failed, drift, notes): applied and failed in the checkout's order; drift when an applied
    migration's migration.sql changed since it was applied. Applied migrations the checkout lacks are only noted:
    after a code-only rollback the database is legitimately ahead of the previous release's checkout.
    """
    applied_rows = {r.name: r for r in rows if r.applied}
    failed_names = {r.name for r in rows if r.failed} - set(applied_rows)
    applied = [n for n in local if n in applied_rows]
    failed = [n for n in local if n in failed_names] + sorted(failed_names - set(local))
    notes: list[str] = []
    unknown = sorted(set(applied_rows) - set(local))
    if unknown:
        notes.append(f"applied in the database but not in the checkout: {', '.join(unknown)}")
    changed = [n for n in applied if applied_rows[n].checksum not in local[n]]
    if changed:
        notes.append(f"modified after they were applied: {', '.join(changed)}")
    if failed:
        notes.append(f"failed: {', '.join(failed)} (fix it in a new commit, then mark the failed attempt rolled back)")
    return applied, failed, bool(changed), notes
