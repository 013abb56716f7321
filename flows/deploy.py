"""The deploy flow: gates → database → services → warm-up → validation, with the rollback subflow on failure."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.context import get_run_context
from prefect.events import emit_event
from prefect.logging import get_run_logger
from prefect.states import Completed, Failed
from pydantic import Field

from deployments.settings import AevonSettings
from flows.approval import ApprovalRejected, approval_summary, wait_for_approval
from flows.leftovers import clean_leftovers
from flows.locking import environment_lock
from flows.notify import emit_outcome
from flows.observe import forward_domain_logs, started_by, tag_this_run
from flows.pipeline import Pipeline
from flows.publish import UNHEALTHY, log_verdicts, publish_run, unhealthy
from flows.records import github_finished, github_started
from flows.report import ApprovalRecord, DeployOutcome, DeployReport, RollbackReport
from flows.rollback import rollback_result, rollback_subflow, undo_release
from flows.runtime import Runtime, build_runtime
from flows.validation import bake_step
from providers.checks.base import CheckInput
from providers.errors import AevonError, ConfigError
from providers.migrators.base import MigrationLocked
from providers.models import DeployStatus, Release, ServiceVersion, utcnow
from providers.source.refs import check_ref
from providers.state.ledger import Ledger
from tasks.checks import is_blocking, run_check
from tasks.common import as_is
from tasks.database import apply_contract, apply_migrations, plan_migrations
from tasks.services import describe_error
from tasks.stop import StopSignal

LEDGER_STATUS = {
    DeployOutcome.SUCCEEDED: "succeeded",
    DeployOutcome.REFUSED: "refused",
    DeployOutcome.ROLLED_BACK: "rolled_back",
    DeployOutcome.ROLLBACK_FAILED: "rollback_failed",
    DeployOutcome.FAILED: "failed",
}


STATE_NAMES = {  # the deploy flow run's final state name (its type: Completed or Failed)
    DeployOutcome.SUCCEEDED: "Completed",
    DeployOutcome.REFUSED: "Refused",
    DeployOutcome.ROLLED_BACK: "RolledBack",
    DeployOutcome.ROLLBACK_FAILED: "RollbackFailed",
    DeployOutcome.FAILED: "Failed",
    DeployOutcome.NOTHING_TO_PROMOTE: "NothingToPromote",
}


class Refused(AevonError):
    """The run stops before any change (gate failed, destructive migration not allowed, promotion rule ...)."""


class NeedsRollback(AevonError):
    """Something failed after changes began; the rollback subflow must run."""


def _flow_run_id() -> str:
    try:
        ctx = get_run_context()
        return str(ctx.flow_run.id) if getattr(ctx, "flow_run", None) else uuid.uuid4().hex  # type: ignore[union-attr]
    except Exception:
        return uuid.uuid4().hex


@flow(name="deploy", flow_run_name="deploy-{env}-{ref}")
async def deploy_flow(
    env: str, ref: str, allow_destructive: bool = False, spec_dir: str | None = None, force: bool = False
) -> State[DeployReport]:
    """Deploy `ref` to `env` through the runbook's DAG; roll back by itself when a deploy or validation fails.

    Args:
        env: environment name (a spec deployments/<env>.yaml must exist).
        ref: git ref to deploy (branch, tag or SHA; prod: a release tag).
        allow_destructive: apply migrations classified destructive (otherwise refused where the spec says so).
        spec_dir: folder of the environment specs (default: the project's deployments/).
        force: deploy even when `ref` is the release already serving and validated (spec `promotion.skip_unchanged`).

    Returns:
        A Completed state carrying the DeployReport (named NothingToPromote when the release already served), or a
        Failed state carrying it when the run did not succeed.
    """
    return await run_deploy(env, ref, allow_destructive, spec_dir, force)


ReleaseTag = Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$", description="a release tag such as v1.4.0")]


@flow(name="deploy-prod", flow_run_name="deploy-prod-{ref}")
async def deploy_prod_flow(
    ref: ReleaseTag, allow_destructive: bool = False, spec_dir: str | None = None, force: bool = False
) -> State[DeployReport]:
    """Deploy a release tag to production: the approval gate, staging evidence and release rules of prod.yaml.

    Args:
        ref: a release tag such as v1.4.0 (the deployment's parameter schema refuses anything else).
        allow_destructive: apply migrations classified destructive (the approver can also allow it).
        spec_dir: folder of the environment specs (default: the project's deployments/).
        force: deploy even when the tag's commit already serves, validated (prod.yaml `promotion.skip_unchanged`).
    """
    return await run_deploy("prod", ref, allow_destructive, spec_dir, force)


async def run_deploy(
    env: str, ref: str, allow_destructive: bool, spec_dir: str | None, force: bool = False
) -> State[DeployReport]:
    """The body of both deploy flows: everything after the flow run has started."""
    flow_run_id = _flow_run_id()
    report = DeployReport(env=env, ref=ref, flow_run_id=flow_run_id, started_by=started_by())
    forward_domain_logs()  # providers' and our loggers into this run's Logs tab
    tagging = asyncio.ensure_future(tag_this_run(env))  # env:<env> however the run was started (beside the run)
    rt: Runtime | None = None
    try:
        with report.step("load spec and secrets"):
            rt = build_runtime(env, Path(spec_dir) if spec_dir else None, settings=AevonSettings())
            check_ref(rt.spec, ref)
        ledger = (await rt.state.open()).ledger
        async with environment_lock(env, rt.settings.lock_lease_s, "deploy", db_url=rt.settings.state_db_url) as lease:
            ledger.fence(env, lease.token)  # no journal intent (so no side effect) once the lock is not ours
            finished = True
            try:
                report.leftovers = await clean_leftovers(rt)  # child processes, shadow databases of a killed run
                await _compensate(rt, ledger, report)
                await _run(rt, ledger, report, flow_run_id, allow_destructive, force)
            except AevonError as exc:
                _classify(report, exc)
            except BaseException:  # a crash: left `running`, so the next run compensates it from its journal
                finished = False
                raise
            finally:  # inside the lock: the next run must never see a finished run as unfinished
                if finished:
                    await _record(report, ledger)
                    await github_finished(rt, report)  # records.github: success / failure / inactive
    except AevonError as exc:
        _classify(report, exc)
    finally:
        if rt is not None:
            await rt.aclose()  # and the run's state database
        await tagging  # never raises: tags are for finding runs
    return await _finish(report)


def _classify(report: DeployReport, exc: AevonError) -> None:
    if isinstance(exc, Refused | ConfigError):
        report.outcome, report.error = DeployOutcome.REFUSED, str(exc)
    else:
        report.outcome, report.error = DeployOutcome.FAILED, describe_error(exc)


async def _record(report: DeployReport, ledger: Ledger) -> None:
    report.finished_at = utcnow()
    if report.release_id:
        await ledger.finish_release(report.release_id, LEDGER_STATUS[report.outcome], report.model_dump(mode="json"))


async def _finish(report: DeployReport) -> State[DeployReport]:
    report.finished_at = report.finished_at or utcnow()
    await publish_run(report)  # report, checks table, evidence (flows/publish.py)
    emit_outcome(report)  # aevon.deploy.<outcome>: payload in flows/notify.py, automations in deployments/automations
    if report.outcome == DeployOutcome.SUCCEEDED:
        return Completed(data=report, message="deployed")
    if report.outcome == DeployOutcome.NOTHING_TO_PROMOTE:
        return Completed(data=report, name=STATE_NAMES[report.outcome], message=report.note)
    return Failed(data=report, name=STATE_NAMES[report.outcome],  # the Prefect UI names what happened
                  message=f"{report.outcome}: {report.error or ''}".strip(": "))


async def _compensate(rt: Runtime, ledger: Ledger, report: DeployReport) -> None:
    """Undo runs of this environment whose process died part way (we hold the lock: none of them is running)."""
    for row in await ledger.unfinished(rt.spec.environment):
        with report.step(f"compensate {row.release_id}") as st:
            rb = await undo_release(rt, row.release_id, "its run never finished (the process died)")
            report.compensated.append(rb)
            st.outcome = "ok" if rb.ok else "failed"
            await ledger.finish_release(
                row.release_id, "compensated" if rb.ok else "rollback_failed",
                {**row.report, "compensation": rb.model_dump(mode="json")},
            )
            if not rb.ok:
                raise AevonError(f"could not compensate the crashed run {row.release_id}: " + "; ".join(rb.notes))


async def _run(
    rt: Runtime, ledger: Ledger, report: DeployReport, flow_run_id: str, allow_destructive: bool, force: bool = False
) -> None:
    spec = rt.spec
    emit_event(event="aevon.deploy.started", resource={"prefect.resource.id": f"aevon.environment.{spec.environment}"},
               payload={"ref": report.ref})
    with report.step("resolve release") as st:
        release = await _resolve(rt, report.ref, flow_run_id)
        report.sha = release.sha
        st.detail = f"{report.ref} → {release.short_sha}"
        if await _nothing_to_promote(rt, ledger, report, force):  # no release row, no gate, no change
            return
        report.release_id = release.release_id
        await ledger.start_release(release.release_id, spec.environment, report.ref, release.sha, flow_run_id)
        if spec.require_staging_pass and await ledger.passed("staging", release.sha) is None:
            raise Refused(f"commit {release.short_sha} has not passed validation in staging")
    checkout = Path(str(release.checkout_dir))
    try:  # any failure from here on: rolled back when the journal shows a change, else REFUSED (nothing changed)
        await github_started(rt, report)  # records.github: the GitHub deployment, in_progress (never fails the run)
        await _gates(rt, report, release, checkout)
        if spec.approval.required:
            allow_destructive = await _approve(rt, ledger, report, release) or allow_destructive
        await _database(rt, ledger, report, release, checkout, allow_destructive or bool(spec.database and
                                                                                         spec.database.allow_destructive))
        await _deploy_and_validate(rt, ledger, report, release, checkout)
        await _contract(rt, ledger, report, release, checkout)
        with report.step("record good release"):
            inp = CheckInput(release=release, services=await _current(rt), checkout_dir=checkout)
            for (_, chk), res in zip(rt.checks, report.checks, strict=True):
                if res.outcome.value == "PASSED":
                    await chk.record_baseline(inp, res)
    except NeedsRollback as exc:
        await _rollback(rt, report, release, str(exc))
        return
    except Refused:
        raise
    except Exception as exc:  # anything else once changes may have begun: undo them, never leave them FAILED
        await _rollback(rt, report, release, describe_error(exc))
        return
    report.outcome = DeployOutcome.SUCCEEDED


async def _nothing_to_promote(rt: Runtime, ledger: Ledger, report: DeployReport, force: bool) -> bool:
    """spec.promotion.skip_unchanged: the SHA already serves, validated, nothing rolled back since (unless force)."""
    if force or not rt.spec.promotion.skip_unchanged or report.sha is None:
        return False
    done = await ledger.validated_serving(rt.spec.environment, report.sha)
    if done is None:
        return False
    since = f"{done.finished_at:%Y-%m-%d %H:%M:%S} UTC" if done.finished_at else "?"
    report.outcome = DeployOutcome.NOTHING_TO_PROMOTE
    report.note = (f"nothing to promote: {report.sha[:12]} already serving and validated since {since} "
                   f"(run {done.flow_run_id or '?'}, release {done.release_id}); deploy with force to re-deploy")
    get_run_logger().info("%s", report.note)
    return True


async def _resolve(rt: Runtime, ref: str, flow_run_id: str) -> Release:
    sha = await rt.source.resolve(ref)  # check_ref ran in run_deploy, before the lock
    checkout = await rt.source.checkout(sha)
    release_id = f"{rt.spec.environment}-{sha[:12]}-{flow_run_id.replace('-', '')[:8]}"
    return Release(release_id=release_id, env=rt.spec.environment, ref=ref, sha=sha, checkout_dir=str(checkout))


async def _gates(rt: Runtime, report: DeployReport, release: Release, checkout: Path) -> None:
    if not rt.gates:
        return
    with report.step("pre-deploy gates") as st:
        inp = CheckInput(release=release, services=await _current(rt), checkout_dir=checkout)
        report.gates = list(await asyncio.gather(*(run_check(c, s, inp, "gate") for s, c in rt.gates)))
        log_verdicts(report.gates, "gate")
        failed = [r for (s, _), r in zip(rt.gates, report.gates, strict=True) if is_blocking(r, s)]
        st.detail = f"{len(report.gates) - len(failed)}/{len(report.gates)} passed"
        if failed:
            st.outcome = "failed"
            raise Refused("gates failed: " + "; ".join(f"{r.name}: {r.summary}" for r in failed))


async def _approve(rt: Runtime, ledger: Ledger, report: DeployReport, release: Release) -> bool:
    """The approval gate; the environment lock stays held while the run waits. Returns allow_destructive."""
    with report.step("approval") as st:
        t0 = time.monotonic()
        description = await approval_summary(rt, ledger, release, await _current(rt))
        try:
            answer = await wait_for_approval(rt, description, release)
        except ApprovalRejected as exc:
            report.approval = ApprovalRecord(decision="timed out", waited_s=time.monotonic() - t0)
            st.outcome = "timed out"
            raise Refused(str(exc)) from exc
        decision = "approved" if answer.approve else "rejected"
        report.approval = ApprovalRecord(
            decision=decision, approver=answer.approver.strip(), reason=answer.reason.strip(),
            allow_destructive=answer.allow_destructive, waited_s=time.monotonic() - t0, key=answer.fingerprint,
        )
        await ledger.record_approval(release.release_id, answer.approver, f"{decision}: {answer.reason}",
                                     answer.fingerprint)
        st.outcome, st.detail = decision, f"by {answer.approver.strip()}"
        if not answer.approve:
            raise Refused(f"rejected by {answer.approver.strip()}: {answer.reason.strip()}; nothing was changed")
        return answer.allow_destructive


async def _database(
    rt: Runtime, ledger: Ledger, report: DeployReport, release: Release, checkout: Path, allow_destructive: bool
) -> None:
    if rt.migrator is None:
        return
    with report.step("migration plan") as st:
        last = await ledger.last_good(rt.spec.environment)
        previous = await rt.source.checkout(last.sha) if last else None
        plan = await plan_migrations(as_is(rt.migrator), checkout, previous)
        report.migration_plan = plan
        st.detail = f"{len(plan.pending)} pending" + (", destructive" if plan.destructive else "")
        invalid = [f for f in plan.findings if f.detail.get("category") == "invalid"]
        if invalid:  # does not parse, or fails on Prisma's shadow database: it would fail here, so nothing runs
            raise Refused("migration would fail, nothing was applied: " + "; ".join(f.message for f in invalid))
        if plan.destructive and not allow_destructive:
            raise Refused("destructive migration refused (allow it with --allow-destructive): "
                          + "; ".join(f.message for f in plan.findings if f.detail.get("category") == "destructive"))
    if not plan.pending:
        return
    backup_id: str | None = None
    if rt.spec.database is not None and rt.spec.database.backup:  # prod: a verified backup, or no migration
        from flows.db import describe, take_backup

        with report.step("backup") as st:
            try:
                record = await take_backup(rt, release)
            except AevonError as exc:
                st.outcome, st.detail = "failed", describe_error(exc)
                raise Refused(f"no backup could be taken, nothing was migrated: {describe_error(exc)}") from exc
            st.detail = describe(record)
            if not record.verified:
                st.outcome = "failed"
                raise Refused(f"backup {record.backup_id} did not verify, nothing was migrated: "
                              + "; ".join(record.problems))
            backup_id = record.backup_id
    with report.step("migrate") as st:
        try:
            result = await apply_migrations(as_is(ledger), release, as_is(rt.migrator), checkout, plan, backup_id)
        except MigrationLocked as exc:
            st.outcome, st.detail = "failed", describe_error(exc)
            if not exc.applied:
                raise Refused(f"migration refused, nothing was changed: {describe_error(exc)}") from exc
            raise NeedsRollback(f"migration failed: {describe_error(exc)}") from exc
        except AevonError as exc:
            st.outcome, st.detail = "failed", describe_error(exc)
            raise NeedsRollback(f"migration failed: {describe_error(exc)}") from exc
        report.migrations_applied = result.applied
        st.detail = ", ".join(result.applied) or "nothing to apply"
        if plan.contract:
            st.detail += f"; contract phase after validation: {', '.join(plan.contract)}"
    if result.applied:
        await _old_release_on_new_schema(rt, report, release)


async def _old_release_on_new_schema(rt: Runtime, report: DeployReport, release: Release) -> None:
    """After the expand phase, before any service moves: the serving release's health checks on the new schema."""
    health = [(s, c) for s, c in rt.checks if s.kind == "health"]
    serving = await _current(rt)
    if not health or not serving:  # a first deploy: no old release to break
        return
    with report.step("serving release on the new schema") as st:
        inp = CheckInput(release=release, services=serving)
        results = await asyncio.gather(*(run_check(as_is(c), s, as_is(inp), "old-on-new") for s, c in health))
        bad = [r for (s, _), r in zip(health, results, strict=True) if is_blocking(r, s)]
        st.detail = f"{len(results) - len(bad)}/{len(results)} health checks passed"
        if bad:
            st.outcome = "failed"
            raise NeedsRollback(
                "the serving release fails its health checks on the new schema, so the expand phase is not backward "
                "compatible (no service was changed): " + "; ".join(f"{r.name}: {r.summary}" for r in bad))


async def _contract(rt: Runtime, ledger: Ledger, report: DeployReport, release: Release, checkout: Path) -> None:
    """After validation and the bake passed: the contract migrations. A failure leaves the release serving."""
    plan = report.migration_plan
    if rt.migrator is None or plan is None or not plan.contract:
        return
    with report.step("database: contract phase") as st:
        try:
            result = await apply_contract(as_is(ledger), release, as_is(rt.migrator), checkout, plan)
            report.contract_applied = result.applied
        except AevonError as exc:
            st.outcome = "failed"
            get_run_logger().warning("contract phase failed; the release keeps serving: %s", describe_error(exc))
        report.contract_left = [m for m in plan.contract if m not in report.contract_applied]
        st.detail = (f"applied {', '.join(report.contract_applied) or 'nothing'}"
                     + (f"; left to apply (the next deploy applies them): {', '.join(report.contract_left)}"
                        if report.contract_left else ""))


async def _deploy_and_validate(
    rt: Runtime, ledger: Ledger, report: DeployReport, release: Release, checkout: Path
) -> None:
    """Services by layer, each warmed up as soon as it is ready, each check starting when what it observes is ready
    (flows/pipeline.py), then the bake; the first failure anywhere stops the rest and the rollback follows."""
    out = await Pipeline(rt, ledger, report, release, checkout).run()
    reason = out.reason()
    if reason is None and rt.checks:
        inp = CheckInput(release=release, services=out.services, checkout_dir=checkout)
        baked = await bake_step(rt, report, inp, StopSignal() if rt.spec.validation.fail_fast else None)
        if baked:
            reason = "validation failed: " + "; ".join(f"{r.name}: {r.summary}" for r in baked)
    if reason is not None:
        raise NeedsRollback(reason)


async def _current(rt: Runtime) -> dict[str, ServiceVersion]:
    names = list(rt.targets)
    found = await asyncio.gather(*(rt.targets[n].current() for n in names))
    return {n: v for n, v in zip(names, found, strict=True) if v is not None}


async def _rollback(rt: Runtime, report: DeployReport, release: Release, reason: str) -> None:
    report.error = reason
    try:
        changed = bool(await rt.state.ledger.open_entries(release.release_id))
    except Exception:  # cannot tell: assume changes were made and let the rollback try
        changed = True
    if not changed:  # failed before its first side effect (journalled before it happens): nothing to undo
        raise Refused(f"{reason}; nothing was changed")
    if not rt.spec.rollback.automatic:
        get_run_logger().error("automatic rollback is off; roll back with `aevon-deploy rollback %s %s`",
                               rt.spec.environment, release.release_id)
        report.outcome = DeployOutcome.FAILED
        return
    finish = f"aevon-deploy rollback {rt.spec.environment} {release.release_id}"
    with report.step("rollback") as st:
        try:
            rb = await rollback_result(await rollback_subflow(rt)(  # a child flow run, red when it failed
                rt.spec.environment, release.release_id, reason, return_state=True), release.release_id, reason)
        except Exception as exc:
            rb = RollbackReport(release_id=release.release_id, reason=reason, ok=False,
                                notes=[f"the rollback could not run: {describe_error(exc)}"])
        if not rb.ok:
            left = [f"{s.service} serves {s.after or 'nothing'} ({s.message})" for s in rb.services
                    if s.status != DeployStatus.READY]
            if left or not (sick := unhealthy(rb)):  # re-running it cannot heal what serves
                rb.notes.append(("left as it is: " + "; ".join(left) + ". " if left else "")
                                + f"Finish with `{finish}` once the vendor answers")
            else:  # the state message and history say it
                report.error = f"{reason}; after the rollback the {UNHEALTHY}{sick}"
        report.rollback = rb
        st.outcome = "ok" if rb.ok else "failed"
    report.outcome = DeployOutcome.ROLLED_BACK if rb.ok else DeployOutcome.ROLLBACK_FAILED


async def report_of(state: State[Any]) -> DeployReport:
    """The DeployReport a deploy flow run's final state carries."""
    data = await state.aresult(raise_on_failure=False)
    if isinstance(data, DeployReport):
        return data
    crash = data if isinstance(data, Exception) and not isinstance(data, AevonError) else None
    raise AevonError(f"the deploy flow ended without a report ({state.type}: {state.message})") from crash
