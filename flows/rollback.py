"""The rollback subflow: undo what one run changed, from its journal: services (reverse order), then migrations."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from prefect import Flow, State, flow
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from deployments.settings import AevonSettings
from flows.canary import undo_canary
from flows.observe import observe_run, started_by
from flows.publish import UNHEALTHY, publish_rollback
from flows.report import RollbackReport
from flows.runtime import Runtime, build_runtime
from providers.checks.base import CheckInput
from providers.errors import AevonError, ConfigError, TransientError
from providers.migrators.rollback_decision import (
    MigrationAction,
    MigrationRollbackInput,
    decide,
    inverse_for,
    needs_footprint,
    needs_preconditions,
)
from providers.models import DeployStatus, Release, ServiceVersion, utcnow
from providers.state.journal import CanaryEntry, JournalState, MigrationDetail, MigrationEntry, ServiceEntry
from tasks.checks import is_blocking, run_check
from tasks.common import as_is
from tasks.database import CONTRACT_TARGET, revert_migrations
from tasks.services import ServiceChange, describe_error, rollback_service

ROLLBACK_ROUNDS = 3  # a rollback outlives a vendor outage longer than one call's retry budget: whole rounds, again
ROLLBACK_ROUND_WAIT_S = 5.0  # wait before round n+1: n x this


def rollback_state(rb: RollbackReport) -> State[RollbackReport]:
    """The rollback run's final state: Completed, or Failed named RollbackFailed (red in the UI) with the reason."""
    if rb.ok:
        return Completed(data=rb, message=f"rolled back {rb.release_id}")
    why = "; ".join(rb.notes) or "the rollback did not complete"
    return Failed(data=rb, name="RollbackFailed", message=f"rollback of {rb.release_id} FAILED: {why}"[:1000])


async def rollback_result(state: State[Any], release_id: str, reason: str) -> RollbackReport:
    """The RollbackReport a rollback run's final state carries; the run's own error, raised, when it ended on one
    (an unknown release id: ConfigError); a failed report saying so when it ended with neither."""
    data = await state.aresult(raise_on_failure=False)
    if isinstance(data, RollbackReport):
        return data
    if isinstance(data, BaseException):
        raise data
    return RollbackReport(release_id=release_id, reason=reason, ok=False,
                          notes=[f"the rollback could not run: it ended {state.name} without a report"])


def rollback_subflow(rt: Runtime) -> Flow[[str, str, str], Coroutine[Any, Any, State[RollbackReport]]]:
    """The rollback of a deploy run as a child flow run, acting with that run's runtime (providers, state database).

    Built per run so that what it acts with is passed, not looked up; its parameters are what the UI shows.
    """

    @flow(name="rollback", flow_run_name="rollback-{env}-{release_id}")
    async def rollback(env: str, release_id: str, reason: str) -> State[RollbackReport]:
        """Undo release `release_id` of `env` from its journal and re-check health.

        Args:
            env: the environment (the deploy run's).
            release_id: the run whose side effects are undone (only what that run changed).
            reason: why (shown in the report).
        """
        if env != rt.spec.environment:
            raise ConfigError(f"this rollback acts on {rt.spec.environment}, not {env}")
        await observe_run(env)  # logs and env tags of this child run (flows/observe.py)
        return rollback_state(await publish_rollback(env, await undo_release(rt, release_id, reason)))  # + artifact

    return rollback


async def rollback_flow(env: str, release_id: str, reason: str, spec_dir: str | None = None) -> RollbackReport:
    """`manual_rollback` as a flow run, its report returned whatever its final state (Failed when it failed)."""
    state = await manual_rollback(env, release_id, reason, spec_dir, return_state=True)
    return await rollback_result(state, release_id, reason)


