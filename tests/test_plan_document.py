"""The plan document (PDF), identified pictures and names that never overwrite.

The PDF's text is read back with pypdf, an independent reader, and checked against the plan
as exported (RTPLAN.dcm read back), report.json and the RBE model's own parameters.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import re

import numpy as np
import pydicom
import pytest
from PIL import Image
from pypdf import PdfReader

from planning.atomic import atomic_binary_file, atomic_create_with
from planning.cli import main
from planning.dicom import load_patient, load_rt_ion_plan, write_demo_patient
from planning.document import write_plan_document
from planning.document.identity import Identification, identification
from planning.document.naming import file_stem, new_folder, safe_part, write_new_file
from planning.document.picture import labelled_rgba, write_picture
from planning.errors import InputError
from planning.plan_notes import optimizer_passes, optimizer_status
from planning.planner import PlanRequest, make_plan, write_plan_outputs
from planning.rbe import LemModel, MkmModel

WHEN = datetime.datetime(2026, 12, 4, 21, 30, 5, tzinfo=datetime.UTC)
IDENT = Identification("Doe^Jane", "HN-0042", "Plan 1", "mMKM HSG", WHEN)


def _text(path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """A small two-beam mMKM plan on the demo head with the exchange view, exported with its
    plan document; (result, output folder, report, document text)."""
    base = tmp_path_factory.mktemp("document")
    write_demo_patient(base / "ct")
    request = PlanRequest(target="PTV", total_dose_gy_rbe=3.0, n_fractions=1,
                          gantry_deg=(90.0, 270.0), patient=load_patient(base / "ct"),
                          dose_grid_mm=5.0, spot_spacing_mm=6.0, device="cpu", exchange=True)
    result = make_plan(request, keep_influence=False)
    out = base / "out"
    write_plan_outputs(result, out, plan_name="Plan 1")
    report = json.loads((out / "report.json").read_text())
    (pdf,) = out.glob("*_report.pdf")
    return result, out, report, _text(pdf)


def test_document_is_listed_and_named_after_patient_plan_and_time(planned):
    _, out, report, _ = planned
    (pdf,) = out.glob("*_report.pdf")
    assert re.fullmatch(r"IONPLAN-DEMO-001_Plan_1_\d{8}-\d{6}_report\.pdf", pdf.name)
    assert pdf.name in report["files"]
    assert PdfReader(pdf).metadata.title == "Treatment plan Plan 1"


def test_identification_prescription_and_model_parameters(planned):
    result, _, _, text = planned
    study = result.patient.ct.study
    assert study.patient_id in text
    assert ", ".join(study.patient_name.split("^")) in text
    assert "Plan 1" in text
    assert re.search(r"3 Gy\(RBE\) in 1 fraction\b", text) and "PTV" in text  # not "1 fractions"
    # Every parameter of the model, by name and value (the model's own defaults).
    model = MkmModel()
    assert result.model == model
    for field in dataclasses.fields(model):
        value = getattr(model, field.name)
        shown = format(value, "g") if isinstance(value, float) else str(value)
        assert re.search(rf"{field.name}\s+{re.escape(shown)}\b", text), field.name
    assert "Inaniwa" in text  # what formulation it is


def test_beam_rows_match_the_exported_plan(planned):
    _, out, report, text = planned
    plan = load_rt_ion_plan(out / "RTPLAN.dcm").plan
    lines = text.splitlines()
    for bp, placed in zip(plan.beams, (b["spots"] for b in report["beams"]), strict=True):
        delivered = np.asarray(bp.weights) > 0
        energies = np.asarray(bp.spots.energy_mev_u)[delivered]
        layers = np.unique(np.asarray(bp.spots.layer)[delivered]).size
        particles = float(np.sum(bp.weights)) * 1e6
        # pypdf gives each cell of the row on its own line, in column order.
        row = lines.index(bp.beam.label)
        cells = lines[row:row + 9]
        assert cells[1] == f"{bp.beam.gantry_deg:g}" and cells[2] == f"{bp.beam.couch_deg:g}"
        assert cells[4] == f"{energies.min():.1f} - {energies.max():.1f}"
        assert cells[5] == str(layers)
        # Delivered of placed: the exported plan holds the delivered spots only.
        assert delivered.all() and cells[6] == f"{delivered.sum()} of {placed}"
        assert float(cells[7]) == pytest.approx(particles, rel=2e-3)
    x, y, z = plan.beams[0].beam.isocenter_mm
    assert f"{x:.1f}, {y:.1f}, {z:.1f}" in text


def test_the_machine_has_one_name_in_the_plan_its_report_dicom_and_document(planned):
    """The plan document said "IonPlan generic 12C" and the RT Ion Plan (and so the document of
    a robust evaluation of it) "IonPlan generic": every file names the machine's name."""
    from planning.machine import load_machine

    result, out, report, text = planned
    name = load_machine().name
    exported = pydicom.dcmread(out / "RTPLAN.dcm")
    assert {b.TreatmentMachineName for b in exported.IonBeamSequence} == {name}
    assert result.plan.machine_name == report["machine"] == name
    assert load_rt_ion_plan(out / "RTPLAN.dcm").plan.machine_name == name
    assert re.search(rf"^Machine\s+{re.escape(name)}$", text, re.MULTILINE), text


