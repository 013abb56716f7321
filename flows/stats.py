"""`aevon-deploy stats ENV`: the four DORA figures from the release ledger (commit times from git)."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from providers.state.ledger import MANUAL_ROLLBACK, MANUAL_ROLLBACK_FAILED, ReleaseRow

CHANGED = {"succeeded", "rolled_back", "rollback_failed", "failed", "compensated"}  # runs that changed the env
FAILED = CHANGED - {"succeeded"}
MANUAL = (MANUAL_ROLLBACK, MANUAL_ROLLBACK_FAILED)  # `aevon-deploy rollback` rows: not deploys of their own


class DoraStats(BaseModel):
    """Deployment frequency, lead time for changes, change failure rate, time to restore, over `days`."""

    env: str
    days: float
    runs: int = 0
    deployments: int = 0  # succeeded
    failures: int = 0  # changed the environment, then failed (rolled back or not)
    refused: int = 0
    per_day: float = 0.0
    lead_time_s: float | None = None  # median commit → good in this environment
    change_failure_rate: float | None = None
    time_to_restore_s: float | None = None  # median failure → previous release serving again
    not_restored: int = 0  # failures with nothing good after them yet
    notes: list[str] = Field(default_factory=list)

    def table(self) -> list[dict[str, str]]:
        """The figures as rows (the table artifact and the terminal table)."""
        return [
            {"figure": "deployment frequency", "value": f"{self.per_day:.2f} / day",
             "basis": f"{self.deployments} good deploys in {self.days:g} days"},
            {"figure": "lead time for changes", "value": duration(self.lead_time_s),
             "basis": "median, commit time → release recorded good"},
            {"figure": "change failure rate",
             "value": "—" if self.change_failure_rate is None else f"{self.change_failure_rate:.0%}",
             "basis": f"{self.failures} of {self.deployments + self.failures} changes failed"},
            {"figure": "time to restore", "value": duration(self.time_to_restore_s),
             "basis": "median, failed change → previous release serving"
                      + (f"; {self.not_restored} not restored yet" if self.not_restored else "")},
        ]


def duration(s: float | None) -> str:
    """Seconds for a person: 42s, 3m 05s, 2h 10m, 3d 4h."""
    if s is None:
        return "—"
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d {int(s % 86400 // 3600)}h"


def _changes_began(row: ReleaseRow) -> datetime:
    """When the run first touched the environment: its first migrate/deploy step, else its start."""
    for step in row.report.get("steps", []):
        name = str(step.get("name", ""))
        if name in ("migrate", "backup") or name.startswith("deploy services"):
            try:
                return datetime.fromisoformat(str(step["started_at"]))
            except (KeyError, ValueError):
                break
    return row.started_at


def _undone_by_hand(rows: list[ReleaseRow]) -> dict[str, ReleaseRow]:
    """Release id -> the completed `aevon-deploy rollback` that undid it (the earliest, when there are several)."""
    out: dict[str, ReleaseRow] = {}
    for r in sorted(rows, key=lambda r: r.started_at):
        of = r.report.get("rolls_back") if r.status == MANUAL_ROLLBACK else None
        if isinstance(of, str) and of not in out:
            out[of] = r
    return out


def _restored_at(row: ReleaseRow, later_good: list[ReleaseRow], by_hand: dict[str, ReleaseRow]) -> datetime | None:
    """A rolled-back run is restored when it ends; a good one undone by hand when that rollback ended; any other
    failure when the next good release ends."""
    if row.status in ("rolled_back", "compensated") and row.finished_at is not None:
        return row.finished_at
    if row.release_id in by_hand:
        return by_hand[row.release_id].finished_at
    after = [g.finished_at for g in later_good if g.finished_at and g.finished_at > (row.finished_at or row.started_at)]
    return min(after) if after else None


def compute(env: str, rows: list[ReleaseRow], commit_times: dict[str, datetime], days: float,
            now: datetime) -> DoraStats:
    """The four figures over the runs started in the last `days` (rows in any order). Pure: tested alone."""
    since = now - timedelta(days=days)
    window = [r for r in rows if r.started_at >= since and r.status not in ("running", *MANUAL)]
    by_hand = _undone_by_hand(rows)  # a good release someone rolled back by hand was a failed change
    good = sorted((r for r in window if r.status == "succeeded" and r.release_id not in by_hand),
                  key=lambda r: r.started_at)
    failed = [r for r in window if r.status in FAILED or (r.status == "succeeded" and r.release_id in by_hand)]
    out = DoraStats(env=env, days=days, runs=len(window), deployments=len(good), failures=len(failed),
                    refused=sum(r.status == "refused" for r in window))
    out.per_day = len(good) / days if days else 0.0
    leads = [(g.finished_at - commit_times[g.sha]).total_seconds() for g in good
             if g.finished_at is not None and g.sha in commit_times]
    out.lead_time_s = statistics.median(leads) if leads else None
    missing = sum(1 for g in good if g.sha not in commit_times)
    if missing:
        out.notes.append(f"lead time leaves out {missing} deploy(s) whose commit time git could not tell")
    if good or failed:
        out.change_failure_rate = len(failed) / (len(good) + len(failed))
    restores: list[float] = []
    for r in failed:
        back = _restored_at(r, good, by_hand)
        if back is None:
            out.not_restored += 1
        else:
            restores.append(max(0.0, (back - _changes_began(r)).total_seconds()))
    out.time_to_restore_s = statistics.median(restores) if restores else None
    return out


async def dora(env: str, rows: list[ReleaseRow], source: Any, days: float, now: datetime) -> DoraStats:
    """`compute` with commit times read from the environment's git source (GitSource.commit_time)."""
    times: dict[str, datetime] = {}
    for sha in {r.sha for r in rows if r.status == "succeeded"}:
        try:
            times[sha] = await source.commit_time(sha)
        except Exception:  # noqa: S112 - a commit git cannot show is counted in the notes
            continue
    return compute(env, rows, times, days, now)


@flow(name="stats", flow_run_name="stats-{stats.env}")
async def publish(stats: DoraStats) -> None:
    """The figures as a Prefect table artifact (`stats-<env>`) of a `stats` flow run (artifacts belong to a run)."""
    from prefect.artifacts import acreate_table_artifact

    from flows.observe import tag_this_run

    await tag_this_run(stats.env)

    await acreate_table_artifact(
        key=f"stats-{stats.env}", table=stats.table(),
        description=f"DORA figures of {stats.env}, last {stats.days:g} days ({stats.runs} runs)",
    )
