"""Build everything one environment's run needs from its spec, with no side effect: a broken spec fails here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from deployments.loader import load_spec, spec_path
from deployments.secret_values import check_value
from deployments.settings import AevonSettings, resolve_secrets
from deployments.spec import CheckSpec, EnvironmentSpec
from providers.checks.base import GATES, VALIDATION, Check, CheckContext, Section
from providers.migrators.base import Migrator, MigratorContext
from providers.registry import build_registry, resolve
from providers.source.git import GitSource
from providers.state.store import StateStore
from providers.targets.base import ServiceTarget, TargetContext, require_canary


@dataclass
class Runtime:
    """One environment, ready to act on: spec, secrets, source, targets, gates, checks, migrator, state database."""

    spec: EnvironmentSpec
    spec_file: Path
    settings: AevonSettings
    secrets: dict[str, SecretStr]
    source: GitSource
    targets: dict[str, ServiceTarget]
    gates: list[tuple[CheckSpec, Check]]
    checks: list[tuple[CheckSpec, Check]]
    migrator: Migrator | None
    state: StateStore  # the run's ledger and backup catalog: one pool, opened on first use
    state_dir: Path
    layers: list[list[str]] = field(default_factory=list)

    def artifacts_dir(self, release_id: str) -> Path:
        d = self.state_dir / "artifacts" / self.spec.environment / release_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    async def aclose(self) -> None:
        for target in self.targets.values():
            await target.aclose()
        await self.state.close()


def service_layers(spec: EnvironmentSpec) -> list[list[str]]:
    """Services grouped into layers by `depends_on`: each layer deploys in parallel after the previous one."""
    remaining = {s.name: set(s.depends_on) for s in spec.services}
    layers: list[list[str]] = []
    done: set[str] = set()
    while remaining:
        ready = sorted(n for n, deps in remaining.items() if deps <= done)
        if not ready:
            from providers.errors import ConfigError

            raise ConfigError(f"services.depends_on has a cycle among {', '.join(sorted(remaining))}")
        layers.append(ready)
        done.update(ready)
        for n in ready:
            del remaining[n]
    return layers


def _pick(secrets: dict[str, SecretStr], mapping: dict[str, str]) -> dict[str, SecretStr]:
    return {key: secrets[name] for key, name in mapping.items()}


def build_runtime(
    env: str,
    spec_dir: Path | None = None,
    *,
    settings: AevonSettings,
    extra: dict[str, object] | None = None,
    secrets: dict[str, SecretStr] | None = None,
) -> Runtime:
    """Load the spec, resolve its secrets and build every provider. Raises ConfigError before any side effect.

    `settings` are the run's, built once at its entry (the CLI command or the flow); `secrets`, when given, are used
    instead of resolving them (plan and status pass placeholders for the missing ones and never act with them).
    """
    spec = load_spec(env, spec_dir)
    file = spec_path(env, spec_dir)
    registry = build_registry(settings.plugin_modules())
    secrets = resolve_secrets(spec, file) if secrets is None else secrets
    # refused by name before the driver's own parse error could quote it (a worker's run has no CLI in front)
    check_value("AEVON_STATE_DB_URL", settings.state_db_url.get_secret_value(), ["AEVON_STATE_DB_URL"])
    state_dir = settings.state_dir.resolve()
    source = GitSource(spec.source.repo, state_dir / "checkouts")
    state = StateStore(settings.state_db_url)
    layers = service_layers(spec)
    extra = extra or {}
    factories = {
        svc.name: resolve(registry.targets, "service provider", svc.provider, f"{file}: services.{svc.name}.provider")
        for svc in spec.services
    }
    targets: dict[str, ServiceTarget] = {}
    for svc in spec.services:
        factory = factories[svc.name]
        tdir = state_dir / "targets" / env / svc.name
        tdir.mkdir(parents=True, exist_ok=True)
        targets[svc.name] = factory(
            TargetContext(
                env=env, spec=svc, secrets=_pick(secrets, svc.secrets), state_dir=tdir, source=source,
                preview=env == "dev", extra=extra,
            )
        )
    require_canary(spec, targets, file)  # a canary strategy on a target that cannot split traffic is refused here

    def checks_of(section: Section, specs: list[CheckSpec]) -> list[tuple[CheckSpec, Check]]:
        out = []
        for i, c in enumerate(specs):
            ctx = CheckContext(
                env=spec, spec=c, secrets=_pick(secrets, c.secrets),
                artifacts_dir=state_dir / "artifacts" / env, baseline_dir=state_dir / "baselines" / env, extra=extra,
                section=section, index=i, spec_file=file,
                state=state,
            )
            factory = resolve(registry.checks, "check kind", c.kind, ctx.location("kind"))
            out.append((c, factory(ctx)))
        return out

    migrator: Migrator | None = None
    if spec.database is not None:
        factory = resolve(registry.migrators, "migrator", spec.database.provider, f"{file}: database.provider")
        mdir = state_dir / "migrations" / env
        mdir.mkdir(parents=True, exist_ok=True)
        migrator = factory(
            MigratorContext(env=env, spec=spec.database, database_url=secrets[spec.database.url_secret], state_dir=mdir,
                            shared=state.inverse_cache)  # down scripts computed once for every worker and env
        )
    return Runtime(
        spec=spec, spec_file=file, settings=settings, secrets=secrets, source=source, targets=targets,
        gates=checks_of(GATES, spec.gates), checks=checks_of(VALIDATION, spec.validation.checks),
        migrator=migrator, state=state, state_dir=state_dir, layers=layers,
    )
