"""Warm-up: round-robin pre-caching calls, bounded concurrency and time budget, cold vs warm figures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from deployments.spec import WarmupSpec
from providers.models import ServiceVersion
from providers.warmup import warm
from tests.fakes.base import FakeServer, Request, Response


class ColdService(FakeServer):
    """A service whose first call of each path is slow (a cold cache), later ones fast; /broken answers 500."""

    cold_s = 0.3

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.in_flight = self.max_in_flight = 0
        self.order: list[str] = []
        self._count = threading.Lock()

    def routes(self) -> None:
        self.route("GET", r"/.*", self._get)
        self.route("POST", r"/cache/prime", self._prime)

    def _get(self, req: Request) -> Response:
        with self._count:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            cold = req.path not in self.seen
            self.seen.add(req.path)
            self.order.append(req.path)
        try:
            time.sleep(self.cold_s if cold else 0.01)
            return Response(500 if req.path == "/broken" else 200, {"ok": True})
        finally:
            with self._count:
                self.in_flight -= 1

    def _prime(self, req: Request) -> Response:
        return Response(202 if req.json() == {"keys": ["tasks"]} else 400, {})


@pytest.fixture
def svc() -> Iterator[ColdService]:
    s = ColdService()
    s.start()
    try:
        yield s
    finally:
        s.stop()


def services(svc: ColdService) -> dict[str, ServiceVersion]:
    return {"api": ServiceVersion(service="api", version="x", url=svc.url),
            "web": ServiceVersion(service="web", version="x", url=None)}


def spec(**kw: Any) -> WarmupSpec:
    return WarmupSpec.model_validate(kw)


async def test_cold_then_warm_figures_and_round_robin(svc: ColdService) -> None:
    figures = await warm(spec(concurrency=2, requests=[
        {"service": "api", "path": "/status", "repeat": 3},
        {"service": "api", "path": "/tasks", "repeat": 2},
        {"service": "api", "path": "/cache/prime", "method": "POST", "json_body": {"keys": ["tasks"]},
         "expect_status": 202},
    ]), services(svc))
    assert figures["requests"] == 6 and figures["failed"] == 0 and figures["skipped"] == 0
    assert figures["cold_ms_max"] >= 300 and "warm_p50_ms" in figures  # the cold calls are the ones measured first
    # every first call before any repeat (the first two run concurrently: their arrival order is not fixed)
    assert set(svc.order[:2]) == {"/status", "/tasks"}
    assert svc.max_in_flight <= 2


async def test_failures_and_unknown_urls_are_counted_not_raised(svc: ColdService) -> None:
    figures = await warm(spec(requests=[
        {"service": "api", "path": "/broken", "repeat": 2},  # 500: a failure by default
        {"service": "api", "path": "/status", "expect_status": 204},  # 200 but 204 expected
        {"service": "web", "path": "/"},  # the web service has no URL
    ]), services(svc))
    assert figures["requests"] == 3 and figures["failed"] == 3 and figures["skipped"] == 1


async def test_budget_skips_what_did_not_start_in_time(svc: ColdService) -> None:
    svc.cold_s = 0.5
    figures = await warm(spec(concurrency=1, budget_s=0.2, requests=[
        {"service": "api", "path": f"/p{i}"} for i in range(4)
    ]), services(svc))
    assert figures["requests"] == 1 and figures["skipped"] == 3  # only the call that started within the budget


async def test_unreachable_service_is_a_failure(svc: ColdService) -> None:
    down = {"api": ServiceVersion(service="api", version="x", url="http://127.0.0.1:9")}
    figures = await warm(spec(requests=[{"service": "api", "path": "/health", "repeat": 2}]), down)
    assert figures["requests"] == 2 and figures["failed"] == 2
