"""The per-environment lock: a fenced lease in the ledger's PostgreSQL, renewed by a heartbeat for the whole run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.logging import get_run_logger
from prefect.states import Crashed
from pydantic import SecretStr

from providers.errors import AevonError
from providers.state.lock import LeaseRow, LockTable, Owner

RETRY_S = 1.0  # after a failed renewal (database unreachable), try again this soon


class LockLost(AevonError):
    """This run no longer holds its environment's lock (forced unlock, or no renewal before the lease ended)."""


def lock_name(env: str) -> str:
    return f"deploy-{env}"


@dataclass
class Lease:
    """A held lock: its fencing token. `check()` before a side effect raises LockLost when it is no longer ours."""

    env: str
    token: int
    table: LockTable
    lost: str = ""

    async def check(self) -> None:
        if self.lost or not await self.table.holds(self.env, self.token):
            raise LockLost(self.lost or f"the lock of {self.env} is no longer held with token {self.token}")


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("aevon.lock")


def _flow_run_id() -> str:
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else uuid.uuid4().hex


def _db_url(db_url: SecretStr | None) -> SecretStr:
    if db_url is not None:
        return db_url
    from deployments.settings import AevonSettings

    return AevonSettings().state_db_url


async def describe(table: LockTable, row: LeaseRow) -> str:
    """Who holds the lease, for a log line: release, flow run, process, lease left. Never a secret."""
    parts = []
    rel = await table.release_of(row.flow_run_id) if row.flow_run_id else None
    if rel:
        parts.append(f"release {rel[0]}, {rel[1]} @ {rel[2][:12]}")
    parts.append(f"flow run {row.flow_run_id}")
    parts.append(f"pid {row.pid} on {row.host.split('/')[0]}")
    parts.append(f"lease ends in {max(row.seconds_left, 0):.0f}s" if not row.expired else "lease expired")
    return " (" + ", ".join(parts) + ")"


async def flow_run_state(flow_run_id: str) -> str | None:
    """The Prefect state name of a flow run; None when it is unknown (not a flow run id, or the API unreachable)."""
    try:
        run_id = uuid.UUID(flow_run_id)
    except ValueError:
        return None
    try:
        async with get_client() as client:
            run = await client.read_flow_run(run_id)
    except ObjectNotFound:
        return "NOT FOUND"
    except Exception:  # the API is down or restarting: we cannot tell
        return None
    return run.state.type.value if run.state is not None else None


