"""Import direction app -> planning -> kernels; cupy only in kernels/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["planning", "kernels"])
def test_core_never_imports_gui(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        assert not _imports(path) & {"kivy", "app"}, path


def test_kernels_never_import_planning_or_app() -> None:
    for path in (ROOT / "kernels").rglob("*.py"):
        assert not _imports(path) & {"planning", "app", "kivy"}, path


@pytest.mark.parametrize("package", ["planning", "app"])
def test_cupy_only_in_kernels(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        assert "cupy" not in _imports(path), path
