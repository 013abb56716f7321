"""DAST gate: wapiti3 plus passive header/cookie checks; fails only on findings new since the last good release."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from providers.checks.base import BaseCheck, CheckContext, CheckInput, service_url
from providers.checks.dast.passive import PassiveSettings, passive_scan
from providers.checks.dast.scan import DastFinding, WapitiRun, WapitiSettings, merge, scan
from providers.clients.http import is_loopback_host
from providers.models import CheckResult, Finding, Outcome, Severity
from providers.state.baselines import BaselineStore


class DastSettings(BaseModel):
    """Where to scan (the service's URL + `path`), what fails the gate, and the two scanners' settings."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = None
    path: str = Field(default="/", description="where wapiti starts crawling")
    fail_level: Severity = Field(default=Severity.HIGH, description="NEW findings at or above this fail the gate")
    allow_remote: bool = Field(default=False, description="scan a host that is not loopback (staging, prod)")
    wapiti: WapitiSettings = Field(default_factory=WapitiSettings)
    passive: PassiveSettings = Field(default_factory=PassiveSettings)


@dataclass
class Diff:
    """Findings now against the baseline's: new, unchanged (both now present), fixed (only in the baseline)."""

    new: list[DastFinding]
    unchanged: list[DastFinding]
    fixed: list[dict[str, Any]]
    baseline_release: str | None


def diff(current: list[DastFinding], baseline: dict[str, Any] | None) -> Diff:
    """Compare by fingerprint; with no baseline (the first good release is yet to come) everything is new."""
    known: dict[str, dict[str, Any]] = dict((baseline or {}).get("findings") or {})
    new = [f for f in current if f.fingerprint not in known]
    unchanged = [f for f in current if f.fingerprint in known]
    now = {f.fingerprint for f in current}
    fixed = [{"fingerprint": fp, **rec} for fp, rec in known.items() if fp not in now]
    return Diff(new, unchanged, fixed, (baseline or {}).get("release_id"))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "x"


def _finding(f: DastFinding, status: str) -> Finding:
    word = {"new": "NEW", "unchanged": "known"}[status]
    return Finding(
        message=f"{word} {f.severity} {f.label()} [{f.source}]", severity=f.severity, location=f"{f.method} {f.path}",
        detail={**f.as_dict(), "fingerprint": f.fingerprint, "status": status},
    )


def _fixed(rec: dict[str, Any]) -> Finding:
    where = f"{rec.get('method', 'GET')} {rec.get('path', '/')}"
    key = f" ({rec['key']})" if rec.get("key") else ""
    return Finding(message=f"FIXED {rec.get('severity', '?')} {rec.get('category', '?')}: {where}{key}",
                   severity=Severity.INFO, location=where, detail={**rec, "status": "fixed"})


class DastCheck(BaseCheck):
    """Passive checks and a wapiti scan in parallel; findings merged by fingerprint and compared with the baseline."""

    kind = "dast"

    def __init__(self, ctx: CheckContext, settings: DastSettings) -> None:
        super().__init__(ctx)
        self.settings = settings
        self.store = BaselineStore(ctx.baseline_dir)
        self.artifacts_root = ctx.artifacts_dir

    async def measure(self, inp: CheckInput) -> CheckResult:
        base = service_url(self.spec, inp, self.settings.url)
        host = urlsplit(base).hostname or ""
        if not self.settings.allow_remote and not is_loopback_host(host):
            return self.error(f"refusing to scan {host!r}: not a loopback address (set allow_remote: true to scan it)")
        out_dir = self.artifacts_root / slug(inp.release.release_id)
        stem = f"dast-{slug(self.name)}"
        s = self.settings
        passive, wapiti = await asyncio.gather(
            passive_scan(base, s.passive) if s.passive.enabled else _nothing(),
            scan(base + "/" + s.path.lstrip("/"), s.wapiti, out_dir, stem) if s.wapiti.enabled else _no_scan(),
        )
        findings = merge([*passive[0], *wapiti.findings])
        d = diff(findings, await asyncio.to_thread(self.store.latest, self.name))
        blocking = [f for f in d.new if f.severity.rank >= s.fail_level.rank]
        errors = [*passive[1], *([wapiti.error] if wapiti.error else [])]
        listed = [_finding(f, "new") for f in sorted(d.new, key=lambda f: -f.severity.rank)]
        listed += [_finding(f, "unchanged") for f in d.unchanged] + [_fixed(r) for r in d.fixed]
        artifacts = dict(wapiti.files)
        artifacts["findings"] = str(await asyncio.to_thread(self._write, out_dir / f"{stem}-findings.json", listed))
        metrics = {
            "findings.total": float(len(findings)), "findings.new": float(len(d.new)),
            "findings.new_blocking": float(len(blocking)), "findings.unchanged": float(len(d.unchanged)),
            "findings.fixed": float(len(d.fixed)), "wapiti.scan_s": round(wapiti.seconds, 2),
            "wapiti.crawled_pages": float(wapiti.crawled),
        }
        summary = self._summary(d, blocking)
        if blocking:
            outcome = Outcome.FAILED
        elif errors:
            outcome, summary = Outcome.ERROR, "could not scan fully: " + "; ".join(errors) + f" ({summary})"
        else:
            outcome = Outcome.PASSED
        return self.result(outcome, summary, findings=listed, metrics=metrics, artifacts=artifacts)

    def _summary(self, d: Diff, blocking: list[DastFinding]) -> str:
        against = f"baseline {d.baseline_release}" if d.baseline_release else "no baseline yet"
        text = (f"{len(d.new)} new ({len(blocking)} at or above {self.settings.fail_level}), "
                f"{len(d.unchanged)} unchanged, {len(d.fixed)} fixed vs {against}")
        if d.new:
            named = sorted(d.new, key=lambda f: -f.severity.rank)[:5]
            text += "; new: " + "; ".join(f"{f.severity} {f.label()}" for f in named)
        return text

    @staticmethod
    def _write(path: Path, listed: list[Finding]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([f.model_dump(mode="json") for f in listed], indent=2))
        return path

    async def record_baseline(self, inp: CheckInput, result: CheckResult) -> None:
        """Keep the fingerprints present in this good release (new and unchanged; not the fixed ones)."""
        keep = ("category", "severity", "method", "path", "parameter", "key", "source")
        findings = {
            f.detail["fingerprint"]: {k: f.detail.get(k) for k in keep}
            for f in result.findings if f.detail.get("status") in ("new", "unchanged") and "fingerprint" in f.detail
        }
        await asyncio.to_thread(self.store.save, self.name, inp.release.release_id, {"findings": findings})


async def _nothing() -> tuple[list[DastFinding], list[str]]:
    return [], []


async def _no_scan() -> WapitiRun:
    return WapitiRun()


def make_check(ctx: CheckContext) -> DastCheck:
    """Factory registered as `dast`."""
    return DastCheck(ctx, ctx.settings(DastSettings))
