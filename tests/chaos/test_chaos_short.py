"""The CI form of `make chaos`: one round of SIGKILL of a lock holder then a re-run; one round of vendor faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.report import DeployOutcome
from tests.chaos.fault_scenarios import fault_world, injected_faults
from tests.chaos.kill_sweep import SHORT, Sweep, kill_sweep
from tests.chaos.ledger_outage import ledger_outages, outage_world
from tests.chaos.lock_scenarios import World, kill_while_holding
from tests.sample_app import build_sample_repo, ensure_prisma_toolkit


async def test_killed_holder_rerun_has_no_duplicate_half_done_or_leftover(
    prefect_api: str, ledger_url: str, tmp_path: Path
) -> None:
    out = await kill_while_holding(World(prefect_api, ledger_url, tmp_path), rounds=1)
    assert dict(out.outcomes) == {"killed": 1, "re-run took over": 1}, out.notes
    assert (out.runs, out.duplicates, out.half_done, out.leftovers) == (2, 0, 0, 0), out.notes


@pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir")
async def test_vendor_faults_at_30_percent_leave_no_duplicate_or_half_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One round (v1, then v2 failing its health check) through the real flow with 30 % of vendor calls failing,
    lost answers and timeouts that act late among them."""
    async with fault_world(tmp_path, monkeypatch) as world:
        out = await injected_faults(world, 0.3, rounds=1)
    assert (out.runs, out.duplicates, out.half_done, out.leftovers) == (2, 0, 0, 0), out.notes
    assert set(out.outcomes) <= {DeployOutcome.SUCCEEDED.value, DeployOutcome.ROLLED_BACK.value}, out.notes
    assert out.outcomes[DeployOutcome.ROLLED_BACK.value] >= 1  # v2 is rolled back whatever the faults did
    assert sum(out.faults.values()) > 0, "no fault was served"


@pytest.mark.slow
async def test_sigkill_at_step_boundaries_then_rerun_leaves_no_duplicate_half_done_or_leftover(
    prefect_api: str, tmp_path: Path
) -> None:
    """SIGKILL of the deploy process as the web deploy starts (the database migrated, the api changed) and as the
    rollback starts; each followed by a re-run: one deployment per release, everything settled, nothing left."""
    ensure_prisma_toolkit()
    sweep = Sweep(build_sample_repo(tmp_path / "repo"), prefect_api, tmp_path)
    out = await kill_sweep(sweep, list(SHORT))
    assert (out.runs, out.duplicates, out.half_done, out.leftovers) == (2 * len(SHORT), 0, 0, 0), out.notes
    assert out.outcomes == {**{f"killed at {k}": 1 for k in SHORT}, "re-run SUCCEEDED": 1, "re-run ROLLED_BACK": 1}


@pytest.mark.usefixtures("prefect_api", "state_dir")
async def test_ledger_down_for_seconds_mid_deploy_ends_consistent_and_the_next_run_works(
    ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger cut for 4 s as a service deploy starts, then as validation starts: each run rides it out or
    ends ROLLED_BACK / REFUSED with the services consistent, never half-done; the next run succeeds."""
    async with outage_world(tmp_path, ledger_url, monkeypatch) as world:
        out = await ledger_outages(world, rounds=1)
    assert (out.runs, out.duplicates, out.half_done, out.leftovers) == (4, 0, 0, 0), out.notes
    assert out.faults["ledger cuts"] == 2
