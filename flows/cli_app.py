"""The `aevon-deploy` application (cyclopts): the apps, exit codes, friendly errors and what the global options set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from cyclopts import App, Parameter

from deployments.loader import available_environments
from deployments.secret_values import check_value
from deployments.settings import AevonSettings
from providers.errors import ConfigError

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


def settings() -> AevonSettings:
    """The orchestrator settings, read once per command; a malformed ledger URL is refused by name (exit 3)."""
    if ctx.settings is None:
        ctx.settings = AevonSettings()  # once per command; flows started from here build their own
        try:  # a malformed ledger URL is refused by name here, before a driver's error could quote it
            check_value("AEVON_STATE_DB_URL", ctx.settings.state_db_url.get_secret_value(), ["AEVON_STATE_DB_URL"])
        except ConfigError as exc:
            raise CliError(str(exc)) from None
    return ctx.settings


def checked_env(env: str) -> str:
    """Refuse an unknown environment (exit 3) before anything is read or started."""
    known = available_environments(ctx.spec_dir)
    if env not in known:
        where = f" in {ctx.spec_dir}" if ctx.spec_dir else ""
        raise CliError(f"unknown environment {env!r} (known: {', '.join(known) or 'none'}); no {env}.yaml{where}")
    settings()
    return env
