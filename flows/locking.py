"""The per-environment lock: a Prefect global concurrency limit held for the whole run (approval wait included)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_run_logger


def lock_name(env: str) -> str:
    return f"deploy-{env}"


async def ensure_limit(env: str) -> None:
    """Create the environment's global concurrency limit (1 slot) when missing."""
    async with get_client() as client:
        try:
            await client.read_global_concurrency_limit_by_name(lock_name(env))
        except ObjectNotFound:
            try:
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=lock_name(env), limit=1, active=True)
                )
            except ObjectAlreadyExists:
                pass


async def force_unlock(env: str) -> int:
    """Free the environment's slot (operator command after a crashed holder); returns the slots it held."""
    async with get_client() as client:
        try:
            limit = await client.read_global_concurrency_limit_by_name(lock_name(env))
        except ObjectNotFound:
            return 0
        await client.update_global_concurrency_limit(lock_name(env), GlobalConcurrencyLimitUpdate(active_slots=0))
        return int(limit.active_slots)


@asynccontextmanager
async def environment_lock(
    env: str, lease_s: float, holder: str | Callable[[], Awaitable[str]] = ""
) -> AsyncIterator[None]:
    """Hold `deploy-<env>` for the body. When another run holds it, log which one and wait for it."""
    logger = get_run_logger()
    await ensure_limit(env)
    name = lock_name(env)
    async with AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(
                concurrency(name, occupy=1, strict=True, timeout_seconds=0.5, lease_duration=lease_s)
            )
        except TimeoutError:
            who = holder if isinstance(holder, str) else await holder()
            logger.info("environment %s is locked by another deploy%s; waiting for lock %s", env, who, name)
            await stack.enter_async_context(concurrency(name, occupy=1, strict=True, lease_duration=lease_s))
            logger.info("lock %s acquired", name)
        yield
