"""What IonPlan's output files say about their doses: units, envelopes, labels, dates.

- the robust envelopes (RTDOSE_*_MIN/MAX.dcm) say in Dose Comment and Series Description that
  they are the minimum / maximum over N scenarios, beside the model;
- the robust report.html gives Gy for a plan of physical dose;
- the plan document titles a physical-dose plan by its unit, draws no Gy(RBE) curve on its Gy
  axis, gives mMKM and LEM I their own dash patterns, and shows the plan's label as exported;
- ``ionplan plan --robust`` writes the plan document;
- the recalculation report keeps the warning of an unknown RBE model, and ``ionplan recalc``
  and ``ionplan robust`` print it once;
- clinical dates carry their time zone (documents, pictures, DICOM).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pypdf import PdfReader

from planning.cli import main
from planning.dicom import export_rt_dose, load_demo_patient, write_demo_patient
from planning.dicom.rtdose_export import DOSE_COMMENT_CHARS
from planning.document.identity import Identification, identification
from planning.document.picture import write_picture
from planning.dose_grid import DoseGrid
from planning.errors import InputError
from planning.rbe import ConstantRbe, LemModel, MkmModel, PhysicalDose
from planning.rbe.lem import DEFAULT_TISSUES
from planning.robust_report import render_robust_html

WHEN = datetime.datetime(2026, 12, 4, 21, 30, 5, tzinfo=datetime.UTC)
TOKYO = datetime.timezone(datetime.timedelta(hours=9))
PLAN_UID = "1.2.826.0.1.3680043.8.498.1"


def _text(path_or_bytes) -> str:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return " ".join(" ".join(page.extract_text() for page in PdfReader(source).pages).split())


# ---------------------------------------------------------------------- DICOM labels (unit)


@pytest.fixture(scope="module")
def demo():
    patient = load_demo_patient()
    grid = DoseGrid(shape=(3, 4, 5), spacing_mm=(2.5, 3.0, 2.0), origin_mm=(-5.0, -6.0, -2.5))
    return patient, grid, np.full(grid.shape, 2.0, np.float32)


@pytest.mark.parametrize(("model", "tissues", "dose_type"), [
    (MkmModel(), (), "EFFECTIVE"),
    (LemModel(), (("PTV", DEFAULT_TISSUES[0]), ("Brainstem", DEFAULT_TISSUES[1])), "EFFECTIVE"),
    (ConstantRbe(1.1), (), "EFFECTIVE"),
    (PhysicalDose(), (), "PHYSICAL"),
], ids=["mkm", "lem-tissues", "const", "physical"])
@pytest.mark.parametrize("which", ["minimum", "maximum"])
def test_an_envelope_dose_says_which_envelope_beside_its_model(demo, tmp_path, model, tissues,
                                                               dose_type, which):
    from planning.robust import envelope_label

    patient, grid, dose = demo
    suffix = envelope_label(which, 45)
    assert suffix == f"{which} over 45 scenarios"
    path = tmp_path / "env.dcm"
    export_rt_dose(dose, grid, patient, path, dose_type=dose_type, model=model,
                   structure_tissues=tissues, label_suffix=suffix, referenced_plan_uid=PLAN_UID)
    ds = pydicom.dcmread(path)
    for value in (str(ds.DoseComment), str(ds.SeriesDescription)):
        assert len(value) <= 64, value
        assert value.endswith(f" {suffix}"), value
        assert model.name in value  # the model is still named
    if isinstance(model, ConstantRbe):  # its one parameter too
        assert str(ds.SeriesDescription) == f"IonPlan dose constant RBE 1.1 {suffix}"
    assert str(ds.SeriesDescription).startswith(f"IonPlan dose {model.name}")
    assert ds.DoseType == dose_type
    # The nominal dose of the same model is told apart by both labels.
    nominal = tmp_path / "nominal.dcm"
    export_rt_dose(dose, grid, patient, nominal, dose_type=dose_type, model=model,
                   structure_tissues=tissues, referenced_plan_uid=PLAN_UID)
    plain = pydicom.dcmread(nominal)
    assert plain.DoseComment != ds.DoseComment
    assert plain.SeriesDescription != ds.SeriesDescription


def test_a_label_suffix_needs_a_model_and_room(demo, tmp_path):
    patient, grid, dose = demo
    with pytest.raises(InputError, match="give the model"):
        export_rt_dose(dose, grid, patient, tmp_path / "a.dcm", dose_type="PHYSICAL",
                       label_suffix="minimum over 3 scenarios", referenced_plan_uid=PLAN_UID)
    with pytest.raises(InputError):
        export_rt_dose(dose, grid, patient, tmp_path / "b.dcm", dose_type="EFFECTIVE",
                       model=MkmModel(), label_suffix="x" * (DOSE_COMMENT_CHARS - 2),
                       referenced_plan_uid=PLAN_UID)


# ------------------------------------------------------------------------- robust report unit


def _robust_rep(model: str) -> dict:
    return {"robust": {"n_scenarios": 3, "range_error_pct": 3.5, "setup_error_mm": 0,
                       "setup_directions": 6, "combined": False, "combined_only": False},
            "prescription": {"total_dose_gy_rbe": 60, "target": "PTV", "n_fractions": 12},
            "rbe_model": model, "scenarios": [], "worst_case": {"structures": {}},
            "dvh_bands_gy_rbe": {"PTV": {"volume_percent": [100.0, 50.0, 0.0],
                                         "dose_min_gy_rbe": [50.0, 58.0, 63.0],
                                         "dose_max_gy_rbe": [55.0, 60.0, 64.0],
                                         "dose_nominal_gy_rbe": [53.0, 59.0, 63.5]}}}


def test_robust_report_of_a_physical_plan_gives_gy():
    from planning.robust_report import dose_unit

    physical = _robust_rep(PhysicalDose().describe())
    assert dose_unit(physical) == "Gy"
    html = render_robust_html(physical)
    assert "Gy(RBE)" not in html
    assert "Prescription 60 Gy to PTV" in html and "Doses in Gy (physical dose), whole plan" in html
    assert ">dose (Gy)<" in html  # the band plot's axis
    rbe = _robust_rep(MkmModel().describe())
    assert dose_unit(rbe) == "Gy(RBE)"
    html = render_robust_html(rbe)
    assert "Prescription 60 Gy(RBE) to PTV" in html and "Doses in Gy(RBE), whole plan" in html
    assert ">dose (Gy(RBE))<" in html


# ------------------------------------------------------------------ plan document (in memory)


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """A small one-beam mMKM plan on the demo head with the exchange view."""
    from planning.dicom import load_patient
    from planning.planner import PlanRequest, make_plan

    base = tmp_path_factory.mktemp("labels_plan")
    write_demo_patient(base / "ct")
    request = PlanRequest(target="PTV", total_dose_gy_rbe=3.0, n_fractions=1,
                          gantry_deg=(90.0,), patient=load_patient(base / "ct"),
                          dose_grid_mm=6.0, spot_spacing_mm=8.0, device="cpu", exchange=True)
    return make_plan(request, keep_influence=False)


def test_document_of_a_physical_plan_is_titled_by_its_unit_and_draws_gy_only(planned):
    from planning.document.from_plan import plan_document
    from planning.document.pdf import pdf_bytes

    physical = dataclasses.replace(planned, model=PhysicalDose(),
                                   rbe_dose_gy_rbe=planned.physical_dose_gy)
    doc = plan_document(physical, "Plan 1", created=WHEN)
    assert doc.dvh_unit == "Gy"
    assert doc.sections[0].title == "Physical dose (the plan's model, Gy)"
    assert not any(s.title.startswith("RBE-weighted") and "plan's model" in s.title
                   for s in doc.sections)
    # Only the plan's Gy curves on the Gy axis; the Gy(RBE) doses keep their tables.
    assert doc.dvh_lines and not any(line.dashed for line in doc.dvh_lines)
    assert [label for label, _ in doc.dvh_legend] == ["physical (plan's model)"]
    assert any("not drawn" in w and "mMKM" in w and "LEM I" in w for w in doc.warnings)
    assert any("(other model, same spots, Gy(RBE))" in s.title for s in doc.sections)
    text = _text(pdf_bytes(doc))
    assert "Physical dose (the plan's model, Gy)" in text
    assert "RBE-weighted dose, physical dose" not in text


def test_document_gives_each_other_model_its_own_dash(planned):
    from planning.document.from_plan import plan_document
    from planning.document.pdf import pdf_bytes

    const = dataclasses.replace(planned, model=ConstantRbe(2.5))
    doc = plan_document(const, "Plan 1", created=WHEN)
    assert doc.dvh_unit == "Gy(RBE)"
    assert doc.sections[0].title == ("RBE-weighted dose, constant RBE 2.5 (the plan's model, "
                                     "Gy(RBE))")
    legend = dict(doc.dvh_legend)
    assert set(legend) == {"constant RBE (plan's model)", "mMKM", "LEM I"}
    assert legend["constant RBE (plan's model)"] == ()
    assert legend["mMKM"] and legend["LEM I"] and legend["mMKM"] != legend["LEM I"]
    assert {line.dash for line in doc.dvh_lines} == set(legend.values())
    assert not any("not drawn" in w for w in doc.warnings)
    # The plan's own mMKM plan: LEM I dashed in its own pattern.
    doc = plan_document(planned, "Plan 1", created=WHEN)
    assert dict(doc.dvh_legend) == {"mMKM (plan's model)": (), "LEM I": legend["LEM I"]}
    assert "LEM I" in _text(pdf_bytes(doc))


def test_document_shows_the_label_the_plan_is_exported_under(planned):
    from planning.document.from_plan import plan_document

    assert planned.plan.label == "IonPlan"  # the request's default: the app's plans

    def label(result, name: str) -> str:
        return dict(plan_document(result, name, created=WHEN).plan_facts.rows)["Plan label"]

    # The app's DICOM export writes the plan's name as RT Plan Name, its first 16 characters
    # as RT Plan Label (app/ionplan_app.py export_dicom_to); the document says the same.
    assert label(planned, "Plan 7") == "Plan 7"
    assert label(planned, "Left parotid boost plan") == "Left parotid boo"
    named = dataclasses.replace(planned, plan=dataclasses.replace(planned.plan, label="HN boost"))
    assert label(named, "Plan 1") == "HN boost"  # a label of its own is kept
    long = dataclasses.replace(planned, plan=dataclasses.replace(
        planned.plan, label="Head C12 boost plan v1"))
    assert label(long, "Head C12 boost plan v1") == "Head C12 boost p"  # as exported
    source = {"path": "/in/RTPLAN.dcm", "sop_instance_uid": "1.2"}
    received = dataclasses.replace(planned, report={**planned.report, "source_plan": source})
    assert label(received, "Plan 2") == "IonPlan"  # written back unchanged
    # A received plan is named by its RT Plan Name; the file keeps its own RT Plan Label.
    received = dataclasses.replace(long, report={**planned.report, "source_plan": {
        **source, "rt_plan_label": "HN_C12_v1"}})
    assert label(received, "Head C12 boost plan v1") == "HN_C12_v1"


# -------------------------------------------------- ionplan plan --robust (physical model)


@pytest.fixture(scope="module")
def robust_physical(tmp_path_factory):
    base = tmp_path_factory.mktemp("plan_robust")
    write_demo_patient(base / "ct")
    out = base / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["plan", str(base / "ct"), "--target", "PTV", "--dose", "3", "--fractions",
                   "1", "--gantry", "90", "--grid", "6", "--spot-spacing", "8", "--device",
                   "cpu", "--rbe", "physical", "--robust", "--range-error", "3.5",
                   "--setup-error", "0", "--out", str(out)])
    assert rc == 0
    estimate_line, plan_line, robust_line = printed.getvalue().splitlines()
    assert estimate_line.startswith("estimate of the plan (without the robust evaluation): ")
    # Every file once, on the plan's line; the robust line adds the scenarios' numbers.
    rep = json.loads((out / "report.json").read_text())
    assert plan_line.startswith(f"wrote {', '.join(rep['files'][:-1])} and report.json to ")
    assert robust_line.startswith(f"robust evaluation in {out}: 3 scenarios; PTV D95 ")
    return base / "ct", out


def test_plan_robust_writes_the_plan_document(robust_physical):
    _, out = robust_physical
    rep = json.loads((out / "report.json").read_text())
    (pdf,) = out.glob("*_report.pdf")
    assert re.fullmatch(r"IONPLAN-DEMO-001_IonPlan_\d{8}-\d{6}_report\.pdf", pdf.name)
    assert pdf.name in rep["files"]
    text = _text(pdf)
    assert "Physical dose (the plan's model, Gy)" in text
    assert "Plan label IonPlan" in text


def test_plan_robust_envelopes_and_report_of_a_physical_plan(robust_physical):
    _, out = robust_physical
    rep = json.loads((out / "report.json").read_text())
    n = rep["robust"]["n_scenarios"]
    assert n == 3
    labels = {}
    for name in ("RTDOSE_PHYSICAL.dcm", "RTDOSE_PHYSICAL_MIN.dcm", "RTDOSE_PHYSICAL_MAX.dcm"):
        ds = pydicom.dcmread(out / name, stop_before_pixels=True)
        labels[name] = (str(ds.DoseComment), str(ds.SeriesDescription))
        assert ds.DoseType == "PHYSICAL"
    assert labels["RTDOSE_PHYSICAL.dcm"] == ("physical dose", "IonPlan dose physical physical dose")
    for which in ("MIN", "MAX"):
        word = {"MIN": "minimum", "MAX": "maximum"}[which]
        comment, series = labels[f"RTDOSE_PHYSICAL_{which}.dcm"]
        assert comment == f"physical dose {word} over {n} scenarios"
        assert series == f"IonPlan dose physical dose {word} over {n} scenarios"
    html = (out / "report.html").read_text()
    assert "Gy(RBE)" not in html and "Doses in Gy (physical dose), whole plan" in html


def test_dicom_dates_are_local_without_an_offset(robust_physical):
    """Content date and time are the exporting machine's local time; no Timezone Offset From
    UTC, which would apply to the study's date and time copied from the CT as well."""
    _, out = robust_physical
    ds = pydicom.dcmread(out / "RTDOSE_PHYSICAL_MIN.dcm", stop_before_pixels=True)
    now = datetime.datetime.now().astimezone()
    assert "TimezoneOffsetFromUTC" not in ds
    written = datetime.datetime.strptime(ds.ContentDate + ds.ContentTime, "%Y%m%d%H%M%S")
    assert abs((written.replace(tzinfo=now.tzinfo) - now).total_seconds()) < 3600