@flow(name="rollback", flow_run_name="rollback-{env}-{release_id}")
async def manual_rollback(env: str, release_id: str, reason: str,
                          spec_dir: str | None = None) -> State[RollbackReport]:
    """Undo release `release_id` of `env` from its journal and re-check health (started alone: CLI, UI).

    Args:
        env: the environment.
        release_id: the run whose side effects are undone (only what that run changed).
        reason: why (shown in the report).
        spec_dir: where the environment specs live (default: deployments/).
    """
    rt = build_runtime(env, Path(spec_dir) if spec_dir else None, settings=AevonSettings())
    try:
        await observe_run(env)
        row = await rt.state.ledger.get(release_id)
        if row is None or row.env != env:
            raise ConfigError(f"no run {release_id!r} of {env} in the release ledger "
                              f"(see `aevon-deploy history {env}`): nothing was changed")
        started, run_id = utcnow(), flow_run.get_id()
        rb = await undo_release(rt, release_id, reason)
        await rt.state.ledger.record_manual_rollback(  # who, when, what it restored, outcome: status and history
            f"{release_id}-rollback-{(run_id or secrets.token_hex(4))[:8]}", row, rb.ok, started, run_id,
            {"rolls_back": release_id, "started_by": started_by(), "reason": reason,
             "error": None if rb.ok else "; ".join(rb.notes) or "the rollback did not complete",
             "rollback": rb.model_dump(mode="json")})
        return rollback_state(await publish_rollback(env, rb))
    finally:
        await rt.aclose()


async def undo_release(rt: Runtime, release_id: str, reason: str) -> RollbackReport:
    """Services first (last layer first, each layer in parallel), then migrations, then a health re-check."""
    entries = await rt.state.ledger.open_entries(release_id)
    report = RollbackReport(release_id=release_id, reason=reason, ok=True)
    services = [e for e in entries if isinstance(e, ServiceEntry)]
    if any(e.target == CONTRACT_TARGET for e in entries):  # verified, and the old code may need what was dropped
        report.notes.append("this release passed validation and its contract phase began: its services and "
                            "migrations stay as they are (the old release may need what the contract dropped); "
                            "deploy it again to finish the contract phase")
        for e in entries:
            await rt.state.ledger.mark(e.id, JournalState.DONE)
        return report
    for canary in (e for e in entries if isinstance(e, CanaryEntry)):  # first: traffic back on stable at once
        if (undone := await undo_canary(rt, canary)) is not None:
            report.services.append(undone)
            report.ok &= undone.status == DeployStatus.READY
    for layer in sorted({e.undo.layer for e in services}, reverse=True):
        group = [e for e in services if e.undo.layer == layer]
        results = await asyncio.gather(*(_undo_service(rt, e) for e in group))
        report.services.extend(results)
        report.ok &= all(r.status == DeployStatus.READY for r in results)
    for entry in (e for e in entries if isinstance(e, MigrationEntry)):
        await _undo_migration(rt, entry, report)
    if rt.spec.rollback.health_recheck and entries:  # migration-only rollbacks too: the old code on what is left
        await _recheck(rt, release_id, report)
    return report


async def _undo_service(rt: Runtime, entry: ServiceEntry) -> ServiceChange:
    target = rt.targets.get(entry.target)
    if target is None:
        return ServiceChange(service=entry.target, provider=entry.undo.provider, status=DeployStatus.FAILED,
                             message="service no longer in the spec: roll it back by hand")
    timeout = rt.spec.service(entry.target).ready_timeout_s
    for round_ in range(ROLLBACK_ROUNDS):
        try:
            return await rollback_service(
                as_is(rt.state.ledger), entry.id, entry.target, as_is(target), entry.undo.previous, timeout
            )
        except TransientError as exc:  # the vendor is down past one call's budget: the undo is idempotent, again
            if round_ + 1 == ROLLBACK_ROUNDS:
                return ServiceChange(service=entry.target, provider=target.provider, status=DeployStatus.FAILED,
                                     message=f"rollback failed: {describe_error(exc)} "
                                             f"(the vendor stayed down for {ROLLBACK_ROUNDS} rounds of retries)")
            await asyncio.sleep(ROLLBACK_ROUND_WAIT_S * (round_ + 1))
        except Exception as exc:
            return ServiceChange(service=entry.target, provider=target.provider, status=DeployStatus.FAILED,
                                 message=f"rollback failed: {describe_error(exc)}")
    raise AssertionError("unreachable")


