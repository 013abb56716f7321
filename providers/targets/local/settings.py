"""Settings of the `local` target (`services[].settings`), validated with errors that name the field."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from providers.config import parse_settings
from providers.errors import ConfigError
from providers.targets.base import TargetContext

_PLACEHOLDERS = ("{python}", "{port}", "{checkout}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _known_placeholders(arg: str) -> str:
    unknown = set(re.findall(r"\{[A-Za-z_]+\}", arg)) - set(_PLACEHOLDERS)
    if unknown:
        raise ValueError(f"unknown placeholder {sorted(unknown)[0]} (known: {', '.join(_PLACEHOLDERS)})")
    return arg


def _env_name(name: str) -> str:
    if not _ENV_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid environment variable name")
    return name


def _health_path(path: str) -> str:
    if not path.startswith("/") or any(c.isspace() for c in path):
        raise ValueError("must be a URL path starting with '/' (no spaces)")
    return path


class LocalSettings(BaseModel):
    """Settings of the local target.

    Example::

        settings:
          command: ["{python}", "-m", "uvicorn", "app:app", "--port", "{port}"]
          port: 8080                 # stable port users hit (the proxy listens on 127.0.0.1:8080)
          health_path: /health
          startup_timeout_s: 30
          env: {LOG_LEVEL: info}
        secrets: {DATABASE_URL: DATABASE_URL}   # reaches the process as $DATABASE_URL
    """

    model_config = ConfigDict(extra="forbid")
    command: list[Annotated[str, AfterValidator(_known_placeholders)]] = Field(
        min_length=1, description="argv template; placeholders {python}, {port} (backend port), {checkout}"
    )
    port: int = Field(ge=1, le=65535, description="stable port on 127.0.0.1 that users hit (the proxy listens)")
    health_path: Annotated[str, AfterValidator(_health_path)] = "/health"
    startup_timeout_s: float = Field(default=30, gt=0, description="how long a new instance may take to answer")
    env: dict[Annotated[str, AfterValidator(_env_name)], str] = Field(
        default_factory=dict, description="extra environment variables (placeholders allowed in values)"
    )
    ready_requires_2xx: bool = Field(
        default=False, description="ready only on a 2xx health answer (default: any HTTP answer means listening)"
    )
    stop_grace_s: float = Field(default=10, ge=0, description="SIGTERM to SIGKILL grace when stopping an instance")


def load_settings(ctx: TargetContext) -> LocalSettings:
    """The service's validated settings; ConfigError at `services.<name>.settings.<field>` (or `.secrets.<name>`)."""
    settings = parse_settings(LocalSettings, ctx.spec.settings, f"services.{ctx.spec.name}.settings")
    for name in ctx.secrets:  # each secret reaches the process as an environment variable of that name
        if not _ENV_NAME.match(name):
            raise ConfigError("must be a valid environment variable name", f"services.{ctx.spec.name}.secrets.{name}")
    return settings