def test_objectives_and_optimizer_result(planned):
    _, _, report, text = planned
    for o in report["objectives"]:
        assert re.search(rf"{o['structure']}\s+{o['type']}\s+{o['dose_gy_rbe']:.2f}", text), o
    status = optimizer_status(report["optimizer_message"],
                              passes=optimizer_passes(report)[0])
    # Each earlier pass that stopped at its limit is named before the last pass's status.
    words = {"first": "the first optimization",
             "refinement": "the pass after the refinement's check"}
    earlier = [f"{words[e['pass']]} stopped at its iteration limit after {e['iterations']} "
               "iterations, before its convergence test was met; "
               for e in report["optimizer_pass_messages"][:-1]
               if e["pass"] in words and e["message"].startswith("STOP: TOTAL NO. OF ITER")]
    status = "".join(earlier) + status
    assert f"Status {status}" in " ".join(text.split())
    assert re.search(rf"Iterations\s+{report['iterations']}\b", text)
    added = report["refinement"]["target_points_added"]
    spacing = max(report["refinement"]["check_grid_spacing_mm"])
    flat = " ".join(text.split())
    assert report["refinement"]["watch_level"] == 1.03
    assert re.search(rf"Target points added \(refinement\)\s+{added} \(points of a {spacing:g} "
                     r"mm check grid above 105 % and dose-grid voxels below 95 %", flat), \
        report["refinement"]
    hot = report["refinement"]["hot_point_objective"]
    assert hot is not None and hot["points"] > 0  # the defaults ask a maximum of the target
    assert hot["level_pct"] == pytest.approx(105.0)
    assert (f"; {hot['points']} points above 103 % under a maximum-dose objective at 105 %, "
            f"weight {hot['weight']:g}") in flat
    assert report["optimizer_start"] == "uniform"
    assert "Started from uniform spot weights scaled to the prescription" in flat
    correction = report["dose_correction"]
    assert flat.count("Pencil-beam halo in the optimizer") == 1, correction
    assert re.search(r"Pencil-beam halo in the optimizer\s+matrices to 80 % of each spot's "
                     r"dose, the rest to 99 % as a correction \("
                     + f"{100 * correction['target_dose_share']:.1f}", flat), correction
    passes = correction["settling_passes"]
    assert 0 <= passes <= 3 and (passes == 3 or correction["residual_pct"] <= 0.2), correction
    assert re.search(rf"made again after the last pass(es)? \({passes} further pass(es)?, "
                     rf"{correction['settling_iterations']} iterations\): the optimizer's dose "
                     rf"at its points within {correction['residual_pct']:.2f} % of the plan's "
                     r"\(tolerance 0.2 %\)", flat), correction


def test_each_objectives_share_and_rms_deviation(planned):
    """The objective value was one number without a meaning of its own; each objective now
    has its term, its share of the value (the hot-point objective's too: together 100 %) and
    the RMS deviation of the whole plan's dose over its points, in report.json and the PDF."""
    _, _, report, text = planned
    hot = report["refinement"]["hot_point_objective"]
    entries = [*report["objectives"], hot]
    assert sum(e["term"] for e in entries) == pytest.approx(report["objective_value"], rel=1e-9)
    assert sum(e["share_percent"] for e in entries) == pytest.approx(100.0, abs=1e-6)
    n_fx = report["prescription"]["n_fractions"]
    for e in entries:
        assert e["rms_deviation_gy_rbe"] == pytest.approx(
            (e["term"] / e["weight"]) ** 0.5 * n_fx, rel=1e-9)
    flat = " ".join(text.split())
    assert "RMS deviation (Gy(RBE)) Share %" in flat
    for o in report["objectives"]:
        assert re.search(rf"{re.escape(o['structure'])}\s+{o['type']}\s+{o['dose_gy_rbe']:.2f}"
                         rf"\s+{o['weight']:g}\s+\S+\s+{o['rms_deviation_gy_rbe']:.2f}\s+"
                         rf"{o['share_percent']:.1f}", text), o
    # The target's uniformity objective deviates at all: a plan is never exactly flat.
    flat_term = next(o for o in report["objectives"] if o["type"] == "squared_deviation")
    assert flat_term["rms_deviation_gy_rbe"] > 0


