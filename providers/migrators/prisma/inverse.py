"""The inverse (down) migration judged: what it destroys, cannot undo, would lose (its scripts: inverse_diff.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError

from providers.migrators.classify import (
    Category,
    Classified,
    SqlParseError,
    classify,
    is_constant,
    loses_data,
    rel_name,
    split_statements,
)
from providers.migrators.prisma.preconditions import needs, quote_ident
from providers.migrators.prisma.script import NotTransactional, transactional
from providers.models import Finding, Severity

AT = enums.AlterTableType
OT = enums.ObjectType
CT = enums.ConstrType
EMPTY_MARK = "-- This is an empty migration."


@dataclass(frozen=True)
class DestroyedObject:
    """A table, or a column of one, that a down script destroys (drops, empties, converts)."""

    schema: str | None
    table: str
    column: str | None
    how: str

    @property
    def label(self) -> str:
        table = f"{self.schema}.{self.table}" if self.schema else self.table
        return f"{table}.{self.column}" if self.column else table


def compose(steps: dict[str, str], applied: list[str]) -> str:
    """One script undoing `applied` (apply order) from per-migration inverses: the newest is undone first."""
    parts = [steps[m].strip() for m in reversed(applied) if steps.get(m, "").strip()]
    return "\n;\n".join(parts) + ("\n" if parts else "")


def is_empty(sql: str | None) -> bool:
    """True for a script with no statement (Prisma writes `-- This is an empty migration.`)."""
    if sql is None:
        return True
    try:
        return not parse_sql(sql)
    except ParseError:
        return False


def destroyed_by(down_sql: str) -> tuple[list[DestroyedObject], list[str]]:
    """Tables and columns the down script destroys, and destructive statements whose loss cannot be measured."""
    targets: list[DestroyedObject] = []
    unknown: list[str] = []
    try:
        statements = split_statements("inverse", down_sql)
    except SqlParseError as exc:  # never from Prisma; counted as unmeasurable, so the rollback stays code-only
        return [], [f"the inverse does not parse: {exc}"]
    recreated = {_last_name(getattr(st.node, "typeName", None)) for st in statements
                 if isinstance(st.node, ast.CreateEnumStmt)}
    for st in statements:
        n = st.node
        if isinstance(n, ast.DropStmt) and n.removeType == OT.OBJECT_TABLE:
            for obj in n.objects or ():
                names = [getattr(x, "sval", str(x)) for x in obj]
                targets.append(DestroyedObject(names[-2] if len(names) > 1 else None, names[-1], None, "drops table"))
        elif isinstance(n, ast.DropStmt) and n.removeType == OT.OBJECT_SCHEMA:
            unknown.append(f"line {st.line}: {st.text[:120]}")
        elif isinstance(n, ast.AlterTableStmt) and n.objtype == OT.OBJECT_TABLE:
            for cmd in n.cmds or ():
                if cmd.subtype == AT.AT_AlterColumnType and _to_enum(cmd, recreated):
                    continue  # an enum recreated with text casts: values kept (a precondition, not a loss)
                if cmd.subtype in (AT.AT_DropColumn, AT.AT_AlterColumnType):
                    how = "drops column" if cmd.subtype == AT.AT_DropColumn else "converts column"
                    targets.append(DestroyedObject(*_table(n.relation), cmd.name, how))
        elif isinstance(n, ast.TruncateStmt):
            targets += [DestroyedObject(*_table(r), None, "empties table") for r in n.relations or ()]
        elif isinstance(n, ast.DeleteStmt):
            targets.append(DestroyedObject(*_table(n.relation), None, "deletes rows of"))
    return targets, unknown


def _last_name(names: Any) -> str:
    return str(getattr(names[-1], "sval", "")) if names else ""


def _to_enum(cmd: Any, recreated: set[str]) -> bool:
    type_name = cmd.def_.typeName if cmd.def_ is not None else None
    return type_name is not None and str(getattr(type_name.names[-1], "sval", "")) in recreated


def _table(rv: Any) -> tuple[str | None, str]:
    return (rv.schemaname or None), str(rv.relname)


def not_undone(forward: list[tuple[str, str]]) -> tuple[list[Finding], bool]:
    """Forward statements Prisma's diff does not reverse (it tracks no extensions, functions, triggers, policies,
    CHECK constraints or data), and whether any of them makes a re-apply after a revert fail.

    Such a migration gets no inverse: a revert would leave the object behind and the next deploy's re-apply would
    fail on it ("already exists", duplicate seed rows), so the rollback reverts the code only.
    """
    out: list[Finding] = []
    breaks = False
    new_tables: set[str] = set()
    for c in classify(forward):
        why, fatal = _undone(c, new_tables)
        if why:
            breaks |= fatal
            out.append(Finding(
                message=f"not undone by the inverse: {why}" + (" (a re-apply after a revert would fail)" if fatal
                                                               else ""),
                severity=Severity.MEDIUM if fatal else Severity.LOW, location=c.stmt.location,
                detail={"category": "inverse", "statement": c.stmt.text[:2000]},
            ))
    return out, breaks


def _undone(c: Classified, new_tables: set[str]) -> tuple[str, bool]:
    n: Any = c.stmt.node
    if c.category == Category.INVALID or n is None:
        return "", False
    if isinstance(n, ast.CreateStmt):
        new_tables.add(_table(n.relation)[1])
        return "", False
    if isinstance(n, ast.CreateExtensionStmt):
        return f"extension {n.extname}", not n.if_not_exists
    if isinstance(n, ast.CreateFunctionStmt):
        return "function " + ".".join(getattr(x, "sval", "") for x in n.funcname or ()), not n.replace
    if isinstance(n, ast.CreateTrigStmt):
        return f"trigger {n.trigname}", not n.replace
    if isinstance(n, ast.CreatePolicyStmt):
        return f"policy {n.policy_name}", True
    if isinstance(n, ast.ViewStmt):
        return f"view {rel_name(n.view)}", not n.replace
    if isinstance(n, ast.DoStmt):
        return "DO block", True
    if isinstance(n, ast.InsertStmt) and _table(n.relation)[1] not in new_tables:
        return f"rows inserted into existing table {rel_name(n.relation)}", True
    if isinstance(n, ast.UpdateStmt):
        return f"rows updated in {rel_name(n.relation)}", False
    if isinstance(n, ast.AlterTableStmt) and _table(n.relation)[1] not in new_tables:
        for cmd in n.cmds or ():
            if cmd.subtype == AT.AT_AddConstraint and cmd.def_ is not None and cmd.def_.contype == CT.CONSTR_CHECK:
                return f"CHECK constraint {cmd.def_.conname} on {rel_name(n.relation)}", True
    return "", False


def _qualified(t: DestroyedObject) -> str:
    return (quote_ident(t.schema) + "." if t.schema else "") + quote_ident(t.table)


async def footprint(conn: Any, targets: list[DestroyedObject]) -> dict[str, int]:
    """How much data each target holds now: rows of a table; for a column, its values other than NULL and its
    (non-volatile) default — values a re-apply of the forward migration would not bring back. Absent targets: 0.

    `conn` is an asyncpg connection. Names are quoted identifiers; a catalog default is used only when pglast finds
    it free of volatile calls (a nextval() in a WHERE clause would advance the sequence).
    """
    out: dict[str, int] = {}
    for t in targets:
        qualified = _qualified(t)
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", qualified) is not True:
            out[t.label] = 0
            continue
        if t.column is None:
            out[t.label] = int(await conn.fetchval(f"SELECT count(*) FROM {qualified}"))  # noqa: S608 - quoted
            continue
        row = await conn.fetchrow(
            "SELECT pg_get_expr(d.adbin, d.adrelid) AS dflt FROM pg_attribute a LEFT JOIN pg_attrdef d "
            "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped", qualified, t.column,
        )
        if row is None:
            out[t.label] = 0
            continue
        col = quote_ident(t.column)
        where = f"{col} IS NOT NULL"
        if row["dflt"] and _constant_expr(row["dflt"]):
            where += f" AND {col} IS DISTINCT FROM ({row['dflt']})"
        out[t.label] = int(await conn.fetchval(f"SELECT count(*) FROM {qualified} WHERE {where}"))  # noqa: S608
    return out


def _constant_expr(expr: str) -> bool:
    try:
        stmts = parse_sql(f"SELECT {expr}")
    except ParseError:
        return False
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.SelectStmt):
        return False
    targets = stmts[0].stmt.targetList or ()
    return len(targets) == 1 and is_constant(targets[0].val)


def describe(found: dict[str, int]) -> str:
    return ", ".join(f"{label} ({n} row{'s' if n != 1 else ''})" for label, n in found.items())


@dataclass
class Judged:
    """The verdict on a prepared inverse: findings for the plan, the steps kept ({} = none), whether it loses data."""

    findings: list[Finding] = field(default_factory=list)
    steps: dict[str, str] = field(default_factory=dict)
    loses_data: bool = False
    preconditions: list[str] = field(default_factory=list)  # what the data must satisfy for the inverse to succeed


async def judge(
    forward: list[tuple[str, str]], found: list[Finding], steps: dict[str, str],
    measure: Callable[[str | None], Awaitable[dict[str, int]]],
) -> Judged:
    """Decide what a rollback may do with the inverse `steps` of the `forward` migrations (before applying them).

    - A forward statement Prisma's diff cannot undo and whose re-apply would fail: no inverse (code-only rollback).
    - No inverse either when it holds a statement that cannot run inside the revert's one transaction.
    - `loses_data` only when data really goes: a forward statement drops or rewrites stored values (a dropped
      table or column, a type change, TRUNCATE, DELETE ...: no down script brings them back), the down script drops
      what cannot be measured (a schema), or it would destroy data that exists already, before this deploy
      (measured now with `measure`). Dropped constraints and indexes, SET/DROP NOT NULL, added enum values and
      enum recreations keep every value: their inverse is kept, with the preconditions it depends on (listed in
      the finding and in `preconditions`), which the rollback checks on the data of that moment.
    - Otherwise the inverse is kept; at rollback time the footprint is measured again and compared with the one
      recorded right after applying, so that data the new release wrote keeps the migration applied.
    """
    notes, breaks = not_undone(forward)
    out = Judged(findings=list(notes), steps=dict(steps))
    where = ", ".join(m for m, _ in forward)
    script = compose(steps, [m for m, _ in forward])
    try:
        transactional(script)
    except NotTransactional as exc:
        breaks, why = True, f"its inverse cannot run in one transaction ({exc})"
    else:
        why = "it creates objects the inverse cannot remove"
    if breaks:
        out.steps = {}
        out.findings.append(_inverse_finding(f"no inverse for {where}: {why}; a rollback reverts the code only",
                                             Severity.MEDIUM))
        return out
    reasons: list[str] = []
    if loses_data(found):
        reasons.append("the migration destroys data that no down script brings back")
    targets, unknown = destroyed_by(script) if script.strip() else ([], [])
    if unknown:
        reasons.append("the inverse drops objects whose data cannot be measured: " + "; ".join(unknown))
    existing = {k: v for k, v in (await measure(script) if targets else {}).items() if v > 0}
    if existing:
        reasons.append("the inverse would destroy data that exists before this deploy: " + describe(existing))
    out.preconditions = [p.label for p in needs(script)]
    if reasons:
        out.loses_data = True
        out.findings.append(_inverse_finding(
            "a rollback would revert the code only (" + "; ".join(reasons) + "); a verified backup can be restored "
            "explicitly with `aevon-deploy db restore`", Severity.MEDIUM))
    elif not script.strip():
        out.findings.append(_inverse_finding(f"inverse of {where}: no schema change to undo", Severity.INFO))
    else:
        what = "; ".join(f"{t.how} {t.label}" for t in targets) or "schema objects only"
        depends = ("; it depends on: " + "; ".join(out.preconditions) + " (checked, and the inverse proven on "
                   "the data, before a rollback applies it)") if out.preconditions else ""
        out.findings.append(_inverse_finding(
            f"inverse prepared for {where} ({what}); a rollback applies it unless the new release wrote data there"
            + depends, Severity.INFO, out.preconditions))
    return out


def _inverse_finding(message: str, severity: Severity, preconditions: list[str] | None = None) -> Finding:
    detail: dict[str, Any] = {"category": "inverse"}
    if preconditions:
        detail["preconditions"] = preconditions
    return Finding(message=f"inverse: {message}", severity=severity, detail=detail)


def grown(baseline: dict[str, int] | None, now: dict[str, int]) -> dict[str, int]:
    """Targets holding more rows now than right after applying: data the new release wrote there.

    With no baseline (the run died while applying, or it could not be measured) every row counts as new.
    """
    before = baseline or {}
    return {k: v for k, v in now.items() if v > before.get(k, 0)}


def nothing_to_invert(forward: list[tuple[str, str]]) -> Judged:
    """The verdict for migrations into an empty database: nothing existed before, so no inverse is prepared (no
    `migrate diff` is run) and a rollback reverts the code only; what Prisma's diff would not undo is still listed.
    """
    notes, _ = not_undone(forward)
    where = f"{forward[0][0]} .. {forward[-1][0]} ({len(forward)})" if len(forward) > 1 else forward[0][0]
    return Judged(findings=[*notes, _inverse_finding(
        f"no inverse for {where}: the database was empty before this deploy, so there is nothing to invert; "
        "a rollback reverts the code only", Severity.INFO)])
