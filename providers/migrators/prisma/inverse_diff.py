"""The inverse's per-migration down scripts: `prisma migrate diff` between migration histories, cached on disk."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from providers.errors import PermanentError
from providers.migrators.base import SharedScripts
from providers.migrators.prisma.consistency import LOCK_FILE
from providers.migrators.prisma.inverse import is_empty

# Runs `prisma migrate diff --from-migrations A --to-migrations B --script` and returns the script (the migrator
# supplies it: this module never calls back into the migrator). Raises ShadowApplyFailed on Prisma's P3006.
DiffRunner = Callable[[Path, Path], Awaitable[str]]

# P3006: "Migration `<name>` failed to apply cleanly to the shadow database."
_SHADOW_FAILED_RE = re.compile(r"Migration `([^`]+)` failed to apply cleanly to the shadow database")
_PARALLEL = max(2, min(4, os.cpu_count() or 2))  # each diff runs Prisma and two shadow databases
log = logging.getLogger("aevon.run")


class ShadowApplyFailed(PermanentError):
    """A migration fails on a fresh shadow database (Prisma P3006): it would fail on the real one as well."""

    def __init__(self, migration: str, output: str) -> None:
        self.migration = migration
        self.output = output
        super().__init__(f"{migration} fails on a shadow database: {output}", provider="prisma", resource="diff")


def shadow_failure(output: str) -> ShadowApplyFailed | None:
    """The ShadowApplyFailed a failed `migrate diff` output describes (Prisma P3006), if that is what it says."""
    found = _SHADOW_FAILED_RE.search(output)
    return ShadowApplyFailed(found.group(1), output[-3000:]) if found else None


async def inverse_steps(migrations: Path, base: list[str], pending: list[str], workdir: Path,
                        diff: DiffRunner, cache: Path | None = None,
                        shared: SharedScripts | None = None) -> dict[str, str]:
    """Per pending migration, its own down script: state k+1 -> state k, where state k = base + pending[:k].

    `migrations` is the checkout's folder, `base` the checkout's migrations that are not pending (in order), so the
    "to" side is the database's state before this deploy (empty on a first deploy: the inverse then drops
    everything the migrations created). Per-step scripts let a rollback undo exactly the migrations that got
    applied when a later one failed. `diff(from_dir, to_dir)` runs Prisma; each diff replays migrations on two
    shadow databases (the role needs CREATEDB) and takes ~2 s; `_PARALLEL` run at a time. Scratch folders go in
    `workdir`. With `cache` (a folder), each step is looked up first by the checksums of the history it spans
    (`step_key`) and stored after a successful diff: the same migrations are diffed once per state dir. With
    `shared` (the ledger's cache) too, a step missing here is looked up there and every diff is stored there: once
    for every worker and environment (a pod's state dir starts empty). The shared cache is best effort: when it
    cannot be read or written, the plan diffs here and says so in the run's log.

    Raises ShadowApplyFailed (from `diff`) when a pending migration fails on the shadow database.
    """
    keyed = cache is not None or shared is not None
    keys = await asyncio.to_thread(step_keys, migrations, base, pending) if keyed else []
    scripts: list[str | None] = [await asyncio.to_thread(_cached, cache, key) for key in keys] if cache else \
        [None] * len(pending)
    missing = [k for k, sql in enumerate(scripts) if sql is None]
    if missing and shared is not None:
        found = await _shared_get(shared, [keys[k] for k in missing])
        for k in missing:
            if keys[k] in found:
                scripts[k] = found[keys[k]]
                if cache is not None:
                    await asyncio.to_thread(_store, cache, keys[k], found[keys[k]])
        missing = [k for k in missing if scripts[k] is None]
    if missing:
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="inverse-", dir=workdir))
        try:
            gate = asyncio.Semaphore(_PARALLEL)

            async def one(k: int) -> None:
                async with gate:
                    history = base + pending[:k + 1]
                    before = await asyncio.to_thread(_migrations_dir, tmp / f"{k}-to", migrations, history[:-1])
                    after = migrations if k == len(pending) - 1 else await asyncio.to_thread(
                        _migrations_dir, tmp / f"{k}-from", migrations, history)
                    scripts[k] = sql = await diff(after, before)
                    if cache is not None:
                        await asyncio.to_thread(_store, cache, keys[k], sql)
                    if shared is not None:
                        await _shared_put(shared, keys[k], sql)

            await asyncio.gather(*(one(k) for k in missing))
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, ignore_errors=True)
    return {name: "" if is_empty(sql) else str(sql).strip() + "\n" for name, sql in zip(pending, scripts,
                                                                                               strict=True)}


async def _shared_get(shared: SharedScripts, keys: list[str]) -> dict[str, str]:
    try:
        return await shared.get_many(keys)
    except Exception as exc:  # a cache: never the reason a plan fails
        log.warning("the shared inverse cache could not be read (%s): diffing here", type(exc).__name__)
        return {}


async def _shared_put(shared: SharedScripts, key: str, script: str) -> None:
    try:
        await shared.put(key, script)
    except Exception as exc:
        log.warning("the shared inverse cache could not keep a down script (%s)", type(exc).__name__)


CACHE_VERSION = "aevon-inverse-v1"  # bump when the way a step is computed changes (another Prisma major, ...)


def step_keys(migrations: Path, base: list[str], pending: list[str]) -> list[str]:
    """Per pending migration the cache key of its down script: a SHA-256 over the lock file and the (name,
    SHA-256 of migration.sql) of every migration up to and including it, since its inverse is the diff from that
    whole history back to the one before it. Editing, adding or reordering any earlier migration changes the key.
    """
    lock = migrations / LOCK_FILE
    h = hashlib.sha256(CACHE_VERSION.encode())
    h.update(lock.read_bytes() if lock.is_file() else b"")
    for name in base:
        h.update(f"\n{name}:{_checksum(migrations / name)}".encode())
    keys = []
    for name in pending:
        h.update(f"\n{name}:{_checksum(migrations / name)}".encode())
        keys.append(h.copy().hexdigest())
    return keys


def _checksum(folder: Path) -> str:
    sql = folder / "migration.sql"
    return hashlib.sha256(sql.read_bytes()).hexdigest() if sql.is_file() else "-"


def _cached(cache: Path, key: str) -> str | None:
    try:
        return (cache / f"{key}.sql").read_text()
    except FileNotFoundError:
        return None


def _store(cache: Path, key: str, sql: str) -> None:
    """Written to a temporary name then renamed: a reader never sees half a script."""
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{key}.{os.getpid()}.tmp"
    tmp.write_text(sql)
    os.replace(tmp, cache / f"{key}.sql")


def _migrations_dir(dest: Path, source: Path, names: list[str]) -> Path:
    """A migrations folder at `dest` holding `names` (copied from `source`) and its migration_lock.toml."""
    dest.mkdir(parents=True)
    lock = source / LOCK_FILE
    if lock.is_file():
        shutil.copyfile(lock, dest / LOCK_FILE)
    else:
        (dest / LOCK_FILE).write_text('provider = "postgresql"\n')
    for name in names:
        shutil.copytree(source / name, dest / name)
    return dest
