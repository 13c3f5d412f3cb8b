"""The real IonPlan application in a real window, driven like a user: start on the demo
patient, browse slices, window/level, structures, plan, review dose and DVH, compare, export.

Screenshots of each main screen go to docs/screenshots/ (README shows them).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from planning.dicom import load_rt_dose
from planning.geometry import lps_to_index
from tests.gui.demo_app import compute_small_plan

pytestmark = pytest.mark.gui

PLAN_TIMEOUT_S = 600.0


def _start(gui, tmp_path: Path, folder: str | None = None):
    from app.ionplan_app import IonPlanApp

    app = gui.start(IonPlanApp(start_folder=folder, user_data_dir_override=str(tmp_path)))
    gui.wait_until(lambda: app.session.patient is not None or app.last_error, 120,
                   "the start-up patient")
    gui.frames(3)
    return app


def _region_pixels(gui, widget) -> np.ndarray:
    """RGBA pixels of the screenshot inside ``widget`` (row 0 at the top)."""
    shot = gui.screenshot()
    h = shot.shape[0]
    x0, y0 = (int(v) for v in widget.to_window(*widget.pos))
    x1, y1 = x0 + int(widget.width), y0 + int(widget.height)
    return shot[h - y1:h - y0, x0:x1]


def _colour_count(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> int:
    diff = np.abs(pixels[..., :3].astype(int) - np.array(rgb)).max(axis=-1)
    return int(np.count_nonzero(diff <= tol))


def _run_comparison(gui, app, compare, what: str) -> None:
    """Press Compare and wait for its result (no error)."""
    compare.result = None
    gui.click(compare.compare_button)
    gui.wait_until(lambda: compare.result is not None or app.last_error, 300, what)
    assert not app.last_error, app.last_error


def _close_export_confirmations(gui) -> None:
    """Press OK on every export confirmation, newest first, as a user would."""
    for ok in reversed(gui.find_all(lambda w: getattr(w, "name", "") == "export_dialog_ok")):
        gui.click(ok)
        gui.advance(0.5)
    assert not gui.find_all(lambda w: getattr(w, "name", "") == "export_dialog")


def _click_tab(gui, screen, title: str) -> None:
    gui.click(screen.tab_items[title])
    gui.frames(2)
    assert screen.tabs.current_tab is screen.tab_items[title]


def test_start_shows_demo_patient_and_views_respond(gui, tmp_path):
    app = _start(gui, tmp_path)
    screen = app.planning
    patient = app.session.patient
    assert patient is not None and app.session.source == "demo patient"
    assert "PTV" in patient.structure_set.names
    viewer = screen.viewer
    axial = viewer.axial
    pixels = _region_pixels(gui, axial)
    # A real CT: many grey levels in the head, and the external contour in its green.
    assert len(np.unique(pixels[..., 0])) > 20
    assert _colour_count(pixels, (0, 255, 0), tol=30) > 50
    gui.screenshot("main_window")
    # What the plan report grabs of a view is what the screen shows, the right way up.
    from app.export import widget_pixels

    grabbed = widget_pixels(axial)[..., :3].astype(int)
    h, w = min(grabbed.shape[0], pixels.shape[0]), min(grabbed.shape[1], pixels.shape[1])
    same = np.abs(grabbed[:h, :w] - pixels[:h, :w, :3].astype(int)).max(axis=-1) <= 8
    assert same.mean() > 0.9

    # Mouse wheel over the axial view changes the slice, arrow keys too.
    before = int(axial.slice_index)
    gui.move(axial)
    gui.scroll(axial, "up")
    gui.frames(2)
    after_wheel = int(axial.slice_index)
    assert after_wheel != before
    gui.key("down")
    gui.frames(2)
    assert int(axial.slice_index) != after_wheel
    # The coronal and sagittal views follow the crosshair set by a click in the axial view.
    cor, sag = int(viewer.coronal.slice_index), int(viewer.sagittal.slice_index)
    gui.click((axial.to_window(*axial.pos)[0] + axial.width * 0.3,
               axial.to_window(*axial.pos)[1] + axial.height * 0.6))
    gui.frames(2)
    assert (int(viewer.coronal.slice_index), int(viewer.sagittal.slice_index)) != (cor, sag)

    # Window/level: a preset, then a right-drag.
    gui.click(viewer.preset_buttons["bone"])
    gui.frames(1)
    assert (screen.state.window_hu, screen.state.level_hu) == (1800.0, 400.0)
    x, y = axial.to_window(*axial.center)
    gui.drag((x, y), (x + 80, y + 40), button="right")
    gui.frames(1)
    assert (screen.state.window_hu, screen.state.level_hu) != (1800.0, 400.0)
    gui.click(viewer.preset_buttons["soft tissue"])

    # Hiding the external contour removes its green from the axial view.
    row = screen.patient_panel.row("External")
    gui.click(row.checkbox)
    gui.frames(3)
    assert "External" not in screen.state.visible_structures
    assert _colour_count(_region_pixels(gui, axial), (0, 255, 0), tol=30) < 10
    gui.click(row.checkbox)
    gui.frames(2)
    assert "External" in screen.state.visible_structures


def test_bad_folder_shows_a_dialog_and_keeps_the_patient(gui, tmp_path):
    app = _start(gui, tmp_path)
    patient = app.session.patient
    empty = tmp_path / "not_dicom"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a DICOM file")
    app.load_folder(str(empty))
    gui.wait_until(lambda: app.last_error, 60, "the import error")
    gui.frames(3)
    assert "no CT series" in app.last_error
    dialog = gui.find(lambda w: getattr(w, "name", "") == "error_dialog")
    assert dialog is not None
    gui.screenshot("import_error")
    gui.click(gui.find(lambda w: getattr(w, "name", "") == "error_dialog_ok"))
    gui.advance(0.5)
    assert app.session.patient is patient


def test_plan_review_compare_and_export(gui, tmp_path):
    app = _start(gui, tmp_path)
    screen = app.planning
    _click_tab(gui, screen, "Plan")
    form = screen.plan_panel
    assert form.target.text == "PTV"
    # A small, quick plan: coarse spots and grid.
    form.spot_spacing.text = "6"
    form.grid_mm.text = "5"
    assert len(form.beam_row_list) == 2
    gui.frames(2)
    # The beams are drawn on the views while they are set up.
    assert len(screen.state.beams) == 2
    gui.screenshot("plan_setup")
    gui.click(form.compute_button)
    gui.frames(2)
    assert app.task is not None and app.task.running
    # The plan's estimate first (a second or two), then the plan itself.
    gui.wait_until(lambda: app.task.name == "Computing plan" or app.last_error, 120,
                   "the plan after its estimate")
    assert "Computing plan" in app.task_bar.status.text
    gui.wait_until(lambda: app.session.plans or app.last_error, PLAN_TIMEOUT_S, "the plan")
    assert not app.last_error, app.last_error
    gui.frames(5)

    entry = app.session.latest_plan
    assert entry is not None
    rx = entry.prescription_gy_rbe
    assert screen.tabs.current_tab is screen.tab_items["Dose"]
    # Dose wash on the axial view at the target, DVH curves, metrics table.
    assert screen.state.dose is not None
    names = [c.name for c in screen.dvh.curves]
    assert "PTV" in names and "Brainstem" in names
    ptv_row = next(r for r in screen.metrics.rows if r.name == "PTV")
    d95 = float(ptv_row.values[1])
    assert 0.9 * rx < d95 < 1.05 * rx
    ct = entry.result.patient.ct
    iso = entry.result.plan.beams[0].beam.isocenter_mm
    k, j, i = np.rint(lps_to_index([iso], ct.spacing_mm, ct.origin_mm)[0]).astype(int)
    screen.state.set_cursor(int(k), int(j), int(i))
    gui.frames(3)
    gui.screenshot("dose_review")
    # HU and dose under the mouse.
    gui.move(screen.viewer.axial)
    gui.frames(2)
    assert "HU" in screen.state.readout_text and "Gy(RBE)" in screen.state.readout_text
    # Each beam's own dose.
    screen.dose_panel.select_layer("beam0")
    gui.frames(2)
    assert screen.state.dose.unit == "Gy"
    assert float(np.max(screen.state.dose.dose)) < float(np.max(entry.result.physical_dose_gy))

    # Closing the window with an unexported plan asks first; Escape does not quit.
    gui.key("escape")
    gui.frames(2)
    assert not gui.app_stopped
    assert gui.window.dispatch("on_request_close") is True
    gui.frames(2)
    quit_dialog = gui.find(lambda w: getattr(w, "name", "") == "quit_dialog")
    assert "Plan 1" in " ".join(getattr(w, "text", "") for w in quit_dialog.walk())
    quit_dialog.dismiss()
    gui.advance(0.5)  # the dialog's closing animation
    # Opening another patient would drop the plan: the app asks first.
    patient = app.session.patient
    gui.click(app.buttons["demo"])
    gui.frames(2)
    discard = gui.find(lambda w: getattr(w, "name", "") == "discard_dialog")
    discard.dismiss()
    gui.advance(0.5)
    assert app.session.patient is patient and len(app.session.plans) == 1

    # Other quantities: LETd and % of prescription.
    panel = screen.dose_panel
    panel.select_layer("letd")
    gui.frames(2)
    assert screen.state.dose.unit == "keV/µm"
    panel.select_layer("rbe")
    panel.unit.text = "% of reference"
    gui.frames(2)
    assert screen.state.dose.unit == "%"
    assert 100.0 in [round(v) for v in screen.state.dose.isodose_levels] or \
        95.0 in [round(v) for v in screen.state.dose.isodose_levels]

    # Compare: the plan under mMKM (A) and LEM I (B).
    gui.click(app.buttons["compare"])
    gui.frames(3)
    compare = app.compare
    assert "mMKM" in compare.side_a.text and "LEM I" in compare.side_b.text
    _run_comparison(gui, app, compare, "the comparison")
    gui.frames(4)
    result = compare.result
    assert len(result.gamma) == 2
    assert compare.slice_slider.value == compare.panels[0].view.slice_index
    assert "3%/3mm" in compare.summary.text
    # LEM I exceeds mMKM in the target (Zhang et al. 2020): B - A > 0 on average there.
    ptv = next(s for s in result.structures if s.name == "PTV")
    assert ptv.metrics_b["mean"] > ptv.metrics_a["mean"]
    assert any(c.dashed for c in compare.dvh.curves)
    gui.screenshot("compare")

    # Export: DICOM through the folder dialog, then a PNG of the view and the plan report.
    gui.click(app.buttons["planning"])
    gui.frames(2)
    out = tmp_path / "export"
    out.mkdir()
    gui.click(app.buttons["export_dicom"])
    gui.frames(2)
    dialog = gui.find(lambda w: getattr(w, "name", "") == "folder_dialog")
    dialog.path_input.text = str(out)
    gui.click(dialog.choose_button)
    # Each export in a new folder named after the patient, the plan and the time. Done when
    # its confirmation shows (report.json is written before the plan document: waiting for it
    # alone failed under load).
    gui.wait_until(lambda: (list(out.glob("*/report.json")) and gui.find_all(
        lambda w: getattr(w, "name", "") == "export_dialog_ok")) or app.last_error, 120,
        "the DICOM export")
    assert not app.last_error, app.last_error
    (exported,) = (p.parent for p in out.glob("*/report.json"))
    assert re.fullmatch(r"IONPLAN-DEMO-001_Plan_1_\d{8}-\d{6}", exported.name), exported.name
    assert {"RTPLAN.dcm", "RTDOSE_PHYSICAL.dcm", "RTDOSE_RBE.dcm"} <= {
        p.name for p in exported.iterdir()}
    # The document inside gives the folder's time (they were seconds apart).
    assert [p.name for p in exported.glob("*_report.pdf")] == [f"{exported.name}_report.pdf"]
    # The RBE dose names the model that computed it, with all its parameters.
    assert load_rt_dose(exported / "RTDOSE_RBE.dcm").rbe == entry.result.model
    gui.frames(2)
    assert not gui.window.dispatch("on_request_close")  # exported: nothing would be lost
    _close_export_confirmations(gui)

    # PNG of the screen and the plan report, chosen through their folder dialogs: the
    # picture is taken once the dialog has gone, so it shows the screen, not the dialog.
    for button, made in (("export_png", "*_planning_view.png"), ("export_report", "*.pdf")):
        gui.click(app.buttons[button])
        gui.frames(2)
        dialog = gui.find(lambda w: getattr(w, "name", "") == "folder_dialog")
        dialog.path_input.text = str(out)
        gui.click(dialog.choose_button)
        gui.wait_until(lambda made=made: (list(out.glob(made)) and gui.find_all(
            lambda w: getattr(w, "name", "") == "export_dialog_ok")) or app.last_error, 60, made)
        assert not app.last_error, app.last_error
        _close_export_confirmations(gui)
        if button == "export_png":
            from kivy.core.image import Image as CoreImage

            from app.export import window_pixels

            (png,) = out.glob(made)
            saved = CoreImage(str(png)).texture
            shot = window_pixels()
            h = shot.shape[0]
            sx, sy = (round(v) for v in screen.to_window(*screen.pos))
            # Below the identification banner, the picture is the screen.
            rows = min(saved.height, round(screen.height))
            on_screen = shot[h - sy - rows:h - sy, sx:sx + saved.width, :3]
            png_rgba = np.frombuffer(saved.pixels, np.uint8).reshape(
                saved.height, saved.width, 4)[saved.height - rows:, :, :3]
            same = np.abs(png_rgba.astype(int) - on_screen.astype(int)).max(axis=-1) <= 8
            assert same.mean() > 0.95  # no dialog in the picture
            assert saved.height > screen.height  # the banner on top
    (png,) = out.glob("*_planning_view.png")
    assert png.name.startswith("IONPLAN-DEMO-001_Plan_1_") and png.stat().st_size > 10_000
    (pdf,) = out.glob("IONPLAN-DEMO-001_Plan_1_*_report.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")

    # The exported plan comes back as a received plan: recalculated on the CT, it keeps its
    # RT Plan Name ("Plan 1", taken: "Plan 1 (2)"), and it compares equal to Plan 1.
    gui.click(app.buttons["import_plan"])
    gui.frames(2)
    dialog = gui.find(lambda w: getattr(w, "name", "") == "folder_dialog")
    dialog.path_input.text = str(exported / "RTPLAN.dcm")
    gui.click(dialog.choose_button)
    gui.wait_until(lambda: len(app.session.plans) == 2 or app.last_error, 300,
                   "the recalculated plan")
    assert not app.last_error, app.last_error
    notes = gui.find(lambda w: getattr(w, "name", "") == "import_notes_dialog")
    text = " ".join(getattr(w, "text", "") for w in notes.walk())
    assert "mMKM" in text and "RTPLAN.dcm: RT Plan Name 'Plan 1', kept as plan 'Plan 1 (2)'" in (
        text)
    gui.click(gui.find(lambda w: getattr(w, "name", "") == "import_notes_dialog_ok"))
    gui.advance(0.5)
    gui.click(app.buttons["compare"])
    gui.frames(3)
    compare.side_a.text, compare.side_b.text = "Plan 1: mMKM", "Plan 1 (2): mMKM"
    _run_comparison(gui, app, compare, "the comparison with the recalculated plan")
    assert min(g.pass_rate_percent for g in compare.result.gamma) == 100.0
    assert compare.result.stats.max_abs_gy < 1e-3 * compare.result.stats.reference_max_gy

    # A dose received as an RT Dose file (here Plan 1's own export) is compared the same way.
    gui.click(compare.add_dose_button)
    gui.frames(2)
    dialog = gui.find(lambda w: getattr(w, "name", "") == "folder_dialog")
    dialog.path_input.text = str(exported / "RTDOSE_RBE.dcm")
    gui.click(dialog.choose_button)
    gui.wait_until(lambda: compare.external or app.last_error, 120, "the RT Dose")
    assert not app.last_error, app.last_error
    gui.advance(0.5)  # the file dialog's closing animation
    assert compare.side_b.text == "RT Dose: RTDOSE_RBE.dcm"
    compare.side_a.text = "Plan 1: mMKM"
    _run_comparison(gui, app, compare, "the comparison with the RT Dose")
    assert min(g.pass_rate_percent for g in compare.result.gamma) == 100.0
    gui.screenshot("compare_rt_dose")


def _two_series_folder(tmp_path: Path) -> Path:
    """The demo patient plus a copy of its CT under another series UID."""
    import pydicom
    from pydicom.uid import generate_uid

    from planning.dicom import write_demo_patient

    folder = tmp_path / "two_series"
    files = write_demo_patient(folder)
    copy = folder / "copy"
    copy.mkdir()
    series_uid = generate_uid()
    for path in files:
        ds = pydicom.dcmread(path)
        if ds.Modality != "CT":
            continue
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = "second reconstruction"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(copy / Path(path).name)
    return folder


def test_open_folder_dialog_series_choice_and_recent_list(gui, tmp_path):
    app = _start(gui, tmp_path)
    folder = _two_series_folder(tmp_path)
    gui.click(app.buttons["open"])
    gui.frames(2)
    dialog = gui.find(lambda w: getattr(w, "name", "") == "folder_dialog")
    dialog.path_input.text = str(folder)
    gui.click(dialog.choose_button)
    gui.wait_until(lambda: any(getattr(w, "name", "") == "choice_dialog" for w in gui.walk()),
                   120, "the series choice")
    gui.frames(2)
    gui.screenshot("series_choice")
    choice = gui.find(lambda w: getattr(w, "choice_key", None) is not None
                      and "second" not in w.text)
    gui.click(choice)
    gui.wait_until(lambda: app.session.source == str(folder), 120, "the imported CT")
    patient = app.session.patient
    assert patient.structure_set is not None and "PTV" in patient.structure_set.names
    assert app.recent.load()[0] == str(folder.resolve())
    # The next open dialog offers it among the recent folders.
    gui.frames(2)
    app.open_folder()
    gui.frames(2)
    assert any(getattr(w, "text", "") == str(folder.resolve()) for w in gui.walk())


def test_compute_can_be_cancelled_and_the_app_keeps_responding(gui, tmp_path):
    app = _start(gui, tmp_path)
    screen = app.planning
    _click_tab(gui, screen, "Plan")
    gui.click(screen.plan_panel.compute_button)
    gui.wait_until(lambda: app.task is not None and app.task.name == "Computing plan"
                   and app.task.fraction > 0.0, 120, "the plan to start")
    # The interface responds while the plan runs: slices still change.
    before = int(screen.viewer.axial.slice_index)
    gui.scroll(screen.viewer.axial, "down")
    gui.frames(2)
    assert int(screen.viewer.axial.slice_index) != before
    gui.click(app.task_bar.cancel_button)
    gui.wait_until(lambda: not app.task.running, 180, "the cancellation")
    gui.frames(2)
    assert "cancelled" in app.task_bar.status.text
    assert app.session.plans == [] and not app.last_error


def test_about_shows_version_and_licences(gui, tmp_path):
    app = _start(gui, tmp_path)
    gui.click(app.buttons["about"])
    gui.frames(3)
    dialog = gui.find(lambda w: getattr(w, "name", "") == "about_dialog")
    text = " ".join(getattr(w, "text", "") for w in dialog.walk())
    assert "BSD-3-Clause" in text and "Kivy" in text
    gui.screenshot("about")


def test_start_on_a_folder_given_on_the_command_line(gui, tmp_path):
    from planning.dicom import write_demo_patient

    folder = tmp_path / "patient"
    write_demo_patient(folder)
    app = _start(gui, tmp_path, folder=str(folder))
    assert app.session.source == str(folder)
    assert app.session.patient.ct.series_description == "Demo head phantom CT"
    assert "From: " + str(folder) in app.planning.patient_panel.summary.text


def test_plan_form_follows_the_prescription_and_asks_before_discarding(gui, tmp_path):
    app = _start(gui, tmp_path)
    screen = app.planning
    _click_tab(gui, screen, "Plan")
    form = screen.plan_panel
    before = {(r.structure.text, r.kind_key): float(r.dose.text)
              for r in form.objective_row_list}
    assert before[("PTV", "squared_deviation")] == 57.6
    # Every objective dose is readable whole in its field ("59.04" showed as "59.0").
    from kivy.core.text import Label as CoreLabel

    gui.frames(2)
    for r in form.objective_row_list:
        text_px = CoreLabel(font_size=r.dose.font_size).get_extents(r.dose.text)[0]
        room_px = r.dose.width - r.dose.padding[0] - r.dose.padding[2]
        assert text_px <= room_px, (r.dose.text, text_px, room_px)
    # A new prescription: every objective dose follows it when the field is left.
    gui.type_text(form.dose, "")
    form.dose.text = "70.4"
    form.dose.focus = False
    gui.frames(2)
    after = {(r.structure.text, r.kind_key): float(r.dose.text)
             for r in form.objective_row_list}
    for key, dose in before.items():
        assert after[key] == pytest.approx(dose * 70.4 / 57.6, rel=1e-5)
    assert form.setup().total_dose_gy_rbe == 70.4
    # Under the physical model the prescription is in Gy, and the form says so.
    assert form.dose_unit.text == "Gy(RBE)" and "Gy(RBE)/fx" in form.per_fraction.text
    form.rbe.text = "Physical dose"
    gui.frames(2)
    assert form.dose_unit.text == "Gy" and form.per_fraction.text.endswith(" Gy/fx")
    form.rbe.text = "mMKM (NIRS clinical dose)"
    gui.frames(2)
    assert form.dose_unit.text == "Gy(RBE)"
    # An objective that contradicts the prescription is refused with a dialog.
    row = next(r for r in form.objective_row_list if r.kind_key == "squared_deviation")
    row.dose.text = "57.6"
    gui.click(form.compute_button)
    gui.frames(2)
    assert "prescription is 70.4" in app.last_error
    assert app.task is None or not app.task.running
    for ok in gui.find_all(lambda w: getattr(w, "name", "") == "error_dialog_ok"):
        gui.click(ok)
    gui.advance(0.5)
    # Changing the target hands the target's objectives over; the others stay.
    n_rows = len(form.objective_row_list)
    form.target.text = "GTV"
    gui.frames(2)
    assert len(form.objective_row_list) == n_rows
    assert not any(r.structure.text == "PTV" for r in form.objective_row_list)


def test_reoptimize_reuses_the_kept_influence_and_refuses_a_changed_grid(gui, tmp_path):
    app = _start(gui, tmp_path)
    screen = app.planning
    _click_tab(gui, screen, "Plan")
    form = screen.plan_panel
    assert form.reoptimize_button.disabled  # nothing to re-optimize yet
    form.spot_spacing.text = "6"
    form.grid_mm.text = "5"
    gui.click(form.compute_button)
    gui.wait_until(lambda: app.session.plans or app.last_error, PLAN_TIMEOUT_S, "the plan")
    assert not app.last_error, app.last_error
    gui.frames(3)
    assert not form.reoptimize_button.disabled
    _click_tab(gui, screen, "Plan")
    gui.type_text(form.dose, "")
    form.dose.text = "60.8"  # the objectives follow the prescription when the field is left
    form.dose.focus = False
    gui.frames(2)
    gui.click(form.reoptimize_button)
    gui.frames(2)
    assert not app.last_error, app.last_error
    assert app.task is not None and "Re-optimizing plan" in app.task_bar.status.text
    gui.wait_until(lambda: len(app.session.plans) == 2 or app.last_error, PLAN_TIMEOUT_S,
                   "the re-optimized plan")
    assert not app.last_error, app.last_error
    first, second = (p.result for p in app.session.plans)
    assert second.plan.prescription.total_dose_gy_rbe == 60.8
    assert not second.report["influence_rebuilt"]
    assert second.report["influence_nnz"] == first.report["influence_nnz"]
    assert "re-optimized from Plan 1" in app.session.plans[1].summary
    assert second.report["optimizer_start"] == "previous plan"  # Plan 1's weights, scaled
    ptv = second.report["structures"]["PTV"]
    # Clinical DVH of a 5 mm plan (edge partial volumes count): coverage within a few %.
    assert 0.92 * 60.8 < ptv["d95_gy_rbe"] <= ptv["d5_gy_rbe"] < 1.05 * 60.8
    # A changed grid needs a new plan: refused with a dialog, nothing computed.
    _click_tab(gui, screen, "Plan")
    form.grid_mm.text = "4"
    gui.click(form.reoptimize_button)
    gui.frames(3)
    assert "dose grid changed" in app.last_error and len(app.session.plans) == 2
    # Re-optimize acts on the plan on screen, not on the newest one.
    gui.click(gui.find(lambda w: getattr(w, "name", "") == "error_dialog_ok"))
    gui.advance(0.5)
    app.last_error = ""
    form.grid_mm.text = "5"
    screen.dose_panel.plan.text = "Plan 1"
    gui.frames(2)
    assert screen.shown_plan is app.session.plans[0]
    form.dose.text = "58"
    form.dose.focus = False
    gui.frames(2)
    gui.click(form.reoptimize_button)
    gui.wait_until(lambda: len(app.session.plans) == 3 or app.last_error, PLAN_TIMEOUT_S,
                   "the plan re-optimized from Plan 1")
    assert not app.last_error, app.last_error
    third = app.session.plans[2]
    assert "re-optimized from Plan 1" in third.summary
    assert third.result.plan.prescription.total_dose_gy_rbe == 58.0


def test_robustness_view_evaluates_in_the_background_and_shows_bands_and_worst_cases(
        gui, tmp_path):
    app = _start(gui, tmp_path)
    screen = app.planning
    _click_tab(gui, screen, "Dose")
    gui.click(screen.dose_panel.robustness_button)  # no plan yet: a dialog, nothing runs
    gui.frames(2)
    assert "compute a plan first" in app.last_error
    assert app.task is None or "Robust" not in app.task.name
    gui.click(gui.find(lambda w: getattr(w, "name", "") == "error_dialog_ok"))
    gui.advance(0.5)
    app.last_error = ""
    compute_small_plan(gui, app)
    _click_tab(gui, screen, "Dose")
    gui.click(screen.dose_panel.robustness_button)
    gui.frames(3)
    panel = screen.robust_popup.content
    assert "not evaluated yet" in panel.summary.text
    panel.range_error.text = "-2"  # refused before any work
    gui.click(panel.evaluate_button)
    gui.frames(2)
    assert "range error (%) must lie between 0 and 20" in app.last_error
    assert "Robust" not in app.task.name  # the plan's task, finished
    gui.click(gui.find(lambda w: getattr(w, "name", "") == "error_dialog_ok"))
    gui.advance(0.5)
    assert screen.robust_popup is not None  # the form stays open with the user's values
    app.last_error = ""
    panel.range_error.text = "3.5"
    panel.setup_error.text = "3"
    gui.click(panel.evaluate_button)
    gui.frames(2)
    assert screen.robust_popup is None  # closed: progress and Cancel are on the task bar
    assert "Robust evaluation of Plan 1" in app.task_bar.status.text
    gui.wait_until(lambda: app.session.plans[0].robust is not None or app.last_error,
                   PLAN_TIMEOUT_S, "the robust evaluation")
    assert not app.last_error, app.last_error
    gui.frames(5)
    panel = screen.robust_popup.content
    report = app.session.plans[0].robust.report
    assert len(report["scenarios"]) == 9
    assert "9 scenarios" in panel.summary.text
    # The lowest D95 of the scenarios and the D95 of the voxel-wise minimum, told apart.
    assert "PTV lowest over the scenarios: D95" in panel.summary.text
    assert "D95 of the voxel-wise minimum dose" in panel.summary.text
    # Bands: nominal, low and high edge per structure; the low edge never above the nominal.
    groups = {c.group for c in panel.bands.curves}
    assert groups == {"nominal", "band low", "band high"}
    ptv = {c.group: c for c in panel.bands.curves if c.name == "PTV"}
    for v in (98.0, 50.0, 5.0):
        d_lo = np.interp(-v, -ptv["band low"].volume_percent, ptv["band low"].dose)
        d_nom = np.interp(-v, -ptv["nominal"].volume_percent, ptv["nominal"].dose)
        assert d_lo <= d_nom + 1e-6
    # The table: one row per scenario and a spread row, for the target first.
    assert panel.structure.text == "PTV"
    texts = panel.table.cell_texts()
    assert texts[0][:3] == ["Scenario", "D98 Gy(RBE)", "D95 Gy(RBE)"]
    assert len(texts) == 1 + 9 + 2 and texts[1][0] == "nominal"
    assert texts[2][0] == "SPR +3.5% (short)" and texts[-2][0] == "lowest over scenarios"
    worst_d95 = report["worst_case"]["structures"]["PTV"]["d95_gy_rbe_min"]
    assert texts[-2][2] == f"{worst_d95:.2f}"  # the D95 column's lowest
    # Every value is shown whole (the spread row's "lo/hi" pairs were cut off).
    from kivy.uix.label import Label

    for lab in (w for w in panel.table.walk() if isinstance(w, Label) and w.text):
        assert lab.texture_size[0] <= lab.width + 1, lab.text
    gui.screenshot("robustness")
    gui.click(panel.close_button)  # the view has its own Close (Escape was the only way)
    gui.advance(0.5)
    assert screen.robust_popup is None
    # The worst-case cubes are quantities of the plan in the Dose tab.
    keys = [layer.key for layer in app.session.plans[0].layers()]
    assert "rbe_min" in keys and "rbe_max" in keys
    screen.dose_panel.select_layer("rbe_min")
    gui.frames(3)
    assert "minimum of 9 scenarios" in screen.dose_panel.quantity.text
