"""Secret canaries through real runs: every secret a unique marker, then everything produced searched for it.

Per kind (well-formed secrets, then one malformed secret each: a token ending in a newline or a carriage return or
holding a non-ASCII character, a ledger URL whose password holds an unescaped '/', a database URL whose password
holds an unescaped '@'): `aevon-deploy plan` and `aevon-deploy deploy` as a user runs them (subprocesses, crash
reports on, to the Sentry fake), and where the CLI refuses before any flow run, the deploy flow as a worker starts
it. Then the marker and its obvious encodings are looked for in the CLI's stdout and stderr, the Prefect flow and
task runs (states and their messages), logs, events and artifacts (read back from the API), the state directory,
every ledger table and the crash reports the Sentry fake received. Any hit is a leak.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from deployments.settings import AevonSettings
from flows.crash_reporting import scrub, secret_values
from flows.deploy import deploy_flow
from providers.errors import ConfigError
from providers.state.lock import LockTable
from providers.state.store import StateStore
from tests.fakes.sentry import FakeSentry
from tests.integration.canary_sinks import Sink, database_rows, files_under, prefect_since, settled_events, transforms
from tests.integration.envs import ROOT, memory_spec, write_spec
from tests.pg import temp_database
from tests.sample_app import build_sample_repo, ensure_prisma_toolkit

ENV = "canary"
CRASH_PROJECT = 2  # the fake's `aevon-deploy` project: the orchestrator's own crash reports


MARKER = re.compile(r"cnry[0-9a-f]{12}")


def marker() -> str:
    return f"cnry{secrets.token_hex(6)}"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    return build_sample_repo(tmp_path_factory.mktemp("canary") / "repo")


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
async def target_db() -> AsyncIterator[str]:
    """The environment's own database, owned by a role whose password is a marker (DATABASE_URL)."""
    async with temp_database(password=marker()) as url:
        yield url


def with_password(url: str, password: str) -> str:
    """`url` with `password` put in as it is (unescaped: the malformed kinds want exactly that)."""
    scheme, rest = url.split("://", 1)
    userinfo, host = rest.split("@", 1)
    return f"{scheme}://{userinfo.split(':', 1)[0]}:{password}@{host}"


def canary_spec(repo: Path, world: str, sentry: FakeSentry) -> dict[str, Any]:
    """One memory service holding a token, the Sentry check (its token goes into HTTP headers), a Prisma database."""
    spec = memory_spec(repo, ["api"], world=world)
    spec["services"][0]["secrets"] = {"token": "API_TOKEN"}
    spec["database"] = {"provider": "prisma", "url_secret": "DATABASE_URL", "backup": False}
    spec["validation"]["checks"].append({
        "name": "errors", "kind": "sentry", "timeout_s": 30, "error_retries": 0,
        "settings": {"url": sentry.url, "org": "aevon", "projects": ["aevon-api"], "project_ids": [1],
                     "window_s": 1, "before_window_s": 1, "interval": "1s", "min_events": 5, "timeout_s": 10},
        "secrets": {"auth_token": "SENTRY_AUTH_TOKEN", "read_token": "SENTRY_AUTH_TOKEN"}})
    return spec


