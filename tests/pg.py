"""Throw-away PostgreSQL databases for tests: `async with temp_database() as url:` creates one and drops it after."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

# The machine's server (trust auth, superuser `postgres`); override with AEVON_TEST_PG_URL.
ADMIN_URL = os.environ.get("AEVON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_db(admin_url: str, database: str, user: str | None = None, password: str | None = None) -> str:
    parts = urlsplit(admin_url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 5432
    name = user if user is not None else (parts.username or "postgres")
    auth = quote(name, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit((parts.scheme, f"{auth}@{host}:{port}", "/" + database, "", ""))


@asynccontextmanager
async def temp_database(*, password: str | None = None, admin_url: str = ADMIN_URL) -> AsyncIterator[str]:
    """Create a database with a random name and yield its URL; drop it (and its role) on exit.

    Args:
        password: when given, a fresh login role with this password owns the database and the URL carries
            `role:password` (for tests that a secret never leaks; works under trust and password auth alike).
        admin_url: a superuser URL of the server.
    """
    suffix = secrets.token_hex(6)
    database = f"aevon_test_{suffix}"
    role = f"aevon_test_role_{suffix}" if password is not None else None
    admin = await asyncpg.connect(admin_url)
    try:
        if role is not None:
            # Identifiers are generated above; the password is a literal that PostgreSQL quotes for us.
            literal = await admin.fetchval("SELECT quote_literal($1::text)", password)
            await admin.execute(f'CREATE ROLE "{role}" LOGIN CREATEDB PASSWORD {literal}')
        owner = f' OWNER "{role}"' if role else ""
        await admin.execute(f'CREATE DATABASE "{database}"{owner}')
    finally:
        await admin.close()
    try:
        yield _with_db(admin_url, database, role, password)
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            if role is not None:
                await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await admin.close()


async def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    """Run one query on `url` and return its rows (a short-lived connection)."""
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()
