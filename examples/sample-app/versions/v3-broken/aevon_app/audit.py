"""Audit trail: every task creation and workflow trigger is recorded in AuditEvent; GET /audit lists them."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aevon_app.auth import authenticated
from aevon_app.core import pool, reply

# The columns the audit list reads (and /health probes). The migration calls the actor column "userId": this
# mismatch is v3-broken's deliberate bug (examples/sample-app/README.md), do not fix it here.
COLUMNS = ("id", "kind", "actorId", "detail", "createdAt")
EXPECTED_COLUMNS: dict[str, tuple[str, ...]] = {"AuditEvent": COLUMNS}


async def on_event(conn: asyncpg.Connection, kind: str, user_id: int, detail: dict[str, Any]) -> None:
    await conn.execute(
        'INSERT INTO "AuditEvent" ("kind", "userId", "detail") VALUES ($1, $2, $3::jsonb)',
        kind, user_id, json.dumps(detail),
    )


async def list_events(request: Request, user: dict[str, Any]) -> JSONResponse:
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    async with pool(request).acquire() as conn:
        rows = await conn.fetch(
            f'SELECT {cols} FROM "AuditEvent" WHERE "actorId" = $1 ORDER BY "id" DESC LIMIT 100',  # noqa: S608
            user["id"],
        )
    return reply({"events": [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]})


ROUTES = [Route("/audit", authenticated(list_events), methods=["GET"])]
