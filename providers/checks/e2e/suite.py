"""The app's own Playwright suite as the E2E gate: run its command against BASE_URL and read the JSON reporter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from providers import process_groups
from providers.models import Finding, Outcome, Severity

# The suite gets this much of our environment (never our secrets: DATABASE_URL, tokens ...), plus `env` and BASE_URL.
_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "CI", "NODE_PATH", "PLAYWRIGHT_BROWSERS_PATH")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class SuiteSpec(BaseModel):
    """How to run the app's suite: an argument list run in the checkout, with BASE_URL set to the service's URL."""

    model_config = ConfigDict(extra="forbid")
    command: list[str] = Field(min_length=1, description='e.g. ["npx", "playwright", "test", "--reporter=json"]')
    cwd: str = Field(default=".", description="folder inside the checkout to run in")
    json_report: str | None = Field(
        default=None, description="where the JSON reporter writes (relative to cwd; also PLAYWRIGHT_JSON_OUTPUT_NAME)"
    )
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=600, gt=0)


@dataclass
class SuiteOutcome:
    """What the suite run amounts to, ready to become a CheckResult."""

    outcome: Outcome
    summary: str
    findings: list[Finding] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass
class SuiteTest:
    """One test of a Playwright JSON report."""

    title: str
    status: str  # expected | unexpected | flaky | skipped
    duration_ms: float
    error: str = ""
    attachments: dict[str, str] = field(default_factory=dict)


def _tests_of(suite: dict[str, Any], path: list[str]) -> list[SuiteTest]:
    here = [*path, suite["title"]] if suite.get("title") else path
    out: list[SuiteTest] = []
    for spec in suite.get("specs", []):
        for test in spec.get("tests", []):
            results = test.get("results", [])
            last = results[-1] if results else {}
            error = (last.get("error") or {}).get("message") or ""
            attachments = {
                f"{a.get('name', 'attachment')} {len(out) + 1}": str(a["path"])
                for r in results for a in r.get("attachments", []) if a.get("path")
            }
            project = f" [{test['projectName']}]" if test.get("projectName") else ""
            out.append(SuiteTest(
                title=" › ".join([*here, spec.get("title", "?")]) + project,
                status=str(test.get("status", "unexpected")),
                duration_ms=float(sum(r.get("duration", 0) for r in results)),
                error=_ANSI.sub("", error).strip(),
                attachments=attachments,
            ))
    for child in suite.get("suites", []):
        out.extend(_tests_of(child, here))
    return out


def parse_report(data: dict[str, Any]) -> list[SuiteTest]:
    """Every test of a Playwright JSON report (suites nest; a spec has a test per project)."""
    tests: list[SuiteTest] = []
    for suite in data.get("suites", []):
        tests.extend(_tests_of(suite, []))
    return tests


def judge(exit_code: int, tests: list[SuiteTest] | None, report_errors: list[str]) -> SuiteOutcome:
    """PASSED when the command exited 0 and no test was unexpected; FAILED naming the failing tests otherwise."""
    tests = tests or []
    failed = [t for t in tests if t.status == "unexpected"]
    findings = [
        Finding(message=f"E2E test failed: {t.title}: {t.error.splitlines()[0] if t.error else 'no message'}",
                severity=Severity.HIGH, location=t.title, detail={"error": t.error[:2000]})
        for t in failed
    ]
    findings += [Finding(message=f"E2E suite error: {e}", severity=Severity.HIGH) for e in report_errors]
    metrics: dict[str, float] = {f"test.{t.title}.ms": round(t.duration_ms, 1) for t in tests}
    for status in ("expected", "unexpected", "flaky", "skipped"):
        metrics[f"tests.{status}"] = float(sum(t.status == status for t in tests))
    artifacts = {f"{t.title}: {label}": p for t in failed for label, p in t.attachments.items()}
    counts = f"{len(tests) - len(failed)}/{len(tests)} test(s) passed"
    if exit_code == 0 and not findings:
        return SuiteOutcome(Outcome.PASSED, f"suite: {counts}", metrics=metrics)
    if not findings:
        findings = [Finding(message=f"E2E suite exited {exit_code}", severity=Severity.HIGH)]
    named = "; ".join(f.message for f in findings[:3])
    return SuiteOutcome(Outcome.FAILED, f"suite exited {exit_code}, {counts}: {named}", findings, metrics, artifacts)


def suite_env(spec: SuiteSpec, base_url: str, report: Path | None) -> dict[str, str]:
    """The suite's environment: a few of ours, the spec's, BASE_URL (and the JSON reporter's output file)."""
    env = {k: v for k, v in os.environ.items() if k in _PASS_ENV}
    env.update(spec.env)
    env["BASE_URL"] = base_url
    if report is not None:
        env["PLAYWRIGHT_JSON_OUTPUT_NAME"] = str(report)
    return env


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the suite's whole process group (npx → node → browsers), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


def _prepare(spec: SuiteSpec, checkout: Path, out_dir: Path, label: str) -> tuple[Path, Path | None, Path] | None:
    """(cwd, JSON report path, log path); None when cwd is not a folder inside the checkout. Clears a stale report."""
    cwd = (checkout / spec.cwd).resolve()
    if not cwd.is_relative_to(checkout.resolve()) or not cwd.is_dir():
        return None
    report = (cwd / spec.json_report) if spec.json_report else None
    if report is not None:
        report.unlink(missing_ok=True)  # a report of an earlier run must not count
    out_dir.mkdir(parents=True, exist_ok=True)
    return cwd, report, out_dir / f"{label}-suite.log"


def _read_report(report: Path) -> tuple[list[SuiteTest], list[str]]:
    data = json.loads(report.read_text())
    errors = [_ANSI.sub("", str(e.get("message", e))).strip()[:300] for e in data.get("errors", [])]
    return parse_report(data), errors


async def run_suite(spec: SuiteSpec, base_url: str, checkout: Path, out_dir: Path, label: str) -> SuiteOutcome:
    """Run the suite command (an argument list, no shell) in `checkout/cwd`; its output goes to a log artifact."""
    prepared = await asyncio.to_thread(_prepare, spec, checkout, out_dir, label)
    if prepared is None:
        return SuiteOutcome(Outcome.ERROR, f"suite cwd {spec.cwd!r} is not a folder of the checkout")
    cwd, report, log = prepared
    env = suite_env(spec, base_url, report)
    try:
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *spec.command, cwd=cwd, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            )
    except OSError as exc:
        return SuiteOutcome(Outcome.ERROR, f"could not start the suite {spec.command[0]!r}: {exc.strerror or exc}")
    with process_groups.recorded(proc.pid):  # a killed deploy leaves the pid file: the next run kills the suite
        try:
            async with asyncio.timeout(spec.timeout_s):
                code = await proc.wait()
        except TimeoutError:
            await _kill(proc)
            return SuiteOutcome(Outcome.ERROR, f"the suite did not finish within {spec.timeout_s:g}s",
                                artifacts={"suite log": str(log)})
        finally:
            if proc.returncode is None:  # cancelled (the check's own timeout): never leave the suite running
                await _kill(proc)
    tests: list[SuiteTest] | None = None
    errors: list[str] = []
    if report is not None:
        try:
            tests, errors = await asyncio.to_thread(_read_report, report)
        except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
            if code == 0:
                return SuiteOutcome(Outcome.ERROR, f"the suite passed but its JSON report is unreadable "
                                    f"({type(exc).__name__})", artifacts={"suite log": str(log)})
    result = judge(code, tests, errors)
    result.artifacts = {"suite log": str(log), **result.artifacts}
    return result
