"""The sentry check against the Sentry fake: release and deploy marker, spike rule, sentry-sdk events from the app."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from providers.checks.base import CheckInput
from providers.checks.sentry import SentryClient
from providers.errors import ConfigError, TransientError
from providers.models import Outcome, Release, utcnow
from tests.fakes.sentry import FakeSentry
from tests.integration.app_under_test import example_check, serving
from tests.sample_app import build_sample_repo, ensure_prisma_toolkit

TOKEN = "sntrys_test_token_do_not_print_0123456789"
ENV = "monitored"  # the example spec's environment: the check's default Sentry environment


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry(tokens=[TOKEN]).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


def check_for(sentry: FakeSentry, tmp: Path, token: str = TOKEN, read_token: str | None = None,
              **settings: Any) -> Any:
    base = {"url": sentry.url, "window_s": 2, "before_window_s": 2, "interval": "1s", "min_events": 5}
    secrets = {"auth_token": SecretStr(token), "read_token": SecretStr(read_token or token)}
    return example_check("errors", tmp, {**base, **settings}, secrets=secrets)


def release(sha: str = "a" * 40, ref: str = "v2") -> Release:
    return Release(release_id=f"{ENV}-{sha[:12]}-run1", env=ENV, ref=ref, sha=sha)


async def test_marks_release_and_deploy_once(sentry: FakeSentry, tmp_path: Path) -> None:
    check = check_for(sentry, tmp_path)
    inp = CheckInput(release=release(), services={})
    first = await check.run(inp)
    again = await check.run(inp)  # a re-run (ERROR retry) of the same deploy: no second release or marker
    assert first.outcome == again.outcome == Outcome.PASSED, first.summary
    assert list(sentry.releases) == ["a" * 40]
    assert sentry.releases["a" * 40]["projects"] == [{"id": 1, "slug": "aevon-api", "name": "aevon-api"}]
    [deploy] = sentry.deploys["a" * 40]
    assert deploy["environment"] == ENV and deploy["name"] == inp.release.release_id
    assert deploy["dateStarted"] and deploy["dateFinished"]
    assert first.metrics["errors_after"] == 0 and first.metrics["errors_before"] == 0
    assert TOKEN not in first.model_dump_json()


async def test_spike_fails_steady_rate_passes(sentry: FakeSentry, tmp_path: Path) -> None:
    inp = CheckInput(release=release(), services={})
    for i in range(8):  # the old release's errors in the 2 s before the deploy started
        sentry.add_event(1, inp.release.created_at.timestamp() - 1.9 + i * 0.2, release="old", environment=ENV)
    check = check_for(sentry, tmp_path)

    async def errors_after(n: int, gap_s: float = 0.1) -> None:
        await asyncio.sleep(0.3)
        for _ in range(n):
            sentry.add_event(1, time.time(), release="a" * 40, environment=ENV)
            await asyncio.sleep(gap_s)

    steady, _ = await asyncio.gather(check.run(inp), errors_after(8))  # about the same rate as before
    assert steady.outcome == Outcome.PASSED, steady.summary
    assert steady.metrics["errors_before"] == 8

    inp2 = CheckInput(release=release("b" * 40, "v3"), services={})
    other = time.time()
    sentry.add_event(1, other, environment="production")  # another environment: not counted
    sentry.add_event(2, other, environment=ENV)  # another project: not counted
    # its "before" holds the 8 errors above; 30 in the same time is a spike
    spike, _ = await asyncio.gather(check_for(sentry, tmp_path).run(inp2), errors_after(30, 0.04))
    assert spike.outcome == Outcome.FAILED, spike.summary
    assert spike.metrics["errors_after"] >= 20
    [finding] = spike.findings
    assert finding.severity == "CRITICAL" and "error spike after the deploy" in finding.message


async def test_too_few_errors_never_fail(sentry: FakeSentry, tmp_path: Path) -> None:
    inp = CheckInput(release=release(), services={})

    async def few() -> None:
        await asyncio.sleep(0.3)
        for _ in range(3):
            sentry.add_event(1, time.time(), environment=ENV)

    result, _ = await asyncio.gather(check_for(sentry, tmp_path, min_events=5).run(inp), few())
    assert result.outcome == Outcome.PASSED and result.metrics["errors_after"] == 3


async def test_bad_token_and_outage_are_error_without_the_token(sentry: FakeSentry, tmp_path: Path) -> None:
    wrong = "sntrys_wrong_token_do_not_print_99999"
    refused = await check_for(sentry, tmp_path, token=wrong).run(CheckInput(release=release(), services={}))
    assert refused.outcome == Outcome.ERROR and "401" in refused.summary
    assert wrong not in refused.model_dump_json() and TOKEN not in refused.model_dump_json()

    sentry.inject_fault("5xx", 1)  # one 503: retried by the client, then fine
    ok = await check_for(sentry, tmp_path).run(CheckInput(release=release(), services={}))
    assert ok.outcome == Outcome.PASSED


def test_sdk_envelopes_are_counted(sentry: FakeSentry) -> None:
    """sentry-sdk (a real client) sends an error and a message; events-stats counts the error as event.type:error."""
    code = ("import sentry_sdk, sys; sentry_sdk.init(dsn=sys.argv[1], release='r1', environment='monitored');"
            "sentry_sdk.capture_exception(ValueError('boom')); sentry_sdk.capture_message('hello');"
            "sentry_sdk.flush(5)")
    subprocess.run([sys.executable, "-c", code, sentry.dsn(1)], check=True, timeout=60)
    events = sentry.wait_for_events(2, project_id=1)
    assert sorted(e.type for e in events) == ["default", "error"]
    assert {e.release for e in events} == {"r1"}
    end = time.time() + 5
    params = {"yAxis": "count()", "query": "event.type:error", "project": "1", "environment": "monitored",
              "interval": "1m", "start": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(end - 600)),
              "end": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(end))}
    stats = httpx.get(f"{sentry.url}/api/0/organizations/aevon/events-stats/", params=params,
                      headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert sum(p["count"] for _, points in stats["data"] for p in points) == 1


@pytest.mark.slow
async def test_passes_on_v2_and_fails_on_bad_errors(repo: Path, tmp_path: Path, sentry: FakeSentry) -> None:
    """bad-errors' scheduler reports through sentry-sdk while users (this traffic) see only 200s; v2 reports none."""
    app_env = {"SENTRY_DSN": sentry.dsn(1), "SENTRY_ENVIRONMENT": ENV}
    outcomes, shas = {}, {}
    for tag in ("v2", "bad-errors"):
        deploy_started = utcnow()  # as in a deploy: the old release served until then, the new one after
        async with serving(repo, tag, tmp_path, app_env) as app:
            rel = app.release(ENV).model_copy(update={"created_at": deploy_started})
            inp = CheckInput(release=rel, services=app.services())
            check = check_for(sentry, tmp_path, window_s=4, before_window_s=4)
            result, answers = await asyncio.gather(check.run(inp), traffic(app.api, 4.0))
            assert set(answers) == {200}  # the users see nothing wrong either way
            outcomes[tag], shas[tag] = result, app.sha
    assert outcomes["v2"].outcome == Outcome.PASSED, outcomes["v2"].summary
    assert outcomes["bad-errors"].outcome == Outcome.FAILED, outcomes["bad-errors"].summary
    assert outcomes["bad-errors"].metrics["errors_after"] >= 5
    assert {e.release for e in sentry.events} == {shas["bad-errors"]}  # v2 reports nothing
    assert {e.payload["exception"]["values"][0]["type"] for e in sentry.events} == {"FileNotFoundError"}


