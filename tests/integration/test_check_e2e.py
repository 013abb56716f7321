"""The E2E check against the real sample app in Debian's Chromium: flows, evidence, suite mode, and a rollback."""

from __future__ import annotations

import sys
import textwrap
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flows.publish import evidence_markdown
from flows.report import DeployOutcome, render_markdown
from providers.checks.e2e.check import E2ECheck, make_check
from providers.errors import ConfigError
from providers.models import Outcome
from tests.integration.app_under_test import Serving, serving
from tests.integration.checks_support import check_input, context, deploy, dev_env, rev, serving_sha, shipped_check
from tests.sample_app import build_sample_repo, ensure_prisma_toolkit, free_port

pytestmark = pytest.mark.slow
PASSWORD = "demo-password"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


@pytest.fixture(scope="module")
async def v2(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Serving]:
    async with serving(repo, "v2", tmp_path_factory.mktemp("v2")) as app:
        yield app


def shipped(tmp: Path) -> E2ECheck:
    return make_check(context(tmp, "e2e"))


async def test_shipped_flows_pass_on_v2(v2: Serving, tmp_path: Path) -> None:
    result = await shipped(tmp_path).run(check_input(v2))
    assert result.outcome == Outcome.PASSED, result.summary
    assert result.metrics["flows.passed"] == result.metrics["flows.total"] == 3
    for flow in ("login", "task-creation", "workflow-trigger"):
        assert result.metrics[f"flow.{flow}.ms"] > 0
    assert "login" in result.summary and "task creation" in result.summary
    assert result.artifacts == {} and not (tmp_path / "artifacts").exists()  # evidence only on failure


async def test_shipped_flows_fail_on_bad_e2e_with_screenshot_and_trace(repo: Path, tmp_path: Path) -> None:
    async with serving(repo, "bad-e2e", tmp_path) as app:
        check = shipped(tmp_path)
        result = await check.run(check_input(app))
        health = await _get(app.api + "/health")
    assert health == 200  # the api is fine: only a browser sees the broken flow
    assert result.outcome == Outcome.FAILED
    [finding] = result.findings
    assert finding.detail["flow"] == "task creation" and finding.detail["step"] == 3
    assert finding.detail["action"] == "expect_response_status POST /api/tasks"
    assert "status 201" in finding.detail["expected"] and "no such response" in finding.detail["seen"]
    assert "task creation" in result.summary and "not run: workflow trigger" in result.summary
    assert result.metrics["flows.passed"] == 1
    shot, trace = Path(result.artifacts["task creation screenshot"]), Path(result.artifacts["task creation trace"])
    assert shot.parent == tmp_path / "artifacts" / app.release().release_id
    assert shot.read_bytes().startswith(b"\x89PNG")
    with zipfile.ZipFile(trace) as z:
        assert any(n.endswith(".trace") for n in z.namelist())


async def _get(url: str) -> int:
    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(url)).status_code


def _login_with_secret(*extra: dict[str, Any]) -> dict[str, Any]:
    steps = [
        {"goto": "/"}, {"fill": "#login-email", "value": "demo@aevon.dev"},
        {"fill": "#login-password", "value_secret": "password"}, {"click": "#login-submit"},
        {"expect_text": "#session-user", "text": "demo@aevon.dev", "exact": True},
    ]
    return {"step_timeout_s": 3, "flows": [{"name": "login", "steps": steps}, *extra]}


async def test_select_and_secret_value_on_v2(v2: Serving, tmp_path: Path) -> None:
    """A priority chosen with `select` shows on the new task; a secret never reaches the result or a trace."""
    priority = {"name": "urgent task", "steps": [
        {"fill": "#task-title", "value": "Urgent {nonce}"},
        {"select": "#task-priority", "value": "high"},
        {"click": "#task-submit"},
        {"expect_text": "[data-testid=task-item]:has-text('Urgent {nonce}') .task-priority", "text": "high",
         "exact": True},
    ]}
    wrong = {"name": "wrong user", "steps": [{"expect_text": "#session-user", "text": "someone@else"}]}
    secrets = {"password": PASSWORD}
    ok = await make_check(context(tmp_path, "e2e", _login_with_secret(priority), secrets)).run(check_input(v2))
    bad = await make_check(context(tmp_path, "e2e", _login_with_secret(wrong), secrets)).run(check_input(v2))
    assert ok.outcome == Outcome.PASSED, ok.summary
    assert bad.outcome == Outcome.FAILED
    assert "expected text containing 'someone@else'" in bad.summary and "seen text 'demo@aevon.dev'" in bad.summary
    assert list(bad.artifacts) == ["wrong user screenshot"]  # no trace: the run typed a secret
    for result in (ok, bad):
        assert PASSWORD not in result.model_dump_json()


async def test_launch_failure_and_unreachable_app_are_errors(v2: Serving, tmp_path: Path) -> None:
    settings = shipped_check("e2e")["settings"]
    no_browser = make_check(context(tmp_path, "e2e", {**settings, "chromium": {"executable_path": "/nope/chromium"}}))
    nowhere = make_check(context(tmp_path, "e2e", {**settings, "url": f"http://127.0.0.1:{free_port()}"}))
    launch = await no_browser.run(check_input(v2))
    down = await nowhere.run(check_input(v2))
    assert launch.outcome == Outcome.ERROR and "could not launch Chromium (/nope/chromium)" in launch.summary
    assert down.outcome == Outcome.ERROR and "ERR_CONNECTION_REFUSED" in down.summary
    assert "not run: task creation, workflow trigger" in down.summary


