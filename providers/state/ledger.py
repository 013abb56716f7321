"""The release ledger and rollback journal in PostgreSQL: every run, every side effect and how to undo it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, overload

from pydantic import BaseModel, Field

from providers.errors import AevonError
from providers.state.connect import Connect
from providers.state.group_commit import GroupCommit
from providers.state.journal import (
    AnyEntry,
    CanaryEntry,
    CanaryUndo,
    Detail,
    JournalState,
    MigrationEntry,
    MigrationUndo,
    ServiceEntry,
    ServiceUndo,
    Undo,
    parse_entry,
)

_FENCE = ("SELECT 1 FROM aevon_env_locks WHERE env=$7 AND token=$8 AND flow_run_id IS NOT NULL "
          "AND expires_at >= now()")  # the same condition as LockTable.holds

# One statement for many intents, fenced in the same statement: a fenced-off run writes none of them.
_INSERT_INTENTS = (
    "INSERT INTO aevon_journal (release_id, step, target, state, undo) "  # noqa: S608 - fixed fragments
    "SELECT r, s, t, $4, u::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $5::text[]) "
    f"AS x(r, s, t, u) WHERE NOT $9 OR EXISTS ({_FENCE}) "
    "ON CONFLICT (release_id, step, target) DO UPDATE SET state = CASE WHEN aevon_journal.state = $6 "
    "THEN $4 ELSE aevon_journal.state END, updated_at = now() RETURNING *"
)


class _Intent(NamedTuple):
    fence: tuple[str, int] | None
    release_id: str
    step: str
    target: str
    undo: str  # JSON


class _Mark(NamedTuple):
    entry_id: int
    state: str
    detail: str  # JSON: the fields to merge


class FencedOff(AevonError):
    """This run's lease token is no longer its environment's (forced unlock, takeover): no new side effect."""


# Release statuses: running -> succeeded | rolled_back | rollback_failed | refused | failed | compensated;
# a rollback started by hand: manual_rollback | manual_rollback_failed (record_manual_rollback)
RUNNING = "running"
FINAL_GOOD = "succeeded"
REFUSED = "refused"  # stopped before any change: says nothing about what serves
MANUAL_ROLLBACK, MANUAL_ROLLBACK_FAILED = "manual_rollback", "manual_rollback_failed"  # `aevon-deploy rollback` rows


class ReleaseRow(BaseModel):
    """One run of one environment as the ledger keeps it."""

    release_id: str
    env: str
    ref: str
    sha: str
    status: str
    flow_run_id: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    approver: str | None = None
    approval_reason: str | None = None
    approval_key: str | None = None  # SHA256 fingerprint of the SSH key that signed the approval
    report: dict[str, Any] = Field(default_factory=dict)


class Ledger:
    """Durable record of releases and their journal. Writes are single statements (atomic) and idempotent;
    journal intents and marks written at the same moment share one statement (providers/state/group_commit.py)."""

    def __init__(self, connect: Connect) -> None:
        self._conn = connect
        self._fence: tuple[str, int] | None = None
        self._intents = GroupCommit(self._write_intents, lambda i: (i.release_id, i.step, i.target))
        self._marks = GroupCommit(self._write_marks, lambda m: m.entry_id)

    def fence(self, env: str, token: int) -> None:
        """From now on `record_intent` writes only while `token` is still `env`'s live lease (flows/locking.py),
        in the same statement as the intent: a fenced-off run records no intent, so it starts no side effect."""
        self._fence = (env, token)

    # -- releases ----------------------------------------------------------------------------------------------
    async def start_release(self, release_id: str, env: str, ref: str, sha: str, flow_run_id: str | None) -> None:
        """Record a run as running (idempotent: a retried flow run reuses its row and is running again)."""
        async with self._conn() as c:
            await c.execute(
                "INSERT INTO aevon_releases (release_id, env, ref, sha, status, flow_run_id) "
                "VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (release_id) DO UPDATE SET status=EXCLUDED.status, finished_at=NULL",
                release_id, env, ref, sha, RUNNING, flow_run_id,
            )

    async def finish_release(self, release_id: str, status: str, report: dict[str, Any]) -> None:
        """Record the run's end state and its report."""
        async with self._conn() as c:
            await c.execute(
                "UPDATE aevon_releases SET status=$2, finished_at=now(), report=$3::jsonb WHERE release_id=$1",
                release_id, status, json.dumps(report, default=str),
            )

    async def record_manual_rollback(self, rollback_id: str, of: ReleaseRow, ok: bool, started_at: datetime,
                                     flow_run_id: str | None, report: dict[str, Any]) -> None:
        """A rollback started by hand (`aevon-deploy rollback`, the UI) as a finished row of its own, so `status`
        and `history` see what it restored: ref `rollback:<ref of the undone run>`, that run's SHA, `report` holding
        `rolls_back`, `started_by` and `rollback` (the RollbackReport). Written once it ended (a crashed one leaves
        no running row for the next deploy to compensate; its journal says what is left)."""
        async with self._conn() as c:
            await c.execute(
                "INSERT INTO aevon_releases (release_id, env, ref, sha, status, flow_run_id, started_at, finished_at,"
                " report) VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8::jsonb)",
                rollback_id, of.env, f"rollback:{of.ref}", of.sha, MANUAL_ROLLBACK if ok else MANUAL_ROLLBACK_FAILED,
                flow_run_id, started_at, json.dumps(report, default=str),
            )

    async def record_approval(self, release_id: str, approver: str, reason: str, key: str | None = None) -> None:
        async with self._conn() as c:
            await c.execute(
                "UPDATE aevon_releases SET approver=$2, approval_reason=$3, approval_key=$4 WHERE release_id=$1",
                release_id, approver, reason, key,
            )

    async def unfinished(self, env: str) -> list[ReleaseRow]:
        """Runs of `env` that started and never finished (their process died), oldest first."""
        return await self._releases("WHERE env=$1 AND status=$2 ORDER BY started_at", env, RUNNING)

    async def history(self, env: str, limit: int = 20) -> list[ReleaseRow]:
        """The latest runs of `env`, newest first."""
        return await self._releases("WHERE env=$1 ORDER BY started_at DESC LIMIT $2", env, limit)

    async def last_good(self, env: str) -> ReleaseRow | None:
        """The latest release of `env` that passed validation."""
        rows = await self._releases(
            "WHERE env=$1 AND status=$2 ORDER BY finished_at DESC LIMIT 1", env, FINAL_GOOD
        )
        return rows[0] if rows else None

    async def passed(self, env: str, sha: str) -> ReleaseRow | None:
        """The latest good release of `sha` in `env` (promotion rule: prod needs it in staging)."""
        rows = await self._releases(
            "WHERE env=$1 AND sha=$2 AND status=$3 ORDER BY finished_at DESC LIMIT 1", env, sha, FINAL_GOOD
        )
        return rows[0] if rows else None

    async def validated_serving(self, env: str, sha: str) -> ReleaseRow | None:
        """The run that left `sha` serving in `env`, validated, when nothing changed since (promote only what changed).

        None unless the latest run of `env` that was not refused (a running one counts, as unknown) succeeded with
        `sha`, left no contract migration to apply, and no journal entry of it was undone after it finished (a
        `rollback` command run on it later).
        """
        rows = await self._releases(
            "WHERE env=$1 AND status <> $2 ORDER BY finished_at DESC NULLS FIRST, started_at DESC LIMIT 1", env, REFUSED
        )
        row = rows[0] if rows else None
        if row is None or row.status != FINAL_GOOD or row.sha != sha or row.report.get("contract_left"):
            return None
        async with self._conn() as c:
            undone = await c.fetchval(
                "SELECT count(*) FROM aevon_journal WHERE release_id=$1 AND state=$2 AND updated_at > $3",
                row.release_id, JournalState.UNDONE.value, row.finished_at,
            )
        return None if undone else row

    async def get(self, release_id: str) -> ReleaseRow | None:
        rows = await self._releases("WHERE release_id=$1", release_id)
        return rows[0] if rows else None

    async def _releases(self, where: str, *args: Any) -> list[ReleaseRow]:
        async with self._conn() as c:
            rows = await c.fetch(f"SELECT * FROM aevon_releases {where}", *args)  # noqa: S608 - fixed fragments
        return [ReleaseRow(**{**dict(r), "report": json.loads(r["report"])}) for r in rows]

    # -- journal -----------------------------------------------------------------------------------------------
    @overload
    async def record_intent(self, release_id: str, target: str, undo: ServiceUndo) -> ServiceEntry: ...

    @overload
    async def record_intent(self, release_id: str, target: str, undo: MigrationUndo) -> MigrationEntry: ...

    @overload
    async def record_intent(self, release_id: str, target: str, undo: CanaryUndo) -> CanaryEntry: ...

    async def record_intent(self, release_id: str, target: str, undo: Undo) -> AnyEntry:
        """Before a side effect: what would undo it. Idempotent per (release, step, target): the first undo wins;
        an entry undone by a compensation is re-opened (the same release is being deployed again).

        Fenced (`fence`): raises FencedOff, writing nothing, when the run's lease token is no longer current."""
        intent = _Intent(self._fence, release_id, undo.step.value, target, undo.model_dump_json())
        row = await self._intents.submit(intent)
        if row is None:
            env, token = self._fence or ("", 0)
            raise FencedOff(f"the lock of {env} is no longer held with token {token} (unlocked by force or taken "
                            f"over): this run records no new step ({undo.step.value} {target}) and stops")
        return _entry(row)

    async def _write_intents(self, items: Sequence[_Intent]) -> list[Any]:
        """One INSERT per fence (one in practice), fenced in the statement; a row per item, None when fenced off."""
        rows: dict[tuple[str, str, str], Any] = {}
        for fence in dict.fromkeys(i.fence for i in items):
            group = [i for i in items if i.fence == fence]
            env, token = fence or ("", 0)
            async with self._conn() as c:
                written = await c.fetch(
                    _INSERT_INTENTS,
                    [i.release_id for i in group], [i.step for i in group], [i.target for i in group],
                    JournalState.INTENT.value, [i.undo for i in group], JournalState.UNDONE.value, env, token,
                    fence is not None,
                )
            rows.update({(r["release_id"], r["step"], r["target"]): r for r in written})
        return [rows.get((i.release_id, i.step, i.target)) for i in items]

    async def mark(self, entry_id: int, state: JournalState, detail: Detail | None = None) -> None:
        """Move a journal entry to `state` (done / undone), merging the fields `detail` sets."""
        merged = detail.model_dump(mode="json", exclude_unset=True) if detail is not None else {}
        await self._marks.submit(_Mark(entry_id, state.value, json.dumps(merged)))

    async def _write_marks(self, items: Sequence[_Mark]) -> list[None]:
        async with self._conn() as c:
            await c.execute(
                "UPDATE aevon_journal AS j SET state = x.state, detail = j.detail || x.detail::jsonb, "
                "updated_at = now() FROM unnest($1::bigint[], $2::text[], $3::text[]) AS x(id, state, detail) "
                "WHERE j.id = x.id",
                [m.entry_id for m in items], [m.state for m in items], [m.detail for m in items],
            )
        return [None] * len(items)

    async def open_entries(self, release_id: str) -> list[AnyEntry]:
        """Entries of a release not yet undone, newest first (the order to undo them in)."""
        async with self._conn() as c:
            rows = await c.fetch(
                "SELECT * FROM aevon_journal WHERE release_id=$1 AND state <> $2 ORDER BY id DESC", release_id,
                JournalState.UNDONE.value,
            )
        return [_entry(r) for r in rows]

    async def entries(self, release_id: str) -> list[AnyEntry]:
        async with self._conn() as c:
            rows = await c.fetch("SELECT * FROM aevon_journal WHERE release_id=$1 ORDER BY id", release_id)
        return [_entry(r) for r in rows]


def _entry(row: Any) -> AnyEntry:
    d = dict(row)
    d["undo"] = json.loads(d["undo"])
    d["detail"] = json.loads(d["detail"])
    return parse_entry(d)
