"""The `aevon-deploy` command line (cyclopts + rich): plan, deploy, approve, rollback, history, status, stats, db."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from cyclopts import App, Parameter

from deployments.loader import available_environments
from deployments.secret_values import check_value
from deployments.settings import AevonSettings
from flows import cli_output as show
from providers.errors import AevonError, ConfigError

EXIT_USAGE, EXIT_REFUSED = 2, 3
EPILOG = """exit codes: 0 deployed; 1 failed (automatic rollback off, or unexpected error); 2 usage error;
3 refused before any change (bad spec, missing secret, malformed ref, failed gate); 4 validation or a deploy
failed and the previous release was restored; 5 the rollback itself failed: an operator must look."""
Json = Annotated[bool, Parameter(help="print JSON (one document on stdout) instead of tables")]

app = App(name="aevon-deploy", help="Deploy ΛΞVON OS through its runbook as a Prefect DAG.", help_epilogue=EPILOG,
          default_parameter=Parameter(negative=()), result_action="return_value", version_flags=[])
db_app = App(name="db", help="Database backups: list them, restore one (explicit, never automatic).",
             help_epilogue=EPILOG)
app.command(db_app)


class CliError(Exception):
    """A friendly one-line error and its exit code (no traceback)."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Context:
    """What the global options set for the command that runs."""

    spec_dir: Path | None = None
    settings: AevonSettings | None = None

    @property
    def spec_arg(self) -> str | None:
        return str(self.spec_dir) if self.spec_dir else None


ctx = Context()


def _settings() -> AevonSettings:
    if ctx.settings is None:
        ctx.settings = AevonSettings()  # once per command; flows started from here build their own
        try:  # a malformed ledger URL is refused by name here, before a driver's error could quote it
            check_value("AEVON_STATE_DB_URL", ctx.settings.state_db_url.get_secret_value(), ["AEVON_STATE_DB_URL"])
        except ConfigError as exc:
            raise CliError(str(exc)) from None
    return ctx.settings


def _env(env: str) -> str:
    """Refuse an unknown environment (exit 3) before anything is read or started."""
    known = available_environments(ctx.spec_dir)
    if env not in known:
        where = f" in {ctx.spec_dir}" if ctx.spec_dir else ""
        raise CliError(f"unknown environment {env!r} (known: {', '.join(known) or 'none'}); no {env}.yaml{where}")
    _settings()
    return env


