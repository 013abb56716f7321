"""The local target's state file: instances, active/standby slots and history, written atomically under a lock."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from providers.errors import PermanentError, TransientError
from providers.models import utcnow
from providers.targets.local.process import atomic_write_text

Status = Literal["starting", "active", "standby", "stopping", "stopped", "failed"]
LIVE: frozenset[str] = frozenset({"starting", "active", "standby", "stopping"})
_KEEP_TERMINAL = 30  # stopped/failed instances kept in the file (the newest ones)


class Instance(BaseModel):
    """One process of the service: one version on one backend port."""

    id: str
    seq: int
    sha: str
    release_id: str | None = None
    kind: Literal["deploy", "rollback"] = "deploy"
    port: int
    checkout: str
    log: str
    pid: int | None = None
    start_time: int | None = None
    status: Status = "starting"
    message: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    activated_at: datetime | None = None


class HistoryEntry(BaseModel):
    """One switch of the stable port to an instance."""

    version: str
    release_id: str | None = None
    instance: str
    event: Literal["deploy", "rollback"]
    at: datetime = Field(default_factory=utcnow)


class State(BaseModel):
    """Everything the target knows about its service, in `state.json`."""

    service: str
    seq: int = 0
    active: str | None = None
    standby: str | None = None
    canary: str | None = None  # an instance taking `canary_weight` % of new connections (a canary step)
    canary_weight: int = 0
    instances: dict[str, Instance] = Field(default_factory=dict)
    history: list[HistoryEntry] = Field(default_factory=list)  # oldest first

    def get(self, instance_id: str | None) -> Instance | None:
        return self.instances.get(instance_id) if instance_id else None

    def prune(self) -> list[Instance]:
        """Forget all but the newest terminal instances; return the forgotten ones (their logs may go)."""
        terminal = sorted(
            (i for i in self.instances.values()
             if i.status not in LIVE and i.id not in (self.active, self.standby, self.canary)),
            key=lambda i: i.seq,
        )
        dropped = terminal[:-_KEEP_TERMINAL] if len(terminal) > _KEEP_TERMINAL else []
        for inst in dropped:
            del self.instances[inst.id]
        return dropped


class StateStore:
    """The directory of one service's local state: state file, lock, logs, pid files, proxy control and info."""

    def __init__(self, root: Path, service: str) -> None:
        self.root = root
        self.service = service
        self.state_path = root / "state.json"
        self.lock_path = root / "state.lock"
        self.control_path = root / "upstream.json"  # read by the proxy daemon on each new connection
        self.proxy_info_path = root / "proxy.json"  # written by the proxy daemon once it listens
        self.proxy_log = root / "logs" / "proxy.log"

    def log_path(self, instance_id: str) -> Path:
        return self.root / "logs" / f"{instance_id}.log"

    def pid_path(self, instance_id: str) -> Path:
        return self.root / "pids" / f"{instance_id}.pid"

    def load(self) -> State:
        """The current state (empty when the service was never deployed); safe without the lock."""
        try:
            raw = self.state_path.read_text()
        except FileNotFoundError:
            return State(service=self.service)
        try:
            return State.model_validate_json(raw)
        except ValidationError as exc:
            raise PermanentError(
                f"state file is not valid ({exc.error_count()} errors); move it aside to start afresh",
                provider="local", resource=str(self.state_path),
            ) from exc

    def save(self, state: State) -> None:
        """Write `state` atomically (call while holding the lock)."""
        for inst in state.prune():
            for path in (self.log_path(inst.id), self.pid_path(inst.id)):
                with contextlib.suppress(OSError):
                    path.unlink()
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.state_path, state.model_dump_json(indent=2) + "\n")

    @contextlib.asynccontextmanager
    async def lock(self, timeout: float = 60) -> AsyncIterator[None]:
        """Hold the state lock (fcntl.flock, so other processes and other targets in this one wait)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TransientError(
                            "state lock is held by another process", provider="local", resource=str(self.lock_path)
                        ) from None
                    await asyncio.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[State]:
        """Lock, load, yield the state for changes, save it when the block ends."""
        async with self.lock():
            state = self.load()
            try:
                yield state
            finally:  # saved even when the block fails: its side effects (a started process) are recorded
                self.save(state)
