"""Stateful fake of Sentry: releases, deploys, the events-stats time series and the SDKs' envelope endpoint.

Shaped like the documented API (paths, fields, status codes, `{"detail": ...}` error bodies):

- Create a New Release for an Organization, ``POST /api/0/organizations/{org}/releases/`` (version and project
  slugs required; 201, or 208 with the existing release):
  https://docs.sentry.io/api/releases/create-a-new-release-for-an-organization/
- Create a New Deploy for an Organization, ``POST /api/0/organizations/{org}/releases/{version}/deploys/``
  (environment required; dateStarted, dateFinished, name, url, projects optional) and List a Release's Deploys
  (``GET`` on the same path): https://docs.sentry.io/api/releases/create-a-new-deploy-for-an-organization/ and
  https://docs.sentry.io/api/releases/list-a-releases-deploys/
- Query Discover Events in Table Format, ``GET /api/0/organizations/{org}/events/`` with ``field=count()``,
  ``query``, ``project`` (ids), ``environment``, ``start``/``end`` (or ``statsPeriod``); the answer is
  ``{"data": [{"count()": n}], "meta": {"fields": {"count()": "integer"}}}``:
  https://docs.sentry.io/api/discover/query-discover-events-in-table-format/ (what the check uses).
- Event counts as a time series, ``GET /api/0/organizations/{org}/events-stats/`` with ``yAxis=count()``,
  ``query``, ``project`` (ids), ``environment``, ``start``/``end`` (or ``statsPeriod``) and ``interval``; the answer
  is ``{"data": [[bucket_epoch_s, [{"count": n}]], ...], "start", "end", "meta"}``: the endpoint the Sentry UI's
  charts use (getsentry/sentry ``OrganizationEventsStatsEndpoint``; the documented sibling is "Retrieve Event Counts
  for an Organization (v2)", https://docs.sentry.io/api/organizations/retrieve-event-counts-for-an-organization-v2/).
- Envelopes, ``POST /api/{project_id}/envelope/``, authenticated by ``X-Sentry-Auth: Sentry sentry_key=<public key>``
  (or ``?sentry_key=``), bodies gzip- or brotli-encoded: https://develop.sentry.dev/sdk/data-model/envelopes/ . Each
  ``event`` item is stored (its ``timestamp``, ``release``, ``environment``, ``level``; ``event.type`` is ``error``
  when it carries an exception, else ``default``), so events sent by sentry-sdk are counted by events-stats.

Auth: web API calls need ``Authorization: Bearer <token>`` (401 ``{"detail": "Invalid token"}`` otherwise), and
the token needs a scope of the endpoint's permission class (getsentry/sentry src/sentry/api/bases/organization.py):
releases and deploys (OrganizationReleasePermission) POST project:write | project:admin | project:releases |
org:ci, GET also project:read; events and events-stats (OrganizationEventPermission) GET event:read | event:write |
event:admin. Otherwise 403 ``{"detail": "You do not have permission to perform this action."}``: an organization
token (org:ci) can make releases but not read events. `add_token(token, scopes, member_of)` makes such tokens
(the ones given as `tokens` have every scope). Without a ``project`` parameter the event endpoints count only the
projects the token's user is a member of (`member_of`; none for an organization token), so a query that names
no project can silently count zero.

Rate limits (https://docs.sentry.io/api/ratelimits/): every API answer carries ``X-Sentry-Rate-Limit-Limit``,
``-Remaining``, ``-Reset`` (UTC epoch seconds), ``-ConcurrentLimit`` and ``-ConcurrentRemaining``;
`rate_limit(count, reset_in_s)` answers the next `count` API calls 429 with Remaining 0 and that Reset, and no
Retry-After.

As a process (the local Sentry of ``make demo``): ``python -m tests.fakes.sentry --port N``, the API token from
``$SENTRY_AUTH_TOKEN``; state in memory, gone when it stops.

Layout: this module holds the organization, tokens, scopes and rate limits; the routes' handlers live in
sentry_releases.py (releases, deploys), sentry_events.py (events, events-stats) and sentry_envelope.py (ingest).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from datetime import UTC, datetime
from functools import partial
from typing import Any

from tests.fakes.base import FakeServer, Request, Response
from tests.fakes.sentry_envelope import StoredEvent, ingest_envelope
from tests.fakes.sentry_events import discover_events, events_stats
from tests.fakes.sentry_releases import create_deploy, create_release, list_deploys

ALL_SCOPES = frozenset({"project:read", "project:write", "project:admin", "project:releases", "org:ci",
                        "event:read", "event:write", "event:admin"})
RELEASE_WRITE = frozenset({"project:write", "project:admin", "project:releases", "org:ci"})
EVENT_READ = frozenset({"event:read", "event:write", "event:admin"})
DENIED = {"detail": "You do not have permission to perform this action."}


class FakeSentry(FakeServer):
    """One organization with projects, API tokens and DSN keys; see the module docstring for the routes."""

    def __init__(self, org: str = "aevon", projects: dict[int, str] | None = None, tokens: list[str] | None = None,
                 public_key: str = "fakepublickey0000000000000000000") -> None:
        super().__init__()
        self.org = org
        self.projects = projects or {1: "aevon-api", 2: "aevon-deploy"}
        self.tokens = set(tokens or ["sntrys_fake_token"])
        self.scopes: dict[str, frozenset[str]] = {t: ALL_SCOPES for t in self.tokens}
        self.members: dict[str, set[int] | None] = {t: None for t in self.tokens}  # None: every project
        self.public_key = public_key
        self._limited = 0
        self._reset_in_s = 1.0
        self.releases: dict[str, dict[str, Any]] = {}
        self.deploys: dict[str, list[dict[str, Any]]] = {}
        self.events: list[StoredEvent] = []
        self.envelopes: list[bytes] = []  # decompressed bodies, for tests that look for leaked secrets
        self.received = threading.Condition(self.lock)  # notified on every stored event

    def dsn(self, project_id: int) -> str:
        """The DSN an SDK uses to send `project_id`'s events here."""
        host = self.url.removeprefix("http://")
        return f"http://{self.public_key}@{host}/{project_id}"

    def error_body(self, status: int, message: str) -> Any:
        return {"detail": message}

    def add_token(self, token: str, scopes: set[str], member_of: set[int] | None = None) -> None:
        """An API token with these scopes, whose user is a member of `member_of` (empty: an org token)."""
        with self.lock:
            self.tokens.add(token)
            self.scopes[token] = frozenset(scopes)
            self.members[token] = set(member_of or ())

    def rate_limit(self, count: int, reset_in_s: float = 1.0) -> None:
        """The next `count` API calls are refused with 429, the window resetting `reset_in_s` after each."""
        with self.lock:
            self._limited, self._reset_in_s = count, reset_in_s

    def _limit_headers(self, remaining: int, reset_in_s: float = 1.0) -> dict[str, str]:
        return {"X-Sentry-Rate-Limit-Limit": "40", "X-Sentry-Rate-Limit-Remaining": str(remaining),
                "X-Sentry-Rate-Limit-Reset": str(int(datetime.now(UTC).timestamp() + reset_in_s)),
                "X-Sentry-Rate-Limit-ConcurrentLimit": "25", "X-Sentry-Rate-Limit-ConcurrentRemaining": "24"}

    @staticmethod
    def _needs(req: Request) -> frozenset[str]:
        if "/events" in req.path:
            return EVENT_READ
        return RELEASE_WRITE | {"project:read"} if req.method == "GET" else RELEASE_WRITE

    def authorize(self, req: Request) -> Response | None:
        if not req.path.startswith("/api/0/"):
            return None
        token = req.headers.get("authorization", "").removeprefix("Bearer ")
        if not req.headers.get("authorization", "").startswith("Bearer ") or token not in self.tokens:
            return Response(401, {"detail": "Invalid token"}, headers=self._limit_headers(39))
        if not self.scopes[token] & self._needs(req):
            return Response(403, DENIED, headers=self._limit_headers(39))
        with self.lock:
            if self._limited:
                self._limited -= 1
                detail = "You are attempting to use this endpoint too frequently. Limit is 40 requests in 1 seconds"
                return Response(429, {"detail": detail}, headers=self._limit_headers(0, self._reset_in_s))
        req.headers["x-fake-member-of"] = ",".join(str(p) for p in sorted(self._member_projects(token)))
        return None

    def _member_projects(self, token: str) -> set[int]:
        member_of = self.members.get(token)
        return set(self.projects) if member_of is None else member_of

    def route(self, method: str, pattern: str, handler: Any) -> None:
        def with_headers(req: Request) -> Response:
            resp: Response = handler(req)
            if req.path.startswith("/api/0/"):
                resp.headers.update(self._limit_headers(39))
            return resp

        super().route(method, pattern, with_headers)

    def routes(self) -> None:
        org = r"/api/0/organizations/(?P<org>[^/]+)"
        self.route("POST", org + r"/releases/", partial(create_release, self))
        self.route("POST", org + r"/releases/(?P<version>[^/]+)/deploys/", partial(create_deploy, self))
        self.route("GET", org + r"/releases/(?P<version>[^/]+)/deploys/", partial(list_deploys, self))
        self.route("GET", org + r"/events-stats/", partial(events_stats, self))
        self.route("GET", org + r"/events/", partial(discover_events, self))
        self.route("POST", r"/api/(?P<project>\d+)/envelope/", partial(ingest_envelope, self))

    def _org(self, req: Request) -> Response | None:
        """404 for an organization other than this one (sentry_releases.py, sentry_events.py)."""
        if req.params["org"] != self.org:
            return Response(404, {"detail": "The requested resource does not exist"})
        return None

    # -- test helpers ------------------------------------------------------------------------------------------
    def add_event(self, project_id: int, timestamp: float, *, release: str | None = None,
                  environment: str | None = None, level: str = "error", type: str = "error") -> None:
        """Seed an event, as if an SDK had sent it (errors of an older release, say)."""
        with self.received:
            self.events.append(StoredEvent(project_id, timestamp, type, level, release, environment))
            self.received.notify_all()

    def wait_for_events(self, count: int, timeout_s: float = 10.0, project_id: int | None = None) -> list[StoredEvent]:
        """Block until at least `count` events (of `project_id`) arrived; return them (fewer on timeout)."""
        def mine() -> list[StoredEvent]:
            return [e for e in self.events if project_id is None or e.project_id == project_id]

        with self.received:
            self.received.wait_for(lambda: len(mine()) >= count, timeout=timeout_s)
            return mine()


def main(argv: list[str] | None = None) -> int:
    """Serve the fake on 127.0.0.1 until stopped; the token comes from the environment, never from the arguments."""
    ap = argparse.ArgumentParser(prog="python -m tests.fakes.sentry", description=main.__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--org", default="aevon")
    args = ap.parse_args(argv)
    token = os.environ.get("SENTRY_AUTH_TOKEN", "")
    if not token:
        ap.error("SENTRY_AUTH_TOKEN is not set (the API token the fake accepts)")
    fake = FakeSentry(org=args.org, tokens=[token])
    fake.start(port=args.port)
    projects = ", ".join(f"{pid}={slug}" for pid, slug in fake.projects.items())
    print(f"Sentry stand-in on {fake.url}: org {fake.org}, projects {projects}, DSN of project 1: {fake.dsn(1)}",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