SUITE = textwrap.dedent('''
    """A stand-in for an app's own Playwright suite: two specs, a Playwright-format JSON report."""
    import asyncio, json, os, sys
    from playwright.async_api import async_playwright

    ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"]

    async def login() -> str | None:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = await browser.new_page()
            await page.goto(os.environ["BASE_URL"] + "/")
            await page.fill("#login-email", "demo@aevon.dev")
            await page.fill("#login-password", "demo-password")
            await page.click("#login-submit")
            await page.locator("#app-section").wait_for(state="visible", timeout=5000)
            got = await page.locator("#session-user").inner_text()
            await browser.close()
        want = os.environ["EXPECT_USER"]
        return None if got == want else f"expected {want!r}, received {got!r}"

    def test(title, error):
        result = {"status": "failed" if error else "passed", "duration": 12.5}
        if error:
            result["error"] = {"message": "\\x1b[31mError:\\x1b[39m " + error}
        return {"title": title, "tests": [{"projectName": "chromium", "status": "unexpected" if error else "expected",
                                           "results": [result]}]}

    errors = [asyncio.run(login()), "DATABASE_URL leaked" if "DATABASE_URL" in os.environ else None]
    specs = [test("logs in", errors[0]), test("sees no orchestrator secrets", errors[1])]
    report = {"suites": [{"title": "login.spec.ts", "specs": [], "suites": [{"title": "session", "specs": specs}]}],
              "errors": [], "stats": {"expected": sum(e is None for e in errors)}}
    with open(os.environ["PLAYWRIGHT_JSON_OUTPUT_NAME"], "w") as f:
        json.dump(report, f)
    sys.exit(1 if any(errors) else 0)
''')


async def test_suite_mode_runs_the_apps_command_with_base_url(v2: Serving, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://orchestrator:s3cret@db/x")  # must not reach the suite
    (v2.checkout / "e2e").mkdir(exist_ok=True)
    (v2.checkout / "e2e" / "suite.py").write_text(SUITE)

    def suite(user: str) -> E2ECheck:
        return make_check(context(tmp_path, "e2e", {"suite": {
            "command": [sys.executable, "suite.py"], "cwd": "e2e", "json_report": "report.json",
            "env": {"EXPECT_USER": user}}}))

    good = await suite("demo@aevon.dev").run(check_input(v2))
    bad = await suite("admin@aevon.dev").run(check_input(v2))
    assert good.outcome == Outcome.PASSED, good.summary
    assert good.metrics["tests.expected"] == 2 and good.metrics["tests.unexpected"] == 0
    assert bad.outcome == Outcome.FAILED
    [finding] = bad.findings
    assert finding.location == "login.spec.ts › session › logs in [chromium]"
    assert "expected 'admin@aevon.dev', received 'demo@aevon.dev'" in finding.message and "\x1b" not in finding.message
    assert "suite exited 1, 1/2 test(s) passed" in bad.summary
    assert Path(bad.artifacts["suite log"]).exists()


def test_settings_errors_name_the_field(tmp_path: Path) -> None:
    settings = shipped_check("e2e")["settings"]
    with pytest.raises(ConfigError, match=r"^validation\.checks\[\d+\]\.settings\.flows\[0\]\.steps\[1\]: "):
        make_check(context(tmp_path, "e2e", {"flows": [{"name": "x", "steps": [{"goto": "/"}, {"hover": "#a"}]}]}))
    with pytest.raises(ConfigError, match="either flows or suite"):
        make_check(context(tmp_path, "e2e", {**settings, "suite": {"command": ["true"]}}))
    with pytest.raises(ConfigError, match="value_secret 'password' is not among"):
        make_check(context(tmp_path, "e2e", _login_with_secret()))


async def test_flow_bad_e2e_fails_and_rolls_back_to_v2(
    repo: Path, tmp_path: Path, ledger_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str
) -> None:
    async with dev_env(repo, tmp_path, state_dir, monkeypatch, {"health", "e2e"}) as (spec_dir, ports):
        good = await deploy(spec_dir, "v2")
        assert good.outcome == DeployOutcome.SUCCEEDED, good.error
        assert [c.outcome for c in good.checks] == ["PASSED"] * 3

        bad = await deploy(spec_dir, "bad-e2e")
        assert bad.outcome == DeployOutcome.ROLLED_BACK, bad.error
        failed = [c for c in bad.checks if c.outcome != "PASSED"]
        assert [c.name for c in failed] == ["web-e2e"]
        assert "flow 'task creation' step 3" in failed[0].summary
        assert bad.rollback is not None and bad.rollback.ok
        assert await serving_sha(ports["web"]) == rev(repo, "v2")
        assert await serving_sha(ports["api"]) == rev(repo, "v2")
        evidence = state_dir / "artifacts" / "dev" / str(bad.release_id)
        assert sorted(p.name for p in evidence.iterdir()) == [
            "e2e-web-e2e-task-creation-trace.zip", "e2e-web-e2e-task-creation.png"]
        markdown = render_markdown(bad)
        assert "task creation screenshot: see evidence" in markdown  # in the evidence artifact: no file:// link
        monkeypatch.setenv("AEVON_EVIDENCE_URL", "http://evidence.example/a")  # where artifacts/ is served
        shown = evidence_markdown(bad)
        assert shown is not None and (f"![task creation screenshot](http://evidence.example/a/dev/{bad.release_id}/"
                                      "e2e-web-e2e-task-creation.png)") in shown
