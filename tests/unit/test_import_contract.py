"""The import contract's lazy seams stay lazy.

`lint-imports` (pyproject.toml, run by `make test`) forbids HTTP functions any path to a heavy
SDK except through the listed `ignore_imports`: the function-local imports that load the SDK
on first use. The import graph does not tell a function-local import from a module-level one,
so this checks that each listed import is only ever executed inside a function."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = {
    "memlayer": ROOT / "layers" / "memlayer" / "memlayer",
    "functions": ROOT / "functions",
}


def _seams() -> list[tuple[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    seams = []
    for contract in config["contracts"]:
        for line in contract.get("ignore_imports", []):
            importer, _, imported = (part.strip() for part in line.partition("->"))
            seams.append((importer, imported))
    return seams


def _source(module: str) -> Path:
    root, *rest = module.split(".")
    path = PACKAGE_DIRS[root].joinpath(*rest)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""] if node.level == 0 else []
    return [alias.name for alias in node.names]


def _eager_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every import that runs when the module is imported: at module or
    class level, outside `if TYPE_CHECKING:`."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.extend((child.lineno, name) for name in _imported(child))
            visit(child)

    visit(tree)
    return found


def _all_imports(tree: ast.Module) -> list[str]:
    return [
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in _imported(node)
    ]


def _is(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_every_ignored_import_is_function_local() -> None:
    seams = _seams()
    assert seams, "the contract lists no lazy seams"
    for importer, imported in seams:
        tree = ast.parse(_source(importer).read_text())
        assert any(_is(name, imported) for name in _all_imports(tree)), (importer, imported)
        eager = [(line, name) for line, name in _eager_imports(tree) if _is(name, imported)]
        assert not eager, f"{importer} imports {imported} at import time (line {eager[0][0]})"


def test_the_check_sees_a_module_level_import() -> None:
    eager = _eager_imports(
        ast.parse(
            "import a\n"
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import b\n"
            "class C:\n    import c\n"
            "def f():\n    import d\n"
            "try:\n    import e\nexcept ImportError:\n    pass\n"
        )
    )
    assert [name for _, name in eager] == ["a", "typing", "c", "e"]
