"""`make demo`'s fourth outcome: the canary spec derived from deployments/dev.yaml loads, the api in canary steps."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from deployments.loader import load_spec

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def demo_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aevon_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_canary_spec_is_dev_with_the_api_in_canary_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = demo_module()
    monkeypatch.setattr(demo, "CANARY_SPECS", tmp_path / "demo-canary")
    spec = load_spec("dev", demo.write_canary_spec())
    dev = load_spec("dev", DEMO.parents[1] / "deployments")
    api = spec.service("api")
    assert api.strategy.kind == "canary" and [s.weight for s in api.strategy.steps] == [10, 50, 100]
    assert all(s.pause_s == 0 for s in api.strategy.steps)  # a fast demo: each analysis runs at once
    assert [c.name for c in spec.validation.checks if c.canary] == ["api-health"]
    assert spec.source.repo == str(demo.REPO)
    # everything else is dev's: same services, ports, database and checks (the canary shares dev's stable port)
    assert [(s.name, s.settings["port"]) for s in spec.services] == [(s.name, s.settings["port"]) for s in dev.services]
    assert spec.database == dev.database
    assert [c.name for c in spec.validation.checks] == [c.name for c in dev.validation.checks]
