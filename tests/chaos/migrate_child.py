"""A process that only runs `migrate deploy` through the Prisma migrator, for tests that kill it part way."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pydantic import SecretStr

from deployments.spec import DatabaseSpec
from providers import process_groups
from providers.migrators.base import MigratorContext
from providers.migrators.prisma.migrator import make_migrator


async def main(url: str, checkout: str, state: str) -> None:
    process_groups.record_in(Path(state) / "process-groups")  # as a deploy does: the Prisma CLI's own group
    ctx = MigratorContext(env="t", spec=DatabaseSpec(), database_url=SecretStr(url), state_dir=Path(state))
    await make_migrator(ctx).apply(Path(checkout))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
