"""Bench: a verified backup (ours) beside raw pg_dump + pg_restore of the same database of 100,000 rows.

Ours is providers.migrators.backup.PgBackup.take: counts in a REPEATABLE READ snapshot, pg_dump --format=custom
through that snapshot, a scratch database created, pg_restore --single-transaction --exit-on-error into it, its
row counts compared, the scratch database dropped. Raw is what a shell script would do for the same assurance
minus the comparison: pg_dump --format=custom, createdb, pg_restore, dropdb (the same tools, the same server).
Runs alternate (ours, raw, ours, raw ...) so that both see the same noise; medians are printed side by side.

    .venv/bin/python bench/bench_backup.py [--runs 5] [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from providers.migrators.backup import PgBackup, PgConn  # noqa: E402

ADMIN = os.environ.get("AEVON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SEED = """
CREATE TABLE "User" ("id" SERIAL PRIMARY KEY, "email" TEXT NOT NULL UNIQUE, "name" TEXT);
CREATE TABLE "Task" ("id" SERIAL PRIMARY KEY, "title" TEXT NOT NULL, "done" BOOLEAN NOT NULL DEFAULT false,
  "userId" INTEGER NOT NULL REFERENCES "User"("id"), "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE INDEX "Task_userId_idx" ON "Task"("userId");
CREATE TABLE "AuditEvent" ("id" SERIAL PRIMARY KEY, "kind" TEXT NOT NULL, "detail" JSONB NOT NULL DEFAULT '{}');
"""


async def make_database(rows: int) -> tuple[str, str]:
    """A database holding `rows` rows over three tables (1% users, 70% tasks, the rest audit events)."""
    name = f"aevon_bench_backup_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    users, tasks = max(1, rows // 100), rows * 70 // 100
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SEED)
        await conn.execute(f"""INSERT INTO "User" ("email", "name")
            SELECT 'user' || g || '@aevon.dev', 'User ' || g FROM generate_series(1, {users}) g""")
        await conn.execute(f"""INSERT INTO "Task" ("title", "done", "userId")
            SELECT 'task number ' || g, g % 3 = 0, 1 + g % {users} FROM generate_series(1, {tasks}) g""")
        await conn.execute(f"""INSERT INTO "AuditEvent" ("kind", "detail")
            SELECT 'task.created', jsonb_build_object('taskId', g, 'by', g % {users})
            FROM generate_series(1, {rows - users - tasks}) g""")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return name, url


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def run(*argv: str, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {err.decode(errors='replace')[-500:]}")


async def ours(url: str, folder: Path, i: int) -> tuple[float, float, float, int]:
    t0 = time.perf_counter()
    record = await PgBackup(SecretStr(url)).take(f"bench-{i}", folder, env="bench", release_id=None)
    wall = time.perf_counter() - t0
    if not record.verified:
        raise SystemExit(f"the backup did not verify: {record.problems}")
    return wall, record.dump_s, record.verify_s, record.rows


async def raw(url: str, folder: Path, i: int) -> float:
    conn = PgConn.from_url(SecretStr(url))
    env = conn.env()
    scratch = f"aevon_bench_raw_{secrets.token_hex(4)}"
    path = folder / f"raw-{i}.dump"
    t0 = time.perf_counter()
    await run("pg_dump", "--format=custom", "--file", str(path), env=env)
    await run("createdb", scratch, env=env)
    await run("pg_restore", "--exit-on-error", "--single-transaction", "--no-owner", "--no-privileges",
              "--dbname", scratch, str(path), env=env)
    await run("dropdb", "--force", scratch, env=env)
    return time.perf_counter() - t0


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    name, url = await make_database(args.rows)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            await ours(url, folder, -1)  # warm the caches of both paths once
            await raw(url, folder, -1)
            mine: list[tuple[float, float, float, int]] = []
            theirs: list[float] = []
            for i in range(args.runs):
                mine.append(await ours(url, folder, i))
                theirs.append(await raw(url, folder, i))
            size = (folder / "bench-0.dump").stat().st_size
    finally:
        await drop_database(name)
    wall = statistics.median(m[0] for m in mine)
    base = statistics.median(theirs)
    rows = mine[0][3]
    print(f"# PostgreSQL at {PgConn.from_url(SecretStr(url)).host}, {args.runs} alternating runs each, medians; "
          f"dump {size / 1e6:.1f} MB (custom format)")
    print(f"backup_verify rows={rows}: ours {wall:.2f}s raw {base:.2f}s ratio {wall / base:.2f}")
    print(f"backup_verify rows={rows} parts: dump+snapshot counts {statistics.median(m[1] for m in mine):.2f}s, "
          f"restore+compare+drop {statistics.median(m[2] for m in mine):.2f}s; "
          f"raw range {min(theirs):.2f}-{max(theirs):.2f}s, ours range {min(m[0] for m in mine):.2f}-"
          f"{max(m[0] for m in mine):.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