def test_both_models_metrics_dvh_views_warnings_and_approval(planned):
    _, out, report, text = planned
    flat = " ".join(text.split())
    assert f"RBE-weighted dose, {MkmModel().describe()} (the plan's model" in flat
    assert f"RBE-weighted dose, {LemModel().describe()} (other model" in flat
    assert "Physical dose" in flat
    # The metrics of the plan's model agree with report.json.
    ptv = report["structures"]["PTV"]
    row = re.search(r"\nPTV\s+([\d.]+)\s+([\d.]+)", text)
    assert row is not None and float(row.group(1)) == pytest.approx(ptv["d98_gy_rbe"], abs=0.006)
    assert float(row.group(2)) == pytest.approx(ptv["d95_gy_rbe"], abs=0.006)
    # Colour bar, isodose legend and DVH axes are text; the only images are the three views.
    for words in ("Dose (Gy(RBE)); no colour below 0.30",
                  "Isodose lines (solid), 100 % = 3 Gy(RBE) (prescription)",
                  "95 %", "Volume (%)", "Dose-volume histograms"):
        assert words in flat, words
    # The views' titles are text operators of the page (the views themselves: see
    # test_dose_views_are_image_objects_not_inline_images).
    (pdf,) = out.glob("*_report.pdf")
    content = b"".join(page.get_contents().get_data() for page in PdfReader(pdf).pages)
    for words in (b"(Axial, z =", b"(Coronal, y =", b"(Sagittal, x ="):
        assert words in content, words
    assert "research software" in flat
    for role in ("Planned by", "Checked by", "Approved by"):
        assert role in flat


def test_views_are_centred_on_the_target_not_the_screen(planned):
    from planning.document.from_plan import plan_document

    result, _, _, _ = planned
    doc = plan_document(result, "Plan 1", created=WHEN)
    ptv = result.patient.structure_set.get("PTV").mask.to_dense()
    ct = result.patient.ct
    centre = np.argwhere(ptv).mean(axis=0) * ct.spacing_mm + np.asarray(ct.origin_mm)[::-1]
    planes = {v.name: v.plane_mm for v in doc.views}
    assert planes["axial"] == pytest.approx(centre[0])
    assert planes["coronal"] == pytest.approx(centre[1])
    assert planes["sagittal"] == pytest.approx(centre[2])
    for view in doc.views:
        n = view.rgb.shape[0]
        (outline,) = [s for s in view.structures if s.label == "PTV"]
        points = np.concatenate(outline.lines)
        # The target's outline is around the middle of each view.
        assert np.allclose(points.mean(axis=0), (n - 1) / 2, atol=0.1 * n)


def test_two_documents_of_one_plan_in_one_second_never_overwrite(planned, tmp_path):
    result, _, _, _ = planned
    first = write_plan_document(result, tmp_path, "Plan 1", created=WHEN)
    before = first.read_bytes()
    second = write_plan_document(result, tmp_path, "Plan 1", created=WHEN)
    assert first != second and first.read_bytes() == before
    assert first.name == "IONPLAN-DEMO-001_Plan_1_20261204-213005_report.pdf"
    assert second.name == "IONPLAN-DEMO-001_Plan_1_20261204-213005-2_report.pdf"
    assert {p.name for p in tmp_path.iterdir()} == {first.name, second.name}


