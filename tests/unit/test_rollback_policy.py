"""The rollback decision's environment policy (database.rollback) and the inverse's preconditions on the data now."""

from __future__ import annotations

from typing import Any

from providers.migrators.rollback_decision import (
    MigrationAction,
    MigrationRollbackInput,
    decide,
    needs_footprint,
    needs_preconditions,
)
from providers.state.journal import MigrationUndo

INIT, PRIO = "20240101000000_init", "20240201000000_priority"
DOWN_INIT, DOWN_PRIO = 'DROP TABLE "Task";', 'ALTER TABLE "Task" DROP COLUMN "priority";'


def given(**kw: Any) -> MigrationRollbackInput:
    undo = MigrationUndo(pending=[INIT, PRIO], checkout="/tmp/co", inverse_sql=f"{DOWN_PRIO}\n;\n{DOWN_INIT}\n",
                         inverse_steps={INIT: DOWN_INIT, PRIO: DOWN_PRIO}, backup_id="prod-1")
    base: dict[str, Any] = {"env": "prod", "undo": undo, "applied": [INIT, PRIO], "revert_migrations": True,
                            "inverse_baseline": {"public.Task.priority": 0}, "footprint": {"public.Task.priority": 0}}
    return MigrationRollbackInput(**{**base, **kw})


def test_code_only_keeps_the_migrations_without_measuring_and_says_how_to_restore() -> None:
    inp = given(mode="code_only", footprint={"public.Task.priority": 5})
    assert not needs_preconditions(inp) and not needs_footprint(inp)
    d = decide(inp)
    assert d.action == MigrationAction.KEEP and d.inverse_sql is None
    assert "database.rollback is code_only" in d.why and "no row" in d.why
    assert d.note.startswith("code reverted only; migrations 20240101000000_init, 20240201000000_priority stay")
    assert "aevon-deploy db restore prod prod-1" in d.note


def test_inverse_mode_still_reverts_when_the_preconditions_hold() -> None:
    inp = given(mode="inverse")
    assert needs_preconditions(inp)
    assert decide(inp).action == MigrationAction.REVERT


def test_unmet_preconditions_keep_the_migrations_before_the_footprint_is_looked_at() -> None:
    reason = "2 duplicated key(s): no duplicate (title) in public.Task (unique index Task_title_key) fails"
    inp = given(mode="inverse", unmet_preconditions=[reason], footprint=None)
    assert not needs_footprint(inp)  # the footprint is irrelevant once the inverse cannot run
    d = decide(inp)
    assert d.action == MigrationAction.KEEP
    assert d.why == f"its inverse would fail on the data now: {reason}"
    assert reason in d.note


def test_preconditions_that_could_not_be_checked_keep_the_migrations() -> None:
    d = decide(given(mode="inverse", preconditions_error="cannot read the database (OSError)"))
    assert d.action == MigrationAction.KEEP
    assert d.why.startswith("its inverse would fail on the data now: they could not be checked (cannot read")


def test_nothing_applied_is_nothing_whatever_the_mode() -> None:
    assert decide(given(mode="code_only", applied=[])).action == MigrationAction.NOTHING
