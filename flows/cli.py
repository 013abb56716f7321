"""The `aevon-deploy` command line (cyclopts + rich): the launcher and entry point; commands in cli_read/cli_write."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from deployments.settings import AevonSettings
from flows import cli_read, cli_write  # noqa: F401 - registers the commands on `app`
from flows.cli_app import EXIT_REFUSED, EXIT_USAGE, CliError, app, ctx
from providers.errors import AevonError, ConfigError


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