async def mark_crashed(flow_run_id: str, why: str) -> bool:
    """Set a dead holder's flow run Crashed when Prefect still shows it unfinished; True when it was marked."""
    state = await flow_run_state(flow_run_id)
    if state is None or state in ("NOT FOUND", "COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
        return False
    try:
        async with get_client() as client:
            await client.set_flow_run_state(uuid.UUID(flow_run_id), Crashed(message=why), force=True)
    except Exception as exc:  # the lock does not depend on Prefect; say so and go on
        _logger().warning("could not mark flow run %s Crashed (%s)", flow_run_id, type(exc).__name__)
        return False
    return True


async def _acquire(
    table: LockTable, env: str, owner: Owner, lease_s: float, poll_s: float
) -> tuple[int, LeaseRow | None]:
    """Wait until the lease is free or dead and take it; returns the token and the row it replaced."""
    logger = _logger()
    told = ""
    while True:
        seen = await table.read(env)
        if seen is None or not seen.held or seen.dead():
            token = await table.try_acquire(env, owner, lease_s, seen)
            if token is not None:
                if told:
                    logger.info("lock %s acquired (fencing token %d)", lock_name(env), token)
                return token, seen if seen is not None and seen.held else None
            continue  # someone else changed it in between: look again
        if seen.flow_run_id != told:
            told = seen.flow_run_id or ""
            logger.info("environment %s is locked by another %s%s; waiting for lock %s",
                        env, seen.holder or "run", await describe(table, seen), lock_name(env))
        await asyncio.sleep(poll_s)


class Heartbeat(threading.Thread):
    """Renews the lease from its own thread, event loop and connection, so that a body that blocks the run's
    event loop cannot starve it. On a changed token, or no renewal before the lease ends, it cancels the body."""

    def __init__(self, lease: Lease, url: SecretStr, lease_s: float, renew_s: float, body: asyncio.Task[object]):
        super().__init__(name=f"lock-heartbeat-{lease.env}", daemon=True)
        self.lease, self.url, self.lease_s, self.renew_s = lease, url, lease_s, renew_s
        self.body, self.body_loop = body, body.get_loop()
        self.stopping = threading.Event()
        self._guard = threading.Lock()
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None  # the beat's own loop, once up

    def run(self) -> None:
        asyncio.run(self._beat())

    def stop(self) -> None:
        """Stop beating, at once (no polling: the beat sleeps on an event this sets)."""
        self.stopping.set()
        with self._guard:
            wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop has ended already
                wake[0].call_soon_threadsafe(wake[1].set)

    def _lose(self, why: str) -> None:
        self.lease.lost = why
        self.body_loop.call_soon_threadsafe(self.body.cancel)

    async def _beat(self) -> None:
        with self._guard:
            self._wake = (asyncio.get_running_loop(), asyncio.Event())
        lease, deadline, wait = self.lease, time.monotonic() + self.lease_s, self.renew_s
        table: LockTable | None = None
        try:
            while not self.stopping.wait(0) and not await self._sleep(wait):
                sent = time.monotonic()
                try:
                    table = table or await LockTable.connect(self.url, setup=False, size=1)
                    ok = await asyncio.wait_for(table.renew(lease.env, lease.token, self.lease_s), self.renew_s)
                except Exception as exc:  # database unreachable: again soon, until our lease would have ended
                    if time.monotonic() >= deadline:
                        self._lose(f"the lock of {lease.env} could not be renewed before its lease ended "
                                   f"({type(exc).__name__}); this run stopped so that no two runs act at once")
                        return
                    wait = min(RETRY_S, self.renew_s)
                    continue
                if not ok:
                    self._lose(f"the lock of {lease.env} was taken from this run (forced unlock or taken over; "
                               f"token {lease.token} is no longer current); this run stopped without changing more")
                    return
                deadline, wait = sent + self.lease_s, self.renew_s
        finally:
            if table is not None:
                await table.close()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, waking as soon as `stop` is called; True when stopping."""
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake[1].wait(), max(0.0, seconds))
        return self.stopping.is_set()


@asynccontextmanager
async def environment_lock(
    env: str, lease_s: float, holder: str = "deploy", *, db_url: SecretStr | None = None,
    poll_s: float = 1.0, renew_s: float | None = None,
) -> AsyncIterator[Lease]:
    """Hold the environment's lease for the body; a waiting run logs which release and flow run holds it.

    The lease is renewed every `renew_s` (default: a third of the lease, at most 5 s). When a renewal finds another
    token (a forced unlock, or a takeover after this run could not renew in time), the body is cancelled and
    LockLost raised: a fenced-off run stops touching anything. A holder whose lease expired (its process died) or
    whose process on this host is gone is taken over, and its flow run marked Crashed in Prefect.

    Args:
        env: the environment.
        lease_s: how long a lease lives without renewal (how long a crashed holder on another host blocks).
        holder: what takes the lock ("deploy", "database restore"), shown to waiting runs.
        db_url: the ledger database (default: AEVON_STATE_DB_URL).
        poll_s: how often a waiting run looks again.
        renew_s: heartbeat period.
    """
    logger = _logger()
    url = _db_url(db_url)
    table = await LockTable.connect(url, size=1)  # one statement at a time: one connection (slots are shared)
    try:
        owner = Owner.this_process(_flow_run_id(), holder.strip(" ()"))
        token, previous = await _acquire(table, env, owner, lease_s, poll_s)
        if previous is not None and previous.flow_run_id:
            why = "its lease expired" if previous.expired else f"its process {previous.pid} is gone"
            marked = await mark_crashed(previous.flow_run_id, f"the process died holding lock {lock_name(env)}")
            logger.warning("took over lock %s from flow run %s: %s%s", lock_name(env), previous.flow_run_id,
                           why, "; marked it Crashed" if marked else "")
        lease = Lease(env, token, table)
        body = asyncio.current_task()
        assert body is not None
        beat = Heartbeat(lease, url, lease_s, renew_s or min(lease_s / 3, 5.0), body)
        beat.start()
        try:
            try:
                yield lease
            finally:
                beat.stop()
                await asyncio.to_thread(beat.join)
                if not lease.lost:
                    try:
                        await table.release(env, token)
                    except Exception as exc:  # it frees itself when the lease ends
                        logger.warning("could not release lock %s (%s); it frees itself within %.0fs",
                                       lock_name(env), type(exc).__name__, lease_s)
            if lease.lost:  # the body ended (or swallowed the cancellation) after the lock was lost
                body.uncancel()
                raise LockLost(lease.lost)
        except asyncio.CancelledError:
            if lease.lost and body.uncancel() == 0:  # our own cancellation: report it as what it is
                raise LockLost(lease.lost) from None
            raise
    finally:
        await table.close()


FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass(frozen=True)
class Unlocked:
    """What `unlock` did: a line for the operator, and a warning when a live holder was fenced off by force."""

    message: str
    warning: str = ""


async def unlock(env: str, *, force: bool = False, db_url: SecretStr | None = None) -> Unlocked:
    """Free the environment's lock after its holder died; refuse while the holder may be alive, unless `force`.

    A holder is dead when its lease expired or its process on this host is gone (its flow run is then marked
    Crashed); it may be alive while its lease is fresh and Prefect does not show its flow run finished (an
    unreachable API counts as alive). Forcing moves the fencing token on: a live holder stops at its next renewal.

    Raises:
        ConfigError: the holder may be alive and `force` is not set (nothing was changed).
    """
    from providers.errors import ConfigError

    name = lock_name(env)
    table = await LockTable.connect(_db_url(db_url))
    try:
        row = await table.read(env)
        if row is None or not row.held or row.flow_run_id is None:
            return Unlocked(f"{name}: not locked")
        who = await describe(table, row)
        if row.dead():
            why = "its lease expired" if row.expired else f"its process {row.pid} is gone"
            if not await table.force_release(env, row.token):
                raise ConfigError(f"{name} changed while it was being unlocked; look again")
            marked = await mark_crashed(row.flow_run_id, f"the process died holding lock {name}; unlocked")
            return Unlocked(f"{name}: unlocked: the {row.holder or 'run'} holding it was dead ({why}){who}"
                            + ("; its flow run is marked Crashed" if marked else ""))
        state = await flow_run_state(row.flow_run_id)
        live = state not in FINAL_STATES
        if live and not force:
            raise ConfigError(
                f"{name} is held by a {row.holder or 'run'} that may be alive{who}: its flow run is "
                f"{state or 'unknown (the Prefect API did not answer)'} and its lease is renewed. Not unlocked: "
                f"it frees itself when that run ends, or when its lease ends after its process dies. If you know "
                f"the process is gone: aevon-deploy unlock {env} --force")
        if not await table.force_release(env, row.token):
            raise ConfigError(f"{name} changed while it was being unlocked; look again")
        if not live:
            return Unlocked(f"{name}: unlocked: its flow run had ended ({state}){who}")
        return Unlocked(
            f"{name}: unlocked by force{who}",
            f"WARNING: the {row.holder or 'run'} holding {name} looked alive (flow run {state or 'state unknown'}). "
            f"It is fenced off: at its next lease renewal it stops without changing anything more and ends "
            f"Failed; the next deploy of {env} compensates what it had changed.")
    finally:
        await table.close()
