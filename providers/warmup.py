"""Warm-up of freshly deployed services (runbook: agent warm-up): pre-caching calls, bounded in concurrency and time."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import httpx

from deployments.spec import WarmupRequest, WarmupSpec
from providers.models import ServiceVersion


@dataclass
class _Tally:
    """Latencies (ms) per configured request, in the order answered; counts of failed and skipped calls."""

    latencies: dict[int, list[float]] = field(default_factory=dict)
    failed: int = 0
    skipped: int = 0
    missing_url: int = 0


def _ok(req: WarmupRequest, status: int) -> bool:
    if req.expect_status is not None:
        return status == req.expect_status
    return status < 500


async def warm(spec: WarmupSpec, services: dict[str, ServiceVersion], client: httpx.AsyncClient | None = None
               ) -> dict[str, float]:
    """Send every warm-up call once the services are up; return its figures (never raises on a failed call).

    Round-robin: the first call of every configured request goes out before any repeat, so each endpoint's cold
    call is measured (`cold_ms_max`) and the repeats show the warm latency (`warm_p50_ms`). At most
    `spec.concurrency` calls are in flight; calls not started within `spec.budget_s` are skipped and counted.
    A call fails on a transport error or on a status other than `expect_status` (default: any status below 500).
    """
    start = time.monotonic()
    tally = _Tally()
    gate = asyncio.Semaphore(spec.concurrency)
    own = client is None
    http = client or httpx.AsyncClient(timeout=spec.timeout_s)

    async def call(index: int, req: WarmupRequest) -> None:
        async with gate:
            if time.monotonic() - start > spec.budget_s:
                tally.skipped += 1
                return
            version = services.get(req.service)
            if version is None or not version.url:
                tally.missing_url += 1
                return
            t0 = time.monotonic()
            try:
                resp = await http.request(req.method, version.url.rstrip("/") + req.path, json=req.json_body)
                ok = _ok(req, resp.status_code)
            except httpx.HTTPError:
                ok = False
            tally.latencies.setdefault(index, []).append((time.monotonic() - t0) * 1000)
            tally.failed += 0 if ok else 1

    rounds = max((r.repeat for r in spec.requests), default=0)
    jobs = [call(i, r) for n in range(rounds) for i, r in enumerate(spec.requests) if n < r.repeat]
    try:
        await asyncio.gather(*jobs)
    finally:
        if own:
            await http.aclose()
    return figures(tally, time.monotonic() - start)


def figures(tally: _Tally, duration_s: float) -> dict[str, float]:
    """The report's warm-up figures: counts, wall time, cold (first call) and warm (repeat) latencies."""
    sent = sum(len(v) for v in tally.latencies.values())
    cold = [v[0] for v in tally.latencies.values() if v]
    warm_calls = [ms for v in tally.latencies.values() for ms in v[1:]]
    out = {
        "requests": float(sent), "failed": float(tally.failed), "skipped": float(tally.skipped + tally.missing_url),
        "duration_s": round(duration_s, 3),
    }
    if cold:
        out["cold_ms_max"] = round(max(cold), 2)
        out["cold_ms_median"] = round(statistics.median(cold), 2)
    if warm_calls:
        out["warm_p50_ms"] = round(statistics.median(warm_calls), 2)
    return out
