"""The `api` role: JSON endpoints for health, status, log-in, tasks and workflow runs over PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aevon_app import auth, model
from aevon_app.auth import authenticated
from aevon_app.core import applied_migrations, error, expected_migrations, identity, json_body, pool, reply
from aevon_app.core import schema_problems as probe_schema
from aevon_app.extensions import EXTENSIONS


def expected_columns() -> dict[str, tuple[str, ...]]:
    expected = dict(model.EXPECTED_COLUMNS)
    for ext in EXTENSIONS:
        expected.update(getattr(ext, "EXPECTED_COLUMNS", {}))
    return expected


async def emit(conn: asyncpg.Connection, kind: str, user_id: int, detail: dict[str, Any]) -> None:
    """Tell the extensions about a change (same connection, so the same transaction)."""
    for ext in EXTENSIONS:
        hook = getattr(ext, "on_event", None)
        if hook is not None:
            await hook(conn, kind, user_id, detail)


async def health(request: Request) -> JSONResponse:
    """200 only when the database answers and its schema is the one this code expects; 503 otherwise."""
    try:
        async with asyncio.timeout(5):
            async with pool(request).acquire() as conn:
                problems = await probe_schema(conn, expected_columns())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        problems = [f"database unavailable: {type(exc).__name__}"]
    if problems:
        return reply({"status": "unavailable", "problems": problems, **identity()}, 503)
    return reply({"status": "ok", **identity()})


async def status(request: Request) -> JSONResponse:
    """Release identity and migration counts (what is applied vs what this checkout ships)."""
    async with pool(request).acquire() as conn:
        applied = await applied_migrations(conn)
    return reply({**identity(), "role": "api", "migrations": {"applied": len(applied),
                                                             "expected": len(expected_migrations())}})


def _task_values(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    title = body.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        return {}, "title: 1 to 200 characters"
    values: dict[str, Any] = {"title": title.strip()}
    for field in model.TASK_FIELDS:
        value = body.get(field.name, field.default)
        if value not in field.choices:
            return {}, f"{field.name}: one of {', '.join(field.choices)}"
        values[field.name] = value
    return values, None


def _task_columns() -> str:
    names = ["id", "title", "done", *(f.name for f in model.TASK_FIELDS), "createdAt"]
    return ", ".join(f'"{n}"' for n in names)


async def list_tasks(request: Request, user: dict[str, Any]) -> JSONResponse:
    query = f'SELECT {_task_columns()} FROM "Task" WHERE "userId" = $1 ORDER BY {model.TASK_ORDER} LIMIT 200'  # noqa: S608
    async with pool(request).acquire() as conn:
        rows = await conn.fetch(query, user["id"])
    return reply({"tasks": [dict(r) for r in rows]})


async def create_task(request: Request, user: dict[str, Any]) -> JSONResponse:
    values, problem = _task_values(await json_body(request) or {})
    if problem:
        return error(problem, 422)
    cols = ", ".join(f'"{k}"' for k in [*values, "userId"])
    params = ", ".join(f"${i}" for i in range(1, len(values) + 2))
    query = f'INSERT INTO "Task" ({cols}) VALUES ({params}) RETURNING {_task_columns()}'  # noqa: S608
    async with pool(request).acquire() as conn, conn.transaction():
        row = await conn.fetchrow(query, *values.values(), user["id"])
        await emit(conn, "task.created", user["id"], {"taskId": row["id"]})
    return reply(dict(row), 201)


async def list_workflows(request: Request, user: dict[str, Any]) -> JSONResponse:
    async with pool(request).acquire() as conn:
        rows = await conn.fetch(
            'SELECT "id", "name", "status", "taskId", "createdAt" FROM "WorkflowRun" WHERE "userId" = $1 '
            'ORDER BY "id" DESC LIMIT 50', user["id"],
        )
    return reply({"runs": [dict(r) for r in rows]})


async def trigger_workflow(request: Request, user: dict[str, Any]) -> JSONResponse:
    """POST /workflows/trigger {name, taskId?} -> the queued WorkflowRun."""
    body = await json_body(request) or {}
    name, task_id = body.get("name"), body.get("taskId")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        return error("name: 1 to 100 characters", 422)
    if task_id is not None and not isinstance(task_id, int):
        return error("taskId: an integer", 422)
    async with pool(request).acquire() as conn, conn.transaction():
        if task_id is not None and not await conn.fetchval(
            'SELECT 1 FROM "Task" WHERE "id" = $1 AND "userId" = $2', task_id, user["id"]
        ):
            return error("taskId: no such task", 404)
        row = await conn.fetchrow(
            'INSERT INTO "WorkflowRun" ("name", "userId", "taskId") VALUES ($1, $2, $3) '
            'RETURNING "id", "name", "status", "taskId", "createdAt"', name.strip(), user["id"], task_id,
        )
        await emit(conn, "workflow.triggered", user["id"], {"runId": row["id"], "name": row["name"]})
    return reply(dict(row), 201)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # The pool connects lazily (min_size=0): the process listens even while the database is down.
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=0, max_size=10, timeout=5)
    try:
        yield
    finally:
        await app.state.pool.close()


def create_app() -> Starlette:
    routes = [
        Route("/health", health),
        Route("/status", status),
        Route("/auth/login", auth.login, methods=["POST"]),
        Route("/auth/logout", auth.logout, methods=["POST"]),
        Route("/tasks", authenticated(list_tasks), methods=["GET"]),
        Route("/tasks", authenticated(create_task), methods=["POST"]),
        Route("/workflows", authenticated(list_workflows), methods=["GET"]),
        Route("/workflows/trigger", authenticated(trigger_workflow), methods=["POST"]),
    ]
    for ext in EXTENSIONS:
        routes += getattr(ext, "ROUTES", [])
    return Starlette(routes=routes, lifespan=lifespan)
