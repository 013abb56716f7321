"""Task defaults: vendor-calling tasks never retry (their clients do); database tasks retry transient errors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar, cast

from prefect.cache_policies import NONE
from prefect.client.schemas.objects import State
from prefect.utilities.annotations import quote
from prefect.utilities.engine import link_state_to_task_run_result

from providers.clients.retry import DATABASE_BUDGET, RetriesSpent
from providers.errors import is_transient

T = TypeVar("T")


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry a TransientError, unless a client's retry budget already gave up on it."""
    exc = state.data
    return isinstance(exc, BaseException) and is_transient(exc) and not isinstance(exc, RetriesSpent)


# Tasks take provider objects (targets, ledgers) as inputs: never hash or persist them.
# No task retries: vendor calls are retried once, inside their client (providers.clients.retry says why); a
# task-level retry would re-run the whole step on top of that (up to 20 calls and minutes for one dead vendor).
TASK_DEFAULTS: dict[str, Any] = {
    "retries": 0,
    "cache_policy": NONE,
    "persist_result": False,
}

# The database steps (Prisma CLI, pg_dump, asyncpg) have no client-side loop: their task is their one retry layer.
DATABASE_TASK_DEFAULTS: dict[str, Any] = {
    **TASK_DEFAULTS,
    "retries": DATABASE_BUDGET.attempts - 1,
    "retry_delay_seconds": DATABASE_BUDGET.delays(),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_transient,
}


def as_is(value: T) -> T:
    """Pass `value` to a task as is: Prefect neither resolves nor walks into it.

    Without this, Prefect visits every task argument recursively to find futures; with N services in a
    CheckInput that costs O(N) per task and O(N²) per run (measured: 400 checks of 200 services, +14 s).
    """
    return cast(T, quote(value))


class _Upstream:
    """Stands for one finished upstream task run in a `wait_for` list (`upstream`)."""

    __slots__ = ("__weakref__",)


def upstream(states: Iterable[State[Any] | None]) -> list[Any] | None:
    """`wait_for` entries drawing the run graph's edge from each task run in `states`, and doing nothing else.

    The caller has waited for those runs already (and decides itself what their failure means). Given the States,
    Prefect would read each one's result back before the task starts, synchronously through another thread while
    the event loop waits, and walk into it: 20 % of the loop's task-run time at 200 services (measured). A marker
    linked to the State, the way Prefect links a task's returned object to its run, gives the same edge for free.
    """
    out: list[Any] = []
    for state in states:
        if state is None or state.state_details.task_run_id is None:
            continue
        marker = _Upstream()
        link_state_to_task_run_result(state, marker)
        out.append(marker)
    return out or None
