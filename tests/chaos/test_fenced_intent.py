"""Fenced side effects (issue 18): once a run's lease token is not current, its next journal intent is refused and
the side effect it guards never happens."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from providers.models import Release
from providers.state.journal import ServiceUndo
from providers.state.ledger import FencedOff
from providers.state.lock import LockTable, Owner
from providers.state.store import StateStore
from tasks.services import deploy_service
from tests.standins.memory import MemorySettings, MemoryTarget


async def test_after_a_forced_unlock_the_old_holder_records_no_intent_and_deploys_nothing(ledger_url: str) -> None:
    state = await StateStore(SecretStr(ledger_url)).open()
    table = await LockTable.connect(SecretStr(ledger_url))
    try:
        ledger = state.ledger
        token = await table.try_acquire("dev", Owner.this_process("run-1", "deploy"), 60, None)
        assert token is not None
        ledger.fence("dev", token)
        release = Release(release_id="dev-1", env="dev", ref="v1", sha="a" * 40)
        await ledger.start_release(release.release_id, "dev", "v1", release.sha, "run-1")
        undo = ServiceUndo(previous=None, layer=0, provider="memory")
        first = await ledger.record_intent(release.release_id, "api", undo)  # while the lease is ours: written

        seen = await table.read("dev")
        assert seen is not None and await table.force_release("dev", seen.token)  # `unlock dev --force`
        target = MemoryTarget("web", MemorySettings(world=f"fenced-{ledger_url[-12:]}"))
        with pytest.raises(FencedOff, match=rf"lock of dev is no longer held with token {token} .*service web"):
            await deploy_service.fn(ledger, release, "web", target, 1, 5.0)
        assert await target.history() == []  # the side effect never happened
        assert [e.id for e in await ledger.entries(release.release_id)] == [first.id]  # and no intent recorded

        # a new holder's token is current again: its ledger writes
        token2 = await table.try_acquire("dev", Owner.this_process("run-2", "deploy"), 60, await table.read("dev"))
        assert token2 is not None and token2 > token
        ledger.fence("dev", token2)
        await ledger.record_intent(release.release_id, "web", undo)
        assert len(await ledger.entries(release.release_id)) == 2
    finally:
        await table.close()
        await state.close()
