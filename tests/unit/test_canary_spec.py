"""Canary strategy in the spec: steps validated, canary checks placed, targets without traffic splitting refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from deployments.loader import load_spec
from deployments.settings import AevonSettings
from deployments.spec import ServiceSpec
from flows.runtime import build_runtime
from providers.errors import ConfigError
from providers.registry import TARGETS, resolve
from providers.targets.base import TargetContext, supports_canary

CANARY = {"kind": "canary", "steps": [{"weight": 10, "pause_s": 1}, {"weight": 50}, {"weight": 100}]}


def spec(tmp: Path, services: list[dict[str, Any]], checks: list[dict[str, Any]] | None = None) -> Path:
    doc = {"environment": "dev", "source": {"repo": "/nowhere"}, "services": services,
           "validation": {"checks": checks or []}}
    (tmp / "dev.yaml").write_text(yaml.safe_dump(doc))
    return tmp


LOCAL = {"name": "api", "provider": "local", "settings": {"command": ["{python}", "app.py"], "port": 18_999}}


def test_default_strategy_is_all_at_once(tmp_path: Path) -> None:
    loaded = load_spec("dev", spec(tmp_path, [LOCAL]))
    assert loaded.services[0].strategy.kind == "all_at_once" and not loaded.services[0].strategy.canary


def test_canary_steps_load_in_order(tmp_path: Path) -> None:
    loaded = load_spec("dev", spec(tmp_path, [{**LOCAL, "strategy": CANARY}]))
    steps = loaded.services[0].strategy.steps
    assert [s.weight for s in steps] == [10, 50, 100] and steps[0].pause_s == 1 and steps[1].analysis


@pytest.mark.parametrize(("strategy", "message"), [
    ({"kind": "canary"}, "a canary needs at least one step"),
    ({"kind": "canary", "steps": [{"weight": 50}, {"weight": 10}]}, "weights must increase"),
    ({"kind": "canary", "steps": [{"weight": 0}]}, "greater than or equal to 1"),
    ({"kind": "all_at_once", "steps": [{"weight": 10}]}, "only a canary strategy has steps"),
    ({"kind": "blue_green"}, "Input should be 'all_at_once' or 'canary'"),
])
def test_bad_strategy_names_the_field(tmp_path: Path, strategy: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_spec("dev", spec(tmp_path, [{**LOCAL, "strategy": strategy}]))
    assert "services[0].strategy" in str(e.value) and message in str(e.value)


def test_canary_check_must_observe_a_canary_service(tmp_path: Path) -> None:
    check = {"name": "api-health", "kind": "health", "service": "api", "canary": True}
    with pytest.raises(ConfigError, match=r"validation.checks\[0\].canary: service 'api' has no canary strategy"):
        load_spec("dev", spec(tmp_path, [LOCAL], [check]))
    assert load_spec("dev", spec(tmp_path, [{**LOCAL, "strategy": CANARY}], [check])).validation.checks[0].canary


def test_target_without_traffic_splitting_refuses_canary_at_build(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory stand-in has no canary capability: the runtime refuses, naming services[1].strategy."""
    monkeypatch.setenv("AEVON_STATE_DIR", str(tmp_path / "state"))
    mem = {"name": "worker", "provider": "memory", "strategy": CANARY}
    d = spec(tmp_path, [LOCAL, mem])
    with pytest.raises(ConfigError) as e:
        build_runtime("dev", d, settings=AevonSettings())
    assert "services[1].strategy" in str(e.value) and "cannot split traffic" in str(e.value)
    spec(tmp_path, [{**LOCAL, "strategy": CANARY}])
    assert supports_canary(build_runtime("dev", d, settings=AevonSettings()).targets["api"])


@pytest.mark.parametrize(("provider", "settings"), [
    ("railway", {"service_id": "svc-web", "environment_id": "env-production"}),
    ("render", {"service_id": "srv-web"}),
    ("koyeb", {"service_id": "svc-web"}),
])
def test_paas_without_documented_traffic_splitting_has_no_canary(provider: str, settings: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    svc = ServiceSpec(name="web", provider=provider, settings=settings, secrets={"token": "TOKEN"})
    ctx = TargetContext(env="prod", spec=svc, secrets={"token": SecretStr("tok")}, state_dir=tmp_path)
    target = resolve(TARGETS, "target", provider, "services.web.provider")(ctx)
    assert not supports_canary(target)
