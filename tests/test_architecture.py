"""The layers of the package: no import cycles, and no module reaching into another's privates.

Read from the source with ``ast`` (imports inside functions count: a lazy import is still a
dependency, only a later one), so the checks need no import of torch and see every module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "toolkit"

# cycles that other work on the tree removes; each is reported while it lasts, and an entry that
# no longer occurs fails the test, so the list only shrinks
KNOWN_CYCLES: dict[frozenset[str], str] = {
}

# (importing module, imported module, name): private names used across modules, each with its reason
KNOWN_PRIVATE: dict[tuple[str, str, str], str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    module: str  # the toolkit module imported (a package's __init__ when the name is not a module)
    names: tuple[str, ...]  # the names taken from it: ``from m import a, b``; empty for ``import m``
    line: int


def _absolute(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from`` import, relative ones resolved against the importer."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """Every import of a toolkit module in ``path``, wherever it stands in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in known:  # ``import toolkit.a.b`` where b is a name
                    target = target.rpartition(".")[0]
                if target:
                    out.append(Import(target, (), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, path.name == "__init__.py", node)
            if base not in known:
                continue
            taken = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:  # ``from toolkit import data``: the module data, not a name of toolkit
                    out.append(Import(sub, (), node.lineno))
                else:
                    taken.append(alias.name)
            if taken:
                out.append(Import(base, tuple(taken), node.lineno))
    return out


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {i.module for i in imports_of(name, path, known) if i.module != name}
            for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

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
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def private_imports() -> list[tuple[str, str, str, int]]:
    """(importer, module, name, line) for every ``_name`` one toolkit module takes from another:
    ``from m import _name``, or ``m._name`` on a module bound by ``import`` / ``from p import m``."""
    known = modules()
    found = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        bound: dict[str, str] = {}  # local name -> toolkit module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in known and alias.asname:
                        bound[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, path.name == "__init__.py", node)
                for alias in node.names:
                    if f"{base}.{alias.name}" in known:
                        bound[alias.asname or alias.name] = f"{base}.{alias.name}"
        for imp in imports_of(name, path, known):
            found += [(name, imp.module, n, imp.line) for n in imp.names
                      if imp.module != name and _private(n)]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and bound[node.value.id] != name and _private(node.attr)):
                found.append((name, bound[node.value.id], node.attr, node.lineno))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# ---------------------------------------------------------------------------------------------


def test_the_import_graph_has_no_cycles():
    found = cycles(import_graph())
    new = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}; break each by moving what both sides need into a module below them"
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not gone, f"known cycles that no longer occur: {gone}; delete them from KNOWN_CYCLES"
    for c in found:
        print(f"known import cycle {sorted(c)}: {KNOWN_CYCLES[c]}")


def test_no_module_imports_another_modules_private_names():
    found = private_imports()
    new = [f"{who}:{line} takes {name} from {module}" for who, module, name, line in found
           if (who, module, name) not in KNOWN_PRIVATE]
    assert not new, "private names used across modules (make them public where they are defined, or move " \
                    "the code that needs them): " + "; ".join(new)
    gone = [k for k in KNOWN_PRIVATE if k not in {(w, m, n) for w, m, n, _ in found}]
    assert not gone, f"known private imports that no longer occur: {gone}; delete them from KNOWN_PRIVATE"


# the checkers themselves, on made-up trees: each must catch what it is for


def _graph_of(tmp_path: Path, files: dict[str, str], monkeypatch) -> None:
    root = tmp_path / "toolkit"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", root)


def test_a_cycle_through_a_lazy_import_is_found(tmp_path, monkeypatch):
    _graph_of(tmp_path, {"__init__.py": "", "a.py": "from toolkit.b import f\n",
                         "b.py": "def f():\n    from toolkit import a\n", "c.py": "import toolkit.a\n",
                         "pkg/__init__.py": "", "pkg/d.py": "from . import e\n", "pkg/e.py": "from .d import x\n"},
              monkeypatch)
    graph = import_graph()
    assert graph["toolkit.c"] == {"toolkit.a"} and graph["toolkit.pkg.d"] == {"toolkit.pkg.e"}
    assert sorted(map(sorted, cycles(graph))) == [["toolkit.a", "toolkit.b"], ["toolkit.pkg.d", "toolkit.pkg.e"]]


def test_private_names_across_modules_are_found(tmp_path, monkeypatch):
    _graph_of(tmp_path, {"__init__.py": "__version__ = '1'\n", "a.py": "_x = 1\ndef _own():\n    return _x\n",
                         "b.py": "from toolkit.a import _x\nfrom toolkit import __version__\n",
                         "c.py": "from toolkit import a\nprint(a._own())\n", "d.py": "import toolkit.a as m\nm.ok\n"},
              monkeypatch)
    assert sorted((w, m, n) for w, m, n, _ in private_imports()) == [
        ("toolkit.b", "toolkit.a", "_x"), ("toolkit.c", "toolkit.a", "_own")]


if __name__ == "__main__":  # pragma: no cover - a quick look at the graph
    pytest.main([__file__, "-q", "-s"])
