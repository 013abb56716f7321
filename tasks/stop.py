"""Fail fast: a stop signal the first blocking check result sets, and a runner that cancels work when it fires."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class StopSignal:
    """Set once, by the first blocking result of a validation run; every check still running watches it.

    `reason` says which check failed (what the cancelled checks report); `at` is when (time.monotonic()), the
    start of the time to rollback.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.reason = ""
        self.at: float | None = None

    def set(self, reason: str) -> None:
        """Fire (the first call wins; later ones keep the first reason)."""
        if not self._event.is_set():
            self.reason, self.at = reason, time.monotonic()
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


async def until_stopped(work: Coroutine[Any, Any, T], stop: StopSignal | None) -> tuple[T | None, bool]:
    """Run `work`; when `stop` fires first, cancel it and wait until it has cleaned up (child processes killed).

    Returns (its result, False), or (None, True) when it was stopped. Work that finished in the same instant the
    signal fired keeps its result. A cancellation of the caller cancels `work` too, and waits for its clean-up.
    """
    inner = asyncio.ensure_future(work)
    if stop is not None and stop.is_set():
        inner.cancel()
    waiter = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        await asyncio.wait([inner] if waiter is None else [inner, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        if waiter is not None:
            waiter.cancel()
        if not inner.done():
            inner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await inner  # its finally blocks run now: processes are gone when this returns
    if inner.cancelled():
        return None, True
    return inner.result(), False
