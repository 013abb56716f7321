"""Unit tests of the local target's parts: settings validation, scrubbing, state file and lock, liveness."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from deployments.spec import ServiceSpec
from providers.errors import ConfigError
from providers.registry import TARGETS, resolve
from providers.targets.base import ServiceTarget, TargetContext
from providers.targets.local.process import log_tail, pid_alive, proc_start_time, scrub
from providers.targets.local.proxy import Upstream, read_upstream, write_upstream
from providers.targets.local.state import StateStore
from providers.targets.local.target import LocalTarget, make_target

GOOD: dict[str, Any] = {"command": ["{python}", "app.py", "--port", "{port}"], "port": 18080}


def ctx(tmp: Path, settings: dict[str, Any], secrets: dict[str, SecretStr] | None = None) -> TargetContext:
    spec = ServiceSpec(name="api", provider="local", settings=settings)
    return TargetContext(env="dev", spec=spec, secrets=secrets or {}, state_dir=tmp)


async def test_registry_factory_builds_a_service_target(tmp_path: Path) -> None:
    factory = resolve(TARGETS, "target", "local", "services[0].provider")
    target = factory(ctx(tmp_path, GOOD))
    assert isinstance(target, LocalTarget) and isinstance(target, ServiceTarget)
    assert target.settings.health_path == "/health" and target.settings.startup_timeout_s == 30
    assert target.settings.ready_requires_2xx is False and target.url == "http://127.0.0.1:18080"
    assert await target.current() is None and await target.history() == []
    await target.aclose()


@pytest.mark.parametrize(
    ("settings", "location"),
    [
        ({"port": 18080}, "services.api.settings.command"),
        ({**GOOD, "port": 70000}, "services.api.settings.port"),
        ({**GOOD, "command": []}, "services.api.settings.command"),
        ({**GOOD, "command": ["{python}", "--port={prot}"]}, "services.api.settings.command.1"),
        ({**GOOD, "health_path": "health"}, "services.api.settings.health_path"),
        ({**GOOD, "startup_timeout_s": 0}, "services.api.settings.startup_timeout_s"),
        ({**GOOD, "env": {"BAD-NAME": "x"}}, "services.api.settings.env.BAD-NAME.[key]"),
        ({**GOOD, "prot": 1}, "services.api.settings.prot"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, settings: dict[str, Any], location: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_target(ctx(tmp_path, settings))
    assert info.value.location == location


def test_secret_names_must_be_environment_variable_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_target(ctx(tmp_path, GOOD, {"db-url": SecretStr("postgres://u:p@h/db")}))
    assert info.value.location == "services.api.secrets.db-url"
    assert "postgres" not in str(info.value)


def test_unknown_placeholder_message_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown placeholder \{chekout\}.*\{checkout\}"):
        make_target(ctx(tmp_path, {**GOOD, "command": ["{python}", "{chekout}/app.py"]}))


def test_scrub_hides_secret_values_and_url_passwords() -> None:
    url = "postgresql://app:hunter2%21@db:5432/app"
    text = f"connecting to {url}\nauth failed for password hunter2! and hunter2%21; token tok-123"
    out = scrub(text, [url, "tok-123", ""])
    assert "hunter2" not in out and "tok-123" not in out and "postgresql://app" not in out
    assert out.count("***") == 4


def test_log_tail_keeps_the_last_lines_scrubbed(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i} secret-value\n" for i in range(100)))
    tail = log_tail(log, ["secret-value"], lines=3)
    assert tail == "line 97 ***\nline 98 ***\nline 99 ***"
    assert log_tail(tmp_path / "missing.log", []) == ""


async def test_state_transactions_serialize_and_persist(tmp_path: Path) -> None:
    one, two = StateStore(tmp_path, "api"), StateStore(tmp_path, "api")  # two targets, as in two processes

    async def bump(store: StateStore) -> None:
        async with store.transaction() as st:
            seen = st.seq
            await asyncio.sleep(0.05)  # the other one must wait for the lock here
            st.seq = seen + 1

    await asyncio.gather(*(bump(s) for s in (one, two, one, two)))
    assert one.load().seq == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".state.json")] == []  # no temp left


def test_upstream_control_file_round_trip(tmp_path: Path) -> None:
    control = tmp_path / "upstream.json"
    assert read_upstream(control) is None
    write_upstream(control, Upstream(4242, "i1-abc", "abc"))
    assert read_upstream(control) == Upstream(4242, "i1-abc", "abc")


def test_pid_alive_tells_a_reused_pid_and_a_zombie_from_a_live_process() -> None:
    me = os.getpid()
    start = proc_start_time(me)
    assert pid_alive(me, start)
    if start is not None:
        assert not pid_alive(me, start + 1)
    if not Path("/proc/self/stat").exists():
        return
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)  # until it has ended and, not reaped yet, stays a zombie
        assert not pid_alive(child.pid)
    finally:
        child.wait()
    assert not pid_alive(None) and not pid_alive(-1)
