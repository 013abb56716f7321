"""The state database of one run: one connection pool, one schema setup, giving the ledger and the backup catalog."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pydantic import SecretStr

from providers.errors import PermanentError, TransientError
from providers.state.backups import BackupCatalog
from providers.state.ledger import Ledger
from providers.state.schema import upgrade


def _connect_error(exc: BaseException) -> TransientError:
    return TransientError(f"cannot reach the ledger database ({type(exc).__name__})", provider="ledger")


def _admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres")), parts.path.lstrip("/")


class StateStore:
    """Opened on first use (or by `open()`): creates the database when missing and upgrades its schema once.

    Building one has no side effect, so a run builds it with its runtime and a broken spec still fails first.
    """

    def __init__(self, url: SecretStr, *, create: bool = True, max_size: int = 10) -> None:
        self._url = url
        self._create = create
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self.ledger = Ledger(self)
        self.backups = BackupCatalog(self)

    async def open(self) -> StateStore:
        """Open the pool and bring the schema up to date (idempotent)."""
        async with self._opening:
            if self._pool is None:
                pool = await self._create_pool()
                try:
                    async with pool.acquire() as conn:
                        await upgrade(conn)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        return self

    async def _create_pool(self) -> asyncpg.Pool:
        raw = self._url.get_secret_value()
        try:
            try:
                return await asyncpg.create_pool(raw, min_size=1, max_size=self._max_size)
            except asyncpg.InvalidCatalogNameError:
                if not self._create:
                    raise
                admin, name = _admin_url(raw)
                conn = await asyncpg.connect(admin)
                try:
                    await conn.execute(f'CREATE DATABASE "{name}"')
                except asyncpg.DuplicateDatabaseError:
                    pass
                finally:
                    await conn.close()
                return await asyncpg.create_pool(raw, min_size=1, max_size=self._max_size)
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
            raise _connect_error(exc) from None
        except asyncpg.PostgresError as exc:
            raise PermanentError(f"ledger database refused: {type(exc).__name__}", provider="ledger") from None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the run's pool (opening it on first use)."""
        await self.open()
        assert self._pool is not None
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            raise _connect_error(exc) from None

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def __aenter__(self) -> StateStore:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
