"""What a rollback does with the migrations a failed run applied: revert them, or keep them (why, how to restore)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from providers.migrators.prisma.inverse import compose, describe, grown
from providers.state.journal import MigrationUndo


class MigrationRollbackInput(BaseModel):
    """Everything the decision depends on; measured or read by the caller, so that the decision itself is pure.

    Extend it (new fields with defaults) to add preconditions of the inverse; `decide` reads them in one place.
    """

    env: str
    undo: MigrationUndo  # the journal's record: pending, prepared inverse (whole and per migration), backup id
    applied: list[str]  # migrations this run applied (from the journal, or asked of the database after a crash)
    revert_migrations: bool  # the environment's rollback.revert_migrations
    keep_release_data: bool = False  # database.settings.keep_release_data
    stuck_services: list[str] = Field(default_factory=list)  # still running this release's code after rollback
    inverse_baseline: dict[str, int] | None = None  # rows where the inverse drops, right after applying
    footprint: dict[str, int] | None = None  # the same, measured now (None: not measured)
    footprint_error: str | None = None  # why the footprint could not be measured
    mode: Literal["code_only", "inverse"] = "inverse"  # database.rollback: code_only never runs an inverse
    unmet_preconditions: list[str] = Field(default_factory=list)  # why the inverse would fail on the data now
    preconditions_error: str | None = None  # why the preconditions could not be checked


class MigrationAction(StrEnum):
    """NOTHING: the run applied no migration; KEEP: code-only rollback; REVERT: apply `inverse_sql`."""

    NOTHING = "nothing"
    KEEP = "keep"
    REVERT = "revert"


class MigrationDecision(BaseModel):
    """The decision, with the text the rollback report shows."""

    action: MigrationAction
    inverse_sql: str | None = None  # REVERT: the script to apply (composed for what was applied)
    why: str = ""  # KEEP: the reason the migrations stay applied
    restore_hint: str = ""  # KEEP: how to return the database to its state before the run
    note: str = ""  # the report's note: KEEP: why and the restore hint; REVERT: data the inverse dropped


def inverse_for(inp: MigrationRollbackInput) -> str | None:
    """The inverse of what was applied: the prepared one, or (a later migration failed) the applied ones' steps."""
    undo = inp.undo
    if undo.inverse_sql is not None and undo.inverse_steps and inp.applied != undo.pending:
        return compose(undo.inverse_steps, inp.applied)
    return undo.inverse_sql


def _keep_reason(inp: MigrationRollbackInput) -> str:
    """A reason to keep known before measuring anything ("" when reverting is still possible)."""
    if not inp.revert_migrations:
        return "rollback.revert_migrations is off"
    if inp.mode == "code_only":
        return ("database.rollback is code_only: the previous release runs on the expanded schema, and no row the "
                "new release wrote is dropped")
    if inp.stuck_services:  # reverting the schema under code that needs it would break what still runs
        return (f"{', '.join(inp.stuck_services)} could not be rolled back and still run this release's code, "
                "which needs its schema")
    if inverse_for(inp) is None:
        return "no inverse migration was prepared (see the plan's inverse finding)"
    if inp.undo.inverse_loses_data:
        return "its inverse would lose data (see the plan's inverse finding)"
    if inp.unmet_preconditions:
        return "its inverse would fail on the data now: " + "; ".join(inp.unmet_preconditions)
    if inp.preconditions_error is not None:
        return f"its inverse would fail on the data now: they could not be checked ({inp.preconditions_error})"
    return ""


def needs_preconditions(inp: MigrationRollbackInput) -> bool:
    """True when the inverse would run but whether it fails on the data now is unknown (the caller checks with
    `Migrator.inverse_preconditions` and sets `unmet_preconditions` or `preconditions_error`)."""
    return bool(inp.applied) and not _keep_reason(inp)


def needs_footprint(inp: MigrationRollbackInput) -> bool:
    """True when the decision depends on the rows the inverse would drop now (the caller measures them)."""
    return bool(inp.applied) and not _keep_reason(inp)


def restore_hint(env: str, backup_id: str | None) -> str:
    """How to return the database to its state before the run."""
    if backup_id:
        return (f"To return the database to its state before this run, restore the verified backup explicitly: "
                f"`aevon-deploy db restore {env} {backup_id}`.")
    return (f"No backup was taken by this run (database.backup is off); `aevon-deploy db backups {env}` lists "
            "earlier ones.")


def decide(inp: MigrationRollbackInput) -> MigrationDecision:
    """Revert, or keep (and why, and how to restore). Never reverts on data it could not measure."""
    if not inp.applied:
        return MigrationDecision(action=MigrationAction.NOTHING)
    why = _keep_reason(inp)
    dropped = ""
    if not why:  # rows the failed release wrote where the inverse drops them: dropped and said, or kept by setting
        if inp.footprint_error is not None:
            why = f"the data the inverse would drop could not be measured ({inp.footprint_error})"
        elif inp.footprint is None:
            why = "the data the inverse would drop was not measured"
        else:
            new = grown(inp.inverse_baseline, inp.footprint)
            if new and inp.keep_release_data:
                why = f"the new release wrote data the inverse would drop: {describe(new)} (keep_release_data)"
            elif new:
                dropped = (f"the inverse dropped what the failed release wrote there: {describe(new)} "
                           "(set database.settings.keep_release_data to keep such data, reverting the code only)")
    if why:
        hint = restore_hint(inp.env, inp.undo.backup_id)
        prefix = "" if inp.stuck_services else "code reverted only; "
        note = f"{prefix}migrations {', '.join(inp.applied)} stay applied because {why}. {hint}"
        return MigrationDecision(action=MigrationAction.KEEP, why=why, restore_hint=hint, note=note)
    return MigrationDecision(action=MigrationAction.REVERT, inverse_sql=inverse_for(inp), note=dropped)