async def _undo_migration(rt: Runtime, entry: MigrationEntry, report: RollbackReport) -> None:
    """Read what the decision needs (applied migrations, the inverse's footprint), decide, act on the decision."""
    ledger = rt.state.ledger
    if rt.migrator is None:
        report.notes.append("a migration was journalled but the spec has no database now: revert it by hand")
        report.ok = False
        return
    checkout = Path(entry.undo.checkout)
    applied = list(entry.detail.applied or [])
    if entry.state == JournalState.INTENT:  # the process died during `migrate deploy`: ask the database
        report.notes.extend(await rt.migrator.settle_interrupted(checkout))  # a killed attempt: what the schema holds
        status = await rt.migrator.status(checkout)
        applied = [m for m in entry.undo.pending if m in status.applied]
    db = rt.spec.database
    inp = MigrationRollbackInput(
        env=rt.spec.environment, undo=entry.undo, applied=applied,
        revert_migrations=rt.spec.rollback.revert_migrations,
        keep_release_data=bool(db is not None and db.settings.get("keep_release_data")),
        stuck_services=[s.service for s in report.services if s.status != DeployStatus.READY],
        inverse_baseline=entry.detail.inverse_baseline,
        mode=db.rollback if db is not None else "inverse",
    )
    if needs_preconditions(inp):  # an inverse that would fail on the data now: code-only instead
        try:
            inp.unmet_preconditions = await rt.migrator.inverse_preconditions(inverse_for(inp))
        except Exception as exc:
            inp.preconditions_error = describe_error(exc)
    if needs_footprint(inp):
        try:
            inp.footprint = await rt.migrator.inverse_footprint(inverse_for(inp))
        except Exception as exc:
            inp.footprint_error = describe_error(exc)
    decision = decide(inp)
    if decision.action == MigrationAction.NOTHING:
        await ledger.mark(entry.id, JournalState.UNDONE, MigrationDetail(note="no migration was applied by this run"))
    elif decision.action == MigrationAction.KEEP:
        report.notes.append(decision.note)
        await ledger.mark(entry.id, JournalState.DONE, MigrationDetail(kept=applied, why=decision.why))
    else:
        try:
            await revert_migrations(as_is(ledger), entry.id, as_is(rt.migrator), checkout, applied,
                                    decision.inverse_sql)
            report.migrations_reverted.extend(applied)
            if decision.note:
                report.notes.append(decision.note)
        except Exception as exc:
            report.ok = False
            report.notes.append(f"inverse migration failed: {describe_error(exc)}")


async def _recheck(rt: Runtime, release_id: str, report: RollbackReport) -> None:
    """The health checks of what serves now; a blocking result fails the rollback (the restored release is not
    healthy, whatever was undone), named in the notes. A check of a service that serves nothing is not run."""
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
    health = [(spec, chk) for spec, chk in rt.checks
              if spec.kind == "health" and (spec.service is None or spec.service in services)]
    results = await asyncio.gather(*(run_check(chk, spec, inp, "recheck") for spec, chk in health))
    report.health = list(results)
    bad = [r for (spec, _), r in zip(health, results, strict=True) if is_blocking(r, spec)]
    if bad:
        report.ok = False
        what = "; ".join(f"{r.name} {r.outcome}: {r.summary}" for r in bad)
        report.notes.append(f"{UNHEALTHY}{what}. Re-running the rollback will not change that: deploy a fix, or "
                            f"restore the database (`aevon-deploy db backups {rt.spec.environment}`) if a schema "
                            "change that stayed applied is the cause")
