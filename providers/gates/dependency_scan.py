"""Dependency-scan gate: open Dependabot alerts at or above a severity, or the app's own audit command."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from providers.checks.base import CheckContext, CheckInput
from providers.clients.github import GitHubSettings, github_session
from providers.gates.audit_report import SEVERITY_OF, Advisory, run_audit
from providers.gates.github import GitHubGate
from providers.models import CheckResult, Finding, Severity

Level = Literal["low", "medium", "high", "critical"]
LEVELS: tuple[Level, ...] = ("low", "medium", "high", "critical")


class DependencyScanSettings(GitHubSettings):
    """Settings of the `dependency_scan` gate."""

    source: Literal["dependabot", "audit", "both"] | None = Field(
        default=None, description="default: audit when audit_command is set, else dependabot"
    )
    min_severity: Level = "high"
    audit_command: list[str] | None = Field(default=None, min_length=1,
                                            description='argv, e.g. ["npm", "audit", "--json"]')
    audit_timeout_s: float = Field(default=300.0, gt=0)
    ignore: list[str] = Field(default_factory=list, description="advisory ids (GHSA-...) whose risk is accepted")

    @model_validator(mode="after")
    def _source(self) -> DependencyScanSettings:
        if self.source is None:
            self.source = "audit" if self.audit_command else "dependabot"
        if self.source in ("audit", "both") and not self.audit_command:
            self.audit_command = ["npm", "audit", "--json"]
        return self


def advisory_of_alert(alert: dict[str, Any]) -> Advisory:
    """A Dependabot alert (REST "List Dependabot alerts for a repository") as an Advisory."""
    adv = alert.get("security_advisory") or {}
    vuln = alert.get("security_vulnerability") or {}
    dep = alert.get("dependency") or {}
    pkg = dep.get("package") or vuln.get("package") or {}
    name = str(pkg.get("name") or "?")
    ecosystem = pkg.get("ecosystem")
    patched = (vuln.get("first_patched_version") or {}).get("identifier")
    return Advisory(
        package=f"{name} ({ecosystem})" if ecosystem else name,
        advisory_id=str(adv.get("ghsa_id") or adv.get("cve_id") or f"alert #{alert.get('number')}"),
        severity=SEVERITY_OF.get(str(vuln.get("severity") or adv.get("severity")), Severity.HIGH),
        title=str(adv.get("summary") or ""), url=alert.get("html_url"),
        vulnerable=vuln.get("vulnerable_version_range"), fixed_in=patched, where=dep.get("manifest_path"),
    )


def finding_of(a: Advisory, source: str) -> Finding:
    """One advisory as a finding naming package, advisory id and severity."""
    fix = f"; fixed in {a.fixed_in}" if a.fixed_in else ""
    title = f": {a.title}" if a.title else ""
    return Finding(
        message=f"{a.package} {a.advisory_id} {a.severity.value.lower()}{title}{fix}",
        severity=a.severity, location=a.where or a.url,
        detail={"package": a.package, "advisory": a.advisory_id, "severity": a.severity.value, "url": a.url,
                "vulnerable": a.vulnerable, "fixed_in": a.fixed_in, "source": source},
    )


class DependencyScanGate(GitHubGate):
    """FAILED when an open advisory at or above `min_severity` affects the release's dependencies."""

    kind = "dependency_scan"

    def __init__(self, ctx: CheckContext, settings: DependencyScanSettings) -> None:
        super().__init__(ctx, settings, uses_github=settings.source != "audit")
        self.settings = settings
        self.threshold = SEVERITY_OF[settings.min_severity]

    async def measure(self, inp: CheckInput) -> CheckResult:
        found: list[Finding] = []
        metrics: dict[str, float] = {}
        if self.settings.source in ("dependabot", "both"):
            alerts = await self._dependabot()
            metrics["dependabot_alerts"] = float(len(alerts))
            found += [finding_of(a, "dependabot") for a in alerts]
        if self.settings.source in ("audit", "both"):
            cwd = inp.checkout_dir or (Path(inp.release.checkout_dir) if inp.release.checkout_dir else None)
            if cwd is None:
                return self.error("no checkout of the release to run the audit command in")
            assert self.settings.audit_command is not None
            advisories = await run_audit(self.settings.audit_command, cwd, self.settings.audit_timeout_s)
            metrics["audit_advisories"] = float(len(advisories))
            found += [finding_of(a, "audit") for a in advisories]
        ignored = set(self.settings.ignore)
        blocking = [f for f in found if f.severity.rank >= self.threshold.rank
                    and f.detail.get("advisory") not in ignored]
        blocking.sort(key=lambda f: (-f.severity.rank, f.message))
        metrics["blocking"] = float(len(blocking))
        if blocking:
            return self.failed(blocking, metrics,
                               prefix=f"{len(blocking)} open advisory(ies) at or above {self.settings.min_severity}: ")
        return self.passed(f"no open advisory at or above {self.settings.min_severity} "
                           f"({len(found)} below it or accepted)", metrics=metrics)

    async def _dependabot(self) -> list[Advisory]:
        levels = LEVELS[LEVELS.index(self.settings.min_severity):]
        async with github_session(self.settings, repository=self.repository, token=self.token,
                                  http=self.http) as gh:
            alerts = await gh.paginate(gh.repo_path("/dependabot/alerts"), resource=f"{self.repository} alerts",
                                       params={"state": "open", "severity": ",".join(levels)})
        return [advisory_of_alert(a) for a in alerts if a.get("state", "open") == "open"]


def make_check(ctx: CheckContext) -> DependencyScanGate:
    """Factory registered as `dependency_scan`."""
    return DependencyScanGate(ctx, ctx.settings(DependencyScanSettings))