async def traffic(base: str, seconds: float) -> list[int]:
    """GET /status and /health for `seconds` (what users, warm-up and the other checks do after a deploy)."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while time.monotonic() < deadline:
            for path in ("/status", "/health"):
                statuses.append((await client.get(path)).status_code)
            await asyncio.sleep(0.05)
    return statuses


async def test_releases_and_counts_need_their_own_scopes(sentry: FakeSentry, tmp_path: Path) -> None:
    """An organization token (org:ci) makes releases but gets 403 on the events endpoint: event:read reads."""
    sentry.add_token("sntrys_org_ci_token_0000000000000000", {"org:ci"})
    sentry.add_token("sntryu_read_token_00000000000000000", {"event:read"}, member_of={1, 2})
    inp = CheckInput(release=release(), services={})
    org_only = check_for(sentry, tmp_path, token="sntrys_org_ci_token_0000000000000000")
    refused = await org_only.run(inp)
    assert refused.outcome == Outcome.ERROR and "403" in refused.summary and "event:read" in refused.summary
    read_only = check_for(sentry, tmp_path, token="sntryu_read_token_00000000000000000")
    refused = await read_only.run(inp)  # event:read cannot make the release
    assert refused.outcome == Outcome.ERROR and "403" in refused.summary and "project:releases" in refused.summary
    both = check_for(sentry, tmp_path, token="sntrys_org_ci_token_0000000000000000",
                     read_token="sntryu_read_token_00000000000000000")
    assert (await both.run(inp)).outcome == Outcome.PASSED


async def test_project_ids_are_always_sent(sentry: FakeSentry, tmp_path: Path) -> None:
    """With no `project`, Sentry counts the token user's own projects: a reader in none of them would see zero."""
    outsider = "sntryu_outsider_token_0000000000000000"  # an internal integration: member of no project
    sentry.add_token(outsider, {"project:releases", "event:read"}, member_of=set())
    inp = CheckInput(release=release(), services={})
    check = check_for(sentry, tmp_path, token=outsider, project_ids=[])

    async def errors_after() -> None:
        await asyncio.sleep(0.3)
        for _ in range(12):
            sentry.add_event(1, time.time(), environment=ENV)

    result, _ = await asyncio.gather(check.run(inp), errors_after())
    assert result.metrics["errors_after"] == 12, result.summary  # ids from the release: [1]
    assert result.outcome == Outcome.FAILED


