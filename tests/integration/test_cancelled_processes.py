"""Fail fast kills what a cancelled check started: wapiti (DAST), the locust runner (perf), Chromium (E2E)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from providers.checks.base import Check, CheckInput
from providers.models import Release, ServiceVersion
from providers.registry import CHECKS, resolve
from tasks.stop import StopSignal, until_stopped
from tests.integration.checks_support import context

PAGE = (b"<html><head><title>t</title></head><body><form action='/search' method='get'>"
        b"<input name='q'><input type='submit'></form><a href='/a?x=1'>a</a></body></html>")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def descendants() -> dict[int, tuple[psutil.Process, str]]:
    """This process's live descendants: pid -> (process, command line)."""
    out: dict[int, tuple[psutil.Process, str]] = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out[p.pid] = (p, " ".join(p.cmdline()))
        except psutil.NoSuchProcess:
            continue
    return out


def alive(procs: dict[int, tuple[psutil.Process, str]]) -> list[str]:
    out = []
    for p, cmd in procs.values():
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {cmd[:120]}")
        except psutil.NoSuchProcess:
            continue
    return out


async def cancel_once_started(check: Check, inp: CheckInput, expect: str,
                              count: int = 1) -> dict[int, tuple[psutil.Process, str]]:
    """Run `check` until `count` child processes whose command line has `expect` run; fire the stop; return them."""
    before = set(descendants())
    stop = StopSignal()
    run = asyncio.ensure_future(until_stopped(check.run(inp), stop))
    for _ in range(600):
        await asyncio.sleep(0.1)
        assert not run.done(), f"the check ended before its {expect} processes were seen: {run.result()}"
        if sum(expect in cmd for pid, (_, cmd) in descendants().items() if pid not in before) >= count:
            break
    else:
        pytest.fail(f"fewer than {count} {expect} processes within 60s")
    await asyncio.sleep(0.5)  # let it spawn its own children (Chromium's zygote, renderers)
    seen = {pid: v for pid, v in descendants().items() if pid not in before}
    stop.set("fast-fail failed")
    result, stopped = await run
    assert stopped and result is None
    return seen


def inp(url: str) -> CheckInput:
    release = Release(release_id="r1", env="dev", ref="v2", sha="0" * 40)
    return CheckInput(release=release, services={"web": ServiceVersion(service="web", version="0" * 40, url=url),
                                                 "api": ServiceVersion(service="api", version="0" * 40, url=url)})


def build(tmp: Path, kind: str, settings: dict[str, Any]) -> Check:
    factory = resolve(CHECKS, "check kind", kind, f"validation.{kind}")
    check: Check = factory(context(tmp, kind, settings))
    return check


async def test_a_cancelled_dast_scan_leaves_no_wapiti(site: str, tmp_path: Path) -> None:
    check = build(tmp_path, "dast", {"fail_level": "MEDIUM", "passive": {"paths": ["/"]},
                                     "wapiti": {"max_scan_time_s": 120, "max_attack_time_s": 60}})
    seen = await cancel_once_started(check, inp(site), "wapiti")
    assert seen and alive(seen) == []


async def test_a_cancelled_perf_smoke_leaves_no_locust(site: str, tmp_path: Path) -> None:
    check = build(tmp_path, "perf", {"users": 2, "duration_s": 60, "endpoints": [{"path": "/"}]})
    seen = await cancel_once_started(check, inp(site), "perf")
    assert seen and alive(seen) == []


async def test_a_cancelled_e2e_run_leaves_no_chromium(site: str, tmp_path: Path) -> None:
    flows = [{"name": "waits", "steps": [{"goto": "/"}, {"expect_text": "#never", "text": "never"}]}]
    check = build(tmp_path, "e2e", {"step_timeout_s": 60, "flows": flows})
    seen = await cancel_once_started(check, inp(site), "chrom", count=2)
    assert sum("chrom" in cmd for _, cmd in seen.values()) >= 2  # the browser and its helpers had started
    assert alive(seen) == []
