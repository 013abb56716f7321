"""CI gate: check runs and commit statuses of the SHA; required checks must succeed; waits with backoff."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from providers.checks.base import CheckContext, CheckInput
from providers.clients.github import GitHubClient, GitHubSettings, github_session
from providers.gates.github import GitHubGate
from providers.models import CheckResult, Finding, Severity

State = Literal["success", "pending", "failure"]
_RANK: dict[State, int] = {"success": 0, "pending": 1, "failure": 2}
ANY_CHECK = "*"  # no required names and nothing reported yet


class CiSettings(GitHubSettings):
    """Settings of the `ci_status` gate."""

    required_checks: list[str] = Field(
        default_factory=list, description="check-run names or status contexts; empty: every reported check"
    )
    timeout_s: float | None = Field(default=None, gt=0, description="wait for pending checks; default 90% of "
                                                                    "the gate's timeout_s")
    poll_initial_s: float = Field(default=5.0, gt=0)
    poll_max_s: float = Field(default=60.0, gt=0)
    poll_factor: float = Field(default=2.0, ge=1.0)
    allow_neutral: bool = Field(default=False, description="a check concluded `neutral` counts as passed")
    allow_skipped: bool = Field(default=False, description="a check concluded `skipped` counts as passed")


@dataclass
class Seen:
    """One check as observed: a check run (by name) or a commit status (by context)."""

    name: str
    state: State
    detail: str  # the conclusion, the status or the status state
    url: str | None
    source: str  # "check run" | "status"


def merge(a: Seen | None, b: Seen) -> Seen:
    """A name reported both as check run and status: the worse of the two counts."""
    return b if a is None or _RANK[b.state] > _RANK[a.state] else a


class CiGate(GitHubGate):
    """PASSED when every required check concluded successfully; FAILED on a failure, a missing or a late check."""

    kind = "ci_status"

    def __init__(self, ctx: CheckContext, settings: CiSettings) -> None:
        super().__init__(ctx, settings)
        self.settings = settings
        self.timeout_s = settings.timeout_s if settings.timeout_s is not None else 0.9 * ctx.spec.timeout_s
        ok = {"success"} | ({"neutral"} if settings.allow_neutral else set()) | (
            {"skipped"} if settings.allow_skipped else set())
        self.ok_conclusions = frozenset(ok)

    def _run_state(self, run: dict[str, Any]) -> Seen:
        status, conclusion = run.get("status"), run.get("conclusion")
        url = run.get("html_url") or run.get("details_url")
        if status != "completed":
            return Seen(run["name"], "pending", str(status), url, "check run")
        state: State = "success" if conclusion in self.ok_conclusions else "failure"
        return Seen(run["name"], state, str(conclusion), url, "check run")

    async def observe(self, gh: GitHubClient, sha: str) -> dict[str, Seen]:
        """Name -> the latest check run or status of that name for `sha`."""
        resource = f"{self.repository}@{sha[:12]}"
        runs = await gh.paginate(gh.repo_path(f"/commits/{sha}/check-runs"), resource=resource,
                                 params={"filter": "latest"}, items_key="check_runs")
        statuses = await gh.paginate(gh.repo_path(f"/commits/{sha}/statuses"), resource=resource)
        latest_run: dict[str, dict[str, Any]] = {}
        for run in runs:
            name = run.get("name")
            if name and (name not in latest_run or int(run.get("id", 0)) > int(latest_run[name].get("id", 0))):
                latest_run[name] = run
        seen: dict[str, Seen] = {n: self._run_state(r) for n, r in latest_run.items()}
        latest_status: dict[str, dict[str, Any]] = {}
        for st in sorted(statuses, key=lambda s: (s.get("updated_at") or s.get("created_at") or "", s.get("id", 0)),
                         reverse=True):
            latest_status.setdefault(str(st.get("context")), st)
        for ctx_name, st in latest_status.items():
            raw = str(st.get("state"))
            state: State = "success" if raw == "success" else "pending" if raw == "pending" else "failure"
            seen[ctx_name] = merge(seen.get(ctx_name), Seen(ctx_name, state, raw, st.get("target_url"), "status"))
        return seen

    async def measure(self, inp: CheckInput) -> CheckResult:
        sha = inp.release.sha
        required = self.settings.required_checks
        deadline = time.monotonic() + self.timeout_s
        delay = self.settings.poll_initial_s
        polls = 0
        async with github_session(self.settings, repository=self.repository, token=self.token,
                                  http=self.http) as gh:
            while True:
                seen = await self.observe(gh, sha)
                polls += 1
                names = required or sorted(seen)
                failed = [seen[n] for n in names if n in seen and seen[n].state == "failure"]
                pending = [seen[n] for n in names if n in seen and seen[n].state == "pending"]
                missing = [n for n in names if n not in seen] if required else ([] if seen else [ANY_CHECK])
                metrics = {"checks_seen": float(len(seen)), "failed": float(len(failed)),
                           "pending": float(len(pending)), "missing": float(len(missing)), "polls": float(polls)}
                if failed:
                    return self.failed([self._failure(s) for s in failed], metrics,
                                       prefix=f"CI failed for {sha[:12]}: ")
                if not pending and not missing:
                    return self.passed(f"{len(names)} check(s) succeeded for {sha[:12]}: {', '.join(names)}",
                                       metrics=metrics)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self.failed(self._late(pending, missing, sha), metrics,
                                       prefix=f"CI not finished for {sha[:12]} after {self.timeout_s:.0f} s: ")
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * self.settings.poll_factor, self.settings.poll_max_s)

    @staticmethod
    def _failure(s: Seen) -> Finding:
        link = f" ({s.url})" if s.url else ""
        return Finding(message=f"check {s.name} concluded {s.detail}{link}", severity=Severity.HIGH,
                       location=s.url, detail={"check": s.name, "conclusion": s.detail, "source": s.source})

    def _late(self, pending: list[Seen], missing: list[str], sha: str) -> list[Finding]:
        out = [Finding(message=f"check {s.name} still {s.detail} after {self.timeout_s:.0f} s"
                               + (f" ({s.url})" if s.url else ""),
                       severity=Severity.HIGH, location=s.url, detail={"check": s.name, "status": s.detail})
               for s in pending]
        out += [Finding(message=f"no check run or status was reported for {sha[:12]}" if n == ANY_CHECK
                        else f"required check {n} was never reported for {sha[:12]}",
                        severity=Severity.HIGH, location=f"{self.repository}@{sha[:12]}", detail={"check": n})
                for n in missing]
        return out


def make_check(ctx: CheckContext) -> CiGate:
    """Factory registered as `ci_status`."""
    return CiGate(ctx, ctx.settings(CiSettings))
