"""The project's own modules import each other one way only: no import circle anywhere.

Every ``.py`` file of the project's packages is parsed with ``ast`` (nothing is imported), its
imports of the project's modules are resolved to module names, and the module graph is checked
for cycles. A circle that only closes through an import inside a function is still a circle (it
holds the modules together just the same and hides the order they depend on); imports under
``if TYPE_CHECKING:`` are left out, since they never run.

An edge goes to the most specific module an import names: ``import a.b`` and ``from a.b import c``
point at ``a.b``, or at ``a.b.c`` when ``c`` is a submodule (the same for ``from . import c``).
Importing ``a.b`` also runs ``a/__init__.py`` first, but that implicit step is not an edge: a
package's ``__init__`` importing its own submodules would otherwise always be a circle. The
``__init__`` importing its submodules is an edge like any other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Import name -> the directory that is that package. The demo may not exist (yet).
PACKAGES = {
    "tcd_core": REPO / "tcd_core",
    "tcd_diffusers": REPO / "adapters" / "tcd_diffusers",
    "tcd_jax": REPO / "adapters" / "tcd_jax",
    "tcd_kdiffusion": REPO / "adapters" / "tcd_kdiffusion",
    "tcd_sample": REPO / "demo" / "tcd_sample",
    "benchmarks": REPO / "benchmarks",
}
REQUIRED = ("tcd_core", "tcd_diffusers", "tcd_jax", "tcd_kdiffusion", "benchmarks")

Edge = tuple[str, str, Path, int]  # (importer, imported, file, line)


def project_modules() -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of the project's packages."""
    missing = [name for name in REQUIRED if not PACKAGES[name].is_dir()]
    assert not missing, f"package directories not found: {missing}"
    modules: dict[str, Path] = {}
    for name, root in PACKAGES.items():
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            if "__pycache__" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            modules[".".join((name, *parts))] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``nodes``, at any depth (functions, classes, try blocks), except
    those in the body of ``if TYPE_CHECKING:``."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _imports(node.orelse)
        else:
            yield from _imports(ast.iter_child_nodes(node))


def _show(path: Path) -> str:
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def _resolve(name: str, modules: dict[str, Path], where: str) -> str | None:
    """``name`` if it is one of ``modules``; None if it is not the project's; an error if it
    names one of the project's packages but no module of it (the graph would miss an edge)."""
    if name in modules:
        return name
    if name.split(".")[0] in {m.split(".")[0] for m in modules}:
        raise AssertionError(f"{where}: imports {name}, which is no module of the project")
    return None


def _targets(
    module: str, stmt: ast.Import | ast.ImportFrom, modules: dict[str, Path]
) -> Iterator[str | None]:
    """The project modules that ``stmt`` in ``module`` imports (None for each that is not ours)."""
    where = f"{_show(modules[module])}:{stmt.lineno}"
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            yield _resolve(alias.name, modules, where)
        return
    if stmt.level:  # relative: resolved against the importing module's package
        is_package = modules[module].name == "__init__.py"
        package = module.split(".") if is_package else module.split(".")[:-1]
        if stmt.level > len(package):
            raise AssertionError(f"{where}: relative import beyond the top of its package")
        base = package[: len(package) - (stmt.level - 1)]
        source = ".".join(base + ([stmt.module] if stmt.module else []))
    else:
        source = stmt.module or ""
    for alias in stmt.names:
        submodule = f"{source}.{alias.name}"
        yield submodule if submodule in modules else _resolve(source, modules, where)


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    """The import graph's edges, each with the first line that makes it."""
    edges: dict[tuple[str, str], Edge] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for stmt in _imports([tree]):
            for target in _targets(module, stmt, modules):
                if target is not None and target != module:
                    edges.setdefault((module, target), (module, target, path, stmt.lineno))
    return list(edges.values())


def find_cycle(edges: list[Edge]) -> list[Edge] | None:
    """One cycle of the graph, as the edges that close it, or None (depth-first search)."""
    graph: dict[str, list[Edge]] = {}
    for edge in edges:
        graph.setdefault(edge[0], []).append(edge)
    done: set[str] = set()
    nodes: list[str] = []  # the current path; edges[i] leads from nodes[i] to nodes[i + 1]
    path: list[Edge] = []

    def visit(node: str) -> list[Edge] | None:
        nodes.append(node)
        for edge in graph.get(node, []):
            target = edge[1]
            if target in nodes:
                return path[nodes.index(target) :] + [edge]
            if target not in done:
                path.append(edge)
                found = visit(target)
                if found:
                    return found
                path.pop()
        nodes.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done:
            found = visit(node)
            if found:
                return found
    return None


def describe(cycle: list[Edge]) -> str:
    lines = [" -> ".join([cycle[0][0]] + [e[1] for e in cycle])]
    for importer, imported, path, line in cycle:
        lines.append(f"  {_show(path)}:{line}: {importer} imports {imported}")
    return "\n".join(lines)


def test_the_project_has_no_import_cycle() -> None:
    modules = project_modules()
    edges = import_edges(modules)
    assert any(e[0].startswith("benchmarks") and e[1] == "tcd_core" for e in edges), (
        "the benchmarks' imports of tcd_core were not found: the parser misses imports"
    )
    cycle = find_cycle(edges)
    if cycle is not None:
        pytest.fail("import cycle:\n" + describe(cycle), pytrace=False)


def test_the_cycle_finder_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: a circle closed by a relative import inside a function is found, one
    through ``if TYPE_CHECKING:`` is not, and ``from . import x`` points at the submodule x."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    files = {
        "__init__.py": "from . import a\n",
        "a.py": "from .b import thing\n",
        "b.py": "def f():\n    from . import a\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import x\n",
        "d.py": "import pkg.c\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text, encoding="utf-8")
    modules = {("pkg" if n == "__init__.py" else f"pkg.{n[:-3]}"): pkg / n for n in files}
    edges = import_edges(modules)
    pairs = {(e[0], e[1]) for e in edges}
    assert pairs == {("pkg", "pkg.a"), ("pkg.a", "pkg.b"), ("pkg.b", "pkg.a"), ("pkg.d", "pkg.c")}
    cycle = find_cycle(edges)
    assert cycle is not None
    assert {(e[0], e[1]) for e in cycle} == {("pkg.a", "pkg.b"), ("pkg.b", "pkg.a")}
    assert find_cycle([e for e in edges if e[0] != "pkg.b"]) is None
    # An import of the project that names no module of it is an error, not a missing edge.
    (pkg / "b.py").write_text("def f():\n    from .nowhere import a\n", encoding="utf-8")
    with pytest.raises(AssertionError, match=r"b.py:2: imports pkg.nowhere, which is no module"):
        import_edges(modules)
