"""The local target's canary with real processes and its real proxy: the share served, abort, promote, restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from providers.models import DeployStatus
from providers.targets.local.process import pid_alive
from providers.targets.local.proxy import read_route
from providers.targets.local.state import StateStore
from tests.contract.harness import make_release
from tests.contract.harness_local import LocalHarness

pytestmark = pytest.mark.slow


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[LocalHarness]:
    harness = LocalHarness()
    await harness.start(tmp_path)
    yield harness
    await harness.stop()


async def versions_served(url: str, n: int) -> Counter[str]:
    """`n` requests, each on a new TCP connection (the proxy splits per connection), counted by version."""
    seen: Counter[str] = Counter()
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(trust_env=False, timeout=5, limits=limits) as client:
        for _ in range(n):
            resp = await client.get(url + "/", headers={"Connection": "close"})
            seen[str(resp.json()["version"])] += 1
    return seen


async def test_ten_percent_of_1000_connections_reach_the_canary_then_abort_puts_all_back(h: LocalHarness) -> None:
    t = h.make_target("api")
    first = make_release("dev", h.sha(1))
    assert (await t.wait_ready(await t.deploy(first), 60)).status is DeployStatus.READY
    release = make_release("dev", h.sha(2))
    res = await t.set_canary(release, 10, 60)
    assert res.status is DeployStatus.READY, res.message
    assert res.handle.url is not None and res.handle.url != t.url  # the canary's own URL, for the analysis
    assert (await t.current()) is not None and (await t.current()).version == h.sha(1)  # type: ignore[union-attr]

    seen = await versions_served(t.url, 1000)
    assert seen["v1"] + seen["v2"] == 1000
    assert 90 <= seen["v2"] <= 110, seen  # measured: exactly 100 (the split is deterministic per connection)

    st = StateStore(h.state_dir / "local-api", "api").load()
    canary = st.get(st.canary)
    assert canary is not None and pid_alive(canary.pid, canary.start_time)
    await t.abort_canary(await t.current())
    assert (await versions_served(t.url, 50)) == Counter({"v1": 50})
    route = read_route(StateStore(h.state_dir / "local-api", "api").control_path)
    assert route is not None and route.canary is None
    for _ in range(50):
        if not pid_alive(canary.pid, canary.start_time):
            break
        await asyncio.sleep(0.1)
    assert not pid_alive(canary.pid, canary.start_time)
    await t.abort_canary(None)  # again: a no-op


async def test_steps_then_promote_make_the_canary_the_serving_version(h: LocalHarness) -> None:
    t = h.make_target("api")
    assert (await t.wait_ready(await t.deploy(make_release("dev", h.sha(1))), 60)).status is DeployStatus.READY
    release = make_release("dev", h.sha(2))
    assert (await t.set_canary(release, 10, 60)).status is DeployStatus.READY
    assert (await t.set_canary(release, 50, 60)).status is DeployStatus.READY  # same instance, more traffic
    seen = await versions_served(t.url, 100)
    assert seen["v2"] == 50, seen
    assert len([i for i in StateStore(h.state_dir / "local-api", "api").load().instances.values()
                if i.sha == h.sha(2)]) == 1
    done = await t.promote_canary(release, 60)
    assert done.status is DeployStatus.READY, done.message
    cur = await t.current()
    assert cur is not None and cur.version == h.sha(2) and cur.detail["standby"] == h.sha(1)
    assert (await versions_served(t.url, 30)) == Counter({"v2": 30})
    assert StateStore(h.state_dir / "local-api", "api").load().canary is None


async def test_an_unhealthy_canary_still_starts_and_a_new_orchestrator_can_abort_it(h: LocalHarness) -> None:
    """The analysis judges health, not the target; an orchestrator that died mid-canary leaves state a new one
    (another process, another target object) aborts from."""
    t = h.make_target("api")
    assert (await t.wait_ready(await t.deploy(make_release("dev", h.sha(1))), 60)).status is DeployStatus.READY
    res = await t.set_canary(make_release("dev", h.versions["sick"]), 20, 60)
    assert res.status is DeployStatus.READY and res.handle.url is not None
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        assert (await client.get(res.handle.url + "/health")).status_code == 503
    fresh = h.make_target("api")  # as after a restart
    await fresh.abort_canary(None)
    assert (await versions_served(fresh.url, 40)) == Counter({"v1": 40})
