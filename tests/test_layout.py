"""The package's layout: imports run one way, without cycles, and no module is oversized.

The rules: no import cycle inside plugbox/; the worker side (``worker``, ``protocol``,
``trust``) imports nothing of ``host``, ``cli`` or ``adapters``, neither directly nor
through another module; no module is over 400 lines once ruff has formatted it; and
``plugbox`` exports every exception class of ``plugbox.errors``.

Every module in plugbox/ is read with ``ast`` (nothing is imported) into a graph whose
nodes are plugbox's modules, a package being its ``__init__``. Every import statement
is an edge, wherever it stands: at module level, inside a function, under ``if
TYPE_CHECKING:``. An import names the module it runs: ``import plugbox.a.b`` is an
edge to ``plugbox.a.b``; ``from plugbox.a import b`` and ``from .a import b`` are an
edge to ``plugbox.a.b`` when ``b`` is a submodule, else to ``plugbox.a`` (``b`` is a
name defined in the package's ``__init__``). So ``from . import x`` is an edge to the
submodule ``x``, or to the package when ``x`` is defined in its ``__init__``. The
parent packages Python imports on the way (``plugbox.a`` before ``plugbox.a.b``) are
not edges: otherwise every package whose ``__init__`` re-exports a submodule would be
a cycle with it. A package ``__init__`` that imports a submodule and that submodule
importing a name from the ``__init__`` is a cycle, and is reported as one.
"""

from __future__ import annotations

import ast
import inspect
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "plugbox"
MAX_LINES = 400
#: the worker side, which must never import the host side
WORKER_SIDE = ("plugbox.worker", "plugbox.protocol", "plugbox.trust")
HOST_SIDE = ("plugbox.host", "plugbox.cli", "plugbox.adapters")


@dataclass(frozen=True)
class Module:
    """One module's dotted name, whether it is a package's ``__init__``, its source."""

    name: str
    is_package: bool
    source: str


def read_package(root: Path) -> dict[str, Module]:
    """Every module under ``root`` (a package directory), by dotted name."""
    modules: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = Module(name, is_package, path.read_text(encoding="utf-8"))
    return modules


