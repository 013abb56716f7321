"""Our domain loggers: INFO to the run's Logs tab always, to the console (root handlers) from PREFECT_LOGGING_LEVEL."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from prefect.settings import PREFECT_LOGGING_LEVEL, temporary_settings

from flows.observe import DOMAIN_LOGGERS, RunLogForwarder, forward_domain_logs


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root_handler() -> Iterator[_Keep]:
    keep = _Keep()
    logging.getLogger().addHandler(keep)
    try:
        yield keep
    finally:
        logging.getLogger().removeHandler(keep)
        forward_domain_logs()  # back to the process's own level for the tests after this one


def test_console_follows_prefect_level_and_the_logs_tab_keeps_info(root_handler: _Keep) -> None:
    with temporary_settings(updates={PREFECT_LOGGING_LEVEL: "WARNING"}):
        forward_domain_logs()
        forward_domain_logs()  # idempotent: one handler of each kind
    log = logging.getLogger("aevon.run")
    log.info("deployed web")
    log.warning("rollback of web")
    assert [r.getMessage() for r in root_handler.records] == ["rollback of web"]
    for name in DOMAIN_LOGGERS:
        forwarders = [h for h in logging.getLogger(name).handlers if isinstance(h, RunLogForwarder)]
        assert len(forwarders) == 1 and forwarders[0].level == logging.INFO
        assert logging.getLogger(name).getEffectiveLevel() <= logging.INFO


def test_console_gets_info_at_the_default_level(root_handler: _Keep) -> None:
    with temporary_settings(updates={PREFECT_LOGGING_LEVEL: "INFO"}):
        forward_domain_logs()
    logging.getLogger("providers.targets").info("rollout started")
    assert [r.getMessage() for r in root_handler.records] == ["rollout started"]
