"""What an inverse needs of the data to succeed: named for the plan, checked and proven against the database now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from pglast import ast, enums

from providers.migrators.classify import SqlParseError, split_statements

AT = enums.AlterTableType
CT = enums.ConstrType
_LOCK_TIMEOUT = "10s"  # the dry run waits this long for a lock, then says it could not prove the inverse


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, double-quoted (embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Precondition:
    """One thing the data must satisfy for an inverse statement to succeed, with the query that finds violations.

    kind: unique (no duplicate key), not_null (no NULL), enum (no value outside `values`), foreign_key (no row
    without its referenced row), empty (no row at all).
    """

    kind: str
    schema: str | None
    table: str
    columns: tuple[str, ...]
    what: str  # the statement's object: index, constraint or enum name
    values: tuple[str, ...] = ()
    ref_schema: str | None = None
    ref_table: str = ""
    ref_columns: tuple[str, ...] = ()
    array: bool = False

    @property
    def qualified(self) -> str:
        return (quote_ident(self.schema) + "." if self.schema else "") + quote_ident(self.table)

    @property
    def label(self) -> str:
        table = f"{self.schema}.{self.table}" if self.schema else self.table
        cols = ", ".join(self.columns)
        if self.kind == "unique":
            return f"no duplicate ({cols}) in {table} ({self.what})"
        if self.kind == "not_null":
            return f"no NULL in {table}.{cols} ({self.what})"
        if self.kind == "enum":
            allowed = ", ".join(f"'{v}'" for v in self.values)
            return f"every {table}.{cols} value is one of {allowed} ({self.what})"
        if self.kind == "foreign_key":
            return f"every ({cols}) of {table} exists in {self.ref_table} ({self.what})"
        return f"{table} has no row ({self.what})"


def needs(sql: str) -> list[Precondition]:
    """The preconditions of the inverse `sql` that can be checked by a query (pglast; nothing is executed).

    Tables the script itself creates are empty when its later statements run, so they need nothing. Conditions
    no query can state (a CHECK expression, a type conversion) are left to the dry run (`prove`).
    """
    try:
        statements = split_statements("inverse", sql)
    except SqlParseError:
        return []
    created: set[str] = set()
    enums_made: dict[str, tuple[str, ...]] = {}
    out: list[Precondition] = []
    for st in statements:
        n: Any = st.node
        rel: Any = getattr(n, "relation", None)
        if isinstance(n, ast.CreateStmt):
            created.add(str(rel.relname))
        elif isinstance(n, ast.CreateEnumStmt):
            enums_made[_names(n.typeName)[-1]] = tuple(v.sval for v in n.vals or ())
        elif isinstance(n, ast.IndexStmt) and n.unique and str(rel.relname) not in created:
            cols = [p.name for p in n.indexParams or ()]
            if all(cols) and n.whereClause is None and not n.nulls_not_distinct:
                out.append(_on(n.relation, "unique", tuple(cols), f"unique index {n.idxname}"))
        elif isinstance(n, ast.AlterTableStmt) and str(rel.relname) not in created:
            out += [p for cmd in n.cmds or () if (p := _alter(n.relation, cmd, enums_made)) is not None]
    return out


def _alter(rel: Any, cmd: Any, enums_made: dict[str, tuple[str, ...]]) -> Precondition | None:
    if cmd.subtype == AT.AT_SetNotNull:
        return _on(rel, "not_null", (cmd.name,), "SET NOT NULL")
    if cmd.subtype == AT.AT_AddColumn:
        kinds = {c.contype for c in cmd.def_.constraints or ()}
        if (cmd.def_.is_not_null or CT.CONSTR_NOTNULL in kinds) and CT.CONSTR_DEFAULT not in kinds:
            return _on(rel, "empty", (), f"adds {cmd.def_.colname} NOT NULL without a default")
    if cmd.subtype == AT.AT_AlterColumnType and cmd.def_ is not None and cmd.def_.typeName is not None:
        target = _names(cmd.def_.typeName.names)[-1]
        if target in enums_made:
            return _on(rel, "enum", (cmd.name,), f"enum {target} recreated", values=enums_made[target],
                       array=bool(cmd.def_.typeName.arrayBounds))
    if cmd.subtype == AT.AT_AddConstraint and cmd.def_ is not None:
        c = cmd.def_
        if c.contype in (CT.CONSTR_UNIQUE, CT.CONSTR_PRIMARY) and not c.indexname and c.keys:
            kind = "unique" if c.contype == CT.CONSTR_UNIQUE else "primary key"
            return _on(rel, "unique", tuple(k.sval for k in c.keys), f"{kind} {c.conname}")
        if c.contype == CT.CONSTR_FOREIGN and not c.skip_validation and c.pk_attrs:
            return Precondition("foreign_key", rel.schemaname or None, str(rel.relname),
                                tuple(a.sval for a in c.fk_attrs or ()), f"foreign key {c.conname}",
                                ref_schema=c.pktable.schemaname or None, ref_table=str(c.pktable.relname),
                                ref_columns=tuple(a.sval for a in c.pk_attrs))
    return None


def _on(rel: Any, kind: str, cols: tuple[str, ...], what: str, *, values: tuple[str, ...] = (),
        array: bool = False) -> Precondition:
    return Precondition(kind, rel.schemaname or None, str(rel.relname), cols, what, values=values, array=array)


def _names(node: Any) -> list[str]:
    return [getattr(n, "sval", str(n)) for n in (node or ())]


async def violations(conn: Any, p: Precondition) -> str:
    """Why the data breaks `p` now ("" when it holds, or when its table or column does not exist yet).

    `conn` is an asyncpg connection; identifiers are quoted, values passed as parameters.
    """
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", p.qualified) is not True:
        return ""
    cols = [quote_ident(c) for c in p.columns]
    try:
        if p.kind == "unique":
            present = " AND ".join(f"{c} IS NOT NULL" for c in cols)
            n = await conn.fetchval(f"SELECT count(*) FROM (SELECT 1 FROM {p.qualified} WHERE {present} "  # noqa: S608
                                    f"GROUP BY {', '.join(cols)} HAVING count(*) > 1) d")
            return f"{n} duplicated key(s): {p.label} fails" if n else ""
        if p.kind == "not_null":
            n = await conn.fetchval(f"SELECT count(*) FROM {p.qualified} WHERE {cols[0]} IS NULL")  # noqa: S608
            return f"{n} row(s) hold NULL: {p.label} fails" if n else ""
        if p.kind == "empty":
            n = await conn.fetchval(f"SELECT count(*) FROM {p.qualified}")  # noqa: S608
            return f"{n} row(s) exist: {p.label} fails" if n else ""
        if p.kind == "enum":
            col = f"t.{cols[0]}"
            source = f"unnest({col}::text[]) AS v(x)" if p.array else f"(SELECT {col}::text) AS v(x)"
            rows = await conn.fetch(f"SELECT v.x, count(*) AS n FROM {p.qualified} t CROSS JOIN LATERAL {source} "  # noqa: S608
                                    "WHERE v.x IS NOT NULL AND NOT (v.x = ANY($1::text[])) GROUP BY v.x ORDER BY 1",
                                    list(p.values))
            used = ", ".join(f"'{r['x']}' ({r['n']} row(s))" for r in rows)
            return f"values outside the recreated enum are in use: {used}; {p.label} fails" if rows else ""
        ref = (quote_ident(p.ref_schema) + "." if p.ref_schema else "") + quote_ident(p.ref_table)
        match = " AND ".join(f"r.{quote_ident(rc)} = t.{c}" for rc, c in zip(p.ref_columns, cols, strict=True))
        present = " AND ".join(f"t.{c} IS NOT NULL" for c in cols)
        n = await conn.fetchval(f"SELECT count(*) FROM {p.qualified} t WHERE {present} "  # noqa: S608
                                f"AND NOT EXISTS (SELECT 1 FROM {ref} r WHERE {match})")
        return f"{n} row(s) reference nothing: {p.label} fails" if n else ""
    except (asyncpg.UndefinedColumnError, asyncpg.UndefinedTableError, asyncpg.UndefinedObjectError):
        return ""  # a column or table the script creates first: the dry run decides


async def prove(conn: Any, script: str) -> str:
    """Run the (transactional) `script` on the real data inside a transaction that is always rolled back.

    Returns PostgreSQL's error when the script fails ("" when it would succeed now). Locks are waited for at most
    _LOCK_TIMEOUT; nothing is kept, whatever happens.
    """
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        await conn.execute(script)
        return ""
    except asyncpg.PostgresError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await tx.rollback()
