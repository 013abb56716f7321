"""Nothing left behind (issue 18 item 5): a run SIGKILLed during `migrate diff` or a DAST scan leaves its child
groups recorded; the next run's cleanup kills them and drops the Prisma shadow databases."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from deployments.spec import DatabaseSpec
from providers import process_groups
from providers.migrators.base import MigratorContext
from providers.migrators.prisma.migrator import make_migrator
from tests.integration.test_migration_readiness import A, B, checkout
from tests.pg import fetch, temp_database
from tests.sample_app import ROOT, ensure_prisma_toolkit

pytestmark = pytest.mark.slow
SHADOWS = "SELECT datname FROM pg_database WHERE datname LIKE 'prisma\\_migrate\\_shadow\\_db\\_%'"


def alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.chaos.plan_child", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def recorded(groups: Path) -> list[int]:
    return [int(p.stem) for p in groups.glob("*.pgid")]


async def test_a_run_killed_during_migrate_diff_leaves_nothing_after_the_next_cleanup(tmp_path: Path) -> None:
    ensure_prisma_toolkit()
    root = checkout(tmp_path / "app", [A, B])
    groups = tmp_path / "state" / "process-groups" / "t"
    async with temp_database() as url:
        m = make_migrator(MigratorContext(env="t", spec=DatabaseSpec(), database_url=SecretStr(url),
                                          state_dir=tmp_path / "m"))
        await m.apply(checkout(tmp_path / "old", [A]))
        before = {r["datname"] for r in await fetch(url, SHADOWS)}
        proc = start("plan", url, str(root), str(groups))
        try:
            for _ in range(600):  # the diff has created its shadow database: SIGKILL the run (its process only)
                assert proc.poll() is None, "the plan finished before a shadow database was seen"
                if {r["datname"] for r in await fetch(url, SHADOWS)} - before and recorded(groups):
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("never saw a shadow database")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        [pgid] = recorded(groups)
        # the next run (under the lock): kill what the dead run recorded, then drop the shadow databases
        assert alive(pgid)  # the dead run's Prisma still runs its diff, its shadow database exists
        assert process_groups.kill_left(groups) == [f"killed process group {pgid} left by a killed run"]
        for _ in range(100):
            if not alive(pgid):
                break
            await asyncio.sleep(0.05)
        assert not alive(pgid) and recorded(groups) == []
        dropped = await m.clean_leftovers()
        left = {r["datname"] for r in await fetch(url, SHADOWS)} - before
        assert left == set(), left
        assert dropped and all(d.startswith("dropped shadow database prisma_migrate_shadow_db_") for d in dropped)


@pytest.fixture
def slow_site() -> Iterator[str]:
    """A site wapiti crawls for a while (every page links to two more)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            n = abs(hash(self.path)) % 10_000
            body = f'<html><a href="/p{n}a?q=1">a</a><a href="/p{n}b?q=2">b</a></html>'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


async def test_a_run_killed_during_a_dast_scan_leaves_no_wapiti_after_the_next_cleanup(
    tmp_path: Path, slow_site: str
) -> None:
    groups = tmp_path / "state" / "process-groups" / "t"
    proc = start("dast", slow_site, str(tmp_path / "out"), str(groups))
    try:
        for _ in range(600):
            assert proc.poll() is None, "the scan finished before wapiti was seen"
            if recorded(groups):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("wapiti never started")
        await asyncio.sleep(1)  # wapiti is crawling
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [pgid] = recorded(groups)
    assert alive(pgid)  # the killed run left wapiti running: what the crash sweep saw
    assert process_groups.kill_left(groups) == [f"killed process group {pgid} left by a killed run"]
    for _ in range(100):
        if not alive(pgid):
            break
        await asyncio.sleep(0.05)
    assert not alive(pgid) and recorded(groups) == []
    assert process_groups.kill_left(groups) == []  # idempotent
