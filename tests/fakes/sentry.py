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
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from tests.fakes.base import FakeServer, Request, Response

_PERIOD = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SENTRY_KEY = re.compile(r"sentry_key=([^,\s]+)")
_QUERY_KEYS = {"event.type": "type", "release": "release", "level": "level", "environment": "environment"}
ALL_SCOPES = frozenset({"project:read", "project:write", "project:admin", "project:releases", "org:ci",
                        "event:read", "event:write", "event:admin"})
RELEASE_WRITE = frozenset({"project:write", "project:admin", "project:releases", "org:ci"})
EVENT_READ = frozenset({"event:read", "event:write", "event:admin"})
DENIED = {"detail": "You do not have permission to perform this action."}


def parse_period(text: str) -> int:
    """Seconds of a Sentry period such as ``1m``, ``30s``, ``24h``; ValueError otherwise."""
    m = _PERIOD.match(text)
    if not m:
        raise ValueError(f"invalid period {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 time (naive means UTC, as Sentry reads it)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class StoredEvent:
    """One ingested event."""

    project_id: int
    timestamp: float
    type: str
    level: str
    release: str | None
    environment: str | None
    payload: dict[str, Any] = field(default_factory=dict)


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
        self.route("POST", org + r"/releases/", self._create_release)
        self.route("POST", org + r"/releases/(?P<version>[^/]+)/deploys/", self._create_deploy)
        self.route("GET", org + r"/releases/(?P<version>[^/]+)/deploys/", self._list_deploys)
        self.route("GET", org + r"/events-stats/", self._events_stats)
        self.route("GET", org + r"/events/", self._events)
        self.route("POST", r"/api/(?P<project>\d+)/envelope/", self._envelope)

    # -- web API -----------------------------------------------------------------------------------------------
    def _org(self, req: Request) -> Response | None:
        if req.params["org"] != self.org:
            return Response(404, {"detail": "The requested resource does not exist"})
        return None

    def _create_release(self, req: Request) -> Response:
        if (missing := self._org(req)) is not None:
            return missing
        body = req.json() or {}
        version, slugs = body.get("version"), body.get("projects")
        if not isinstance(version, str) or not version:
            return Response(400, {"version": ["This field is required."]})
        if not isinstance(slugs, list) or not slugs:
            return Response(400, {"projects": ["This field is required."]})
        if any(s not in self.projects.values() for s in slugs):
            return Response(400, {"projects": ["Invalid project slugs"]})
        with self.lock:
            if version in self.releases:
                return Response(208, self.releases[version])
            release = {
                "id": len(self.releases) + 1, "version": version, "shortVersion": version[:12],
                "ref": body.get("ref"), "url": body.get("url"), "dateCreated": _iso(datetime.now(UTC).timestamp()),
                "dateReleased": body.get("dateReleased"), "deployCount": 0, "newGroups": 0,
                "projects": [{"id": next(i for i, slug in self.projects.items() if slug == s), "slug": s,
                              "name": s} for s in slugs],
            }
            self.releases[version] = release
        return Response(201, release)

    def _release(self, req: Request) -> tuple[str, Response | None]:
        version = unquote(req.params["version"])
        if (missing := self._org(req)) is not None:
            return version, missing
        if version not in self.releases:
            return version, Response(404, {"detail": "The requested resource does not exist"})
        return version, None

    def _create_deploy(self, req: Request) -> Response:
        version, missing = self._release(req)
        if missing is not None:
            return missing
        body = req.json() or {}
        if not isinstance(body.get("environment"), str) or not body["environment"]:
            return Response(400, {"environment": ["This field is required."]})
        with self.lock:
            deploys = self.deploys.setdefault(version, [])
            deploy = {
                "id": str(sum(len(d) for d in self.deploys.values()) + 1), "environment": body["environment"],
                "name": body.get("name"), "url": body.get("url"), "dateStarted": body.get("dateStarted"),
                "dateFinished": body.get("dateFinished") or _iso(datetime.now(UTC).timestamp()),
            }
            deploys.append(deploy)
            self.releases[version]["deployCount"] = len(deploys)
        return Response(201, deploy)

    def _list_deploys(self, req: Request) -> Response:
        version, missing = self._release(req)
        if missing is not None:
            return missing
        with self.lock:
            return Response(200, list(reversed(self.deploys.get(version, []))))

    def _window(self, req: Request) -> tuple[list[tuple[str, str]], float, float]:
        """(query filters, start, end) of an events query; ValueError for a bad one."""
        filters = self._filters(req.q("query", "") or "")
        if req.q("start") and req.q("end"):
            start, end = parse_time(req.q("start") or ""), parse_time(req.q("end") or "")
        else:
            end = datetime.now(UTC).timestamp()
            start = end - parse_period(req.q("statsPeriod", "24h") or "24h")
        if end <= start:
            raise ValueError("start must be before end")
        return filters, start, end

    def _matching(self, req: Request, filters: list[tuple[str, str]], start: float, end: float) -> list[StoredEvent]:
        """Events of the asked projects (none asked: the token user's projects) in [start, end)."""
        asked = {int(p) for p in req.query.get("project", []) if p != "-1"}
        member_of = {int(p) for p in (req.headers.get("x-fake-member-of") or "").split(",") if p}
        projects = asked or member_of
        envs = set(req.query.get("environment", []))
        with self.lock:
            return [ev for ev in self.events if start <= ev.timestamp < end and ev.project_id in projects
                    and (not envs or ev.environment in envs)
                    and all(getattr(ev, attr) == value for attr, value in filters)]

    def _events(self, req: Request) -> Response:
        if (missing := self._org(req)) is not None:
            return missing
        if req.query.get("field") != ["count()"]:
            return Response(400, {"detail": "this fake answers field=count() only"})
        try:
            filters, start, end = self._window(req)
        except ValueError as exc:
            return Response(400, {"detail": str(exc)})
        count = len(self._matching(req, filters, start, end))
        return Response(200, {"data": [{"count()": count}], "meta": {"fields": {"count()": "integer"},
                                                                     "units": {"count()": None}}})

    def _events_stats(self, req: Request) -> Response:
        if (missing := self._org(req)) is not None:
            return missing
        if req.query.get("yAxis", ["count()"]) != ["count()"]:
            return Response(400, {"detail": "this fake answers yAxis=count() only"})
        try:
            filters, start, end = self._window(req)
            interval = parse_period(req.q("interval", "1h") or "1h")
        except ValueError as exc:
            return Response(400, {"detail": str(exc)})
        first = int(start // interval) * interval
        buckets = {first + i * interval: 0 for i in range(int((end - first) // interval) + 1)}
        for ev in self._matching(req, filters, start, end):
            buckets[int(ev.timestamp // interval) * interval] += 1
        data = [[ts, [{"count": n}]] for ts, n in sorted(buckets.items())]
        return Response(200, {"data": data, "start": int(start), "end": int(end), "isMetricsData": False,
                              "meta": {"fields": {"count": "integer"}, "units": {"count": None}}})

    @staticmethod
    def _filters(query: str) -> list[tuple[str, str]]:
        out = []
        for token in query.split():
            key, sep, value = token.partition(":")
            if not sep or key not in _QUERY_KEYS:
                raise ValueError(f"Invalid query. Unsupported search term: {token!r}")
            out.append((_QUERY_KEYS[key], value.strip('"')))
        return out

    # -- ingest ------------------------------------------------------------------------------------------------
    def _envelope(self, req: Request) -> Response:
        project = int(req.params["project"])
        m = _SENTRY_KEY.search(req.headers.get("x-sentry-auth", ""))
        if (m.group(1) if m else req.q("sentry_key")) != self.public_key:
            return Response(401, {"detail": "missing or invalid authorization"})
        if project not in self.projects:
            return Response(404, {"detail": "project not found"})
        try:
            body = _decode(req.body, req.headers.get("content-encoding", ""))
        except (OSError, ValueError) as exc:
            return Response(400, {"detail": f"invalid body: {exc}"})
        header, events = parse_envelope(body)
        with self.received:
            self.envelopes.append(body)
            for ev in events:
                self.events.append(_stored(project, ev))
            self.received.notify_all()
        return Response(200, {"id": header.get("event_id")})

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


def _decode(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-untyped]

        return bytes(brotli.decompress(body))
    if encoding in ("", "identity"):
        return body
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The envelope header and the payloads of its `event` items (items with and without `length`)."""
    header_line, _, rest = body.partition(b"\n")
    header: dict[str, Any] = json.loads(header_line or b"{}")
    events: list[dict[str, Any]] = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        if not item_line.strip():
            continue
        item = json.loads(item_line)
        if "length" in item:
            payload, rest = rest[: item["length"]], rest[item["length"]:]
            rest = rest.removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        if item.get("type") == "event":
            events.append(json.loads(payload))
    return header, events


def _stored(project: int, ev: dict[str, Any]) -> StoredEvent:
    ts = ev.get("timestamp")
    if isinstance(ts, int | float):
        when = float(ts)
    elif isinstance(ts, str):
        when = parse_time(ts)
    else:
        when = datetime.now(UTC).timestamp()
    kind = "error" if (ev.get("exception") or {}).get("values") else "default"
    return StoredEvent(project, when, kind, str(ev.get("level") or "error"), ev.get("release"),
                       ev.get("environment"), ev)


def main(argv: list[str] | None = None) -> int:
    """Serve the fake on 127.0.0.1 until stopped; the token comes from the environment, never from the arguments."""
    ap = argparse.ArgumentParser(prog="python -m tests.fakes.sentry", description=main.__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--org", default="aevon")
    args = ap.parse_args(argv)
    token = os.environ.get("SENTRY_AUTH_TOKEN", "")
    if not token:
        ap.error("SENTRY_AUTH_TOKEN is not set (the API token the fake accepts)")
    fake = FakeSentry(org=args.org, tokens=[token]).start(port=args.port)
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
