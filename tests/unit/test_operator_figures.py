"""DORA figures and the ledger's expectation per service, from ledger rows (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flows.readonly import Serving
from flows.stats import compute, duration
from flows.status import Verdict, expected_versions, judge
from providers.models import ServiceVersion
from providers.state.ledger import ReleaseRow

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
A, B, C = "a" * 40, "b" * 40, "c" * 40


def row(rid: str, status: str, sha: str, start_min: float, took_min: float, **report: Any) -> ReleaseRow:
    start = T0 + timedelta(minutes=start_min)
    return ReleaseRow(release_id=rid, env="dev", ref=rid, sha=sha, status=status, started_at=start,
                      finished_at=start + timedelta(minutes=took_min), report=report)


def svc(name: str, before: str | None, after: str, status: str = "READY") -> dict[str, Any]:
    return {"service": name, "provider": "memory", "before": before, "after": after, "status": status}


def test_dora_figures_over_the_window() -> None:
    rows = [
        row("r1", "succeeded", A, 0, 10),
        row("r2", "rolled_back", B, 60, 20,
            steps=[{"name": "deploy services: api", "started_at": (T0 + timedelta(minutes=65)).isoformat()}]),
        row("r3", "refused", B, 120, 1),
        row("r4", "rollback_failed", B, 180, 5),
        row("r5", "succeeded", C, 240, 10),
        row("old", "succeeded", A, -60 * 24 * 40, 10),  # outside the 30 days
    ]
    commits = {A: T0 - timedelta(hours=2), C: T0 + timedelta(hours=3)}
    s = compute("dev", rows, commits, 30, T0 + timedelta(days=1))
    assert (s.runs, s.deployments, s.failures, s.refused) == (5, 2, 2, 1)
    assert s.per_day == 2 / 30 and s.change_failure_rate == 0.5
    # lead times: r1 finished 10 min after T0, commit 2 h before: 130 min; r5 finished at 250 min, commit at 180
    assert s.lead_time_s == (130 * 60 + 70 * 60) / 2
    # restore: r2 from its first service deploy (65) to its end (80) = 15 min; r4 until r5 was good (250) from 180
    assert s.time_to_restore_s == (15 * 60 + 70 * 60) / 2 and s.not_restored == 0
    assert [r["figure"] for r in s.table()] == ["deployment frequency", "lead time for changes",
                                                "change failure rate", "time to restore"]


def test_no_runs_and_unrestored_failures() -> None:
    assert compute("dev", [], {}, 7, T0).change_failure_rate is None
    s = compute("dev", [row("r1", "failed", A, 0, 1)], {}, 7, T0 + timedelta(hours=1))
    assert s.not_restored == 1 and s.time_to_restore_s is None and s.change_failure_rate == 1.0
    assert [duration(x) for x in (None, 42, 185, 7800, 97200)] == ["—", "42s", "3m 05s", "2h 10m", "1d 3h"]


def test_a_good_release_rolled_back_by_hand_is_a_failed_change_restored_when_the_rollback_ended() -> None:
    rows = [
        row("r1", "succeeded", A, 0, 10),
        row("r2", "succeeded", B, 60, 10,
            steps=[{"name": "deploy services: api", "started_at": (T0 + timedelta(minutes=62)).isoformat()}]),
        row("r2-rollback-1", "manual_rollback", B, 100, 5, rolls_back="r2"),  # ends at 105
        row("r3", "succeeded", C, 120, 10),
        row("r3-rollback-1", "manual_rollback_failed", C, 140, 5, rolls_back="r3"),  # did not restore anything
    ]
    s = compute("dev", rows, {}, 30, T0 + timedelta(days=1))
    assert (s.runs, s.deployments, s.failures) == (3, 2, 1)  # rollbacks are not runs; r2 counts as failed
    assert s.change_failure_rate == 1 / 3
    assert s.time_to_restore_s == (105 - 62) * 60 and s.not_restored == 0  # from r2's first change to the rollback


def test_the_ledger_expects_what_the_last_finished_run_left() -> None:
    rows = [  # newest first
        row("r3", "rolled_back", C, 30, 5, services=[svc("api", B, C)],
            rollback={"services": [svc("api", C, B)]}),
        row("r2", "succeeded", B, 20, 5, services=[svc("api", A, B), svc("web", A, B)]),
        row("r1", "succeeded", A, 10, 5, services=[svc("api", None, A), svc("web", None, A), svc("db", None, A)]),
    ]
    exp = expected_versions(rows)
    assert exp["api"].version == B and exp["api"].why == "restored by the rollback of r3"
    assert exp["web"].version == B and exp["web"].why == "deployed by r2 (r2)"
    assert exp["db"].version == A
    drift = judge(Serving("api", "memory", version=ServiceVersion(service="api", version=C)), exp["api"])
    assert drift.verdict == Verdict.DRIFT and "changed outside aevon-deploy" in drift.note
    ok = judge(Serving("web", "memory", version=ServiceVersion(service="web", version=B[:12])), exp["web"])
    assert ok.verdict == Verdict.AS_EXPECTED
    down = judge(Serving("db", "memory", unreachable="vercel: HTTP 503"), exp["db"])
    assert down.verdict == Verdict.UNREACHABLE and down.unreachable == "vercel: HTTP 503"
    assert judge(Serving("new", "memory"), None).verdict == Verdict.NEVER_DEPLOYED
    assert judge(Serving("api", "memory"), exp["api"]).verdict == Verdict.DRIFT  # nothing serves, B expected
