"""What the operator sees in Prefect: environment tags on every run, our loggers' lines in the run's Logs tab."""

from __future__ import annotations

import getpass
import logging
import socket
import threading

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler

DOMAIN_LOGGERS = ("aevon", "providers", "flows", "tasks")  # providers.* modules, aevon.run / aevon.lock ...
log = logging.getLogger("aevon.run")  # the domain lines: steps, versions, verdicts, what a rollback restored
_lock = threading.Lock()


class RunLogForwarder(APILogHandler):
    """Prefect's API log handler, for records emitted inside a flow or task run only (never warns outside one)."""

    def emit(self, record: logging.LogRecord) -> None:
        if FlowRunContext.get() is None and TaskRunContext.get() is None and not getattr(record, "flow_run_id", None):
            return
        super().emit(record)


class ConsoleAtPrefectLevel(logging.Handler):
    """What propagation to the root logger did (its handlers: Prefect's console, pytest's capture), from
    PREFECT_LOGGING_LEVEL up only, as for Prefect's own run loggers. Our INFO lines still reach the run's Logs tab;
    a worker or bench at WARNING no longer renders each of them through rich on its console (measured: 7 % of the
    deploy flow's event-loop time at 50 services)."""

    def emit(self, record: logging.LogRecord) -> None:
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


def _prefect_level() -> int:
    from prefect.settings import get_current_settings

    return logging.getLevelNamesMapping().get(str(get_current_settings().logging.level).upper(), logging.INFO)


def forward_domain_logs() -> None:
    """Send INFO and above of our loggers to the current run's logs, and to the console from PREFECT_LOGGING_LEVEL
    up (idempotent; each flow entry calls it)."""
    console_level = _prefect_level()
    with _lock:
        for name in DOMAIN_LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(h, RunLogForwarder) for h in logger.handlers):
                logger.addHandler(RunLogForwarder(level=logging.INFO))
            console = next((h for h in logger.handlers if isinstance(h, ConsoleAtPrefectLevel)), None)
            if console is None:
                console = ConsoleAtPrefectLevel()
                logger.addHandler(console)
            console.setLevel(console_level)
            logger.propagate = False  # the root's handlers get our records through `console`, at its level
            if logger.level == logging.NOTSET or logger.level > logging.INFO:
                logger.setLevel(logging.INFO)


def env_tags(env: str) -> list[str]:
    """The tags every run of `env` carries (filter the Prefect UI's runs by environment)."""
    return ["aevon", f"env:{env}"]


async def tag_this_run(env: str) -> None:
    """Add the environment tags to the current flow run, however it was started (CLI, UI, schedule, automation)."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    tags = sorted({*ctx.flow_run.tags, *env_tags(env)})
    if set(tags) == set(ctx.flow_run.tags):
        return
    from prefect.client.orchestration import get_client

    try:
        async with get_client() as client:
            await client.update_flow_run(ctx.flow_run.id, tags=tags)
        ctx.flow_run.tags = tags
    except Exception as exc:  # tags are for finding runs; never fail a deploy over them
        log.warning("could not tag the flow run with %s: %s", ", ".join(env_tags(env)), type(exc).__name__)


async def observe_run(env: str) -> None:
    """At a flow's start: our loggers into its Logs tab, and its environment tags."""
    forward_domain_logs()
    await tag_this_run(env)


def started_by() -> str:
    """Who started the current run: the Prefect user or automation/deployment that created it, else the OS user."""
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx is not None else None
    if run is not None and run.created_by is not None:
        who = run.created_by
        return f"{who.type.lower() if who.type else 'prefect'} {who.display_value or who.id}".strip()
    if run is not None and run.deployment_id is not None:
        return "schedule of its deployment" if run.auto_scheduled else "its Prefect deployment (UI or API)"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown user"
    return f"{user}@{socket.gethostname()}"
