"""Work that persists, plan names, and the plan form checked before any work, driven through
the real window: a plan kept in the patient's workspace comes back with the form and the
display settings; renaming names the exports; a bad tissue is refused at Compute."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from planning.workspace import StoredPlan, Workspace, WorkspaceStore, new_plan_id, patient_key
from tests.workspace_factory import synthetic_plan_result

pytestmark = pytest.mark.gui


def _seed(data_dir: Path, name: str = "Plan 1", **report_entries: object) -> StoredPlan:
    """A workspace of the demo patient holding one plan (``report_entries`` added to its
    report), the demo the patient open last."""
    from planning import api

    patient = api.demo_patient()
    result = synthetic_plan_result(patient, 3)
    # How far the plan is from the Plan tab's first default objective (report.json's shape).
    objectives = [{"structure": "PTV", "type": "squared_deviation", "dose_gy_rbe": 3.0,
                   "weight": 100.0, "volume_fraction": None, "term": 0.5,
                   "share_percent": 80.0, "rms_deviation_gy_rbe": 1.23}]
    result = replace(result, report={**result.report, "objectives": objectives,
                                     **report_entries})
    stored = StoredPlan(new_plan_id(), name, result, summary="seeded")
    store = WorkspaceStore(data_dir / "workspaces")
    key = patient_key(patient)
    store.save(Workspace(key, "demo patient", (stored,), {}))
    store.save_last_patient("demo patient", key)
    return stored


def _start(gui, data_dir: Path):
    from app.ionplan_app import IonPlanApp

    app = gui.start(IonPlanApp(user_data_dir_override=str(data_dir)))
    gui.wait_until(lambda: app.session.patient is not None or app.last_error, 120,
                   "the start-up patient")
    gui.frames(3)
    return app


def _restart(gui, app, data_dir: Path):
    """Quit ``app`` as the user would (its workspace lock released, as at process exit) and
    start IonPlan again."""
    gui.stop()
    app.keeper.close()
    return _start(gui, data_dir)


def _manifest(data_dir: Path) -> dict:
    """The workspace manifest in use (not one moved aside)."""
    (path,) = (p for p in (data_dir / "workspaces").glob("*/workspace.json")
               if ".unreadable-" not in p.parent.name)
    return json.loads(path.read_text())


def _exported_report_text(gui, app, out: Path) -> str:
    """The text of the plan report (PDF) that the app exports into the new folder ``out``."""
    from pypdf import PdfReader

    out.mkdir()
    app.export_report_to(str(out))
    gui.wait_until(lambda: list(out.glob("*_report.pdf")) or app.last_error, 120, "the report")
    assert not app.last_error, app.last_error
    gui.advance(0.5)
    (pdf,) = out.glob("*_report.pdf")
    return "\n".join(page.extract_text() for page in PdfReader(pdf).pages)


def _dialog(gui, name: str):
    return gui.find(lambda w: getattr(w, "name", "") == name)


def test_plan_form_and_display_come_back_after_a_restart(gui, tmp_path):
    stored = _seed(tmp_path)
    app = _start(gui, tmp_path)
    screen = app.planning
    assert [p.name for p in app.session.plans] == ["Plan 1"]
    assert app.session.plans[0].plan_id == stored.plan_id
    assert screen.shown_plan is app.session.plans[0] and screen.state.dose is not None
    assert not app.last_error

    # The user works: edits the form, the display, the window/level and the slice.
    form = screen.plan_panel
    gui.click(screen.tab_items["Plan"])
    form.fractions.text = "12"
    form.tissue.text = "custom"
    form.tissue_custom[0].text = "0.25"
    form.rapid_scheme.text = "central"  # not the default: the restore must bring it back
    form.objective_row_list[0].weight.text = "77"
    gui.click(screen.tab_items["Dose"])
    panel = screen.dose_panel
    panel.select_layer("physical")
    panel.levels.text = "90, 50"
    panel.levels.dispatch("on_text_validate")
    gui.click(screen.viewer.preset_buttons["bone"])
    screen.state.set_cursor(30, 100, 140)
    gui.advance(1.5)  # the next save check
    display = _manifest(tmp_path)["settings"]["display"]
    assert display["quantity"] == "physical" and display["isodose_percent"] == [90.0, 50.0]
    assert (display["window_hu"], display["level_hu"]) == (1800.0, 400.0)
    assert display["cursor_ijk"] == [30, 100, 140]
    saved_form = _manifest(tmp_path)["settings"]["form"]
    assert saved_form["fractions"] == "12" and saved_form["tissue_custom"][0] == "0.25"

    app = _restart(gui, app, tmp_path)
    screen = app.planning
    form, panel = screen.plan_panel, screen.dose_panel
    assert app.session.source == "demo patient"
    assert [p.name for p in app.session.plans] == ["Plan 1"]
    assert (form.fractions.text, form.tissue.text, form.tissue_custom[0].text) == (
        "12", "custom", "0.25")
    assert not form.tissue_custom[0].disabled  # "custom" shows its numbers
    assert form.rapid_scheme.text == "central"
    assert form.objective_row_list[0].weight.text == "77"
    assert panel.layer_key == "physical" and panel.levels.text == "90, 50"
    assert screen.state.dose.unit == "Gy"
    assert (screen.state.window_hu, screen.state.level_hu) == (1800.0, 400.0)
    assert list(screen.state.cursor_ijk) == [30, 100, 140]
    assert int(screen.viewer.axial.slice_index) == 30
    assert screen.tabs.current_tab is screen.tab_items["Dose"]
    # The restored plan says how far it is from its objectives, under the rows (as after
    # Compute); rows it had no objective for say nothing.
    rows = form.objective_row_list
    assert (rows[0].structure.text, rows[0].kind_key) == ("PTV", "squared_deviation")
    assert rows[0].result.text == ("Plan 1: RMS deviation at the optimizer's points 1.23 "
                                   "Gy(RBE),\n80 % of the objective value")
    assert all(row.result.text == "" for row in rows[1:])
    # A restored plan has no kept optimizer matrices: Re-optimize is greyed, and a line above
    # it says why and what to do.
    assert form.reoptimize_button.disabled
    why = form.reoptimize_note
    assert why.text == ("Re-optimize: Plan 1 keeps no influence (a restored or received "
                        "plan); press Compute plan first.")
    assert why.height >= why.texture_size[1] > 0


def test_a_restored_plan_at_its_iteration_limit_is_to_be_computed_again_to_continue(
        gui, tmp_path):
    """Review: a plan restored from the workspace that stopped at the optimizer's iteration
    limit said "re-optimizing continues from these spot weights", with Re-optimize enabled,
    which then refused it (no kept influence)."""
    from types import SimpleNamespace

    _seed(tmp_path, optimizer_message="STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT",
          iterations=199)
    app = _start(gui, tmp_path)
    screen = app.planning
    form, notes = screen.plan_panel, screen.dose_panel.notes
    assert screen.shown_plan is app.session.plans[0]
    assert "stopped at its iteration limit after 199 iterations" in notes.text
    assert "continues from these spot weights" not in notes.text
    assert ("restored from a saved session, it keeps no influence to re-optimize from: "
            "compute it again (Compute plan)") in notes.text
    assert form.reoptimize_button.disabled and "Plan 1 keeps no influence" in (
        form.reoptimize_note.text)
    # Its plan report says so too (it said "re-optimizing continues from these spot weights").
    text = " ".join(_exported_report_text(gui, app, tmp_path / "report").split())
    assert "stopped at its iteration limit after 199 iterations" in text
    assert "continues from these spot weights" not in text
    assert ("restored from a saved session, it keeps no influence to re-optimize from: "
            "compute it again (Compute plan)") in text
    # A plan computed here (it keeps its influence): Re-optimize is offered again.
    computed = replace(app.session.plans[0].result,
                       prepared=SimpleNamespace(release=lambda: None))
    app.session.add_plan(computed, "computed here")
    gui.frames(2)
    assert screen.shown_plan is app.session.plans[1]
    assert not form.reoptimize_button.disabled
    assert form.reoptimize_note.text == "" and form.reoptimize_note.height == 0
    assert notes.text.endswith("re-optimizing continues from these spot weights.")
    # Showing the restored plan again greys it (Re-optimize starts from the plan shown).
    screen.dose_panel.plan.text = "Plan 1"
    gui.frames(2)
    assert form.reoptimize_button.disabled and form.reoptimize_note.text


def test_rename_a_plan_names_its_export_and_is_kept(gui, tmp_path):
    _seed(tmp_path)
    app = _start(gui, tmp_path)
    screen = app.planning
    panel = screen.dose_panel
    gui.click(screen.tab_items["Dose"])
    gui.frames(2)
    gui.click(panel.rename_button)
    gui.frames(2)
    dialog = _dialog(gui, "rename_dialog")
    assert dialog.text_input.text == "Plan 1"
    dialog.text_input.text = "  Boost   phase 2 "
    gui.click(dialog.submit_button)
    gui.advance(0.5)
    entry = app.session.plans[0]
    assert entry.name == "Boost phase 2"
    assert panel.plan.text == "Boost phase 2" and panel.plan.values == ["Boost phase 2"]
    assert screen.shown_plan is entry
    # The objective results under the Plan tab's rows name the plan by its new name.
    assert screen.plan_panel.objective_row_list[0].result.text.startswith(
        "Boost phase 2: RMS deviation at the optimizer's points 1.23 Gy(RBE)")
    gui.screenshot("dose_tab_renamed_plan")  # the dose is the synthetic test plan's
    # A name in use, or an empty one, is refused in a dialog and nothing changes.
    app.session.add_plan(entry.result, "second")
    gui.frames(2)
    panel.plan.text = "Plan 2"
    gui.frames(2)
    gui.click(panel.rename_button)
    gui.frames(2)
    dialog = _dialog(gui, "rename_dialog")
    dialog.text_input.text = "Boost phase 2"
    gui.click(dialog.submit_button)
    gui.advance(0.5)
    assert "already called 'Boost phase 2'" in app.last_error
    assert [p.name for p in app.session.plans] == ["Boost phase 2", "Plan 2"]
    gui.click(_dialog(gui, "error_dialog_ok"))
    gui.advance(0.5)
    gui.advance(1.5)
    assert [p["name"] for p in _manifest(tmp_path)["plans"]] == ["Boost phase 2", "Plan 2"]

    # The export folder and the RT Plan Name carry the new name.
    import pydicom

    panel.plan.text = "Boost phase 2"
    gui.frames(2)
    out = tmp_path / "export"
    out.mkdir()
    app.last_error = ""
    app.export_dicom_to(str(out))
    gui.wait_until(lambda: entry.plan_id in app.exported or app.last_error, 120, "the DICOM export")
    assert not app.last_error, app.last_error
    (folder,) = out.iterdir()
    assert folder.name.startswith("IONPLAN-DEMO-001_Boost_phase_2_")
    ds = pydicom.dcmread(folder / "RTPLAN.dcm")
    assert (ds.RTPlanName, ds.RTPlanLabel) == ("Boost phase 2", "Boost phase 2")
    gui.advance(1.5)
    manifest = _manifest(tmp_path)
    assert [(p["name"], p["exported"]) for p in manifest["plans"]] == [
        ("Boost phase 2", True), ("Plan 2", False)]

    app = _restart(gui, app, tmp_path)
    assert [p.name for p in app.session.plans] == ["Boost phase 2", "Plan 2"]
    assert app.unexported_plans() == ["Plan 2"]  # the export is remembered too


def test_bad_tissue_is_refused_at_compute_before_any_work(gui, tmp_path):
    app = _start(gui, tmp_path)
    screen = app.planning
    form = screen.plan_panel
    gui.click(screen.tab_items["Plan"])
    gui.frames(2)
    # The tissue is a list of the tissues planning knows, and "custom".
    assert form.tissue.values == ["chordoma", "hsg", "v79", "custom"]
    assert form.rapid_scheme.values == ["averaged", "central"]
    assert form.rapid_scheme.text == "averaged"  # the default
    assert all(ti.disabled for ti in form.tissue_custom)
    form.tissue.text = "custom"
    gui.frames(1)
    assert not any(ti.disabled for ti in form.tissue_custom)
    form.tissue_custom[1].text = "0"
    form.fractions.text = "8"
    assert form.exchange.active  # the exchange view uses the tissue under mMKM too
    loading = app.task  # the start-up patient's
    gui.click(form.compute_button)
    gui.frames(3)
    assert app.task is loading  # nothing started
    assert "LEM I custom tissue beta_x (1/Gy^2) must lie between" in app.last_error
    dialog = _dialog(gui, "error_dialog")
    assert "beta_x" in " ".join(getattr(w, "text", "") for w in dialog.walk())
    gui.click(_dialog(gui, "error_dialog_ok"))
    gui.advance(0.5)
    # The user's form is kept as typed.
    assert (form.tissue.text, form.tissue_custom[1].text, form.fractions.text) == (
        "custom", "0", "8")
    gui.screenshot("plan_setup_custom_tissue")
    # An objective on a structure the patient lacks is refused the same way.
    form.tissue.text = "hsg"
    form.objective_row_list[-1].structure.text = "Lens"
    gui.click(form.compute_button)
    gui.frames(3)
    assert app.task is loading and "no structure named 'Lens'" in app.last_error


@pytest.mark.parametrize("damage", ["flipped byte", "newer version"])
def test_unreadable_workspace_is_moved_aside_and_the_app_stays_usable(gui, tmp_path, damage):
    stored = _seed(tmp_path)
    (folder,) = (tmp_path / "workspaces").glob("IONPLAN-DEMO-001-*")
    if damage == "flipped byte":
        cube = folder / "plans" / stored.plan_id / "rbe_dose_gy_rbe.npy"
        data = bytearray(cube.read_bytes())
        data[-5] ^= 0x40
        cube.write_bytes(bytes(data))
        expected = "checksum mismatch"
    else:
        manifest = _manifest(tmp_path)
        manifest["format_version"] = 7
        (folder / "workspace.json").write_text(json.dumps(manifest))
        expected = "workspace format 7"
    app = _start(gui, tmp_path)
    dialog = _dialog(gui, "error_dialog")
    text = " ".join(getattr(w, "text", "") for w in dialog.walk())
    assert expected in text
    assert app.session.patient is not None and app.session.plans == []
    if damage == "flipped byte":
        # One damaged plan: left out and kept where it is; the workspace opens as usual.
        assert "Plan 1" in text and "was not restored" in text and "kept, untouched" in text
        assert not list((tmp_path / "workspaces").glob("*.unreadable-*"))
    else:
        # The patient is open without the plans; the old workspace is kept beside, whole.
        assert "moved to" in text and "nothing was deleted" in text
        (aside,) = (tmp_path / "workspaces").glob("IONPLAN-DEMO-001-*.unreadable-*")
        assert (aside / "plans" / stored.plan_id / "rbe_dose_gy_rbe.npy").exists()
    gui.click(_dialog(gui, "error_dialog_ok"))
    gui.advance(0.5)
    # Still usable: the form edits and the patient's workspace is written.
    app.planning.plan_panel.fractions.text = "20"
    gui.advance(1.5)
    manifest = _manifest(tmp_path)
    assert manifest["settings"]["form"]["fractions"] == "20"
    if damage == "flipped byte":
        assert [p["id"] for p in manifest["plans"]] == [stored.plan_id]
        assert (folder / "plans" / stored.plan_id / "rbe_dose_gy_rbe.npy").exists()


def test_a_second_ionplan_on_the_patient_is_read_only(gui, tmp_path):
    stored = _seed(tmp_path)
    (folder,) = (tmp_path / "workspaces").glob("IONPLAN-DEMO-001-*")
    before = (folder / "workspace.json").read_bytes()
    lock = WorkspaceStore(tmp_path / "workspaces").lock_path(
        patient_key(stored.result.patient))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(),
                                    "since_utc": "2026-12-04T21:50:00Z", "token": "ab" * 8}))
        app = _start(gui, tmp_path)
        dialog = _dialog(gui, "error_dialog")
        text = " ".join(getattr(w, "text", "") for w in dialog.walk())
        assert f"in use by IonPlan process {other.pid}" in text and str(lock) in text
        # The saved plans are shown; edits here are not written, and the user is told.
        assert [p.plan_id for p in app.session.plans] == [stored.plan_id]
        gui.click(_dialog(gui, "error_dialog_ok"))
        gui.advance(0.5)
        app.planning.plan_panel.fractions.text = "21"
        gui.advance(1.5)
        assert (folder / "workspace.json").read_bytes() == before
        assert "in use by IonPlan process" in app.keeper.last_error
    finally:
        other.kill()
        other.wait()


def test_the_last_patient_folder_reopens_at_start(gui, tmp_path):
    from planning.dicom import write_demo_patient

    folder = tmp_path / "patient folder"
    write_demo_patient(folder)
    from app.ionplan_app import IonPlanApp

    app = gui.start(IonPlanApp(start_folder=str(folder), user_data_dir_override=str(tmp_path)))
    gui.wait_until(lambda: app.session.patient is not None or app.last_error, 120,
                   "the folder's patient")
    assert app.session.source == str(folder)
    app = _restart(gui, app, tmp_path)  # no folder given: the last patient, not the demo
    assert app.session.source == str(folder) and not app.last_error


def test_a_plans_robust_evaluation_comes_back_after_a_restart(gui, tmp_path):
    """A plan saved with its robust evaluation: after a restart the Robustness view shows
    it, its worst-case cubes are quantities again, the saved display brings one back, and
    the plan report has the robustness section."""
    from planning import api
    from tests.workspace_factory import synthetic_robust

    patient = api.demo_patient()
    result = synthetic_plan_result(patient, 3)
    robust = synthetic_robust(result)
    stored = StoredPlan(new_plan_id(), "Plan 1", result, summary="seeded", robust=robust,
                        robust_id=new_plan_id())
    store = WorkspaceStore(tmp_path / "workspaces")
    key = patient_key(patient)
    store.save(Workspace(key, "demo patient", (stored,), {}))
    store.save_last_patient("demo patient", key)

    app = _start(gui, tmp_path)
    assert not app.last_error, app.last_error
    screen = app.planning
    (entry,) = app.session.plans
    assert entry.robust is not None and entry.robust_id == stored.robust_id
    screen.open_robustness()
    gui.frames(3)
    panel = screen.robust_popup.content
    assert "3 scenarios" in panel.summary.text
    made = robust.report["robust"]  # the settings row shows the evaluation's settings
    assert (panel.range_error.text, panel.setup_error.text) == (
        f"{made['range_error_pct']:g}", f"{made['setup_error_mm']:g}")
    assert "PTV lowest over the scenarios: D95" in panel.summary.text
    # The summary wraps within the view and takes the height of its lines.
    assert panel.summary.texture_size[1] <= panel.summary.height
    assert panel.summary.texture_size[0] <= panel.summary.width
    gui.screenshot("robustness_restored")
    texts = panel.table.cell_texts()
    assert [row[0] for row in texts[1:]] == ["nominal", "SPR +3.5% (short)", "SPR -3.5% (long)",
                                              "lowest over scenarios", "highest over scenarios"]
    short = robust.report["scenarios"][1]["structures"][panel.structure.text]
    assert texts[2][2] == f"{short['d95_gy_rbe']:.2f}"
    assert {c.group for c in panel.bands.curves} == {"nominal", "band low", "band high"}
    gui.click(panel.close_button)
    gui.advance(0.5)
    screen.dose_panel.select_layer("rbe_min")
    gui.frames(3)
    assert "minimum of 3 scenarios" in screen.dose_panel.quantity.text
    np.testing.assert_array_equal(screen.state.dose.dose, robust.rbe_min_gy_rbe)
    gui.advance(1.5)  # the next save check: the worst case is the quantity shown
    assert _manifest(tmp_path)["settings"]["display"]["quantity"] == "rbe_min"

    app = _restart(gui, app, tmp_path)
    screen = app.planning
    assert app.session.plans[0].robust_id == stored.robust_id
    assert screen.dose_panel.layer_key == "rbe_min"
    text = _exported_report_text(gui, app, tmp_path / "report")
    assert "Robustness" in text and "SPR -3.5% (long)" in text