async def test_sentry_rate_limit_headers_are_honoured(sentry: FakeSentry, tmp_path: Path) -> None:
    """A 429 carries X-Sentry-Rate-Limit-Reset (no Retry-After): the client waits for it and goes on."""
    sentry.rate_limit(2, reset_in_s=1)
    result = await check_for(sentry, tmp_path).run(CheckInput(release=release(), services={}))
    assert result.outcome == Outcome.PASSED, result.summary


def test_sentry_429_waits_until_the_reset_header() -> None:
    request = httpx.Request("GET", "https://sentry.io/api/0/organizations/aevon/events/")
    reset = str(int(time.time()) + 5)
    resp = httpx.Response(429, request=request, json={"detail": "too frequently"},
                          headers={"X-Sentry-Rate-Limit-Remaining": "0", "X-Sentry-Rate-Limit-Reset": reset})
    client = SentryClient(httpx.AsyncClient(), provider="sentry")
    with pytest.raises(TransientError) as caught:
        client.translate(resp, resource="events")
    assert caught.value.retry_after is not None and 3.0 < caught.value.retry_after <= 5.0


def test_spec_mistakes_are_config_errors(sentry: FakeSentry, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="secrets"):
        example_check("errors", tmp_path)  # no auth_token secret
    with pytest.raises(ConfigError, match="read_token") as only_one:  # one kind of token where both are needed
        example_check("errors", tmp_path, secrets={"auth_token": SecretStr(TOKEN)})
    assert only_one.value.location is not None and only_one.value.location.endswith("secrets")
    with pytest.raises(ConfigError, match="window"):  # the example's timeout_s is 180: the window must fit in it
        check_for(sentry, tmp_path, window_s=600)
    with pytest.raises(ConfigError, match="observe_s"):
        example_check("alerts", tmp_path, {"observe_s": 600})
