"""Process groups of a run's child processes (wapiti, Prisma, E2E suites), recorded so the next run can kill them."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from providers.state.lock import process_start

log = logging.getLogger(__name__)

# The folder of the run holding the environment lock (<state_dir>/process-groups/<env>); unset: nothing recorded.
_FOLDER: contextvars.ContextVar[Path | None] = contextvars.ContextVar("aevon_process_groups", default=None)


def record_in(folder: Path) -> None:
    """Children started from this context on are recorded in `folder` (the deploy sets it after taking the lock)."""
    folder.mkdir(parents=True, exist_ok=True)
    _FOLDER.set(folder)


def _file(folder: Path, pid: int) -> Path:
    return folder / f"{pid}.pgid"


@contextlib.contextmanager
def recorded(pid: int) -> Iterator[None]:
    """While the body runs, the group led by `pid` (started with start_new_session=True) is in the pid file; a run
    killed meanwhile leaves the file for the next run. The file holds the leader's start time, so a pid reused by
    an unrelated process is never killed."""
    folder = _FOLDER.get()
    path = _file(folder, pid) if folder is not None else None
    if path is not None:
        with contextlib.suppress(OSError):
            path.write_text(process_start(pid))
    try:
        yield
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


def kill_left(folder: Path) -> list[str]:
    """SIGKILL every group a killed run recorded in `folder` whose leader is still the process it started; forget
    them all. Returns what it killed, as sentences. Call only while holding the environment lock."""
    done: list[str] = []
    if not folder.is_dir():
        return done
    for path in sorted(folder.glob("*.pgid")):
        try:
            pid, started = int(path.stem), path.read_text().strip()
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if started and process_start(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                done.append(f"killed process group {pid} left by a killed run")
                log.warning("killed process group %d left by a killed run", pid)
        path.unlink(missing_ok=True)
    return done
