"""The `rewards` command's modules import one another without a circle.

`main` builds the command group and imports every command module; a command
module that imported `main` back (even inside a function) would close a
circle, and the helpers they share live in `common`. The graph is read from
the source with `ast`, so an import inside a function counts as much as one at
the top of a file.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from rewards import cli

PACKAGE = "rewards.cli"
PACKAGE_DIR = Path(cli.__file__).parent
MODULES = {path.stem: path for path in PACKAGE_DIR.glob("*.py")}  # "__init__" stands for the package itself


def _imported_modules(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The rewards.cli modules one import statement names, anywhere in a file."""
    if isinstance(node, ast.Import):
        return {_module_of(alias.name) for alias in node.names} - {None}
    if node.level:  # `from . import x`, `from .x import y`: relative to rewards.cli
        base = ".".join([PACKAGE, node.module] if node.module else [PACKAGE])
    else:
        base = node.module or ""
    if base == PACKAGE:  # `from rewards.cli import x`: x is a module, or a name of the package
        return {alias.name if alias.name in MODULES else "__init__" for alias in node.names}
    return {_module_of(base)} - {None}


def _module_of(dotted: str) -> str | None:
    if dotted == PACKAGE:
        return "__init__"
    if dotted.startswith(PACKAGE + "."):
        return dotted.removeprefix(PACKAGE + ".").split(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """{module: the rewards.cli modules it imports}, from top-level and function-level imports alike."""
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
        graph[name] = set().union(*map(_imported_modules, imports)) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports as [a, b, …, a], or None; depth-first, in name order so it is repeatable."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported, path + [module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_the_finder_names_a_circle_and_passes_a_tree():
    assert find_cycle({"main": {"views"}, "views": {"common", "main"}, "common": set()}) == ["main", "views", "main"]
    assert find_cycle({"main": {"views", "common"}, "views": {"common"}, "common": set()}) is None


def test_the_graph_sees_every_form_of_import():
    graph = import_graph()
    assert "views" in graph["main"]  # `from rewards.cli import access, demo, …, views`
    assert "common" in graph["views"]  # `from rewards.cli.common import …`
    assert "main" in graph["__main__"]  # `from rewards.cli.main import main`


def test_the_cli_modules_import_one_another_without_a_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"rewards.cli imports in a circle: {' → '.join(cycle)}"


def test_only_the_entry_point_imports_main():
    importers = sorted(name for name, imported in import_graph().items() if "main" in imported)
    assert importers == ["__main__"], f"{importers} import rewards.cli.main; import rewards.cli.common instead"


def test_the_parser_lists_every_command_in_order():
    # Imported here, not at the top: a circle can make this import fail, and the
    # tests above must still run and name the circle.
    from rewards.cli.main import build_parser

    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction))
    assert list(commands.choices) == ["db", "demo", "profile", "tasks", "history", "leaderboard", "calendar",
                                      "preview", "report", "enqueue", "reconcile", "failures", "job", "status", "access"]
