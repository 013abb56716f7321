"""What a project's schema.prisma asks of the offline toolkit: its generators' engineType, the env() it reads."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from providers.models import Finding, Severity

_BLOCK_RE = re.compile(r"^(generator|datasource)\s+(\w+)\s*\{$")
_ENV_RE = re.compile(r"""env\(\s*["']([^"']+)["']\s*\)""")
# Datasource properties naming the environment's own database: the migrator fills them with its URL (Prisma
# validates that they are set, the driver adapter of the toolkit connects with DATABASE_URL whatever they say).
SAME_DATABASE = ("url", "directUrl")


@dataclass
class SchemaBlock:
    """One `generator` or `datasource` block: its properties (raw values) and the env() names they read."""

    kind: str
    name: str
    line: int
    properties: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # property -> env var name


def blocks(schema: Path) -> list[SchemaBlock]:
    """The generator and datasource blocks of `schema` (Prisma's schema language; comments removed)."""
    out: list[SchemaBlock] = []
    current: SchemaBlock | None = None
    for number, raw in enumerate(schema.read_text(errors="replace").splitlines(), start=1):
        line = raw.split("//", 1)[0].strip()
        if current is None:
            found = _BLOCK_RE.match(line)
            if found:
                current = SchemaBlock(found[1], found[2], number)
                out.append(current)
            continue
        if line.startswith("}"):
            current = None
            continue
        key, eq, value = line.partition("=")
        if not eq:
            continue
        current.properties[key.strip()] = value.strip()
        env = _ENV_RE.search(value)
        if env:
            current.env[key.strip()] = env[1]
    return out


def env_names(schema: Path) -> dict[str, str]:
    """Every env var the schema reads -> the `block.property` that reads it."""
    return {name: f"{b.kind} {b.name}: {prop}" for b in blocks(schema) for prop, name in b.env.items()}


def filled_with_database_url(schema: Path) -> list[str]:
    """The env vars of the datasource's url / directUrl: the migrator sets them to the environment's database URL."""
    return [name for b in blocks(schema) if b.kind == "datasource" for prop, name in b.env.items()
            if prop in SAME_DATABASE]


def findings(schema: Path, available: Mapping[str, str] | None = None) -> list[Finding]:
    """What the offline toolkit needs of the schema and is missing; HIGH ones make every Prisma call fail.

    - each `generator` with provider prisma-client-js / prisma-client needs `engineType = "client"`: otherwise
      Prisma looks for a native query engine, which it downloads (no network here);
    - each env() name the schema reads must have a value: url / directUrl of the datasource are filled with the
      environment's database URL; any other (shadowDatabaseUrl, a generator's output ...) must be set in the
      deployer's process environment (`available`, default os.environ), which Prisma inherits.
    """
    env = os.environ if available is None else available
    out: list[Finding] = []
    for b in blocks(schema):
        provider = b.properties.get("provider", "").strip("\"'")
        if b.kind == "generator" and provider in ("prisma-client-js", "prisma-client"):
            engine = b.properties.get("engineType", "").strip("\"'")
            if engine != "client":
                out.append(Finding(
                    message=f'{schema.name}: generator {b.name} needs engineType = "client" (it has '
                            f'{engine or "none"}): without it Prisma downloads a native engine, which offline '
                            f'fails on every call. Add the line `engineType = "client"` to the generator block',
                    severity=Severity.HIGH, location=f"{schema.name}:{b.line}", detail={"rule": "engine-type"}))
        for prop, name in b.env.items():
            if b.kind == "datasource" and prop in SAME_DATABASE:
                continue
            if not env.get(name):
                out.append(Finding(
                    message=f"{schema.name}: {b.kind} {b.name} reads env(\"{name}\") for {prop}, which is not "
                            f"set: set {name} in the environment the deployer runs in (Prisma refuses to run "
                            "with it unset)",
                    severity=Severity.HIGH, location=f"{schema.name}:{b.line}", detail={"rule": "env", "env": name}))
    return out
