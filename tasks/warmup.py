"""Warm-up task: configured requests to the new services before validation (runbook: agent warm-up)."""

from __future__ import annotations

import time

import httpx
from prefect import task

from deployments.spec import WarmupSpec
from providers.models import ServiceVersion
from tasks.common import TASK_DEFAULTS


@task(name="warm-up", **TASK_DEFAULTS)
async def warm_up(spec: WarmupSpec, services: dict[str, ServiceVersion]) -> dict[str, float]:
    """Send each warm-up request; returns request counts and the wall time. Failures are reported, not fatal."""
    start = time.monotonic()
    sent = failed = 0
    async with httpx.AsyncClient(timeout=10) as client:
        for req in spec.requests:
            base = services[req.service].url
            if not base:
                continue
            for _ in range(req.repeat):
                try:
                    resp = await client.request(req.method, base.rstrip("/") + req.path)
                    ok = req.expect_status is None or resp.status_code == req.expect_status
                except httpx.HTTPError:
                    ok = False
                sent += 1
                failed += 0 if ok else 1
    return {"requests": float(sent), "failed": float(failed), "duration_s": time.monotonic() - start}
