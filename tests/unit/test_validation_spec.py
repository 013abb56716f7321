"""validation.stages / fail_fast / bake_s in the spec: the default stages, and errors that name what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.loader import load_spec
from deployments.spec import ValidationSpec
from providers.errors import ConfigError


def checks(*kinds: tuple[str, str], perf: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": n, "kind": k} for n, k in kinds]
    if perf:
        out.append({"name": perf, "kind": "perf", "exclusive": True})
    return out


def test_default_stages_by_kind_leave_out_empty_ones() -> None:
    spec = ValidationSpec.model_validate({"checks": checks(
        ("errors", "sentry"), ("api-health", "health"), ("web-e2e", "e2e"), ("custom", "sleep"), ("dast", "dast"),
        ("alerts", "prometheus"), perf="api-perf")})
    assert [(s.name, s.checks) for s in spec.stage_plan()] == [
        ("smoke", ["api-health"]), ("functional", ["web-e2e", "custom", "dast"]), ("load", ["api-perf"]),
        ("monitoring", ["errors", "alerts"])]
    only_health = ValidationSpec.model_validate({"checks": checks(("h", "health"))})
    assert [s.name for s in only_health.stage_plan()] == ["smoke"]
    assert spec.fail_fast and spec.bake_s == 0 and spec.baked() == []


def test_declared_stages_are_kept_in_order() -> None:
    stages = [{"name": "watch", "checks": ["b"]}, {"name": "ping", "checks": ["a"]}]
    spec = ValidationSpec.model_validate({"checks": checks(("a", "health"), ("b", "sentry")), "stages": stages})
    assert [(s.name, s.checks) for s in spec.stage_plan()] == [("watch", ["b"]), ("ping", ["a"])]


def test_the_bake_watches_monitoring_kinds_unless_told() -> None:
    body = {"checks": checks(("h", "health"), ("e", "e2e"), ("s", "sentry"), ("p", "prometheus")), "bake_s": 60}
    assert ValidationSpec.model_validate(body).baked() == ["h", "s", "p"]
    assert ValidationSpec.model_validate({**body, "bake_checks": ["p"]}).baked() == ["p"]


@pytest.mark.parametrize(("extra", "message"), [
    ({"stages": [{"name": "a", "checks": ["h", "nope"]}]}, r"validation: .*stages\[0\]\.checks: unknown check 'nope'"),
    ({"stages": [{"name": "a", "checks": ["h"]}, {"name": "b", "checks": ["h", "s"]}]},
     r"stages\[1\]\.checks: 'h' is already in stage 'a'"),
    ({"stages": [{"name": "a", "checks": ["h"]}]}, r"stages: checks in no stage: s"),
    ({"stages": [{"name": "a", "checks": ["h"]}, {"name": "a", "checks": ["s"]}]}, r"stages\[0\]\.name: duplicate"),
    ({"stages": [{"name": "a", "checks": []}]}, r"validation\.stages\[0\]\.checks: List should have at least 1"),
    ({"bake_s": 10, "bake_checks": ["x"]}, r"bake_checks: unknown check 'x'"),
    ({"bake_s": -1}, r"validation\.bake_s: Input should be greater than or equal to 0"),
    ({"bake_interval_s": 0}, r"validation\.bake_interval_s: Input should be greater than 0"),
])
def test_bad_validation_sections_are_refused_naming_the_field(tmp_path: Path, extra: dict[str, Any],
                                                              message: str) -> None:
    spec = {"environment": "dev", "source": {"repo": "."}, "services": [{"name": "api", "provider": "local"}],
            "validation": {"checks": checks(("h", "health"), ("s", "sentry")), **extra}}
    (tmp_path / "dev.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=message) as err:
        load_spec("dev", tmp_path)
    assert str(err.value).startswith(str(tmp_path / "dev.yaml"))
