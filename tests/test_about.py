"""Version and licence information (planning.about) and ``ionplan --version``."""

from __future__ import annotations

import platform
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import scipy

from kernels import pencil_beam_cpu, spot_products, wepl_cpu
from planning import __version__, about
from planning.errors import DataFileError

ROOT = Path(__file__).resolve().parents[1]


def _declared_dependencies() -> set[str]:
    """Runtime dependencies as declared in pyproject.toml (independent of importlib.metadata)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = set()
    for requirement in project["dependencies"]:
        name = requirement.split(";")[0]
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        names.add(name.lower().replace("_", "-"))
    return names


def test_version_text_lines() -> None:
    lines = about.version_text().splitlines()
    assert lines[0] == f"ionplan {__version__}"
    assert "BSD-3-Clause" in lines[1]
    assert "source install" in lines[1]  # the tests run unfrozen
    assert f"Python {platform.python_version()}" in lines[2]
    assert f"numpy {np.__version__}" in lines[2]
    assert f"SciPy {scipy.__version__}" in lines[2]
    assert lines[2].endswith(about.cpu_kernels())


@pytest.mark.parametrize(("beam", "products", "wepl", "text"), [
    (True, True, True, "CPU kernels compiled"), (False, False, False, "CPU kernels NumPy"),
    (True, False, True, "CPU kernels: pencil beam compiled, products SciPy, WEPL compiled"),
    (False, True, False, "CPU kernels: pencil beam NumPy, products compiled, WEPL NumPy"),
    (True, True, False, "CPU kernels: pencil beam compiled, products compiled, WEPL NumPy")])
def test_cpu_kernels_says_which_extensions_run(monkeypatch, beam, products, wepl, text) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pencil_beam_cpu, "available", lambda: beam)
    monkeypatch.setattr(spot_products, "available", lambda: products)
    monkeypatch.setattr(wepl_cpu, "available", lambda: wepl)
    assert about.cpu_kernels() == text


def test_version_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert about.version_text().splitlines()[0] == f"ionplan {project['version']}"


def test_version_text_does_not_import_kivy() -> None:
    code = ("import sys; from planning.about import version_text; text = version_text(); "
            "assert 'kivy' not in sys.modules, 'kivy imported'; print(text)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"Kivy {metadata.version('kivy')}" in proc.stdout


def test_cli_version_prints_version_text() -> None:
    proc = subprocess.run([sys.executable, "-m", "planning.cli", "--version"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout.rstrip("\n") == about.version_text()
    assert len(proc.stdout.splitlines()) == 3  # argparse did not re-flow the lines


def test_runtime_distributions_cover_declared_dependencies() -> None:
    found = set(about.runtime_distributions())
    assert _declared_dependencies() <= found
    assert "ionplan" not in found
    # Development tools are extras, not runtime dependencies.
    assert not {"pytest", "ruff", "mypy", "pyinstaller", "hypothesis"} & found


def test_distribution_notice_carries_licence_text() -> None:
    dist = metadata.distribution("numpy")
    license_files = [f for f in dist.files or () if f.name == "LICENSE.txt"
                     and f.parts[0].endswith(".dist-info")]
    assert license_files, "numpy wheel without LICENSE.txt in its metadata"
    first_line = (license_files[0].read_text() or "").strip().splitlines()[0]
    notice = about.distribution_notice("numpy")
    assert notice.splitlines()[1] == f"numpy {np.__version__}"
    assert first_line in notice
    assert "Licence: BSD-3-Clause" in notice


def test_distribution_notice_unknown() -> None:
    with pytest.raises(DataFileError, match=r"no-such-distribution-xyz.*not installed"):
        about.distribution_notice("no-such-distribution-xyz")


def test_third_party_notices_source_install() -> None:
    text = about.third_party_notices()
    assert text.startswith(f"IonPlan {__version__} is licensed under BSD-3-Clause")
    for name in ("numpy", "scipy", "pydicom", "Kivy", "scikit-image", "pylibjpeg"):
        assert f"\n{name} {metadata.version(name)}\n" in text, name


def test_third_party_notices_frozen_reads_build_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / about.NOTICES_FILENAME).write_text("collected at build time\n", encoding="utf-8")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert about.is_frozen()
    assert about.third_party_notices() == "collected at build time\n"
    assert "binary build" in about.version_text().splitlines()[1]


def test_third_party_notices_frozen_missing_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    with pytest.raises(DataFileError, match=r"THIRD_PARTY_LICENSES\.txt.*reinstall"):
        about.third_party_notices()
