"""``ionplan recalc`` and ``ionplan compare`` from the command line: outputs, exit codes, errors."""

from __future__ import annotations

import html
import json
import re
import shutil

import numpy as np
import pydicom
import pytest

from planning.cli import main
from planning.dicom import load_rt_dose
from tests.test_recalc import demo_plan_dirs


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    ct, plan_dir = demo_plan_dirs(tmp_path_factory)
    other = tmp_path_factory.mktemp("other_frame")
    ds = pydicom.dcmread(plan_dir / "RTDOSE_RBE.dcm")
    ds.FrameOfReferenceUID = "1.2.3.4.99"
    ds.save_as(other / "RTDOSE_OTHER.dcm")
    ds = pydicom.dcmread(plan_dir / "RTPLAN.dcm")
    ds.FrameOfReferenceUID = "1.2.3.4.99"
    ds.save_as(other / "RTPLAN_OTHER.dcm")
    lone = tmp_path_factory.mktemp("lone_dose")
    shutil.copy(plan_dir / "RTDOSE_RBE.dcm", lone / "dose.dcm")
    return ct, plan_dir, other, lone / "dose.dcm"


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("ionplan: error:") and "Traceback" not in err[0]
    return err[0]


def test_compare_cli_plan_folder_against_a_dose_file(demo, tmp_path, capsys):
    ct, plan_dir, _, lone = demo
    out = tmp_path / "cmp"
    assert main(["compare", str(plan_dir), str(lone), "--ct", str(ct), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "3%/3mm 100.00 %" in line and "2%/2mm 100.00 %" in line
    report = json.loads((out / "report.json").read_text())
    assert report["a"]["plan"] is not None and report["b"]["plan"] is None
    assert report["dose_difference"]["gy"]["max_abs"] == 0.0  # the same file's data
    planned = json.loads((plan_dir / "report.json").read_text())
    # Both reports say whose doses they are (neither did).
    for rep in (report, planned):
        assert rep["patient"]["patient_id"] == "IONPLAN-DEMO-001", rep.get("patient")
        assert rep["patient"]["ct_series_instance_uid"]
    assert planned["plan"]["rt_plan_sop_instance_uid"] == str(
        pydicom.dcmread(plan_dir / "RTPLAN.dcm", stop_before_pixels=True).SOPInstanceUID)
    assert report["structures"]["PTV"]["a"]["d95"] == pytest.approx(
        planned["structures"]["PTV"]["d95_gy_rbe"], rel=1e-4)
    # The cross-model view of the plan side: its mMKM dose is the plan's own (an mMKM plan),
    # computed through the exchange engine instead of the planner's forward pass.
    (view,) = report["cross_model"]
    assert view["label"] == "A" and view["target"] == "PTV"
    ptv = view["structures"]["PTV"]
    assert ptv["mkm_mean_gy_rbe"] == pytest.approx(planned["structures"]["PTV"]["mean_gy_rbe"],
                                                   rel=1e-3)
    assert ptv["lem_mean_gy_rbe"] / ptv["mkm_mean_gy_rbe"] == pytest.approx(
        view["target_ratio_lem_over_mkm_mean"], rel=0.05)
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 15


def test_recalc_cli_physical_model(demo, tmp_path, capsys):
    ct, plan_dir, _, _ = demo
    out = tmp_path / "recalc"
    assert main(["recalc", str(ct), str(plan_dir / "RTPLAN.dcm"), "--rbe", "physical",
                 "--grid", "4", "--out", str(out)]) == 0
    assert "requested RBE model" in capsys.readouterr().out
    physical = load_rt_dose(out / "RTDOSE_PHYSICAL.dcm").dose_gy
    assert not (out / "RTDOSE_RBE.dcm").exists()
    planned = load_rt_dose(plan_dir / "RTDOSE_PHYSICAL.dcm").dose_gy
    assert np.abs(physical - planned).max() < 1e-4 * float(planned.max())
    report = json.loads((out / "report.json").read_text())
    assert report["rbe_model"] == "physical dose" and report["rbe_model_source"] == "requested"
    # Comparing its RBE-weighted dose says why there is none and what to ask for instead.
    capsys.readouterr()
    assert main(["compare", str(out), str(plan_dir), "--out", str(tmp_path / "c")]) == 1
    assert "use --quantity physical" in capsys.readouterr().err


@pytest.mark.parametrize("args, code, message", [
    (["A=missing", "B=lone"], 1, "no such file or folder"),
    (["A=plan/RTPLAN.dcm", "B=lone"], 1, "not an RT Dose"),
    (["A=plan", "B=other/RTDOSE_OTHER.dcm"], 1, r"1\.2\.3\.4\.99"),
    (["A=plan", "B=lone", "--quantity", "mkm"], 1,
     r"no RTDOSE_RBE_MKM\.dcm .*its RTDOSE_RBE\.dcm is already the mMKM dose: use --quantity rbe"),
    (["A=plan", "B=lone", "--quantity", "lem1"], 1,
     r"its RTDOSE_RBE\.dcm is the mMKM dose \(--quantity rbe\); the mMKM and LEM I doses side "
     r"by side are written by 'ionplan recalc --exchange'"),
    (["A=plan", "B=lone", "--gamma", "3"], 2, "give dose %,distance mm"),
    (["A=plan", "B=lone", "--gamma", "0,3"], 2, "dose criterion must lie in"),
    (["A=plan", "B=lone", "--gamma", "3,x"], 2, "give dose %,distance mm"),
    (["A=plan", "B=lone", "--threshold", "150"], 2, r"must lie in \[0, 100\)"),
])
def test_compare_cli_errors_are_one_line(demo, tmp_path, capsys, args, code, message):
    _, plan_dir, other, lone = demo
    paths = {"missing": tmp_path / "nothing.dcm", "lone": lone, "plan": plan_dir,
             "plan/RTPLAN.dcm": plan_dir / "RTPLAN.dcm",
             "other/RTDOSE_OTHER.dcm": other / "RTDOSE_OTHER.dcm"}
    argv = [str(paths[a.split("=", 1)[1]]) if a.startswith(("A=", "B=")) else a for a in args]
    try:
        status = main(["compare", *argv, "--no-cross-model", "--out", str(tmp_path / "o")])
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    assert status == code
    assert re.search(message, _one_line_error(capsys))
    assert not (tmp_path / "o" / "report.json").exists()


def test_compare_lem1_of_a_lem1_recalculation_says_its_rbe_dose_is_lem1(demo, tmp_path, capsys):
    """A folder of 'ionplan recalc --rbe lem1' holds its LEM I dose as RTDOSE_RBE.dcm, not as
    the exchange view's RTDOSE_RBE_LEM1.dcm: --quantity lem1 says so (it said "give a plan
    output folder" of a plan output folder: review)."""
    ct, plan_dir, _, _ = demo
    lem = tmp_path / "recalc-lem"
    assert main(["recalc", str(ct), str(plan_dir / "RTPLAN.dcm"), "--rbe", "lem1", "--grid", "8",
                 "--device", "cpu", "--out", str(lem)]) == 0
    capsys.readouterr()
    assert main(["compare", str(lem), str(lem / "RTDOSE_RBE.dcm"), "--quantity", "lem1",
                 "--no-cross-model", "--out", str(tmp_path / "o")]) == 1
    assert _one_line_error(capsys).endswith(
        "no RTDOSE_RBE_LEM1.dcm for --quantity lem1; the folder holds RTDOSE_PHYSICAL.dcm, "
        "RTDOSE_RBE.dcm (its RTDOSE_RBE.dcm is already the LEM I dose (LEM I chordoma, "
        "averaged): use --quantity rbe)")


@pytest.mark.parametrize("ct_arg, plan_arg, message", [
    ("missing", "plan/RTPLAN.dcm", "not a folder"),
    ("ct", "missing", "nothing: no such file; give the RT Ion Plan file$"),
    ("ct", "folder", "plan: a folder, not a file; give the RT Ion Plan file$"),  # no such file
    ("ct", "plan/RTDOSE_RBE.dcm", "not an RT Ion Plan"),
    ("ct", "other/RTPLAN_OTHER.dcm", r"Frame of Reference 1\.2\.3\.4\.99 is not the CT's"),
])
def test_recalc_cli_errors_are_one_line(demo, tmp_path, capsys, ct_arg, plan_arg, message):
    ct, plan_dir, other, _ = demo
    paths = {"missing": tmp_path / "nothing", "ct": ct, "folder": plan_dir,
             "plan/RTPLAN.dcm": plan_dir / "RTPLAN.dcm",
             "plan/RTDOSE_RBE.dcm": plan_dir / "RTDOSE_RBE.dcm",
             "other/RTPLAN_OTHER.dcm": other / "RTPLAN_OTHER.dcm"}
    assert main(["recalc", str(paths[ct_arg]), str(paths[plan_arg]), "--out",
                 str(tmp_path / "o")]) == 1
    assert re.search(message, _one_line_error(capsys))


def test_compare_report_describes_each_side_in_full(demo, tmp_path, capsys):
    """Each side's description names its model in full (the Dose Comment cut it at 64
    characters), its plan's label and its file."""
    from planning.dicom import load_rt_ion_plan

    _, plan_dir, _, lone = demo
    out = tmp_path / "cmp"
    assert main(["compare", str(plan_dir), str(lone), "--no-cross-model", "--out",
                 str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    model = json.loads((plan_dir / "report.json").read_text())["rbe_model"]
    assert len(model) > 64 and load_rt_dose(lone).comment != model
    label = load_rt_ion_plan(plan_dir / "RTPLAN.dcm").plan.label
    assert report["a"]["model"] == report["b"]["model"] == model
    assert report["a"]["description"] == (f"RBE-weighted dose, {model}; plan {label!r}; "
                                          f"{plan_dir / 'RTDOSE_RBE.dcm'}")
    assert report["b"]["description"] == f"RBE-weighted dose, {model}; plan unknown; {lone}"
    assert html.escape(report["a"]["description"]) in (out / "report.html").read_text()


def test_compare_cli_of_a_physical_and_an_rbe_weighted_dose_says_why_there_is_no_gamma(
        demo, tmp_path, capsys):
    """The plan's physical dose against its RBE-weighted dose printed gamma pass rates of
    about 0 % and a max |diff| in "Gy vs Gy(RBE)": gamma is not evaluated, the line says why
    and gives the plan's effective RBE, which report.json and report.html hold as well."""
    ct, plan_dir, _, _ = demo
    out = tmp_path / "mixed"
    physical_file, rbe_file = plan_dir / "RTDOSE_PHYSICAL.dcm", plan_dir / "RTDOSE_RBE.dcm"
    assert main(["compare", str(physical_file), str(rbe_file), "--ct", str(ct),
                 "--no-cross-model", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    reason = "A is physical dose (Gy), B is RBE-weighted dose (Gy(RBE))"
    # The plan's own effective RBE, from the two files.
    physical = load_rt_dose(physical_file).dose_gy.astype(np.float64)
    weighted = load_rt_dose(rbe_file).dose_gy.astype(np.float64)
    shown = physical >= 0.1 * physical.max()
    ratio = weighted[shown] / physical[shown]
    median, p5, p95 = np.percentile(ratio, [50.0, 5.0, 95.0])
    assert 1.5 < median < 4.0  # carbon ions
    assert captured.out.strip() == (
        f"wrote report.json and report.html to {out}; gamma not evaluated: {reason}; "
        f"effective RBE B / A: median {median:.3f} (5th-95th percentile {p5:.3f}-{p95:.3f}) "
        "where the physical dose reaches 10 % of its maximum")
    # Both doses of the plan beside them: the ratio is its RBE, no caveat.
    assert ("ionplan: warning: a dose difference or gamma index between a physical (A) and an "
            "RBE-weighted dose (B) has no clinical meaning: neither is computed; B / A is "
            "reported, their effective RBE") in captured.err.splitlines()
    report = json.loads((out / "report.json").read_text())
    assert report["gamma"] == [] and report["gamma_skipped_reason"] == reason
    assert report["dose_difference"] is None
    assert report["effective_rbe"]["voxels"] == int(np.count_nonzero(shown))
    assert report["effective_rbe"]["p50"] == pytest.approx(median, rel=1e-5)
    ptv = report["structures"]["PTV"]
    assert ptv["b_over_a"]["mean"] == pytest.approx(ptv["b"]["mean"] / ptv["a"]["mean"])
    assert all(v is None for v in ptv["b_minus_a"].values())
    page = (out / "report.html").read_text()
    assert f"Gamma not evaluated</b>: {html.escape(reason)}" in page
    assert "pass rate" not in page


def test_a_plan_against_its_recalculation_under_the_other_model(demo, tmp_path, capsys):
    """An mMKM plan (A) against its recalculation under LEM I (B): B's V95 was read against
    the mMKM prescription, and the cross-model view, one plan's same spots, was given twice
    (review). B has no V95, and a note says why; the view is given once, for A and B."""
    ct, plan_dir, _, _ = demo
    lem = tmp_path / "recalc-lem"
    assert main(["recalc", str(ct), str(plan_dir / "RTPLAN.dcm"), "--rbe", "lem1", "--grid", "4",
                 "--device", "cpu", "--out", str(lem)]) == 0
    out = tmp_path / "cmp"
    assert main(["compare", str(plan_dir), str(lem), "--ct", str(ct), "--out", str(out)]) == 0
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    ptv = report["structures"]["PTV"]
    assert ptv["a"]["v95"] is not None and ptv["b"]["v95"] is None
    assert report["v95_note"].startswith("No V95 of B: it is relative to the prescription, "
                                         "60 Gy(RBE) under mMKM, and B's dose is under LEM I")
    (view,) = report["cross_model"]
    assert view["label"] == "A and B (the same plan)"
    page = html.unescape((out / "report.html").read_text())
    assert page.count("A and B (the same plan): plan") == 1
    assert report["v95_note"] in page
