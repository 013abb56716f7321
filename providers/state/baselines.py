"""Per-environment baselines of checks, kept per release, so a deploy compares against the last good one."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class BaselineStore:
    """JSON files under `root/<check>/`: one per good release, plus `latest.json` (the last good release's).

    `root` is a CheckContext's `baseline_dir` (already per environment). Writes are atomic (temp file + rename).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, check: str) -> Path:
        return self.root / _SAFE.sub("_", check)

    def latest(self, check: str) -> dict[str, Any] | None:
        """The baseline recorded by the last good release, or None before the first one."""
        path = self._dir(check) / "latest.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def for_release(self, check: str, release_id: str) -> dict[str, Any] | None:
        """The baseline a given release recorded."""
        path = self._dir(check) / f"{_SAFE.sub('_', release_id)}.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def save(self, check: str, release_id: str, data: dict[str, Any]) -> None:
        """Record `data` as `release_id`'s baseline and as the latest."""
        d = self._dir(check)
        d.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"release_id": release_id, **data}, indent=2, default=str)
        for name in (f"{_SAFE.sub('_', release_id)}.json", "latest.json"):
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
            with os.fdopen(fd, "w") as f:
                f.write(payload)
            os.replace(tmp, d / name)
