"""Validate a provider's settings mapping into its pydantic model, naming the failing field path."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from providers.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def require_timeout(check_timeout_s: float, needed_s: float, why: str, location: str) -> None:
    """ConfigError at `location` when a check's timeout does not exceed the `needed_s` it waits by design."""
    if check_timeout_s <= needed_s:
        raise ConfigError(f"must exceed {why} ({needed_s:g}s)", location)


def parse_settings(model: type[M], data: dict[str, Any], location: str) -> M:
    """`model.model_validate(data)`, or ConfigError at `location.<field path>` for the first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise ConfigError(first["msg"], f"{location}.{path}" if path else location) from exc
