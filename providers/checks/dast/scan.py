"""DAST findings in one normalised shape, and wapiti3 (its own venv) run offline against a deployed URL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from providers import process_groups
from providers.models import Severity

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_VENV = ROOT / ".aevon" / "tools" / "wapiti-venv"  # scripts/setup-wapiti.sh (AEVON_WAPITI_VENV moves it)
LEVELS = list(Severity)  # wapiti's level 0 INFO .. 4 CRITICAL, in the same order


@dataclass(frozen=True)
class DastFinding:
    """One finding of wapiti or of our passive checks. `key` tells apart findings of one category on one path
    (the parameter, the header or cookie): the fingerprint is stable across releases and scanners.
    """

    category: str
    severity: Severity
    method: str
    path: str
    key: str
    source: str  # "wapiti:<module>" or "passive"
    info: str = ""
    wstg: tuple[str, ...] = ()
    parameter: str = ""  # the attacked parameter, or the header or cookie a passive check judged

    @property
    def fingerprint(self) -> str:
        raw = "|".join((self.category, self.method.upper(), self.path, self.key))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def label(self) -> str:
        """`Category: METHOD /path (key)` for summaries."""
        return f"{self.category}: {self.method} {self.path}" + (f" ({self.key})" if self.key else "")

    def as_dict(self) -> dict[str, Any]:
        return {"category": self.category, "severity": self.severity.value, "method": self.method,
                "path": self.path, "parameter": self.parameter, "key": self.key, "source": self.source,
                "info": self.info}


def merge(findings: list[DastFinding]) -> list[DastFinding]:
    """One finding per fingerprint (wapiti and a passive check may report the same header): the worst severity."""
    best: dict[str, DastFinding] = {}
    for f in findings:
        seen = best.get(f.fingerprint)
        if seen is None or f.severity.rank > seen.severity.rank:
            best[f.fingerprint] = f
    return sorted(best.values(), key=lambda f: (-f.severity.rank, f.category, f.path, f.key))


class WapitiSettings(BaseModel):
    """How wapiti runs: modules, time bounds; offline and loopback-only flags are always added."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    executable: str | None = Field(default=None, description="default: the venv of scripts/setup-wapiti.sh")
    modules: list[str] = Field(default_factory=lambda: ["xss", "sql", "exec", "csp", "http_headers", "cookieflags"])
    scope: str = "folder"
    tasks: int = Field(default=4, ge=1, le=32, description="concurrent crawl tasks (wapiti's default 32 starves "
                       "the other checks running beside it on a small machine)")
    max_scan_time_s: int = Field(default=60, ge=1)
    max_attack_time_s: int = Field(default=20, ge=1)
    timeout_s: float = Field(default=180, gt=0, description="kill wapiti after this long")


@dataclass
class WapitiRun:
    """What one scan gave: findings, or the error that kept it from measuring; the files it left."""

    findings: list[DastFinding] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    crawled: int = 0
    files: dict[str, str] = field(default_factory=dict)


def _runnable(path: str) -> bool:
    return Path(path).is_file() and os.access(path, os.X_OK)


def executable(configured: str | None) -> str | None:
    """The wapiti to run: the configured one only, when set; else $AEVON_WAPITI, the setup script's venv, PATH."""
    if configured:
        return configured if _runnable(configured) else None
    venv = Path(os.environ.get("AEVON_WAPITI_VENV") or DEFAULT_VENV)
    for candidate in (os.environ.get("AEVON_WAPITI"), str(venv / "bin" / "wapiti")):
        if candidate and _runnable(candidate):
            return candidate
    return shutil.which("wapiti")


def argv(exe: str, url: str, s: WapitiSettings, report: Path, work: Path) -> list[str]:
    """The command line: JSON report, a throw-away session, DNS and the update endpoint pointed at loopback."""
    return [
        exe, "-u", url, "-m", ",".join(s.modules), "--flush-session", "--scope", s.scope,
        "-f", "json", "-o", str(report),
        "--store-session", str(work / "session"), "--store-config", str(work / "config"),
        "--dns-endpoint", "localhost", "--endpoint", "http://127.0.0.1:9/", "--no-bugreport", "-v", "0",
        "--max-scan-time", str(s.max_scan_time_s), "--max-attack-time", str(s.max_attack_time_s),
        "--tasks", str(s.tasks),
    ]


def _path(raw: str) -> str:
    path = raw.split("?", 1)[0].split("#", 1)[0]
    return path if path.startswith("/") else "/" + path


def parse_report(data: dict[str, Any]) -> list[DastFinding]:
    """wapiti's JSON report: `vulnerabilities` and `anomalies` map a category to findings with a level 0..4."""
    out: list[DastFinding] = []
    for section in ("vulnerabilities", "anomalies"):
        for category, items in (data.get(section) or {}).items():
            for item in items or []:
                level = min(max(int(item.get("level", 1)), 0), len(LEVELS) - 1)
                info = str(item.get("info", "")).splitlines()[0] if item.get("info") else ""
                parameter = str(item.get("parameter") or "")
                out.append(DastFinding(
                    category=category, severity=LEVELS[level], method=str(item.get("method", "GET")).upper(),
                    path=_path(str(item.get("path", "/"))), key=parameter or info,
                    source=f"wapiti:{item.get('module', section)}", info=info,
                    wstg=tuple(str(w) for w in item.get("wstg") or ()), parameter=parameter,
                ))
    return out


async def _stop(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


async def scan(url: str, s: WapitiSettings, out_dir: Path, stem: str) -> WapitiRun:
    """Run wapiti against `url` (argument list, minimal environment); keep its JSON report and log in `out_dir`."""
    exe = executable(s.executable)
    if exe is None:
        where = s.executable or "its venv"
        return WapitiRun(error=f"wapiti is not installed at {where} (run `make setup` or scripts/setup-wapiti.sh)")
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    report, log = out_dir / f"{stem}-wapiti.json", out_dir / f"{stem}-wapiti.log"
    run = WapitiRun(files={"wapiti log": str(log)})
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aevon-wapiti-") as tmp:
        work = Path(tmp)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LANG": "C.UTF-8"}
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv(exe, url, s, report, work), cwd=work, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            )
        with process_groups.recorded(proc.pid):  # a killed deploy leaves the pid file: the next run kills wapiti
            try:
                async with asyncio.timeout(s.timeout_s):
                    code = await proc.wait()
            except TimeoutError:
                run.error = f"wapiti did not finish within {s.timeout_s:g}s"
                return run
            finally:
                run.seconds = time.monotonic() - t0
                if proc.returncode is None:
                    await _stop(proc)
    if code != 0:
        run.error = f"wapiti exited {code} (see {log.name})"
        return run
    try:
        data = json.loads(await asyncio.to_thread(report.read_text))
        run.findings = parse_report(data)
        run.crawled = int((data.get("infos") or {}).get("crawled_pages_nbr") or 0)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        run.error = f"wapiti's report is unreadable ({type(exc).__name__})"
        return run
    run.files["wapiti report"] = str(report)
    return run
