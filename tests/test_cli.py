"""The ionplan command line: outputs, and one-line errors without tracebacks."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from planning import __version__
from planning.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "planning.cli", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"ionplan {__version__}"


def test_depth_dose_csv(tmp_path: Path) -> None:
    out = tmp_path / "dd.csv"
    assert main(["depth-dose", "--energy", "290", "--csv", str(out)]) == 0
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["depth_mm", "idd", "letd_kev_um"]
    depth = np.array([float(r["depth_mm"]) for r in rows])
    idd = np.array([float(r["idd"]) for r in rows])
    assert np.all(np.diff(depth) > 0) and np.all(idd >= 0)
    # 290 MeV/u: Bragg peak just before the 161.9 mm CSDA range.
    assert 158.0 < depth[np.argmax(idd)] < 162.0


def test_depth_dose_between_tabulated_energies(tmp_path: Path) -> None:
    out = tmp_path / "dd.csv"
    assert main(["depth-dose", "--energy", "287.3", "--csv", str(out)]) == 0
    assert out.stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["depth-dose", "--energy", "29", "--csv", "{tmp}/x.csv"], "outside the machine's range"),
        (["depth-dose", "--energy", "abc", "--csv", "{tmp}/x.csv"], "not a number"),
        (["depth-dose", "--energy", "-3", "--csv", "{tmp}/x.csv"], "positive"),
        (["depth-dose", "--csv", "{tmp}/x.csv"], "required"),
        (["depth-dose", "--energy", "200", "--csv", "{tmp}/no/such/dir/x.csv"],
         "output folder does not exist"),
        (["depth-dose", "--energy", "200", "--csv", "{tmp}/x.csv", "--machine", "{tmp}/m.npz"],
         "machine file not found"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_give_one_line_error(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ionplan: error:")
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_machine_info_lists_energy_range() -> None:
    proc = run_cli("machine-info")
    assert proc.returncode == 0
    assert "80-430 MeV/u" in proc.stdout