# kind -> (secret made malformed, how), the marker `m` inside the value on both sides of the bad character
Malform = Callable[[str, str], str]
KINDS: dict[str, tuple[str, Malform] | None] = {
    "well-formed": None,
    "token-trailing-newline": ("SENTRY_AUTH_TOKEN", lambda v, m: v + "\n"),
    "token-carriage-return": ("SENTRY_AUTH_TOKEN", lambda v, m: v + "\r"),
    "token-non-ascii": ("SENTRY_AUTH_TOKEN", lambda v, m: f"{v}é{m}"),
    "ledger-url-slash-in-password": ("AEVON_STATE_DB_URL", lambda v, m: with_password(v, f"{m}/{m}")),
    "database-url-at-in-password": ("DATABASE_URL", lambda v, m: with_password(v, f"{m}@{m}")),
}


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.mark.parametrize("kind", list(KINDS))
async def test_no_secret_reaches_anything_a_run_produces(
    kind: str, repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path, target_db: str, sentry: FakeSentry,
    prefect_api: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    specs = tmp_path / "specs"
    write_spec(specs, ENV, canary_spec(repo, f"canary-{tmp_path.name}", sentry))
    values = {"API_TOKEN": f"tok_{marker()}", "SENTRY_AUTH_TOKEN": f"sntrys_{marker()}",
              "DATABASE_URL": target_db, "AEVON_STATE_DB_URL": with_password(ledger_url, marker())}
    sentry.tokens.add(values["SENTRY_AUTH_TOKEN"])
    sentry.scopes[values["SENTRY_AUTH_TOKEN"]] = frozenset({"project:releases", "event:read", "project:read"})
    sentry.members[values["SENTRY_AUTH_TOKEN"]] = None
    if (bad := KINDS[kind]) is not None:
        name, malform = bad
        values[name] = malform(values[name], marker())
    needles = {n for v in values.values() for n in transforms(v)} | {m for v in values.values()
                                                                      for m in MARKER.findall(v)}
    env = {**{k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_URL")) or k == "PREFECT_API_URL"},
           **values, "AEVON_STATE_DIR": str(state_dir), "AEVON_PLUGINS": "tests.standins",
           "AEVON_SENTRY_DSN": sentry.dsn(CRASH_PROJECT), "PYTHONPATH": str(ROOT)}
    since = datetime.now(UTC)

    plan = cli(["--spec-dir", str(specs), "plan", ENV, "--ref", "v1"], env, tmp_path)
    deploy = cli(["--spec-dir", str(specs), "deploy", ENV, "--ref", "v1"], env, tmp_path)
    produced = Sink()
    for what, out in (("plan", plan), ("deploy", deploy)):
        produced.add(f"{what} stdout", out.stdout)
        produced.add(f"{what} stderr", out.stderr)
        assert "Traceback" not in out.stderr, out.stderr[-3000:]
    if bad is None:
        assert (plan.returncode, deploy.returncode) == (0, 0), (plan.stderr[-2000:], deploy.stderr[-2000:])
    else:
        assert plan.returncode == deploy.returncode == 3, (plan.stderr[-2000:], deploy.stderr[-2000:])
        assert f"secret {bad[0]} " in plan.stderr + deploy.stderr
        for k, v in values.items():  # the worker's path: the flow itself, with no CLI check in front of it
            monkeypatch.setenv(k, v)
        await deploy_flow(ENV, "v1", spec_dir=str(specs), return_state=True)

    runs = await prefect_since(Sink(), since)
    assert runs or bad is not None
    await settled_events(since, runs)
    await prefect_since(produced, since)
    files_under(produced, state_dir)
    await database_rows(produced, ledger_url)
    sentry.wait_for_events(1, timeout_s=2, project_id=CRASH_PROJECT)
    for i, envelope in enumerate(sentry.envelopes):
        produced.add(f"crash report {i}", envelope.decode("utf-8", "replace"))
    searched = {"plan", "deploy", "flow", "log", "event", "artifact"}  # what a refused run still produces
    if bad is None:
        searched |= {"task", "file", "table"}
    assert searched <= produced.kinds(), produced.kinds()  # the search covered the runs' output, not nothing
    assert produced.hits(needles) == []


async def test_a_ledger_url_that_does_not_parse_is_named_never_quoted() -> None:
    """Where the driver parses the ledger URL (a run's state store, the lock table), its error text is not passed on."""
    m = marker()
    url = SecretStr(f"postgresql://aevon:{m}/{m}@127.0.0.1:5432/aevon")
    for opening in (StateStore(url).open, lambda: LockTable.connect(url)):
        with pytest.raises(ConfigError) as caught:
            await opening()
        assert "AEVON_STATE_DB_URL" in str(caught.value)
        exc: BaseException | None = caught.value
        while exc is not None:
            assert m not in str(exc) and m not in repr(exc)
            exc = exc.__cause__ or exc.__context__


@pytest.mark.parametrize("kind", [k for k, bad in KINDS.items() if bad is not None and bad[0] != "DATABASE_URL"])
def test_crash_reports_blank_a_malformed_secret_in_every_form_an_error_quotes_it(kind: str) -> None:
    """The scrubber of crash reports knows the value as is, stripped, repr- and JSON-escaped and percent-encoded."""
    name, malform = KINDS[kind] or ("", str)
    value = malform("postgresql://aevon@127.0.0.1:5432/aevon" if name == "AEVON_STATE_DB_URL"
                    else f"sntrys_{marker()}", marker())
    ledger = value if name == "AEVON_STATE_DB_URL" else "postgresql://aevon@127.0.0.1:5432/aevon"
    found = secret_values(AevonSettings(state_db_url=SecretStr(ledger)), {name: value})
    quoted = [f"{form} was refused" for form in transforms(value)]
    if name == "AEVON_STATE_DB_URL":  # a URL parser quotes the pieces it split the password into
        quoted += [f"int() with base 10: {m!r}" for m in MARKER.findall(value)]
    event = scrub({"exception": {"values": [{"value": q} for q in quoted]}}, found)
    left = [v["value"] for v in event["exception"]["values"] if MARKER.search(v["value"])]
    assert left == []
