"""Cancelling a rollout in flight (Render, Railway, Koyeb) through each target against its vendor fake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.errors import PermanentError
from providers.models import DeployHandle, DeployStatus
from providers.targets.paas.base import CancelsRollout
from tests.contract.conftest import Targets
from tests.contract.harness import make_release
from tests.contract.harness_koyeb import KoyebHarness
from tests.contract.harness_railway import ENV_ID, RailwayHarness
from tests.contract.harness_render import RenderHarness, service_id
from tests.contract.paas_harness import PaasHarness
from tests.fakes.railway import RailwayFake

TIMEOUT = 60.0
STEP_S = 0.5  # each vendor state lasts this long here: room to cancel in Koyeb's first three states (1.5 s)
HARNESSES: dict[str, type[RenderHarness | RailwayHarness | KoyebHarness]] = {
    "render": RenderHarness, "railway": RailwayHarness, "koyeb": KoyebHarness}


@pytest.fixture(params=sorted(HARNESSES), ids=str)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PaasHarness]:
    h = HARNESSES[request.param]()
    await h.start(tmp_path)
    h.fake.step_s = STEP_S
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def targets(harness: PaasHarness) -> AsyncIterator[Targets]:
    made = Targets(harness)
    try:
        yield made
    finally:
        for target in made.made:
            await target.aclose()


def cancellable(target: Any) -> CancelsRollout:
    assert isinstance(target, CancelsRollout) and target.cancellable_rollout is True
    return target


def vendor_state(harness: PaasHarness, handle: DeployHandle) -> tuple[str, bool]:
    """(the fake's status of the deployment, whether it ever served)."""
    fake: Any = harness.fake
    return fake.status_of(str(handle.vendor_ref))  # type: ignore[no-any-return]


async def live_then_next(harness: PaasHarness, targets: Targets) -> tuple[Any, DeployHandle]:
    """sha(1) deployed and serving, then sha(2) started (not waited for)."""
    target = targets()
    first = await target.deploy(make_release("staging", harness.sha(1)))
    assert (await target.wait_ready(first, TIMEOUT)).status is DeployStatus.READY
    return target, await target.deploy(make_release("staging", harness.sha(2)))


async def test_a_rollout_in_flight_is_cancelled_and_never_goes_live(harness: PaasHarness, targets: Targets) -> None:
    target, handle = await live_then_next(harness, targets)
    assert await cancellable(target).cancel_rollout(handle) is True
    result = await target.wait_ready(handle, TIMEOUT)
    assert result.status is DeployStatus.CANCELED, result.message
    await asyncio.sleep(6 * STEP_S)  # longer than the whole rollout would have taken
    status, served = vendor_state(harness, handle)
    assert not served and status in ("canceled", "REMOVED", "CANCELED"), status
    now = await target.current()
    assert now is not None and now.version == harness.sha(1)
    assert await cancellable(target).cancel_rollout(handle) is True  # idempotent: cancelled already
    # the rollback that follows is a no-op: the previous version still serves
    back = await target.rollback(now)
    assert back.detail.get("noop") is True
    assert (await target.wait_ready(back, TIMEOUT)).status is DeployStatus.READY
    assert harness.vendor_deployment_count("web") == (3 if harness.name == "koyeb" else 2)  # Koyeb's seed + 2


async def test_a_rollout_already_live_is_not_cancelled(harness: PaasHarness, targets: Targets) -> None:
    target, handle = await live_then_next(harness, targets)
    assert (await target.wait_ready(handle, TIMEOUT)).status is DeployStatus.READY
    assert await cancellable(target).cancel_rollout(handle) is False
    status, served = vendor_state(harness, handle)
    assert served and status in ("live", "SUCCESS", "HEALTHY"), status
    now = await target.current()
    assert now is not None and now.version == harness.sha(2)


async def test_a_lost_cancel_answer_is_read_back_as_cancelled(harness: PaasHarness, targets: Targets) -> None:
    target, handle = await live_then_next(harness, targets)
    harness.fake.inject_fault("lost", 1, creates_only=True)  # the cancel acts at the vendor, its answer is lost
    assert await cancellable(target).cancel_rollout(handle) is True
    assert harness.fake.faults_served["lost"] == 1
    assert (await target.wait_ready(handle, TIMEOUT)).status is DeployStatus.CANCELED
    assert not vendor_state(harness, handle)[1]


async def test_an_unknown_deployment_or_a_bad_token_is_refused(harness: PaasHarness, targets: Targets) -> None:
    target, handle = await live_then_next(harness, targets)
    ghost = handle.model_copy(update={"vendor_ref": "dep-0000ffffffffffff"})
    with pytest.raises(PermanentError, match=r"not found|404"):
        await cancellable(target).cancel_rollout(ghost)
    with pytest.raises(PermanentError, match=r"401|Not Authorized"):
        await cancellable(targets(bad_token=True)).cancel_rollout(handle)
    assert await cancellable(target).cancel_rollout(handle) is True  # still in flight: nothing was cancelled


async def test_koyeb_cancels_only_until_scheduled(tmp_path: Path) -> None:
    """Koyeb cancels PENDING, PROVISIONING and SCHEDULED only: later the deployment runs to its end by itself."""
    h = KoyebHarness()
    await h.start(tmp_path)
    h.fake.step_s = STEP_S
    made = Targets(h)
    try:
        target, handle = await live_then_next(h, made)
        while vendor_state(h, handle)[0] != "ALLOCATING":
            await asyncio.sleep(0.05)
        assert await cancellable(target).cancel_rollout(handle) is False
        assert (await target.wait_ready(handle, TIMEOUT)).status is DeployStatus.READY
        assert vendor_state(h, handle) == ("HEALTHY", True)
    finally:
        for t in made.made:
            await t.aclose()
        await h.stop()


async def test_the_fakes_refuse_a_finished_deploy_as_documented(harness: PaasHarness, targets: Targets) -> None:
    """The error each vendor's cancel gives a deployment that is live already (shape of the documented model)."""
    target, handle = await live_then_next(harness, targets)
    assert (await target.wait_ready(handle, TIMEOUT)).status is DeployStatus.READY
    auth = {"Authorization": f"Bearer {harness.secret}"}
    async with httpx.AsyncClient(base_url=harness.fake.url, headers=auth, timeout=10) as client:
        if harness.name == "render":
            resp = await client.post(f"/v1/services/{service_id('web')}/deploys/{handle.vendor_ref}/cancel")
            assert resp.status_code == 400 and set(resp.json()) == {"id", "message"}
        elif harness.name == "koyeb":
            resp = await client.post(f"/v1/deployments/{handle.vendor_ref}/cancel")
            assert resp.status_code == 400 and set(resp.json()) == {"status", "code", "message", "fields"}
        else:
            query = "mutation Cancel($id: String!) { deploymentCancel(id: $id) }"
            resp = await client.post("/graphql/v2", json={"query": query, "variables": {"id": handle.vendor_ref}})
            assert resp.status_code == 200 and resp.json()["data"] is None
            assert [set(e) >= {"message"} for e in resp.json()["errors"]] == [True]
    assert vendor_state(harness, handle)[1]  # still what serves


async def test_a_railway_project_token_cancels_in_its_own_environment_only(tmp_path: Path) -> None:
    """A project token's scope is one environment of one project (docs.railway.com/reference/public-api)."""
    h = RailwayHarness()
    await h.start(tmp_path)
    h.fake.step_s = STEP_S
    made = Targets(h)
    try:
        _, handle = await live_then_next(h, made)  # deployed with a team token
        assert isinstance(h.fake, RailwayFake)
        h.overrides["token_kind"] = "project"
        h.fake.token_environment = "env-staging"
        with pytest.raises(PermanentError, match="Not Authorized"):
            await cancellable(made()).cancel_rollout(handle)
        h.fake.token_environment = ENV_ID
        assert await cancellable(made()).cancel_rollout(handle) is True
    finally:
        for t in made.made:
            await t.aclose()
        await h.stop()
