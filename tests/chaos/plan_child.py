"""A process that records its child groups like a deploy and runs the migration plan (`migrate diff`), or a wapiti
scan, for tests that SIGKILL it part way."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pydantic import SecretStr

from deployments.spec import DatabaseSpec
from providers import process_groups
from providers.checks.dast.scan import WapitiSettings, scan
from providers.migrators.base import MigratorContext
from providers.migrators.prisma.migrator import make_migrator


async def plan(url: str, checkout: str, groups: str) -> None:
    process_groups.record_in(Path(groups))
    ctx = MigratorContext(env="t", spec=DatabaseSpec(), database_url=SecretStr(url), state_dir=Path(groups).parent)
    await make_migrator(ctx).plan(Path(checkout), None)


async def dast(url: str, out: str, groups: str) -> None:
    process_groups.record_in(Path(groups))
    await scan(url, WapitiSettings(timeout_s=300), Path(out), "killed")


if __name__ == "__main__":
    asyncio.run({"plan": plan, "dast": dast}[sys.argv[1]](*sys.argv[2:5]))
