"""A `screenshot` stand-in check (plugin: AEVON_PLUGINS=tests.standins,tests.integration.evidence_check) that writes
a real PNG and a JSON report into its artifacts folder, as the E2E and DAST checks do, and returns a set outcome."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from providers.checks.base import BaseCheck, CheckContext, CheckInput
from providers.models import CheckResult, Outcome

CHECKS = {"screenshot": "tests.integration.evidence_check:make_check"}
PLUGINS = "tests.standins,tests.integration.evidence_check"
WIDTH, HEIGHT = 24, 16


def png(width: int = WIDTH, height: int = HEIGHT, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid RGB PNG of one colour (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class ScreenshotSettings(BaseModel):
    """Settings of the `screenshot` stand-in."""

    model_config = ConfigDict(extra="forbid")
    outcome: Outcome = Outcome.FAILED


class ScreenshotCheck(BaseCheck):
    """Writes `<artifacts_dir>/<release>/screen.png` and `report.json`, then returns `settings.outcome`."""

    kind = "screenshot"

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self.outcome = ctx.settings(ScreenshotSettings).outcome
        self.folder = ctx.artifacts_dir

    async def measure(self, inp: CheckInput) -> CheckResult:
        out = self.folder / inp.release.release_id
        shot, report = out / "screen.png", out / "report.json"

        def write() -> None:
            out.mkdir(parents=True, exist_ok=True)
            shot.write_bytes(png())
            report.write_text(json.dumps({"release": inp.release.release_id, "page": "/"}))

        await asyncio.to_thread(write)
        return self.result(self.outcome, "took a screenshot of /", artifacts={"screenshot": str(shot),
                                                                             "report": str(report)})


def make_check(ctx: CheckContext) -> ScreenshotCheck:
    """Factory registered as `screenshot`."""
    return ScreenshotCheck(ctx)


def artifact_file(state_dir: Path, release_id: str, name: str) -> Path:
    """Where the check of `release_id` (env dev) left `name`."""
    return state_dir / "artifacts" / "dev" / release_id / name
