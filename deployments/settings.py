"""Settings and secrets through pydantic-settings: environment variables, `.env.<env>`, Prefect Secret blocks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from deployments.secret_values import check_name, check_value, secret_uses
from deployments.spec import EnvironmentSpec
from providers.errors import ConfigError, SecretMissing


class AevonSettings(BaseSettings):
    """Orchestrator settings (AEVON_* variables or `.env`)."""

    model_config = SettingsConfigDict(env_prefix="AEVON_", env_file=".env", extra="ignore")

    state_db_url: SecretStr = Field(
        default=SecretStr("postgresql://postgres@127.0.0.1:5432/aevon"),
        description="PostgreSQL database holding the release ledger and rollback journal",
    )
    state_dir: Path = Field(default=Path(".aevon"), description="local state: checkouts, target state, artifacts")
    sentry_dsn: SecretStr | None = Field(default=None, description="where the orchestrator reports its own crashes")
    lock_lease_s: float = Field(default=60.0, ge=60.0, description="environment lock lease (a crashed holder's slot)")
    plugins: str = Field(default="", description="comma-separated modules adding providers (tests: tests.standins)")

    def plugin_modules(self) -> list[str]:
        """The plugin modules named by AEVON_PLUGINS, in order."""
        return [m.strip() for m in self.plugins.split(",") if m.strip()]


def needed_secrets(spec: EnvironmentSpec) -> dict[str, str]:
    """secret name -> the first spec field that needs it (for error messages)."""
    out: dict[str, str] = {}
    if spec.database is not None:
        out.setdefault(spec.database.url_secret, "database.url_secret")
    for i, svc in enumerate(spec.services):
        for key, name in svc.secrets.items():
            out.setdefault(name, f"services[{i}].secrets.{key}")
    if spec.records.github is not None:
        out.setdefault(spec.records.github.token_secret, "records.github.token_secret")
    for section, checks in (("gates", spec.gates), ("validation.checks", spec.validation.checks)):
        for i, chk in enumerate(checks):
            for key, name in chk.secrets.items():
                out.setdefault(name, f"{section}[{i}].secrets.{key}")
    return out


def _from_prefect_block(name: str) -> SecretStr | None:
    """A Prefect Secret block named like the secret (lower-case, '_' -> '-'), when a Prefect API is configured."""
    if os.environ.get("AEVON_PREFECT_SECRETS", "0") != "1":
        return None
    try:
        from prefect.blocks.system import Secret

        block: Any = Secret.load(name.lower().replace("_", "-"), _sync=True)  # type: ignore[call-arg]
    except Exception:  # no such block, or no API reachable: not found here
        return None
    return SecretStr(str(block.get()))


def resolve_secrets(
    spec: EnvironmentSpec, spec_file: Path, env_file_dir: Path | None = None, missing: dict[str, str] | None = None
) -> dict[str, SecretStr]:
    """Every secret the spec names, as SecretStr; SecretMissing names the spec file, field path and where we looked.

    With `missing` (plan, status), unset secrets are collected there (name -> message) and left out instead.

    Looks in: the process environment, `.env.<env>` (in `env_file_dir`, default the current directory), and
    Prefect Secret blocks when AEVON_PREFECT_SECRETS=1.
    """
    needed = needed_secrets(spec)
    if not needed:
        return {}
    uses = secret_uses(spec)
    for name, where in needed.items():  # any env-var name works (`_TOKEN`, `json`); others are refused
        check_name(name, f"{spec_file}: {where}")
    env_file = (env_file_dir or Path.cwd()) / f".env.{spec.environment}"
    from_file = _read_env_file(env_file, spec_file)
    out: dict[str, SecretStr] = {}
    for name, where in needed.items():
        raw = os.environ.get(name) or from_file.get(name)
        value = SecretStr(raw) if raw else _from_prefect_block(name)
        if value is None or not value.get_secret_value():
            err = SecretMissing(
                f"secret {name} is not set (looked in the environment, {env_file.name}"
                f"{', Prefect Secret blocks' if os.environ.get('AEVON_PREFECT_SECRETS') == '1' else ''})",
                f"{spec_file}: {where}",
            )
            if missing is None:
                raise err
            missing[name] = str(err)
            continue
        check_value(name, value.get_secret_value(), [f"{spec_file}: {w}" for w in uses.get(name, [where])])
        out[name] = value
    return out


def _read_env_file(env_file: Path, spec_file: Path) -> dict[str, str]:
    """The variables of `.env.<env>` (absent: none); ConfigError naming the file when it cannot be read."""
    if not env_file.is_file():
        return {}
    try:
        values = dotenv_values(env_file, encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # the decoder's text quotes bytes of the file: not passed on
        raise ConfigError("cannot be read as UTF-8 text (it holds the secrets of this environment)",
                          str(env_file)) from None
    return {k: v for k, v in values.items() if v is not None}
