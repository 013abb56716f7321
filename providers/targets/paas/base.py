"""Shared plumbing of the PaaS targets (Vercel, Render, Railway, Koyeb): settings, client, polling, idempotency."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from providers.clients.http import VendorClient
from providers.clients.retry import VENDOR_BUDGET
from providers.config import parse_settings
from providers.errors import ConfigError, PermanentError, SecretMissing, TransientError
from providers.models import DeployHandle, DeployResult, DeployStatus, Release, ServiceVersion, utcnow
from providers.source.refs import require_sha
from providers.targets.base import TargetContext

RELEASE_KEY = "AEVON_RELEASE_ID"  # the marker a vendor-side field carries (env var, metadata key)
TERMINAL = frozenset({DeployStatus.READY, DeployStatus.FAILED, DeployStatus.CANCELED})


def _has_sha(v: str) -> str:
    if "{sha}" not in v:
        raise ValueError("must contain {sha}")
    return v


ShaTemplate = Annotated[str, AfterValidator(_has_sha)]  # an image reference template such as ghcr.io/o/app:{sha}


class PaasSettings(BaseModel):
    """Settings every PaaS target shares; each provider's model extends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_url: str = Field(description="the vendor API's base URL (tests point it at a local fake)")
    poll_interval_s: float = Field(default=2.0, gt=0, le=300, description="wait between two status reads")
    request_timeout_s: float = Field(default=30.0, gt=0, le=600, description="timeout of one HTTP request")
    attempts: int = Field(
        default=VENDOR_BUDGET.attempts, ge=1, le=20, description="tries of one call on transient failures")
    backoff_s: float = Field(
        default=VENDOR_BUDGET.backoff_s, ge=0, le=60, description="first retry wait (doubles each try)")
    max_wait_s: float = Field(default=VENDOR_BUDGET.max_wait_s, gt=0, le=600, description="longest single retry wait")
    history_limit: int = Field(default=20, ge=1, le=100, description="versions history() returns at most")
    create_settle_s: float = Field(
        default=60.0, ge=0, le=900, description="after a create or rollback call whose answer was lost or timed "
        "out: how long to look for what the vendor may still be doing before asking again (a create that the "
        "vendor applies after this is the one case that can still make a second deployment)")

    @field_validator("api_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/")


S = TypeVar("S", bound=PaasSettings)


def load(ctx: TargetContext, model: type[S]) -> tuple[S, SecretStr, httpx.AsyncClient, bool]:
    """Validate settings, fetch the `token` secret and take the injected client (or build one).

    Returns (settings, token, client, owns_client); raises ConfigError naming `services.<name>.settings.<field>`.
    """
    name = ctx.spec.name
    settings = parse_settings(model, ctx.spec.settings, f"services.{name}.settings")
    token = ctx.secrets.get("token")
    if token is None or not token.get_secret_value():
        raise SecretMissing(f"{ctx.spec.provider} needs an API token", f"services.{name}.secrets.token")
    injected = ctx.extra.get("http_client")
    if injected is None:
        return settings, token, httpx.AsyncClient(timeout=settings.request_timeout_s), True
    if not isinstance(injected, httpx.AsyncClient):
        raise ConfigError("extra.http_client must be an httpx.AsyncClient", f"services.{name}")
    return settings, token, injected, False


def valid_sha(release: Release) -> str:
    """The release's SHA, refused unless it is a full 40-hex commit id."""
    return require_sha(release.sha, f"release {release.release_id}")


def retry_wait(settings: PaasSettings, attempt: int, exc: TransientError) -> float:
    """The wait before retry `attempt` (0-based): exponential, at least the vendor's Retry-After, bounded."""
    wait = settings.backoff_s * 2.0**attempt
    if exc.retry_after is not None:
        wait = max(wait, exc.retry_after)
    return min(wait, settings.max_wait_s)


