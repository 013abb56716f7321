"""Log-in: PBKDF2 password hashes, opaque bearer tokens stored hashed in the Session table."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from aevon_app.core import error, json_body, pool, reply

ITERATIONS = 60_000
SESSION_TTL = timedelta(hours=12)
Handler = Callable[[Request, dict[str, Any]], Awaitable[JSONResponse]]


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """`pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>` of `password`."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, _ = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        expected = hash_password(password, bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, stored)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def login(request: Request) -> JSONResponse:
    """POST /auth/login {email, password} -> {token, user}; 401 on a wrong email or password."""
    body = await json_body(request)
    if body is None or not isinstance(body.get("email"), str) or not isinstance(body.get("password"), str):
        return error("email and password are required", 400)
    async with pool(request).acquire() as conn:
        user = await conn.fetchrow(
            'SELECT "id", "email", "name", "passwordHash" FROM "User" WHERE "email" = $1', body["email"].lower()
        )
        if user is None or not verify_password(body["password"], user["passwordHash"]):
            return error("invalid email or password", 401)
        token = secrets.token_urlsafe(32)
        await conn.execute(
            'INSERT INTO "Session" ("tokenHash", "userId", "expiresAt") VALUES ($1, $2, $3)',
            _token_hash(token), user["id"], datetime.now(UTC).replace(tzinfo=None) + SESSION_TTL,
        )
    return reply({"token": token, "user": {"id": user["id"], "email": user["email"], "name": user["name"]}})


async def current_user(request: Request) -> dict[str, Any] | None:
    """The user of the request's `Authorization: Bearer <token>`, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    async with pool(request).acquire() as conn:
        row = await conn.fetchrow(
            'SELECT u."id", u."email", u."name" FROM "Session" s JOIN "User" u ON u."id" = s."userId" '
            'WHERE s."tokenHash" = $1 AND s."expiresAt" > now() AT TIME ZONE \'UTC\'',
            _token_hash(token.strip()),
        )
    return dict(row) if row is not None else None


async def logout(request: Request) -> JSONResponse:
    """POST /auth/logout: forget the request's token."""
    _, _, token = request.headers.get("authorization", "").partition(" ")
    async with pool(request).acquire() as conn:
        await conn.execute('DELETE FROM "Session" WHERE "tokenHash" = $1', _token_hash(token.strip()))
    return reply({"ok": True})


def authenticated(handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
    """Wrap `handler(request, user)`: 401 without a valid bearer token."""

    async def endpoint(request: Request) -> JSONResponse:
        user = await current_user(request)
        if user is None:
            return error("log in first", 401)
        return await handler(request, user)

    return endpoint
