"""The one retry layer for calls to the outside world: the budget (attempts, backoff, caps) and the loop that spends it.

Why here, at the client, and not on the Prefect task: the client knows which calls are safe to repeat (a GET, an
idempotent PUT, a connection attempt; creates go through a one-try client and are resolved by looking the release
up again), it sees the vendor's Retry-After, and a retry costs one request. A task-level retry re-runs the whole
step (read the current version, journal, deploy, wait for readiness): stacked on the client's retries it
multiplied the calls (5 × 4 = 20 for one dead vendor) and took minutes to report it. So:

- vendor HTTP (VendorClient: Vercel, Render, Railway, Koyeb, GitHub, registries, Sentry, Prometheus) and the
  Kubernetes/GKE API (RetryingCaller) retry inside the client, with `VENDOR_BUDGET` unless their settings say
  otherwise; the tasks that call them (deploy, rollback, warm-up, checks) do not retry at all;
- the database steps (Prisma CLI, pg_dump, asyncpg), which have no client loop of their own, are retried by their
  Prefect task with `DATABASE_BUDGET` (tasks/common.py DATABASE_TASK_DEFAULTS): still one layer per call.

When the budget is spent the error is raised as `RetriesSpent` (a TransientError: the call may work later, but
nobody in this run tries it again), naming the provider, the resource and how many tries were made.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from providers.errors import TransientError

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryBudget:
    """How hard one call is tried: `attempts` tries at most, waits growing from `backoff_s` (doubling, ×0.5-1.5
    jitter), each wait at least the vendor's Retry-After but at most `max_wait_s`, and no new try once the
    call has taken `total_s` (so a dead vendor is reported within `total_s` plus one request timeout).
    """

    attempts: int = 5
    backoff_s: float = 0.5
    max_wait_s: float = 30.0
    total_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff_s < 0 or self.max_wait_s < 0 or self.total_s < 0:
            raise ValueError("backoff_s, max_wait_s and total_s must not be negative")

    def with_(
        self,
        *,
        attempts: int | None = None,
        backoff_s: float | None = None,
        max_wait_s: float | None = None,
        total_s: float | None = None,
    ) -> RetryBudget:
        """This budget with the given fields replaced (None keeps the field)."""
        changes = {"attempts": attempts, "backoff_s": backoff_s, "max_wait_s": max_wait_s, "total_s": total_s}
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    def wait(self, attempt: int, retry_after: float | None = None, jitter: float | None = None) -> float:
        """The wait after failed try `attempt` (0-based): exponential with jitter, ≥ Retry-After, ≤ max_wait_s."""
        factor = 0.5 + random.random() if jitter is None else jitter
        wait: float = self.backoff_s * (2**attempt) * factor
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_wait_s)

    def delays(self) -> list[float]:
        """The nominal waits between tries (no jitter, no Retry-After): what a Prefect task's retries use."""
        return [self.wait(i, jitter=1.0) for i in range(self.attempts - 1)]


VENDOR_BUDGET = RetryBudget(attempts=5, backoff_s=0.5, max_wait_s=30.0, total_s=60.0)
"""Every vendor HTTP and Kubernetes API call (targets' `attempts`/`backoff_s`/`max_wait_s` settings override it)."""

DATABASE_BUDGET = RetryBudget(attempts=4, backoff_s=1.0, max_wait_s=4.0, total_s=60.0)
"""The database steps, retried by their task: 4 tries, 1 s, 2 s, 4 s apart."""


class RetriesSpent(TransientError):
    """A transient failure that outlived its retry budget: reported, never retried again by an outer layer."""


def spent(last: TransientError, tries: int) -> RetriesSpent:
    """`last` re-raised as RetriesSpent, its message saying how many tries were made."""
    prefix = last.provider + (f" {last.resource}" if last.resource else "") + ": "
    text = str(last)
    text = text[len(prefix):] if text.startswith(prefix) else text
    if tries > 1:
        text = f"{text} (gave up after {tries} tries)"
    return RetriesSpent(text, provider=last.provider, resource=last.resource, retry_after=last.retry_after)


async def call_with_budget(budget: RetryBudget, attempt: Callable[[], Awaitable[T]], *,
                           sleep: Sleep = asyncio.sleep) -> T:
    """Await `attempt()` until it returns or raises something other than TransientError, within `budget`.

    `attempt` translates its own failures (TransientError for what is worth another try). When the tries or the
    total time are spent, the last error is raised as RetriesSpent, chained to the original cause.
    """
    start = time.monotonic()
    last: TransientError | None = None
    tries = 0
    for n in range(budget.attempts):
        tries = n + 1
        try:
            return await attempt()
        except RetriesSpent:  # an inner layer already spent its budget: one layer retries, never two
            raise
        except TransientError as exc:
            last = exc
        if tries == budget.attempts:
            break
        wait = budget.wait(n, last.retry_after)
        if time.monotonic() - start + wait > budget.total_s:
            break
        await sleep(wait)
    assert last is not None
    raise spent(last, tries) from (last.__cause__ or last)
