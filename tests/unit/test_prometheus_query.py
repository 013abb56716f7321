"""prometheus_query: conditions in Argo Rollouts' spelling and its measurement phases, without a server."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from deployments.spec import CheckSpec, EnvironmentSpec
from providers.checks.base import VALIDATION, CheckContext
from providers.checks.conditions import ConditionError, compile_condition, evaluate
from providers.checks.prometheus_query import FAILED, INCONCLUSIVE, SUCCESSFUL, make_check, result_of
from providers.errors import ConfigError


def ok(text: str, result: Any) -> bool:
    return evaluate(compile_condition(text), result)


@pytest.mark.parametrize(("text", "result", "want"), [
    ("result[0] < 0.05", [0.01], True),
    ("result[0] < 0.05", [0.2], False),
    ("result < 0.05", 0.01, True),
    ("len(result) == 0 || result[0] < 0.05", [], True),
    ("result[0] >= 0.95 && result[1] >= 0.95", [0.99, 0.97], True),
    ("!(result[0] > 1)", [0.5], True),
    ("isNaN(result[0])", [math.nan], True),
    ("default(result, 0) == 0", [], True),
    ("0 < result[0] < 1", [0.5], True),
    ("result[0] - result[1] < 0.01", [0.3, 0.295], True),
])
def test_conditions(text: str, result: Any, want: bool) -> None:
    assert ok(text, result) is want


@pytest.mark.parametrize(("text", "result", "needle"), [
    ("result[0] < 0.05", [], "the result has 0 value"),
    ("result < 0.05", [0.01], "a list cannot be compared"),
    ("result[0]", [0.1], "not true or false"),
])
def test_condition_that_cannot_be_evaluated_is_an_error(text: str, result: Any, needle: str) -> None:
    with pytest.raises(ConditionError, match=needle):
        ok(text, result)


@pytest.mark.parametrize("text", ["__import__('os')", "result.__class__", "open(1)", "[x for x in result]",
                                  "result[0] < 'a'", "lambda: 1"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ConditionError):
        compile_condition(text)


def context(settings: dict[str, Any], timeout_s: float = 60) -> CheckContext:
    spec = CheckSpec(name="err-rate", kind="prometheus_query", settings=settings, timeout_s=timeout_s)
    env = EnvironmentSpec.model_validate({"environment": "dev", "source": {"repo": "/x"},
                                          "services": [{"name": "api", "provider": "local"}]})
    return CheckContext(env=env, spec=spec, secrets={}, artifacts_dir=Path("/tmp"), baseline_dir=Path("/tmp"),
                        section=VALIDATION, index=3)


BASE = {"url": "http://127.0.0.1:9", "query": "vector(1)"}


def test_phases_follow_argo_evaluate_result() -> None:
    only_success = make_check(context({**BASE, "success_condition": "result[0] < 0.05"}))
    assert only_success.phase([0.01]) == SUCCESSFUL and only_success.phase([0.5]) == FAILED
    only_failure = make_check(context({**BASE, "failure_condition": "result[0] > 0.1"}))
    assert only_failure.phase([0.01]) == SUCCESSFUL and only_failure.phase([0.5]) == FAILED
    both = make_check(context({**BASE, "success_condition": "result[0] < 0.05",
                               "failure_condition": "result[0] > 0.1"}))
    assert both.phase([0.07]) == INCONCLUSIVE and both.phase([0.2]) == FAILED
    assert make_check(context(BASE)).phase([123.0]) == SUCCESSFUL


def test_results_convert_like_argo() -> None:
    assert result_of({"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.25"]}]}) == [0.25]
    assert result_of({"resultType": "scalar", "result": [1, "3"]}) == 3.0
    assert result_of({"resultType": "vector", "result": []}) == []


def test_bad_condition_and_short_timeout_are_refused_at_spec_load() -> None:
    with pytest.raises(ConfigError, match=r"validation.checks\[3\].settings.success_condition: unknown name 'x'"):
        make_check(context({**BASE, "success_condition": "x < 1"}))
    with pytest.raises(ConfigError, match=r"validation.checks\[3\].timeout_s: must exceed"):
        make_check(context({**BASE, "count": 5, "interval_s": 10}, timeout_s=30))
