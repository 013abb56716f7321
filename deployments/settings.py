"""Settings and secrets through pydantic-settings: environment variables, `.env.<env>`, Prefect Secret blocks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from deployments.spec import EnvironmentSpec
from providers.errors import SecretMissing


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


class _SecretsBase(BaseSettings):
    """Secrets by their exact names; other variables of the environment or the .env file are ignored."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)


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


def resolve_secrets(spec: EnvironmentSpec, spec_file: Path, env_file_dir: Path | None = None) -> dict[str, SecretStr]:
    """Every secret the spec names, as SecretStr; SecretMissing names the spec file, field path and where we looked.

    Looks in: the process environment, `.env.<env>` (in `env_file_dir`, default the current directory), and
    Prefect Secret blocks when AEVON_PREFECT_SECRETS=1.
    """
    needed = needed_secrets(spec)
    if not needed:
        return {}
    env_file = (env_file_dir or Path.cwd()) / f".env.{spec.environment}"
    fields: dict[str, object] = {name: (SecretStr | None, None) for name in needed}
    model = create_model("EnvSecrets", __base__=_SecretsBase, **fields)  # type: ignore[call-overload]
    loaded = model(_env_file=str(env_file))
    out: dict[str, SecretStr] = {}
    for name, where in needed.items():
        value = getattr(loaded, name) or _from_prefect_block(name)
        if value is None or not value.get_secret_value():
            raise SecretMissing(
                f"secret {name} is not set (looked in the environment, {env_file.name}"
                f"{', Prefect Secret blocks' if os.environ.get('AEVON_PREFECT_SECRETS') == '1' else ''})",
                f"{spec_file}: {where}",
            )
        out[name] = value
    return out
