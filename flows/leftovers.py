"""What a killed run of an environment left behind, cleaned by the next run once it holds the lock (issue 18)."""

from __future__ import annotations

import logging

from flows.runtime import Runtime
from providers import process_groups

log = logging.getLogger("aevon.leftovers")


async def clean_leftovers(rt: Runtime) -> list[str]:
    """Kill the child process groups a killed run recorded (wapiti, Prisma, E2E suites), drop the Prisma shadow
    databases it left, then record this run's own children in the same folder. Returns what it did, as sentences.

    Only under the environment lock: no other run of the environment is alive, so every group recorded is dead
    weight. A cleanup that fails is logged and does not stop the deploy (it removes leftovers, it changes nothing
    the deploy relies on)."""
    folder = rt.state_dir / "process-groups" / rt.spec.environment
    done = process_groups.kill_left(folder)
    if rt.migrator is not None:
        try:
            done += await rt.migrator.clean_leftovers()
        except Exception as exc:
            log.warning("could not drop leftover shadow databases: %s", type(exc).__name__)
    process_groups.record_in(folder)
    for line in done:
        log.warning("%s", line)
    return done
