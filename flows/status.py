"""`aevon-deploy status ENV`: what each target serves now, next to what the ledger expects; drift and unreachable."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from deployments.settings import AevonSettings
from flows.readonly import Serving, ask_targets, read_only_runtime
from providers.state.ledger import FINAL_GOOD, MANUAL_ROLLBACK, ReleaseRow

HISTORY_DEPTH = 200  # runs read back to find what each service should serve


class Verdict(StrEnum):
    """How what serves compares with what the ledger expects."""

    AS_EXPECTED = "as expected"
    DRIFT = "drift"  # something changed outside aevon-deploy (or a rollback left it elsewhere)
    UNREACHABLE = "unreachable"
    NEVER_DEPLOYED = "never deployed"
    UNKNOWN = "not in the ledger"  # serves something, but no run of aevon-deploy recorded this service


class Expected(BaseModel):
    """What the ledger says a service should serve, and which run says so."""

    version: str
    release_id: str
    why: str  # "deployed by ..." / "restored by the rollback of ..."


class ServiceStatus(BaseModel):
    """One service: what serves, what should, and the verdict."""

    service: str
    provider: str
    serving: str | None = None  # version (SHA) serving now
    url: str | None = None
    unreachable: str | None = None
    expected: Expected | None = None
    verdict: Verdict
    note: str = ""


class EnvironmentStatus(BaseModel):
    """`status ENV` as data (`--json`)."""

    env: str
    services: list[ServiceStatus] = Field(default_factory=list)
    last_run: dict[str, Any] | None = None
    last_good: dict[str, Any] | None = None
    missing_secrets: list[str] = Field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(s.verdict in (Verdict.AS_EXPECTED, Verdict.NEVER_DEPLOYED) for s in self.services)


def _changes(report: dict[str, Any], key: str) -> list[dict[str, Any]]:
    part = report.get(key)
    if isinstance(part, dict):
        return [s for s in part.get("services", []) if isinstance(s, dict)]
    return [s for s in report.get("services", []) if isinstance(s, dict)] if key == "services" else []


def expected_versions(rows: list[ReleaseRow]) -> dict[str, Expected]:
    """Per service, the version the newest finished run left it at: deployed (succeeded), restored (rolled back,
    compensated; a failed rollback's READY services too). `rows` newest first."""
    out: dict[str, Expected] = {}

    def keep(changes: list[dict[str, Any]], release_id: str, why: str) -> None:
        for s in changes:
            if s.get("status") == "READY" and s.get("after") and s.get("service") not in out:
                out[str(s["service"])] = Expected(version=str(s["after"]), release_id=release_id, why=why)

    for row in rows:  # within a run, the latest act first: its rollback, its deploys, the compensations it began with
        rep = row.report
        keep([*_changes(rep, "rollback"), *_changes(rep, "compensation")], row.release_id,
             f"restored by the rollback of {row.release_id}")
        if row.status == "succeeded":
            keep(_changes(rep, "services"), row.release_id, f"deployed by {row.release_id} ({row.ref})")
        for comp in rep.get("compensated", []):
            if isinstance(comp, dict):
                keep([s for s in comp.get("services", []) if isinstance(s, dict)], str(comp.get("release_id")),
                     f"restored by the compensation of {comp.get('release_id')}")
    return out


def _same(a: str, b: str) -> bool:
    n = min(len(a), len(b))
    return n >= 7 and a[:n] == b[:n]


def judge(serving: Serving, expected: Expected | None) -> ServiceStatus:
    """Compare one target's answer with the ledger's expectation."""
    out = ServiceStatus(service=serving.service, provider=serving.provider, expected=expected,
                        verdict=Verdict.AS_EXPECTED, unreachable=serving.unreachable)
    if serving.unreachable is not None:
        out.verdict = Verdict.UNREACHABLE
        return out
    if serving.version is None:
        out.verdict = Verdict.DRIFT if expected else Verdict.NEVER_DEPLOYED
        out.note = f"nothing serves; {expected.why} expects {expected.version[:12]}" if expected else ""
        return out
    out.serving, out.url = serving.version.version, serving.version.url
    if expected is None:
        out.verdict = Verdict.UNKNOWN
        out.note = "no run of aevon-deploy recorded this service"
    elif not _same(serving.version.version, expected.version):
        out.verdict = Verdict.DRIFT
        out.note = (f"serves {serving.version.version[:12]} but {expected.why} left {expected.version[:12]}: "
                    "changed outside aevon-deploy")
    return out


def _row(r: ReleaseRow | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"release_id": r.release_id, "ref": r.ref, "sha": r.sha, "status": r.status,
            "started_at": r.started_at.isoformat(), "error": r.report.get("error")}


async def environment_status(env: str, spec_dir: Path | None, settings: AevonSettings) -> EnvironmentStatus:
    """Ask every target, read the ledger, judge each service. Changes nothing."""
    from providers.state.store import StateStore

    ro = read_only_runtime(env, spec_dir, settings)
    try:
        serving = await ask_targets(ro)
    finally:
        await ro.rt.aclose()
    async with StateStore(settings.state_db_url) as store:
        rows = await store.ledger.history(env, HISTORY_DEPTH)
        good = await store.ledger.last_good(env)
    finished = [r for r in rows if r.status != "running"]
    expected = expected_versions(finished)
    return EnvironmentStatus(
        env=env, services=[judge(s, expected.get(name)) for name, s in serving.items()],
        last_run=_row(rows[0] if rows else None), last_good=_row(last_good(finished, good)),
        missing_secrets=sorted(ro.missing),
    )


def last_good(rows: list[ReleaseRow], latest: ReleaseRow | None) -> ReleaseRow | None:
    """The newest good run that no manual rollback undid since (`rows` newest first; `latest`: the ledger's newest
    good run, for when `rows` do not reach back that far)."""
    undone = {str(r.report.get("rolls_back")) for r in rows if r.status == MANUAL_ROLLBACK}
    good = next((r for r in rows if r.status == FINAL_GOOD and r.release_id not in undone), None)
    if good is None and latest is not None and latest.release_id not in undone and len(rows) >= HISTORY_DEPTH:
        return latest
    return good
