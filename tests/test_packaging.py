"""The PyInstaller one-folder build: built once per module, then run as a user would run it.

The binary runs with a clean environment (no PYTHONPATH, no virtual environment on PATH) from a
working folder outside the repository, so it cannot fall back on the source tree. Deselect with
``-m "not packaging"``; skipped (visibly) only when PyInstaller is not installed.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from planning import __version__

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "ionplan.spec"
MAX_SIZE_MB = 250.0


def _load_collect_licenses() -> ModuleType:
    # packaging/ is not a package (and "packaging" is a PyPI name): load the script by path.
    spec = importlib.util.spec_from_file_location("ionplan_collect_licenses",
                                                  ROOT / "packaging" / "collect_licenses.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing it
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# Licence collection, without a build


def test_classify_traces_files_to_owners(tmp_path: Path) -> None:
    collect = _load_collect_licenses()
    numpy_init = Path(np.__file__)
    stdlib_os = Path(os.__file__)
    own = ROOT / "planning" / "about.py"
    stray = tmp_path / "libstray.so"
    stray.write_bytes(b"\x7fELF")
    owners = collect.classify([
        ("numpy/__init__.py", str(numpy_init), "PYMODULE"),
        ("os.py", str(stdlib_os), "PYMODULE"),
        ("planning/about.py", str(own), "PYMODULE"),
        ("libstray.so", str(stray), "BINARY"),
        ("generated", "", "DATA"),  # no source file: ignored
    ], project_root=ROOT)
    assert owners.distributions == {"numpy": ["numpy/__init__.py"]}
    assert owners.python_runtime == ["os.py"]
    assert owners.project == ["planning/about.py"]
    assert owners.unidentified == [str(stray)]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg not available (not Debian)")
def test_classify_finds_debian_package_of_system_library() -> None:
    collect = _load_collect_licenses()
    candidates = [Path(p) for p in ("/lib/x86_64-linux-gnu/libz.so.1",
                                    "/usr/lib/x86_64-linux-gnu/libz.so.1")]
    libz = next((p for p in candidates if p.exists()), None)
    if libz is None:
        pytest.skip("libz.so.1 not found in the multiarch library folder")
    owners = collect.classify([("libz.so.1", str(libz), "BINARY")], project_root=ROOT)
    assert list(owners.system) == ["zlib1g"]
    assert "Jean-loup Gailly" in collect.render(owners)  # zlib's copyright holders


# ---------------------------------------------------------------------------------------------
# The build


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "KIVY_HOME": str(home / "kivy")}
    env.update(extra)
    return env


def _folder_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*")
               if p.is_file() and not p.is_symlink()) / 1e6


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Build the one-folder binary into a temporary folder; yields dist/ionplan."""
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed (pip install -e '.[dev]' installs it)")
    base = tmp_path_factory.mktemp("pyinstaller")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
         "--distpath", str(base / "dist"), "--workpath", str(base / "build"), str(SPEC)],
        cwd=base, capture_output=True, text=True, timeout=900, check=False)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, (
        f"PyInstaller failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    folder = base / "dist" / "ionplan"
    print(f"\nbuild: {elapsed:.0f} s, {_folder_size_mb(folder):.0f} MB")
    yield folder


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder (and HOME) outside the repository."""
    return tmp_path_factory.mktemp("run")


def _run(build: Path, workdir: Path, *args: str, timeout: float = 300,
         **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(build / "ionplan"), *args], cwd=workdir,
                          env=_clean_env(workdir, **env), capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.packaging
def test_build_layout_and_size(build: Path) -> None:
    assert (build / "ionplan").is_file() and os.access(build / "ionplan", os.X_OK)
    internal = build / "_internal"
    assert (internal / "assets" / "machines" / "generic_carbon.npz").is_file()
    assert (internal / "assets" / "hlut" / "default.csv").is_file()
    assert list((internal / "assets" / "stopping_power").glob("*/Z06_A12_Carbon.txt"))
    kv_sources = sorted(p.relative_to(ROOT) for p in (ROOT / "app").rglob("*.kv"))
    for kv in kv_sources:
        assert (internal / kv).is_file(), kv
    # pylibjpeg finds its decoders through entry points in the distributions' metadata.
    for name in ("pylibjpeg", "pylibjpeg_libjpeg", "pylibjpeg_openjpeg"):
        assert list(internal.glob(f"{name}-*.dist-info/METADATA")), name
    for excluded in ("tkinter", "matplotlib", "cupy", "pytest", "PyInstaller"):
        assert not (internal / excluded).exists(), excluded
    size_mb = _folder_size_mb(build)
    assert size_mb < MAX_SIZE_MB, f"one-folder build is {size_mb:.0f} MB"


@pytest.mark.packaging
def test_build_carries_licences(build: Path) -> None:
    assert (build / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    notices = (build / "THIRD_PARTY_LICENSES.txt").read_text(encoding="utf-8")
    assert (build / "_internal" / "THIRD_PARTY_LICENSES.txt").read_text(
        encoding="utf-8") == notices
    for heading in ("numpy ", "scipy ", "pydicom ", "Kivy ", "scikit-image ", "pyinstaller ",
                    "Python "):
        assert f"\n{heading}" in notices, heading
    assert "PYTHON SOFTWARE FOUNDATION LICENSE" in notices
    assert "libSDL2-" in notices and "Zlib" in notices  # Kivy's vendored SDL2
    assert "could not be determined" not in notices, "bundled files of unknown licence"


@pytest.mark.packaging
def test_binary_version(build: Path, workdir: Path) -> None:
    proc = _run(build, workdir, "--version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"ionplan {__version__}"
    assert "binary build" in lines[1]  # frozen: not the source tree
    assert "Kivy 2." in lines[2] and "numpy 2." in lines[2]
    # setup.py's extensions are in the folder and load from it (the build machine has g++).
    assert lines[2].endswith("CPU kernels compiled"), lines[2]


@pytest.mark.packaging
def test_binary_depth_dose_without_display(build: Path, workdir: Path) -> None:
    out = workdir / "dd.csv"
    proc = _run(build, workdir, "depth-dose", "--energy", "200", "--csv", str(out))
    assert proc.returncode == 0, proc.stderr
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    depth = np.array([float(r["depth_mm"]) for r in rows])
    idd = np.array([float(r["idd"]) for r in rows])
    # 200 MeV/u carbon in water: CSDA range 86.3 mm (ICRU 73); the peak sits just before it.
    assert 84.0 < depth[np.argmax(idd)] < 87.0


@pytest.mark.packaging
def test_binary_demo_patient_and_plan(build: Path, workdir: Path) -> None:
    patient = workdir / "demo"
    proc = _run(build, workdir, "demo-patient", str(patient))
    assert proc.returncode == 0, proc.stderr
    assert len(list(patient.glob("CT_*.dcm"))) > 10 and list(patient.glob("RS*.dcm"))
    out = workdir / "plan"
    proc = _run(build, workdir, "plan", str(patient), "--target", "PTV", "--dose", "3",
                "--fractions", "1", "--gantry", "90", "--grid", "5", "--spot-spacing", "6",
                "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    for name in ("RTPLAN.dcm", "RTDOSE_PHYSICAL.dcm", "RTDOSE_RBE.dcm", "report.json"):
        assert (out / name).is_file(), name
    # The plan document: ReportLab and its font metrics are in the binary.
    (pdf,) = out.glob("*_report.pdf")
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 50_000
    report = json.loads((out / "report.json").read_text())
    assert report["prescription"]["target"] == "PTV"
    assert report["spots"] > 0


@pytest.mark.packaging
def test_binary_usage_error_is_one_line(build: Path, workdir: Path) -> None:
    proc = _run(build, workdir, "depth-dose", "--energy", "29", "--csv", "x.csv")
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.packaging
def test_binary_gui_without_display_fails_clearly(build: Path, workdir: Path) -> None:
    proc = _run(build, workdir, "gui", timeout=60)  # clean env: no DISPLAY, no SDL_VIDEODRIVER
    assert proc.returncode != 0
    assert "no display" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr


def _png_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


@pytest.mark.packaging
def test_binary_gui_screenshot_offscreen(build: Path, workdir: Path) -> None:
    shot = workdir / "gui.png"
    start = time.perf_counter()
    proc = _run(build, workdir, "gui", "--screenshot", str(shot), timeout=180,
                SDL_VIDEODRIVER="offscreen")
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    pixels = _png_pixels(shot)
    assert pixels.shape[0] >= 400 and pixels.shape[1] >= 600
    # A rendered window, not a blank or single-colour buffer.
    assert pixels.std() > 20.0
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
    print(f"\nGUI to first screenshot (offscreen): {elapsed:.1f} s")


@pytest.mark.packaging
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run not installed")
def test_binary_gui_screenshot_xvfb(build: Path, workdir: Path) -> None:
    shot = workdir / "gui_x11.png"
    xauth_dir = workdir / "xauth"
    xauth_dir.mkdir(exist_ok=True)
    proc = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", str(build / "ionplan"), "gui",
         "--screenshot", str(shot)],
        cwd=workdir, env=_clean_env(workdir, TMPDIR=str(xauth_dir)), capture_output=True,
        text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    pixels = _png_pixels(shot)
    assert pixels.std() > 20.0
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
