"""The `aevon-deploy` command line: plan, deploy, rollback, history, status, unlock, db (backups, restore)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from deployments.loader import available_environments
from deployments.secret_values import check_value
from deployments.settings import AevonSettings
from providers.errors import AevonError, ConfigError

EXIT_USAGE, EXIT_REFUSED = 2, 3
EPILOG = """exit codes: 0 deployed; 1 failed (automatic rollback off, or unexpected error); 2 usage error;
3 refused before any change (bad spec, missing secret, malformed ref, failed gate); 4 validation or a deploy
failed and the previous release was restored; 5 the rollback itself failed: an operator must look."""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="aevon-deploy", description="Deploy ΛΞVON OS through its runbook as a Prefect DAG.", epilog=EPILOG,
    )
    ap.add_argument("--spec-dir", type=Path, default=None, help="folder of environment specs (default: deployments/)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plan", help="print the DAG a deploy would run; changes nothing", epilog=EPILOG)
    p.add_argument("env", help="environment (dev, staging, prod ...)")
    p.add_argument("--ref", help="git ref to plan for (branch, tag, SHA)")

    d = sub.add_parser("deploy", help="deploy a ref to an environment", epilog=EPILOG)
    d.add_argument("env")
    d.add_argument("--ref", required=True, help="git ref to deploy (prod: a release tag)")
    d.add_argument("--allow-destructive", action="store_true", help="apply migrations classified destructive")
    d.add_argument("--json", action="store_true", help="print the report as JSON instead of markdown")

    r = sub.add_parser("rollback", help="undo what one run changed (from its journal)", epilog=EPILOG)
    r.add_argument("env")
    r.add_argument("release_id")
    r.add_argument("--reason", default="manual rollback")

    h = sub.add_parser("history", help="the latest runs of an environment, from the release ledger")
    h.add_argument("env")
    h.add_argument("--limit", type=int, default=20)

    s = sub.add_parser("status", help="what an environment runs now and its last run")
    s.add_argument("env")

    u = sub.add_parser("unlock", help="free the environment lock held by a crashed run (refused while it lives)")
    u.add_argument("env")
    u.add_argument("--force", action="store_true", help="also when the holder looks alive: it is fenced off")

    a = sub.add_parser("approve", help="answer a deploy waiting at its approval gate (as in the Prefect UI)")
    a.add_argument("run_id", help="the paused flow run's id (shown in the Prefect UI and the deploy's log)")
    a.add_argument("--as", dest="approver", required=True, help="your name, as listed in approval.approvers")
    a.add_argument("--reason", required=True, help="why (recorded in the release ledger)")
    a.add_argument("--reject", action="store_true", help="reject: the run ends with nothing changed")
    a.add_argument("--allow-destructive", action="store_true", help="also apply destructive migrations")
    a.add_argument("--key", type=Path, help="your ssh-ed25519 private key (its public key is listed in the spec)")
    a.add_argument("--print-signature", action="store_true", help="print the signature (for the UI) and stop")
    a.add_argument("--print-message", action="store_true", help="print the message to sign with ssh-keygen -Y sign")

    db = sub.add_parser("db", help="database backups: list them, restore one (explicit, never automatic)")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    dbl = dbsub.add_parser("backups", help="the latest verified (and failed) backups of an environment")
    dbl.add_argument("env")
    dbl.add_argument("--limit", type=int, default=20)
    dbr = dbsub.add_parser("restore", help="replace the environment's database with a verified backup")
    dbr.add_argument("env")
    dbr.add_argument("backup_id")
    dbr.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    return ap


async def _plan(args: argparse.Namespace, settings: AevonSettings) -> int:
    from flows.plan import render_plan
    from flows.runtime import build_runtime

    rt = build_runtime(args.env, args.spec_dir, settings=settings)
    try:
        print(await render_plan(rt, args.ref))
    finally:
        await rt.aclose()
    return 0


async def _deploy(args: argparse.Namespace) -> int:
    from flows.deploy import deploy_flow, report_of
    from flows.report import render_markdown

    state = await deploy_flow(
        args.env, args.ref, allow_destructive=args.allow_destructive,
        spec_dir=str(args.spec_dir) if args.spec_dir else None, return_state=True,
    )
    try:
        report = await report_of(state)
    except AevonError as exc:  # the flow run crashed (an unexpected exception): report it, then exit 1
        from flows.crash_reporting import report_crash

        report_crash(exc.__cause__)
        raise
    print(report.model_dump_json(indent=2) if args.json else render_markdown(report))
    return report.exit_code


async def _rollback(args: argparse.Namespace) -> int:
    from flows.rollback import rollback_flow

    rb = await rollback_flow(args.env, args.release_id, args.reason, str(args.spec_dir) if args.spec_dir else None)
    print(rb.model_dump_json(indent=2))
    return 0 if rb.ok else 5


async def _history(args: argparse.Namespace, settings: AevonSettings, status_only: bool) -> int:
    from providers.state.store import StateStore

    async with StateStore(settings.state_db_url) as store:
        rows = await store.ledger.history(args.env, 1 if status_only else args.limit)
        good = await store.ledger.last_good(args.env)
    if status_only:
        print(f"environment {args.env}")
        print(f"  serving (last good): {good.ref} {good.sha[:12]} ({good.release_id})" if good else "  never deployed")
        if rows:
            last = rows[0]
            print(f"  last run: {last.release_id} {last.status} at {last.started_at:%Y-%m-%d %H:%M:%S}")
            for svc in last.report.get("services", []):
                print(f"    {svc['service']}: {str(svc.get('before') or '—')[:12]} → {str(svc.get('after'))[:12]}"
                      f" {svc['status']}")
        return 0
    print(f"{'started (UTC)':19}  {'status':15}  {'ref':14}  {'sha':12}  {'approver':12}  release")
    for row in rows:
        print(f"{row.started_at:%Y-%m-%d %H:%M:%S}  {row.status:15}  {row.ref[:14]:14}  {row.sha[:12]:12}  "
              f"{(row.approver or '—')[:12]:12}  {row.release_id}")
    return 0


async def _approve(args: argparse.Namespace) -> int:
    from flows.approve import ApproveRequest, approve_command

    return await approve_command(ApproveRequest(
        run_id=args.run_id, approver=args.approver, reason=args.reason, reject=args.reject,
        allow_destructive=args.allow_destructive, key=args.key, print_signature=args.print_signature,
        print_message=args.print_message, spec_dir=args.spec_dir,
    ))


async def _unlock(args: argparse.Namespace) -> int:
    from flows.locking import unlock

    done = await unlock(args.env, force=args.force, db_url=AevonSettings().state_db_url)
    if done.warning:
        print(done.warning, file=sys.stderr)
    print(done.message)
    return 0


async def _db(args: argparse.Namespace, settings: AevonSettings) -> int:
    from flows.db import confirmation_text, find_backup, list_backups, outcome_text, restore_flow

    if args.db_command == "backups":
        for rec in await list_backups(settings, args.env, args.limit):
            state = "verified" if rec.verified else "NOT VERIFIED"
            restored = f"  restored {rec.restored_at:%Y-%m-%d %H:%M}" if rec.restored_at else ""
            print(f"{rec.backup_id}  {rec.created_at:%Y-%m-%d %H:%M:%S}  {state:12}  {len(rec.tables):3} tables "
                  f"{rec.rows:10} rows  {rec.size_bytes / 1e6:8.1f} MB  release {rec.release_id or '—'}{restored}")
        return 0
    record = await find_backup(settings, args.env, args.backup_id)
    if record is None:
        raise ConfigError(f"no backup {args.backup_id!r} of {args.env} (see `aevon-deploy db backups {args.env}`)")
    print(confirmation_text(args.env, record))
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError("not confirmed: run it in a terminal, or pass --yes")
        answer = await asyncio.to_thread(input, f"Type the environment name ({args.env}) to confirm: ")
        if answer.strip() != args.env:
            print("not confirmed: nothing was changed")
            return EXIT_REFUSED
    rep = await restore_flow(args.env, args.backup_id, str(args.spec_dir) if args.spec_dir else None)
    print(outcome_text(rep))
    return 0 if rep.ok else 1


def _init_sentry(settings: AevonSettings) -> None:
    from flows.crash_reporting import init_crash_reporting  # secrets scrubbed from every event

    init_crash_reporting(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aevon-deploy` console script."""
    args = _parser().parse_args(argv)
    if getattr(args, "env", None) is not None and args.env not in available_environments(args.spec_dir):
        known = ", ".join(available_environments(args.spec_dir)) or "none"
        print(f"aevon-deploy: unknown environment {args.env!r} (known: {known})", file=sys.stderr)
        return EXIT_REFUSED
    settings = AevonSettings()  # once per command; flows started from here build their own (a flow is an entry)
    try:  # a malformed ledger URL is refused by name here, before a driver's error could quote it
        check_value("AEVON_STATE_DB_URL", settings.state_db_url.get_secret_value(), ["AEVON_STATE_DB_URL"])
    except ConfigError as exc:
        print(f"aevon-deploy: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    _init_sentry(settings)
    handlers: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "plan": lambda a: _plan(a, settings), "deploy": _deploy, "rollback": _rollback, "unlock": _unlock,
        "approve": _approve, "history": lambda a: _history(a, settings, False),
        "status": lambda a: _history(a, settings, True), "db": lambda a: _db(a, settings),
    }
    try:
        code = asyncio.run(handlers[args.command](args))
    except ConfigError as exc:
        print(f"aevon-deploy: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except AevonError as exc:
        print(f"aevon-deploy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
