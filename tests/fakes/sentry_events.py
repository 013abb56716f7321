"""The fake Sentry's event queries: Discover's count() table and the events-stats time series over stored events."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tests.fakes.base import Request, Response
from tests.fakes.sentry_envelope import StoredEvent, parse_time

if TYPE_CHECKING:
    from tests.fakes.sentry import FakeSentry

_PERIOD = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_QUERY_KEYS = {"event.type": "type", "release": "release", "level": "level", "environment": "environment"}


def parse_period(text: str) -> int:
    """Seconds of a Sentry period such as ``1m``, ``30s``, ``24h``; ValueError otherwise."""
    m = _PERIOD.match(text)
    if not m:
        raise ValueError(f"invalid period {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def window(req: Request) -> tuple[list[tuple[str, str]], float, float]:
    """(query filters, start, end) of an events query; ValueError for a bad one."""
    filters = query_filters(req.q("query", "") or "")
    if req.q("start") and req.q("end"):
        start, end = parse_time(req.q("start") or ""), parse_time(req.q("end") or "")
    else:
        end = datetime.now(UTC).timestamp()
        start = end - parse_period(req.q("statsPeriod", "24h") or "24h")
    if end <= start:
        raise ValueError("start must be before end")
    return filters, start, end


def matching(
    fake: FakeSentry, req: Request, filters: list[tuple[str, str]], start: float, end: float
) -> list[StoredEvent]:
    """Events of the asked projects (none asked: the token user's projects) in [start, end)."""
    asked = {int(p) for p in req.query.get("project", []) if p != "-1"}
    member_of = {int(p) for p in (req.headers.get("x-fake-member-of") or "").split(",") if p}
    projects = asked or member_of
    envs = set(req.query.get("environment", []))
    with fake.lock:
        return [ev for ev in fake.events if start <= ev.timestamp < end and ev.project_id in projects
                and (not envs or ev.environment in envs)
                and all(getattr(ev, attr) == value for attr, value in filters)]


def discover_events(fake: FakeSentry, req: Request) -> Response:
    """GET events/ with field=count(): https://docs.sentry.io/api/discover/query-discover-events-in-table-format/"""
    if (missing := fake._org(req)) is not None:
        return missing
    if req.query.get("field") != ["count()"]:
        return Response(400, {"detail": "this fake answers field=count() only"})
    try:
        filters, start, end = window(req)
    except ValueError as exc:
        return Response(400, {"detail": str(exc)})
    count = len(matching(fake, req, filters, start, end))
    return Response(200, {"data": [{"count()": count}], "meta": {"fields": {"count()": "integer"},
                                                                 "units": {"count()": None}}})


def events_stats(fake: FakeSentry, req: Request) -> Response:
    """GET events-stats/ with yAxis=count(): per-interval buckets (getsentry/sentry OrganizationEventsStatsEndpoint)."""
    if (missing := fake._org(req)) is not None:
        return missing
    if req.query.get("yAxis", ["count()"]) != ["count()"]:
        return Response(400, {"detail": "this fake answers yAxis=count() only"})
    try:
        filters, start, end = window(req)
        interval = parse_period(req.q("interval", "1h") or "1h")
    except ValueError as exc:
        return Response(400, {"detail": str(exc)})
    first = int(start // interval) * interval
    buckets = {first + i * interval: 0 for i in range(int((end - first) // interval) + 1)}
    for ev in matching(fake, req, filters, start, end):
        buckets[int(ev.timestamp // interval) * interval] += 1
    data = [[ts, [{"count": n}]] for ts, n in sorted(buckets.items())]
    return Response(200, {"data": data, "start": int(start), "end": int(end), "isMetricsData": False,
                          "meta": {"fields": {"count": "integer"}, "units": {"count": None}}})


def query_filters(query: str) -> list[tuple[str, str]]:
    """(attribute, value) per `key:value` term of an events query; ValueError for a term this fake cannot read."""
    out = []
    for token in query.split():
        key, sep, value = token.partition(":")
        if not sep or key not in _QUERY_KEYS:
            raise ValueError(f"Invalid query. Unsupported search term: {token!r}")
        out.append((_QUERY_KEYS[key], value.strip('"')))
    return out
