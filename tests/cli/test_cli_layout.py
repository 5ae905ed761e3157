"""The command's package keeps one table of exit statuses and imports one way: ``main``
imports the command modules, each of them only ``codes`` among its siblings (read with
``ast``, so lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import plugbox.cli

CLI = Path(plugbox.cli.__file__).parent


def sibling_imports(path: Path) -> set[str]:
    """The modules of plugbox/cli/ that ``path`` imports, wherever the import is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("plugbox.cli."):
            found.add(str(node.module).split(".")[2])
    return found


def test_command_modules_import_only_the_codes() -> None:
    commands = [p for p in CLI.glob("*.py") if p.stem not in ("__init__", "main", "codes")]
    assert {p.stem for p in commands} >= {"run", "demo", "top", "lock", "doctor", "bench"}
    for path in commands:
        assert sibling_imports(path) <= {"codes"}, path.name
    assert sibling_imports(CLI / "codes.py") == set()
    assert sibling_imports(CLI / "__init__.py") == {"main"}


def test_exit_statuses_are_defined_once() -> None:
    for path in CLI.glob("*.py"):
        tree = ast.parse(path.read_text())
        defined = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name) and target.id.startswith("EXIT_")
        }
        assert not defined or path.name == "codes.py", (path.name, defined)
