"""Bad or ambiguous command-line inputs: one-line errors that say what is wrong and what to do,
and nothing silently ignored or assumed (CT series, RT Structure Set, machine file, HLUT,
rbe-table energies, robust scenario options).

The CT folders are the demo patient's (shared with tests/test_recalc.py through
:func:`tests.test_recalc.demo_plan_dirs`); a second CT series is a copy of it with new UIDs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from planning.cli import main
from planning.dicom import load_patient
from planning.hlut import default_hlut
from tests.test_recalc import demo_plan_dirs

SECOND_SERIES_DESCRIPTION = "second series"


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("ionplan: error:") and "Traceback" not in err[0]
    return err[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """The demo CT and plan, a folder with two CT series (the demo's with its RTSTRUCT, and a
    copy with new UIDs), and a CT folder without an RT Structure Set."""
    ct, plan_dir = demo_plan_dirs(tmp_path_factory)
    base = tmp_path_factory.mktemp("cli_inputs")
    two, bare = base / "two_series", base / "no_rtstruct"
    shutil.copytree(ct, two)
    bare.mkdir()
    new_series = pydicom.uid.generate_uid()
    demo_series = ""
    for path in sorted(ct.iterdir()):
        ds = pydicom.dcmread(path)
        if ds.Modality != "CT":
            continue
        demo_series = str(ds.SeriesInstanceUID)
        shutil.copy(path, bare / path.name)
        ds.SeriesInstanceUID = new_series
        ds.SeriesDescription = SECOND_SERIES_DESCRIPTION
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(two / f"copy_{path.name}")
    return {"ct": ct, "plan": plan_dir, "two": two, "bare": bare,
            "demo_series": demo_series, "new_series": new_series}


# ------------------------------------------------------------------ 1. several CT series


def test_two_ct_series_error_lists_them_and_names_the_option(folders, tmp_path, capsys):
    two, plan = str(folders["two"]), str(folders["plan"] / "RTPLAN.dcm")
    for argv in (["recalc", two, plan], ["robust", two, plan],
                 ["plan", two, "--target", "PTV", "--dose", "3", "--fractions", "1",
                  "--gantry", "90"]):
        assert main([*argv, "--out", str(tmp_path / "o")]) == 1
        line = _one_line_error(capsys)
        assert "2 CT series" in line and two in line
        assert folders["demo_series"] in line and folders["new_series"] in line
        assert SECOND_SERIES_DESCRIPTION in line and "88 slices" in line
        assert "--ct-series" in line, line
        assert not (tmp_path / "o").exists()


def test_ct_series_option_reaches_the_loader(folders, tmp_path, capsys):
    """--ct-series is passed to the loader of every command that loads a CT folder: an unknown
    UID is refused there, naming it and the series found; a known one is loaded."""
    two, plan = str(folders["two"]), str(folders["plan"] / "RTPLAN.dcm")
    bogus = ["--ct-series", "1.2.3.999"]
    for argv in (["recalc", two, plan, *bogus], ["robust", two, plan, *bogus],
                 ["plan", two, "--target", "PTV", "--dose", "3", "--fractions", "1",
                  "--gantry", "90", *bogus],
                 ["compare", str(folders["plan"]), str(folders["plan"]), "--ct", two,
                  "--no-cross-model", *bogus]):
        assert main([*argv, "--out", str(tmp_path / "o")]) == 1
        line = _one_line_error(capsys)
        assert "no CT series 1.2.3.999" in line and folders["new_series"] in line, line
    out = tmp_path / "recalc"
    assert main(["recalc", two, plan, "--ct-series", str(folders["demo_series"]),
                 "--grid", "8", "--device", "cpu", "--out", str(out)]) == 0
    assert (out / "RTDOSE_RBE.dcm").is_file()


def test_ct_series_of_compare_needs_its_ct_folder(folders, tmp_path, capsys):
    plan_dir = str(folders["plan"])
    assert main(["compare", plan_dir, plan_dir, "--ct-series", "1.2.3", "--no-cross-model",
                 "--out", str(tmp_path / "o")]) == 1
    assert "--ct-series" in _one_line_error(capsys)


# ------------------------------------------------------------------ 2. no RT Structure Set


def test_recalc_on_a_folder_without_rtstruct_names_the_folder(folders, tmp_path, capsys,
                                                              monkeypatch):
    import planning.compare.recalc as recalc

    def no_dose(*args, **kwargs):
        raise AssertionError("the dose was computed before the missing RTSTRUCT was found")

    monkeypatch.setattr(recalc, "recalculate", no_dose)
    bare = str(folders["bare"])
    assert main(["recalc", bare, str(folders["plan"] / "RTPLAN.dcm"),
                 "--out", str(tmp_path / "o")]) == 1
    line = _one_line_error(capsys)
    assert bare in line and "no RT Structure Set" in line, line
    assert "structure_set_uid" not in line


# ------------------------------------------------------------------ 3. machine file


@pytest.mark.parametrize("name, content", [
    ("beam_data.txt", b"energy,range\n100,30\n"),
    ("beam_data.npz", b"energy,range\n100,30\n"),
    ("array.npy", None),
])
def test_a_file_that_is_no_machine_file_is_named_as_such(tmp_path, capsys, name, content):
    path = tmp_path / name
    if content is None:
        np.save(path, np.arange(3.0))
    else:
        path.write_bytes(content)
    assert main(["machine-info", "--machine", str(path)]) == 1
    line = _one_line_error(capsys)
    assert str(path) in line and "not an IonPlan machine file" in line, line
    assert "pickle" not in line and ".npz" in line and ".mat" in line


# ------------------------------------------------------------------ 4. and 5. HLUT


def _hlut_ending_at_water(tmp_path: Path) -> Path:
    path = tmp_path / "soft_only.csv"
    path.write_text("# name: soft tissue only\nhu,rsp\n-1000,0.001\n0,1.0\n", encoding="utf-8")
    return path


def test_recalc_report_records_the_hlut_and_warns_of_clamped_bone(folders, tmp_path, capsys):
    ct, plan = str(folders["ct"]), str(folders["plan"] / "RTPLAN.dcm")
    hlut = _hlut_ending_at_water(tmp_path)
    out = tmp_path / "r"
    assert main(["recalc", ct, plan, "--hlut", str(hlut), "--grid", "8", "--device", "cpu",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    warning = [w for w in err.splitlines() if "soft tissue only" in w]
    assert len(warning) == 1, err
    assert warning[0].startswith("ionplan: warning:") and "ends at 0 HU" in warning[0]
    n_above = int(np.count_nonzero(load_patient(ct).ct.hu > 0))
    assert f"{n_above:,} CT voxels" in warning[0]
    rep = json.loads((out / "report.json").read_text())
    entry = rep["hlut"]
    assert entry["file"] == str(hlut) and entry["name"] == "soft tissue only"
    assert entry["default"] is False and entry["hu_range"] == [-1000.0, 0.0]
    import hashlib

    assert entry["sha256"] == hashlib.sha256(hlut.read_bytes()).hexdigest()
    assert entry["ct_voxels_above_last_hu"] == n_above
    assert any("soft tissue only" in w for w in rep["warnings"])


def test_plan_report_records_the_default_hlut(folders):
    rep = json.loads((folders["plan"] / "report.json").read_text())
    entry = rep["hlut"]
    assert entry["default"] is True and entry["file"] is None
    assert entry["name"] == default_hlut().name
    assert entry["ct_voxels_above_last_hu"] == 0
    assert not any("HLUT" in w for w in rep["warnings"])


def test_robust_report_page_names_the_hlut():
    from planning.robust_report import render_robust_html

    rep = {"robust": {"n_scenarios": 1, "range_error_pct": 3.5, "setup_error_mm": 0,
                      "setup_directions": 6, "combined": False, "combined_only": False},
           "prescription": {"total_dose_gy_rbe": 60, "target": "PTV", "n_fractions": 12},
           "rbe_model": "mMKM", "dvh_bands_gy_rbe": {}, "scenarios": [],
           "worst_case": {"structures": {}},
           "hlut": {"file": "/clinic/ct_a.csv", "name": "Scanner A", "default": False,
                    "sha256": "ab" * 32, "hu_range": [-1000.0, 3000.0], "n_points": 9,
                    "ct_voxels_above_last_hu": 0}}
    html = render_robust_html(rep)
    assert "Scanner A" in html and "/clinic/ct_a.csv" in html


def test_hlut_clamping_is_counted_once(tmp_path):
    from planning.hlut import HlutCurve, ct_stopping_power

    curve = HlutCurve(np.array([-1000.0, 0.0]), np.array([0.001, 1.0]), "water top", "x.csv")
    hu = np.array([[-1000, 0, 10, 1500]], dtype=np.int16)
    rsp, use = ct_stopping_power(hu, curve)
    assert rsp.tolist() == [[pytest.approx(0.001), 1.0, 1.0, 1.0]]
    assert use.ct_voxels_above_last_hu == 2 and use.ct_max_hu == 1500
    warning = use.warning()
    assert warning is not None and "ends at 0 HU" in warning and "2 CT voxels" in warning
    assert "below bone" in warning
    _, fine = ct_stopping_power(hu, default_hlut())
    assert fine.warning() is None and fine.record()["default"] is True


# ------------------------------------------------------------------ 6. rbe-table


def test_rbe_table_names_model_ion_and_tissue(capsys):
    assert main(["rbe-table", "--model", "lem1", "--ion", "he", "--energies", "10,100",
                 "--tissue", "chordoma"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["model"].startswith("LEM I") and "chordoma" in table["model"]
    assert table["ion"] == "He" and table["ion_z"] == 2
    assert table["tissue"] == "chordoma"
    assert [r["energy_mev_u"] for r in table["rows"]] == [10.0, 100.0]
    assert main(["rbe-table", "--model", "mkm", "--energies", "10"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["model"].startswith("mMKM") and table["ion"] == "C"
    assert table["tissue"] == "HSG"  # the mMKM's cell line
    assert table["energy_range_mev_u"] == [0.1, 1000.0]


@pytest.mark.parametrize("energy", ["0.001", "100000"])
def test_rbe_table_refuses_energies_outside_the_tables(capsys, energy):
    assert main(["rbe-table", "--model", "mkm", "--energies", f"10,{energy}"]) == 1
    line = _one_line_error(capsys)
    assert f"{float(energy):g} MeV/u" in line and "0.1-1000 MeV/u" in line, line


# ------------------------------------------------------------------ 7. and 8. robust options


@pytest.mark.parametrize("command", [["robust", "ct", "p.dcm"],
                                     ["plan", "ct", "--target", "PTV", "--dose", "3",
                                      "--fractions", "1", "--gantry", "90", "--robust"]])
def test_combined_and_combined_only_are_exclusive(tmp_path, capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--combined", "--combined-only", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    line = _one_line_error(capsys)
    assert "--combined-only" in line and "--combined" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("robust", [["robust", "{ct}", "p.dcm"],
                                    ["plan", "{ct}", "--target", "PTV", "--dose", "3",
                                     "--fractions", "1", "--gantry", "90", "--robust"]])
def test_robust_without_errors_is_refused_before_any_work(tmp_path, capsys, robust):
    empty = tmp_path / "ct"
    empty.mkdir()  # no CT: the refusal comes before the folder is read
    argv = [a.format(ct=empty) for a in robust]
    assert main([*argv, "--range-error", "0", "--setup-error", "0",
                 "--out", str(tmp_path / "o")]) == 1
    line = _one_line_error(capsys)
    assert "--range-error" in line and "--setup-error" in line and "nothing to evaluate" in line
    assert not (tmp_path / "o").exists()



@pytest.mark.parametrize("robust", [["robust", "{ct}", "p.dcm"],
                                    ["plan", "{ct}", "--target", "PTV", "--dose", "3",
                                     "--fractions", "1", "--gantry", "90", "--robust"]])
@pytest.mark.parametrize("options", [["--combined", "--setup-error", "0"],
                                     ["--combined-only", "--range-error", "0"]])
def test_combined_scenarios_without_one_of_the_errors_are_refused(tmp_path, capsys, robust,
                                                                  options):
    """`robust --combined --setup-error 0` ran 3 scenarios and reported them as "and
    combined" (combined: true) although there is no combination (review)."""
    empty = tmp_path / "ct"
    empty.mkdir()  # no CT: the refusal comes before the folder is read
    argv = [a.format(ct=empty) for a in robust]
    assert main([*argv, *options, "--out", str(tmp_path / "o")]) == 1
    line = _one_line_error(capsys)
    assert options[0] in line and f"with {options[1]} 0 there is no combination" in line
    assert not (tmp_path / "o").exists()

