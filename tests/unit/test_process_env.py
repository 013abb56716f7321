"""Child processes get an allow-list of our environment plus what they need, never the run's vendor tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from deployments.spec import DatabaseSpec
from providers.migrators.backup import PgConn
from providers.migrators.base import MigratorContext
from providers.migrators.prisma.migrator import make_migrator
from providers.process_env import child_env
from providers.source.git import _git

CANARY = "tok_CANARY_do_not_pass"


@pytest.fixture(autouse=True)
def vendor_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VERCEL_TOKEN", "RENDER_TOKEN", "AEVON_STATE_DB_URL", "GKE_TOKEN", "PGPASSWORD"):
        monkeypatch.setenv(name, CANARY)
    monkeypatch.setenv("SCHEMA_SHADOW_URL", "postgresql://shadow@127.0.0.1/shadow")


def test_child_env_keeps_the_allow_list_names_and_prefixes_then_extra() -> None:
    source = {"PATH": "/bin", "HOME": "/root", "VERCEL_TOKEN": CANARY, "GIT_SSH_COMMAND": "ssh -i k",
              "DATABASE_URL": CANARY, "LANG": "C.UTF-8"}
    env = child_env(keep=["LANG"], prefixes=["GIT_"], extra={"DATABASE_URL": "mine"}, source=source)
    assert env == {"PATH": "/bin", "HOME": "/root", "GIT_SSH_COMMAND": "ssh -i k", "LANG": "C.UTF-8",
                   "DATABASE_URL": "mine"}


async def test_git_runs_without_the_runs_tokens(tmp_path: Path) -> None:
    out = await _git(str(tmp_path), "-c", "alias.envdump=!env", "envdump")  # the child's own environment
    assert "PATH=" in out and CANARY not in out


def test_pg_tools_get_their_connection_and_no_token() -> None:
    env = PgConn.from_url(SecretStr("postgresql://app:pw@127.0.0.1:5432/app")).env()
    assert env["PGPASSWORD"] == "pw" and env["PGHOST"] == "127.0.0.1" and "PATH" in env
    assert CANARY not in env.values()


def test_prisma_cli_gets_its_database_url_and_schema_names_only(tmp_path: Path) -> None:
    root = tmp_path / "app"
    (root / "prisma" / "migrations").mkdir(parents=True)
    (root / "prisma" / "schema.prisma").write_text(
        'datasource db {\n  provider = "postgresql"\n  url = env("APP_DB_URL")\n'
        '  shadowDatabaseUrl = env("SCHEMA_SHADOW_URL")\n}\n'
    )
    url = "postgresql://app:pw@127.0.0.1:5432/app"
    ctx = MigratorContext(env="test", spec=DatabaseSpec(), database_url=SecretStr(url), state_dir=tmp_path / "state")
    env = make_migrator(ctx)._env(root)
    assert env["DATABASE_URL"] == url and env["APP_DB_URL"] == url  # the datasource's env() name
    assert env["SCHEMA_SHADOW_URL"] == "postgresql://shadow@127.0.0.1/shadow"  # another name the schema reads
    assert CANARY not in env.values() and "VERCEL_TOKEN" not in env
