"""Bench: the migration plan beside the apply it prepares, for 1, 20 and 150 pending migrations (issue 17).

A generated history (each migration adds a table, a column and an index) in a fresh database per case, through
the real PrismaMigrator and Prisma CLI of the toolkit. Cases: 1 and 20 pending on top of 10 applied migrations
(each pending one gets its inverse from `prisma migrate diff`), and 150 pending into an empty database (a first
deploy: nothing to invert, so no diff runs). "cold" plans with an empty state dir, "cached" plans again on the same
worker (its state dir), "another worker" on a new one whose state dir is empty, the inverses found in the ledger's
shared cache (a Kubernetes pod; prod after staging); "apply" is `prisma migrate deploy` of the
same pending migrations. Goal: plan <= apply + 1 s.

    .venv/bin/python bench/bench_migration_plan.py [--cases 1,20,150]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from deployments.spec import DatabaseSpec  # noqa: E402
from providers.migrators.base import MigratorContext  # noqa: E402
from providers.migrators.prisma.migrator import PrismaMigrator  # noqa: E402
from providers.state.store import StateStore  # noqa: E402

ADMIN = os.environ.get("AEVON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SCHEMA = """generator client {
  provider   = "prisma-client-js"
  engineType = "client"
}

datasource db {
  provider = "postgresql"
  url      = env("DATABASE_URL")
}
"""


def migration(k: int) -> str:
    return (f'CREATE TABLE "T{k}" ("id" SERIAL NOT NULL, "name" TEXT NOT NULL, CONSTRAINT "T{k}_pkey" PRIMARY KEY '
            f'("id"));\nALTER TABLE "T{k}" ADD COLUMN "note" TEXT;\nCREATE INDEX "T{k}_name_idx" ON "T{k}"("name");\n')


def checkout(root: Path, count: int) -> Path:
    """An app checkout whose prisma/migrations holds the first `count` migrations of the generated history."""
    folder = root / "prisma" / "migrations"
    folder.mkdir(parents=True)
    (root / "prisma" / "schema.prisma").write_text(SCHEMA)
    (folder / "migration_lock.toml").write_text('provider = "postgresql"\n')
    for k in range(count):
        (folder / f"2025{k:010d}_t{k}").mkdir()
        (folder / f"2025{k:010d}_t{k}" / "migration.sql").write_text(migration(k))
    return root


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def case(tmp: Path, base: int, pending: int) -> str:
    name = f"aevon_bench_plan_{secrets.token_hex(4)}"
    await admin(f'CREATE DATABASE "{name}"')
    await admin(f'CREATE DATABASE "{name}_ledger"')
    try:
        url = SecretStr(ADMIN.rsplit("/", 1)[0] + f"/{name}")
        async with StateStore(SecretStr(ADMIN.rsplit("/", 1)[0] + f"/{name}_ledger")) as ledger:

            def migrator(pod: str) -> PrismaMigrator:  # a worker: its own state dir, the ledger's shared cache
                return PrismaMigrator(MigratorContext(env="bench", spec=DatabaseSpec(), database_url=url,
                                                      state_dir=tmp / f"state-{base}-{pending}-{pod}",
                                                      shared=ledger.inverse_cache))

            if base:
                await migrator("setup").apply(checkout(tmp / f"base-{base}-{pending}", base))
            app = checkout(tmp / f"app-{base}-{pending}", base + pending)
            t0 = time.perf_counter()
            plan = await migrator("a").plan(app, None)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            await migrator("a").plan(app, None)
            cached = time.perf_counter() - t0
            t0 = time.perf_counter()
            await migrator("b").plan(app, None)
            shared = time.perf_counter() - t0
            t0 = time.perf_counter()
            done = await migrator("a").apply(app)
            apply = time.perf_counter() - t0
        assert len(plan.pending) == pending and len(done.applied) == pending, (plan.pending, done.applied)
        inverses = sum(1 for s in plan.inverse_steps.values() if s.strip())
        where = f"on {base} applied" if base else "into an empty database"

        def verdict(t: float) -> str:
            return "met" if t <= apply + 1.0 else "NOT met"

        return (f"migration_plan pending={pending} ({where}, {inverses} inverses): plan cold {cold:.1f} s "
                f"({verdict(cold)}), plan cached {cached:.1f} s ({verdict(cached)}), plan on another worker "
                f"(ledger cache) {shared:.1f} s ({verdict(shared)}), apply {apply:.1f} s; goal plan <= apply + 1 s")
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin(f'DROP DATABASE IF EXISTS "{name}_ledger" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="1,20,150")
    args = parser.parse_args()
    print(f"# real Prisma CLI, PostgreSQL at {ADMIN.rsplit('@', 1)[-1].rsplit('/', 1)[0]}; {os.cpu_count()} cores",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.cases.split(",")):
            print(await case(Path(tmp), 0 if n >= 100 else 10, n), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