def imports_of(module: Module, known: Collection[str]) -> set[str]:
    """The modules among ``known`` that ``module``'s import statements name."""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                # ``import a.b.c`` runs a.b.c: the longest prefix that is a module
                for end in range(len(parts), 0, -1):
                    if ".".join(parts[:end]) in known:
                        found.add(".".join(parts[:end]))
                        break
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = package.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join([*up, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:
                    found.add(submodule)
                elif base in known:
                    found.add(base)
    found.discard(module.name)
    return found


def import_graph(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    """Each module's imports of the others."""
    return {name: imports_of(module, modules) for name, module in modules.items()}


def find_cycles(graph: Mapping[str, Collection[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules, as ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_through(group, graph) for group in groups]


def _cycle_through(group: list[str], graph: Mapping[str, Collection[str]]) -> list[str]:
    """The shortest path from the group's first module back to itself, in the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return [*paths[node], start]
            if nxt in members and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                todo.append(nxt)
    raise AssertionError(f"no cycle through {group}")  # a strongly connected group has one


def formatted_line_counts(root: Path, scratch: Path) -> dict[str, int]:
    """Each module's line count once ruff has formatted it (a copy in ``scratch``: the
    tree is left as it is), so a module cannot pass by being left unformatted."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff is not None, "ruff (a test dependency) is needed to count formatted lines"
    copy = scratch / root.name
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("__pycache__"))
    config = str(ROOT / "pyproject.toml")
    subprocess.run([ruff, "format", "--quiet", "--config", config, str(copy)], check=True)
    return {name: len(module.source.splitlines()) for name, module in read_package(copy).items()}


# ---------------------------------------------------------------------- the rules
MODULES = read_package(PACKAGE)
GRAPH = import_graph(MODULES)


def test_no_import_cycle_inside_plugbox() -> None:
    cycles = [" -> ".join(cycle) for cycle in find_cycles(GRAPH)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def path_to(
    graph: Mapping[str, Collection[str]], start: str, goal: Callable[[str], bool]
) -> list[str]:
    """The shortest import path from ``start`` to a module ``goal`` accepts, or []."""
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        if goal(node) and node != start:
            return paths[node]
        for nxt in sorted(graph.get(node, ())):
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                todo.append(nxt)
    return []


def test_the_worker_side_never_imports_the_host_side() -> None:
    """Neither directly nor through a module it imports."""
    wrong = [
        " -> ".join(path)
        for name in sorted(GRAPH)
        if _within(name, WORKER_SIDE)
        if (path := path_to(GRAPH, name, lambda target: _within(target, HOST_SIDE)))
    ]
    assert not wrong, "the worker side imports the host side:\n" + "\n".join(wrong)


def test_no_module_is_over_the_size_limit(tmp_path: Path) -> None:
    counts = formatted_line_counts(PACKAGE, tmp_path)
    over = {name: n for name, n in counts.items() if n > MAX_LINES}
    assert not over, "\n".join(
        f"{name}: {n} lines (at most {MAX_LINES})" for name, n in sorted(over.items())
    )


def test_plugbox_exports_every_exception() -> None:
    import plugbox
    from plugbox import errors

    classes = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == errors.__name__
    ]
    assert classes
    missing = sorted(cls.__name__ for cls in classes if cls.__name__ not in plugbox.__all__)
    assert not missing, f"plugbox.__all__ lacks {missing}"
    for cls in classes:
        assert getattr(plugbox, cls.__name__) is cls


# ---------------------------------------------------------------------- the checker
def synthetic(sources: dict[str, str], packages: Collection[str] = ("pkg",)) -> dict[str, set[str]]:
    """The graph of modules given as source text (a package by its name)."""
    modules = {
        name: Module(name, name in packages, textwrap.dedent(text))
        for name, text in sources.items()
    }
    return import_graph(modules)


def test_the_checker_finds_a_cycle_through_a_function_and_type_checking() -> None:
    graph = synthetic(
        {
            "pkg": "",
            "pkg.a": """
                def later():
                    from . import b
            """,
            "pkg.b": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from pkg.c import C
            """,
            "pkg.c": "import pkg.a",
            "pkg.d": "from .a import later",
        }
    )
    assert graph["pkg.d"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_the_checker_counts_a_package_init_and_its_submodule_as_a_cycle() -> None:
    graph = synthetic(
        {
            "pkg": "from .a import A\nVERSION = 1",
            "pkg.a": "from . import VERSION\nclass A: ...",
            "pkg.b": "from . import a",
        }
    )
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg"}, "pkg.b": {"pkg.a"}}
    assert find_cycles(graph) == [["pkg", "pkg.a", "pkg"]]


def test_the_checker_finds_nothing_in_a_graph_without_cycles() -> None:
    graph = synthetic(
        {
            "pkg": "from .a import A",
            "pkg.a": "from .sub.b import B\nclass A: ...",
            "pkg.sub": "",
            "pkg.sub.b": "import json\nfrom .. import c",
            "pkg.c": "",
        },
        packages=("pkg", "pkg.sub"),
    )
    assert graph["pkg.sub.b"] == {"pkg.c"}
    assert find_cycles(graph) == []


def test_the_checker_follows_imports_to_the_host_side() -> None:
    graph = synthetic(
        {
            "pkg": "",
            "pkg.worker": "from .shared import x",
            "pkg.shared": "def f():\n    from .host import H",
            "pkg.host": "",
        }
    )
    found = path_to(graph, "pkg.worker", lambda name: name == "pkg.host")
    assert found == ["pkg.worker", "pkg.shared", "pkg.host"]
    assert path_to(graph, "pkg.host", lambda name: name == "pkg.worker") == []
