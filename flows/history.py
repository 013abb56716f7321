"""`aevon-deploy history ENV`: who shipped what from the release ledger: starter, approver, outcome, duration, link."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from deployments.settings import AevonSettings
from providers.state.ledger import MANUAL_ROLLBACK, MANUAL_ROLLBACK_FAILED, ReleaseRow


class HistoryRow(BaseModel):
    """One run as `history` shows it (and `--json` prints it)."""

    release_id: str
    env: str
    ref: str
    sha: str
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float | None = None
    started_by: str | None = None
    approver: str | None = None
    approval: str | None = None  # "approved: reason" / "rejected: reason"
    approval_key: str | None = None
    reason: str | None = None  # why it did not succeed (a manual rollback: what it undid and why)
    rolls_back: str | None = None  # a manual rollback (`aevon-deploy rollback`): the run it undid
    flow_run_id: str | None = None
    run_url: str | None = None


def ui_url() -> str | None:
    """The Prefect UI's base URL when one is configured (PREFECT_UI_URL, or derived from PREFECT_API_URL)."""
    try:
        from prefect.settings import get_current_settings

        url = get_current_settings().ui_url
    except Exception:  # no Prefect settings readable: no links
        return None
    return str(url).rstrip("/") if url else None


def run_link(flow_run_id: str | None, base: str | None) -> str | None:
    """The Prefect UI page of a flow run."""
    if not flow_run_id or not base or len(flow_run_id) != 36:
        return None
    return f"{base}/runs/flow-run/{flow_run_id}"


def _reason(report: dict[str, Any], status: str) -> str | None:
    if status == "succeeded":
        return None
    err = report.get("error")
    if status in (MANUAL_ROLLBACK, MANUAL_ROLLBACK_FAILED):
        undone = f"rollback of {report.get('rolls_back')} ({report.get('reason') or 'no reason given'})"
        return f"{undone} failed: {err}" if status == MANUAL_ROLLBACK_FAILED else undone
    return str(err) if err else None


def history_row(row: ReleaseRow, base: str | None) -> HistoryRow:
    """A ledger row with what the operator asks: who, how long, why, where to look."""
    rep = row.report
    ended = row.finished_at
    return HistoryRow(
        release_id=row.release_id, env=row.env, ref=row.ref, sha=row.sha, status=row.status,
        started_at=row.started_at, finished_at=ended,
        duration_s=(ended - row.started_at).total_seconds() if ended else None,
        started_by=rep.get("started_by"), approver=row.approver, approval=row.approval_reason,
        approval_key=row.approval_key, reason=_reason(rep, row.status), flow_run_id=row.flow_run_id,
        run_url=run_link(row.flow_run_id, base), rolls_back=rep.get("rolls_back"),
    )


async def history(settings: AevonSettings, env: str, limit: int) -> list[HistoryRow]:
    """The latest runs of `env`, newest first."""
    from providers.state.store import StateStore

    async with StateStore(settings.state_db_url) as store:
        rows = await store.ledger.history(env, limit)
    base = ui_url()
    return [history_row(r, base) for r in rows]