def test_cli_plan_writes_the_plan_document(tmp_path, capsys):
    write_demo_patient(tmp_path / "ct")
    out = tmp_path / "out"
    rc = main(["plan", str(tmp_path / "ct"), "--target", "PTV", "--dose", "3", "--fractions",
               "1", "--gantry", "90", "--grid", "6", "--spot-spacing", "8", "--device", "cpu",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    (pdf,) = out.glob("*_report.pdf")
    assert pdf.name in capsys.readouterr().out
    assert pdf.name in json.loads((out / "report.json").read_text())["files"]
    text = _text(pdf)
    assert "IONPLAN-DEMO-001" in text and "G90" in text and "Approved by" in text


def test_names_are_portable_and_never_replace_a_file(tmp_path):
    assert safe_part("Plan 1 / A:B") == "Plan_1_A_B"
    assert safe_part("////") == "unnamed"
    assert file_stem(IDENT) == "HN-0042_Plan_1_20261204-213005"
    paths = [write_new_file(tmp_path, "x", ".txt", lambda fh, k=k: fh.write(b"%d" % k))
             for k in range(3)]
    assert [p.name for p in paths] == ["x.txt", "x-2.txt", "x-3.txt"]
    assert [p.read_bytes() for p in paths] == [b"0", b"1", b"2"]
    with pytest.raises(FileExistsError):
        atomic_create_with(paths[0], lambda fh: fh.write(b"new"))
    assert paths[0].read_bytes() == b"0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-2.txt", "x-3.txt", "x.txt"]
    assert new_folder(tmp_path, "x.txt").name == "x.txt-2"  # folders too
    with pytest.raises(InputError, match="does not exist"):
        write_new_file(tmp_path / "missing", "x", ".txt", lambda fh: None)


def test_picture_carries_the_identification(tmp_path):
    rgba = np.zeros((120, 700, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 150, 255
    first = write_picture(rgba, IDENT, tmp_path, "planning view")
    second = write_picture(rgba, IDENT, tmp_path, "planning view")
    assert first.name == "HN-0042_Plan_1_20261204-213005_planning_view.png"
    assert second.name == "HN-0042_Plan_1_20261204-213005-2_planning_view.png"
    with Image.open(io.BytesIO(first.read_bytes())) as png:
        description = png.text["Description"]
        pixels = np.asarray(png.convert("RGBA"))
    for words in ("Doe, Jane (ID HN-0042)", "Plan 1", "mMKM HSG", "2026-12-04 21:30"):
        assert words in description
    banner = pixels.shape[0] - rgba.shape[0]
    assert banner > 10
    np.testing.assert_array_equal(pixels[banner:], rgba)  # the picture itself unchanged
    ink = pixels[:banner, :, :3].max(axis=-1) < 100  # dark text on the light banner
    assert ink.sum() > 200
    # The text is the identification: the banner of another patient differs.
    other = labelled_rgba(rgba, dataclasses.replace(IDENT, patient_id="HN-0043"))
    assert not np.array_equal(other[:banner], pixels[:banner])


def test_identification_of_a_patient_without_name():
    ident = identification(None, "Plan 2", "LEM I", WHEN)
    assert ident.patient_text == "Anonymous (ID -)"
    assert file_stem(ident) == "no-id_Plan_2_20261204-213005"


def test_japanese_names_are_text_in_the_document(planned):
    from planning.document.fonts import CJK_FONT, FONT, text_runs
    from planning.document.from_plan import plan_document
    from planning.document.pdf import pdf_bytes

    assert text_runs("山田^Taro µ") == [("山田", CJK_FONT), ("^Taro µ", FONT)]
    result, _, _, _ = planned
    doc = plan_document(result, "計画 1", created=WHEN)
    doc = dataclasses.replace(doc, ident=dataclasses.replace(doc.ident,
                                                             patient_name="山田^太郎"))
    # pypdf breaks the line where the font changes: compare without white space.
    text = "".join(_text(io.BytesIO(pdf_bytes(doc))).split())
    assert "山田,太郎(IDIONPLAN-DEMO-001)" in text and "計画1" in text


def test_a_japanese_structure_name_in_the_dvh_legend_is_set_in_the_cjk_font():
    from reportlab.graphics.shapes import String

    from planning.document.content import DvhLine
    from planning.document.drawings import dvh_drawing
    from planning.document.fonts import CJK_FONT, FONT

    line = DvhLine("脳幹 PRV", (200, 0, 0), np.array([0.0, 10.0]), np.array([1.0, 0.0]))
    drawing = dvh_drawing([line], "Gy(RBE)", 400.0, 200.0, [])

    def strings(node) -> list:
        found = [node] if isinstance(node, String) else []
        for child in getattr(node, "contents", []):
            found += strings(child)
        return found

    runs = [(s.text, s.fontName) for s in strings(drawing) if s.text in ("脳幹", " PRV")]
    assert runs == [("脳幹", CJK_FONT), (" PRV", FONT)]


def test_a_plan_whose_target_is_not_contoured_gets_views_through_the_dose_maximum(planned):
    from planning.document.from_plan import plan_document
    from planning.plan import Prescription

    result, _, _, _ = planned
    received = dataclasses.replace(result, plan=dataclasses.replace(
        result.plan, prescription=Prescription("Tumour", 3.0, 1)))
    doc = plan_document(received, "Plan 2", created=WHEN)
    peak = np.unravel_index(np.argmax(result.rbe_dose_gy_rbe), result.dose_grid.shape)
    centre = result.dose_grid.voxel_centers_lps(
        [np.ravel_multi_index(peak, result.dose_grid.shape)])[0]
    assert [v.plane_mm for v in doc.views] == pytest.approx([centre[2], centre[1], centre[0]])
    assert doc.views[0].focus.startswith("the dose maximum")
    assert any("'Tumour' is not a contoured structure" in w for w in doc.warnings)


def test_an_interrupted_write_leaves_no_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_bytes(b"old")

    def fail(fh) -> None:
        fh.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError), atomic_binary_file(target) as fh:
        fail(fh)
    with pytest.raises(RuntimeError):
        atomic_create_with(tmp_path / "b.txt", fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_dose_views_are_image_objects_not_inline_images(planned):
    """Inline images (ReportLab's graphics Image shape) made pypdf fail on some dose views
    ("Unexpected end of stream"); the three views are image objects every reader parses."""
    _, out, _, _ = planned
    (pdf,) = out.glob("*_report.pdf")
    images = 0
    for page in PdfReader(pdf).pages:
        xobjects = page["/Resources"].get("/XObject", {})
        images += sum(1 for k in xobjects if xobjects[k].get_object()["/Subtype"] == "/Image")
        assert b"\nBI" not in page.get_contents().get_data()
    assert images == 3


def test_a_report_from_before_the_check_grid_says_what_it_checked(planned):
    """A session saved before December 2026 (refinement on the dose-grid voxels only,
    ``target_voxels_added``) still gets its optimizer table, worded for what it did."""
    import dataclasses

    from planning.document.from_plan import plan_document

    result = planned[0]
    old = {k: v for k, v in result.report.items() if k != "refinement"}
    old["refinement"] = {"target_voxels_added": 48, "window": [0.95, 1.05], "iterations": 44}
    doc = plan_document(dataclasses.replace(result, report=old), "Plan 1")
    rows = dict(doc.optimizer.rows)
    assert rows["Target points added (refinement)"] == (
        "48 (dose-grid voxels outside 95-105 %); 44 iterations after the check")
    # before 2026-12-07: the check grid's points above the window's top, no objective of their own
    old["refinement"] = {"target_points_added": 31, "check_grid_spacing_mm": [1.25] * 3,
                         "target_points_checked": 999, "window": [0.95, 1.05], "iterations": 44}
    doc = plan_document(dataclasses.replace(result, report=old), "Plan 1")
    assert dict(doc.optimizer.rows)["Target points added (refinement)"] == (
        "31 (points of a 1.25 mm check grid above 105 % and dose-grid voxels below 95 %); "
        "44 iterations after the check")


def test_page_header_stays_within_the_frame():
    """A header (patient | plan | model | date) with a LEM I model ran past the right margin
    (to 4 pt from the page's edge)."""
    from planning.document.pdf import FRAME_WIDTH, _width, header_lines

    text = ("IonPlan, Demo Head (ID IONPLAN-DEMO-001) | Plan 1 | RBE-weighted dose (LEM I "
            "chordoma rapid=averaged ax=0.1 bx=0.05 Dt=30Gy Rn=5um) | 2026-12-07 03:58 "
            "UTC+00:00")
    assert _width(text, 7.0) > FRAME_WIDTH
    lines, size = header_lines(text, 7.0, FRAME_WIDTH)
    assert len(lines) == 2 and size == 7.0
    assert " | ".join(lines) == text
    assert all(_width(line, size) <= FRAME_WIDTH for line in lines)
    huge = " | ".join(["X" * 150] * 4)
    lines, size = header_lines(huge, 7.0, FRAME_WIDTH)
    assert len(lines) == 2 and size < 7.0
    short, size = header_lines("A | B", 7.0, FRAME_WIDTH)
    assert short == ["A | B"] and size == 7.0


def test_a_robust_evaluation_gets_its_section_with_settings_scenarios_and_bands(tmp_path):
    """The section's text read back: the scenario settings, one table per structure with the
    evaluation's scenario names and numbers (the Robustness view's rows), the band figure."""
    from planning import api
    from planning.document.from_plan import plan_document
    from tests.workspace_factory import synthetic_plan_result, synthetic_robust

    patient = api.demo_patient()
    plain = synthetic_plan_result(patient, 2)
    assert plan_document(plain, "Plan 1").robustness is None
    assert "Robustness" not in _text(write_plan_document(plain, tmp_path, "Plan 1"))

    result = synthetic_plan_result(patient, 2)
    synthetic_robust(result)
    report = result.report
    text = _text(write_plan_document(result, tmp_path, "Plan 1"))
    section = text[text.index("Robustness"):]
    assert section.index("Robustness") < section.index("Warnings") - 1  # before the warnings
    flat = " ".join(section.split())
    for words in ("Stopping-power error +/-3.5 %", "Setup error none", "Scenarios 3",
                  "DVH bands over the scenarios", "lowest / highest over scenarios",
                  "PTV (target), Gy(RBE)", "Brainstem, Gy(RBE)"):
        assert words in flat, words
    assert "External," not in flat  # the external contour has no table
    # The PTV's table: the scenarios in the evaluation's order, then lowest and highest.
    ptv = section[section.index("PTV (target)"):].splitlines()
    rows = [line for line in ptv if line in ("nominal", "SPR +3.5% (short)",
                                             "SPR -3.5% (long)", "lowest over scenarios",
                                             "highest over scenarios")][:5]
    assert rows == ["nominal", "SPR +3.5% (short)", "SPR -3.5% (long)",
                    "lowest over scenarios", "highest over scenarios"]
    short = report["scenarios"][1]["structures"]["PTV"]
    start = ptv.index("SPR +3.5% (short)")
    assert ptv[start + 1:start + 7] == [f"{short[k]:.2f}" for k in (
        "d98_gy_rbe", "d95_gy_rbe", "d50_gy_rbe", "d2_gy_rbe", "mean_gy_rbe", "max_gy_rbe")]
    worst = report["worst_case"]["structures"]["PTV"]
    low = ptv.index("lowest over scenarios")
    assert ptv[low + 2] == f"{worst['d95_gy_rbe_min']:.2f}"
    # The band figure: per structure the nominal line and both edges, from 0 dose at 100 %.
    doc = plan_document(result, "Plan 1")
    assert doc.robustness is not None
    lines = [ln for ln in doc.robustness.band_lines if ln.structure == "PTV"]
    assert [ln.dashed for ln in lines] == [False, True, True]
    band = report["dvh_bands_gy_rbe"]["PTV"]
    for line, key in zip(lines, ("dose_nominal_gy_rbe", "dose_min_gy_rbe", "dose_max_gy_rbe"),
                         strict=True):
        assert (line.dose[0], line.volume_fraction[0]) == (0.0, 1.0)
        assert line.dose[-1] == pytest.approx(max(band[key]))
        assert np.all(np.diff(line.dose) >= 0) and np.all(np.diff(line.volume_fraction) <= 0)


def test_exports_of_an_evaluated_plan_write_the_robust_document(planned, tmp_path):
    """The GUI's DICOM export (api.export_plan with the plan's evaluation) and
    api.write_robust_outputs write the document with its robustness section beside
    report.html and the worst-case doses."""
    from planning import api
    from tests.workspace_factory import synthetic_robust

    made, _, _, _ = planned
    result = dataclasses.replace(made, report=json.loads(json.dumps(made.report)))
    robust = synthetic_robust(result)
    named = dataclasses.replace(result, plan=dataclasses.replace(result.plan, label="Boost"))
    paths = api.export_plan(named, tmp_path / "gui", plan_name="Boost", robust=robust)
    names = {p.split("/")[-1] for p in paths}
    assert {"RTDOSE_RBE_MIN.dcm", "RTDOSE_RBE_MAX.dcm", "report.html"} <= names
    (pdf,) = (tmp_path / "gui").glob("IONPLAN-DEMO-001_Boost_*_report.pdf")
    assert "SPR +3.5% (short)" in _text(pdf) and "Stopping-power error" in _text(pdf)

    api.write_robust_outputs(robust, tmp_path / "api")
    (pdf,) = (tmp_path / "api").glob(f"IONPLAN-DEMO-001_{safe_part(result.plan.label)}_*.pdf")
    assert "lowest over scenarios" in _text(pdf)
    assert pdf.name in json.loads((tmp_path / "api" / "report.json").read_text())["files"]
