"""Classifies each migration statement with pglast (PostgreSQL's own parser): additive, locking, destructive."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pglast import ast, enums

from providers.migrators.sql import SqlParseError as SqlParseError
from providers.migrators.sql import Statement as Statement
from providers.migrators.sql import is_constant as is_constant
from providers.migrators.sql import line_of as line_of
from providers.migrators.sql import names_of as _names
from providers.migrators.sql import rel_name as rel_name
from providers.migrators.sql import relation_key as _key
from providers.migrators.sql import split_statements as split_statements
from providers.models import Finding, Severity

AT = enums.AlterTableType
OT = enums.ObjectType
CT = enums.ConstrType
_SERIAL = {"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"}
_DROPPED_KIND = {OT.OBJECT_TABLE: "table", OT.OBJECT_VIEW: "view", OT.OBJECT_MATVIEW: "materialized view",
                 OT.OBJECT_TYPE: "type", OT.OBJECT_SEQUENCE: "sequence", OT.OBJECT_SCHEMA: "schema",
                 OT.OBJECT_FUNCTION: "function", OT.OBJECT_EXTENSION: "extension", OT.OBJECT_DOMAIN: "domain",
                 OT.OBJECT_TRIGGER: "trigger", OT.OBJECT_PROCEDURE: "procedure"}
# DESTRUCTIVE ALTER TABLE reasons that drop or rewrite stored values (the others break code, not data).
_LOSSY_ALTER = ("drops column", "changes the type of")
_HARMLESS = (ast.TransactionStmt, ast.VariableSetStmt, ast.CommentStmt, ast.GrantStmt, ast.GrantRoleStmt)
_CREATES = {ast.CreateEnumStmt: "enum type", ast.CompositeTypeStmt: "composite type", ast.CreateDomainStmt: "domain",
            ast.CreateSeqStmt: "sequence", ast.CreateSchemaStmt: "schema", ast.CreateExtensionStmt: "extension",
            ast.CreateFunctionStmt: "function", ast.CreateTrigStmt: "trigger", ast.ViewStmt: "view",
            ast.CreateTableAsStmt: "table from a query", ast.CreatePolicyStmt: "policy"}


class Category(StrEnum):
    """What a statement does to a live database and the code running against it."""

    ADDITIVE = "additive"  # new table, nullable or defaulted column, index on a new table, seed rows
    LOCKING = "locking"  # blocks reads or writes while it runs: index build, table rewrite, validation scan
    DESTRUCTIVE = "destructive"  # loses data or breaks the running code: DROP, type change, RENAME, NOT NULL ...
    REVIEW = "review"  # not analysed (DO blocks, data updates, unknown statements): read it
    INVALID = "invalid"  # PostgreSQL's parser rejects it: the migration will fail


SEVERITY = {Category.ADDITIVE: Severity.INFO, Category.LOCKING: Severity.MEDIUM, Category.DESTRUCTIVE: Severity.HIGH,
            Category.REVIEW: Severity.LOW, Category.INVALID: Severity.HIGH}


@dataclass(frozen=True)
class Classified:
    """A statement's (or one ALTER TABLE sub-command's) category and why."""

    category: Category
    reason: str
    stmt: Statement
    loses_data: bool = False  # drops or rewrites stored values that no down script brings back

    def finding(self) -> Finding:
        text = self.stmt.text if len(self.stmt.text) <= 160 else self.stmt.text[:157] + "..."
        return Finding(
            message=f"{self.category}: {self.reason}" + (f" — {text}" if text else ""),
            severity=SEVERITY[self.category], location=self.stmt.location,
            detail={"category": self.category.value, "migration": self.stmt.migration, "line": self.stmt.line,
                    "statement": self.stmt.text[:2000], "loses_data": self.loses_data},
        )


@dataclass
class _Batch:
    """What earlier statements of the pending migrations created: objects new in this deploy have no data.

    `fresh`: the database holds nothing yet, so every object a statement touches was created by this deploy (or
    never existed: an IF EXISTS drop of it does nothing).
    """

    fresh: bool = False
    new_tables: set[str] = field(default_factory=set)
    new_types: set[str] = field(default_factory=set)
    new_sequences: set[str] = field(default_factory=set)
    new_functions: set[str] = field(default_factory=set)
    defaults: set[tuple[str, str]] = field(default_factory=set)
    statements_in: dict[str, int] = field(default_factory=dict)
    unique_indexes: set[str] = field(default_factory=set)  # unique indexes/constraints known (applied or earlier)

    def is_new(self, kind: OT, names: list[str]) -> bool:
        """Every one of `names` (dotted) of object kind `kind` was created earlier in this deploy."""
        known = {OT.OBJECT_TABLE: self.new_tables, OT.OBJECT_TYPE: self.new_types, OT.OBJECT_DOMAIN: self.new_types,
                 OT.OBJECT_SEQUENCE: self.new_sequences, OT.OBJECT_FUNCTION: self.new_functions}.get(kind)
        if self.fresh:
            return True
        return known is not None and bool(names) and all(n.rsplit(".", 1)[-1] in known for n in names)


def classify(
    migrations: Iterable[tuple[str, str]], *, fresh: bool = False, unique: Iterable[str] = ()
) -> list[Classified]:
    """Classify every statement of `migrations` ((name, sql) in apply order); `fresh`: into an empty database.

    `unique`: names of the unique indexes and constraints that exist already (created by applied migrations), so
    that dropping one is told apart from dropping a plain index. A migration.sql the parser rejects yields one
    INVALID item (at the error's line) and the others go on.
    """
    batch = _Batch(fresh=fresh, unique_indexes=set(unique))
    parsed: list[tuple[str, list[Statement] | SqlParseError]] = []
    for name, sql in migrations:
        try:
            stmts = split_statements(name, sql)
        except SqlParseError as exc:
            parsed.append((name, exc))
            continue
        parsed.append((name, stmts))
        batch.statements_in[name] = len(stmts)
    out: list[Classified] = []
    for name, stmts_or_error in parsed:
        if isinstance(stmts_or_error, SqlParseError):
            line = int(stmts_or_error.location.rsplit(":", 1)[1])
            reason = "PostgreSQL's parser rejects it: " + str(stmts_or_error).split(": ", 1)[1]
            out.append(Classified(Category.INVALID, reason, Statement(name, line, "", None)))
            continue
        for stmt in stmts_or_error:
            out += _classify(stmt, batch)
    return out


def _classify(st: Statement, b: _Batch) -> list[Classified]:
    n = st.node

    def one(cat: Category, reason: str, loses: bool = False) -> list[Classified]:
        return [Classified(cat, reason, st, loses)]

    _remember(n, b)
    if isinstance(n, ast.CreateStmt):
        return one(Category.ADDITIVE, f"creates table {rel_name(n.relation)}")
    if isinstance(n, ast.IndexStmt):
        return one(*_index(n, st, b))
    if isinstance(n, ast.AlterTableStmt):
        if n.objtype != OT.OBJECT_TABLE:
            return one(Category.REVIEW, "alters a non-table relation (not analysed)")
        return [Classified(cat, reason, st, cat == Category.DESTRUCTIVE and reason.startswith(_LOSSY_ALTER))
                for cat, reason in _alter_table(n, b)]
    if isinstance(n, ast.RenameStmt):
        return one(*_rename(n, b))
    if isinstance(n, ast.DropStmt):
        return one(*_drop(n, b))
    if isinstance(n, ast.TruncateStmt | ast.DeleteStmt):
        rels = list(n.relations or ()) if isinstance(n, ast.TruncateStmt) else [n.relation]
        what = ("empties " if isinstance(n, ast.TruncateStmt) else "deletes rows of ") + ", ".join(map(rel_name, rels))
        if b.is_new(OT.OBJECT_TABLE, [_key(r) for r in rels]):
            return one(Category.ADDITIVE, f"{what}, new in this deploy")
        return one(Category.DESTRUCTIVE, what, loses=True)
    if isinstance(n, ast.UpdateStmt):
        return one(Category.REVIEW, f"updates rows of {rel_name(n.relation)} (locks them; an inverse does not undo it)")
    if isinstance(n, ast.InsertStmt):
        return one(Category.ADDITIVE, f"inserts rows into {rel_name(n.relation)}")
    if isinstance(n, ast.AlterEnumStmt):
        if n.oldVal and b.is_new(OT.OBJECT_TYPE, _names(n.typeName)):
            return one(Category.ADDITIVE, f"renames enum value {n.oldVal!r} of a type new in this deploy")
        if n.oldVal:
            return one(Category.DESTRUCTIVE, f"renames enum value {n.oldVal!r}: rows and code using it break")
        return one(Category.ADDITIVE, f"adds enum value {n.newVal!r}")
    if isinstance(n, _HARMLESS):
        return one(Category.ADDITIVE, "no schema change")
    kind = _CREATES.get(type(n))
    if kind is not None:
        return one(Category.ADDITIVE, f"creates a {kind}")
    if isinstance(n, ast.DoStmt):
        return one(Category.REVIEW, "DO block: not analysed, read it")
    return one(Category.REVIEW, f"{type(n).__name__}: not analysed, read it")


def _index(n: Any, st: Statement, b: _Batch) -> tuple[Category, str]:
    table = rel_name(n.relation)
    if n.concurrent:
        if b.statements_in.get(st.migration, 1) > 1:
            return Category.REVIEW, (f"creates an index on {table} CONCURRENTLY, which cannot run inside the "
                                     "migration's transaction: give it a migration of its own")
        return Category.ADDITIVE, f"creates an index on {table} concurrently (no write lock)"
    if b.is_new(OT.OBJECT_TABLE, [_key(n.relation)]):
        return Category.ADDITIVE, f"creates an index on {table}, a table new in this deploy"
    index = "a unique index" if n.unique else "an index"
    return Category.LOCKING, (f"creates {index} on existing table {table} without CONCURRENTLY: writes to it "
                              "block until the index is built; build it with CREATE INDEX CONCURRENTLY in a "
                              "migration of its own")


def _alter_table(n: Any, b: _Batch) -> list[tuple[Category, str]]:
    table = rel_name(n.relation)
    key = _key(n.relation)
    new = b.is_new(OT.OBJECT_TABLE, [key])
    out: list[tuple[Category, str]] = []
    for cmd in n.cmds or ():
        sub = AT(cmd.subtype)
        col = cmd.name
        if sub == AT.AT_AddColumn:
            out.append(_add_column(cmd.def_, table, key, new, b))
        elif new:
            if sub == AT.AT_ColumnDefault and cmd.def_ is not None:
                b.defaults.add((key, col))
            out.append((Category.ADDITIVE, f"changes {table}, a table new in this deploy"))
        elif sub == AT.AT_DropColumn:
            out.append((Category.DESTRUCTIVE, f"drops column {table}.{col}: its data is lost"))
        elif sub == AT.AT_AlterColumnType:
            out.append((Category.DESTRUCTIVE, f"changes the type of {table}.{col}: values may fail to convert or "
                        "lose precision, and the table is rewritten under an exclusive lock"))
        elif sub == AT.AT_SetNotNull:
            if (key, col) in b.defaults:
                out.append((Category.LOCKING, f"sets {table}.{col} NOT NULL (it has a default): scans {table} "
                            "under an exclusive lock"))
            else:
                out.append((Category.DESTRUCTIVE, f"sets {table}.{col} NOT NULL without a default: fails while a "
                            "row holds NULL, and inserts by the running code that omit it break"))
        elif sub == AT.AT_DropNotNull:
            out.append((Category.ADDITIVE, f"allows NULL in {table}.{col}"))
        elif sub == AT.AT_ColumnDefault:
            if cmd.def_ is not None:
                b.defaults.add((key, col))
            out.append((Category.ADDITIVE, f"{'sets' if cmd.def_ is not None else 'drops'} the default of "
                        f"{table}.{col}"))
        elif sub == AT.AT_DropConstraint:
            unique = " (unique: once duplicates exist its inverse cannot re-create it)" if col in b.unique_indexes \
                else ""
            out.append((Category.DESTRUCTIVE, f"drops constraint {col} of {table}: what it guaranteed is no "
                        f"longer enforced{unique}"))
        elif sub == AT.AT_AddConstraint:
            out.append(_add_constraint(cmd.def_, table))
        elif sub == AT.AT_ValidateConstraint:
            out.append((Category.ADDITIVE, f"validates constraint {col} of {table} (does not block writes)"))
        elif sub in (AT.AT_SetLogged, AT.AT_SetUnLogged, AT.AT_SetTableSpace, AT.AT_ClusterOn):
            out.append((Category.LOCKING, f"rewrites {table} under an exclusive lock"))
        else:
            out.append((Category.REVIEW, f"{sub.name} on {table}: not analysed, read it"))
    return out


def _add_column(cd: Any, table: str, key: str, new: bool, b: _Batch) -> tuple[Category, str]:
    cons = list(cd.constraints or ())
    kinds = {CT(c.contype) for c in cons}
    default = next((c.raw_expr for c in cons if c.contype == CT.CONSTR_DEFAULT), None)
    has_default = CT.CONSTR_DEFAULT in kinds
    if has_default:
        b.defaults.add((key, cd.colname))
    col = f"{table}.{cd.colname}"
    if new:
        return Category.ADDITIVE, f"adds column {col} to a table new in this deploy"
    type_name = _names(cd.typeName.names)[-1].lower() if cd.typeName is not None else ""
    if type_name in _SERIAL or kinds & {CT.CONSTR_IDENTITY, CT.CONSTR_GENERATED}:
        return Category.LOCKING, f"adds {col} filled per row (serial/identity/generated): rewrites {table}"
    if has_default and not is_constant(default):
        return Category.LOCKING, f"adds {col} with a volatile default: rewrites {table} under an exclusive lock"
    if (cd.is_not_null or CT.CONSTR_NOTNULL in kinds) and not has_default:
        return Category.DESTRUCTIVE, (f"adds {col} NOT NULL without a default: fails on a non-empty {table}, "
                                      "and inserts by the running code break")
    if kinds & {CT.CONSTR_UNIQUE, CT.CONSTR_PRIMARY, CT.CONSTR_FOREIGN, CT.CONSTR_CHECK}:
        return Category.LOCKING, f"adds {col} with a constraint that scans or indexes {table} under a lock"
    what = "with a constant default" if has_default else "nullable"
    return Category.ADDITIVE, f"adds column {col} ({what}, no rewrite)"


def _add_constraint(c: Any, table: str) -> tuple[Category, str]:
    kind = CT(c.contype)
    if kind in (CT.CONSTR_FOREIGN, CT.CONSTR_CHECK):
        if c.skip_validation:
            return Category.ADDITIVE, f"adds constraint {c.conname} to {table} NOT VALID (no scan)"
        return Category.LOCKING, f"adds constraint {c.conname} to {table}: scans every row under a lock"
    if kind in (CT.CONSTR_PRIMARY, CT.CONSTR_UNIQUE) and c.indexname:
        return Category.ADDITIVE, f"adds constraint {c.conname} to {table} using an existing index"
    return Category.LOCKING, f"adds constraint {c.conname} to {table}: builds an index under a lock"


def _rename(n: Any, b: _Batch) -> tuple[Category, str]:
    kind = OT(n.renameType)
    if n.relation is not None and b.is_new(OT.OBJECT_TABLE, [_key(n.relation)]):
        return Category.ADDITIVE, f"renames in {rel_name(n.relation)}, a table new in this deploy"
    if kind == OT.OBJECT_INDEX:
        return Category.ADDITIVE, f"renames index {rel_name(n.relation)} to {n.newname} (queries unaffected)"
    if kind == OT.OBJECT_TABCONSTRAINT:
        return Category.ADDITIVE, f"renames constraint {n.subname} of {rel_name(n.relation)} to {n.newname}"
    target = rel_name(n.relation) if n.relation is not None else ".".join(_names(getattr(n.object, "names", ())))
    what = f"column {target}.{n.subname}" if kind == OT.OBJECT_COLUMN else f"{kind.name[7:].lower()} {target}"
    return Category.DESTRUCTIVE, f"renames {what} to {n.newname}: code using the old name breaks"


def _drop(n: Any, b: _Batch) -> tuple[Category, str, bool]:
    kind = OT(n.removeType)
    names = [".".join(_names(_object_names(o))) for o in n.objects or ()]
    target = ", ".join(names)
    label = _DROPPED_KIND.get(kind, kind.name.removeprefix("OBJECT_").lower())
    if b.is_new(kind, names) or (b.fresh and n.missing_ok):
        return Category.ADDITIVE, f"drops {label} {target}, new in this deploy (or never created)", False
    if kind == OT.OBJECT_INDEX and any(x.rsplit(".", 1)[-1] in b.unique_indexes for x in names):
        return Category.DESTRUCTIVE, (f"drops unique index {target}: uniqueness is no longer enforced, and once "
                                      "duplicates exist its inverse cannot re-create it"), False
    if kind == OT.OBJECT_INDEX:
        if n.concurrent:
            return Category.ADDITIVE, f"drops index {target} concurrently", False
        return Category.LOCKING, f"drops index {target}: locks its table exclusively while it runs", False
    cascade = n.behavior == enums.DropBehavior.DROP_CASCADE
    if kind == OT.OBJECT_TABLE:
        return Category.DESTRUCTIVE, f"drops table {target} and its data", True
    # A sequence holds its counter, a schema its tables; CASCADE drops columns using a type. A dropped type,
    # function or view holds no stored value: the running code may break (destructive), no data goes.
    loses = cascade or kind in (OT.OBJECT_SEQUENCE, OT.OBJECT_SCHEMA, OT.OBJECT_MATVIEW)
    return Category.DESTRUCTIVE, f"drops {label} {target}" + (" CASCADE" if cascade else ""), loses


def _object_names(o: Any) -> Any:
    """The name parts of a dropped object: a list, a TypeName (names) or a function's ObjectWithArgs (objname)."""
    if isinstance(o, tuple | list):
        return o
    return getattr(o, "objname", None) or getattr(o, "names", None) or (o,)


def _remember(n: Any, b: _Batch) -> None:
    """Objects a statement creates (a SERIAL column creates `<table>_<column>_seq`)."""
    rel: Any = getattr(n, "relation", None)
    if isinstance(n, ast.CreateStmt):
        b.new_tables.add(_key(n.relation))
        cols = [e for e in n.tableElts or () if isinstance(e, ast.ColumnDef)]
        b.new_sequences.update(f"{rel.relname}_{c.colname}_seq" for c in cols if _serial(c))
    elif isinstance(n, ast.AlterTableStmt) and n.objtype == OT.OBJECT_TABLE:
        b.new_sequences.update(f"{rel.relname}_{c.def_.colname}_seq" for c in n.cmds or ()
                               if c.subtype == AT.AT_AddColumn and _serial(c.def_))
    elif isinstance(n, ast.CreateEnumStmt | ast.CompositeTypeStmt | ast.CreateDomainStmt):
        typevar: Any = getattr(n, "typevar", None)
        names = typevar.relname if typevar is not None else _names(getattr(n, "typeName", None)
                                                                   or getattr(n, "domainname", None))[-1]
        b.new_types.add(str(names))
    elif isinstance(n, ast.CreateSeqStmt):
        seq: Any = n.sequence
        b.new_sequences.add(str(seq.relname))
    elif isinstance(n, ast.CreateFunctionStmt):
        b.new_functions.add(_names(n.funcname)[-1])
    b.unique_indexes.update(unique_indexes_of(n))


def unique_indexes_of(n: Any) -> set[str]:
    """Names of the unique indexes and constraints statement `n` creates (CREATE UNIQUE INDEX, ADD UNIQUE)."""
    if isinstance(n, ast.IndexStmt) and n.unique and n.idxname:
        return {str(n.idxname)}
    if isinstance(n, ast.AlterTableStmt):
        return {str(c.def_.conname) for c in n.cmds or () if c.subtype == AT.AT_AddConstraint
                and isinstance(c.def_, ast.Constraint) and c.def_.contype in (CT.CONSTR_UNIQUE, CT.CONSTR_PRIMARY)
                and c.def_.conname}
    return set()


def _serial(cd: Any) -> bool:
    return cd.typeName is not None and _names(cd.typeName.names)[-1].lower() in _SERIAL


def findings(
    migrations: Iterable[tuple[str, str]], *, fresh: bool = False, unique: Iterable[str] = ()
) -> list[Finding]:
    """Findings of every statement (an INVALID finding for a migration.sql that does not parse)."""
    return [c.finding() for c in classify(migrations, fresh=fresh, unique=unique)]


def loses_data(found: Iterable[Finding]) -> bool:
    """A finding drops or rewrites stored values (the `loses_data` of its statement): no down script restores them."""
    return any(f.detail.get("loses_data") is True for f in found)


def is_destructive(found: Iterable[Finding]) -> bool:
    return any(f.detail.get("category") == Category.DESTRUCTIVE.value for f in found)
