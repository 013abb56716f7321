"""The `web` role: the HTML page (log-in, tasks, workflow trigger) and a proxy of /api/* to the api role."""

from __future__ import annotations

import html
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from aevon_app import model
from aevon_app.core import identity

STATIC = Path(__file__).resolve().parent / "static"
PAGE = Path(__file__).resolve().parent / "templates" / "index.html"
# Request/response headers passed through the proxy (hop-by-hop ones are not).
_FORWARD_REQUEST = ("authorization", "content-type", "accept")
_FORWARD_RESPONSE = ("content-type", "cache-control")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def task_field_inputs() -> str:
    """One labelled <select> per extra task field of model.py (ids: task-<name>)."""
    parts = []
    for f in model.TASK_FIELDS:
        options = "".join(
            f'<option value="{html.escape(c)}"{" selected" if c == f.default else ""}>{html.escape(c)}</option>'
            for c in f.choices
        )
        parts.append(
            f'<label for="task-{f.name}">{html.escape(f.label)}</label>'
            f'<select id="task-{f.name}" name="{f.name}" data-field="{f.name}">{options}</select>'
        )
    return "\n      ".join(parts)


async def page(request: Request) -> HTMLResponse:
    ident = identity()
    text = PAGE.read_text()
    text = text.replace("{{TASK_FIELDS}}", task_field_inputs())
    text = text.replace("{{VERSION}}", html.escape(ident["version"])).replace("{{SHA}}", html.escape(ident["sha"]))
    return HTMLResponse(text)


async def security_headers(request: Request, call_next: RequestResponseEndpoint) -> Response:
    response = await call_next(request)
    response.headers.update(_SECURITY_HEADERS)
    return response


async def health(request: Request) -> JSONResponse:
    """The web process itself is up (the api's health is the api's own check)."""
    return JSONResponse({"status": "ok", "role": "web", **identity()})


async def proxy(request: Request) -> Response:
    """Forward /api/<path> to API_URL/<path> with the method, query, body and auth header."""
    client: httpx.AsyncClient = request.app.state.client
    path = request.path_params["path"].lstrip("/")  # never "//host/...": that would leave API_URL
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARD_REQUEST}
    try:
        upstream = await client.request(
            request.method, "/" + path, params=request.query_params, content=await request.body(), headers=headers
        )
    except httpx.HTTPError as exc:
        return JSONResponse({"error": f"api unreachable: {type(exc).__name__}"}, status_code=502)
    out = {k: v for k, v in upstream.headers.items() if k.lower() in _FORWARD_RESPONSE}
    return Response(upstream.content, status_code=upstream.status_code, headers=out)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    api_url = os.environ.get("API_URL", "http://127.0.0.1:8000")
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        app.state.client = client
        yield


def create_app() -> Starlette:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/", page),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/health", health),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/{path:path}", proxy, methods=methods),
    ]
    middleware = [Middleware(BaseHTTPMiddleware, dispatch=security_headers)]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
