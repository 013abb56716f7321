"""The production approval gate: the plan shown in the Prefect UI, a listed approver's signed decision, or no change."""

from __future__ import annotations

import asyncio
import getpass
import time
from dataclasses import dataclass
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout, PrefectHTTPStatusError
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from prefect.input.actions import aread_flow_run_input
from prefect.input.run_input import keyset_from_base_key
from prefect.logging import get_run_logger
from prefect.states import Running
from pydantic import Field

from flows.notify import emit_awaiting_approval, flow_run_url
from flows.runtime import Runtime
from providers.approval.keys import load_approvers
from providers.approval.verify import Answer, judge
from providers.errors import AevonError
from providers.models import Release, ServiceVersion
from providers.state.ledger import Ledger


class ApprovalInput(RunInput):
    """What the approver fills in on the paused run (Prefect UI: Resume) or with `aevon-deploy approve`."""

    approve: bool = Field(default=False, description="On: approve and deploy. Off: reject (nothing is changed).")
    approver: str = Field(default="", description="Your name, as listed in the environment's approval.approvers")
    reason: str = Field(default="", description="Why: recorded with the release in the ledger")
    allow_destructive: bool = Field(default=False, description="Also apply migrations classified destructive")
    signature: str = Field(default="", description="Your SSH signature of this answer: the output of "
                           "`aevon-deploy approve RUN_ID --as NAME --key KEY --reason ... --print-signature`")


@dataclass(frozen=True)
class SignedAnswer:
    """An accepted answer: the decision, who (and with which key: SHA256 fingerprint), why."""

    approve: bool
    approver: str
    reason: str
    allow_destructive: bool
    fingerprint: str | None


SERVER_GRACE_S = 600  # the server's own pause timeout, past ours: it ends the run only if this process died
OUTAGE_POLL_S = 2.0  # how often a run whose pause lost the API asks again (the pause's own poll interval)


