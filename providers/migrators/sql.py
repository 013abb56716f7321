"""Migration SQL through pglast (PostgreSQL's own parser): statements with their lines, relation names, defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError

# Functions that are not volatile: a column default calling them is evaluated once, with no table rewrite.
_STABLE_FUNCS = {"now", "transaction_timestamp", "statement_timestamp", "current_date", "current_timestamp",
                 "localtimestamp", "current_user", "session_user", "lower", "upper", "jsonb_build_object",
                 "json_build_object", "array"}


@dataclass(frozen=True)
class Statement:
    """One parsed statement of a migration: its node, 1-based line and text."""

    migration: str
    line: int
    text: str
    node: Any

    @property
    def location(self) -> str:
        return f"{self.migration}/migration.sql:{self.line}"


class SqlParseError(ValueError):
    """A migration.sql PostgreSQL's parser rejects; `location` is `<migration>/migration.sql:<line>`."""

    def __init__(self, migration: str, line: int, message: str) -> None:
        self.location = f"{migration}/migration.sql:{line}"
        super().__init__(f"{self.location}: {message}")


def line_of(sql: str, offset: int) -> int:
    return sql.count("\n", 0, max(offset, 0)) + 1


def split_statements(migration: str, sql: str) -> list[Statement]:
    """The statements of one migration.sql with their lines (comments before a statement are skipped)."""
    try:
        raws = parse_sql(sql)
    except ParseError as exc:
        cursor = int(exc.args[1]) if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        raise SqlParseError(migration, line_of(sql, cursor), str(exc.args[0] if exc.args else exc)) from None
    out = []
    for raw in raws or ():
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(sql)
        text = " ".join(sql[start:end].split()).rstrip(";")
        out.append(Statement(migration, line_of(sql, start), text, raw.stmt))
    return out


def rel_name(rv: Any) -> str:
    """`schema.table` or `table` of a RangeVar."""
    return f"{rv.schemaname}.{rv.relname}" if getattr(rv, "schemaname", None) else str(rv.relname)


def relation_key(rv: Any) -> str:
    return str(rv.relname)  # tables are matched by name: migrations rarely qualify, Prisma's diff always does


def names_of(node: Any) -> list[str]:
    return [getattr(n, "sval", str(n)) for n in (node or ())]


def is_constant(node: Any) -> bool:
    """True when a default expression is not volatile (a constant, a cast of one, now() ...): no table rewrite."""
    if node is None or isinstance(node, ast.A_Const | ast.SQLValueFunction):
        return True
    if isinstance(node, ast.TypeCast):
        return is_constant(node.arg)
    if isinstance(node, ast.FuncCall):
        name = names_of(node.funcname)[-1].lower()
        return name in _STABLE_FUNCS and all(is_constant(a) for a in node.args or ())
    if isinstance(node, ast.A_Expr):
        return is_constant(node.lexpr) and is_constant(node.rexpr)
    if isinstance(node, ast.A_ArrayExpr):
        return all(is_constant(e) for e in node.elements or ())
    if isinstance(node, ast.BoolExpr):
        return all(is_constant(a) for a in node.args or ())
    return False
