"""The state database of one run: one connection pool, one schema setup; the ledger, backups and inverse cache."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pydantic import SecretStr

from providers.clients.retry import DATABASE_BUDGET
from providers.errors import ConfigError, PermanentError, TransientError
from providers.state.backups import BackupCatalog
from providers.state.inverse_cache import LedgerInverseCache
from providers.state.ledger import Ledger
from providers.state.schema import upgrade

T = TypeVar("T")
POOL_SIZE = 4  # connections of one run: its ledger writes queue on them (20 runs x 10 exhausted max_connections)
SLOT_WAIT_S = 60.0  # how long a run waits for a free connection slot on the ledger's server before it gives up
NO_SLOT = (asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError)  # 53300, 57P03: wait and try again
OUTAGE = (OSError, TimeoutError, asyncpg.ConnectionDoesNotExistError)  # unreachable: DATABASE_BUDGET's tries (issue 18)


async def with_slot(make: Callable[[], Awaitable[T]], wait_s: float = SLOT_WAIT_S) -> T:
    """`make()` (a connect or a pool acquire), again with backoff while the server has no free connection slot.

    Many runs at once (several workers, one ledger) can use every slot of the server's `max_connections` for a
    moment: a run then waits for one to free up instead of failing its deploy or its rollback. After `wait_s`
    it raises TransientError naming the cause. A server unreachable (the ledger down for a few seconds) is tried
    again DATABASE_BUDGET's way (4 tries, about 1, 2, 4 s apart), then its error is raised."""
    deadline, delay, outage = time.monotonic() + wait_s, 0.05, 0
    while True:
        try:
            return await make()
        except NO_SLOT as exc:
            if time.monotonic() + delay > deadline:
                raise _connect_error(exc) from None
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)
        except OUTAGE:  # the server unreachable for a few seconds: ride it out within the database budget
            if outage >= DATABASE_BUDGET.attempts - 1:
                raise
            await asyncio.sleep(DATABASE_BUDGET.wait(outage))
            outage += 1


def unparsable_url() -> ConfigError:
    """The ledger URL did not parse: named, never quoted."""
    return ConfigError("the ledger database URL cannot be parsed (percent-encode a '/', '@', ':' or '#' in its user "
                       "or password)", "AEVON_STATE_DB_URL")


async def create_pool(url: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    """asyncpg.create_pool; a URL the driver cannot parse is `unparsable_url()`, with no trace of the driver's text
    (it quotes a piece of the URL, a password say)."""
    try:
        return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
    except ValueError:  # raised below, outside the handler: no __context__ holding the driver's text
        pass
    raise unparsable_url()


def _connect_error(exc: BaseException) -> TransientError:
    return TransientError(f"cannot reach the ledger database ({type(exc).__name__})", provider="ledger")


def _admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres")), parts.path.lstrip("/")


class StateStore:
    """Opened on first use (or by `open()`): creates the database when missing and upgrades its schema once.

    Building one has no side effect, so a run builds it with its runtime and a broken spec still fails first.
    """

    def __init__(self, url: SecretStr, *, create: bool = True, max_size: int = POOL_SIZE) -> None:
        self._url = url
        self._create = create
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self.ledger = Ledger(self.connection)
        self.backups = BackupCatalog(self.connection)
        self.inverse_cache = LedgerInverseCache(self.connection)

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
                return await with_slot(lambda: create_pool(raw, min_size=1, max_size=self._max_size))
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
                return await with_slot(lambda: create_pool(raw, min_size=1, max_size=self._max_size))
        except (*OUTAGE, *NO_SLOT) as exc:
            raise _connect_error(exc) from None
        except asyncpg.PostgresError as exc:
            raise PermanentError(f"ledger database refused: {type(exc).__name__}", provider="ledger") from None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the run's pool (opening it on first use; waiting while the server has no free slot)."""
        await self.open()
        pool = self._pool
        assert pool is not None
        try:
            conn = await with_slot(lambda: pool.acquire())
        except (*OUTAGE, *NO_SLOT) as exc:  # still unreachable after the budget: named, not "unexpected"
            raise _connect_error(exc) from None
        try:
            yield conn
        except (OSError, asyncpg.ConnectionDoesNotExistError) as exc:  # lost mid-statement: transient too
            raise _connect_error(exc) from None
        finally:
            await pool.release(conn)

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
