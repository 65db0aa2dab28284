"""No import circles inside consent/: the house reads top-down (web -> services -> ledger ->
database). Every import statement counts, also those inside functions, which hide a
circle from Python but not from a reader."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "consent"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imported(module: str, node: ast.AST) -> list[str]:
    """The consent modules an import statement in MODULE loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        package = module.split(".")
        if MODULES[module].name != "__init__.py":
            package = package[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    out = []
    for alias in node.names:
        name = f"{base}.{alias.name}"
        if name in MODULES:
            out.append(name)  # `from . import rawsql`: the module itself
        elif base in MODULES:
            out.append(base)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the consent modules it imports (a package importing its own children and
    a child importing its package's __init__ are left out: Python runs those in order)."""
    graph = {}
    for module, path in MODULES.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _imported(module, node):
                if target != module and not module.startswith(target + ".") \
                        and not target.startswith(module + "."):
                    edges.add(target)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as a path."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_finds_a_circle_when_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_walk_sees_imports_inside_functions():
    graph = import_graph()
    # consent.audit imports consent.sites inside functions only
    source = (PACKAGE / "audit.py").read_text(encoding="utf-8")
    assert "\n    from .sites import" in source and "\nfrom .sites import" not in source
    assert "consent.sites" in graph["consent.audit"]
    assert "consent.channels" in graph["consent.minors"]


def test_no_module_of_consent_is_part_of_an_import_circle():
    found = cycles(import_graph())
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


FRESH_IMPORTS = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "consent" or m.startswith("consent.")]:
        del sys.modules[loaded]  # nothing of consent imported before this one
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=3))
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_first():
    # Each module imported first, into an interpreter holding no other consent module:
    # a circle that Python would trip over (ImportError on a half-initialised module)
    # fails here. One interpreter for all: third-party packages load once.
    done = subprocess.run([sys.executable, "-c", FRESH_IMPORTS, *sorted(MODULES)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
