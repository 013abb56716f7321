"""The contract-suite harness protocol: each service target supplies one, started against its fake."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Literal, Protocol

from providers.models import Release
from providers.targets.base import ServiceTarget

Fault = Literal["5xx", "429", "slow", "drop", "lost", "late"]


def make_release(env: str, sha: str, release_id: str | None = None) -> Release:
    """A release for `sha` with a fresh (or given) release id."""
    return Release(release_id=release_id or f"{env}-{sha[:12]}-{uuid.uuid4().hex[:8]}", env=env, ref=sha, sha=sha)


class TargetHarness(Protocol):
    """One target under contract test, with the fake (or real thing) it talks to.

    Attributes:
        name: the provider name as registered (local, vercel, gke, railway, render, koyeb ...).
        secret: the token the target was given; the suite checks that it never shows in error text.
    """

    name: str
    secret: str

    async def start(self, tmp: Path) -> None:
        """Start the fake (HTTP server on 127.0.0.1) and anything else the target needs."""
        ...

    async def stop(self) -> None:
        """Stop everything `start` started."""
        ...

    def make_target(self, service: str) -> ServiceTarget:
        """A target for `service`, wired to the fake exactly as it would be to the vendor."""
        ...

    def make_target_bad_token(self, service: str) -> ServiceTarget:
        """A target whose credentials the fake refuses (401/403): a permanent error."""
        ...

    def sha(self, n: int) -> str:
        """The n-th deployable SHA (the fake or repo knows it; 40 hex chars)."""
        ...

    def failing_sha(self) -> str:
        """A SHA whose deployment the fake makes fail (build error, image that cannot start ...)."""
        ...

    def vendor_deployment_count(self, service: str) -> int:
        """How many deployments the vendor side holds for `service` (idempotency check)."""
        ...

    def inject_fault(self, fault: Fault, count: int) -> None:
        """Make the next `count` API calls fail with `fault` (5xx, 429 + Retry-After, slow reply, dropped)."""
        ...
