"""What reading the patient's DICOM warned of (a file skipped in the CT folder, an open contour
in the structure set) reaches every output of ``ionplan plan``, ``recalc``, ``compare`` and a
batch job: report.json's warnings, the terminal (once each) and the plan notes of the PDF and
the app (once each). Before, only the PDF and the app said them; report.json, read by the
exchange staff and through batch summaries, did not.

The patient is the demo patient with a text file beside its DICOM files and one contour of
Eye_L made open (OPEN_PLANAR).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pydicom
import pytest

from planning import api
from planning.cli import main
from planning.dicom import load_patient, write_demo_patient
from planning.errors import InputError
from planning.plan_notes import plan_notes

SMALL = ["--grid", "8", "--device", "cpu"]


def _expected(ct: Path) -> tuple[str, str]:
    """The two import warnings of the patient in ``ct``, each naming its file."""
    return (f"1 file(s) skipped (e.g. {ct / 'notes.txt'}: not a DICOM file (no 'DICM' "
            "marker))",
            f"{ct / 'RS_demo.dcm'}: ROI 'Eye_L': 1 open contour(s) cannot fill a volume and "
            "were not rasterized")


@pytest.fixture(scope="module")
def warned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(CT folder, ``ionplan plan`` folder, the plan command's stderr) of the patient of the
    module docstring (one beam, 8 mm spots and grid)."""
    base = tmp_path_factory.mktemp("import_warnings")
    ct, out = base / "ct", base / "plan"
    write_demo_patient(ct)
    path = ct / "RS_demo.dcm"
    ds = pydicom.dcmread(path)
    names = {r.ROINumber: r.ROIName for r in ds.StructureSetROISequence}
    (eye,) = [c for c in ds.ROIContourSequence if names[c.ReferencedROINumber] == "Eye_L"]
    eye.ContourSequence[0].ContourGeometricType = "OPEN_PLANAR"
    ds.save_as(path)
    (ct / "notes.txt").write_text("not a DICOM file\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["plan", str(ct), "--target", "PTV", "--dose", "60", "--fractions", "12",
                     "--gantry", "90", "--spot-spacing", "8", *SMALL, "--out", str(out)]) == 0
    return ct, out, err.getvalue()


def test_the_patient_names_the_structure_set_file_of_its_warnings(warned):
    ct, _, _ = warned
    patient = load_patient(ct)
    assert patient.import_warnings() == _expected(ct)


def test_plan_report_and_terminal_say_the_import_warnings_once(warned):
    ct, out, err = warned
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    for text in _expected(ct):
        assert warnings.count(text) == 1, warnings
        assert err.count(text) == 1 and f"ionplan: warning: {text}\n" in err, err


def test_recalc_report_and_plan_notes_say_them_once(warned, tmp_path, capsys):
    ct, plan, _ = warned
    out = tmp_path / "recalc"
    assert main(["recalc", str(ct), str(plan / "RTPLAN.dcm"), *SMALL, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    for text in _expected(ct):
        assert warnings.count(text) == 1, warnings
        assert err.count(text) == 1, err
    # The PDF's and the app's notes: the report's warnings and the patient's, each once.
    result = api.recalculate_plan(load_patient(ct), plan / "RTPLAN.dcm", grid_mm=8.0,
                                  device="cpu")
    notes = plan_notes(result)
    assert all(notes.count(text) == 1 for text in _expected(ct)), notes


def test_compare_report_says_the_warnings_of_the_ct_it_reads_structures_from(warned, tmp_path):
    ct, plan, _ = warned
    out = tmp_path / "compare"
    assert main(["compare", str(plan / "RTDOSE_PHYSICAL.dcm"), str(plan / "RTDOSE_PHYSICAL.dcm"),
                 "--ct", str(ct), "--out", str(out)]) == 0
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    assert all(warnings.count(text) == 1 for text in _expected(ct)), warnings


def test_a_batch_jobs_warnings_hold_them_once(warned, tmp_path):
    pytest.importorskip("distributed")
    from planning.batch import JobSpec, run_job

    ct, plan, _ = warned
    job = JobSpec("pat1", "recalc", str(ct), {"plan": str(plan / "RTPLAN.dcm"), "grid": 8,
                                              "device": "cpu"})
    outcome = run_job(job, tmp_path / "out")
    assert outcome.status == "ok", outcome.error
    for text in _expected(ct):
        assert outcome.warnings.count(text) == 1, outcome.warnings
        assert f"job 'pat1': {text}" in outcome.warning_lines()
    stored = json.loads((tmp_path / "out" / "pat1" / "job.json").read_text())
    assert stored["warnings"] == list(outcome.warnings)


def test_a_missing_patient_position_is_one_of_the_reports_warnings(tmp_path, caplog):
    """A CT series without Patient Position: the import says so in the patient's warnings,
    naming a slice file and the series, so that report.json holds it (before, it was only
    logged, and reached the terminal alone)."""
    ct, out = tmp_path / "ct", tmp_path / "plan"
    write_demo_patient(ct)
    slices = sorted(ct.glob("CT_*.dcm"))
    for path in slices:
        ds = pydicom.dcmread(path)
        del ds.PatientPosition
        ds.save_as(path)
    series_uid = pydicom.dcmread(slices[0]).SeriesInstanceUID
    ending = (f" (CT series {series_uid}): Patient Position missing; geometry is taken from "
              "the images")
    (warning,) = [w for w in load_patient(ct).import_warnings() if "Patient Position" in w]
    assert warning.endswith(ending) and warning[: -len(ending)] in {str(p) for p in slices}
    caplog.clear()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["plan", str(ct), "--target", "PTV", "--dose", "60", "--fractions", "12",
                     "--gantry", "90", "--spot-spacing", "8", *SMALL, "--out", str(out)]) == 0
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    assert warnings.count(warning) == 1, warnings
    assert err.getvalue().count(warning) == 1, err.getvalue()
    # Not logged as well: the terminal says it once, as the report's warning.
    assert not [r for r in caplog.records if "Patient Position" in r.getMessage()]


def test_an_empty_target_says_what_the_import_warned_of_it(tmp_path, capsys):
    """A target whose contours all lie outside the CT failed with "the target 'PTV' has no
    voxels on the CT grid" alone: the import's warning that said why (its contours were
    ignored) was logged at INFO, shown with -v only, and a failed run writes no report.json."""
    ct = tmp_path / "ct"
    write_demo_patient(ct)
    path = ct / "RS_demo.dcm"
    ds = pydicom.dcmread(path)
    names = {r.ROINumber: r.ROIName for r in ds.StructureSetROISequence}
    (ptv,) = [c for c in ds.ROIContourSequence if names[c.ReferencedROINumber] == "PTV"]
    for contour in ptv.ContourSequence:  # 500 mm to the left: outside the 256 mm CT
        contour.ContourData = [v + 500.0 if i % 3 == 0 else v
                               for i, v in enumerate(contour.ContourData)]
    ds.save_as(path)
    why = (f"the target 'PTV' has no voxels on the CT grid; the import of {path} said: "
           f"ROI 'PTV': {len(ptv.ContourSequence)} contour(s) outside the CT volume were "
           "ignored")
    assert main(["plan", str(ct), "--target", "ptv", "--dose", "3", "--fractions", "1",
                 "--gantry", "90", *SMALL, "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip() == f"ionplan: error: {why}"
    with pytest.raises(InputError, match="the import of"):
        api.target_isocenter_mm(load_patient(ct), "PTV")
    assert len(api.target_isocenter_mm(load_patient(ct), "Eye_L")) == 3  # a structure in it
