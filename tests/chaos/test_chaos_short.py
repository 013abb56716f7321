"""The CI form of `make chaos`: one round of SIGKILL-while-holding-the-lock, then a re-run (a few seconds)."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.lock_scenarios import World, kill_while_holding


async def test_killed_holder_rerun_has_no_duplicate_half_done_or_leftover(
    prefect_api: str, ledger_url: str, tmp_path: Path
) -> None:
    out = await kill_while_holding(World(prefect_api, ledger_url, tmp_path), rounds=1)
    assert dict(out.outcomes) == {"killed": 1, "re-run took over": 1}, out.notes
    assert (out.runs, out.duplicates, out.half_done, out.leftovers) == (2, 0, 0, 0), out.notes
