"""Run a package manager's audit (`npm audit --json`, `pnpm audit --json`) and read its JSON into advisories."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.errors import PermanentError, TransientError
from providers.models import Severity
from providers.process_env import child_env

_GHSA_RE = re.compile(r"GHSA(?:-[23456789cfghjmpqrvwx]{4}){3}")
# npm/pnpm say "moderate" where GitHub says "medium"; "info" is below every threshold we offer
SEVERITY_OF: dict[str, Severity] = {
    "info": Severity.INFO, "low": Severity.LOW, "moderate": Severity.MEDIUM, "medium": Severity.MEDIUM,
    "high": Severity.HIGH, "critical": Severity.CRITICAL,
}


@dataclass(frozen=True)
class Advisory:
    """One vulnerable package and the advisory that makes it so."""

    package: str
    advisory_id: str  # GHSA id when known, else the tool's own advisory id
    severity: Severity
    title: str
    url: str | None = None
    vulnerable: str | None = None  # affected version range
    fixed_in: str | None = None
    where: str | None = None  # manifest path or dependency path


def ghsa_of(*texts: object) -> str | None:
    """The first GHSA id found in `texts` (an advisory URL, an id field)."""
    for text in texts:
        if isinstance(text, str):
            m = _GHSA_RE.search(text)
            if m:
                return m.group(0)
    return None


def _npm_v2(vulns: dict[str, Any]) -> list[Advisory]:
    """npm audit v2 (`auditReportVersion: 2`): `vulnerabilities` by package; `via` holds advisories or names."""
    out: dict[tuple[str, str], Advisory] = {}
    for pkg, entry in vulns.items():
        for via in entry.get("via") or []:
            if not isinstance(via, dict):  # a package name: the advisory is listed under that package
                continue
            name = str(via.get("name") or pkg)
            ident = ghsa_of(via.get("url")) or str(via.get("source") or via.get("title") or "?")
            out.setdefault((name, ident), Advisory(
                package=name, advisory_id=ident,
                severity=SEVERITY_OF.get(str(via.get("severity")), Severity.HIGH),
                title=str(via.get("title") or ""), url=via.get("url"), vulnerable=via.get("range"),
                where=", ".join(entry.get("nodes") or []) or None,
            ))
    return list(out.values())


def _advisories(advisories: dict[str, Any]) -> list[Advisory]:
    """pnpm audit --json (and npm audit v1): `advisories` by id, each naming `module_name`."""
    out: list[Advisory] = []
    for key, adv in advisories.items():
        paths = [p for f in adv.get("findings") or [] for p in f.get("paths") or []]
        out.append(Advisory(
            package=str(adv.get("module_name") or "?"),
            advisory_id=ghsa_of(adv.get("github_advisory_id"), adv.get("url")) or str(adv.get("id") or key),
            severity=SEVERITY_OF.get(str(adv.get("severity")), Severity.HIGH),
            title=str(adv.get("title") or ""), url=adv.get("url"), vulnerable=adv.get("vulnerable_versions"),
            fixed_in=adv.get("patched_versions"), where=", ".join(paths[:3]) or None,
        ))
    return out


def parse_audit(doc: Any, tool: str) -> list[Advisory]:
    """Advisories from an audit report (npm v2, npm v1 or pnpm); PermanentError for an error report."""
    if not isinstance(doc, dict):
        raise PermanentError("audit output is not a JSON object", provider=tool)
    if isinstance(doc.get("error"), dict):
        err = doc["error"]
        raise PermanentError(f"audit failed: {err.get('code', '?')}: {str(err.get('summary', ''))[:200]}",
                             provider=tool)
    if isinstance(doc.get("vulnerabilities"), dict):
        return _npm_v2(doc["vulnerabilities"])
    if isinstance(doc.get("advisories"), dict):
        return _advisories(doc["advisories"])
    raise PermanentError("audit output has neither `vulnerabilities` (npm) nor `advisories` (pnpm)", provider=tool)


async def run_audit(argv: list[str], cwd: Path, timeout_s: float) -> list[Advisory]:
    """Run `argv` (an argument list, no shell) in `cwd` and parse its JSON report.

    npm and pnpm exit non-zero when they find vulnerabilities, so the exit code alone decides nothing:
    the report on stdout does.
    """
    tool = Path(argv[0]).name
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=str(cwd), stdin=asyncio.subprocess.DEVNULL, env=child_env(prefixes=("npm_config_",)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise PermanentError(f"audit command not found: {argv[0]}", provider=tool) from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise TransientError(f"audit did not finish in {timeout_s:.0f} s", provider=tool) from exc
    try:
        doc = json.loads(out.decode(errors="replace") or "null")
    except ValueError as exc:
        tail = err.decode(errors="replace").strip()[-300:]
        raise PermanentError(f"audit exited {proc.returncode} without a JSON report: {tail}", provider=tool) from exc
    return parse_audit(doc, tool)