def test_two_structure_sets_error_says_what_to_do(folders, tmp_path, capsys):
    """No option chooses a structure set: the message lists them and says to keep one."""
    two_rs = tmp_path / "two_rtstruct"
    shutil.copytree(folders["ct"], two_rs)
    (rs,) = [p for p in two_rs.iterdir() if pydicom.dcmread(p, stop_before_pixels=True)
             .Modality == "RTSTRUCT"]
    ds = pydicom.dcmread(rs)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(two_rs / "RS_copy.dcm")
    assert main(["recalc", str(two_rs), str(folders["plan"] / "RTPLAN.dcm"),
                 "--out", str(tmp_path / "o")]) == 1
    line = _one_line_error(capsys)
    assert "2 RT Structure Sets" in line and str(ds.SOPInstanceUID) in line
    assert "keep only the RT Structure Set to use" in line and "choose one by" not in line


def test_plan_refuses_robust_options_without_robust(tmp_path, capsys):
    """They were ignored without a word."""
    assert main(["plan", "ct", "--target", "PTV", "--dose", "3", "--fractions", "1",
                 "--gantry", "90", "--setup-error", "2", "--out", str(tmp_path / "o")]) == 1
    line = _one_line_error(capsys)
    assert "--setup-error is an option of the robust evaluation; add --robust" in line
    assert not (tmp_path / "o").exists()
