"""Vendor rules the PaaS targets follow as the vendors document them (issue 16), against fakes that enforce them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from providers.errors import PermanentError
from providers.models import DeployStatus, ServiceVersion
from providers.targets.paas.koyeb import KoyebTarget
from providers.targets.paas.railway import RailwayTarget
from providers.targets.paas.render import RenderTarget
from providers.targets.paas.vercel import VercelTarget
from tests.contract.harness import make_release
from tests.contract.harness_koyeb import KoyebHarness
from tests.contract.harness_railway import RailwayHarness
from tests.contract.harness_render import RenderHarness, service_id
from tests.contract.harness_vercel import VercelHarness
from tests.contract.paas_harness import PaasHarness
from tests.fakes.koyeb import KoyebFake
from tests.fakes.railway import RailwayFake
from tests.fakes.render import RenderFake
from tests.fakes.vercel import VercelFake

TIMEOUT = 30.0


async def started(harness: PaasHarness, tmp: Path) -> Any:
    await harness.start(tmp)
    return harness


@pytest.fixture
async def vercel(tmp_path: Path) -> AsyncIterator[VercelHarness]:
    h = await started(VercelHarness(), tmp_path)
    yield h
    await h.stop()


@pytest.fixture
async def railway(tmp_path: Path) -> AsyncIterator[RailwayHarness]:
    h = await started(RailwayHarness(), tmp_path)
    yield h
    await h.stop()


@pytest.fixture
async def render(tmp_path: Path) -> AsyncIterator[RenderHarness]:
    h = await started(RenderHarness(), tmp_path)
    yield h
    await h.stop()


async def ship(target: Any, sha: str) -> Any:
    return await target.wait_ready(await target.deploy(make_release("staging", sha)), TIMEOUT)


def project_of(fake: VercelFake, name: str) -> dict[str, Any]:
    return next(p for p in fake.projects.values() if p["name"] == name)


# -- Vercel -----------------------------------------------------------------------------------------------------------
async def test_vercel_rolls_back_only_to_rollback_candidates(vercel: VercelHarness) -> None:
    fake = vercel.fake
    assert isinstance(fake, VercelFake)
    target = vercel.make_target("web")
    assert isinstance(target, VercelTarget)
    assert (await ship(target, vercel.sha(1))).status is DeployStatus.READY
    project_of(fake, "web-app")["autoAssignCustomDomains"] = False  # production deployments now stay STAGED
    staged = await target.deploy(make_release("staging", vercel.sha(2)))
    while fake.deployments[str(staged.vendor_ref)]["readyState"] != "READY":  # observed without wait_ready, which
        await asyncio.sleep(0.05)  # would promote the STAGED deployment it finds (and make it a rollback candidate)
        await target.current()
    assert fake.deployments[str(staged.vendor_ref)]["readySubstate"] == "STAGED"
    # READY and production, but never aliased to production: not something instant rollback accepts
    assert [v.version for v in await target.history()] == [vercel.sha(1)]
    fake.requests.clear()
    never_served = ServiceVersion(service="web", version=vercel.sha(2), vendor_ref=str(staged.vendor_ref))
    with pytest.raises(PermanentError, match="not a rollback candidate"):
        await target.rollback(never_served)
    assert not any("/rollback/" in path for _, path in fake.requests)
    await target.aclose()


async def test_vercel_waits_out_a_rolling_release_without_promoting(vercel: VercelHarness) -> None:
    fake = vercel.fake
    assert isinstance(fake, VercelFake)
    target = vercel.make_target("web")
    assert (await ship(target, vercel.sha(1))).status is DeployStatus.READY
    project_of(fake, "web-app")["rollingRelease"] = {"stages": [10, 50, 100]}
    handle = await target.deploy(make_release("staging", vercel.sha(2)))
    said: set[str] = set()
    while True:
        result = await target.wait_ready(handle, 0.05)
        said.add(result.message)
        if result.status is DeployStatus.READY:
            break
    assert any("ROLLING" in s for s in said), said
    assert not any("/promote/" in path for _, path in fake.requests)
    now = await target.current()
    assert now is not None and now.version == vercel.sha(2)
    await target.aclose()


async def test_vercel_blocked_fails_at_once(vercel: VercelHarness) -> None:
    target = vercel.make_target("web")
    result = await ship(target, vercel.state_sha("BLOCKED"))
    assert result.status is DeployStatus.FAILED and result.message.startswith("BLOCKED")
    await target.aclose()


# -- Railway ----------------------------------------------------------------------------------------------------------
async def test_railway_sorts_by_created_at_and_serves_no_removed_deployment(railway: RailwayHarness) -> None:
    fake = railway.fake
    assert isinstance(fake, RailwayFake)
    target = railway.make_target("web")
    for n in (1, 2, 3):
        assert (await ship(target, railway.sha(n))).status is DeployStatus.READY
    # the fake lists a page's edges by id (their order is not documented): the target sorts by createdAt
    assert [v.version for v in await target.history()] == [railway.sha(3), railway.sha(2), railway.sha(1)]
    live = next(d for d in fake.deployments if d["status"] == "SUCCESS")
    live["status"] = "REMOVING"  # being taken down: it serves nothing
    assert await target.current() is None
    await target.aclose()


async def test_railway_rollback_reads_can_rollback_and_reports_variables(railway: RailwayHarness) -> None:
    fake = railway.fake
    assert isinstance(fake, RailwayFake)
    target = railway.make_target("web")
    assert isinstance(target, RailwayTarget)
    assert (await ship(target, railway.sha(1))).status is DeployStatus.READY
    first = await target.current()
    assert (await ship(target, railway.sha(2))).status is DeployStatus.READY
    assert (await ship(target, railway.sha(3))).status is DeployStatus.READY
    assert first is not None and first.vendor_ref
    fake.expire(first.vendor_ref)  # beyond the plan's retention
    count = fake.count("svc-web")
    with pytest.raises(PermanentError, match=r"canRollback is false.*retention"):
        await target.rollback(first)
    assert fake.count("svc-web") == count
    second = next(v for v in await target.history() if v.version == railway.sha(2))
    result = await target.wait_ready(await target.rollback(second), TIMEOUT)
    assert result.status is DeployStatus.READY
    assert "restores that deployment's image and its custom variables" in result.message
    await target.aclose()


# -- Render -----------------------------------------------------------------------------------------------------------
async def test_render_queued_deploy_answers_202_and_is_followed(render: RenderHarness) -> None:
    fake = render.fake
    assert isinstance(fake, RenderFake)
    target = render.make_target("web")
    first = await target.deploy(make_release("staging", render.sha(1)))
    fake.requests.clear()
    second = await target.deploy(make_release("staging", render.sha(2)))  # the first is still building
    assert ("POST", f"/v1/services/{service_id('web')}/deploys") in fake.requests
    queued = next(d for d in fake.services[service_id("web")] if d["id"] == second.vendor_ref)
    assert queued["status"] == "queued"
    assert (await target.wait_ready(first, TIMEOUT)).status is DeployStatus.READY
    assert (await target.wait_ready(second, TIMEOUT)).status is DeployStatus.READY
    assert fake.count(service_id("web")) == 2
    now = await target.current()
    assert now is not None and now.version == render.sha(2)
    await target.aclose()


async def test_render_409_on_trigger_is_a_clear_permanent_error(render: RenderHarness) -> None:
    fake = render.fake
    assert isinstance(fake, RenderFake)
    target = render.make_target("web")
    await target.current()  # the service exists from here on
    fake.suspend(service_id("web"))
    with pytest.raises(PermanentError) as caught:
        await target.deploy(make_release("staging", render.sha(1)))
    assert "409" in str(caught.value) and "conflicts with it" in str(caught.value)
    assert "cannot deploy a suspended service" in str(caught.value)  # Render's own words, kept
    assert fake.count(service_id("web")) == 0
    await target.aclose()


async def test_render_rollback_reports_autodeploy_or_turns_it_off(render: RenderHarness) -> None:
    fake = render.fake
    assert isinstance(fake, RenderFake)
    target = render.make_target("web")
    assert (await ship(target, render.sha(1))).status is DeployStatus.READY
    previous = await target.current()
    assert (await ship(target, render.sha(2))).status is DeployStatus.READY
    assert previous is not None
    back = await target.wait_ready(await target.rollback(previous), TIMEOUT)
    assert back.status is DeployStatus.READY and "autodeploy is on" in back.message
    pushed = fake.push(service_id("web"), render.sha(3))  # what the report warns about: a push deploys over it
    assert pushed is not None and pushed["trigger"] == "new_commit"

    render.overrides = {"disable_autodeploy": True}
    managed = render.make_target("web")
    assert isinstance(managed, RenderTarget) and managed.cfg.disable_autodeploy
    assert (await ship(managed, render.sha(4))).status is DeployStatus.READY
    assert fake.info[service_id("web")]["autoDeploy"] == "no"
    assert fake.push(service_id("web"), render.sha(5)) is None
    await target.aclose()
    await managed.aclose()


# -- Koyeb ------------------------------------------------------------------------------------------------------------
async def test_koyeb_passes_through_allocating(tmp_path: Path) -> None:
    harness = await started(KoyebHarness(), tmp_path)
    fake = harness.fake
    assert isinstance(fake, KoyebFake)
    fake.step_s = 0.3
    target = harness.make_target("web")
    assert isinstance(target, KoyebTarget)
    handle = await target.deploy(make_release("staging", harness.sha(1)))
    said = []
    while True:
        result = await target.wait_ready(handle, 0.05)
        said.append(result.message.rpartition("vendor status: ")[2].rstrip(")"))
        if result.status is DeployStatus.READY:
            break
    assert "ALLOCATING" in said and said.index("SCHEDULED") < said.index("ALLOCATING") < said.index("STARTING")
    await target.aclose()
    await harness.stop()
