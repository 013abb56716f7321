"""Explicit registries: provider name -> factory, for service targets, gates and checks, and migrators."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from providers.errors import ConfigError

# name -> "module:attribute" of a factory. Imported lazily so that a spec using only `local` never imports the
# kubernetes or google clients. A factory takes (context) and returns an object of the kind's protocol.
TARGETS: dict[str, str] = {
    "local": "providers.targets.local.target:make_target",
    "vercel": "providers.targets.paas.vercel:make_target",
    "gke": "providers.targets.kubernetes.target:make_gke_target",
    "kubernetes": "providers.targets.kubernetes.target:make_target",
    "railway": "providers.targets.paas.railway:make_target",
    "render": "providers.targets.paas.render:make_target",
    "koyeb": "providers.targets.paas.koyeb:make_target",
}

CHECKS: dict[str, str] = {
    "health": "providers.checks.health:make_check",
    "sleep": "tests.standins.sleep:make_check",
    "migration_readiness": "providers.gates.migration_readiness:make_check",
    # pre-deploy gates against GitHub and the image registry
    "review": "providers.gates.review:make_check",
    "ci_status": "providers.gates.ci_status:make_check",
    "dependency_scan": "providers.gates.dependency_scan:make_check",
    "image_exists": "providers.gates.image_exists:make_check",
    "release_tag": "providers.gates.release_tag:make_check",
    # post-deploy validation
    "e2e": "providers.checks.e2e.check:make_check",
    "dast": "providers.checks.dast.check:make_check",
    "perf": "providers.checks.perf.check:make_check",
    "sentry": "providers.checks.sentry:make_check",
    "prometheus": "providers.checks.prometheus:make_check",
    "prometheus_query": "providers.checks.prometheus_query:make_check",
}

MIGRATORS: dict[str, str] = {
    "prisma": "providers.migrators.prisma.migrator:make_migrator",
}


@dataclass(frozen=True)
class Registry:
    """The providers one run can use: the built-in ones plus those of the plugin modules the settings name."""

    targets: Mapping[str, str]
    checks: Mapping[str, str]
    migrators: Mapping[str, str]


def build_registry(plugins: Sequence[str] = ()) -> Registry:
    """The built-in registry extended by each plugin module's own `TARGETS`, `CHECKS` and `MIGRATORS` dicts.

    Plugins are how tests and benchmarks add their stand-ins (`AEVON_PLUGINS=tests.standins`) without putting them in
    the production registry.
    """
    targets, checks, migrators = dict(TARGETS), dict(CHECKS), dict(MIGRATORS)
    for name in plugins:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"plugin module {name!r} cannot be imported ({exc.name})", "AEVON_PLUGINS") from exc
        targets.update(getattr(module, "TARGETS", {}))
        checks.update(getattr(module, "CHECKS", {}))
        migrators.update(getattr(module, "MIGRATORS", {}))
    return Registry(targets=targets, checks=checks, migrators=migrators)


def resolve(registry: Mapping[str, str], kind: str, name: str, location: str) -> Callable[..., Any]:
    """Return the factory registered as `name`, or raise ConfigError naming `location` and the known names."""
    target = registry.get(name)
    if target is None:
        known = ", ".join(sorted(registry))
        raise ConfigError(f"unknown {kind} {name!r} (known: {known})", location)
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{kind} {name!r} is registered but not installed ({exc.name})", location) from exc
    factory = getattr(module, attr)
    if not callable(factory):
        raise ConfigError(f"{kind} {name!r}: {target} is not callable", location)
    return factory  # type: ignore[no-any-return]
