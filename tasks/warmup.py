"""Warm-up task: configured requests to the new services before validation (runbook: agent warm-up)."""

from __future__ import annotations

from prefect import task

from deployments.spec import WarmupSpec
from providers.models import ServiceVersion
from providers.warmup import warm
from tasks.common import TASK_DEFAULTS


@task(name="warm-up", task_run_name="warm-up-{name}", **TASK_DEFAULTS)
async def warm_up(spec: WarmupSpec, services: dict[str, ServiceVersion], name: str = "all") -> dict[str, float]:
    """Send the warm-up calls (concurrency and time budget from the spec); returns the figures of the report.

    Failures are reported (`failed`, `skipped`), not fatal: validation judges the release. See providers.warmup.
    `name` names the task run (the service warmed, when the deploy warms each service as soon as it is ready).
    """
    return await warm(spec, services)


def of_service(spec: WarmupSpec, service: str) -> WarmupSpec:
    """The warm-up requests of one service, with the spec's concurrency, budget and timeout."""
    return spec.model_copy(update={"requests": [r for r in spec.requests if r.service == service]})


COUNTS = ("requests", "failed", "skipped")
HIGHEST = ("duration_s", "cold_ms_max", "warm_p50_ms")


def merge_figures(parts: list[dict[str, float]]) -> dict[str, float]:
    """The report's warm-up figures of several per-service warm-ups: counts summed; the wall time, the slowest cold
    call and the warm median taken at their highest (the median of all calls is not kept per part); the cold
    median as the median of the parts' medians."""
    if not parts:
        return {}
    out = {k: float(sum(p.get(k, 0.0) for p in parts)) for k in COUNTS}
    for k in HIGHEST:
        values = [p[k] for p in parts if k in p]
        if values:
            out[k] = max(values)
    medians = sorted(p["cold_ms_median"] for p in parts if "cold_ms_median" in p)
    if medians:
        out["cold_ms_median"] = medians[len(medians) // 2]
    return out
