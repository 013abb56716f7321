"""Everything a run produced, as text, to search for secret canaries: Prefect runs, logs, events, artifacts, files."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus
from uuid import UUID

import asyncpg
import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    LogFilter,
    LogFilterTimestamp,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.settings import PREFECT_API_URL

PAGE = 200


def transforms(value: str) -> set[str]:
    """`value` and its obvious encodings: stripped, URL-encoded, repr- and JSON-escaped, base64."""
    out = {value, value.strip(), quote(value, safe=""), quote_plus(value), repr(value)[1:-1],
           json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
           base64.b64encode(value.encode()).decode().rstrip("=")}
    return {v for v in out if len(v) >= 6}


@dataclass
class Sink:
    """Texts gathered from one place (`where` names each text's origin)."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, value: Any) -> None:
        text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        self.texts.append((where, text))

    def kinds(self) -> set[str]:
        """Where the texts came from, by kind: `log`, `event`, `flow`, `artifact`, `file`, `table` ..."""
        return {where.split(" ", 1)[0] for where, _ in self.texts}

    def hits(self, needles: Iterable[str]) -> list[str]:
        """`where: needle` for every text holding a needle (empty: clean)."""
        needles = list(needles)
        return [f"{where}: {n!r}" for where, text in self.texts for n in needles if n in text]


async def _paged(read: Any) -> list[Any]:
    out: list[Any] = []
    while True:
        page = await read(offset=len(out))
        out += page
        if len(page) < PAGE:
            return out


async def prefect_since(sink: Sink, since: datetime) -> list[UUID]:
    """Flow runs (name, parameters, state messages), their task runs, artifacts, logs and events since `since`."""
    async with get_client() as client:
        runs = await _paged(lambda offset: client.read_flow_runs(
            flow_run_filter=FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=since)),
            limit=PAGE, offset=offset))
        ids = [r.id for r in runs]
        for r in runs:
            sink.add(f"flow run {r.name}", r.model_dump(mode="json"))
            for st in await client.read_flow_run_states(r.id):
                sink.add(f"flow run {r.name} state {st.name}", {"message": st.message, "name": st.name})
        if ids:
            tasks = await _paged(lambda offset: client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=ids)), limit=PAGE,
                offset=offset))
            for t in tasks:
                sink.add(f"task run {t.name}", t.model_dump(mode="json"))
            arts = await _paged(lambda offset: client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)), limit=PAGE,
                offset=offset))
            for a in arts:
                sink.add(f"artifact {a.key or a.id}", a.model_dump(mode="json"))
        logs = await _paged(lambda offset: client.read_logs(
            log_filter=LogFilter(timestamp=LogFilterTimestamp(after_=since)), limit=PAGE, offset=offset))
        for lg in logs:
            sink.add(f"log {lg.name}", lg.message)
    for ev in await events_since(since):
        sink.add(f"event {ev.get('event')}", ev)
    return ids


async def events_since(since: datetime) -> list[dict[str, Any]]:
    """Every event the server stored since `since` (POST /api/events/filter, then its next pages)."""
    api = str(PREFECT_API_URL.value())
    body = {"filter": {"occurred": {"since": since.isoformat(), "until": "2100-01-01T00:00:00+00:00"}}, "limit": 50}
    out: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=30) as http:
        resp = await http.post(f"{api}/events/filter", json=body)
        while True:
            resp.raise_for_status()
            page = resp.json()
            out += page["events"]
            if not page.get("next_page"):
                return out
            resp = await http.get(page["next_page"])


async def settled_events(since: datetime, flow_runs: list[UUID], timeout_s: float = 30) -> None:
    """Wait until each flow run's terminal state event reached the event store (events are written in batches)."""
    async with get_client() as client:
        finals = {f"prefect.flow-run.{(await client.read_flow_run(i)).state_name}": f"prefect.flow-run.{i}"
                  for i in flow_runs}
    for _ in range(int(timeout_s * 4)):
        seen = {(e["event"], e["resource"]["prefect.resource.id"]) for e in await events_since(since)}
        if all(pair in seen for pair in finals.items()):
            return
        await asyncio.sleep(0.25)


def files_under(sink: Sink, root: Path) -> None:
    """Every file under `root` (names and contents)."""
    for path in sorted(root.rglob("*")):
        sink.add(f"path {path}", str(path))
        if path.is_file() and not path.is_symlink():
            sink.add(f"file {path}", path.read_bytes().decode("utf-8", "replace"))


async def database_rows(sink: Sink, url: str) -> None:
    """Every row of every table of the database at `url` (our ledger), as text."""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch("SELECT schemaname, tablename FROM pg_tables "
                                  "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
        for t in tables:
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{t["schemaname"]}"."{t["tablename"]}" t')
            for r in rows:
                sink.add(f"table {t['tablename']}", r["row"])
    finally:
        await conn.close()
