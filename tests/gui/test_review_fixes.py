"""Review fixes in the real window, on plans and robust evaluations made without the dose
engine (tests/workspace_factory.py): a second robust evaluation's worst case, a robust
evaluation through a rename, the pictures of the compare and planning screens name what they
show, the objectives' unit under the physical model."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from tests.gui.demo_app import start_on_demo

pytestmark = pytest.mark.gui


def _start(gui, tmp_path: Path):
    return start_on_demo(gui, tmp_path / "data")


def _add_plan(gui, app, seed: int):
    """A LEM I plan with its exchange view, 8 mm grid, added as a computed plan would be."""
    from tests.workspace_factory import synthetic_plan_result

    entry = app.session.add_plan(synthetic_plan_result(app.session.patient, seed), "synthetic")
    gui.frames(2)
    return entry


def _robust(result, scale: float):
    """A robust evaluation of ``result`` whose voxel-wise minimum is ``scale`` x its dose."""
    from planning.robust import RobustResult, Scenario

    low = (result.rbe_dose_gy_rbe * np.float32(scale)).astype(np.float32)
    return RobustResult(result, low, result.rbe_dose_gy_rbe.copy(), result.physical_dose_gy,
                        result.physical_dose_gy, (Scenario("nominal"),
                                                  Scenario("SPR +3.5% (short)", 3.5)))


def _close_dialogs(gui, name: str) -> None:
    for ok in reversed(gui.find_all(lambda w: getattr(w, "name", "") == f"{name}_ok")):
        gui.click(ok)
        gui.advance(0.5)


def _picture_text(app, gui, folder: Path) -> dict[str, str]:
    """Save the screen shown as PNG into ``folder`` (emptied first); its text chunks."""
    from PIL import Image

    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    app.export_view_png_to(str(folder))
    assert not app.last_error, app.last_error
    (png,) = folder.glob("*.png")
    _close_dialogs(gui, "export_dialog")
    with Image.open(png) as image:
        return dict(image.text)


def test_a_second_robust_evaluation_shows_its_own_worst_case_dvh_and_metrics(gui, tmp_path):
    from app import review
    from planning import api

    app = _start(gui, tmp_path)
    screen = app.planning
    entry = _add_plan(gui, app, 3)
    for scale in (0.5, 0.8):
        robust = _robust(entry.result, scale)
        app.session.set_robust(entry.name, robust)
        screen.dose_panel.select_layer("rbe_min")
        gui.frames(2)
        assert screen.state.dose.dose is not None
        expected = api.structure_dose_statistics(app.session.patient, robust.rbe_min_gy_rbe,
                                                 entry.result.dose_grid,
                                                 entry.prescription_gy_rbe)
        assert [r.values for r in screen.metrics.rows] == [
            r.values for r in review.metrics_rows(expected)], scale
        shown = {c.name: c for c in screen.dvh.curves}
        for curve in review.dvh_curves(expected):
            np.testing.assert_array_equal(shown[curve.name].dose, curve.dose)


def test_a_robust_evaluation_is_kept_through_a_rename_and_a_lost_plan_is_reported(
        gui, tmp_path, monkeypatch):
    from planning import api

    app = _start(gui, tmp_path)
    screen = app.planning
    entry = _add_plan(gui, app, 3)
    gates: list[threading.Event] = []
    made = []

    def evaluation(result, **_options):  # stands for the scenario dose calculations
        gate = threading.Event()
        gates.append(gate)
        assert gate.wait(60)
        made.append(_robust(result, 0.9))
        return made[-1]

    monkeypatch.setattr(api, "robust_evaluation_of_result", evaluation)

    def evaluate_while(change) -> None:
        screen.open_robustness()
        gui.frames(2)
        gui.click(screen.robust_popup.content.evaluate_button)
        gui.wait_until(lambda: gates, 30, "the evaluation to start")
        change()
        gui.frames(2)
        gates.pop().set()
        gui.wait_until(lambda: not app.task.running, 60, "the evaluation")

    evaluate_while(lambda: screen.rename(entry, "Reference"))
    assert not app.last_error, app.last_error
    kept = app.session.plan("Reference")
    assert kept.robust is made[-1] and kept.plan_id == entry.plan_id
    assert screen.dose_panel.plan_name == "Reference"
    assert screen.robust_popup is not None  # the view opens again with the result
    screen.robust_popup.dismiss()
    gui.advance(0.5)

    # The plan no longer there when the evaluation ends: the user is told, nothing is kept.
    session = app.session
    evaluate_while(lambda: session.set_patient(session.patient, session.source, []))
    assert "Reference" in app.last_error and "not kept" in app.last_error
    assert session.plans == []
    _close_dialogs(gui, "error_dialog")


def test_compare_preselects_the_newest_plans_pair_until_the_user_chooses(gui, tmp_path):
    """The pre-selected pair follows the newest plan (it stayed on Plan 1's mMKM vs LEM I
    whatever came after); a pair the user chose stays when plans are added."""
    app = _start(gui, tmp_path)
    lem = "LEM I chordoma, averaged"  # the exchange view's LEM I, named as in the Dose tab
    _add_plan(gui, app, 3)
    compare = app.compare
    assert (compare.side_a.text, compare.side_b.text) == ("Plan 1: mMKM", f"Plan 1: {lem}")
    _add_plan(gui, app, 4)
    assert (compare.side_a.text, compare.side_b.text) == ("Plan 2: mMKM", f"Plan 2: {lem}")
    compare.side_a.text, compare.side_b.text = f"Plan 1: {lem}", f"Plan 2: {lem}"
    _add_plan(gui, app, 5)
    assert (compare.side_a.text, compare.side_b.text) == (f"Plan 1: {lem}", f"Plan 2: {lem}")


def test_the_compare_picture_names_the_pair_compared(gui, tmp_path):
    app = _start(gui, tmp_path)
    first, second = _add_plan(gui, app, 3), _add_plan(gui, app, 4)
    gui.click(app.buttons["compare"])
    gui.frames(3)
    compare = app.compare
    compare.side_a.text, compare.side_b.text = "Plan 1: mMKM", "Plan 2: mMKM"
    gui.click(compare.compare_button)
    gui.wait_until(lambda: compare.result is not None or app.last_error, 300, "the comparison")
    assert not app.last_error, app.last_error
    gui.frames(2)
    # Another B chosen but not compared, then A renamed: the picture names what is shown.
    lem = "Plan 2: LEM I chordoma, averaged"
    compare.side_b.text = lem
    app.planning.rename(first, "Reference")
    gui.frames(2)
    assert (compare.side_a.text, compare.side_b.text) == ("Reference: mMKM", lem)
    assert [p.title.text for p in compare.panels[:2]] == ["Reference: mMKM", "Plan 2: mMKM"]
    text = _picture_text(app, gui, tmp_path / "pictures")
    assert text["Title"] == "IonPlan A Reference: mMKM - B Plan 2: mMKM"
    # A plan of the pair gone: its dose is no longer shown, nor named.
    app.session.set_patient(app.session.patient, app.session.source, [second])
    gui.frames(2)
    assert compare.result is None
    assert all(state.dose is None for state in compare.states)
    assert [p.title.text for p in compare.panels] == ["A", "B", "Difference B - A"]
    assert compare.dvh.curves == [] and "Reference" not in compare.summary.text
    assert "Reference" not in _picture_text(app, gui, tmp_path / "pictures")["Title"]


def test_the_view_picture_names_the_quantity_shown(gui, tmp_path):
    app = _start(gui, tmp_path)
    screen = app.planning
    entry = _add_plan(gui, app, 3)
    app.session.set_robust(entry.name, _robust(entry.result, 0.9))
    entry = app.session.plan(entry.name)
    for key in ("mkm", "ratio", "rbe_min"):
        screen.dose_panel.select_layer(key)
        gui.frames(2)
        description = _picture_text(app, gui, tmp_path / "pictures")["Description"]
        assert entry.layer(key).label in description, (key, description)


def test_the_objectives_header_gives_the_unit_of_the_model(gui, tmp_path):
    from kivy.uix.label import Label

    app = _start(gui, tmp_path)
    form = app.planning.plan_panel

    def unit_labels() -> list[str]:
        return [w.text for w in form.walk() if isinstance(w, Label)
                and w.text in ("Gy", "Gy(RBE)")]

    assert unit_labels() == ["Gy(RBE)", "Gy(RBE)"]  # prescription and objectives
    form.rbe.text = "Physical dose"
    gui.frames(2)
    assert unit_labels() == ["Gy", "Gy"]
    form.rbe.text = "LEM I"
    gui.frames(2)
    assert unit_labels() == ["Gy(RBE)", "Gy(RBE)"]


def test_a_prescription_still_being_typed_rescales_the_objectives_before_they_are_read(
        gui, tmp_path):
    """Compute pressed while the prescription field still has the focus: Kivy fires the
    button first, so the objectives were read at the old prescription (a misleading 'target
    objective asks for ...' error, or OAR limits left at the old dose)."""
    app = _start(gui, tmp_path)
    form = app.planning.plan_panel
    old = float(form.dose.text)
    before = [float(r.dose.text) for r in form.objective_row_list]
    form.dose.text = f"{2 * old:g}"  # typed; the field keeps its focus
    setup = form.setup()
    assert setup.total_dose_gy_rbe == 2 * old
    assert [o.dose_gy_rbe for o in setup.objectives] == pytest.approx([2 * d for d in before])


def test_long_quantity_names_stay_within_their_menu_button(gui, tmp_path):
    """"RBE-weighted dose (LEM I chordoma, averaged)" ran past the Dose tab's quantity
    button into the panel's edge: a shortened menu text keeps to its button."""
    app = _start(gui, tmp_path)
    _add_plan(gui, app, 3)
    screen = app.planning
    gui.click(screen.tab_items["Dose"])
    gui.frames(2)
    spinner = screen.dose_panel.quantity
    longest = max(spinner.values, key=len)
    assert len(longest) > 40, spinner.values
    spinner.text = longest
    gui.frames(3)
    assert 0 < spinner.texture_size[0] <= spinner.width


def test_another_patient_without_plans_shows_no_quantity_reference_or_scale_of_the_last(
        gui, tmp_path):
    """With a plan's LETd (or its physical dose, or a worst case) shown, opening a patient
    without plans left the Dose tab saying "Quantity: Dose-averaged LET" and "100 % = ...
    (maximum ...)" of the last patient's plan next to "Plan: (no plan yet)", and the isodose
    controls greyed as for a quantity."""
    from app.panels.dose_panel import DOSE_HINT
    from bench.tg119_dicom import write_tg119
    from tests.workspace_factory import synthetic_plan_result

    app = _start(gui, tmp_path)
    screen = app.planning
    panel = screen.dose_panel
    result = synthetic_plan_result(app.session.patient, 3)
    result.report["objectives"] = [  # report.json's entry of the form's first row
        {"structure": "PTV", "type": "squared_deviation", "share_percent": 40.0,
         "rms_deviation_gy_rbe": 1.5}]
    entry = app.session.add_plan(result, "synthetic")
    app.session.set_robust(entry.name, _robust(entry.result, 0.9))
    gui.click(screen.tab_items["Dose"])
    gui.frames(2)
    for key in ("physical", "rbe_min", "letd"):  # each says its own reference
        panel.select_layer(key)
        gui.frames(2)
        assert panel.reference.text == app.session.plan(entry.name).layer(key).reference_text
    assert panel.quantity.text == "Dose-averaged LET" and panel.levels.disabled
    assert screen.viewer.legend.title == "keV/µm" and screen.dvh.curves
    assert screen.plan_panel.objective_row_list[0].result.text.startswith("Plan 1: ")
    app.exported.add(entry.plan_id)  # nothing to confirm

    other = write_tg119(tmp_path / "tg119")
    app.load_folder(str(other))
    gui.wait_until(lambda: app.session.source == str(other) or app.last_error, 120,
                   "the TG-119 phantom")
    assert not app.last_error, app.last_error
    assert app.session.plans == []
    gui.frames(3)
    assert panel.plan.text == "(no plan yet)" and panel.plan_name == ""
    assert panel.quantity.text == "" and panel.quantity.values == []
    assert panel.reference.text == "" and panel.notes.text == ""
    assert panel.hint.text == DOSE_HINT
    assert not any(w.disabled for w in (panel.isodoses, panel.levels, panel.threshold))
    assert screen.state.dose is None
    legend = screen.viewer.legend
    assert legend.overlay is None and legend.title == "" and legend.beyond == {}
    assert screen.dvh.curves == [] and screen.metrics.rows == []
    assert all(r.result.text == "" for r in screen.plan_panel.objective_row_list)
    gui.screenshot()  # draws the new patient's screen without errors
