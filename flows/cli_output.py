"""What the command line prints: reports, history, status and stats as rich tables; live step progress; JSON."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from flows.history import HistoryRow
from flows.report import DeployReport, RollbackReport, StepRecord, add_step_listener
from flows.stats import DoraStats, duration
from flows.status import EnvironmentStatus
from providers.migrators.backup import BackupRecord
from providers.models import CheckResult
from tasks.services import ServiceChange

WIDE = 200  # not a terminal (pipes, CI logs, tests): lines are not wrapped at 80 columns
COLOURS = {"ok": "green", "SUCCEEDED": "green", "succeeded": "green", "PASSED": "green", "READY": "green",
           "as expected": "green", "ROLLED_BACK": "yellow", "rolled_back": "yellow", "compensated": "yellow",
           "REFUSED": "yellow", "refused": "yellow", "SKIPPED": "dim", "never deployed": "dim", "drift": "red",
           "unreachable": "red", "not in the ledger": "yellow", "running": "cyan", "NOTHING_TO_PROMOTE": "green",
           "manual_rollback": "yellow", "manual_rollback_failed": "red"}


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else WIDE, highlight=False, soft_wrap=False)


def styled(value: str) -> Text:
    return Text(value, style=COLOURS.get(value, "red" if value.isupper() or value in ("failed", "error") else ""))


def print_json(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    """One JSON document on stdout (lists of models as a JSON array)."""
    if isinstance(data, BaseModel):
        print(data.model_dump_json(indent=2))
    elif isinstance(data, dict):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(json.dumps([d.model_dump(mode="json") for d in data], indent=2))


def _short(v: str | None) -> str:
    return v[:12] if v else "—"


def _services(title: str, changes: list[ServiceChange]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("service", "provider", "before", "after", "status", "time", "note"):
        t.add_column(col, overflow="fold")
    for c in changes:
        t.add_row(c.service, c.provider, _short(c.before), _short(c.after), styled(str(c.status)),
                  f"{c.duration_s:.1f}s", escape(c.message[:200]))
    return t


def _checks(title: str, results: list[CheckResult]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("check", "kind", "outcome", "tries", "time", "summary"):
        t.add_column(col, overflow="fold")
    for r in results:
        t.add_row(r.name, r.kind, styled(str(r.outcome)), str(r.attempts), f"{r.duration_s:.1f}s",
                  escape(r.summary[:300]))
        for f in r.findings[:5]:
            t.add_row("", str(f.severity), "", "", "", escape(f.message[:200]))
    return t


def print_rollback(out: Console, rb: RollbackReport, heading: str = "Rollback") -> None:
    verdict = Text("completed", "green") if rb.ok else Text("FAILED", "bold red")
    out.print(Text.assemble((f"{heading}: ", "bold"), verdict, f"  release {rb.release_id}"))
    out.print(f"  reason: {escape(rb.reason)}")
    if rb.migrations_reverted:
        out.print(f"  migrations reverted: {', '.join(rb.migrations_reverted)}")
    for n in rb.notes:
        out.print(f"  - {escape(n)}")
    if rb.services:
        out.print(_services("services put back", rb.services))
    if rb.health:
        out.print(_checks("health after the rollback", rb.health))


def print_report(out: Console, r: DeployReport) -> None:
    """The deploy report for a terminal (the Prefect artifact keeps the markdown of flows/report.py)."""
    took = f", took {duration((r.finished_at - r.started_at).total_seconds())}" if r.finished_at else ""
    out.print(Text.assemble(("Deploy ", "bold"), f"{r.env} @ {r.ref} → ", (str(r.outcome), "bold " +
                                                                              COLOURS.get(r.outcome, "red"))))
    out.print(f"  release {r.release_id or '—'}, commit {_short(r.sha)}{took}"
              + (f", started by {escape(r.started_by)}" if r.started_by else ""))
    if r.error:
        out.print(Text(f"  error: {r.error}", "red"))
    if r.note:
        out.print(Text(f"  {r.note}", "green"))
    steps = Table(title="steps", title_justify="left")
    for col in ("step", "outcome", "time", "detail"):
        steps.add_column(col, overflow="fold")
    for s in r.steps:
        steps.add_row(s.name, styled(s.outcome), f"{s.duration_s:.1f}s", escape(s.detail[:200]))
    out.print(steps)
    for comp in r.compensated:
        print_rollback(out, comp, "Compensated crashed run")
    if r.gates:
        out.print(_checks("gates", r.gates))
    if r.approval is not None:
        a = r.approval
        out.print(f"approval: {a.decision}" + (f" by {a.approver}" if a.approver else "")
                  + (f" (key {a.key})" if a.key else "") + (f": {escape(a.reason)}" if a.reason else ""))
    if r.migration_plan is not None:
        out.print(f"database: pending {', '.join(r.migration_plan.pending) or 'none'}; "
                  f"applied {', '.join(r.migrations_applied) or 'none'}")
        for f in r.migration_plan.findings:
            out.print(f"  - {f.severity}: {escape(f.message)}")
    if r.services:
        out.print(_services("services", r.services))
    if r.checks:
        out.print(_checks("validation", r.checks))
    if r.rollback is not None:
        print_rollback(out, r.rollback)


class StepProgress:
    """Live progress of a deploy's steps with elapsed time (a rich Live on a terminal, plain lines otherwise)."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.t0 = time.monotonic()
        self.running: dict[str, float] = {}
        self.done: list[StepRecord] = []
        self.live = Live(self._render(), console=out, refresh_per_second=2, transient=True,
                         get_renderable=self._render) if out.is_terminal else None

    def _render(self) -> Table:
        t = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for s in self.done[-8:]:
            t.add_row(styled(s.outcome), s.name, f"{s.duration_s:.1f}s", escape(s.detail[:100]))
        for name, started in self.running.items():
            t.add_row(Text("…", "cyan"), name, f"{now - started:.0f}s", "running")
        t.add_row("", Text(f"elapsed {now - self.t0:.0f}s", "dim"), "", "")
        return t

    def __call__(self, rec: StepRecord, finished: bool) -> None:
        if not finished:
            self.running[rec.name] = time.monotonic()
            if self.live is None:
                self.out.print(f"[{time.monotonic() - self.t0:6.1f}s] {rec.name} …", markup=False)
            return
        self.running.pop(rec.name, None)
        self.done.append(rec)
        if self.live is None:
            self.out.print(f"[{time.monotonic() - self.t0:6.1f}s] {rec.name}: {rec.outcome} in "
                           f"{rec.duration_s:.1f}s" + (f" ({rec.detail[:160]})" if rec.detail else ""), markup=False)