class PaasTarget(ABC):
    """A service target on a vendor API: idempotent deploy, polling wait, rollback via the vendor's own mechanism.

    Subclasses supply the vendor calls (`_find_release`, `_create`, `_poll`, `_rollback_to`, `current`,
    `history`); this class owns retries of non-idempotent creates, waiting, and the rollback no-op rule.
    """

    provider: ClassVar[str]
    vendor_class: ClassVar[type[VendorClient]] = VendorClient

    def __init__(
        self, service: str, settings: PaasSettings, token: SecretStr, client: httpx.AsyncClient, owns_client: bool
    ) -> None:
        self.service = service
        self.settings = settings
        self._token = token
        self._client = client
        self._owns_client = owns_client
        kw: dict[str, Any] = {"provider": self.provider, "backoff_s": settings.backoff_s,
                              "max_wait_s": settings.max_wait_s}
        self.http = self.vendor_class(client, attempts=settings.attempts, **kw)
        # creates are sent once: a lost answer is resolved by looking the release up again, never by resending
        self.http_once = self.vendor_class(client, attempts=1, **kw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(service={self.service!r})"

    def url(self, path: str) -> str:
        return f"{self.settings.api_url}{path}"

    def handle(self, version: str, vendor_ref: str, *, release_id: str | None, kind: str = "deploy",
               url: str | None = None, **detail: Any) -> DeployHandle:
        return DeployHandle(service=self.service, version=version, release_id=release_id, vendor_ref=vendor_ref,
                            url=url, detail={"kind": kind, **detail})

    # -- vendor specifics ----------------------------------------------------------------------------------------
    @abstractmethod
    async def _find_release(self, release: Release) -> DeployHandle | None:
        """The vendor deployment already made for `release.release_id`, if any."""

    @abstractmethod
    async def _create(self, release: Release) -> DeployHandle:
        """Ask the vendor for one new deployment of `release` (sent once: no transport-level retry)."""

    @abstractmethod
    async def _poll(self, handle: DeployHandle) -> tuple[DeployStatus, str]:
        """One read of where `handle` is: our status and the vendor's own words for it."""

    @abstractmethod
    async def _rollback_to(self, vendor_ref: str, to: ServiceVersion) -> DeployHandle:
        """Make vendor deployment `vendor_ref` serve again."""

    @abstractmethod
    async def current(self) -> ServiceVersion | None: ...

    @abstractmethod
    async def history(self) -> list[ServiceVersion]: ...

    async def _find_rollback(self, vendor_ref: str, to: ServiceVersion, since: datetime) -> DeployHandle | None:
        """A rollback to `vendor_ref` asked for at or after `since` that the vendor shows (None: none, or the
        vendor's rollback call is itself idempotent)."""
        return None

    async def _settle(self, look: Callable[[], Awaitable[DeployHandle | None]]) -> DeployHandle | None:
        """After an ambiguous call: look every poll interval, for `create_settle_s` at most, for what it did."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.settings.create_settle_s
        while True:
            try:
                found = await look()
            except TransientError:
                found = None
            if found is not None or loop.time() >= end:
                return found
            await asyncio.sleep(min(self.settings.poll_interval_s, max(end - loop.time(), 0.0)))

    # -- the protocol --------------------------------------------------------------------------------------------
    async def deploy(self, release: Release) -> DeployHandle:
        """Find the release's deployment or create it once; after a create whose answer was lost or timed out,
        wait (bounded by `create_settle_s`) for the vendor's deployment to show before creating again."""
        valid_sha(release)
        last: TransientError | None = None
        for attempt in range(self.settings.attempts):
            found = await self._find_release(release)
            if found is not None:
                return found
            try:
                return await self._create(release)
            except TransientError as exc:  # the vendor may or may not have acted (or may act later): look first
                last = exc
                if ambiguous(exc):
                    found = await self._settle(lambda: self._find_release(release))
                    if found is not None:
                        return found
                else:
                    await asyncio.sleep(retry_wait(self.settings, attempt, exc))
        assert last is not None
        raise last

    async def wait_ready(self, handle: DeployHandle, timeout: float) -> DeployResult:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            status, said = await self._poll(handle)
            elapsed = loop.time() - start
            if status in TERMINAL:
                return DeployResult(handle=handle, status=status, message=said, duration_s=elapsed)
            if elapsed >= timeout:
                msg = f"not ready within {timeout:g}s (vendor status: {said})"
                return DeployResult(handle=handle, status=DeployStatus.FAILED, message=msg, duration_s=elapsed)
            await asyncio.sleep(min(self.settings.poll_interval_s, max(timeout - elapsed, 0.0)))

    async def rollback(self, to: ServiceVersion) -> DeployHandle:
        """Make `to` serve again: a no-op when it already does; a rollback call whose answer was lost or timed out
        is followed by reading the vendor's state (the rollback it started, or `to` serving), then asked again
        within the retry budget; never a second rollback while the first one shows."""
        since = utcnow() - ReleaseIndex.SKEW
        last: TransientError | None = None
        for attempt in range(self.settings.attempts):
            now = await self.current()
            if now is not None and now.version == to.version and now.vendor_ref:
                return self.handle(now.version, now.vendor_ref, release_id=now.release_id, url=now.url, noop=True)
            ref = to.vendor_ref or next((v.vendor_ref for v in await self.history() if v.version == to.version),
                                        None)
            if not ref:
                raise PermanentError(f"no earlier deployment of {to.version} to roll back to",
                                     provider=self.provider, resource=f"service {self.service}")
            found = await self._find_rollback(ref, to, since)
            if found is not None:
                return found
            try:
                return await self._rollback_to(ref, to)
            except TransientError as exc:
                last = exc
                if ambiguous(exc):
                    found = await self._settle(functools.partial(self._rollback_seen, ref, to, since))
                    if found is not None:
                        return found
                else:
                    await asyncio.sleep(retry_wait(self.settings, attempt, exc))
        assert last is not None
        raise last

    async def _rollback_seen(self, vendor_ref: str, to: ServiceVersion, since: datetime) -> DeployHandle | None:
        """The rollback the vendor shows, or `to` already serving (a no-op handle)."""
        now = await self.current()
        if now is not None and now.version == to.version and now.vendor_ref:
            return self.handle(now.version, now.vendor_ref, release_id=now.release_id, url=now.url, noop=True)
        return await self._find_rollback(vendor_ref, to, since)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


class Rollout(Enum):
    """Where a rollout stands for a cancel: still running, cancelled before it went live, or ended otherwise."""

    RUNNING = "running"
    CANCELLED = "cancelled"
    ENDED = "ended"  # live (or live once and replaced), failed, or gone some other way


class CancelsRollout(ABC):
    """The capability to cancel a rollout in flight through the vendor's own cancel call (Render, Railway, Koyeb).

    Vendors that put a deployment live by themselves once it is ready (even after our rollback) offer it, so
    that fail fast stops such a rollout instead of waiting for it (tasks/services.py). Idempotent: a second call,
    or a cancel whose answer was lost and that the client sent again, finds the deployment cancelled already.
    """

    cancellable_rollout: ClassVar[bool] = True

    @abstractmethod
    async def _rollout(self, handle: DeployHandle) -> Rollout:
        """One read of where `handle`'s deployment stands, for a cancel."""

    @abstractmethod
    async def _cancel(self, handle: DeployHandle) -> None:
        """The vendor's cancel call (transient errors retried by the client; a refusal is a PermanentError)."""

    async def cancel_rollout(self, handle: DeployHandle) -> bool:
        """Cancel `handle`'s rollout: True when the vendor cancelled it before it went live (it never will);
        False when it had gone live or ended already, or is past the point where the vendor can cancel it (it
        then ends by itself). A refusal is judged by reading the deployment again, never by its wording."""
        state = await self._rollout(handle)
        if state is Rollout.RUNNING:
            try:
                await self._cancel(handle)
                return True
            except PermanentError:
                state = await self._rollout(handle)  # refused: it ended meanwhile, or cannot be cancelled now
        return state is Rollout.CANCELLED


def ambiguous(exc: TransientError) -> bool:
    """True when the vendor may have acted on a call that failed with `exc` (a lost answer, a timeout, a 5xx);
    False when it said it did not (a 429 or 503 asking us to come back after Retry-After)."""
    return exc.retry_after is None


def status_of(table: dict[str, DeployStatus], value: str | None) -> DeployStatus:
    """Our status for a vendor status value; an unknown value counts as still in progress."""
    return table.get(value or "", DeployStatus.IN_PROGRESS)


class ReleaseEntry(BaseModel):
    """What the release index remembers of one release: when we asked, and the vendor's deployment id."""

    sha: str
    requested_at: datetime
    vendor_ref: str | None = None


class ReleaseIndex:
    """release id -> vendor deployment id, in a JSON file under the target's state dir.

    For vendors whose deployments carry no field we can set (Render, Railway): the intent is written before the
    create call, the deployment id after it; a retried deploy that finds an intent without an id adopts the
    vendor deployment of the same SHA created since the intent, so a lost answer never causes a second one.
    """

    SKEW = timedelta(seconds=5)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    def _read(self) -> dict[str, ReleaseEntry]:
        if not self.path.exists():
            return {}
        raw = json.loads(self.path.read_text())
        return {k: ReleaseEntry.model_validate(v) for k, v in raw.items()}

    def _write(self, entries: dict[str, ReleaseEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v.model_dump(mode="json") for k, v in entries.items()}, indent=1))
        tmp.replace(self.path)

    async def get(self, release_id: str) -> ReleaseEntry | None:
        async with self._lock:
            return (await asyncio.to_thread(self._read)).get(release_id)

    async def record(self, release_id: str, sha: str, vendor_ref: str | None = None) -> ReleaseEntry:
        """Write the intent (no `vendor_ref`) or complete it; the first intent's time is kept."""
        async with self._lock:
            entries = await asyncio.to_thread(self._read)
            old = entries.get(release_id)
            entry = ReleaseEntry(sha=sha, requested_at=old.requested_at if old else utcnow(), vendor_ref=vendor_ref)
            entries[release_id] = entry
            await asyncio.to_thread(self._write, entries)
            return entry

    async def release_of(self, vendor_ref: str) -> str | None:
        async with self._lock:
            entries = await asyncio.to_thread(self._read)
        return next((rid for rid, e in entries.items() if e.vendor_ref == vendor_ref), None)


