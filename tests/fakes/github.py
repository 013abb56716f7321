"""Stateful fake of GitHub's REST API (what the gates read), with Link pagination, rate limits and GHE paths.

Shaped after GitHub's REST reference (docs.github.com/en/rest, API version 2022-11-28):
- List pull requests associated with a commit, `GET /repos/{o}/{r}/commits/{sha}/pulls`; get a commit,
  `GET /repos/{o}/{r}/commits/{ref}` (unknown SHA: 422 "No commit found for SHA: ..."): /commits/commits
- List reviews for a pull request, `GET /repos/{o}/{r}/pulls/{n}/reviews` (chronological; state APPROVED,
  CHANGES_REQUESTED, COMMENTED, DISMISSED, PENDING): /pulls/reviews
- List check runs for a Git reference, `GET /repos/{o}/{r}/commits/{ref}/check-runs` (`check_name`, `status`,
  `filter` latest|all; answer `{total_count, check_runs}`; status queued|in_progress|completed, conclusion
  success|failure|neutral|cancelled|skipped|timed_out|action_required): /checks/runs
- List commit statuses for a reference, `GET /repos/{o}/{r}/commits/{ref}/statuses` (newest first; state
  error|failure|pending|success): /commits/statuses
- List Dependabot alerts for a repository, `GET /repos/{o}/{r}/dependabot/alerts` (`state`, `severity` comma
  lists; cursor pagination with `after`; 403 when Dependabot alerts are disabled): /dependabot/alerts
- Get a reference, `GET /repos/{o}/{r}/git/ref/{ref}` (exact match or 404); get a tag,
  `GET /repos/{o}/{r}/git/tags/{tag_sha}`: /git/refs, /git/tags
- Pagination: `per_page` (default 30, max 100), `page`, answer header `Link` with rel next/prev/first/last:
  /using-the-rest-api/using-pagination-in-the-rest-api
- Rate limits: every answer carries x-ratelimit-limit/-remaining/-used/-reset/-resource; an exhausted primary
  limit answers 403 (or 429) with x-ratelimit-remaining 0 until x-ratelimit-reset (UTC epoch seconds); a secondary
  limit answers 403 with retry-after: /using-the-rest-api/rate-limits-for-the-rest-api
- A refused token: 401 `{"message": "Bad credentials", "documentation_url": ...}`. GitHub Enterprise Server serves
  the same API under `https://HOST/api/v3` (`enterprise=True`).
"""

from __future__ import annotations

import base64
import math
import time
from typing import Any
from urllib.parse import urlencode

from tests.fakes.base import FakeServer, Handler, Request, Response
from tests.fakes.github_state import Repo

DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
_REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
SEVERITIES = ("low", "medium", "high", "critical")


