"""Task defaults shared by every task: retry transient errors only, with backoff; no input hashing."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NONE

from providers.errors import is_transient


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only when the task failed with a TransientError."""
    return isinstance(state.data, BaseException) and is_transient(state.data)


# Tasks take provider objects (targets, ledgers) as inputs: never hash or persist them.
TASK_DEFAULTS: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [1, 2, 4],
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_transient,
    "cache_policy": NONE,
    "persist_result": False,
}