async def _running_again() -> None:
    """Take our paused run out of Paused so that it can finish with its report."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    async with get_client() as client:
        await client.set_flow_run_state(ctx.flow_run.id, Running(), force=True)


def api_down(exc: BaseException) -> bool:
    """True when `exc` says the Prefect API is unreachable or restarting (a transport error, a 5xx answer)."""
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code >= 500


async def _after_outage(run_id: str, key: str) -> ApprovalInput | None:
    """After the API failed us mid-pause (a server restart longer than the client's own retries): wait until it
    answers, then the answer given meanwhile to pause `key` (the run was resumed), or None when that pause is not
    in place (its proposal never reached the server); while the run is still paused at `key`, keep waiting."""
    keyset = keyset_from_base_key(f"paused-{key}")
    while True:
        try:
            async with get_client() as client:
                state = (await client.read_flow_run(UUID(run_id))).state
                if state is not None and state.is_running():
                    value = await aread_flow_run_input(keyset["response"], flow_run_id=UUID(run_id))
                    return None if value is None else ApprovalInput(**value)
                if state is None or not state.is_paused() or state.state_details.pause_key != key:
                    return None
        except Exception as exc:
            if not api_down(exc):
                raise
        await asyncio.sleep(OUTAGE_POLL_S)


class ApprovalRejected(AevonError):
    """A listed approver rejected the deploy, or nobody answered in time."""


async def approval_summary(rt: Runtime, ledger: Ledger, release: Release, current: dict[str, ServiceVersion]) -> str:
    """Markdown shown above the approval form: versions, migrations and their findings, the staging evidence."""
    lines = [f"## Approve deploy of `{release.ref}` ({release.short_sha}) to **{rt.spec.environment}**", ""]
    lines += ["| service | provider | now | after |", "|---|---|---|---|"]
    for svc in rt.spec.services:
        cur = current.get(svc.name)
        lines.append(f"| {svc.name} | {svc.provider} | {cur.version[:12] if cur else '(none)'} | {release.short_sha} |")
    lines.append("")
    if rt.migrator is not None and release.checkout_dir:
        from pathlib import Path

        try:
            plan = await rt.migrator.plan(Path(release.checkout_dir), None)
            lines.append(f"**Migrations pending:** {', '.join(plan.pending) or 'none'}")
            if plan.contract:
                lines.append(f"- expand phase (before the services): {', '.join(plan.expand) or 'none'}; "
                             f"contract phase (after validation): {', '.join(plan.contract)}")
            lines += [f"- {f.severity}: {f.message}" + (f" (`{f.location}`)" if f.location else "")
                      for f in plan.findings]
            if plan.destructive:
                lines.append("- **destructive**: refused unless you switch on *allow destructive*")
        except AevonError as exc:
            lines.append(f"**Migrations:** could not be read now ({exc})")
        lines.append("")
    staged = await ledger.passed("staging", release.sha)
    lines.append(
        f"**Validated in staging:** release `{staged.release_id}` at {staged.finished_at:%Y-%m-%d %H:%M} UTC"
        if staged and staged.finished_at else "**Validated in staging:** no staging run validated this commit"
    )
    approvers = ", ".join(rt.spec.approval.names) or "(none listed: nobody can approve)"
    lines += ["", f"Approvers: {approvers}. Rejecting, or no answer within "
              f"{rt.spec.approval.timeout_s:.0f}s, ends the run with nothing changed."]
    ctx = FlowRunContext.get()
    run_id = str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else "RUN_ID"
    lines += ["", "Answers are signed (SSH key listed for you in the spec); the person who started the run cannot "
              "approve it. Sign in a terminal and paste the signature below, or answer from there:",
              f"`aevon-deploy approve {run_id} --as NAME --key ~/.ssh/id_ed25519 --reason \"...\" [--reject] "
              "--print-signature`"]
    return "\n".join(lines)


def run_starters() -> set[str]:
    """Who started this flow run, as far as we can know (see docs/prefect-ui.md, "Who may approve").

    The flow run's creator when the API recorded one (Prefect Cloud: the user who clicked Run); for a run started
    in-process by `aevon-deploy deploy` (no deployment), the OS user running it. A deployment run on a Prefect
    server without authentication has no recorded creator: then nobody is excluded and the signature is the rule.
    """
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx is not None else None
    found: set[str] = set()
    if run is not None and run.created_by is not None:
        found.update(v for v in (run.created_by.display_value, str(run.created_by.id or "")) if v)
    if run is None or run.deployment_id is None:
        found.add(getpass.getuser())
    return found


async def wait_for_approval(rt: Runtime, description: str, release: Release | None = None) -> SignedAnswer:
    """Pause until a listed approver answers with a valid signature; any other answer is refused and logged, and
    the run keeps waiting (missing, malformed or forged signature, another run's or plan's, an unknown key,
    a self-approval).

    Raises:
        ApprovalRejected: when nobody answered acceptably before the timeout.
    """
    logger = get_run_logger()
    approvers = await load_approvers(rt.spec.approval, rt.spec_file)
    ctx = FlowRunContext.get()
    run_id = str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else ""
    starters = run_starters()
    emit_awaiting_approval(rt.spec.environment, {
        "env": rt.spec.environment, "ref": release.ref if release else None, "sha": release.sha if release else None,
        "release_id": release.release_id if release else None, "flow_run_id": run_id,
        "flow_run_url": flow_run_url(run_id), "approvers": ", ".join(sorted(approvers)) or "none",
        "timeout_s": rt.spec.approval.timeout_s,
        "approve_command": f"aevon-deploy approve {run_id} --as NAME --key KEY --reason TEXT [--reject]"})
    deadline = time.monotonic() + rt.spec.approval.timeout_s
    attempt = 0
    while True:
        remaining = int(deadline - time.monotonic())
        if remaining <= 0:
            raise ApprovalRejected(f"no approval within {rt.spec.approval.timeout_s:.0f}s; nothing was changed")
        attempt += 1
        key = f"approval-{attempt}"
        try:
            # Our own deadline, not the server's: a pause the server times out fails the run and loses its report.
            try:
                answer = await asyncio.wait_for(apause_flow_run(
                    wait_for_input=ApprovalInput.with_initial_data(description=description, approve=False),
                    timeout=remaining + SERVER_GRACE_S, poll_interval=2, key=key,
                ), timeout=remaining)
            except Exception as exc:
                if not api_down(exc) or not run_id:
                    raise
                logger.warning("the Prefect API did not answer while waiting for approval (%s); still waiting",
                               type(exc).__name__)
                found = await asyncio.wait_for(_after_outage(run_id, key), timeout=max(1, deadline - time.monotonic()))
                if found is None:  # the pause never reached the server: pause again
                    continue
                answer = found
        except (TimeoutError, FlowPauseTimeout) as exc:
            await _running_again()
            raise ApprovalRejected(f"no approval within {rt.spec.approval.timeout_s:.0f}s; nothing was changed") \
                from exc
        verdict = judge(Answer(answer.approve, answer.approver, answer.reason, answer.allow_destructive,
                               answer.signature), approvers, run_id, description, starters)
        if not verdict.accepted:
            logger.warning("APPROVAL REFUSED (%s): %s; still waiting", verdict.refusal, verdict.message)
            continue
        logger.info("%s", verdict.message)
        return SignedAnswer(answer.approve, answer.approver.strip(), answer.reason.strip(), answer.allow_destructive,
                            verdict.fingerprint)
