"""Write commands of `aevon-deploy`: deploy, approve, rollback, unlock, db restore (each acts on an environment)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated
from uuid import UUID

from cyclopts import Parameter

from flows import cli_output as show
from flows.cli_app import EXIT_REFUSED, CliError, Json, app, checked_env, ctx, db_app, settings
from providers.errors import AevonError


@app.command
async def deploy(env: str, /, *, ref: str, allow_destructive: bool = False, force: bool = False, json: Json = False,
                 markdown: bool = False) -> int:
    """Deploy a ref to an environment; a failed deploy or check rolls back by itself.

    Parameters
    ----------
    env
        environment
    ref
        git ref to deploy (prod: a release tag)
    allow_destructive
        apply migrations classified destructive
    force
        deploy even when the ref's commit already serves, validated (otherwise: nothing to promote, exit 0)
    json
        print the report as JSON
    markdown
        print the report as the markdown of the Prefect artifact
    """
    from prefect import tags

    from flows.deploy import deploy_flow, report_of
    from flows.observe import env_tags
    from flows.report import render_markdown

    checked_env(env)
    with tags(*env_tags(env), "cli"), show.step_progress(show.console(stderr=True)):
        state = await deploy_flow(env, ref, allow_destructive=allow_destructive, spec_dir=ctx.spec_arg,
                                  force=force, return_state=True)
    try:
        report = await report_of(state)
    except AevonError as exc:  # the flow run crashed (an unexpected exception): report it, then exit 1
        from flows.crash_reporting import report_crash

        report_crash(exc.__cause__)
        raise
    if json:
        show.print_json(report)
    elif markdown:
        print(render_markdown(report))
    else:
        show.print_report(show.console(), report)
    return report.exit_code



@app.command
async def approve(run_id: str, /, *, approver: Annotated[str, Parameter(name="--as")], reason: str,
                  reject: bool = False, allow_destructive: bool = False, key: Path | None = None,
                  print_signature: bool = False, print_message: bool = False) -> int:
    """Answer a deploy waiting at its approval gate (as in the Prefect UI), signed with your SSH key.

    Parameters
    ----------
    run_id
        the paused flow run's id (shown in the Prefect UI and the deploy's log)
    approver
        your name, as listed in approval.approvers
    reason
        why (recorded in the release ledger)
    reject
        reject: the run ends with nothing changed
    allow_destructive
        also apply destructive migrations
    key
        your ssh-ed25519 private key (its public key is listed in the spec)
    print_signature
        print the signature (for the UI) and stop
    print_message
        print the message to sign with ssh-keygen -Y sign
    """
    from flows.approve import ApproveRequest, approve_command

    try:
        UUID(run_id)
    except ValueError:
        raise CliError(f"RUN_ID: {run_id!r} is not a flow run id (a UUID, shown in the Prefect UI)") from None
    settings()
    return await approve_command(ApproveRequest(
        run_id=run_id, approver=approver, reason=reason, reject=reject, allow_destructive=allow_destructive,
        key=key, print_signature=print_signature, print_message=print_message, spec_dir=ctx.spec_dir,
    ))



@app.command
async def rollback(env: str, release_id: str, /, *, reason: str = "manual rollback", json: Json = False) -> int:
    """Undo what one run changed, from its journal (when automatic rollback is off); recorded in the ledger.

    Parameters
    ----------
    env
        environment
    release_id
        the run to undo (see `aevon-deploy history ENV`)
    reason
        why (shown in the report)
    """
    from prefect import tags

    from flows.observe import env_tags
    from flows.rollback import rollback_flow

    checked_env(env)
    with tags(*env_tags(env), "cli"):
        rb = await rollback_flow(env, release_id, reason, ctx.spec_arg)
    if json:
        show.print_json(rb)
    else:
        show.print_rollback(show.console(), rb)
    return 0 if rb.ok else 5



@app.command
async def unlock(env: str, /, *, force: bool = False) -> int:
    """Free the environment lock held by a crashed run (refused while it lives).

    Parameters
    ----------
    env
        environment
    force
        also when the holder looks alive: it is fenced off
    """
    from flows.locking import unlock as unlock_env

    done = await unlock_env(checked_env(env), force=force, db_url=settings().state_db_url)
    if done.warning:
        print(done.warning, file=sys.stderr)
    print(done.message)
    return 0



@db_app.command
async def restore(env: str, backup_id: str, /, *, yes: bool = False) -> int:
    """Replace the environment's database with a verified backup.

    Parameters
    ----------
    env
        environment
    backup_id
        the backup (see `aevon-deploy db backups ENV`)
    yes
        do not ask for confirmation (scripts)
    """
    from flows.db import confirmation_text, find_backup, outcome_text, restore_flow

    record = await find_backup(settings(), checked_env(env), backup_id)
    if record is None:
        raise CliError(f"no backup {backup_id!r} of {env} (see `aevon-deploy db backups {env}`)")
    print(confirmation_text(env, record))
    if not yes:
        if not sys.stdin.isatty():
            raise CliError("not confirmed: run it in a terminal, or pass --yes")
        answer = await asyncio.to_thread(input, f"Type the environment name ({env}) to confirm: ")
        if answer.strip() != env:
            print("not confirmed: nothing was changed")
            return EXIT_REFUSED
    rep = await restore_flow(env, backup_id, ctx.spec_arg)
    print(outcome_text(rep))
    return 0 if rep.ok else 1
