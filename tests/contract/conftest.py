"""Contract-suite fixtures: every `tests/contract/harness_*.py` module's HARNESS_FACTORY becomes one parameter."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from providers.targets.base import ServiceTarget
from tests.contract.harness import TargetHarness

HERE = Path(__file__).parent


def discover() -> dict[str, Callable[[], TargetHarness] | BaseException]:
    """harness name -> its factory, or the error that kept the module from giving one (reported as a failure)."""
    found: dict[str, Callable[[], TargetHarness] | BaseException] = {}
    for path in sorted(HERE.glob("harness_*.py")):
        name = path.stem.removeprefix("harness_")
        try:
            module = importlib.import_module(f"tests.contract.{path.stem}")
        except Exception as exc:  # a broken harness must show up as failing tests, not hide the others
            found[name] = exc
            continue
        factory = getattr(module, "HARNESS_FACTORY", None)
        found[name] = factory if callable(factory) else LookupError(f"{path.name} has no HARNESS_FACTORY")
    return found


HARNESSES = discover()


@pytest.fixture(params=sorted(HARNESSES), ids=str)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TargetHarness]:
    factory = HARNESSES[request.param]
    if isinstance(factory, BaseException):
        raise factory
    h = factory()
    await h.start(tmp_path)
    try:
        yield h
    finally:
        await h.stop()


class Targets:
    """Makes targets from the harness and closes them at the end of the test."""

    def __init__(self, harness: TargetHarness) -> None:
        self.harness = harness
        self.made: list[ServiceTarget] = []

    def __call__(self, service: str = "web", *, bad_token: bool = False) -> ServiceTarget:
        h = self.harness
        target = h.make_target_bad_token(service) if bad_token else h.make_target(service)
        self.made.append(target)
        return target


@pytest.fixture
async def targets(harness: TargetHarness) -> AsyncIterator[Targets]:
    made = Targets(harness)
    try:
        yield made
    finally:
        for target in made.made:
            await target.aclose()


def optional(harness: Any, name: str) -> Any:
    """A harness capability beyond the protocol, or skip the test where this harness has none."""
    attr = getattr(harness, name, None)
    if attr is None:
        pytest.skip(f"{type(harness).__name__} has no {name}")
    return attr
