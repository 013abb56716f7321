"""Release-tag gate (prod): the ref is a tag matching the release pattern and it points at the SHA deployed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from providers.checks.base import CheckContext, CheckInput
from providers.clients.github import GitHubClient, GitHubSettings, github_session
from providers.errors import ConfigError, PermanentError
from providers.gates.github import GitHubGate
from providers.models import CheckResult, Finding, Severity
from providers.source.git import GitSource
from providers.source.refs import looks_like_sha, validate_ref

DEFAULT_PATTERN = r"^v\d+\.\d+\.\d+$"
RefKind = Literal["tag", "branch", "sha", "unknown"]


class ReleaseTagSettings(GitHubSettings):
    """Settings of the `release_tag` gate."""

    pattern: str = Field(default=DEFAULT_PATTERN, description="regex a release tag must match")
    source: Literal["github", "git"] = Field(default="github", description="where tags are looked up")
    git_repo: str | None = Field(default=None, description="local repository for source git; default source.repo")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return v


class ReleaseTagGate(GitHubGate):
    """PASSED for a tag matching `pattern` that points at the release SHA; FAILED for a branch, a SHA, a bad tag."""

    kind = "release_tag"

    def __init__(self, ctx: CheckContext, settings: ReleaseTagSettings) -> None:
        super().__init__(ctx, settings, uses_github=settings.source == "github")
        self.settings = settings
        self.pattern = re.compile(settings.pattern)
        self.git = GitSource(settings.git_repo or ctx.env.source.repo, ctx.artifacts_dir / "release-tag-git")

    async def measure(self, inp: CheckInput) -> CheckResult:
        ref, sha = inp.release.ref, inp.release.sha
        name = ref.removeprefix("refs/tags/")
        if ref.startswith("refs/heads/"):
            return self._not_a_tag(ref, "branch")
        try:
            validate_ref(name)
        except ConfigError:
            return self.failed([self._finding(f"ref {ref!r} is not a valid git ref", ref)])
        if self.settings.source == "github":
            async with github_session(self.settings, repository=self.repository, token=self.token,
                                      http=self.http) as gh:
                target = await self._github_tag_target(gh, name)
                kind = "tag" if target is not None else await self._github_kind(gh, name)
        else:
            target = await self._git_tag_target(name)
            kind = "tag" if target is not None else await self._git_kind(name)
        if target is None:
            return self._not_a_tag(name, kind)
        if not self.pattern.match(name):
            return self.failed([self._finding(
                f"tag {name} does not match the release pattern {self.settings.pattern}; "
                "prod deploys only release tags", name)])
        if target != sha:
            return self.failed([self._finding(
                f"tag {name} points at {target[:12]}, not at the release SHA {sha[:12]}", name,
                detail={"tag_sha": target, "release_sha": sha})])
        return self.passed(f"tag {name} matches {self.settings.pattern} and points at {sha[:12]}",
                           metrics={"tag_matches": 1.0})

    def _finding(self, message: str, ref: str, detail: dict[str, Any] | None = None) -> Finding:
        return Finding(message=message, severity=Severity.HIGH, location=ref, detail=detail or {})

    def _not_a_tag(self, ref: str, kind: RefKind) -> CheckResult:
        what = {"branch": "a branch", "sha": "a commit SHA", "unknown": "not a tag of the repository"}.get(
            kind, "not a tag")
        return self.failed([self._finding(f"prod deploys only release tags: ref {ref!r} is {what}", ref,
                                          detail={"ref_kind": kind})])

    async def _github_tag_target(self, gh: GitHubClient, tag: str) -> str | None:
        """The commit SHA the tag names, annotated tags dereferenced; None when there is no such tag."""
        resource = f"{self.repository} tag {tag}"
        ref = await gh.get_optional(gh.repo_path(f"/git/ref/tags/{tag}"), resource=resource)
        if not isinstance(ref, dict):
            return None
        obj: dict[str, Any] = ref.get("object") or {}
        for _ in range(8):  # a tag of a tag of ... a commit
            if obj.get("type") != "tag":
                break
            tag_obj = await gh.get(gh.repo_path(f"/git/tags/{obj['sha']}"), resource=resource)
            obj = tag_obj.get("object") or {}
        if obj.get("type") != "commit":
            raise PermanentError(f"tag {tag} names a {obj.get('type')}, not a commit", provider="github",
                                 resource=resource)
        return str(obj["sha"])

    async def _github_kind(self, gh: GitHubClient, name: str) -> RefKind:
        if await gh.get_optional(gh.repo_path(f"/git/ref/heads/{name}"), resource=f"{self.repository} {name}"):
            return "branch"
        return "sha" if looks_like_sha(name) else "unknown"

    async def _git_tag_target(self, tag: str) -> str | None:
        if not await self.git.is_tag(tag):
            return None
        return await self.git.resolve(f"refs/tags/{tag}")

    async def _git_kind(self, name: str) -> RefKind:
        try:
            await self.git.resolve(f"refs/heads/{name}")
            return "branch"
        except ConfigError:
            return "sha" if looks_like_sha(name) else "unknown"


def make_check(ctx: CheckContext) -> ReleaseTagGate:
    """Factory registered as `release_tag`."""
    settings = ctx.settings(ReleaseTagSettings)
    if settings.source == "git" and not Path(settings.git_repo or ctx.env.source.repo).exists():
        raise ConfigError("source git needs a local repository (set git_repo)", ctx.location("settings", "git_repo"))
    return ReleaseTagGate(ctx, settings)
