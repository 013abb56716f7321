"""Shared plumbing of the sample app: release identity, the database pool, JSON replies and the schema probe."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

ROOT = Path.cwd()  # the app runs with cwd = its checkout root
MIGRATIONS_DIR = ROOT / "prisma" / "migrations"


@dataclass(frozen=True)
class TaskField:
    """A task attribute beyond the title, declared by model.py; the API validates it and the page renders it."""

    name: str
    label: str
    choices: tuple[str, ...]
    default: str


def version() -> str:
    """The release label committed in VERSION."""
    path = ROOT / "VERSION"
    return path.read_text().strip() if path.exists() else "0.0.0"


def release_sha() -> str:
    """The git SHA the deployer says this process runs (AEVON_RELEASE_SHA), else "unknown"."""
    return os.environ.get("AEVON_RELEASE_SHA", "unknown")


def identity() -> dict[str, str]:
    return {"version": version(), "sha": release_sha()}


def jsonable(value: Any) -> Any:
    """Rows and values as JSON: datetimes as ISO 8601."""
    if isinstance(value, dict | asyncpg.Record):
        return {k: jsonable(v) for k, v in dict(value).items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def reply(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(jsonable(body), status_code=status)


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def json_body(request: Request) -> dict[str, Any] | None:
    """The request's JSON object, or None when the body is not one."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


def expected_migrations() -> list[str]:
    """The migrations this checkout ships: the schema it was written for."""
    return sorted(p.parent.name for p in MIGRATIONS_DIR.glob("*/migration.sql"))


async def applied_migrations(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        'SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL'
    )
    return sorted(r["migration_name"] for r in rows)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def schema_problems(conn: asyncpg.Connection, expected: dict[str, tuple[str, ...]]) -> list[str]:
    """What keeps this code from running on the database: missing migrations, tables or columns."""
    applied = set(await applied_migrations(conn))
    missing = [m for m in expected_migrations() if m not in applied]
    if missing:
        return [f"migrations not applied: {', '.join(missing)}"]
    problems = []
    for table, cols in expected.items():
        probe = f"SELECT {', '.join(map(quote_ident, cols))} FROM {quote_ident(table)} LIMIT 0"  # noqa: S608
        try:
            await conn.fetch(probe)
        except asyncpg.PostgresError as exc:
            problems.append(f"{table}: {exc}")
    return problems
