"""Read commands of `aevon-deploy`: plan, history, status, stats, db backups, completion (they change nothing)."""

from __future__ import annotations

import sys
from typing import Any, Literal

from flows import cli_output as show
from flows.cli_app import EXIT_REFUSED, EXIT_USAGE, CliError, Json, app, checked_env, ctx, db_app, settings


def _listing(rows: Any, json: bool, empty: str, render: Any) -> int:
    """A read command's rows: as JSON, as a table, or the empty state said in words."""
    if json:
        show.print_json(rows)
    elif not rows:
        print(empty)
    else:
        render(show.console(), rows)
    return 0


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

    ro = read_only_runtime(checked_env(env), ctx.spec_dir, settings())
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



async def _history(env: str, limit: int) -> list[Any]:
    from flows.history import history as read_history

    return await read_history(settings(), env, limit)


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
    rows = await _history(checked_env(env), limit)
    return _listing(rows, json, f"no releases of {env} yet", show.print_history)



@app.command
async def status(env: str, /, *, json: Json = False) -> int:
    """What each target serves now, next to what the ledger expects: drift and unreachable targets flagged.

    Parameters
    ----------
    env
        environment
    """
    from flows.status import environment_status

    st = await environment_status(checked_env(env), ctx.spec_dir, settings())
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
    ro = read_only_runtime(checked_env(env), ctx.spec_dir, settings())
    try:
        async with StateStore(settings().state_db_url) as store:
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

    records = await list_backups(settings(), checked_env(env), limit)
    return _listing(records, json, f"no backups of {env} yet", show.print_backups)



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
