"""Import direction app -> planning -> kernels; cupy only in kernels/."""

from __future__ import annotations

import ast
import subprocess
import sys
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


def _modules(path: Path) -> set[str]:
    """Full dotted names of every module imported anywhere in a file (also inside functions);
    ``from planning import api`` counts as ``planning.api``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


#: The front ends of planning: the facade, the command line, and the cohort runner (which runs
#: the command line's plan/recalc/compare as jobs). Only they may use the facade.
FRONT_ENDS = ("api.py", "cli.py", "batch.py")


def test_planning_never_calls_up_into_its_facade_or_cli() -> None:
    """planning.api and planning.cli are the top of planning: nothing below imports them."""
    top = {"planning.api", "planning.cli"}
    for path in (ROOT / "planning").rglob("*.py"):
        if path.name in FRONT_ENDS and path.parent == ROOT / "planning":
            continue
        assert not _modules(path) & top, path


def test_dicom_io_does_not_import_the_dose_engine() -> None:
    """DICOM import and export describe plans and doses; they need the domain types
    (planning.beams, planning.dose_grid), not the engine that computes doses."""
    for path in (ROOT / "planning" / "dicom").rglob("*.py"):
        engine = {m for m in _modules(path) if m.startswith("planning.engine")}
        assert not engine, (path, engine)


def test_app_never_imports_the_engine_or_the_kernels() -> None:
    """The GUI computes nothing itself: its work goes through planning.api, and it may import
    planning's types and results (plans, patients, errors, workspaces), never the dose engine
    (planning.engine) or the array kernels (README "Layout")."""
    for path in (ROOT / "app").rglob("*.py"):
        below = {m for m in _modules(path)
                 if m.startswith(("planning.engine", "kernels")) or m == "kernels"}
        assert not below, (path, below)


#: The app's view-model modules: they shape planning's numbers for the screens and say "no
#: Kivy" in their docstrings, so that they work (and are tested) where no window can open.
VIEW_MODELS = ("compare_choices", "main", "model_note", "plan_setup", "plot_axes", "plot_data",
               "rendering", "review", "robust_review", "session", "workspace_keeper")


def test_view_models_never_import_kivy() -> None:
    """Not directly and not through another module: imported in a fresh interpreter, none of
    them loads Kivy (which reads its configuration on first import: a test module importing
    one of them must not configure Kivy for the GUI tests that run after it)."""
    code = ("import sys\n"
            f"for name in {VIEW_MODELS!r}:\n"
            "    __import__('app.' + name)\n"
            "    kivy = sorted(m for m in sys.modules if m == 'kivy' or m.startswith('kivy.'))\n"
            "    assert not kivy, (name, kivy[:3])\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
