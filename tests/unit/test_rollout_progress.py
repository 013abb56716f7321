"""A long rollout logs that it is still going (never looks frozen), and its wait ends with the task."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tasks import services


async def test_a_long_wait_says_it_is_still_rolling_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "PROGRESS_EVERY_S", 0.01)
    ready = asyncio.Event()

    class Release(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "still rolling out" in record.getMessage():
                ready.set()  # the target becomes ready only once progress was reported

    async def wait_ready() -> str:
        await ready.wait()
        return "READY"

    handler = Release()
    services.log.addHandler(handler)
    level = services.log.level
    services.log.setLevel(logging.INFO)
    try:
        assert await asyncio.wait_for(services._following("api [gke] a → b", 900, wait_ready()), 60) == "READY"
    finally:
        services.log.removeHandler(handler)
        services.log.setLevel(level)


async def test_cancelling_the_task_cancels_the_wait() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def wait_ready() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    outer = asyncio.ensure_future(services._following("api", 900, wait_ready()))
    await started.wait()
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    await asyncio.wait_for(cancelled.wait(), 5)
