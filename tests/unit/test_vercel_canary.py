"""The vercel target's canary through Rolling Releases, against the Vercel fake (its documented endpoints)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from deployments.spec import ServiceSpec
from providers.models import DeployStatus
from providers.targets.base import TargetContext, supports_canary
from providers.targets.paas.vercel import VercelTarget, make_target
from tests.contract.harness import make_release
from tests.fakes.vercel import VercelFake

STEPS = [{"weight": 10}, {"weight": 50}, {"weight": 100}]


@pytest.fixture
async def vercel(tmp_path: Path) -> AsyncIterator[tuple[VercelFake, VercelTarget]]:
    fake = VercelFake("tok_v", step_s=0.05)
    fake.start()
    fake.add_project("web-app")
    spec = ServiceSpec.model_validate({
        "name": "web", "provider": "vercel", "secrets": {"token": "TOKEN"},
        "settings": {"api_url": fake.url, "project": "web-app", "repo": "aevon/os", "poll_interval_s": 0.05},
        "strategy": {"kind": "canary", "steps": STEPS}})
    ctx = TargetContext(env="prod", spec=spec, secrets={"token": SecretStr("tok_v")}, state_dir=tmp_path)
    target = make_target(ctx)
    try:
        yield fake, target
    finally:
        await target.aclose()
        fake.stop()


def project(fake: VercelFake) -> dict[str, Any]:
    return next(p for p in fake.projects.values() if p["name"] == "web-app")


async def test_bad_canary_is_aborted_at_the_first_stage_by_instant_rollback(
    vercel: tuple[VercelFake, VercelTarget]
) -> None:
    fake, target = vercel
    assert supports_canary(target)
    first = make_release("prod", "a" * 40)
    assert (await target.wait_ready(await target.deploy(first), 30)).status is DeployStatus.READY
    stable = await target.current()
    assert stable is not None and stable.version == "a" * 40

    res = await target.set_canary(make_release("prod", "b" * 40), 10, 30)
    assert res.status is DeployStatus.READY, res.message
    assert res.handle.url is not None and res.handle.url.endswith(".vercel.app")
    assert project(fake)["rollingRelease"]["stages"] == [{"targetPercentage": 10, "requireApproval": True},
                                                         {"targetPercentage": 50, "requireApproval": True},
                                                         {"targetPercentage": 100, "requireApproval": True}]
    assert fake.canary_share("web-app") == 0.10  # the canary serves a tenth of the visitors ...
    assert (await target.current()).version == "a" * 40  # type: ignore[union-attr]  # ... production is stable's

    await target.abort_canary(stable)
    assert project(fake)["rollout"]["state"] == "ABORTED" and fake.canary_share("web-app") == 0.0
    assert project(fake)["rollingRelease"] is None  # the config is deleted: the next deployment goes out at once
    assert (await target.current()).version == "a" * 40  # type: ignore[union-attr]
    await target.abort_canary(stable)  # again: no release is active, a no-op

    # the next all_at_once deploy: STAGED after the Instant Rollback, promoted by wait_ready, never ROLLING
    after = await target.wait_ready(await target.deploy(make_release("prod", "d" * 40)), 30)
    assert after.status is DeployStatus.READY, after.message
    assert (await target.current()).version == "d" * 40  # type: ignore[union-attr]
    assert project(fake)["rollout"]["state"] == "ABORTED"  # no new rolling release started


async def test_good_canary_is_approved_stage_by_stage_then_completed(vercel: tuple[VercelFake, VercelTarget]) -> None:
    fake, target = vercel
    first = await target.deploy(make_release("prod", "a" * 40))
    assert (await target.wait_ready(first, 30)).status is DeployStatus.READY
    release = make_release("prod", "c" * 40)
    assert (await target.set_canary(release, 10, 30)).status is DeployStatus.READY
    again = await target.set_canary(release, 50, 30)  # the same deployment, the next stage approved
    assert again.status is DeployStatus.READY and fake.canary_share("web-app") == 0.5
    assert fake.count("web-app") == 2  # one deployment per release, whatever the steps
    done = await target.promote_canary(release, 30)
    assert done.status is DeployStatus.READY, done.message
    assert project(fake)["rollout"]["state"] == "COMPLETE"
    assert project(fake)["rollingRelease"] is None
    cur = await target.current()
    assert cur is not None and cur.version == "c" * 40

    # a following all_at_once deploy goes straight to production: no rolling release, nothing to approve
    after = await target.wait_ready(await target.deploy(make_release("prod", "e" * 40)), 30)
    assert after.status is DeployStatus.READY, after.message
    assert (await target.current()).version == "e" * 40  # type: ignore[union-attr]
    assert project(fake)["rollout"]["canaryDeployment"]["id"] == done.handle.vendor_ref  # still c's (COMPLETE)


async def test_a_config_left_enabled_holds_the_next_deployment_in_rolling(
    vercel: tuple[VercelFake, VercelTarget]
) -> None:
    """What the DELETE prevents: while a config requiring approval is set, every production deployment becomes the
    canary of a rolling release and stays ROLLING (production unchanged) until someone approves it."""
    fake, target = vercel
    assert (await target.wait_ready(await target.deploy(make_release("prod", "a" * 40)), 30)).status \
        is DeployStatus.READY
    release = make_release("prod", "c" * 40)
    assert (await target.set_canary(release, 10, 30)).status is DeployStatus.READY
    handle = await target._find_release(release)
    assert handle is not None
    pid = project(fake)["id"]
    kw = target._kw()
    await target.http.request("POST", target.url(f"/v1/projects/{pid}/rolling-release/complete"),
                              json={"canaryDeploymentId": handle.vendor_ref}, resource="complete", **kw)
    assert project(fake)["rollingRelease"] is not None  # completed by hand, config not deleted
    held = await target.wait_ready(await target.deploy(make_release("prod", "f" * 40)), 1.0)
    assert held.status is not DeployStatus.READY and "ROLLING" in held.message, held.message
    assert (await target.current()).version == "c" * 40  # type: ignore[union-attr]
    assert project(fake)["rollout"]["state"] == "ACTIVE"  # a new rolling release, waiting for approval

    # approve-stage and complete refuse a release that is not ACTIVE; DELETE never alters the in-flight one
    resp = await target.http.client.post(target.url(f"/v1/projects/{pid}/rolling-release/approve-stage"),
                                         json={"nextStageIndex": 1, "canaryDeploymentId": handle.vendor_ref}, **kw)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_request"
    resp = await target.http.client.delete(target.url(f"/v1/projects/{pid}/rolling-release/config"), **kw)
    assert resp.status_code == 200 and resp.json() == {"rollingRelease": None}
    assert project(fake)["rollout"]["state"] == "ACTIVE"
    resp = await target.http.client.get(target.url(f"/v1/projects/{pid}/rolling-release/config"), **kw)
    assert resp.json() == {"rollingRelease": None}


async def test_preview_targets_cannot_canary(tmp_path: Path) -> None:
    spec = ServiceSpec(name="web", provider="vercel", secrets={"token": "TOKEN"},
                       settings={"api_url": "http://127.0.0.1:9", "project": "p", "repo": "a/b"})
    ctx = TargetContext(env="dev", spec=spec, secrets={"token": SecretStr("t")}, state_dir=tmp_path, preview=True)
    assert not supports_canary(make_target(ctx))


async def test_a_rolling_release_that_waits_for_start_is_started_once(vercel: tuple[VercelFake, VercelTarget]) -> None:
    fake, target = vercel
    assert (await target.wait_ready(await target.deploy(make_release("prod", "a" * 40)), 30)).status is \
        DeployStatus.READY
    fake.rollout_starts_itself = False  # the how-to's "3. Start the rolling release" reading
    release = make_release("prod", "b" * 40)
    res = await target.set_canary(release, 10, 30)
    assert res.status is DeployStatus.READY, res.message
    assert project(fake)["rollout"]["state"] == "ACTIVE" and fake.canary_share("web-app") == 0.10
    canary = project(fake)["rollout"]["canaryDeployment"]["id"]
    again = await target.set_canary(release, 10, 30)  # a re-run: the same canary, start answers without a change
    assert again.status is DeployStatus.READY and project(fake)["rollout"]["canaryDeployment"]["id"] == canary
    assert fake.count("web-app") == 2  # one canary deployment, whatever was asked twice