class IndexedTarget(PaasTarget):
    """A PaaS target whose idempotency lives in a ReleaseIndex (vendors with no settable deployment field)."""

    def __init__(self, service: str, settings: PaasSettings, token: SecretStr, client: httpx.AsyncClient,
                 owns_client: bool, state_dir: Path) -> None:
        super().__init__(service, settings, token, client, owns_client)
        self.index = ReleaseIndex(state_dir / f"{self.provider}-{service}-releases.json")

    @abstractmethod
    async def _adopt(self, release: Release, since: datetime) -> str | None:
        """The id of a vendor deployment of `release.sha` created at or after `since`, if there is one."""

    @abstractmethod
    async def _start(self, release: Release) -> str:
        """Send the create call once; return the new deployment's id."""

    async def _find_release(self, release: Release) -> DeployHandle | None:
        entry = await self.index.get(release.release_id)
        if entry is None:
            return None
        ref = entry.vendor_ref or await self._adopt(release, entry.requested_at - ReleaseIndex.SKEW)
        if ref is None:
            return None
        if entry.vendor_ref is None:
            await self.index.record(release.release_id, release.sha, ref)
        return self.handle(release.sha, ref, release_id=release.release_id)

    async def _create(self, release: Release) -> DeployHandle:
        await self.index.record(release.release_id, release.sha)
        ref = await self._start(release)
        await self.index.record(release.release_id, release.sha, ref)
        return self.handle(release.sha, ref, release_id=release.release_id)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from a vendor body (Z or offset), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
