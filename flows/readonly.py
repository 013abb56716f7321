"""Read-only views of an environment (plan, status): every missing secret at once, what each target serves now."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from deployments.loader import load_spec, spec_path
from deployments.secret_values import is_url_use, secret_uses
from deployments.settings import AevonSettings, resolve_secrets
from deployments.spec import EnvironmentSpec
from flows.runtime import Runtime, build_runtime
from providers.models import ServiceVersion

PLACEHOLDER = "aevon-missing-secret"  # never sent anywhere: whatever needs a missing secret is not asked
PLACEHOLDER_URL = "postgresql://missing-secret.invalid/missing"
PROBE_TIMEOUT_S = 30.0


@dataclass
class ReadOnly:
    """A runtime that only looks: `missing` secret name -> message; its placeholders are never used."""

    rt: Runtime
    missing: dict[str, str] = field(default_factory=dict)

    def needs(self, secrets: dict[str, str]) -> list[str]:
        """The missing secrets among a spec item's `secrets` mapping (key -> secret name)."""
        return sorted({name for name in secrets.values() if name in self.missing})

    def service_needs(self, name: str) -> list[str]:
        return self.needs(self.rt.spec.service(name).secrets)

    @property
    def database_needs(self) -> list[str]:
        db = self.rt.spec.database
        return [db.url_secret] if db is not None and db.url_secret in self.missing else []


def _placeholders(spec: EnvironmentSpec, missing: dict[str, str]) -> dict[str, SecretStr]:
    uses = secret_uses(spec)
    out: dict[str, SecretStr] = {}
    for name in missing:
        url = any(is_url_use(w) for w in uses.get(name, []))
        out[name] = SecretStr(PLACEHOLDER_URL if url else PLACEHOLDER)
    return out


def read_only_runtime(env: str, spec_dir: Path | None, settings: AevonSettings) -> ReadOnly:
    """Build the environment's runtime with every secret that is set; list (not raise) the ones that are not."""
    spec = load_spec(env, spec_dir)
    missing: dict[str, str] = {}
    secrets = resolve_secrets(spec, spec_path(env, spec_dir), missing=missing)
    rt = build_runtime(env, spec_dir, settings=settings, secrets={**secrets, **_placeholders(spec, missing)})
    return ReadOnly(rt=rt, missing=missing)


@dataclass
class Serving:
    """What one target answered when asked what serves now."""

    service: str
    provider: str
    version: ServiceVersion | None = None
    unreachable: str | None = None  # why it could not be asked (vendor error, missing secret)

    def describe(self) -> str:
        if self.unreachable is not None:
            return f"unreachable: {self.unreachable}"
        return self.version.version[:12] if self.version else "nothing deployed"


async def ask_targets(ro: ReadOnly) -> dict[str, Serving]:
    """Each target's `current()`, in parallel; errors and missing secrets become `unreachable` with the reason."""
    from tasks.services import describe_error

    async def one(name: str) -> Serving:
        provider = ro.rt.spec.service(name).provider
        needs = ro.service_needs(name)
        if needs:
            return Serving(name, provider, unreachable=f"secret {', '.join(needs)} is not set")
        try:
            return Serving(name, provider, version=await asyncio.wait_for(ro.rt.targets[name].current(),
                                                                          PROBE_TIMEOUT_S))
        except TimeoutError:
            return Serving(name, provider, unreachable=f"no answer in {PROBE_TIMEOUT_S:.0f}s")
        except Exception as exc:  # any vendor failure is what we show, never a traceback
            return Serving(name, provider, unreachable=describe_error(exc))

    names = list(ro.rt.targets)
    found = await asyncio.gather(*(one(n) for n in names))
    return dict(zip(names, found, strict=True))
