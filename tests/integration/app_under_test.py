"""One version of the sample app serving on free ports (api + web) over a fresh, migrated database, for check tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from deployments.spec import DatabaseSpec, EnvironmentSpec
from providers.checks.base import VALIDATION, CheckContext
from providers.migrators.base import MigratorContext
from providers.migrators.prisma.migrator import make_migrator
from providers.models import Release, ServiceVersion
from providers.registry import CHECKS, resolve
from tests.pg import temp_database
from tests.sample_app import checkout, run_app


@dataclass(frozen=True)
class Serving:
    """Where a version answers: its SHA, the api and web base URLs, and its checkout."""

    tag: str
    sha: str
    api: str
    web: str
    checkout: Path

    def services(self) -> dict[str, ServiceVersion]:
        """What a CheckInput carries for this version (the shape the deploy flow passes)."""
        return {
            "api": ServiceVersion(service="api", version=self.sha, url=self.api),
            "web": ServiceVersion(service="web", version=self.sha, url=self.web),
        }

    def release(self, env: str = "dev") -> Release:
        return Release(release_id=f"{env}-{self.sha[:12]}-{self.tag}", env=env, ref=self.tag, sha=self.sha,
                       checkout_dir=str(self.checkout))


@asynccontextmanager
async def serving(repo: Path, tag: str, tmp: Path, env: dict[str, str] | None = None) -> AsyncIterator[Serving]:
    """Check out `tag`, migrate a temp database with the real Prisma migrator, run api and web; stop them after.

    `env` reaches both roles (for example SENTRY_DSN and SENTRY_ENVIRONMENT for the bad-errors version).
    """
    work = tmp / f"app-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    sha, co = await checkout(repo, tag, work / "cache")
    async with temp_database() as url:
        migrator = make_migrator(MigratorContext("dev", DatabaseSpec(), SecretStr(url), work / "migrator"))
        await migrator.apply(co)
        base = {"AEVON_RELEASE_SHA": sha, **(env or {})}
        async with run_app(co, "api", {**base, "DATABASE_URL": url}, log=work / "api.log") as api:
            async with run_app(co, "web", {**base, "API_URL": api}, log=work / "web.log") as web:
                yield Serving(tag=tag, sha=sha, api=api, web=web, checkout=co)


EXAMPLE = Path(__file__).resolve().parents[2] / "deployments" / "examples" / "monitoring.yaml"


def example_spec() -> dict[str, Any]:
    """deployments/examples/monitoring.yaml as a mapping (the checks' tests build their settings from it)."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return data


def example_check(name: str, tmp: Path, settings: dict[str, Any] | None = None,
                  secrets: dict[str, SecretStr] | None = None, extra: dict[str, object] | None = None) -> Any:
    """The example spec's check `name`, with `settings` merged over its own, built through the registry."""
    raw = example_spec()
    env = EnvironmentSpec.model_validate(raw)
    index, spec = next((i, c) for i, c in enumerate(env.validation.checks) if c.name == name)
    spec = spec.model_copy(update={"settings": {**spec.settings, **(settings or {})}})
    factory = resolve(CHECKS, "check kind", spec.kind, name)
    return factory(CheckContext(env=env, spec=spec, secrets=secrets or {}, artifacts_dir=tmp / "artifacts",
                                baseline_dir=tmp / "baselines", extra=extra or {}, section=VALIDATION, index=index))
