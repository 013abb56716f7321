"""The orchestrator reports its own crashes to Sentry (AEVON_SENTRY_DSN), with every secret scrubbed from the event."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from deployments.settings import AevonSettings
from flows.crash_reporting import FILTERED, scrub, secret_values
from tests.fakes.sentry import FakeSentry
from tests.integration.envs import ROOT, memory_spec, write_spec

DB_PASSWORD = "S3cret-ledger-passw0rd"
GITHUB_TOKEN = "ghp_crashtestsecret0123456789abcdef"
PROJECT = 2  # the fake's `aevon-deploy` project: the orchestrator's own

# Runs the real CLI after replacing one of its steps with a bug that puts secrets in the message and in locals.
WRAPPER = """
import os, sys
import {module} as target

async def broken(*args, **kwargs):
    token = os.environ["GITHUB_TOKEN"]
    ledger = os.environ["AEVON_STATE_DB_URL"]
    raise RuntimeError(f"cannot talk to {{ledger}} with {{token}}")

target.{attr} = broken
from flows.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry().start()
    try:
        yield fake
    finally:
        fake.stop()


def run_cli(module: str, attr: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = WRAPPER.format(module=module, attr=attr)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def assert_reported_without_secrets(sentry: FakeSentry, *secrets: str) -> None:
    events = sentry.wait_for_events(1, timeout_s=20, project_id=PROJECT)
    crashes = [e for e in events
               if e.type == "error" and e.payload["exception"]["values"][-1]["type"] == "RuntimeError"]
    assert crashes, [e.payload.get("logentry") or e.payload.get("exception") for e in events]
    assert all(FILTERED in e.payload["exception"]["values"][-1]["value"] for e in crashes)
    assert all(e.payload["release"].startswith("aevon-deploy@") for e in events)
    raw = b"".join(sentry.envelopes)
    for secret in secrets:
        assert secret.encode() not in raw, "a secret reached Sentry"


def test_unhandled_exception_in_the_cli_is_reported_scrubbed(sentry: FakeSentry) -> None:
    env = {**os.environ, "AEVON_SENTRY_DSN": sentry.dsn(PROJECT), "GITHUB_TOKEN": GITHUB_TOKEN,
           "AEVON_STATE_DB_URL": f"postgresql://aevon:{DB_PASSWORD}@127.0.0.1:5432/aevon"}
    out = run_cli("flows.cli_read", "_history", ["history", "dev"], env)
    assert out.returncode == 1 and "RuntimeError" in out.stderr
    assert_reported_without_secrets(sentry, DB_PASSWORD, GITHUB_TOKEN)


@pytest.mark.usefixtures("prefect_api")
def test_a_crashed_deploy_flow_is_reported(sentry: FakeSentry, ledger_url: str, state_dir: Path,
                                           tmp_path: Path) -> None:
    """A bug inside the flow: Prefect ends the run Failed; the CLI reports the exception, then exits 1."""
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    write_spec(tmp_path / "specs", "crashy", memory_spec(tmp_path / "repo", ["api"]))
    env = {**os.environ, "AEVON_SENTRY_DSN": sentry.dsn(PROJECT), "GITHUB_TOKEN": GITHUB_TOKEN}
    out = run_cli("flows.deploy", "_run", ["--spec-dir", str(tmp_path / "specs"), "deploy", "crashy", "--ref",
                                          "main"], env)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "the deploy flow ended without a report" in out.stderr
    assert_reported_without_secrets(sentry, GITHUB_TOKEN)


def test_scrub_blanks_known_values_and_url_passwords() -> None:
    settings = AevonSettings(state_db_url=SecretStr("postgresql://u:p%40ss-word@db/ledger"))
    values = secret_values(settings, {"RENDER_API_KEY": "rnd_0123456789", "HOME": "/root", "MY_TOKEN": "abc"})
    assert "rnd_0123456789" in values and "p@ss-word" in values and "p%40ss-word" in values
    assert "/root" not in values and "abc" not in values  # not secret-named / too short to blank safely
    event = {"message": "failed on https://bob:hunter2-xyz@git.example/repo with rnd_0123456789",
             "extra": {"items": ["p@ss-word", 3]}}
    assert scrub(event, values) == {
        "message": f"failed on https://bob:{FILTERED}@git.example/repo with {FILTERED}",
        "extra": {"items": [FILTERED, 3]},
    }