UNKNOWN_MODEL = ("the plan names RBE model 'XiO RBE table v3', which IonPlan does not know: "
                 "its dose is recalculated under mMKM (the default)")


def test_recalc_report_keeps_the_unknown_model_warning(robust_physical):
    from planning.compare.recalc import recalculate_files
    from planning.dicom import load_rt_ion_plan

    ct, out = robust_physical
    plan = load_rt_ion_plan(out / "RTPLAN.dcm").plan
    foreign = dataclasses.replace(plan, rbe=None, rbe_tissues=(), rbe_model="XiO RBE table v3")
    result = recalculate_files(ct, foreign, grid_mm=8.0, device="cpu")
    message = UNKNOWN_MODEL
    assert result.report["rbe_model_source"] == "default"
    assert message in result.report["warnings"]
    # A plan whose model is known gets no such warning.
    known = recalculate_files(ct, dataclasses.replace(plan, rbe=MkmModel(),
                                                      rbe_model=MkmModel().describe()),
                              grid_mm=8.0, device="cpu")
    assert not any("does not know" in w for w in known.report["warnings"])


@pytest.mark.parametrize("command", ["recalc", "robust"])
def test_the_unknown_model_warning_is_printed_once(robust_physical, tmp_path, command):
    """The command prints its report's warnings; the warning of an unknown RBE model was
    logged at WARNING as well and read twice on the terminal (run as a process: pytest
    keeps log records off stderr)."""
    from planning.dicom._export_common import RBE_MODEL_PREFIX
    from planning.dicom._rbe_block import PRIVATE_GROUP

    ct, out = robust_physical
    ds = pydicom.dcmread(out / "RTPLAN.dcm")
    for tag in [e.tag for e in ds if e.tag.group == PRIVATE_GROUP]:  # IonPlan's model record
        del ds[tag]
    ds.RTPlanDescription = f"{RBE_MODEL_PREFIX}XiO RBE table v3"  # as another system's plan
    foreign = tmp_path / "foreign.dcm"
    ds.save_as(foreign)
    scenarios = ["--setup-error", "0"] if command == "robust" else []
    done = subprocess.run([sys.executable, "-m", "planning.cli", command, str(ct), str(foreign),
                           "--grid", "8", "--device", "cpu", *scenarios, "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(UNKNOWN_MODEL) == 1, done.stderr
    assert f"ionplan: warning: {UNKNOWN_MODEL}\n" in done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert UNKNOWN_MODEL in report["warnings"]


# ------------------------------------------------------------------------- dates with zone


def test_document_dates_carry_the_time_zone(tmp_path):
    ident = Identification("Doe^Jane", "HN-0042", "Plan 1", "mMKM HSG", WHEN)
    assert ident.date_text == "2026-12-04 21:30 UTC+00:00"
    tokyo = dataclasses.replace(ident, created=WHEN.astimezone(TOKYO))
    assert tokyo.date_text == "2026-12-05 06:30 UTC+09:00"
    west = dataclasses.replace(ident, created=datetime.datetime(
        2026, 12, 4, 16, 0, tzinfo=datetime.timezone(-datetime.timedelta(hours=3, minutes=30))))
    assert west.date_text == "2026-12-04 16:00 UTC-03:30"
    assert "Date: 2026-12-05 06:30 UTC+09:00" in tokyo.lines()
    assert tokyo.one_line().endswith("| 2026-12-05 06:30 UTC+09:00")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC[+-]\d\d:\d\d",
                        identification(None, "Plan 1", "mMKM").date_text)
    rgba = np.zeros((40, 900, 4), np.uint8)
    rgba[..., 3] = 255
    png = write_picture(rgba, tokyo, tmp_path, "view")
    with Image.open(png) as image:
        assert "Date: 2026-12-05 06:30 UTC+09:00" in image.text["Description"]


def test_pdf_date_row_and_header_carry_the_time_zone(planned):
    from planning.document.from_plan import plan_document
    from planning.document.pdf import pdf_bytes

    text = _text(pdf_bytes(plan_document(planned, "Plan 1", created=WHEN.astimezone(TOKYO))))
    assert "Date 2026-12-05 06:30 UTC+09:00" in text
    assert text.count("2026-12-05 06:30 UTC+09:00") >= 2  # the page header too


def test_dicom_date_time_are_local_with_their_offset(demo, tmp_path):
    patient, grid, dose = demo
    path = tmp_path / "d.dcm"
    export_rt_dose(dose, grid, patient, path, dose_type="PHYSICAL", model=PhysicalDose(),
                   referenced_plan_uid=PLAN_UID, created=WHEN.astimezone(TOKYO))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert (ds.ContentDate, ds.ContentTime) == ("20261205", "063005")
    assert (ds.InstanceCreationDate, ds.InstanceCreationTime) == ("20261205", "063005")
    assert (ds.SeriesDate, ds.SeriesTime) == ("20261205", "063005")
    assert "TimezoneOffsetFromUTC" not in ds  # it would apply to the CT's study date too
