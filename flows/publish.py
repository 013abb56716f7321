"""What a run shows in the Prefect UI: artifacts (report, checks, evidence, rollback) and domain log lines."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from flows.report import DeployReport, RollbackReport, render_markdown
from providers.models import CheckResult
from tasks.services import ServiceChange

log = logging.getLogger("aevon.run")  # forwarded to the run's Logs tab (flows/observe.py)
TEXT_MAX_BYTES = 20_000  # small JSON/CSV/text evidence is shown inline
IMAGES = {".png", ".jpg", ".jpeg", ".webp"}
TEXTS = {".json", ".csv", ".txt", ".log"}
UNHEALTHY = "serving release is unhealthy: "  # a rollback's note when the health re-check of what serves fails


def unhealthy(rb: RollbackReport) -> str | None:
    """What the rollback's health re-check found wrong with the serving release (None: nothing)."""
    return next((n.removeprefix(UNHEALTHY).split(". Re-running")[0] for n in rb.notes if n.startswith(UNHEALTHY)),
                None)


def _short(v: str | None) -> str:
    return v[:12] if v else "nothing"


def log_changes(changes: list[ServiceChange], what: str = "deployed") -> None:
    """One line per service: versions before → after, status, time."""
    for c in changes:
        level = logging.INFO if c.status == "READY" else logging.ERROR
        log.log(level, "%s %s [%s]: %s → %s %s in %.1fs%s", what, c.service, c.provider, _short(c.before),
                _short(c.after), c.status, c.duration_s, f": {c.message}" if c.message else "")


def log_verdicts(results: list[CheckResult], section: str) -> None:
    """One line per gate/check: its verdict and summary."""
    for r in results:
        level = logging.INFO if str(r.outcome) in ("PASSED", "SKIPPED") else logging.ERROR
        log.log(level, "%s %s [%s]: %s in %.1fs: %s", section, r.name, r.kind, r.outcome, r.duration_s, r.summary)


def log_rollback(rb: RollbackReport) -> None:
    """What the rollback restored, and why."""
    log.warning("rollback of %s because: %s", rb.release_id, rb.reason)
    for c in rb.services:
        level = logging.INFO if c.status == "READY" else logging.ERROR
        log.log(level, "restored %s [%s]: %s → %s %s%s", c.service, c.provider, _short(c.before), _short(c.after),
                c.status, f": {c.message}" if c.message else "")
    if rb.migrations_reverted:
        log.info("reverted migrations: %s", ", ".join(rb.migrations_reverted))
    for note in rb.notes:
        log.warning("rollback note: %s", note)
    log_verdicts(rb.health, "health re-check")
    sick = unhealthy(rb)
    log.log(logging.INFO if rb.ok else logging.ERROR, "rollback of %s %s", rb.release_id,
            "completed: the previous release serves" if rb.ok else
            f"FAILED: {UNHEALTHY}{sick}" if sick else "FAILED: an operator must look")


def rollback_markdown(env: str, rb: RollbackReport) -> str:
    """The rollback subflow's own report."""
    rep = DeployReport(env=env, ref="rollback", release_id=rb.release_id, rollback=rb)
    body = render_markdown(rep).split("### Rollback", 1)[-1]
    sick = unhealthy(rb)
    head = f"## Rollback of `{rb.release_id}` ({env}) → **{'completed' if rb.ok else 'FAILED'}**\n\n"
    if sick:
        head += f"**The {UNHEALTHY}{sick}**\n\n"
    return f"{head}### Rollback{body}"


async def publish_rollback(env: str, rb: RollbackReport) -> RollbackReport:
    """The rollback flow run's log lines and its own artifact: what it restored, reverted, re-checked."""
    log_rollback(rb)
    sick = unhealthy(rb)
    await acreate_markdown_artifact(
        markdown=rollback_markdown(env, rb), key=f"rollback-{env}",
        description=f"{'completed' if rb.ok else 'FAILED'}: rollback of {rb.release_id} "
                    + (f"({UNHEALTHY}{sick[:160]})" if sick else f"({rb.reason[:120]})"),
    )
    return rb


