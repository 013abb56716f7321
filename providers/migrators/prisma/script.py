"""An inverse script made fit for one transaction: Prisma's own BEGIN/COMMIT removed, what cannot run in one refused."""

from __future__ import annotations

from typing import Any

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError

from providers.migrators.classify import Statement, line_of

TK = enums.TransactionStmtKind
# Opening and closing a block: harmless once the whole revert is one transaction (Prisma's enum recreation).
_STRIPPED = {TK.TRANS_STMT_BEGIN, TK.TRANS_STMT_START, TK.TRANS_STMT_COMMIT}


class NotTransactional(ValueError):
    """The script holds a statement that would end, or cannot run inside, the revert's single transaction."""


def transactional(sql: str) -> str:
    """`sql` without BEGIN / START TRANSACTION / COMMIT / END, for one transaction with the revert's bookkeeping.

    Prisma's `migrate diff` wraps an enum recreation in `BEGIN; ... COMMIT;`: run as part of a larger script, the
    COMMIT would make everything before it permanent whatever fails after. Removing the pair keeps the statements'
    meaning (they already ran as one unit) inside the caller's transaction. Statements that would still break it
    (ROLLBACK, SAVEPOINT, PREPARE TRANSACTION) or that PostgreSQL refuses inside a transaction block (CONCURRENTLY,
    VACUUM, CREATE DATABASE, ALTER SYSTEM) raise NotTransactional naming the statement; so does a script that
    does not parse.
    """
    try:
        raws = parse_sql(sql) or ()
    except ParseError as exc:
        raise NotTransactional(f"the inverse does not parse: {exc}") from None
    kept: list[str] = []
    for raw in raws:
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(sql)
        text = sql[start:end].strip().rstrip(";").strip()  # a dollar-quoted body keeps its own whitespace
        st = Statement("inverse", line_of(sql, start), " ".join(text.split()), raw.stmt)
        why = refusal(st)
        if why:
            raise NotTransactional(f"line {st.line}: {why}: {st.text[:120]}")
        if not isinstance(raw.stmt, ast.TransactionStmt):
            kept.append(text)
    return "".join(f"{text}\n;\n" for text in kept)  # on its own line: a trailing comment cannot hide it


def refusal(st: Statement) -> str:
    """Why `st` cannot be part of one revert transaction ("" when it can; BEGIN/COMMIT are removed, not refused)."""
    n: Any = st.node
    if isinstance(n, ast.TransactionStmt):
        return "" if n.kind in _STRIPPED else f"transaction control ({getattr(n.kind, 'name', n.kind)})"
    if isinstance(n, ast.IndexStmt | ast.DropStmt | ast.ReindexStmt) and _concurrent(n):
        return "CONCURRENTLY cannot run inside a transaction block"
    if isinstance(n, ast.VacuumStmt | ast.CreatedbStmt | ast.DropdbStmt | ast.AlterSystemStmt):
        return "cannot run inside a transaction block"
    return ""


def _concurrent(n: Any) -> bool:
    if isinstance(n, ast.ReindexStmt):
        return any(getattr(p, "defname", "") == "concurrently" for p in n.params or ())
    return bool(n.concurrent)
