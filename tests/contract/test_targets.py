"""The service-target contract, run against every harness (tests/contract/harness_*.py) and its fake."""

from __future__ import annotations

import pytest

from providers.errors import PermanentError
from providers.models import DeployResult, DeployStatus
from providers.targets.base import ServiceTarget
from tests.contract.conftest import Targets, optional
from tests.contract.harness import Fault, TargetHarness, make_release

TIMEOUT = 60.0  # a generous bound for the fakes; tests never assert how long anything took


async def ship(target: ServiceTarget, sha: str, release_id: str | None = None) -> DeployResult:
    handle = await target.deploy(make_release("staging", sha, release_id))
    return await target.wait_ready(handle, TIMEOUT)


async def current_version(target: ServiceTarget) -> str | None:
    now = await target.current()
    return now.version if now is not None else None


async def test_deploy_becomes_ready_and_current(harness: TargetHarness, targets: Targets) -> None:
    target = targets()
    sha = harness.sha(1)
    release = make_release("staging", sha)
    handle = await target.deploy(release)
    assert (handle.version, handle.release_id) == (sha, release.release_id)
    result = await target.wait_ready(handle, TIMEOUT)
    assert result.status is DeployStatus.READY, result.message
    now = await target.current()
    assert now is not None and now.version == sha
    assert now.release_id in (None, release.release_id)
    assert sha in [v.version for v in await target.history()]


async def test_same_release_twice_makes_one_vendor_deployment(harness: TargetHarness, targets: Targets) -> None:
    target = targets()
    before = harness.vendor_deployment_count("web")
    release = make_release("staging", harness.sha(2))
    first = await target.deploy(release)
    second = await target.deploy(release)
    retried = await targets().deploy(release)  # a retried task: a new target object, same release
    assert first.vendor_ref == second.vendor_ref == retried.vendor_ref
    assert harness.vendor_deployment_count("web") == before + 1
    assert (await target.wait_ready(second, TIMEOUT)).status is DeployStatus.READY
    assert (await target.deploy(release)).vendor_ref == first.vendor_ref
    assert harness.vendor_deployment_count("web") == before + 1


async def test_lost_create_answer_does_not_duplicate(harness: TargetHarness, targets: Targets) -> None:
    lose = optional(harness, "lose_create_answers")
    target = targets()
    before = harness.vendor_deployment_count("web")
    lose(1)  # the vendor creates the deployment, but its answer never arrives
    handle = await target.deploy(make_release("staging", harness.sha(3)))
    assert harness.vendor_deployment_count("web") == before + 1
    assert (await target.wait_ready(handle, TIMEOUT)).status is DeployStatus.READY
    assert await current_version(target) == harness.sha(3)


async def test_failing_deployment_is_a_failed_outcome(harness: TargetHarness, targets: Targets) -> None:
    target = targets()
    good = harness.sha(4)
    assert (await ship(target, good)).status is DeployStatus.READY
    bad = harness.failing_sha()
    result = await ship(target, bad)
    assert result.status is DeployStatus.FAILED
    assert result.message
    assert await current_version(target) == good


async def test_rollback_makes_the_previous_version_current(harness: TargetHarness, targets: Targets) -> None:
    target = targets()
    assert (await ship(target, harness.sha(5))).status is DeployStatus.READY
    previous = await target.current()
    assert previous is not None and previous.version == harness.sha(5)
    assert (await ship(target, harness.sha(6))).status is DeployStatus.READY
    assert await current_version(target) == harness.sha(6)

    handle = await target.rollback(previous)
    result = await target.wait_ready(handle, TIMEOUT)
    assert result.status is DeployStatus.READY, result.message
    assert await current_version(target) == harness.sha(5)

    count = harness.vendor_deployment_count("web")
    again = await target.rollback(previous)  # already current: a no-op
    assert (await target.wait_ready(again, TIMEOUT)).status is DeployStatus.READY
    assert harness.vendor_deployment_count("web") == count
    assert await current_version(target) == harness.sha(5)

    assert (await ship(target, harness.sha(7))).status is DeployStatus.READY  # deploying after a rollback works
    assert await current_version(target) == harness.sha(7)


@pytest.mark.parametrize("fault", ["5xx", "429", "drop"])
async def test_transient_faults_are_survived(harness: TargetHarness, targets: Targets, fault: Fault) -> None:
    target = targets()
    before = harness.vendor_deployment_count("web")
    harness.inject_fault(fault, 2)
    handle = await target.deploy(make_release("staging", harness.sha(8)))
    harness.inject_fault(fault, 2)
    result = await target.wait_ready(handle, TIMEOUT)
    assert result.status is DeployStatus.READY, result.message
    assert harness.vendor_deployment_count("web") == before + 1
    assert await current_version(target) == harness.sha(8)


async def test_bad_token_is_permanent_and_secret_free(harness: TargetHarness, targets: Targets) -> None:
    target = targets(bad_token=True)
    with pytest.raises(PermanentError) as caught:
        await target.deploy(make_release("staging", harness.sha(9)))
    err = caught.value
    assert err.provider == harness.name and harness.name in str(err)
    secrets = [harness.secret, *[s for s in [getattr(harness, "bad_secret", None)] if s]]
    chain: list[BaseException] = []
    exc: BaseException | None = err
    while exc is not None and len(chain) < 10:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for text in [repr(target), *(str(e) for e in chain), *(repr(e) for e in chain)]:
        assert not any(s in text for s in secrets), text
    with pytest.raises(PermanentError):
        await target.current()


async def test_every_documented_end_state_is_judged_at_once(harness: TargetHarness, targets: Targets) -> None:
    """Each state the vendor documents as an end (a crash, a block, a skip ...) is an outcome, not a timeout."""
    outcomes = optional(harness, "documented_outcomes")()
    target = targets()
    good = harness.sha(4)
    assert (await ship(target, good)).status is DeployStatus.READY
    for state, (sha, expected) in outcomes.items():
        result = await ship(target, sha)
        assert result.status is expected, (state, result.message)
        assert state in result.message and "not ready within" not in result.message, (state, result.message)
    assert await current_version(target) == good


async def test_documented_waiting_states_are_waited_for(harness: TargetHarness, targets: Targets) -> None:
    """A deployment held by the vendor (approval, a queue) is still in progress: only the timeout ends the wait."""
    waits = optional(harness, "documented_waits")()
    target = targets()
    for state, sha in waits.items():
        handle = await target.deploy(make_release("staging", sha))
        result = await target.wait_ready(handle, 0.5)
        assert result.status is DeployStatus.FAILED
        assert f"vendor status: {state}" in result.message, result.message