def _evidence_url(path: Path) -> str | None:
    """The HTTP address of an evidence file when AEVON_EVIDENCE_URL serves the state folder's `artifacts/`."""
    base = os.environ.get("AEVON_EVIDENCE_URL", "").rstrip("/")
    if not base:
        return None
    from deployments.settings import AevonSettings

    try:
        rel = path.resolve().relative_to((AevonSettings().state_dir / "artifacts").resolve())
    except ValueError:
        return None
    return f"{base}/{quote(rel.as_posix())}"


def _embed(label: str, where: str) -> list[str]:
    """A screenshot or report: shown by its HTTP address when there is one (the Prefect UI's markdown opens only
    http(s) links and images: data: and file: are stripped), small text inline, else where it is on the worker."""
    if "://" in where:
        return [f"- [{label}]({where})"]
    path = Path(where)
    url = _evidence_url(path)
    if url is not None:
        return [f"**{label}**", "", f"![{label}]({url})", ""] if path.suffix.lower() in IMAGES else [
            f"- [{label}]({url})"]
    if not path.is_file():
        return [f"- {label}: no longer on the worker (`{where}`)"]
    size = path.stat().st_size
    if path.suffix.lower() in TEXTS and size <= TEXT_MAX_BYTES:
        text = path.read_text(errors="replace").replace("```", "'''")
        return [f"**{label}**", "", "```", text, "```", ""]
    return [f"- {label}: on the worker at `{where}` ({size / 1e3:.0f} kB; set AEVON_EVIDENCE_URL to the address "
            "that serves the state folder's artifacts/ to open it from here)"]


def evidence_markdown(report: DeployReport) -> str | None:
    """Every finding, figure and screenshot of the gates and checks, viewable in the UI (None: nothing to show)."""
    out: list[str] = []
    for r in [*report.gates, *report.checks]:
        if not (r.findings or r.metrics or r.artifacts):
            continue
        out += [f"### {r.name} [{r.kind}]: **{r.outcome}**", "", r.summary.replace("\n", " "), ""]
        if r.findings:
            out += ["| severity | finding | where |", "|---|---|---|"]
            out += [f"| {f.severity} | {f.message.replace('|', '/')[:300]} | {f.location or ''} |" for f in r.findings]
            out.append("")
        if r.metrics:
            out += ["| figure | value |", "|---|---|"] + [f"| {k} | {v:g} |" for k, v in r.metrics.items()] + [""]
        for label, where in r.artifacts.items():
            out += _embed(label, where)
        out.append("")
    if not out:
        return None
    return f"## Evidence of {report.env} @ {report.ref} ({report.outcome})\n\n" + "\n".join(out)


async def publish_run(report: DeployReport) -> None:
    """The deploy run's artifacts: the report, the checks table, the evidence; descriptions name ref and outcome.
    Created at the same time (three API calls, none waits for another)."""
    what = f"{report.env} @ {report.ref} ({(report.sha or '')[:12] or 'unresolved'})"
    calls: list[Awaitable[Any]] = [acreate_markdown_artifact(
        markdown=render_markdown(report), key=f"deploy-{report.env}", description=f"{report.outcome}: deploy {what}")]
    results = [*report.gates, *report.checks]
    if results:
        calls.append(acreate_table_artifact(
            key=f"checks-{report.env}", description=f"{report.outcome}: gates and checks of {what}",
            table=[{"check": r.name, "kind": r.kind, "outcome": r.outcome.value, "attempts": r.attempts,
                    "seconds": round(r.duration_s, 2), "summary": r.summary[:300],
                    "findings": len(r.findings), **{k: v for k, v in list(r.metrics.items())[:8]}}
                   for r in results],
        ))
    evidence = evidence_markdown(report)
    if evidence is not None:
        calls.append(acreate_markdown_artifact(
            markdown=evidence, key=f"evidence-{report.env}",
            description=f"{report.outcome}: findings, figures, screenshots of {what}"))
    await asyncio.gather(*calls)
