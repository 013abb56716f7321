"""Helpers for the gate tests: an environment spec, a CheckContext for one gate, a CheckInput for a release."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from deployments.spec import CheckSpec, EnvironmentSpec, ServiceSpec, SourceSpec
from providers.checks.base import Check, CheckContext, CheckInput
from providers.models import CheckResult, Release
from providers.registry import CHECKS, resolve


def environment(repo: str = "https://github.com/aevon/app.git", env: str = "prod") -> EnvironmentSpec:
    """A minimal environment spec whose source is `repo`."""
    return EnvironmentSpec(
        environment=env,
        source=SourceSpec(repo=repo),
        services=[ServiceSpec(name="api", provider="memory", settings={})],
    )


def make_gate(
    kind: str,
    settings: dict[str, Any],
    tmp: Path,
    *,
    secrets: dict[str, str] | None = None,
    name: str | None = None,
    timeout_s: float = 300,
    env: EnvironmentSpec | None = None,
) -> Check:
    """The gate of `kind`, built the way the flow builds it: the registered factory, given a CheckContext."""
    spec = CheckSpec(name=name or kind.replace("_", "-"), kind=kind, settings=settings,
                     secrets={k: k.upper() for k in (secrets or {})}, timeout_s=timeout_s)
    ctx = CheckContext(
        env=env or environment(),
        spec=spec,
        secrets={k: SecretStr(v) for k, v in (secrets or {}).items()},
        artifacts_dir=tmp / "artifacts",
        baseline_dir=tmp / "baselines",
    )
    factory = resolve(CHECKS, "check", kind, f"gates.{spec.name}")
    gate = factory(ctx)
    assert isinstance(gate, Check)
    return gate


def release_input(sha: str, ref: str | None = None, checkout: Path | None = None, env: str = "prod") -> CheckInput:
    """A CheckInput for a release of `sha` (ref defaults to the SHA)."""
    release = Release(release_id=f"{env}-{sha[:12]}", env=env, ref=ref or sha, sha=sha,
                      checkout_dir=str(checkout) if checkout else None)
    return CheckInput(release=release, services={}, checkout_dir=checkout)


def text_of(result: CheckResult) -> str:
    """Everything a result would show anywhere (summary, findings, details), for secret-leak assertions."""
    return result.model_dump_json()


def messages(result: CheckResult) -> str:
    """The summary and every finding's message, one per line."""
    return "\n".join([result.summary, *(f.message for f in result.findings)])
