"""No import cycle among flows, tasks, providers and deployments: their import graph, read with `ast`, is acyclic.

Two graphs: the one the interpreter follows (imports at module level and inside functions), which must be acyclic,
and the same plus the imports under `if TYPE_CHECKING:` (a cycle hidden from the interpreter that way is still two
modules that need each other's internals, as inverse.py and the migrator were): acyclic but for TOLERATED.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "tasks", "providers", "deployments")
# Cycles that exist only under TYPE_CHECKING and are being worked on; the list may only shrink.
TOLERATED = [
    # a target's canary helpers typed against the target class they extend (annotations only, never imported at run)
    ["providers.targets.local.canary", "providers.targets.local.target"],
    ["providers.targets.paas.vercel", "providers.targets.paas.vercel_canary"],
]


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py of our packages (vendored node_modules excluded)."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "node_modules" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks."""
    out: set[int] = set()
    for node in ast.walk(tree):
        test = node.test if isinstance(node, ast.If) else None
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}  # type: ignore[attr-defined]
    return out


def imports_of(name: str, path: Path, known: dict[str, Path], *, type_checking: bool = True) -> set[str]:
    """Our modules that `name` imports (anywhere in the file; under TYPE_CHECKING only when `type_checking`)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = set() if type_checking else _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_reads_the_known_edges() -> None:
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert "providers.migrators.prisma.inverse" in graph["providers.migrators.prisma.migrator"]
    assert "providers.migrators.classify" in graph["providers.migrators.prisma.inverse"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_our_modules() -> None:
    known = modules()
    graph = {name: imports_of(name, path, known, type_checking=False) for name, path in known.items()}
    assert cycles(graph) == []


def test_no_import_cycle_even_under_type_checking() -> None:
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert [c for c in cycles(graph) if c not in TOLERATED] == []


def test_the_migrator_owns_its_inverse_computation() -> None:
    """inverse.py is called by the migrator with what it needs; it never reaches back into the migrator."""
    known = modules()
    for helper in ("inverse", "inverse_diff", "cli", "preconditions", "revert", "script", "schema_file", "consistency",
                   "history"):
        name = f"providers.migrators.prisma.{helper}"
        assert "providers.migrators.prisma.migrator" not in imports_of(name, known[name], known), helper
