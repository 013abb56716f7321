"""Optional feature modules of this version: each may add routes, expected columns and an event hook."""

from __future__ import annotations

from types import ModuleType

# A module here may define ROUTES (list of starlette routes), EXPECTED_COLUMNS (like model.py) and
# `async def on_event(conn, kind: str, user_id: int, detail: dict) -> None`, called after each change.
EXTENSIONS: list[ModuleType] = []
