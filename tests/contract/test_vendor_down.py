"""A vendor that is down is reported by every target after its retry budget, naming provider and resource."""

from __future__ import annotations

from typing import Any

import pytest

from providers.clients.retry import VENDOR_BUDGET, RetriesSpent
from tests.contract.conftest import Targets
from tests.contract.harness import Fault, TargetHarness
from tests.fakes.base import FakeServer


def faulted_fake(harness: TargetHarness) -> FakeServer:
    """The fake that `harness.inject_fault` breaks (the PaaS vendor, or the kube-apiserver behind GKE)."""
    if harness.name == "local":
        pytest.skip("the local target calls no vendor API")
    fake: Any = getattr(harness, "fake", None) or getattr(harness, "kube", None)
    assert isinstance(fake, FakeServer), type(harness).__name__
    return fake


@pytest.mark.parametrize("fault", ["5xx", "drop"])
async def test_vendor_down_is_reported_after_the_budgets_tries(
    harness: TargetHarness, targets: Targets, fault: Fault
) -> None:
    target = targets()
    fake = faulted_fake(harness)
    await target.current()  # set-up calls (a GKE cluster lookup, a project id) are made and answered first
    before = len(fake.requests)
    harness.inject_fault(fault, 1000)
    with pytest.raises(RetriesSpent) as caught:
        await target.current()
    assert len(fake.requests) - before == VENDOR_BUDGET.attempts  # the harnesses keep the default attempts
    err = caught.value
    assert err.provider == harness.name and err.resource, err
    assert str(err).startswith(f"{harness.name} {err.resource}: ")
    assert f"gave up after {VENDOR_BUDGET.attempts} tries" in str(err)
    assert harness.secret not in str(err) and harness.secret not in repr(err)
