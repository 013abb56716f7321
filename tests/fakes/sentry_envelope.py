"""The fake Sentry's ingest: SDK envelopes (decoded, their `event` items parsed) become stored events."""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.fakes.base import Request, Response

if TYPE_CHECKING:
    from tests.fakes.sentry import FakeSentry

_SENTRY_KEY = re.compile(r"sentry_key=([^,\s]+)")


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


def ingest_envelope(fake: FakeSentry, req: Request) -> Response:
    """POST /api/{project_id}/envelope/: https://develop.sentry.dev/sdk/data-model/envelopes/"""
    project = int(req.params["project"])
    m = _SENTRY_KEY.search(req.headers.get("x-sentry-auth", ""))
    if (m.group(1) if m else req.q("sentry_key")) != fake.public_key:
        return Response(401, {"detail": "missing or invalid authorization"})
    if project not in fake.projects:
        return Response(404, {"detail": "project not found"})
    try:
        body = _decode(req.body, req.headers.get("content-encoding", ""))
    except (OSError, ValueError) as exc:
        return Response(400, {"detail": f"invalid body: {exc}"})
    header, events = parse_envelope(body)
    with fake.received:
        fake.envelopes.append(body)
        for ev in events:
            fake.events.append(_stored(project, ev))
        fake.received.notify_all()
    return Response(200, {"id": header.get("event_id")})


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


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 time (naive means UTC, as Sentry reads it)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


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
