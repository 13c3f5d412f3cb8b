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
    assert proc.stdout.splitlines()[0] == f"ionplan {__version__}"


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
    # An existing file is replaced only when asked (it replaced any file, an RTPLAN too).
    size = out.stat().st_size
    assert main(["depth-dose", "--energy", "150", "--csv", str(out)]) == 1
    assert out.stat().st_size == size
    assert main(["depth-dose", "--energy", "150", "--csv", str(out), "--overwrite"]) == 0
    assert out.stat().st_size != size


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


def test_rbe_table_json_rows() -> None:
    import json

    proc = run_cli("rbe-table", "--model", "lem1", "--ion", "C", "--energies", "10,50,100,290")
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    assert table["ion"] == "C" and table["model"].startswith("LEM I")
    rows = table["rows"]
    assert [r["energy_mev_u"] for r in rows] == [10.0, 50.0, 100.0, 290.0]
    assert set(rows[0]) == {"energy_mev_u", "let_kev_um", "alpha", "beta"}
    # Higher LET at lower energy, and alpha above the tissue's photon alpha (0.1 /Gy).
    assert rows[0]["let_kev_um"] > rows[-1]["let_kev_um"]
    assert all(r["alpha"] > 0.1 for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rbe-table", "--model", "lem1", "--energies", "10", "--tissue", "foo"],
         "unknown tissue"),
        (["rbe-table", "--model", "mkm", "--energies", "10", "--ion", "Xe"], "unknown ion"),
        (["rbe-table", "--model", "mkm", "--energies", "ten"], "not a number"),
        (["info", "/no/such/folder"], "not a folder"),
        (["plan", "/no/such/folder", "--target", "PTV", "--dose", "60", "--fractions", "20",
          "--gantry", "90", "--grid", "0.2", "--out", "/no/such/out"],
         "the dose grid spacing must lie in [0.5, 20] mm, got 0.2 mm"),
    ],
)
def test_more_bad_arguments(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_patient_then_info(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    assert run_cli("demo-patient", str(out)).returncode == 0
    proc = run_cli("info", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "PTV" in proc.stdout and "Brainstem" in proc.stdout and "HFS" in proc.stdout


def test_headless_demo_plans_and_exports_the_demo_patient(tmp_path: Path) -> None:
    from planning.dicom import load_rt_dose, load_rt_ion_plan

    proc = run_cli("demo", "--device", "cpu", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    ptv = next(line for line in proc.stdout.splitlines() if line.strip().startswith("PTV"))
    d95, mean = (float(x) for x in ptv.split()[1:4:2])
    assert d95 > 1.9 and abs(mean - 2.0) < 0.05
    plan = load_rt_ion_plan(tmp_path / "RTPLAN.dcm").plan
    assert [b.beam.gantry_deg for b in plan.beams] == [90.0, 270.0]
    dose = load_rt_dose(tmp_path / "RTDOSE_PHYSICAL.dcm")
    assert dose.dose_type == "PHYSICAL"
    assert 1.9 < float(dose.dose_gy.max()) < 2.3
    assert "Traceback" not in proc.stderr
    # Again into the same folder: refused before any work (it replaced some files and left
    # others of an earlier run beside them).
    again = run_cli("demo", "--device", "cpu", "--out", str(tmp_path))
    assert again.returncode != 0 and "--overwrite" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr


def test_summary_line_gives_physical_doses_in_gy_not_as_coverage() -> None:
    """A recalculation or robust run under the physical model reports Gy beside the Gy(RBE)
    prescription; under an RBE model, % of the prescription with its unit."""
    from planning.cli import _target_doses

    pres = {"target": "PTV", "total_dose_gy_rbe": 60.0}
    rbe = {"prescription": pres, "rbe_model": "mMKM HSG a0=0.172"}
    physical = {"prescription": pres, "rbe_model": "physical dose",
                "plan_rbe_model": "mMKM HSG a0=0.172"}
    assert _target_doses(rbe, "PTV", [("D95", 58.56), ("D50", 60.18)]) == (
        "PTV D95 97.6 %, D50 100.3 % of 60 Gy(RBE)")
    assert _target_doses(rbe, "PTV", [("D95", 53.7, 58.56), ("D98 down to", 47.46)]) == (
        "PTV D95 89.5 to 97.6 %, D98 down to 79.1 % of 60 Gy(RBE)")
    assert _target_doses(physical, "PTV", [("D95", 19.155), ("D50", 20.71)]) == (
        "PTV D95 19.2 Gy, D50 20.7 Gy physical dose (prescription 60 Gy(RBE))")
    # A physical-dose plan recalculated under the physical model: its prescription is in Gy
    # (it said "physical dose (prescription 20 Gy(RBE))"); the unit as report.json states it.
    own = {"prescription": {**pres, "total_dose_gy_rbe": 20.0}, "rbe_model": "physical dose",
           "plan_rbe_model": "physical dose"}
    assert _target_doses(own, "PTV", [("D95", 19.0)]) == "PTV D95 95.0 % of 20 Gy"
    stated = {**physical, "prescription": {**pres, "unit": "Gy(RBE)"}, "plan_rbe_model": ""}
    assert _target_doses(stated, "PTV", [("D95", 19.155)]) == (
        "PTV D95 19.2 Gy physical dose (prescription 60 Gy(RBE))")
    # A recalculation's report names the prescription's model: under mMKM, the % of a LEM I
    # prescription are of that number, not a coverage (user review: "PTV D95 79.3 %, D50
    # 83.5 % of 66 Gy(RBE)" for an mMKM recalculation of a LEM I plan).
    lem = {"target": "PTV", "total_dose_gy_rbe": 66.0, "unit": "Gy(RBE)",
           "model": "LEM I chordoma, averaged"}
    mkm = {"prescription": lem, "rbe_model": "mMKM HSG a0=0.172"}
    assert _target_doses(mkm, "PTV", [("D95", 52.338)]) == (
        "PTV D95 79.3 % of the LEM I chordoma, averaged prescription of 66 Gy(RBE)")
    assert _target_doses({**mkm, "rbe_model": "physical dose"}, "PTV", [("D95", 17.5)]) == (
        "PTV D95 17.5 Gy physical dose (the LEM I chordoma, averaged prescription of "
        "66 Gy(RBE))")


@pytest.mark.parametrize(("args", "message"), [
    (["plan", "ct", "--target", "PTV", "--dose", "3", "--fractions", "1", "--gantry", "90",
      "--rbe", "mkm", "--tissue", "chordoma"], "--tissue is a LEM I option; --rbe mkm"),
    (["plan", "ct", "--target", "PTV", "--dose", "3", "--fractions", "1", "--gantry", "90",
      "--rbe", "lem1", "--rbe-value", "3"], "--rbe-value is the RBE of --rbe const"),
    (["recalc", "ct", "p.dcm", "--rbe", "physical", "--tissue", "chordoma"],
     "--rbe physical does not use it"),
    (["rbe-table", "--model", "mkm", "--energies", "10", "--tissue", "chordoma"],
     "--model mkm does not use it"),
])
def test_options_of_another_rbe_model_are_refused(tmp_path: Path, capsys, args, message) -> None:  # type: ignore[no-untyped-def]
    """They were ignored without a word; refused before any work (no CT is read)."""
    out = ["--out", str(tmp_path / "o")] if args[0] in ("plan", "recalc") else []
    assert main([*args, *out]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("gantry", "message"), [
    ("90,,180", "an empty angle"), ("400", "angle 400 deg lies outside"),
    ("90,x", "not a comma-separated list"), ("nan", "angle nan deg lies outside")])
def test_gantry_angles_are_read_whole(tmp_path: Path, capsys, gantry, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        main(["plan", "ct", "--target", "PTV", "--dose", "3", "--fractions", "1",
              "--gantry", gantry, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_generate_machine_refuses_an_existing_file_before_generating(tmp_path: Path,
                                                                     monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """It generated for minutes and then replaced any file (the shipped machine too) without
    a word (CLI review)."""
    from planning import machine_generator
    from planning.cli import main

    def generate(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("generated before the output was checked")

    monkeypatch.setattr(machine_generator.CarbonMachineGenerator, "generate", generate)
    existing = tmp_path / "m.npz"
    existing.write_bytes(b"keep")
    assert main(["generate-machine", str(existing)]) == 1
    assert existing.read_bytes() == b"keep"
    assert main(["generate-machine", str(tmp_path / "missing" / "m.npz")]) == 1


def _subparser(name: str):  # type: ignore[no-untyped-def]
    import argparse

    from planning.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def _help_of(command: str, option: str) -> str:
    (action,) = [a for a in _subparser(command)._actions if option in a.option_strings]
    return str(action.help)


@pytest.mark.parametrize("command", ["plan", "recalc", "robust", "compare"])
def test_ct_series_help_names_a_folder_that_info_takes(command: str) -> None:
    """compare's help said "('ionplan info --ct' lists them)"; info takes the folder itself
    (documentation review)."""
    import re

    text = _help_of(command, "--ct-series")
    assert "ionplan info --" not in text
    assert re.search(r"'ionplan info CT_DIR' lists them", text), text
    if command == "compare":
        assert "the --ct folder holds several" in text


def test_robust_does_not_offer_exchange_and_points_to_recalc(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """robust --help offered --exchange, which robust then refused (documentation review)."""
    assert "--exchange" not in _subparser("robust").format_help()
    assert "--exchange" in _subparser("recalc").format_help()
    assert main(["robust", str(tmp_path), "p.dcm", "--exchange",
                 "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "ionplan recalc --exchange" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_plan_help_gives_the_spot_spacing_and_the_unit_of_the_dose() -> None:
    spacing = _help_of("plan", "--spot-spacing")
    assert "default 3 mm" in spacing
    dose = _help_of("plan", "--dose")
    assert "Gy(RBE)" in dose and "Gy under --rbe physical" in dose


def test_plan_line_gives_the_unit_of_the_plans_model() -> None:
    """plan --rbe physical printed "... of 57.6 Gy(RBE)" (documentation review). The line
    quotes D98, D95 and D2, the plan document's and the plan checks' metrics (it gave D95 and
    D5: user review)."""
    from planning.cli import _plan_line

    target = {"d98_gy_rbe": 53.568, "d95_gy_rbe": 54.72, "d50_gy_rbe": 57.6,
              "d5_gy_rbe": 58.75, "d2_gy_rbe": 59.328}
    for model, unit in (("physical dose", "Gy"), ("mMKM HSG a0=0.172", "Gy(RBE)")):
        report = {"files": ["RTPLAN.dcm", "report.json"], "rbe_model": model,
                  "structures": {"PTV": target}}
        assert _plan_line(report, "ptv", 57.6, "out") == (  # the structure set's spelling
            f"wrote RTPLAN.dcm and report.json to out; PTV D98 93.0 %, D95 95.0 %, D2 103.0 % "
            f"of 57.6 {unit}")


def test_missing_dask_names_an_install_that_exists(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """It said "pip install ionplan"; IonPlan has no PyPI release (documentation review)."""
    from planning.distributed import require_distributed
    from planning.errors import IonPlanError

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed: ImportError
    with pytest.raises(IonPlanError) as exc:
        require_distributed()
    assert "pip install ionplan" not in str(exc.value)
    assert "pip install . in a clone of the repository" in str(exc.value)


def test_a_plan_is_named_by_its_label(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Every plan of `ionplan plan` was "IonPlan": RT Plan Label and Name, the document and its
    file name could not tell two plans apart (review). --label names it; a name DICOM cannot
    hold is refused before any work."""
    import json

    import pydicom

    from planning.dicom import write_demo_patient

    write_demo_patient(tmp_path / "ct")
    common = ["plan", str(tmp_path / "ct"), "--target", "PTV", "--dose", "3", "--fractions",
              "1", "--gantry", "90", "--grid", "6", "--spot-spacing", "8", "--device", "cpu"]
    for bad, words in ((" ", "give a name"), ("a\\b", "which DICOM text cannot hold"),
                       ("x" * 65, "at most 64 characters, got 65")):
        with pytest.raises(SystemExit) as exc:
            main([*common, "--label", bad, "--out", str(tmp_path / "bad")])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "argument --label: the name: " in err and words in err, err
        assert not (tmp_path / "bad").exists()
    out = tmp_path / "out"
    assert main([*common, "--label", "Sacrum  boost, phase 2", "--out", str(out)]) == 0
    ds = pydicom.dcmread(out / "RTPLAN.dcm")
    assert (ds.RTPlanName, ds.RTPlanLabel) == ("Sacrum boost, phase 2", "Sacrum boost, ph")
    assert json.loads((out / "report.json").read_text())["plan"]["label"] == (
        "Sacrum boost, phase 2")
    (pdf,) = out.glob("*_report.pdf")
    assert pdf.name.startswith("IONPLAN-DEMO-001_Sacrum_boost")

