"""State of the GitHub fake: repositories with commits, pull requests, reviews, checks, alerts and refs."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_ids = itertools.count(1001)


def next_id() -> int:
    return next(_ids)


def stamp(n: int) -> str:
    """An ISO 8601 timestamp that grows with `n` (the fake's clock: ordering, not wall time)."""
    return (_EPOCH + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_sha() -> str:
    return secrets.token_hex(20)


def user(login: str) -> dict[str, Any]:
    """A simple-user object."""
    return {"login": login, "id": abs(hash(login)) % 10**8, "type": "User",
            "html_url": f"https://github.com/{login}"}


@dataclass
class Repo:
    """One repository as the fake keeps it; ids and timestamps come from one counter."""

    full_name: str
    base: str = "https://api.github.com"  # for `url` fields
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)  # sha -> {author}
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    pull_commits: dict[int, list[str]] = field(default_factory=dict)
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    check_runs: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    refs: dict[str, dict[str, Any]] = field(default_factory=dict)  # "tags/v1.0.0" -> {type, sha}
    tag_objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    dependabot_enabled: bool = True
    deployments: list[dict[str, Any]] = field(default_factory=list)
    deployment_statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # id -> oldest first

    @property
    def api(self) -> str:
        return f"{self.base}/repos/{self.full_name}"

    def html(self, suffix: str) -> str:
        return f"https://github.com/{self.full_name}{suffix}"

    # -- builders ----------------------------------------------------------------------------------------------
    def commit(self, sha: str | None = None, author: str = "alice") -> str:
        sha = sha or new_sha()
        self.commits[sha] = {"author": author}
        return sha

    def pull(self, shas: list[str], *, author: str = "alice", merged: bool = True, state: str | None = None) -> int:
        number = len(self.pulls) + 1
        head = shas[-1]
        n = next_id()
        self.pulls[number] = {
            "url": f"{self.api}/pulls/{number}", "id": n, "number": number,
            "state": state or ("closed" if merged else "open"), "title": f"Change {number}", "user": user(author),
            "html_url": self.html(f"/pull/{number}"), "created_at": stamp(n), "updated_at": stamp(n),
            "merged_at": stamp(n + 1) if merged else None, "draft": False,
            "head": {"ref": f"feature-{number}", "sha": head}, "base": {"ref": "main", "sha": head},
        }
        self.pull_commits[number] = list(shas)
        self.reviews[number] = []
        return number

    def review(self, number: int, reviewer: str, state: str, commit_id: str | None = None) -> int:
        n = next_id()
        self.reviews[number].append({
            "id": n, "node_id": f"PRR_{n}", "user": user(reviewer), "body": "", "state": state,
            "html_url": self.html(f"/pull/{number}#pullrequestreview-{n}"),
            "pull_request_url": f"{self.api}/pulls/{number}", "author_association": "MEMBER",
            "submitted_at": stamp(n), "commit_id": commit_id or self.pull_commits[number][-1],
        })
        return n

    def check_run(self, sha: str, name: str, status: str = "completed", conclusion: str | None = "success") -> int:
        n = next_id()
        self.check_runs.append({
            "id": n, "head_sha": sha, "node_id": f"CR_{n}", "external_id": "", "name": name,
            "url": f"{self.api}/check-runs/{n}", "html_url": self.html(f"/runs/{n}"),
            "details_url": self.html(f"/actions/runs/{n}"), "status": status,
            "conclusion": conclusion if status == "completed" else None, "started_at": stamp(n),
            "completed_at": stamp(n) if status == "completed" else None,
            "output": {"title": name, "summary": "", "annotations_count": 0},
            "check_suite": {"id": n}, "app": {"slug": "github-actions", "name": "GitHub Actions"},
            "pull_requests": [],
        })
        return n

    def update_check_run(self, run_id: int, status: str, conclusion: str | None = None) -> None:
        for run in self.check_runs:
            if run["id"] == run_id:
                run["status"] = status
                run["conclusion"] = conclusion if status == "completed" else None
                run["completed_at"] = stamp(next_id()) if status == "completed" else None

    def status(self, sha: str, context: str, state: str, target_url: str | None = None) -> int:
        n = next_id()
        self.statuses.append({
            "url": f"{self.api}/statuses/{sha}", "id": n, "node_id": f"SC_{n}", "state": state,
            "description": f"{context} {state}", "target_url": target_url or f"https://ci.example.com/{n}",
            "context": context, "created_at": stamp(n), "updated_at": stamp(n), "creator": user("ci-bot"),
            "sha": sha,
        })
        return n

    def alert(self, package: str, severity: str, ghsa_id: str, *, ecosystem: str = "npm", state: str = "open",
              summary: str = "", manifest: str = "package-lock.json", patched: str | None = None) -> int:
        number = len(self.alerts) + 1
        n = next_id()
        pkg = {"ecosystem": ecosystem, "name": package}
        self.alerts.append({
            "number": number, "state": state,
            "dependency": {"package": pkg, "manifest_path": manifest, "scope": "runtime"},
            "security_advisory": {"ghsa_id": ghsa_id, "cve_id": None, "summary": summary or f"{package} issue",
                                  "description": "", "severity": severity, "identifiers": [
                                      {"type": "GHSA", "value": ghsa_id}], "references": [],
                                  "published_at": stamp(n), "updated_at": stamp(n), "withdrawn_at": None},
            "security_vulnerability": {"package": pkg, "severity": severity, "vulnerable_version_range": "< 9.9.9",
                                       "first_patched_version": {"identifier": patched} if patched else None},
            "url": f"{self.api}/dependabot/alerts/{number}", "html_url": self.html(f"/security/dependabot/{number}"),
            "created_at": stamp(n), "updated_at": stamp(n), "dismissed_at": None, "dismissed_by": None,
            "dismissed_reason": None, "dismissed_comment": None, "fixed_at": None, "auto_dismissed_at": None,
        })
        return number

    def branch(self, name: str, sha: str) -> None:
        self.refs[f"heads/{name}"] = {"type": "commit", "sha": sha}

    def tag(self, name: str, sha: str, *, annotated: bool = False) -> None:
        if not annotated:
            self.refs[f"tags/{name}"] = {"type": "commit", "sha": sha}
            return
        tag_sha = new_sha()
        self.tag_objects[tag_sha] = {"tag": name, "sha": tag_sha, "message": f"release {name}",
                                     "tagger": {"name": "Release Bot", "email": "bot@example.com",
                                                "date": stamp(next_id())},
                                     "object": {"type": "commit", "sha": sha, "url": f"{self.api}/git/commits/{sha}"},
                                     "verification": {"verified": False, "reason": "unsigned"}}
        self.refs[f"tags/{name}"] = {"type": "tag", "sha": tag_sha}


DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
COMMIT_STATES = ("error", "failure", "pending", "success")


def latest_state(repo: Repo, deployment_id: int) -> str | None:
    """The state of a deployment's newest status (None: no status yet)."""
    statuses = repo.deployment_statuses.get(deployment_id) or []
    return statuses[-1]["state"] if statuses else None
