"""Expand and contract phases of a release's pending migrations: what runs before the services, what after."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pglast import ast, enums
from pydantic import BaseModel, Field

from providers.migrators.classify import (
    Category,
    Classified,
    SqlParseError,
    classify,
    split_statements,
    unique_indexes_of,
)
from providers.models import Finding, Severity

AT = enums.AlterTableType
_CONTRACT_ALTERS = (AT.AT_DropColumn, AT.AT_DropConstraint)
# Statements that change no schema: they neither expand nor contract.
_NEUTRAL = (ast.TransactionStmt, ast.VariableSetStmt, ast.CommentStmt, ast.GrantStmt, ast.GrantRoleStmt)


class Kind(StrEnum):
    """What one statement is for the phases: EXPAND (the old code still runs on it), CONTRACT (drops what the new
    code no longer uses), NEUTRAL (no schema change)."""

    EXPAND = "expand"
    CONTRACT = "contract"
    NEUTRAL = "neutral"


class Phases(BaseModel):
    """Pending migrations split in two: `expand` before the services, `contract` after the release is verified."""

    expand: list[str] = Field(default_factory=list)
    contract: list[str] = Field(default_factory=list)
    mixed: list[str] = Field(default_factory=list)  # migrations holding expand and contract statements
    findings: list[Finding] = Field(default_factory=list)  # one per mixed migration, one per early contract


def statement_kind(c: Classified) -> Kind:
    """CONTRACT for drops of tables, columns, indexes, constraints, types, views, functions, sequences that existed
    before the deploy (a drop of an object created by the same deploy is part of its expand); NEUTRAL for
    statements without a schema change; EXPAND otherwise."""
    n = c.stmt.node
    if isinstance(n, _NEUTRAL):
        return Kind.NEUTRAL
    new = c.category == Category.ADDITIVE and "new in this deploy" in c.reason
    if isinstance(n, ast.DropStmt):
        return Kind.EXPAND if new else Kind.CONTRACT
    if isinstance(n, ast.AlterTableStmt) and not new and n.cmds:
        if all(cmd.subtype in _CONTRACT_ALTERS for cmd in n.cmds):
            return Kind.CONTRACT
    return Kind.EXPAND


def migration_kinds(classified: Iterable[Classified]) -> dict[str, set[Kind]]:
    """Per migration (in order), the kinds of its statements (NEUTRAL left out)."""
    out: dict[str, set[Kind]] = {}
    for c in classified:
        kinds = out.setdefault(c.stmt.migration, set())
        if c.stmt.node is None:  # does not parse: treat as expand (it is refused anyway)
            kinds.add(Kind.EXPAND)
            continue
        kind = statement_kind(c)
        if kind != Kind.NEUTRAL:
            kinds.add(kind)
    return out


def split(
    migrations: list[tuple[str, str]], *, fresh: bool = False, unique: Iterable[str] = ()
) -> Phases:
    """Split `migrations` ((name, sql) in apply order): contract = the trailing run of contract-only migrations.

    Everything before that run is expand, applied before the services (a contract-only migration followed by an
    expand one cannot wait: migrations apply in order, and it gets a finding). A migration mixing both kinds is
    expand, with a finding saying how to split it. Into an empty database there is nothing to contract.
    """
    names = [name for name, _ in migrations]
    kinds = migration_kinds(classify(migrations, fresh=fresh, unique=unique))
    for name in names:
        kinds.setdefault(name, set())
    contract_only = {n for n in names if kinds[n] == {Kind.CONTRACT}}
    cut = len(names)
    while not fresh and cut > 0 and names[cut - 1] in contract_only:
        cut -= 1
    phases = Phases(expand=names[:cut], contract=names[cut:])
    for name in names[:cut]:
        if kinds[name] == {Kind.EXPAND, Kind.CONTRACT}:
            phases.mixed.append(name)
            phases.findings.append(Finding(
                message=(f"phases: {name} both expands and contracts the schema, so its drops run before the new "
                         "release is verified: split it, keeping the additions here and moving the DROP statements "
                         "into a later migration of their own (applied after validation, in the contract phase)"),
                severity=Severity.MEDIUM, location=f"{name}/migration.sql",
                detail={"category": "phases", "migration": name, "phase": "expand"}))
        elif name in contract_only and not fresh:
            phases.findings.append(Finding(
                message=(f"phases: {name} only drops, but a later migration expands the schema, so it runs before "
                         "the new release is verified: order it after the expanding migrations (or ship it in the "
                         "next release) to apply it in the contract phase"),
                severity=Severity.MEDIUM, location=f"{name}/migration.sql",
                detail={"category": "phases", "migration": name, "phase": "expand"}))
    return phases


def unique_in(migrations: Iterable[tuple[str, str]]) -> set[str]:
    """Names of unique indexes and constraints the (applied) `migrations` create; unparsable ones are skipped."""
    out: set[str] = set()
    for name, sql in migrations:
        try:
            stmts = split_statements(name, sql)
        except SqlParseError:
            continue
        for st in stmts:
            out |= unique_indexes_of(st.node)
    return out


def describe(phases: Phases) -> str:
    """One line for plan, the approval dialog and the report."""
    expand = ", ".join(phases.expand) or "nothing"
    contract = ", ".join(phases.contract) or "nothing"
    return f"expand (before the services): {expand}; contract (after validation and the bake): {contract}"
