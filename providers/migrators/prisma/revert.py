"""Reverting applied migrations atomically, and proving beforehand that their inverse would succeed on the data now."""

from __future__ import annotations

from typing import Any

import asyncpg

from providers.migrators.prisma.preconditions import needs, prove, violations
from providers.migrators.prisma.script import NotTransactional, transactional

_FORGET = 'DELETE FROM "_prisma_migrations" WHERE "migration_name" = ANY($1::text[])'


class RevertFailed(Exception):
    """PostgreSQL refused the inverse: the transaction was rolled back, nothing changed."""


async def revert_atomically(conn: Any, script: str, names: list[str]) -> None:
    """Run the transactional `script` and forget `names` in `_prisma_migrations`, in one transaction.

    `script` comes from `script.transactional` (no BEGIN/COMMIT of its own). Raises RevertFailed with PostgreSQL's
    error when a statement fails, or when the bookkeeping does not find every migration (another process reverted
    or re-applied them meanwhile): either way the transaction is rolled back. Connection errors propagate as they
    are (the server rolls back a transaction whose connection is lost).
    """
    try:
        async with conn.transaction():
            if script.strip():  # an inverse with nothing to undo (a data-only migration): bookkeeping only
                await conn.execute(script)
            status = await conn.execute(_FORGET, names)
            deleted = int(str(status).rsplit(" ", 1)[-1])
            if deleted < len(names):
                raise RevertFailed(f"only {deleted} of {len(names)} migrations were recorded when the inverse ran")
    except asyncpg.PostgresError as exc:
        raise RevertFailed(f"{type(exc).__name__}: {exc}") from None


async def unmet(conn: Any, inverse_sql: str) -> list[str]:
    """Why the inverse would fail on the data now ([] when it would succeed): checked, then proven.

    First the preconditions a query can check (duplicates for a unique index, NULLs for SET NOT NULL, values
    outside a recreated enum, rows without their referenced row, rows where a NOT NULL column without a default is
    added), each with a precise reason; when they all hold, the whole inverse is run on the real data inside a
    transaction that is rolled back (`preconditions.prove`), which catches what no query states.
    """
    try:
        script = transactional(inverse_sql)
    except NotTransactional as exc:
        return [f"the inverse cannot run in one transaction: {exc}"]
    reasons = [why for p in needs(script) if (why := await violations(conn, p))]
    if reasons:
        return reasons
    failed = await prove(conn, script)
    return [f"the inverse fails on the current data (tried in a transaction, rolled back): {failed}"] if failed else []
