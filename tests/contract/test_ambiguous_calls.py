"""One vendor deployment per release whatever the network does: lost answers and timeouts that act late."""

from __future__ import annotations

import pytest

from providers.models import DeployStatus
from tests.contract.conftest import Targets, optional
from tests.contract.harness import Fault, TargetHarness, make_release
from tests.contract.test_targets import TIMEOUT, current_version, ship

AMBIGUOUS: list[Fault] = ["lost", "late"]


@pytest.mark.parametrize("fault", AMBIGUOUS)
async def test_ambiguous_create_makes_exactly_one_vendor_deployment(
    harness: TargetHarness, targets: Targets, fault: Fault
) -> None:
    """The create acts at the vendor but its answer is lost, or it acts only after the client timed out."""
    ambiguous = optional(harness, "ambiguous_creates")
    sha = harness.sha(11)
    targets()  # the vendor-side service exists from here on
    before = harness.vendor_deployment_count("web")
    ambiguous(fault, 1)
    target = targets()  # made after the switch: its request timeout is shorter than the fake's late action
    release = make_release("staging", sha)
    handle = await target.deploy(release)
    harness.settle()  # type: ignore[attr-defined]  # every late call has acted by now
    assert harness.vendor_deployment_count("web") == before + 1
    again = await targets().deploy(release)  # a re-run of the same release adopts it
    assert again.vendor_ref == handle.vendor_ref
    assert (await target.wait_ready(handle, TIMEOUT)).status is DeployStatus.READY
    assert await current_version(target) == sha
    assert harness.vendor_deployment_count("web") == before + 1


@pytest.mark.parametrize("fault", AMBIGUOUS)
async def test_ambiguous_rollback_is_followed_by_reading_the_vendor(
    harness: TargetHarness, targets: Targets, fault: Fault
) -> None:
    """A rollback call whose answer is lost or late is not given up on, and is not asked for twice."""
    ambiguous = optional(harness, "ambiguous_creates")
    target = targets()
    assert (await ship(target, harness.sha(12))).status is DeployStatus.READY
    previous = await target.current()
    assert previous is not None
    assert (await ship(target, harness.sha(13))).status is DeployStatus.READY
    count = harness.vendor_deployment_count("web")
    ambiguous(fault, 1)
    target = targets()
    handle = await target.rollback(previous)
    result = await target.wait_ready(handle, TIMEOUT)
    harness.settle()  # type: ignore[attr-defined]
    assert result.status is DeployStatus.READY, result.message
    assert await current_version(target) == harness.sha(12)
    # a vendor whose rollback makes a deployment made exactly one; one whose rollback re-points made none
    assert harness.vendor_deployment_count("web") - count <= 1
