"""The engine is pathway-agnostic: it imports no pathway, and no layer above it.

A pathway's content and code live in its package under ``pathways/``; the engine reaches
them only through what it is handed (:class:`engine.pathway.PathwayCode`). The pathway
packages in turn build on the engine, never on storage or the interfaces.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_packages(folder: Path, root: Path = ROOT) -> dict[str, set[str]]:
    """Module path -> the top-level packages it imports (relative imports are its own)."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(root))] = names
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("engine", {"pathways", "models", "schedulers", "api", "cli", "migrations"}),
        ("pathways", {"models", "schedulers", "api", "cli", "migrations"}),
    ],
)
def test_a_layer_imports_nothing_above_it(folder: str, forbidden: set[str]) -> None:
    modules = imported_packages(ROOT / folder)
    assert modules, f"no modules found under {folder}/"
    crossing = {path: sorted(names & forbidden) for path, names in modules.items()}
    assert {path: names for path, names in crossing.items() if names} == {}


def test_the_check_sees_an_import_that_crosses(tmp_path: Path) -> None:
    """The check can fail: a module that imports a pathway is reported."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "view.py").write_text("import pathways.book\nfrom engine import due\n")
    found = imported_packages(tmp_path / "engine", tmp_path)
    assert found == {"engine/view.py": {"pathways", "engine"}}
