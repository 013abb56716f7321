"""The migration rollback decision, one test per branch: revert, keep (and why), restore hint; no server needed."""

from __future__ import annotations

from typing import Any

from providers.migrators.rollback_decision import (
    MigrationAction,
    MigrationRollbackInput,
    decide,
    inverse_for,
    needs_footprint,
)
from providers.state.journal import MigrationUndo

INIT, PRIO = "20240101000000_init", "20240201000000_priority"
DOWN_INIT, DOWN_PRIO = 'DROP TABLE "Task";', 'ALTER TABLE "Task" DROP COLUMN "priority";'


def undo(**kw: Any) -> MigrationUndo:
    base: dict[str, Any] = {
        "pending": [INIT, PRIO], "checkout": "/tmp/co", "inverse_sql": f"{DOWN_PRIO}\n;\n{DOWN_INIT}\n",
        "inverse_steps": {INIT: DOWN_INIT, PRIO: DOWN_PRIO}, "inverse_loses_data": False, "backup_id": "dev-1",
    }
    return MigrationUndo(**{**base, **kw})


def given(**kw: Any) -> MigrationRollbackInput:
    base: dict[str, Any] = {"env": "dev", "undo": undo(), "applied": [INIT, PRIO], "revert_migrations": True,
                            "inverse_baseline": {"public.Task.priority": 0}, "footprint": {"public.Task.priority": 0}}
    return MigrationRollbackInput(**{**base, **kw})


def test_nothing_applied_nothing_to_decide() -> None:
    inp = given(applied=[])
    assert not needs_footprint(inp)
    assert decide(inp).action == MigrationAction.NOTHING


def test_reverts_with_the_prepared_inverse_when_nothing_was_written() -> None:
    inp = given()
    assert needs_footprint(inp)
    d = decide(inp)
    assert (d.action, d.inverse_sql, d.note) == (MigrationAction.REVERT, undo().inverse_sql, "")


def test_partial_apply_reverts_only_what_got_applied() -> None:
    d = decide(given(applied=[INIT]))
    assert d.action == MigrationAction.REVERT and d.inverse_sql == f"{DOWN_INIT}\n"
    assert inverse_for(given(applied=[INIT], undo=undo(inverse_steps={}))) == undo().inverse_sql


def test_reverts_and_says_what_the_inverse_dropped() -> None:
    d = decide(given(footprint={"public.Task.priority": 1}))
    assert d.action == MigrationAction.REVERT
    assert d.note == ("the inverse dropped what the failed release wrote there: public.Task.priority (1 row) "
                      "(set database.settings.keep_release_data to keep such data, reverting the code only)")


def test_keeps_when_revert_is_off_and_gives_the_restore_command() -> None:
    inp = given(revert_migrations=False)
    assert not needs_footprint(inp)
    d = decide(inp)
    assert d.action == MigrationAction.KEEP and d.why == "rollback.revert_migrations is off"
    assert d.restore_hint == ("To return the database to its state before this run, restore the verified backup "
                              "explicitly: `aevon-deploy db restore dev dev-1`.")
    assert d.note == f"code reverted only; migrations {INIT}, {PRIO} stay applied because {d.why}. {d.restore_hint}"


def test_keeps_under_services_still_running_the_release() -> None:
    d = decide(given(stuck_services=["web", "api"]))
    assert d.action == MigrationAction.KEEP
    assert d.note.startswith(f"migrations {INIT}, {PRIO} stay applied because web, api could not be rolled back")


def test_keeps_without_a_prepared_inverse_and_hints_earlier_backups() -> None:
    d = decide(given(undo=undo(inverse_sql=None, inverse_steps={}, backup_id=None)))
    assert d.action == MigrationAction.KEEP and d.why.startswith("no inverse migration was prepared")
    assert d.restore_hint == ("No backup was taken by this run (database.backup is off); "
                              "`aevon-deploy db backups dev` lists earlier ones.")


def test_keeps_when_the_inverse_loses_data() -> None:
    inp = given(undo=undo(inverse_loses_data=True))
    assert not needs_footprint(inp)
    assert decide(inp).why == "its inverse would lose data (see the plan's inverse finding)"


def test_keeps_release_data_when_the_environment_says_so() -> None:
    d = decide(given(keep_release_data=True, footprint={"public.Task.priority": 1}))
    assert d.action == MigrationAction.KEEP
    assert d.why == ("the new release wrote data the inverse would drop: public.Task.priority (1 row) "
                     "(keep_release_data)")


def test_no_baseline_counts_every_row_as_new() -> None:
    d = decide(given(inverse_baseline=None, footprint={"public.Task.priority": 3}, keep_release_data=True))
    assert d.action == MigrationAction.KEEP and "public.Task.priority (3 rows)" in d.why


def test_keeps_when_the_footprint_could_not_be_measured() -> None:
    d = decide(given(footprint=None, footprint_error="database unreachable"))
    assert d.action == MigrationAction.KEEP
    assert d.why == "the data the inverse would drop could not be measured (database unreachable)"
    assert decide(given(footprint=None)).action == MigrationAction.KEEP  # never reverts on unmeasured data
