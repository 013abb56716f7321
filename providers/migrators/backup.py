"""Verified PostgreSQL backups: pg_dump (custom format) at a snapshot, restored into a scratch database and compared."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
from pydantic import BaseModel, Field, SecretStr

from providers.errors import PermanentError, TransientError
from providers.models import utcnow
from providers.process_env import child_env

log = logging.getLogger(__name__)
PROVIDER = "pg_backup"
_TRANSIENT_RE = re.compile(r"could not connect|Connection refused|timeout expired|starting up|shutting down|"
                           r"too many clients|server closed the connection|could not translate host", re.IGNORECASE)
# libpq settings a URL's query may carry, passed on as environment variables (never on a command line).
_LIBPQ_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
              "connect_timeout": "PGCONNECT_TIMEOUT", "application_name": "PGAPPNAME", "options": "PGOPTIONS"}
_TABLES = """
SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' ORDER BY 1, 2
"""


class BackupRecord(BaseModel):
    """One backup: where it is, what it held (tables and rows at its snapshot), and whether it verified."""

    backup_id: str
    env: str
    release_id: str | None = None
    database: str  # host:port/name, no credentials
    path: str
    size_bytes: int = 0
    sha256: str = ""
    tables: dict[str, int] = Field(default_factory=dict)  # "schema.table" -> rows at the snapshot
    migrations: list[str] = Field(default_factory=list)  # Prisma migrations applied at the snapshot
    verified: bool = False
    problems: list[str] = Field(default_factory=list)
    dump_s: float = 0.0
    verify_s: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    restored_at: datetime | None = None

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class PgConn:
    """Connection parameters of a PostgreSQL URL, kept apart so that the password travels only as PGPASSWORD."""

    host: str
    port: int
    user: str
    dbname: str
    password: SecretStr | None = None
    libpq: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url: SecretStr) -> PgConn:
        try:
            parts = urlsplit(url.get_secret_value())
            port = parts.port or 5432
        except ValueError:
            raise PermanentError("the database URL is malformed", provider=PROVIDER) from None
        if parts.scheme not in ("postgres", "postgresql") or not parts.path.strip("/"):
            raise PermanentError("the database URL is not a postgresql://…/<database> URL", provider=PROVIDER)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        host = query.pop("host", None) or parts.hostname or "localhost"
        libpq = {_LIBPQ_ENV[k]: v for k, v in query.items() if k in _LIBPQ_ENV}
        password = SecretStr(unquote(parts.password)) if parts.password else None
        return cls(host, port, unquote(parts.username or "postgres"), unquote(parts.path.lstrip("/")), password, libpq)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"

    def env(self, dbname: str | None = None) -> dict[str, str]:
        """Environment for pg_dump/pg_restore/psql: inherited PG* variables dropped, ours set (password included)."""
        env = child_env()  # inherited PG* variables and the run's vendor tokens are not passed
        env.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user, PGDATABASE=dbname or self.dbname,
                   **self.libpq)
        if self.password is not None:
            env["PGPASSWORD"] = self.password.get_secret_value()
        return env

    def connect_kwargs(self, dbname: str | None = None) -> dict[str, Any]:
        kw: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user,
                              "database": dbname or self.dbname}
        if self.password is not None:
            kw["password"] = self.password.get_secret_value()
        if "PGSSLMODE" in self.libpq:
            kw["ssl"] = self.libpq["PGSSLMODE"]
        return kw


class PgBackup:
    """Takes, verifies and (explicitly) restores custom-format backups of one database.

    Args:
        url: the database URL (secret). Its password reaches the tools as PGPASSWORD only; every text this class
            returns or raises is scrubbed of it.
        pg_dump, pg_restore, psql: the tools (paths or names on PATH; match the server's major version).
        timeout_s: per tool run.
    """

    def __init__(self, url: SecretStr, *, pg_dump: str = "pg_dump", pg_restore: str = "pg_restore",
                 psql: str = "psql", timeout_s: float = 3600.0) -> None:
        self.conn = PgConn.from_url(url)
        self.tools = {"pg_dump": pg_dump, "pg_restore": pg_restore, "psql": psql}
        self.timeout_s = timeout_s
        raw = url.get_secret_value()
        pw = self.conn.password.get_secret_value() if self.conn.password else ""
        self._secrets = sorted({s for s in (raw, pw, urlsplit(raw).password or "") if len(s) >= 3}, key=len,
                               reverse=True)

    def scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    # -- taking and verifying ---------------------------------------------------------------------------------

    async def take(self, backup_id: str, dest_dir: Path, *, env: str, release_id: str | None) -> BackupRecord:
        """Dump, then verify; a dump that cannot be taken raises, a dump that does not verify returns verified=False."""
        await asyncio.to_thread(dest_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
        path = dest_dir / f"{backup_id}.dump"
        record = BackupRecord(backup_id=backup_id, env=env, release_id=release_id, database=self.conn.where,
                              path=str(path))
        t0 = time.monotonic()
        record.tables, record.migrations = await self.dump(path)
        record.dump_s = time.monotonic() - t0
        record.size_bytes, record.sha256 = await asyncio.to_thread(_file_facts, path)
        t1 = time.monotonic()
        record.problems = await self.verify(path, record.tables)
        record.verify_s = time.monotonic() - t1
        record.verified = not record.problems
        log.info("backup %s of %s: %d tables, %d rows, %d bytes, verified=%s (dump %.2fs, verify %.2fs)", backup_id,
                 self.conn.where, len(record.tables), record.rows, record.size_bytes, record.verified,
                 record.dump_s, record.verify_s)
        return record

    async def dump(self, path: Path) -> tuple[dict[str, int], list[str]]:
        """pg_dump --format=custom of the database at one snapshot, and that snapshot's tables and row counts.

        A REPEATABLE READ transaction exports its snapshot; the rows are counted in it and pg_dump reads through it
        (--snapshot), so the counts are exactly the dump's even while the application writes.
        """
        async with self._connection() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
                tables = await _counts(conn)
                migrations = await _applied_migrations(conn)
                await self._run("pg_dump", "--format=custom", "--snapshot", snapshot, "--file", str(path))
        await asyncio.to_thread(path.chmod, 0o600)
        return tables, migrations

    async def verify(self, path: Path, expected: dict[str, int]) -> list[str]:
        """Restore `path` into a scratch database, compare its tables and row counts with `expected`; [] = verified.

        The scratch database is created on the same server (the role needs CREATEDB) and always dropped.
        """
        async with self.scratch_database() as scratch:
            try:
                await self._run("pg_restore", "--exit-on-error", "--single-transaction", "--no-owner",
                                "--no-privileges", "--dbname", scratch, str(path))
            except PermanentError as exc:
                return [f"pg_restore failed: {exc}"]
            async with self._connection(scratch) as conn:
                got = await _counts(conn)
        return compare(expected, got)

    @asynccontextmanager
    async def scratch_database(self) -> AsyncIterator[str]:
        """A throw-away database on the same server (name aevon_verify_<random>), dropped on exit."""
        name = f"aevon_verify_{secrets.token_hex(6)}"
        async with self._connection() as conn:
            try:
                await conn.execute(f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0")
            except asyncpg.InsufficientPrivilegeError:
                raise PermanentError("verifying a backup needs a scratch database: give the role CREATEDB",
                                     provider=PROVIDER, resource=self.conn.where) from None
        try:
            yield name
        finally:
            async with self._connection() as conn:
                await asyncio.shield(conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)"))

    # -- restoring (explicit operator command only) -----------------------------------------------------------

    async def restore(self, record: BackupRecord) -> list[str]:
        """Replace the database's schemas of `record` (and public) with the backup, in one transaction.

        The file's checksum is checked first. psql runs `DROP SCHEMA … CASCADE`, recreates public, then the
        restore script (pg_restore --file=-) with ON_ERROR_STOP in a single transaction: on any error nothing
        changes. Returns the differences between the restored tables/rows and the record ([] = identical).
        """
        path = Path(record.path)
        try:
            _, digest = await asyncio.to_thread(_file_facts, path)
        except FileNotFoundError:
            raise PermanentError(f"backup file of {record.backup_id} is missing", provider=PROVIDER) from None
        if record.sha256 and digest != record.sha256:
            raise PermanentError(f"backup file of {record.backup_id} changed since it was taken (checksum)",
                                 provider=PROVIDER)
        schemas = sorted({k.split(".", 1)[0] for k in record.tables} | {"public"})
        preamble = "SET lock_timeout = '60s';\n" + "".join(
            f"DROP SCHEMA IF EXISTS {quote_ident(s)} CASCADE;\n" for s in schemas
        ) + "CREATE SCHEMA public AUTHORIZATION pg_database_owner;\nGRANT USAGE ON SCHEMA public TO PUBLIC;\n"
        await self._pipe_restore(path, preamble)
        async with self._connection() as conn:
            got = await _counts(conn)
        return compare(record.tables, {k: v for k, v in got.items() if k.split(".", 1)[0] in schemas})

    async def _pipe_restore(self, path: Path, preamble: str) -> None:
        env = self.conn.env()
        restore = await asyncio.create_subprocess_exec(
            self.tools["pg_restore"], "--file=-", str(path), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        psql = await asyncio.create_subprocess_exec(
            self.tools["psql"], "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert restore.stdout is not None and psql.stdin is not None

        async def pump() -> None:
            assert restore.stdout is not None and psql.stdin is not None
            try:
                psql.stdin.write(preamble.encode())
                while chunk := await restore.stdout.read(1 << 16):
                    psql.stdin.write(chunk)
                    await psql.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                if restore.returncode is None:  # psql stopped on an error (its stderr says which): stop feeding
                    restore.kill()
            finally:
                psql.stdin.close()

        try:
            _, r_err, p_err = await asyncio.wait_for(asyncio.gather(
                pump(), _read(restore.stderr), _read(psql.stderr)), self.timeout_s)
            await asyncio.wait_for(asyncio.gather(restore.wait(), psql.wait()), self.timeout_s)
        except BaseException:
            for proc in (restore, psql):
                if proc.returncode is None:
                    proc.kill()
            raise
        if restore.returncode != 0 or psql.returncode != 0:
            said = self.scrub((p_err or r_err).decode(errors="replace").strip())[-3000:]
            raise PermanentError(f"restore failed, nothing was changed (one transaction): {said}",
                                 provider=PROVIDER, resource=self.conn.where)

    # -- helpers ------------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self, dbname: str | None = None) -> AsyncIterator[Any]:
        try:
            conn = await asyncpg.connect(**self.conn.connect_kwargs(dbname), timeout=10)
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
            raise TransientError(f"cannot reach the database ({type(exc).__name__})", provider=PROVIDER,
                                 resource=self.conn.where) from None
        except asyncpg.PostgresError as exc:
            raise PermanentError(f"the database refused: {self.scrub(str(exc))}", provider=PROVIDER,
                                 resource=self.conn.where) from None
        try:
            yield conn
        finally:
            await asyncio.shield(conn.close())

    async def _run(self, tool: str, *args: str) -> str:
        """Run a tool with an argument list; connection details in the environment; scrubbed output."""
        proc = await asyncio.create_subprocess_exec(
            self.tools[tool], *args, env=self.conn.env(), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout_s)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await asyncio.shield(proc.wait())
            raise
        text = self.scrub(out.decode(errors="replace")).strip()
        if proc.returncode != 0:
            kind = TransientError if _TRANSIENT_RE.search(text) else PermanentError
            raise kind(f"{tool} exited {proc.returncode}: {text[-3000:]}", provider=PROVIDER, resource=self.conn.where)
        return text


def compare(expected: dict[str, int], got: dict[str, int]) -> list[str]:
    """Differences between two table -> rows maps, as sentences ([] = the same tables with the same rows)."""
    problems = [f"table {t} is missing" for t in expected if t not in got]
    problems += [f"table {t} is not in the backup" for t in got if t not in expected]
    problems += [f"table {t}: {got[t]} rows, expected {n}" for t, n in expected.items() if t in got and got[t] != n]
    return problems


async def _counts(conn: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in await conn.fetch(_TABLES):
        qualified = f"{quote_ident(row['schema'])}.{quote_ident(row['name'])}"
        out[f"{row['schema']}.{row['name']}"] = int(await conn.fetchval(f"SELECT count(*) FROM {qualified}"))  # noqa: S608
    return out


async def _applied_migrations(conn: Any) -> list[str]:
    if await conn.fetchval("SELECT to_regclass('\"_prisma_migrations\"') IS NOT NULL") is not True:
        return []
    rows = await conn.fetch('SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL '
                            "AND rolled_back_at IS NULL ORDER BY finished_at, migration_name")
    return [r["migration_name"] for r in rows]


async def _read(stream: asyncio.StreamReader | None) -> bytes:
    return await stream.read() if stream is not None else b""


def _file_facts(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return path.stat().st_size, h.hexdigest()
