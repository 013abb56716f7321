"""The local target with real processes and ports: blue/green switches, rollback, crashes, orchestrator restarts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from providers.models import DeployResult, DeployStatus, ServiceVersion
from providers.targets.local.process import pid_alive, read_json
from providers.targets.local.proxy import Upstream, write_upstream
from providers.targets.local.state import StateStore
from providers.targets.local.target import LocalTarget, make_target
from tests.contract.harness import make_release
from tests.contract.harness_local import LocalHarness

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[LocalHarness]:
    harness = LocalHarness()
    await harness.start(tmp_path)
    yield harness
    await harness.stop()


async def ship(target: LocalTarget, sha: str, release_id: str | None = None) -> DeployResult:
    handle = await target.deploy(make_release("dev", sha, release_id))
    return await target.wait_ready(handle, 60)


async def fetch(url: str) -> dict[str, object]:
    """GET / on a fresh connection; the app answers its version, pid and instance."""
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        resp = await client.get(url + "/")
        resp.raise_for_status()
        doc = resp.json()
        assert isinstance(doc, dict)
        return doc


def store(h: LocalHarness, service: str = "api") -> StateStore:
    return StateStore(h.state_dir / f"local-{service}", service)


def pids_with_env(key: str, value: str) -> list[int]:
    """Live processes whose environment has key=value (how many processes run one release)."""
    needle = f"{key}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in env and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


async def test_deploy_switch_and_instant_rollback_to_the_standby(h: LocalHarness) -> None:
    t = h.make_target("api")
    assert await t.current() is None
    r1 = await ship(t, h.sha(1))
    assert r1.status is DeployStatus.READY, r1.message
    cur = await t.current()
    assert cur is not None and cur.version == h.sha(1) and cur.detail["alive"] is True
    assert cur.url == t.url
    assert (await fetch(t.url))["version"] == "v1"

    r2 = await ship(t, h.sha(2))
    assert r2.status is DeployStatus.READY, r2.message
    assert (await fetch(t.url))["version"] == "v2"
    cur2 = await t.current()
    assert cur2 is not None and cur2.version == h.sha(2) and cur2.detail["standby"] == h.sha(1)

    handle = await t.rollback(cur)
    assert handle.vendor_ref == r1.handle.vendor_ref  # the warm standby, not a new process
    result = await t.wait_ready(handle, 30)
    assert result.status is DeployStatus.READY, result.message
    served = await fetch(t.url)
    assert served["version"] == "v1" and served["pid"] == r1.handle.detail["pid"]
    assert [v.version for v in await t.history()] == [h.sha(1), h.sha(2), h.sha(1)]
    assert (await t.history())[0].detail["event"] == "rollback"

    # rolling back to what already serves is a no-op
    again = await t.rollback(cur)
    assert again.vendor_ref == handle.vendor_ref
    assert h.vendor_deployment_count("api") == 2
    await t.aclose()


async def test_rollback_to_a_stopped_version_starts_it_from_a_checkout(h: LocalHarness) -> None:
    t = h.make_target("api")
    r1 = await ship(t, h.sha(1))
    await ship(t, h.sha(2))
    await ship(t, h.sha(3))  # v2 becomes the standby, v1 is stopped
    assert not pid_alive(int(str(r1.handle.detail["pid"])))
    handle = await t.rollback(ServiceVersion(service="api", version=h.sha(1), release_id=r1.handle.release_id))
    assert handle.vendor_ref != r1.handle.vendor_ref
    result = await t.wait_ready(handle, 60)
    assert result.status is DeployStatus.READY, result.message
    served = await fetch(t.url)
    assert served["version"] == "v1" and served["pid"] == handle.detail["pid"]
    cur = await t.current()
    assert cur is not None and cur.detail["standby"] == h.sha(3)
    await t.aclose()


async def test_a_rollback_stops_a_deploy_abandoned_while_it_was_starting(h: LocalHarness) -> None:
    """Fail fast gives up the wait of a deploy in flight; the rollback that follows stops its process."""
    t = h.make_target("api")
    r1 = await ship(t, h.sha(1))
    assert r1.status is DeployStatus.READY, r1.message
    cur = await t.current()
    assert cur is not None
    handle = await t.deploy(make_release("dev", h.sha(2)))  # nobody waits for it: never activated
    back = await t.wait_ready(await t.rollback(cur), 30)
    assert back.status is DeployStatus.READY and (await fetch(t.url))["version"] == "v1"
    [abandoned] = [i for i in store(h).load().instances.values() if i.id == handle.vendor_ref]
    assert abandoned.status == "stopped" and abandoned.message == "rolled back while it was starting"
    assert abandoned.pid is not None and not pid_alive(abandoned.pid, abandoned.start_time)
    await t.aclose()


async def test_no_failed_request_while_the_stable_port_switches(h: LocalHarness) -> None:
    t = h.make_target("api")
    assert (await ship(t, h.sha(1))).status is DeployStatus.READY
    errors: list[str] = []
    seen: Counter[str] = Counter()
    stop = asyncio.Event()

    async def hammer(keepalive: bool) -> None:
        limits = httpx.Limits(max_keepalive_connections=4 if keepalive else 0)
        async with httpx.AsyncClient(trust_env=False, timeout=10, limits=limits) as client:
            while not stop.is_set():
                try:
                    resp = await client.get(t.url + "/")
                    if resp.status_code != 200:
                        errors.append(f"status {resp.status_code}")
                    else:
                        seen[str(resp.json()["version"])] += 1
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

    async def until(cond: Callable[[], bool], limit: float) -> None:  # bounded waits, never asserted on
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        while not cond() and loop.time() < end:
            await asyncio.sleep(0.02)

    clients = [asyncio.create_task(hammer(keepalive=False)) for _ in range(3)]
    clients.append(asyncio.create_task(hammer(keepalive=True)))
    await until(lambda: seen["v1"] >= 30, 5)
    result = await ship(t, h.sha(2))
    await until(lambda: seen["v2"] >= 100, 5)
    stop.set()
    await asyncio.gather(*clients)
    assert result.status is DeployStatus.READY, result.message
    assert errors == []
    assert seen["v1"] > 0 and seen["v2"] > 0
    assert (await fetch(t.url))["version"] == "v2"  # every new connection after the switch goes to v2
    await t.aclose()


async def test_the_proxy_answers_a_client_that_half_closes_after_its_request(h: LocalHarness) -> None:
    t = h.make_target("api")
    assert (await ship(t, h.sha(1))).status is DeployStatus.READY
    reader, writer = await asyncio.open_connection("127.0.0.1", h.ports["api"])
    writer.write(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
    writer.write_eof()  # as `curl`-like tools and HTTP/1.0 clients may do
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 200") and b'"version": "v1"' in reply, reply
    await t.aclose()


async def test_deploying_one_release_twice_runs_one_process(h: LocalHarness) -> None:
    t = h.make_target("api")
    release = make_release("dev", h.sha(1))
    first = await t.deploy(release)
    second = await t.deploy(release)
    assert first.vendor_ref == second.vendor_ref and first.detail["pid"] == second.detail["pid"]
    assert (await t.wait_ready(second, 60)).status is DeployStatus.READY
    third = await h.make_target("api").deploy(release)  # another CLI process, same release id
    assert third.vendor_ref == first.vendor_ref
    assert h.vendor_deployment_count("api") == 1
    assert len(pids_with_env("AEVON_RELEASE_ID", release.release_id)) == 1
    await t.aclose()


async def test_a_version_that_crashes_at_start_fails_and_the_old_one_keeps_serving(h: LocalHarness) -> None:
    t = h.make_target("api")
    assert (await ship(t, h.sha(1))).status is DeployStatus.READY
    bad = await ship(t, h.failing_sha())
    assert bad.status is DeployStatus.FAILED
    assert "exited" in bad.message and "fatal: cannot connect" in bad.message  # the log tail is there ...
    assert h.secret not in bad.message and "***" in bad.message  # ... without the secret
    assert (await fetch(t.url))["version"] == "v1"
    cur = await t.current()
    assert cur is not None and cur.version == h.sha(1)
    again = await t.wait_ready(bad.handle, 5)  # the verdict is stable
    assert again.status is DeployStatus.FAILED and h.secret not in again.message
    await t.aclose()


async def test_a_503_health_is_deployed_unless_2xx_is_required(h: LocalHarness) -> None:
    lenient = h.make_target("api")
    result = await ship(lenient, h.versions["sick"])
    assert result.status is DeployStatus.READY, result.message  # listening: validation judges the 503
    strict = make_target(h.context("strict", ready_requires_2xx=True, startup_timeout_s=2))
    refused = await ship(strict, h.versions["sick"])
    assert refused.status is DeployStatus.FAILED and "answered 503" in refused.message
    assert await strict.current() is None
    assert not pid_alive(int(str(refused.handle.detail["pid"])))
    await lenient.aclose()
    await strict.aclose()


async def test_a_process_that_never_listens_times_out_and_is_stopped(h: LocalHarness) -> None:
    t = make_target(h.context("api", startup_timeout_s=1.5))
    result = await ship(t, h.versions["mute"])
    assert result.status is DeployStatus.FAILED and "not ready within 1.5s" in result.message
    assert not pid_alive(int(str(result.handle.detail["pid"])))
    assert await t.current() is None
    await t.aclose()


_ORCHESTRATOR = """
import asyncio, json, sys
from pathlib import Path
from tests.contract.harness import make_release
from tests.contract.harness_local import LocalHarness

