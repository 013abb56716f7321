"""One retry layer: a vendor that is down is reported after exactly the budget's tries, naming provider and resource."""

from __future__ import annotations

import importlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prefect import Task

from providers.clients.http import VendorClient
from providers.clients.retry import DATABASE_BUDGET, VENDOR_BUDGET, RetriesSpent, RetryBudget, call_with_budget
from providers.errors import PermanentError, TransientError
from tasks.common import retry_transient
from tests.fakes.base import FakeServer

TINY = RetryBudget(attempts=4, backoff_s=0.001, max_wait_s=0.01, total_s=30)


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real HTTP transport, counting the requests it was asked to send (refused connections included)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return await super().handle_async_request(request)


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = FakeServer().start()
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there, connections are refused


def test_budget_waits_follow_backoff_retry_after_and_cap() -> None:
    budget = RetryBudget(attempts=4, backoff_s=1.0, max_wait_s=3.0, total_s=60)
    assert budget.delays() == [1.0, 2.0, 3.0]  # doubling, capped at max_wait_s
    assert budget.wait(0, retry_after=2.5, jitter=1.0) == 2.5  # never shorter than the vendor's Retry-After
    assert budget.wait(0, retry_after=99, jitter=1.0) == 3.0  # never longer than max_wait_s
    assert DATABASE_BUDGET.delays() == [1.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="attempts"):
        RetryBudget(attempts=0)


@pytest.mark.parametrize("fault", ["5xx", "drop"])
async def test_vendor_down_is_reported_after_the_budgets_tries(fake: FakeServer, fault: Any) -> None:
    fake.inject_fault(fault, 100)
    async with httpx.AsyncClient() as client:
        vendor = VendorClient(client, provider="acme", budget=TINY)
        with pytest.raises(RetriesSpent) as caught:
            await vendor.request("GET", f"{fake.url}/v1/things/42", resource="thing 42")
    assert len(fake.requests) == TINY.attempts
    text = str(caught.value)
    assert text.startswith("acme thing 42: ") and "GET /v1/things/42" in text
    assert f"gave up after {TINY.attempts} tries" in text
    assert isinstance(caught.value, TransientError) and not retry_transient(None, None, _State(caught.value))


async def test_refused_connection_is_reported_after_the_budgets_tries() -> None:
    transport = CountingTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        vendor = VendorClient(client, provider="acme", budget=TINY)
        with pytest.raises(RetriesSpent, match=r"^acme project p1: ConnectError on GET /v9/projects/p1"):
            await vendor.request("GET", f"http://127.0.0.1:{free_port()}/v9/projects/p1", resource="project p1")
    assert transport.calls == TINY.attempts


async def test_overrides_replace_budget_fields_and_total_time_stops_retrying(fake: FakeServer) -> None:
    fake.inject_fault("5xx", 100)
    async with httpx.AsyncClient() as client:
        assert VendorClient(client, provider="acme").budget == VENDOR_BUDGET
        vendor = VendorClient(client, provider="acme", budget=TINY.with_(total_s=0), attempts=9)
        assert vendor.budget.attempts == 9 and vendor.budget.backoff_s == TINY.backoff_s
        with pytest.raises(RetriesSpent):
            await vendor.request("GET", f"{fake.url}/x", resource="x")
    assert len(fake.requests) == 1  # the next wait would pass total_s: no second try


async def test_permanent_errors_are_not_retried(fake: FakeServer) -> None:
    async with httpx.AsyncClient() as client:
        vendor = VendorClient(client, provider="acme", budget=TINY)
        with pytest.raises(PermanentError, match="HTTP 404"):
            await vendor.request("GET", f"{fake.url}/nothing", resource="nothing")
    assert len(fake.requests) == 1


async def test_inner_budget_is_not_spent_again_by_an_outer_loop() -> None:
    calls = 0

    async def inner() -> None:
        nonlocal calls
        calls += 1
        raise TransientError("down", provider="acme", resource="r")

    async def outer() -> None:
        await call_with_budget(TINY, inner)

    with pytest.raises(RetriesSpent):
        await call_with_budget(TINY, outer)
    assert calls == TINY.attempts  # not attempts²: a spent budget is never spent again by an outer layer


class _State:
    def __init__(self, data: BaseException) -> None:
        self.data = data


def tasks_of(module: str) -> list[Task[Any, Any]]:
    found = [v for v in vars(importlib.import_module(module)).values() if isinstance(v, Task)]
    assert found, module
    return found


def test_tasks_calling_vendors_do_not_retry() -> None:
    for module in ("tasks.services", "tasks.warmup", "tasks.checks"):
        for task in tasks_of(module):
            assert task.retries == 0, task.name
    for task in tasks_of("tasks.database"):
        assert task.retries == DATABASE_BUDGET.attempts - 1, task.name
        assert task.retry_condition_fn is retry_transient
    db_down = TransientError("cannot reach the database", provider="prisma", resource="database")
    assert retry_transient(None, None, _State(db_down))
    assert not retry_transient(None, None, _State(RetriesSpent("down", provider="vercel")))
    assert not retry_transient(None, None, _State(PermanentError("refused", provider="prisma")))
