"""Explicit registries: provider name -> factory, for service targets, checks and migrators."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from providers.errors import ConfigError

# name -> "module:attribute" of a factory. Imported lazily so that a spec using only `local` never imports the
# kubernetes or google clients. A factory takes (context) and returns an object of the kind's protocol.
TARGETS: dict[str, str] = {
    "local": "providers.targets.local:make_target",
    "memory": "providers.targets.memory:make_target",
    "vercel": "providers.targets.vercel:make_target",
    "gke": "providers.targets.kubernetes:make_gke_target",
    "kubernetes": "providers.targets.kubernetes:make_target",
    "railway": "providers.targets.railway:make_target",
    "render": "providers.targets.render:make_target",
    "koyeb": "providers.targets.koyeb:make_target",
}

CHECKS: dict[str, str] = {
    "health": "providers.checks.health:make_check",
    "sleep": "providers.checks.sleep:make_check",
    "migration_readiness": "providers.checks.migration_readiness:make_check",
    # pre-deploy gates against GitHub and the image registry
    "review": "providers.checks.github_review:make_check",
    "ci_status": "providers.checks.github_ci:make_check",
    "dependency_scan": "providers.checks.dependency_scan:make_check",
    "image_exists": "providers.checks.image_exists:make_check",
    "release_tag": "providers.checks.release_tag:make_check",
    # post-deploy validation
    "e2e": "providers.checks.e2e:make_check",
    "dast": "providers.checks.dast:make_check",
    "perf": "providers.checks.perf:make_check",
    "sentry": "providers.checks.sentry:make_check",
    "prometheus": "providers.checks.prometheus:make_check",
}

MIGRATORS: dict[str, str] = {
    "prisma": "providers.migrators.prisma:make_migrator",
}


def resolve(registry: dict[str, str], kind: str, name: str, location: str) -> Callable[..., Any]:
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
