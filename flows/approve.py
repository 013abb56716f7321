"""`aevon-deploy approve`: read the paused run's plan, sign the answer with the approver's SSH key, resume the run."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from deployments.loader import load_spec, spec_path
from providers.approval.keys import load_approvers
from providers.approval.signing import load_private_key, one_line, public_key_of, sign
from providers.approval.verify import Answer, message_for
from providers.errors import ConfigError

EXIT_REFUSED = 3
PASSPHRASE_ENV = "AEVON_APPROVAL_KEY_PASSPHRASE"  # noqa: S105 - a variable name
VERDICT_WAIT_S = 30.0  # how long the CLI watches the run for the flow's own verdict after resuming it


@dataclass(frozen=True)
class ApproveRequest:
    """The command line's answer to one paused run."""

    run_id: str
    approver: str
    reason: str
    reject: bool = False
    allow_destructive: bool = False
    key: Path | None = None
    print_signature: bool = False
    print_message: bool = False
    spec_dir: Path | None = None


async def _paused_run(run_id: UUID) -> tuple[Any, str, str]:
    """The paused run, its pause key and the plan it shows (the description of its approval form)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            run = await client.read_flow_run(run_id)
        except ObjectNotFound as exc:
            raise ConfigError(f"no flow run {run_id}", "RUN_ID") from exc
        if run.state is None or not run.state.is_paused():
            raise ConfigError(f"flow run {run_id} is not waiting for approval (state: {run.state_name})")
        details = run.state.state_details
        keyset = details.run_input_keyset or {}
        if "description" not in keyset:
            raise ConfigError(f"flow run {run_id} is paused but not at an approval gate")
        described = await client.read_flow_run_input(flow_run_id=run_id, key=keyset["description"])
    import json

    plan = json.loads(described)
    return run, str(details.pause_key or ""), str(plan)


def _private_key(path: Path) -> Any:
    try:
        data = path.expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the key {path}: {exc.strerror}", "--key") from exc
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if b"bcrypt" in data and passphrase is None and sys.stdin.isatty():
        passphrase = getpass.getpass(f"passphrase of {path}: ")
    try:
        return load_private_key(data, passphrase.encode() if passphrase else None)
    except ConfigError as exc:
        raise ConfigError(str(exc), "--key") from exc


async def _flow_said(run_id: UUID) -> list[str]:
    """The approval gate's verdict lines in the run's log, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                                      sort=LogSort.TIMESTAMP_ASC)
    return [lg.message for lg in logs if lg.message.startswith(("APPROVAL REFUSED", "approved by ", "rejected by "))]


async def _verdict(run_id: UUID, before: int, name: str, fingerprint: str) -> tuple[bool | None, str]:
    """After resuming: the flow's own verdict on our answer, from the verdict lines logged after the `before` first.

    (True, "") accepted, (False, its refusal) refused, (None, note) when no verdict reached the API in time.
    """
    for _ in range(int(VERDICT_WAIT_S * 4)):
        said = (await _flow_said(run_id))[before:]
        for line in said:
            if line.startswith("APPROVAL REFUSED") and name in line:  # (a late line of an older answer: not ours)
                return False, line
            if f"({fingerprint})" in line:
                return True, ""
        await asyncio.sleep(0.25)
    return None, "(no verdict seen yet: see the run's log)"


async def approve_command(req: ApproveRequest) -> int:
    """Sign and send (or print) an answer to a paused deploy; every check that can be made here is made first.

    Returns the exit code: 0 answered, 3 refused (by this command before resuming, or by the flow's checks).
    """
    from prefect.flow_runs import aresume_flow_run

    try:
        run_id = UUID(req.run_id)
    except ValueError as exc:
        raise ConfigError(f"not a flow run id: {req.run_id!r}", "RUN_ID") from exc
    if not req.reason.strip():
        raise ConfigError("a reason is required", "--reason")
    run, _, plan = await _paused_run(run_id)
    env = str(run.parameters.get("env") or "prod")  # deploy_prod_flow (deploy-prod) has no `env` parameter
    spec_dir = Path(run.parameters["spec_dir"]) if run.parameters.get("spec_dir") else req.spec_dir
    spec = load_spec(env, spec_dir)
    approvers = await load_approvers(spec.approval, spec_path(env, spec_dir))
    if req.approver not in approvers:
        listed = ", ".join(sorted(approvers)) or "none"
        raise ConfigError(f"{req.approver!r} is not an approver of {env} (approvers: {listed})", "--as")
    if req.key is None and not req.print_message:
        raise ConfigError("give the approver's private key (answers are signed)", "--key")
    answer = Answer(not req.reject, req.approver, req.reason.strip(), req.allow_destructive, "")
    message = message_for(str(run_id), answer, plan).canonical()
    if req.print_message:  # for `ssh-keygen -Y sign -n aevon-deploy-approval` (hardware keys, ssh-agent)
        sys.stdout.write(message.decode())
        return 0
    assert req.key is not None
    key = _private_key(req.key)
    mine = public_key_of(key)
    if approvers[req.approver].key_for(mine) is None:
        raise ConfigError(f"{mine.fingerprint} is not a key of {req.approver} in the {env} spec", "--key")
    signature = sign(key, message)
    if req.print_signature:
        print(one_line(signature))
        return 0
    decision = {"approve": answer.approve, "approver": req.approver, "reason": answer.reason,
                "allow_destructive": req.allow_destructive, "signature": signature}
    before = len(await _flow_said(run_id))
    await aresume_flow_run(run_id, run_input=decision)
    accepted, said = await _verdict(run_id, before, req.approver, mine.fingerprint)
    if accepted is False:
        print(f"aevon-deploy: refused by the run: {said}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"{'rejected' if req.reject else 'approved'} {env} run {run_id} as {req.approver} "
          f"({mine.fingerprint}): {answer.reason} {said}".rstrip())
    return 0
