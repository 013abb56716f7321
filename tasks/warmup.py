"""Warm-up task: configured requests to the new services before validation (runbook: agent warm-up)."""

from __future__ import annotations

from prefect import task

from deployments.spec import WarmupSpec
from providers.models import ServiceVersion
from providers.warmup import warm
from tasks.common import TASK_DEFAULTS


@task(name="warm-up", **TASK_DEFAULTS)
async def warm_up(spec: WarmupSpec, services: dict[str, ServiceVersion]) -> dict[str, float]:
    """Send the warm-up calls (concurrency and time budget from the spec); returns the figures of the report.

    Failures are reported (`failed`, `skipped`), not fatal: validation judges the release. See providers.warmup.
    """
    return await warm(spec, services)
