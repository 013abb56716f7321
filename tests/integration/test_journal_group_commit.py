"""Journal group commit (issue 17): a burst of intents and marks is written in a few transactions, each caller gets
its own row, a fenced-off burst writes nothing, and one bad write fails only its own caller."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from providers.models import ServiceVersion
from providers.state.journal import JournalState, ServiceDetail, ServiceUndo
from providers.state.ledger import FencedOff
from providers.state.lock import LockTable, Owner
from providers.state.store import StateStore
from tests.pg import fetch

N = 200


def undo(i: int) -> ServiceUndo:
    return ServiceUndo(previous=ServiceVersion(service=f"svc-{i}", version=f"v{i}"), layer=0, provider="memory")


async def test_a_burst_of_intents_and_marks_takes_a_few_transactions_and_each_caller_gets_its_row(
        ledger_url: str) -> None:
    async with StateStore(SecretStr(ledger_url)) as state:
        ledger = state.ledger
        await ledger.start_release("dev-1", "dev", "v1", "a" * 40, "run-1")
        entries = await asyncio.gather(*(ledger.record_intent("dev-1", f"svc-{i}", undo(i)) for i in range(N)))
        # every caller got the row of its own target, with its own undo record
        assert [(e.target, e.undo.previous.version if e.undo.previous else None) for e in entries] == [
            (f"svc-{i}", f"v{i}") for i in range(N)]
        assert len({e.id for e in entries}) == N
        # rows written by one transaction share its xmin: 200 intents went out in a few commits, not 200
        intent_txns = (await fetch(ledger_url, "SELECT count(DISTINCT xmin::text) AS n FROM aevon_journal"))[0]["n"]
        assert 1 <= intent_txns <= 3

        await asyncio.gather(*(ledger.mark(e.id, JournalState.DONE, ServiceDetail(status="READY", vendor_ref=f"r{i}"))
                               for i, e in enumerate(entries)))
        rows = await fetch(ledger_url, "SELECT target, state, detail, xmin::text AS x FROM aevon_journal ORDER BY id")
        assert [(r["target"], r["state"]) for r in rows] == [(f"svc-{i}", "done") for i in range(N)]
        assert all(f'"vendor_ref": "r{i}"' in r["detail"] for i, r in enumerate(rows))
        assert 1 <= len({r["x"] for r in rows}) <= 3


async def test_marks_of_one_entry_in_one_burst_apply_in_the_order_they_were_made(ledger_url: str) -> None:
    async with StateStore(SecretStr(ledger_url)) as state:
        ledger = state.ledger
        await ledger.start_release("dev-1", "dev", "v1", "a" * 40, "run-1")
        entry = await ledger.record_intent("dev-1", "api", undo(0))
        await asyncio.gather(
            ledger.mark(entry.id, JournalState.DONE, ServiceDetail(status="READY")),
            ledger.mark(entry.id, JournalState.UNDONE, ServiceDetail(restored="v0")),
        )
        [row] = await ledger.entries("dev-1")
        assert row.state == JournalState.UNDONE and isinstance(row.detail, ServiceDetail)
        assert row.detail.status == "READY" and row.detail.restored == "v0"  # both merged, the later state wins
        # the same target twice in one burst: one row, the first undo record wins (record_intent's contract)
        twice = await asyncio.gather(ledger.record_intent("dev-1", "web", undo(1)),
                                     ledger.record_intent("dev-1", "web", undo(2)))
        assert twice[0].id == twice[1].id
        assert twice[1].undo.previous is not None and twice[1].undo.previous.version == "v1"


async def test_a_fenced_off_burst_writes_no_intent_and_every_caller_is_told(ledger_url: str) -> None:
    async with StateStore(SecretStr(ledger_url)) as state:
        table = await LockTable.connect(SecretStr(ledger_url))
        try:
            token = await table.try_acquire("dev", Owner.this_process("run-1", "deploy"), 60, None)
            assert token is not None
            seen = await table.read("dev")
            assert seen is not None and await table.force_release("dev", seen.token)  # `unlock dev --force`
            ledger = state.ledger
            ledger.fence("dev", token)
            await ledger.start_release("dev-1", "dev", "v1", "a" * 40, "run-1")
            results = await asyncio.gather(*(ledger.record_intent("dev-1", f"svc-{i}", undo(i)) for i in range(20)),
                                           return_exceptions=True)
            assert all(isinstance(r, FencedOff) for r in results)
            assert await ledger.entries("dev-1") == []
        finally:
            await table.close()


async def test_one_bad_intent_fails_only_its_caller(ledger_url: str) -> None:
    async with StateStore(SecretStr(ledger_url)) as state:
        ledger = state.ledger
        await ledger.start_release("dev-1", "dev", "v1", "a" * 40, "run-1")
        # "dev-missing" has no release row: its INSERT violates the journal's foreign key
        calls = [ledger.record_intent("dev-1" if i != 3 else "dev-missing", f"svc-{i}", undo(i)) for i in range(8)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        bad = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
        assert bad == [3]
        assert "foreign key" in str(results[3])
        assert sorted(e.target for e in await ledger.entries("dev-1")) == sorted(f"svc-{i}" for i in range(8) if i != 3)


async def test_an_intent_cancelled_before_its_batch_starts_is_never_written(ledger_url: str) -> None:
    async with StateStore(SecretStr(ledger_url)) as state:
        ledger = state.ledger
        await ledger.start_release("dev-1", "dev", "v1", "a" * 40, "run-1")
        first = asyncio.ensure_future(ledger.record_intent("dev-1", "svc-0", undo(0)))
        await asyncio.sleep(0)  # its batch is on its way: the next one queues behind it
        second = asyncio.ensure_future(ledger.record_intent("dev-1", "svc-1", undo(1)))
        await asyncio.sleep(0)
        second.cancel()
        await first
        with pytest.raises(asyncio.CancelledError):
            await second
        await ledger.record_intent("dev-1", "svc-2", undo(2))  # the queue goes on after a cancelled caller
        assert sorted(e.target for e in await ledger.entries("dev-1")) == ["svc-0", "svc-2"]