@contextmanager
def step_progress(out: Console) -> Iterator[StepProgress]:
    """Show every step of the runs of this process while the block runs."""
    progress = StepProgress(out)
    remove: Callable[[], None] = add_step_listener(progress)
    try:
        if progress.live is not None:
            with progress.live:
                yield progress
        else:
            yield progress
    finally:
        remove()


def print_history(out: Console, rows: Sequence[HistoryRow]) -> None:
    """`history ENV`: one row per run, newest first; the reason and the link under a run that did not succeed."""
    t = Table()
    for col in ("started (UTC)", "status", "ref", "sha", "took", "started by", "approver", "release"):
        t.add_column(col, overflow="fold")
    for r in rows:
        approver = (f"{r.approver} ({r.approval_key})" if r.approval_key else r.approver) if r.approver else "—"
        t.add_row(f"{r.started_at:%Y-%m-%d %H:%M:%S}", styled(r.status), r.ref, r.sha[:12], duration(r.duration_s),
                  escape(r.started_by or "—"), escape(approver), r.release_id)
        if r.reason:
            t.add_row("", "", Text(f"why: {r.reason[:300]}", "dim"), "", "", "", "", "")
        if r.run_url:
            t.add_row("", "", Text(r.run_url, "dim"), "", "", "", "", "")
    out.print(t)


def print_status(out: Console, st: EnvironmentStatus) -> None:
    """`status ENV`: per service, what serves now (asked of the target) next to what the ledger expects."""
    out.print(Text.assemble(("environment ", "bold"), st.env))
    good = st.last_good
    out.print(f"  serving (last good): {good['ref']} {good['sha'][:12]} ({good['release_id']})" if good
              else "  never deployed", markup=False)
    t = Table()
    for col in ("service", "provider", "serving now", "ledger expects", "verdict", "note"):
        t.add_column(col, overflow="fold")
    for s in st.services:
        now = f"unreachable: {s.unreachable}" if s.unreachable else _short(s.serving) if s.serving else "nothing"
        expects = f"{s.expected.version[:12]} ({s.expected.why})" if s.expected else "—"
        t.add_row(s.service, s.provider, escape(now), escape(expects), styled(str(s.verdict)), escape(s.note))
    out.print(t)
    if st.last_run:
        lr = st.last_run
        out.print(f"  last run: {lr['release_id']} {lr['status']} at {lr['started_at'][:19]}"
                  + (f": {lr['error']}" if lr.get("error") and lr["status"] != "succeeded" else ""), markup=False)
    if st.missing_secrets:
        out.print(f"  secrets not set here: {', '.join(st.missing_secrets)} (targets needing them were not asked)",
                  markup=False)


def print_stats(out: Console, s: DoraStats, published: bool) -> None:
    """`stats ENV`: the four DORA figures."""
    if s.runs == 0:
        out.print(f"no runs of {s.env} in the last {s.days:g} days", markup=False)
        return
    t = Table(title=f"{s.env}: last {s.days:g} days, {s.runs} runs ({s.refused} refused before any change)",
              title_justify="left")
    for col in ("figure", "value", "basis"):
        t.add_column(col, overflow="fold")
    for row in s.table():
        t.add_row(row["figure"], row["value"], row["basis"])
    out.print(t)
    for n in s.notes:
        out.print(f"  note: {n}", markup=False)
    if published:
        out.print(f"  published as the Prefect table artifact stats-{s.env}", markup=False)


def print_backups(out: Console, records: Sequence[BackupRecord]) -> None:
    """`db backups ENV`."""
    t = Table()
    for col in ("backup", "created (UTC)", "state", "tables", "rows", "size", "release", "restored"):
        t.add_column(col, overflow="fold")
    for rec in records:
        t.add_row(rec.backup_id, f"{rec.created_at:%Y-%m-%d %H:%M:%S}",
                  Text("verified", "green") if rec.verified else Text("NOT VERIFIED", "red"), str(len(rec.tables)),
                  str(rec.rows), f"{rec.size_bytes / 1e6:.1f} MB", rec.release_id or "—",
                  f"{rec.restored_at:%Y-%m-%d %H:%M}" if rec.restored_at else "—")
    out.print(t)
