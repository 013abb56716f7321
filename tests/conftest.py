"""Shared fixtures: a real Prefect server on PostgreSQL for the session, and a fresh ledger database per test."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.pg import ADMIN_URL, temp_database

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")
os.environ.setdefault("AEVON_PLUGINS", "tests.standins")  # the memory target and sleep check of tests/standins


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server (API + UI) on PostgreSQL, started once per session; yields its API URL.

    SQLite stalls under back-to-back writes (503 "database is locked", +2 to +14 s a run), so the tests use the
    same server setup as production: PostgreSQL, a database of its own, dropped at the end.
    """
    import asyncio

    import asyncpg
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.server import start, stop_pid

    name = f"aevon_prefect_test_{secrets.token_hex(4)}"
    base = ADMIN_URL.rsplit("/", 1)[0]
    db_url = base.replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + name
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    proc = start(db_url, port, home, home / "server.log")
    api = f"http://127.0.0.1:{port}/api"
    old = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api  # for subprocesses (CLI tests, workers)
    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            yield api
    finally:
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old
        stop_pid(proc.pid)

        async def drop() -> None:
            conn = await asyncpg.connect(ADMIN_URL)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(drop())


@pytest.fixture
async def ledger_url(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A fresh ledger database for this test, exported as AEVON_STATE_DB_URL."""
    async with temp_database() as url:
        monkeypatch.setenv("AEVON_STATE_DB_URL", url)
        yield url


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh local state directory (checkouts, target state, artifacts), exported as AEVON_STATE_DIR."""
    d = tmp_path / "state"
    d.mkdir()
    monkeypatch.setenv("AEVON_STATE_DIR", str(d))
    return d
