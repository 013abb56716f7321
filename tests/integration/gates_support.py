"""Helpers for the gate tests: an environment spec, a CheckContext for one gate, a CheckInput for a release."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from deployments.spec import CheckSpec, EnvironmentSpec, ServiceSpec, SourceSpec
from providers.checks.base import GATES, Check, CheckContext, CheckInput
from providers.models import CheckResult, Release
from providers.registry import CHECKS, resolve
from tests.fakes.github import GitHubFake

TOKEN = "ghp_fake_token_0123456789abcdef"


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
        section=GATES,
        index=0,
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


async def run(gh: GitHubFake, kind: str, tmp: Path, sha: str, *, ref: str | None = None, token: str = TOKEN,
              checkout: Path | None = None, **settings: Any) -> CheckResult:
    gate = make_gate(kind, {"api_url": gh.api_url, "attempts": 2, **settings}, tmp, secrets={"token": token})
    result = await gate.run(release_input(sha, ref=ref, checkout=checkout))
    assert TOKEN not in text_of(result) and token not in text_of(result)
    return result


NPM_V2 = """{"auditReportVersion": 2, "vulnerabilities": {
 "minimist": {"name": "minimist", "severity": "critical", "isDirect": false, "via": [{"source": 1097677,
  "name": "minimist", "dependency": "minimist", "title": "Prototype Pollution in minimist",
  "url": "https://github.com/advisories/GHSA-xvch-5gv4-984h", "severity": "critical", "range": "<0.2.4"}],
  "effects": ["mkdirp"], "range": "<=0.2.3", "nodes": ["node_modules/minimist"], "fixAvailable": true},
 "mkdirp": {"name": "mkdirp", "severity": "critical", "isDirect": true, "via": ["minimist"], "effects": [],
  "range": "0.4.1 - 0.5.1", "nodes": ["node_modules/mkdirp"], "fixAvailable": true},
 "debug": {"name": "debug", "severity": "low", "isDirect": true, "via": [{"source": 1, "name": "debug",
  "title": "ReDoS in debug", "url": "https://github.com/advisories/GHSA-gxpj-cx7g-858c", "severity": "low"}],
  "effects": [], "range": "<2.6.9", "nodes": ["node_modules/debug"], "fixAvailable": true}},
 "metadata": {"vulnerabilities": {"info": 0, "low": 1, "moderate": 0, "high": 0, "critical": 2, "total": 3}}}"""
PNPM = """{"actions": [], "advisories": {"1097677": {"findings": [{"version": "0.0.8", "paths": [".>mkdirp>minimist"]}],
 "vulnerable_versions": "<0.2.4", "module_name": "minimist", "severity": "high",
 "github_advisory_id": "GHSA-xvch-5gv4-984h", "patched_versions": ">=0.2.4", "id": 1097677,
 "title": "Prototype Pollution in minimist", "url": "https://github.com/advisories/GHSA-xvch-5gv4-984h"}},
 "muted": [], "metadata": {"vulnerabilities": {"high": 1}}}"""


def audit_script(tmp: Path, report: str, exit_code: int = 1) -> list[str]:
    """An audit command printing `report` and exiting like npm does when it finds something."""
    (tmp / "report.json").write_text(report)
    script = tmp / "fake_audit.py"
    script.write_text(f"import sys, pathlib\nsys.stdout.write(pathlib.Path('report.json').read_text())\n"
                      f"sys.exit({exit_code})\n")
    return [sys.executable, str(script)]


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` (argument list) and return its stripped stdout."""
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()