@app.command
async def plan(env: str, /, *, ref: str | None = None, json: Json = False) -> int:
    """Print the DAG a deploy would run (gates' outcome now, versions, migrations); changes nothing.

    Missing secrets are all listed (exit 3: a deploy would be refused), and the steps that need them marked.

    Parameters
    ----------
    env
        environment (dev, staging, prod ...)
    ref
        git ref to plan for (branch, tag, SHA); without it, gates are listed but not run
    """
    from flows.plan import build_plan
    from flows.readonly import read_only_runtime

    ro = read_only_runtime(_env(env), ctx.spec_dir, _settings())
    try:
        result = await build_plan(ro, ref)
    finally:
        await ro.rt.aclose()
    if json:
        show.print_json(result)
    else:
        print(result.text())
    missing = result.missing_text()
    if missing:  # the whole DAG is on stdout; what must be set before a deploy, on stderr, and exit 3
        print(f"aevon-deploy: {missing}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


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

    _env(env)
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
    _settings()
    return await approve_command(ApproveRequest(
        run_id=run_id, approver=approver, reason=reason, reject=reject, allow_destructive=allow_destructive,
        key=key, print_signature=print_signature, print_message=print_message, spec_dir=ctx.spec_dir,
    ))


@app.command
async def rollback(env: str, release_id: str, /, *, reason: str = "manual rollback", json: Json = False) -> int:
    """Undo what one run changed, from its journal (when automatic rollback is off).

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

    _env(env)
    with tags(*env_tags(env), "cli"):
        rb = await rollback_flow(env, release_id, reason, ctx.spec_arg)
    if json:
        show.print_json(rb)
    else:
        show.print_rollback(show.console(), rb)
    return 0 if rb.ok else 5


async def _history(env: str, limit: int) -> list[Any]:
    from flows.history import history as read_history

    return await read_history(_settings(), env, limit)


@app.command
async def history(env: str, /, *, limit: int = 20, json: Json = False) -> int:
    """Who shipped what: the latest runs of an environment, from the release ledger.

    Parameters
    ----------
    env
        environment
    limit
        how many runs, newest first
    """
    rows = await _history(_env(env), limit)
    if json:
        show.print_json(rows)
    elif not rows:
        print(f"no releases of {env} yet")
    else:
        show.print_history(show.console(), rows)
    return 0


@app.command
async def status(env: str, /, *, json: Json = False) -> int:
    """What each target serves now, next to what the ledger expects: drift and unreachable targets flagged.

    Parameters
    ----------
    env
        environment
    """
    from flows.status import environment_status

    st = await environment_status(_env(env), ctx.spec_dir, _settings())
    if json:
        show.print_json(st)
    else:
        show.print_status(show.console(), st)
    return 0


@app.command
async def stats(env: str, /, *, days: float = 30.0, publish: bool = False, json: Json = False) -> int:
    """The four DORA figures: deployment frequency, lead time, change failure rate, time to restore.

    Parameters
    ----------
    env
        environment
    days
        the window, counted back from now
    publish
        also publish them as a Prefect table artifact (stats-ENV)
    """
    from flows.readonly import read_only_runtime
    from flows.stats import dora
    from flows.stats import publish as publish_stats
    from providers.models import utcnow
    from providers.state.store import StateStore

    if days <= 0:
        raise CliError(f"--days must be more than 0 (got {days:g})", EXIT_USAGE)
    ro = read_only_runtime(_env(env), ctx.spec_dir, _settings())
    try:
        async with StateStore(_settings().state_db_url) as store:
            rows = await store.ledger.history(env, 10_000)
        figures = await dora(env, rows, ro.rt.source, days, utcnow())
    finally:
        await ro.rt.aclose()
    if publish:
        await publish_stats(figures)
    if json:
        show.print_json(figures)
    else:
        show.print_stats(show.console(), figures, published=publish)
    return 0


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

    done = await unlock_env(_env(env), force=force, db_url=_settings().state_db_url)
    if done.warning:
        print(done.warning, file=sys.stderr)
    print(done.message)
    return 0


@db_app.command
async def backups(env: str, /, *, limit: int = 20, json: Json = False) -> int:
    """The latest verified (and failed) backups of an environment.

    Parameters
    ----------
    env
        environment
    limit
        how many, newest first
    """
    from flows.db import list_backups

    records = await list_backups(_settings(), _env(env), limit)
    if json:
        show.print_json(records)
    elif not records:
        print(f"no backups of {env} yet")
    else:
        show.print_backups(show.console(), records)
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

    record = await find_backup(_settings(), _env(env), backup_id)
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


@app.command
def completion(*, shell: Literal["bash", "zsh", "fish"] | None = None, install: bool = False) -> int:
    """Print the shell completion script (or install it with --install).

    Parameters
    ----------
    shell
        bash, zsh or fish (default: the current shell)
    install
        write it where the shell loads completions, and source it from the shell's rc file
    """
    if install:
        print(f"completion installed in {app.install_completion(shell=shell)}")
    else:
        print(app.generate_completion(prog_name="aevon-deploy", shell=shell))
    return 0


@app.meta.default
def _launcher(
    *tokens: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
    spec_dir: Annotated[Path | None, Parameter(help="folder of environment specs (default: deployments/)")] = None,
) -> int:
    if spec_dir is not None and not spec_dir.is_dir():
        raise CliError(f"--spec-dir {spec_dir}: no such folder", EXIT_USAGE)
    ctx.spec_dir, ctx.settings = spec_dir, None
    command, bound, _ = app.parse_args(tokens)
    result = command(*bound.args, **bound.kwargs)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return int(result or 0)


def _init_sentry() -> None:
    from flows.crash_reporting import init_crash_reporting  # secrets scrubbed from every event

    init_crash_reporting(AevonSettings())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aevon-deploy` console script."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    try:
        _init_sentry()
    except Exception:  # noqa: S110 - a broken crash-reporting setting must not stop the command
        pass
    try:
        return int(app.meta(tokens) or 0)
    except CliError as exc:
        print(f"aevon-deploy: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"aevon-deploy: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except AevonError as exc:
        print(f"aevon-deploy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: reported (scrubbed), named, and no traceback unless asked for
        from flows.crash_reporting import report_crash

        report_crash(exc)
        if os.environ.get("AEVON_DEBUG") == "1":
            raise
        print(f"aevon-deploy: unexpected error {type(exc).__name__} (reported to Sentry when AEVON_SENTRY_DSN "
              "is set; AEVON_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