async def main() -> None:
    args = json.loads(sys.argv[1])
    h = LocalHarness()
    h.tmp, h.versions, h.ports = Path(args["tmp"]), args["versions"], args["ports"]
    t = h.make_target("api")
    for version in ("v1", "v2"):
        handle = await t.deploy(make_release("dev", h.versions[version]))
        result = await t.wait_ready(handle, 60)
        assert result.status == "READY", result.message
    await t.aclose()
    print(json.dumps({"ok": True}))

asyncio.run(main())
"""


async def test_services_survive_the_orchestrator_process(h: LocalHarness) -> None:
    h.context("api")  # fixes the stable port
    args = json.dumps({"tmp": str(h.tmp), "versions": h.versions, "ports": h.ports})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _ORCHESTRATOR, args, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    # the CLI process is gone; a new one finds the service where it left it
    t = h.make_target("api")
    cur = await t.current()
    assert cur is not None and cur.version == h.versions["v2"] and cur.detail["alive"] is True
    assert cur.detail["proxy_alive"] is True and cur.detail["standby"] == h.versions["v1"]
    assert (await fetch(t.url))["version"] == "v2"
    handle = await t.rollback(ServiceVersion(service="api", version=h.versions["v1"]))
    assert (await t.wait_ready(handle, 30)).status is DeployStatus.READY
    assert (await fetch(t.url))["version"] == "v1"
    assert h.vendor_deployment_count("api") == 2
    await t.aclose()


async def test_state_is_repaired_after_crashes_between_steps(h: LocalHarness) -> None:
    t = h.make_target("api")
    r1 = await ship(t, h.sha(1))
    r2 = await ship(t, h.sha(2))
    st = store(h)

    # crash between the state write and the control write: the proxy still points at v1
    write_upstream(st.control_path, Upstream(int(str(r1.handle.detail["backend_port"])), "stale"))
    await t.deploy(make_release("dev", h.sha(2), r2.handle.release_id))  # any later call reconciles
    assert (await fetch(t.url))["version"] == "v2"

    # an instance started but never recorded (the CLI died right after launching it): its pid file knows it
    release = make_release("dev", h.sha(3))
    handle = await t.deploy(release)
    state = st.load()
    state.instances[str(handle.vendor_ref)].pid = None
    state.instances[str(handle.vendor_ref)].start_time = None
    st.save(state)
    t2 = h.make_target("api")
    assert (await t2.deploy(release)).vendor_ref == handle.vendor_ref
    assert (await t2.wait_ready(handle, 60)).status is DeployStatus.READY
    assert len(pids_with_env("AEVON_RELEASE_ID", release.release_id)) == 1

    # recorded but dead: the standby (v2) and then the proxy are killed behind the target's back
    os.kill(int(str(r2.handle.detail["pid"])), signal.SIGKILL)
    proxy_pid = read_json(st.proxy_info_path)
    assert proxy_pid is not None
    os.kill(int(proxy_pid["pid"]), signal.SIGKILL)
    handle = await t2.rollback(ServiceVersion(service="api", version=h.sha(2)))
    assert handle.vendor_ref != r2.handle.vendor_ref  # a fresh v2: the dead standby is not reused
    assert (await t2.wait_ready(handle, 60)).status is DeployStatus.READY
    assert (await fetch(t.url))["version"] == "v2"  # and the proxy was started again
    await t.aclose()
    await t2.aclose()


async def test_stop_all_leaves_no_process_behind(h: LocalHarness) -> None:
    t = h.make_target("api")
    await ship(t, h.sha(1))
    await ship(t, h.sha(2))
    starting = await t.deploy(make_release("dev", h.sha(3)))  # one still starting, never waited for
    st = store(h)
    pids = [i.pid for i in st.load().instances.values() if i.pid is not None]
    proxy = read_json(st.proxy_info_path)
    assert proxy is not None
    pids.append(int(proxy["pid"]))
    assert len(pids) == 4 and all(pid_alive(p) for p in pids)
    assert starting.detail["pid"] in pids

    await t.stop_all()
    assert [p for p in pids if pid_alive(p)] == []
    assert await t.current() is None
    with pytest.raises(httpx.ConnectError):
        await fetch(t.url)
    assert len(await t.history()) == 2  # the record of what ran stays
    await t.aclose()


async def test_the_stop_command_stops_every_service_under_a_state_dir(h: LocalHarness) -> None:
    pids = []
    for service in ("api", "worker"):
        t = h.make_target(service)
        result = await ship(t, h.sha(1))
        assert result.status is DeployStatus.READY, result.message
        pids.append(int(str(result.handle.detail["pid"])))
        info = read_json(store(h, service).proxy_info_path)
        assert info is not None
        pids.append(int(info["pid"]))
        await t.aclose()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "providers.targets.local.target", "stop", str(h.state_dir), cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == "stopped: api, worker"
    assert [p for p in pids if pid_alive(p)] == []


def test_the_proxy_daemon_is_a_runnable_module() -> None:
    out = subprocess.run([sys.executable, "-m", "providers.targets.local.proxy", "--help"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert "--control" in out.stdout
