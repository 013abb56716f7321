"""Helpers of the E2E and DAST check tests: the shipped dev spec's checks, a narrowed dev environment, deploys."""

from __future__ import annotations

import copy
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from deployments.spec import CheckSpec, EnvironmentSpec
from flows.deploy import deploy_flow, report_of
from flows.report import DeployReport
from providers.checks.base import VALIDATION, CheckContext, CheckInput
from providers.targets.local.target import stop_all
from tests.integration.app_under_test import Serving
from tests.integration.envs import ROOT, sample_dev_spec, write_spec
from tests.pg import temp_database


def shipped_spec() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "deployments" / "dev.yaml").read_text()))


def shipped_check(kind: str) -> dict[str, Any]:
    """The check of `kind` in deployments/dev.yaml as shipped (so the tests run the flows the demo runs)."""
    spec = shipped_spec()
    found = [c for c in spec["validation"]["checks"] if c["kind"] == kind]
    assert len(found) == 1, f"deployments/dev.yaml should have one {kind} check"
    return copy.deepcopy(found[0])


def context(tmp: Path, kind: str, settings: dict[str, Any] | None = None,
            secrets: dict[str, str] | None = None) -> CheckContext:
    """A CheckContext for the shipped check of `kind` (its settings replaced when given), files under `tmp`."""
    raw = shipped_check(kind)
    if settings is not None:
        raw["settings"] = settings
    if secrets:
        raw["secrets"] = {k: k for k in secrets}
    spec = CheckSpec.model_validate(raw)
    index = [c["kind"] for c in shipped_spec()["validation"]["checks"]].index(kind)
    return CheckContext(
        env=EnvironmentSpec.model_validate(shipped_spec()), spec=spec,
        secrets={k: SecretStr(v) for k, v in (secrets or {}).items()},
        artifacts_dir=tmp / "artifacts", baseline_dir=tmp / "baselines", section=VALIDATION, index=index,
    )


def check_input(app: Serving) -> CheckInput:
    """What the deploy flow would hand a check for a version serving through tests/integration/app_under_test."""
    return CheckInput(release=app.release(), services=app.services(), checkout_dir=app.checkout)


def rev(repo: Path, ref: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", f"{ref}^{{commit}}"], capture_output=True, text=True,
                          check=True).stdout.strip()


@asynccontextmanager
async def dev_env(repo: Path, tmp: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch,
                  kinds: set[str]) -> AsyncIterator[tuple[Path, dict[str, int]]]:
    """The shipped dev spec on free ports with only the validation checks of `kinds`; a fresh app database.

    Yields (spec folder, service ports); stops the services afterwards.
    """
    spec = sample_dev_spec(repo)
    spec["validation"]["checks"] = [c for c in spec["validation"]["checks"] if c["kind"] in kinds]
    spec_dir = tmp / "specs"
    write_spec(spec_dir, "dev", spec)
    async with temp_database() as db_url:
        monkeypatch.setenv("DATABASE_URL", db_url)
        try:
            yield spec_dir, {s["name"]: s["settings"]["port"] for s in spec["services"]}
        finally:
            for name in ("web", "api"):
                await stop_all(state_dir / "targets" / "dev" / name, name)


async def deploy(spec_dir: Path, ref: str) -> DeployReport:
    """Run the real deploy flow for dev at `ref` and return its report."""
    state = await deploy_flow("dev", ref, spec_dir=str(spec_dir), return_state=True)
    return await report_of(state)


async def serving_sha(port: int) -> str:
    """The SHA the service on the stable `port` reports on /health."""
    async with httpx.AsyncClient(timeout=5) as client:
        return str((await client.get(f"http://127.0.0.1:{port}/health")).json()["sha"])
