"""Consistency of a checkout's Prisma migrations folder: names, order, migration.sql, lock file, SQL that parses."""

from __future__ import annotations

import re
import tomllib
from datetime import datetime
from pathlib import Path

from providers.migrators.classify import SqlParseError, split_statements
from providers.models import Finding, Severity

# Prisma names folders `<UTC timestamp YYYYMMDDHHMMSS>_<snake_case name>` and applies them in lexical order.
NAME_RE = re.compile(r"(?P<stamp>\d{14})_(?P<label>[A-Za-z0-9_]{1,200})")
LOCK_FILE = "migration_lock.toml"
SUPPORTED_PROVIDERS = {"postgresql", "postgres"}


def _finding(message: str, severity: Severity, location: str | None = None, rule: str = "") -> Finding:
    return Finding(message=message, severity=severity, location=location, detail={"rule": rule})


def schema_provider(schema: Path) -> str | None:
    """The `provider` of the schema's `datasource` block (schema.prisma is Prisma's language, not SQL)."""
    inside = False
    for raw in schema.read_text(errors="replace").splitlines():
        line = raw.split("//", 1)[0].strip()
        if not inside:
            inside = line.startswith("datasource ") and line.endswith("{")
            continue
        if line.startswith("}"):
            return None
        key, _, value = line.partition("=")
        if key.strip() == "provider":
            return value.strip().strip('"')
    return None


def check_folder(schema: Path, migrations: Path) -> list[Finding]:
    """Findings about the folder itself; HIGH ones block a deploy (Prisma would fail or apply in a surprising order).

    Rules: every entry is a folder named `<14-digit UTC timestamp>_<name>` with a real date (HIGH otherwise: its
    apply order is a guess); no two folders share a timestamp (MEDIUM: the order falls back to the name); each
    folder has a migration.sql (HIGH: `migrate deploy` fails on it), which is not empty (LOW); migration_lock.toml
    exists (MEDIUM) and names the schema's datasource provider (HIGH otherwise: Prisma refuses with P3019), which
    must be PostgreSQL (HIGH: this deployer's backups and analysis are PostgreSQL's); no stray files (LOW).
    """
    out: list[Finding] = []
    stamps: dict[str, str] = {}
    for entry in sorted(migrations.iterdir(), key=lambda p: p.name):
        if entry.name == LOCK_FILE or entry.name.startswith("."):
            continue
        if not entry.is_dir():
            out.append(_finding(f"stray file {entry.name} in the migrations folder (Prisma ignores it)",
                                Severity.LOW, entry.name, "stray-file"))
            continue
        out += _check_name(entry.name, stamps)
        sql = entry / "migration.sql"
        if not sql.is_file():
            out.append(_finding(f"migration {entry.name} has no migration.sql: `prisma migrate deploy` fails on it",
                                Severity.HIGH, entry.name, "missing-sql"))
        elif not sql.read_text(errors="replace").strip():
            out.append(_finding(f"migration {entry.name} has an empty migration.sql", Severity.LOW,
                                f"{entry.name}/migration.sql", "empty-sql"))
    out += _check_lock(schema, migrations / LOCK_FILE)
    return out


def _check_name(name: str, stamps: dict[str, str]) -> list[Finding]:
    m = NAME_RE.fullmatch(name)
    if m is None:
        return [_finding(f"migration folder {name!r} is not named <YYYYMMDDHHMMSS>_<name>: its apply order "
                         "(lexical) is a guess", Severity.HIGH, name, "name")]
    try:
        datetime.strptime(m["stamp"], "%Y%m%d%H%M%S")
    except ValueError:
        return [_finding(f"migration folder {name!r} does not start with a real UTC timestamp", Severity.HIGH, name,
                         "name")]
    other = stamps.setdefault(m["stamp"], name)
    if other != name:
        return [_finding(f"migrations {other} and {name} share a timestamp: their order depends on the name",
                         Severity.MEDIUM, name, "duplicate-timestamp")]
    return []


def _check_lock(schema: Path, lock: Path) -> list[Finding]:
    out: list[Finding] = []
    wanted = schema_provider(schema)
    if wanted is not None and wanted not in SUPPORTED_PROVIDERS:
        out.append(_finding(f"the schema's datasource provider is {wanted!r}; only PostgreSQL is supported",
                            Severity.HIGH, schema.name, "provider"))
    if not lock.is_file():
        out.append(_finding(f"{LOCK_FILE} is missing from the migrations folder (commit the one Prisma wrote)",
                            Severity.MEDIUM, LOCK_FILE, "lock-missing"))
        return out
    try:
        provider = tomllib.loads(lock.read_text(errors="replace")).get("provider")
    except tomllib.TOMLDecodeError as exc:
        return [*out, _finding(f"{LOCK_FILE} is not valid TOML: {exc}", Severity.HIGH, LOCK_FILE, "lock-invalid")]
    if wanted is not None and provider != wanted:
        out.append(_finding(f"{LOCK_FILE} says provider {provider!r} but the schema's datasource says {wanted!r}: "
                            "Prisma refuses to apply (P3019)", Severity.HIGH, LOCK_FILE, "lock-provider"))
    return out


def check_pending(migrations: Path, pending: list[str], applied: list[str]) -> list[Finding]:
    """Each pending migration parses (HIGH otherwise, at its line) and sorts after every applied one.

    A pending migration older than an applied one was merged late (written on a branch): Prisma applies it anyway,
    so this is MEDIUM: check that it does not conflict with the ones applied after it was written.
    """
    out: list[Finding] = []
    newest = max(applied, default="")
    for name in pending:
        sql = migrations / name / "migration.sql"
        if not sql.is_file():
            continue  # reported by check_folder
        try:
            split_statements(name, sql.read_text(errors="replace"))
        except SqlParseError as exc:
            out.append(_finding(f"migration {name} does not parse: {exc}", Severity.HIGH, exc.location, "parse"))
        if newest and name < newest:
            out.append(_finding(f"pending migration {name} is older than applied {newest}: it was merged late; "
                                "check that it does not conflict with what was applied since",
                                Severity.MEDIUM, name, "out-of-order"))
    return out