class GitHubFake(FakeServer):
    """GitHub for the gates. Build state with `repo(...)` then the Repo builders; switch rate limits on at will."""

    def __init__(self, *, token: str | None = "ghp_fake_token_0123456789abcdef", enterprise: bool = False) -> None:
        self.prefix = "/api/v3" if enterprise else ""
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.limit = 5000
        self.used = 0
        self._limited = 0
        self._limited_until = 0.0
        self._limit_status = 403
        self._secondary: list[float] = []
        self.headers_seen: list[dict[str, str]] = []
        self.scopes: set[str] | None = None  # classic token scopes; None: not checked (fine-grained, all allowed)
        super().__init__()

    @property
    def api_url(self) -> str:
        """What a client is configured with (`https://api.github.com` or `https://HOST/api/v3` at GitHub)."""
        return self.url + self.prefix

    # -- state -------------------------------------------------------------------------------------------------
    def repo(self, full_name: str = "aevon/app") -> Repo:
        with self.lock:
            if full_name not in self.repos:
                self.repos[full_name] = Repo(full_name)
            return self.repos[full_name]

    def reset(self) -> None:
        """Forget every repository, limit and recorded request (one server shared by many tests)."""
        with self.lock:
            self.repos.clear()
            self._limited, self._limited_until, self._secondary = 0, 0.0, []
            self.requests.clear()
            self.headers_seen.clear()
            self._faults.clear()

    def rate_limit(self, count: int = 1, *, reset_in_s: float = 1.0, status: int = 403) -> None:
        """The next `count` requests, and every request before the reset, are refused as over the primary limit."""
        with self.lock:
            self._limited = count
            self._limited_until = time.time() + reset_in_s
            self._limit_status = status

    def secondary_limit(self, count: int = 1, retry_after_s: float = 1.0) -> None:
        """The next `count` requests hit a secondary rate limit (403 with retry-after)."""
        with self.lock:
            self._secondary.extend([retry_after_s] * count)

    # -- plumbing ----------------------------------------------------------------------------------------------
    def error_body(self, status: int, message: str) -> Any:
        return {"message": message, "documentation_url": DOCS, "status": str(status)}

    def _rate_headers(self, remaining: int, reset: float) -> dict[str, str]:
        return {"x-ratelimit-limit": str(self.limit), "x-ratelimit-remaining": str(remaining),
                "x-ratelimit-used": str(self.used), "x-ratelimit-reset": str(math.ceil(reset)),
                "x-ratelimit-resource": "core"}

    def authorize(self, req: Request) -> Response | None:
        with self.lock:
            self.headers_seen.append(dict(req.headers))
            if self.token is not None and req.headers.get("authorization") not in (
                    f"Bearer {self.token}", f"token {self.token}"):
                return Response(401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"})
            now = time.time()
            if self._secondary:
                wait = self._secondary.pop(0)
                return Response(403, {"message": "You have exceeded a secondary rate limit. Please wait a few "
                                      "minutes before you try again.", "documentation_url": RATE_DOCS},
                                headers={"retry-after": str(math.ceil(wait))})
            if self._limited > 0 or now < self._limited_until:
                self._limited = max(0, self._limited - 1)
                self.used = self.limit
                return Response(self._limit_status,
                                {"message": "API rate limit exceeded for user ID 1.", "documentation_url": RATE_DOCS},
                                headers=self._rate_headers(0, self._limited_until))
            self.used += 1
        return None

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        def with_headers(req: Request) -> Response:
            resp = handler(req)
            with self.lock:
                resp.headers = self._rate_headers(self.limit - self.used, time.time() + 3600) | resp.headers
            return resp

        super().route(method, self.prefix + _REPO + pattern, with_headers)

    def routes(self) -> None:
        self.route("GET", r"/commits/(?P<sha>[^/]+)/pulls", self._commit_pulls)
        self.route("GET", r"/commits/(?P<sha>[^/]+)/check-runs", self._check_runs)
        self.route("GET", r"/commits/(?P<sha>[^/]+)/statuses", self._statuses)
        self.route("GET", r"/commits/(?P<sha>[^/]+)", self._commit)
        self.route("GET", r"/pulls/(?P<number>\d+)/reviews", self._reviews)
        self.route("GET", r"/dependabot/alerts", self._alerts)
        self.route("GET", r"/git/ref/(?P<ref>.+)", self._ref)
        self.route("GET", r"/git/tags/(?P<sha>[0-9a-f]{40})", self._tag)
        from tests.fakes.github_deployments import register

        register(self)  # deployments, deployment statuses, commit statuses

    # -- helpers -----------------------------------------------------------------------------------------------
    def _repo_of(self, req: Request) -> Repo | None:
        return self.repos.get(f"{req.params['owner']}/{req.params['repo']}")

    def _not_found(self) -> Response:
        return Response(404, self.error_body(404, "Not Found"))

    def _link(self, req: Request, **query: str | int) -> str:
        q = {k: v[0] for k, v in req.query.items()} | {k: str(v) for k, v in query.items()}
        return f"<http://{req.headers.get('host', '127.0.0.1')}{req.path}?{urlencode(q)}>"

    def _page(self, req: Request, items: list[Any], wrap: str | None = None) -> Response:
        """One page of `items` by `per_page`/`page`, with GitHub's Link header."""
        per_page = max(1, min(100, int(req.q("per_page", "30") or 30)))
        page = max(1, int(req.q("page", "1") or 1))
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []
        if page < last:
            links += [f'{self._link(req, page=page + 1)}; rel="next"', f'{self._link(req, page=last)}; rel="last"']
        if page > 1:
            links += [f'{self._link(req, page=page - 1)}; rel="prev"', f'{self._link(req, page=1)}; rel="first"']
        body: Any = {"total_count": len(items), wrap: chunk} if wrap else chunk
        return Response(200, body, headers={"Link": ", ".join(links)} if links else {})

    def _commit_or_422(self, repo: Repo, sha: str) -> Response | None:
        if sha not in repo.commits:
            return Response(422, self.error_body(422, f"No commit found for SHA: {sha}"))
        return None

    # -- routes ------------------------------------------------------------------------------------------------
    def _commit(self, req: Request) -> Response:
        repo = self._repo_of(req)
        if repo is None:
            return self._not_found()
        sha = req.params["sha"]
        bad = self._commit_or_422(repo, sha)
        if bad:
            return bad
        author = repo.commits[sha]["author"]
        person = {"name": author, "email": f"{author}@example.com", "date": "2026-01-05T09:00:00Z"}
        return Response(200, {"sha": sha, "url": f"{repo.api}/commits/{sha}", "html_url": repo.html(f"/commit/{sha}"),
                              "commit": {"author": person, "committer": person, "message": "change"},
                              "author": {"login": author}, "committer": {"login": "web-flow"}, "parents": []})

    def _commit_pulls(self, req: Request) -> Response:
        repo = self._repo_of(req)
        if repo is None:
            return self._not_found()
        sha = req.params["sha"]
        bad = self._commit_or_422(repo, sha)
        if bad:
            return bad
        prs = [repo.pulls[n] for n, shas in sorted(repo.pull_commits.items()) if sha in shas]
        return self._page(req, prs)

    def _reviews(self, req: Request) -> Response:
        repo = self._repo_of(req)
        number = int(req.params["number"])
        if repo is None or number not in repo.pulls:
            return self._not_found()
        return self._page(req, repo.reviews[number])

    def _check_runs(self, req: Request) -> Response:
        repo = self._repo_of(req)
        if repo is None:
            return self._not_found()
        sha = req.params["sha"]
        bad = self._commit_or_422(repo, sha)
        if bad:
            return bad
        runs = [r for r in repo.check_runs if r["head_sha"] == sha]
        if req.q("check_name"):
            runs = [r for r in runs if r["name"] == req.q("check_name")]
        if req.q("status"):
            runs = [r for r in runs if r["status"] == req.q("status")]
        if req.q("filter", "latest") == "latest":
            latest: dict[str, dict[str, Any]] = {}
            for r in runs:
                latest[r["name"]] = r if r["name"] not in latest or r["id"] > latest[r["name"]]["id"] else latest[
                    r["name"]]
            runs = list(latest.values())
        return self._page(req, sorted(runs, key=lambda r: -int(r["id"])), wrap="check_runs")

    def _statuses(self, req: Request) -> Response:
        repo = self._repo_of(req)
        if repo is None:
            return self._not_found()
        sha = req.params["sha"]
        bad = self._commit_or_422(repo, sha)
        if bad:
            return bad
        return self._page(req, [s for s in reversed(repo.statuses) if s["sha"] == sha])

    def _alerts(self, req: Request) -> Response:
        """Cursor pagination (`after`, `per_page`) as GitHub does for this endpoint."""
        repo = self._repo_of(req)
        if repo is None:
            return self._not_found()
        if not repo.dependabot_enabled:
            return Response(403, self.error_body(403, "Dependabot alerts are disabled for this repository."))
        states = (req.q("state") or "").split(",") if req.q("state") else None
        sev = (req.q("severity") or "").split(",") if req.q("severity") else None
        if sev and any(s not in SEVERITIES for s in sev):
            return Response(422, self.error_body(422, "Validation Failed"))
        alerts = [a for a in repo.alerts if (states is None or a["state"] in states)
                  and (sev is None or a["security_vulnerability"]["severity"] in sev)]
        per_page = max(1, min(100, int(req.q("per_page", "30") or 30)))
        after = req.q("after")
        start = int(base64.urlsafe_b64decode(after.encode()).decode()) if after else 0
        chunk = alerts[start:start + per_page]
        headers = {}
        if start + per_page < len(alerts):
            cursor = base64.urlsafe_b64encode(str(start + per_page).encode()).decode()
            headers["Link"] = f'{self._link(req, after=cursor)}; rel="next"'
        return Response(200, chunk, headers=headers)

    def _ref(self, req: Request) -> Response:
        repo = self._repo_of(req)
        ref = req.params["ref"]
        if repo is None or ref not in repo.refs:
            return self._not_found()
        obj = repo.refs[ref]
        kind = "tags" if obj["type"] == "tag" else "commits"
        return Response(200, {"ref": f"refs/{ref}", "node_id": f"REF_{ref}", "url": f"{repo.api}/git/refs/{ref}",
                              "object": obj | {"url": f"{repo.api}/git/{kind}/{obj['sha']}"}})

    def _tag(self, req: Request) -> Response:
        repo = self._repo_of(req)
        if repo is None or req.params["sha"] not in repo.tag_objects:
            return self._not_found()
        return Response(200, repo.tag_objects[req.params["sha"]] | {"url": f"{repo.api}/git/tags/{req.params['sha']}"})
