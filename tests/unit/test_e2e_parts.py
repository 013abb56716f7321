"""E2E parts without a browser: step validation, the Playwright JSON report, the suite's verdict and environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from providers.checks.e2e.check import E2ESettings
from providers.checks.e2e.steps import ExpectResponseStatusStep, FillStep, FlowSpec, SelectStep, describe
from providers.checks.e2e.suite import SuiteSpec, judge, parse_report, suite_env
from providers.models import Outcome


def flow(*steps: dict[str, Any]) -> FlowSpec:
    return FlowSpec.model_validate({"name": "f", "steps": list(steps)})


def test_each_action_parses_to_its_step() -> None:
    f = flow({"goto": "/", "status": [200]}, {"fill": "#a", "value": "x"}, {"click": "#b"},
             {"select": "#c", "label": "High"}, {"expect_text": "#d", "text": "ok", "exact": True},
             {"expect_url": "/tasks/\\d+"}, {"expect_response_status": "/api/*", "method": "POST", "status": 201})
    assert [describe(s) for s in f.steps] == [
        "goto /", "fill #a with 'x'", "click #b", "select #c label 'High'", "expect_text #d == 'ok'",
        "expect_url /tasks/\\d+", "expect_response_status POST /api/*",
    ]
    step = f.steps[6]
    assert isinstance(step, ExpectResponseStatusStep) and step.status == [201]


@pytest.mark.parametrize(("step", "message"), [
    ({"hover": "#a"}, "a step needs one of: goto, fill, click"),
    ({"fill": "#a"}, "exactly one of value, value_secret"),
    ({"fill": "#a", "value": "x", "value_secret": "pw"}, "exactly one of value, value_secret"),
    ({"select": "#a"}, "exactly one of value, label"),
    ({"click": "#a", "text": "x"}, "Extra inputs are not permitted"),
    ({"expect_response_status": "/x"}, "Field required"),
])
def test_bad_steps_are_refused(step: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        flow(step)


def test_secret_fill_never_shows_its_value_and_flows_are_one_mode() -> None:
    f = flow({"fill": "#pw", "value_secret": "password"})
    assert describe(f.steps[0]) == "fill #pw with secret password" and f.secret_keys == {"password"}
    assert isinstance(flow({"select": "#s", "value": "high"}).steps[0], SelectStep)
    assert isinstance(f.steps[0], FillStep)
    with pytest.raises(ValidationError, match="either flows or suite"):
        E2ESettings.model_validate({})
    with pytest.raises(ValidationError, match="flow names must be unique"):
        E2ESettings.model_validate({"flows": [{"name": "a", "steps": [{"goto": "/"}]}] * 2})


REPORT = {
    "suites": [{
        "title": "tasks.spec.ts", "specs": [{"title": "top level", "tests": [
            {"projectName": "chromium", "status": "expected", "results": [{"status": "passed", "duration": 100}]}]}],
        "suites": [{"title": "create", "specs": [{"title": "adds a task", "tests": [{
            "projectName": "chromium", "status": "unexpected", "results": [
                {"status": "failed", "duration": 50, "error": {"message": "first try"}},
                {"status": "failed", "duration": 70, "error": {"message": "\x1b[31mExpected\x1b[39m 1\nReceived 0"},
                 "attachments": [{"name": "screenshot", "path": "/r/shot.png"}, {"name": "trace", "path": "/r/t.zip"},
                                 {"name": "stdout", "body": "inline, no file"}]},
            ]}]}]}],
    }],
}


def test_playwright_json_report() -> None:
    tests = parse_report(REPORT)
    assert [(t.title, t.status, t.duration_ms) for t in tests] == [
        ("tasks.spec.ts › top level [chromium]", "expected", 100.0),
        ("tasks.spec.ts › create › adds a task [chromium]", "unexpected", 120.0),
    ]
    assert tests[1].error == "Expected 1\nReceived 0"
    assert sorted(tests[1].attachments.values()) == ["/r/shot.png", "/r/t.zip"]


def test_suite_verdict() -> None:
    tests = parse_report(REPORT)
    failed = judge(1, tests, [])
    assert failed.outcome == Outcome.FAILED
    assert failed.summary.startswith("suite exited 1, 1/2 test(s) passed: E2E test failed: tasks.spec.ts › create")
    assert [f.location for f in failed.findings] == ["tasks.spec.ts › create › adds a task [chromium]"]
    assert sorted(failed.artifacts.values()) == ["/r/shot.png", "/r/t.zip"]
    assert failed.metrics["tests.unexpected"] == 1 and failed.metrics["test.tasks.spec.ts › top level [chromium].ms"]
    assert judge(0, tests[:1], []).outcome == Outcome.PASSED
    crashed = judge(2, None, [])
    assert crashed.outcome == Outcome.FAILED and crashed.summary.startswith("suite exited 2, 0/0 test(s)")
    assert judge(0, tests[:1], ["config error"]).outcome == Outcome.FAILED  # the report's top-level errors count


def test_suite_environment_carries_base_url_not_our_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@h/db")
    monkeypatch.setenv("SENTRY_AUTH_TOKEN", "tok")
    spec = SuiteSpec(command=["npx", "playwright", "test"], env={"CI": "1"})
    env = suite_env(spec, "http://127.0.0.1:8102", Path("/co/report.json"))
    assert env["BASE_URL"] == "http://127.0.0.1:8102" and env["CI"] == "1"
    assert env["PLAYWRIGHT_JSON_OUTPUT_NAME"] == "/co/report.json"
    assert "DATABASE_URL" not in env and "SENTRY_AUTH_TOKEN" not in env and "PATH" in env
