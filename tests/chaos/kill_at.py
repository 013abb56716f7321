"""Test-only plugin (AEVON_PLUGINS=...,tests.chaos.kill_at): SIGKILL this process at a named report step boundary.

`AEVON_CHAOS_KILL_AT="<step name prefix>@started"` (or `@finished`) kills the deploy process the instant the first
report step whose name starts with the prefix is announced started (finished): a step listener (flows/report.py
`add_step_listener`, the hook the CLI's live progress uses), so no product code knows about it. Without the
variable, importing this module does nothing. Child processes in sessions of their own (Prisma, local services,
scanners) are not killed: what a SIGKILL of the deployer leaves is what the next run has to deal with.
"""

from __future__ import annotations

import os
import signal

from flows.report import StepRecord, add_step_listener

VAR = "AEVON_CHAOS_KILL_AT"
TARGETS: dict[str, str] = {}
CHECKS: dict[str, str] = {}
MIGRATORS: dict[str, str] = {}


def _parse(value: str) -> tuple[str, bool]:
    prefix, _, when = value.rpartition("@")
    if not prefix or when not in ("started", "finished"):
        raise SystemExit(f"{VAR}={value!r}: expected '<step name prefix>@started' or '@finished'")
    return prefix, when == "finished"


def _install(value: str) -> None:
    prefix, at_end = _parse(value)

    def listener(rec: StepRecord, finished: bool) -> None:
        if finished == at_end and rec.name.startswith(prefix):
            os.kill(os.getpid(), signal.SIGKILL)

    add_step_listener(listener)


if os.environ.get(VAR):  # imported once per process (the plugin registry's import)
    _install(os.environ[VAR])
