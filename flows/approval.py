"""The production approval gate: the plan shown in the Prefect UI, a named approver's decision, or no change."""

from __future__ import annotations

import asyncio
import time

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from prefect.logging import get_run_logger
from prefect.states import Running
from pydantic import Field

from flows.runtime import Runtime
from providers.errors import AevonError
from providers.models import Release, ServiceVersion
from providers.state.ledger import Ledger


class ApprovalInput(RunInput):
    """What the approver fills in on the paused run (Prefect UI: Resume) or with `aevon-deploy approve`."""

    approve: bool = Field(default=False, description="On: approve and deploy. Off: reject (nothing is changed).")
    approver: str = Field(default="", description="Your name, as listed in the environment's approval.approvers")
    reason: str = Field(default="", description="Why: recorded with the release in the ledger")
    allow_destructive: bool = Field(default=False, description="Also apply migrations classified destructive")


SERVER_GRACE_S = 600  # the server's own pause timeout, past ours: it ends the run only if this process died


async def _running_again() -> None:
    """Take our paused run out of Paused so that it can finish with its report."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    async with get_client() as client:
        await client.set_flow_run_state(ctx.flow_run.id, Running(), force=True)


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
    approvers = ", ".join(rt.spec.approval.approvers) or "(none listed: nobody can approve)"
    lines += ["", f"Approvers: {approvers}. Rejecting, or no answer within "
              f"{rt.spec.approval.timeout_s:.0f}s, ends the run with nothing changed."]
    return "\n".join(lines)


async def wait_for_approval(rt: Runtime, description: str) -> ApprovalInput:
    """Pause until a listed approver answers (approve or reject); anyone else is refused and the run keeps waiting.

    Raises:
        ApprovalRejected: when nobody answered before the timeout.
    """
    logger = get_run_logger()
    allowed = set(rt.spec.approval.approvers)
    deadline = time.monotonic() + rt.spec.approval.timeout_s
    attempt = 0
    while True:
        remaining = int(deadline - time.monotonic())
        if remaining <= 0:
            raise ApprovalRejected(f"no approval within {rt.spec.approval.timeout_s:.0f}s; nothing was changed")
        attempt += 1
        try:
            # Our own deadline, not the server's: a pause the server times out fails the run and loses its report.
            answer = await asyncio.wait_for(apause_flow_run(
                wait_for_input=ApprovalInput.with_initial_data(description=description, approve=False),
                timeout=remaining + SERVER_GRACE_S, poll_interval=2, key=f"approval-{attempt}",
            ), timeout=remaining)
        except (TimeoutError, FlowPauseTimeout) as exc:
            await _running_again()
            raise ApprovalRejected(f"no approval within {rt.spec.approval.timeout_s:.0f}s; nothing was changed") \
                from exc
        name = answer.approver.strip()
        if name not in allowed:
            logger.warning("answer from %r refused: not an approver of %s (approvers: %s); still waiting",
                           name, rt.spec.environment, ", ".join(sorted(allowed)) or "none")
            continue
        if not answer.reason.strip():
            logger.warning("answer from %s refused: a reason is required; still waiting", name)
            continue
        logger.info("%s by %s: %s", "approved" if answer.approve else "rejected", name, answer.reason.strip())
        return answer
