"""Code-review gate: the pull requests containing the SHA, each reviewer's latest review, required approvals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from providers.checks.base import CheckContext, CheckInput
from providers.clients.github import GitHubClient, GitHubSettings, github_session
from providers.gates.github import GitHubGate
from providers.models import CheckResult, Finding, Severity

# GitHub review states (REST "List reviews for a pull request"); PENDING is a draft nobody else sees.
COUNTED_STATES = frozenset({"APPROVED", "CHANGES_REQUESTED", "DISMISSED"})


class ReviewSettings(GitHubSettings):
    """Settings of the `review` gate."""

    required_approvals: int = Field(default=1, ge=0, le=20)
    forbid_self_approval: bool = Field(
        default=True, description="an approval by the PR's or the commit's author does not count"
    )
    allow_direct_push: bool = Field(default=False, description="a commit in no pull request passes (dev)")


@dataclass
class PullVerdict:
    """How one pull request stands: who approved, who blocks, what is missing."""

    number: int
    url: str
    approvers: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def latest_reviews(reviews: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Reviewer login -> that reviewer's latest review that counts (COMMENTED and PENDING never replace one)."""
    ordered = sorted(reviews, key=lambda r: (r.get("submitted_at") or "", r.get("id") or 0))
    latest: dict[str, dict[str, Any]] = {}
    for review in ordered:
        login = (review.get("user") or {}).get("login")
        if login and review.get("state") in COUNTED_STATES:
            latest[login] = review
    return latest


def judge_pull(
    pr: dict[str, Any], reviews: list[dict[str, Any]], *, required: int, self_logins: set[str]
) -> PullVerdict:
    """The verdict on one PR: approvals counted (self-approvals excluded when asked), changes requested block."""
    number = int(pr["number"])
    verdict = PullVerdict(number=number, url=str(pr.get("html_url") or ""))
    latest = latest_reviews(reviews)
    self_approved: list[str] = []
    for login, review in sorted(latest.items()):
        state = review["state"]
        if state == "CHANGES_REQUESTED":
            verdict.findings.append(Finding(
                message=f"PR #{number}: changes requested by {login} and not since approved or dismissed",
                severity=Severity.HIGH, location=review.get("html_url") or verdict.url,
                detail={"pull": number, "reviewer": login, "state": state},
            ))
        elif state == "APPROVED":
            if login in self_logins:
                self_approved.append(login)
            else:
                verdict.approvers.append(login)
    if len(verdict.approvers) < required:
        note = f" (self-approval by {', '.join(self_approved)} does not count)" if self_approved else ""
        verdict.findings.append(Finding(
            message=f"PR #{number} has {len(verdict.approvers)} of {required} required approval(s){note}",
            severity=Severity.HIGH, location=verdict.url,
            detail={"pull": number, "approvers": verdict.approvers, "required": required},
        ))
    return verdict


class ReviewGate(GitHubGate):
    """PASSED when a pull request containing the SHA has the approvals and no outstanding changes requested."""

    kind = "review"

    def __init__(self, ctx: CheckContext, settings: ReviewSettings) -> None:
        super().__init__(ctx, settings)
        self.settings = settings

    async def measure(self, inp: CheckInput) -> CheckResult:
        sha = inp.release.sha
        async with github_session(self.settings, repository=self.repository, token=self.token,
                                  http=self.http) as gh:
            prs = await gh.paginate(gh.repo_path(f"/commits/{sha}/pulls"), resource=f"{self.repository}@{sha[:12]}")
            if not prs:
                return self._no_pull(sha)
            merged = [p for p in prs if p.get("merged_at")]
            open_ = [p for p in prs if p.get("state") == "open"]
            candidates = merged or open_ or prs
            self_logins = await self._self_logins(gh, sha, candidates)
            verdicts = []
            for pr in candidates:
                reviews = await gh.paginate(gh.repo_path(f"/pulls/{pr['number']}/reviews"),
                                            resource=f"{self.repository}#{pr['number']}")
                verdicts.append(judge_pull(pr, reviews, required=self.settings.required_approvals,
                                           self_logins=self_logins.get(int(pr["number"]), set())))
        metrics = {"pull_requests": float(len(prs))}
        for v in verdicts:
            if v.ok:
                who = ", ".join(v.approvers) or "nobody (none required)"
                return self.passed(f"PR #{v.number} containing {sha[:12]} is approved by {who}",
                                   metrics=metrics | {"approvals": float(len(v.approvers))})
        findings = [f for v in verdicts for f in v.findings]
        return self.failed(findings, metrics, prefix=f"commit {sha[:12]} is not approved: ")

    def _no_pull(self, sha: str) -> CheckResult:
        if self.settings.allow_direct_push:
            note = Finding(message=f"commit {sha[:12]} is in no pull request; direct pushes are allowed here",
                           severity=Severity.INFO, location=f"{self.repository}@{sha[:12]}")
            return self.passed(note.message, [note], {"pull_requests": 0.0})
        finding = Finding(
            message=f"commit {sha[:12]} was pushed without a pull request (no PR contains it); "
                    "this environment requires a reviewed pull request",
            severity=Severity.HIGH, location=f"{self.repository}@{sha[:12]}",
        )
        return self.failed([finding], {"pull_requests": 0.0})

    async def _self_logins(self, gh: GitHubClient, sha: str, prs: list[dict[str, Any]]) -> dict[int, set[str]]:
        """PR number -> logins whose approval is a self-approval: the PR's author and the commit's author."""
        if not self.settings.forbid_self_approval:
            return {}
        commit = await gh.get(gh.repo_path(f"/commits/{sha}"), resource=f"{self.repository}@{sha[:12]}")
        # the author only: a rebase merge makes the merging reviewer the committer, and that is no self-approval
        author = (commit or {}).get("author") or {}
        authors = {str(author["login"])} if author.get("login") else set()
        return {int(p["number"]): authors | {str((p.get("user") or {}).get("login"))} for p in prs}


def make_check(ctx: CheckContext) -> ReviewGate:
    """Factory registered as `review`."""
    return ReviewGate(ctx, ctx.settings(ReviewSettings))
