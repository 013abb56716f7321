"""The rollback subflow: undo what one run changed, from its journal: services (reverse order), then migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prefect import flow

from flows.report import RollbackReport
from flows.runtime import Runtime, build_runtime
from providers.checks.base import CheckInput
from providers.errors import AevonError
from providers.models import DeployStatus, Release, ServiceVersion
from providers.state.ledger import DONE, INTENT, UNDONE, JournalEntry, Ledger
from tasks.checks import is_blocking, run_check
from tasks.common import as_is
from tasks.database import revert_migrations
from tasks.services import ServiceChange, describe_error, rollback_service

# Runtimes of the deploy runs active in this process, by environment: the subflow reuses their providers.
ACTIVE: dict[str, Runtime] = {}


@flow(name="rollback", flow_run_name="rollback-{env}-{release_id}")
async def rollback_flow(env: str, release_id: str, reason: str, spec_dir: str | None = None) -> RollbackReport:
    """Undo release `release_id` of `env` from its journal and re-check health.

    Args:
        env: the environment.
        release_id: the run whose side effects are undone (only what that run changed).
        reason: why (shown in the report).
        spec_dir: where the environment specs live (default: deployments/).
    """
    rt = ACTIVE.get(env)
    own = rt is None
    if rt is None:
        rt = build_runtime(env, Path(spec_dir) if spec_dir else None)
    ledger = await Ledger.connect(rt.settings.state_db_url)
    try:
        return await undo_release(rt, ledger, release_id, reason)
    finally:
        await ledger.close()
        if own:
            await rt.aclose()


async def undo_release(rt: Runtime, ledger: Ledger, release_id: str, reason: str) -> RollbackReport:
    """Services first (last layer first, each layer in parallel), then migrations, then a health re-check."""
    entries = await ledger.open_entries(release_id)
    report = RollbackReport(release_id=release_id, reason=reason, ok=True)
    services = [e for e in entries if e.step == "service"]
    for layer in sorted({int(e.undo.get("layer", 0)) for e in services}, reverse=True):
        group = [e for e in services if int(e.undo.get("layer", 0)) == layer]
        results = await asyncio.gather(*(_undo_service(rt, ledger, e) for e in group))
        report.services.extend(results)
        report.ok &= all(r.status == DeployStatus.READY for r in results)
    for entry in (e for e in entries if e.step == "migration"):
        await _undo_migration(rt, ledger, entry, report)
    if rt.spec.rollback.health_recheck and report.services:
        await _recheck(rt, release_id, report)
    return report


async def _undo_service(rt: Runtime, ledger: Ledger, entry: JournalEntry) -> ServiceChange:
    target = rt.targets.get(entry.target)
    prev = entry.undo.get("previous")
    if target is None:
        return ServiceChange(service=entry.target, provider=str(entry.undo.get("provider")), status=DeployStatus.FAILED,
                             message="service no longer in the spec: roll it back by hand")
    timeout = rt.spec.service(entry.target).ready_timeout_s
    try:
        return await rollback_service(
            as_is(ledger), entry.id, entry.target, as_is(target), ServiceVersion(**prev) if prev else None, timeout
        )
    except Exception as exc:
        return ServiceChange(service=entry.target, provider=target.provider, status=DeployStatus.FAILED,
                             message=f"rollback failed: {describe_error(exc)}")


async def _undo_migration(rt: Runtime, ledger: Ledger, entry: JournalEntry, report: RollbackReport) -> None:
    if rt.migrator is None:
        report.notes.append("a migration was journalled but the spec has no database now: revert it by hand")
        report.ok = False
        return
    checkout = Path(str(entry.undo.get("checkout")))
    applied: list[str] = list(entry.detail.get("applied", []))
    if entry.state == INTENT:  # the process died during `migrate deploy`: ask the database what got applied
        status = await rt.migrator.status(checkout)
        applied = [m for m in entry.undo.get("pending", []) if m in status.applied]
    if not applied:
        await ledger.mark(entry.id, UNDONE, {"note": "no migration was applied by this run"})
        return
    from providers.migrators.prisma import inverse as inv

    inverse = entry.undo.get("inverse_sql")
    steps = dict(entry.undo.get("inverse_steps") or {})
    if inverse is not None and steps and applied != list(entry.undo.get("pending", applied)):
        inverse = inv.compose(steps, applied)  # a later migration failed: undo only the ones that got applied
    why = dropped = ""
    stuck = [s.service for s in report.services if s.status != DeployStatus.READY]
    if not rt.spec.rollback.revert_migrations:
        why = "rollback.revert_migrations is off"
    elif stuck:  # reverting the schema under code that needs it would break what still runs
        why = f"{', '.join(stuck)} could not be rolled back and still run this release's code, which needs its schema"
    elif inverse is None:
        why = "no inverse migration was prepared (see the plan's inverse finding)"
    elif entry.undo.get("inverse_loses_data"):
        why = "its inverse would lose data (see the plan's inverse finding)"
    else:  # rows the failed release wrote where the inverse drops them: dropped and said, or kept by setting
        try:
            new = inv.grown(entry.detail.get("inverse_baseline"), await rt.migrator.inverse_footprint(inverse))
        except Exception as exc:
            new, why = {}, f"the data the inverse would drop could not be measured ({describe_error(exc)})"
        if new and rt.spec.database is not None and rt.spec.database.settings.get("keep_release_data"):
            why = f"the new release wrote data the inverse would drop: {inv.describe(new)} (keep_release_data)"
        elif new:
            dropped = (f"the inverse dropped what the failed release wrote there: {inv.describe(new)} "
                       "(set database.settings.keep_release_data to keep such data, reverting the code only)")
    if why:
        backup = entry.undo.get("backup_id")
        env = rt.spec.environment
        report.notes.append(
            ("" if stuck else "code reverted only; ") + f"migrations {', '.join(applied)} stay applied because {why}. "
            + (f"To return the database to its state before this run, restore the verified backup explicitly: "
               f"`aevon-deploy db restore {env} {backup}`." if backup else
               "No backup was taken by this run (database.backup is off); `aevon-deploy db backups "
               f"{env}` lists earlier ones.")
        )
        await ledger.mark(entry.id, DONE, {"kept": applied, "why": why})
        return
    try:
        await revert_migrations(as_is(ledger), entry.id, as_is(rt.migrator), checkout, applied, inverse)
        report.migrations_reverted.extend(applied)
        if dropped:
            report.notes.append(dropped)
    except Exception as exc:
        report.ok = False
        report.notes.append(f"inverse migration failed: {describe_error(exc)}")


async def _recheck(rt: Runtime, release_id: str, report: RollbackReport) -> None:
    services: dict[str, ServiceVersion] = {}
    for name, target in rt.targets.items():
        try:
            cur = await target.current()
        except AevonError as exc:
            report.notes.append(f"health re-check: cannot read {name}: {exc}")
            continue
        if cur is not None:
            services[name] = cur
    probe = Release(release_id=release_id, env=rt.spec.environment, ref="rollback", sha="0" * 40)
    inp = CheckInput(release=probe, services=services)
    health = [(spec, chk) for spec, chk in rt.checks if spec.kind == "health"]
    results = await asyncio.gather(*(run_check(as_is(chk), spec, as_is(inp), "recheck") for spec, chk in health))
    report.health = list(results)
    bad = [r.name for (spec, _), r in zip(health, results, strict=True) if is_blocking(r, spec)]
    if bad:
        report.ok = False
        report.notes.append(f"health still failing after rollback: {', '.join(bad)}")
