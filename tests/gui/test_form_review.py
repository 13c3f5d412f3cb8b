"""Fixes from a physicist's drive through the plan form and its views (GUI review): the
form's messages, the objective rows, structure colours, the Robustness view's axis, long DVH
axis labels. Plans are made without the dose engine (tests/workspace_factory.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gui.demo_app import start_on_demo

pytestmark = pytest.mark.gui


def _start(gui, tmp_path: Path):
    return start_on_demo(gui, tmp_path / "data")


def _on_plan_tab(gui, tmp_path: Path):
    """(app, its planning screen, the Plan form) on the demo patient, the Plan tab shown."""
    app = _start(gui, tmp_path)
    screen = app.planning
    gui.click(screen.tab_items["Plan"])
    gui.frames(2)
    return app, screen, screen.plan_panel


def _close_dialogs(gui, name: str) -> None:
    for ok in reversed(gui.find_all(lambda w: getattr(w, "name", "") == f"{name}_ok")):
        gui.click(ok)
        gui.advance(0.5)


def _compute_error(gui, app) -> str:
    """Press Compute on a form that must be refused: the message of its dialog."""
    app.last_error = ""
    gui.click(app.planning.plan_panel.compute_button)
    gui.frames(2)
    assert app.task is None or not app.task.running
    _close_dialogs(gui, "error_dialog")
    return app.last_error


def test_a_refused_prescription_is_named_and_messages_give_the_models_unit(gui, tmp_path):
    app, _screen, form = _on_plan_tab(gui, tmp_path)
    doses = [r.dose.text for r in form.objective_row_list]
    # A prescription of 5000 was reported as "objective 1 (PTV) dose ... must lie between 0
    # and 1000, got 5000": the objectives had been scaled to it first.
    form.dose.text = "5000"
    form.dose.dispatch("on_text_validate")  # the field left: a valid one rescales the rows
    gui.frames(2)
    assert [r.dose.text for r in form.objective_row_list] == doses
    assert _compute_error(gui, app) == ("prescribed dose (Gy(RBE), whole plan) must lie "
                                        "between 0.01 and 200, got 5000")
    assert [r.dose.text for r in form.objective_row_list] == doses
    # The rows follow a valid prescription from the one they were written for.
    form.dose.text = "60"
    form.dose.dispatch("on_text_validate")
    gui.frames(2)
    assert float(form.objective_row_list[0].dose.text) == pytest.approx(60.0)
    # Under the physical model the form's doses are in Gy, and its messages say so.
    form.rbe.text = "Physical dose"
    gui.frames(2)
    form.dose.text = "-1"
    assert _compute_error(gui, app) == ("prescribed dose (Gy, whole plan) must lie between "
                                        "0.01 and 200, got -1")
    form.dose.text = "60"
    form.objective_row_list[1].dose.text = "2000"
    assert _compute_error(gui, app) == ("objective 2 (PTV) dose (Gy, whole plan) must lie "
                                        "between 0 and 1000, got 2000")
    form.objective_row_list[1].dose.text = "60"
    form.objective_row_list[0].dose.text = "50"
    assert _compute_error(gui, app).startswith(
        "the target objective asks for 50 Gy but the prescription is 60 Gy: ")


def _text_width(widget, text: str | None = None) -> float:
    from kivy.core.text import Label as CoreLabel

    text = widget.text if text is None else text
    return CoreLabel(font_size=widget.font_size).get_extents(text)[0]


def test_objective_types_and_the_dose_per_fraction_are_read_whole(gui, tmp_path):
    """"squared_deviation" showed as "square...viation" in its row and "= 3.60 Gy(RBE)/fx"
    wrapped onto two lines at 1440x900 (and 1024x640, the smallest window)."""
    from kivy.core.text import Label as CoreLabel

    from app.plan_setup import OBJECTIVE_KIND_LABELS
    from planning.optimization import Objective

    app = _start(gui, tmp_path)
    screen = app.planning
    gui.click(screen.tab_items["Plan"])
    form = screen.plan_panel
    form.add_objective(Objective("Brainstem", "max_dvh", 30.0, 1.0, 0.05))
    window = gui.window
    try:
        for size in ((1440, 900), (1024, 640)):
            window.size = size
            gui.frames(4)
            line = form.per_fraction
            assert line.text == "= 3.60 Gy(RBE)/fx"
            one_line = CoreLabel(font_size=line.font_size).get_extents("X")[1]
            assert line.texture_size[1] < 1.5 * one_line
            assert line.texture_size[1] <= line.height and line.width >= _text_width(line)
            assert line.right <= line.parent.right + 0.5, size
            rows = form.objective_row_list
            for row in rows:
                room = row.kind.width - 12  # WideSpinner's text padding, both sides
                assert _text_width(row.kind) <= room, (size, row.kind.text, row.kind.width)
            assert [row.kind.text for row in rows[:3]] == ["uniform", "min", "max"]
            assert rows[-1].kind.text == "DVH max"
            for label in OBJECTIVE_KIND_LABELS.values():
                assert _text_width(rows[0].kind, label) <= rows[0].kind.width - 12, label
    finally:
        window.size = (1440, 900)
        gui.frames(2)
    # The form keeps, saves and checks the types' keys.
    rows = form.objective_row_list
    assert [r.kind_key for r in rows[:3]] == ["squared_deviation", "min_dose", "max_dose"]
    values = form.form_values()
    assert [o[1] for o in values["objectives"][:3]] == ["squared_deviation", "min_dose",
                                                        "max_dose"]
    assert values["objectives"][-1][1] == "max_dvh"
    assert form.setup().objectives[-1].kind == "max_dvh"
    values["objectives"][0][1] = "mean_dose"
    form.apply_form_values(values)
    assert form.objective_row_list[0].kind.text == "mean"
    assert form.objective_row_list[0].kind_key == "mean_dose"
    # The dropdown offers the readable names.
    assert form.objective_row_list[0].kind.values == list(OBJECTIVE_KIND_LABELS.values())


def test_a_hint_says_what_the_default_rings_maxima_are_for(gui, tmp_path):
    """"PTV ring 15-30 mm max 60.48" (105 %) next to "ring 5-15 mm max 46.08" (80 %) read as a
    mistake: the far ring caps hot spots only (planning.plan_config's docstring)."""
    _app, _screen, form = _on_plan_tab(gui, tmp_path)
    note = form.ring_note
    assert "15-30 mm max 105 %: a cap on hot spots outside the target" in note.text
    assert "5-15 mm max 80 %: the dose fall-off" in note.text
    assert note.height >= note.texture_size[1] > 0 and note.texture_size[0] <= note.width
    # Under the section's title, above the rows.
    children = list(reversed(form.form.children))
    assert children.index(note) < children.index(form.objective_rows)
    assert children[children.index(note) - 1].text == "[b]Objectives (whole-plan dose)[/b]"
    for row in [r for r in form.objective_row_list if " ring " in r.structure.text]:
        row.children[-1].children[0].dispatch("on_release")  # its remove button
        gui.frames(1)
    assert note.text == "" and note.height == 0
    form.reset_objectives()
    gui.frames(2)
    assert "105 %" in note.text and note.height > 0


def test_structures_without_a_colour_are_told_apart_alike_on_every_screen(gui, tmp_path):
    """A structure set without ROI Display Colors drew every structure in one grey: outlines,
    DVH curves and swatches could not be told apart. Each gets its own colour, the same on
    every screen."""
    from tests.test_structure_colours import _without_colours
    from tests.workspace_factory import synthetic_plan_result

    app = _start(gui, tmp_path)
    session = app.session
    bare = _without_colours(session.patient)
    session.set_patient(bare, "demo patient", [])
    gui.frames(3)
    ss = bare.structure_set
    expected = dict(zip(ss.names, ss.display_colours(), strict=True))
    assert len(set(expected.values())) == len(expected)
    screen = app.planning
    assert {o.name: o.colour_rgb for o in screen.state.structures} == expected
    assert {r.structure_name: r.colour_rgb
            for r in screen.patient_panel.rows.children} == expected
    session.add_plan(synthetic_plan_result(bare, 3), "synthetic")
    gui.click(screen.tab_items["Dose"])
    gui.frames(3)
    curves = {c.name: c.colour_rgb for c in screen.dvh.curves}
    assert len(curves) >= 5 and curves == {name: expected[name] for name in curves}
    rows = {r.name: r.colour_rgb for r in screen.metrics.rows}
    assert rows == {name: expected[name] for name in rows}
    gui.click(app.buttons["compare"])
    gui.frames(3)
    for state in app.compare.states:
        assert {o.name: o.colour_rgb for o in state.structures} == expected


def test_the_robustness_view_names_the_plans_model_as_the_dose_tab_does(gui, tmp_path):
    """The view's DVH axis read "RBE-weighted dose (Gy(RBE))" for a LEM I plan whose DVH in
    the Dose tab reads "RBE-weighted dose (LEM I chordoma, averaged) (Gy(RBE))"."""
    from tests.workspace_factory import synthetic_plan_result, synthetic_robust

    app = _start(gui, tmp_path)
    session, screen = app.session, app.planning
    entry = session.add_plan(synthetic_plan_result(session.patient, 3), "synthetic")
    session.set_robust(entry.name, synthetic_robust(entry.result))
    gui.click(screen.tab_items["Dose"])
    screen.dose_panel.select_layer("rbe")
    gui.frames(3)
    assert screen.dvh.x_label == "RBE-weighted dose (LEM I chordoma, averaged) (Gy(RBE))"
    screen.open_robustness()
    gui.frames(3)
    panel = screen.robust_popup.content
    assert panel.bands.x_label == screen.dvh.x_label
    screen.robust_popup.dismiss()
    gui.advance(0.5)
    # The worst case's long title stays under its plot (it ran into the metrics table).
    screen.dose_panel.select_layer("rbe_min")
    gui.frames(3)
    dvh = screen.dvh
    assert dvh.x_label == ("Worst case: voxel-wise minimum of 3 scenarios (LEM I chordoma, "
                           "averaged) (Gy(RBE))")
    x0, y0, x1, y1 = dvh.x_label_box
    _, bottom, right, _ = dvh.plot_area
    assert len(dvh.x_label_lines) == 2 and dvh.x <= x0 < x1 <= right + 0.5
    assert dvh.y <= y0 < y1 < bottom
    gui.save_png(gui.screenshot(), tmp_path / "worst_case.png")


def _overlap_px(a, b) -> float:
    """Height in px by which widgets ``a`` and ``b`` (children of one layout) overlap."""
    return max(0.0, min(a.top, b.top) - max(a.y, b.y))


def test_default_objectives_keep_the_ring_note_between_heading_and_column_titles(
        gui, tmp_path):
    """"Default objectives" pressed while the rows already held rings: the note lost its
    height (its text came back unchanged, so its texture size did not change) and was drawn
    over the section's title and the column titles, at every window size."""
    from kivy.core.text import Label as CoreLabel

    _app, _screen, form = _on_plan_tab(gui, tmp_path)
    note, heading, header = form.ring_note, form.objectives_heading, form.objective_header
    window = gui.window
    try:
        for size in ((1440, 900), (1024, 640)):
            window.size = size
            gui.frames(4)
            form.reset_objectives()  # the "Default objectives" button
            gui.frames(3)
            assert "105 %" in note.text
            # The note takes the room its wrapped lines need ...
            assert note.texture_size[0] <= note.width and note.texture_size[1] <= note.height
            # ... below the section's title and above the column titles, none over another.
            assert heading.y >= note.top - 0.5 and note.y >= header.top - 0.5, size
            for a, b in ((heading, note), (note, header), (heading, header)):
                assert _overlap_px(a, b) < 0.5, (size, a.text if hasattr(a, "text") else a)
            assert header.y >= form.objective_rows.top - 0.5
            # The exchange line above the title (two lines at 1024 px) keeps to its row.
            line = form.exchange_label
            wrapped = CoreLabel(text=line.text, font_size=line.font_size,
                                text_size=(line.width, None))
            wrapped.refresh()
            assert wrapped.texture.size[1] <= line.height <= line.parent.height, size
            assert _overlap_px(line.parent, heading) < 0.5, size
    finally:
        window.size = (1440, 900)
        gui.frames(2)


def test_a_prescription_kept_across_physical_dose_is_flagged_until_typed_or_confirmed(
        gui, tmp_path):
    """mMKM 57.6 Gy(RBE) switched to "Physical dose" became 57.6 Gy (about 2-3 times the
    physical dose meant) without a word; the switch to LEM I had a note."""
    from app.theme import MUTED_TEXT_RGBA, UNCONFIRMED_FIELD_RGBA, WARNING_TEXT_RGBA

    app, _screen, form = _on_plan_tab(gui, tmp_path)
    note = form.model_note
    written = [float(r.dose.text) for r in form.objective_row_list]
    white = (1.0, 1.0, 1.0, 1.0)

    def flagged() -> bool:
        fields = [form.dose, *(r.dose for r in form.objective_row_list)]
        colours = {tuple(f.background_color) for f in fields}
        assert len(colours) == 1, colours  # the prescription and every objective alike
        assert tuple(form.objective_unit.color) == (
            WARNING_TEXT_RGBA if colours == {UNCONFIRMED_FIELD_RGBA} else MUTED_TEXT_RGBA)
        return colours == {UNCONFIRMED_FIELD_RGBA}

    assert not flagged() and tuple(form.dose.background_color) == white
    form.rbe.text = "Physical dose"
    gui.frames(2)
    assert "57.6 Gy of physical dose" in note.text and "about 19-29 Gy physical" in note.text
    assert note.texture_size[1] <= note.height and note.height > 40
    assert flagged() and form.prescription_unconfirmed
    # Compute refuses the number until the user says which it is.
    assert _compute_error(gui, app) == (
        "prescribed dose: 57.6 was entered in Gy(RBE) under mMKM; under physical dose it "
        "means 57.6 Gy. Type the prescription in Gy, or press Enter in its field to keep "
        "57.6 Gy")
    # Leaving the field without typing confirms nothing.
    form.dose.focus = True
    gui.frames(2)
    form.dose.focus = False
    gui.frames(2)
    assert flagged()
    # Back to the model it was entered under: nothing to say, nothing to confirm.
    form.rbe.text = "mMKM (NIRS clinical dose)"
    gui.frames(2)
    assert note.text == "" and note.height == 0 and not flagged()

    # A physical prescription typed: the objectives follow it, nothing is flagged.
    form.rbe.text = "Physical dose"
    gui.frames(2)
    form.dose.text = "20"
    form.dose.dispatch("on_text_validate")
    gui.frames(2)
    assert note.text == "" and not flagged()
    setup = form.setup()
    assert (setup.rbe, setup.total_dose_gy_rbe) == ("physical", 20.0)
    assert [o.dose_gy_rbe for o in setup.objectives] == pytest.approx(
        [d * 20.0 / 57.6 for d in written], rel=1e-5)

    # To LEM I with 20 kept: flagged; Enter keeps it, and the note says what it now is.
    form.rbe.text = "LEM I"
    gui.frames(2)
    assert "20 Gy(RBE) under LEM I" in note.text and "about 7-10 Gy physical" in note.text
    assert flagged()
    form.dose.dispatch("on_text_validate")
    gui.frames(2)
    assert note.text == "Prescription confirmed: 20 Gy(RBE) under LEM I." and not flagged()
    setup = form.setup()
    assert (setup.rbe, setup.total_dose_gy_rbe) == ("lem1", 20.0)
    # A switch between two RBE models keeps its note and needs no confirmation.
    form.rbe.text = "mMKM (NIRS clinical dose)"
    gui.frames(2)
    assert "delivers more" in note.text and not flagged()


def test_a_tissue_or_constant_rbe_change_gets_a_note_and_an_unconfirmed_number_survives_a_restart(
        gui, tmp_path):
    """Review: changing the LEM I tissue or the constant RBE under a kept prescription said
    nothing (the same Gy(RBE) number is another physical dose), and a prescription awaiting
    confirmation after a switch to physical dose came back confirmed from the workspace."""
    app, _screen, form = _on_plan_tab(gui, tmp_path)
    note = form.model_note
    form.rbe.text = "LEM I"
    gui.frames(2)
    form.dose.dispatch("on_text_validate")  # keep 57.6 Gy(RBE) under LEM I
    form.tissue.text = "hsg"
    gui.frames(2)
    assert note.text.startswith("LEM I tissue changed from chordoma to hsg; the prescription "
                                "stays 57.6 Gy(RBE)")
    form.tissue.text = "custom"
    gui.frames(1)
    form.tissue_custom[0].text = "0.2"
    form.tissue_custom[0].dispatch("on_text_validate")
    gui.frames(1)
    # The note speaks of the tissue the number was entered under.
    assert "from chordoma to custom (alpha_x 0.2, beta_x 0.05, D_t 30);" in note.text
    form.rbe.text = "Constant RBE"
    gui.frames(2)
    form.rbe_value.text = "3"
    form.rbe_value.dispatch("on_text_validate")
    gui.frames(1)
    assert note.text.startswith("Model changed from LEM I to constant RBE; the prescription "
                                "stays 57.6 Gy(RBE)")
    form.dose.dispatch("on_text_validate")  # keep 57.6 Gy(RBE) under a constant RBE of 3
    form.rbe_value.text = "2.5"
    form.rbe_value.dispatch("on_text_validate")
    gui.frames(1)
    assert note.text == ("Constant RBE changed from 3 to 2.5; the prescription stays 57.6 "
                         "Gy(RBE), which now asks for 23.0 Gy of physical dose (was 19.2 Gy). "
                         "Check the prescription.")
    form.rbe.text = "Physical dose"
    gui.frames(2)
    assert form.prescription_unconfirmed
    saved = form.form_values()
    assert saved["prescription_model"] == "const"  # last confirmed under a constant RBE
    form.dose.dispatch("on_text_validate")  # confirmed here; the saved form was not
    assert not form.prescription_unconfirmed
    form.apply_form_values(saved)
    gui.frames(2)
    assert form.prescription_unconfirmed
    assert "Model changed from constant RBE to physical dose" in note.text
    assert _compute_error(gui, app).startswith("prescribed dose: 57.6 was entered in Gy(RBE) "
                                               "under constant RBE")


def test_back_on_the_model_tissue_or_rbe_the_prescription_was_entered_under_the_note_goes(
        gui, tmp_path):
    """Review: 66 Gy(RBE) entered under LEM I, then mMKM, then LEM I again: the note still
    said "Model changed from mMKM to LEM I; the prescription stays 66 Gy(RBE) ... this plan
    delivers less", and chordoma -> hsg -> chordoma and RBE 3 -> 2 -> 3 kept theirs."""
    _app, _screen, form = _on_plan_tab(gui, tmp_path)
    note = form.model_note
    form.rbe.text = "LEM I"
    gui.frames(2)
    form.dose.text = "66"
    form.dose.dispatch("on_text_validate")
    gui.frames(2)
    assert note.text == ""
    form.rbe.text = "mMKM (NIRS clinical dose)"
    gui.frames(2)
    assert note.text.startswith("Model changed from LEM I to mMKM; the prescription stays 66")
    form.rbe.text = "Constant RBE"
    gui.frames(2)
    assert note.text.startswith("Model changed from LEM I to constant RBE;")
    form.rbe.text = "LEM I"
    gui.frames(2)
    assert note.text == "" and note.height == 0

    form.tissue.text = "hsg"
    gui.frames(2)
    assert note.text.startswith("LEM I tissue changed from chordoma to hsg;")
    form.tissue.text = "chordoma"
    gui.frames(2)
    assert note.text == "" and note.height == 0

    form.rbe.text = "Constant RBE"
    form.rbe_value.text = "3"
    form.rbe_value.dispatch("on_text_validate")
    form.dose.text = "60"
    form.dose.dispatch("on_text_validate")  # 60 Gy(RBE) typed under a constant RBE of 3
    gui.frames(2)
    assert note.text == ""
    form.rbe_value.text = "2"
    form.rbe_value.dispatch("on_text_validate")
    gui.frames(1)
    assert note.text.startswith("Constant RBE changed from 3 to 2;")
    form.rbe_value.text = "3"
    form.rbe_value.dispatch("on_text_validate")
    gui.frames(1)
    assert note.text == ""


def test_a_new_plan_opens_on_its_own_dose(gui, tmp_path):
    """After a plan shown with its exchange view's mMKM dose chosen, a newly computed plan
    opened on that quantity, not on its own dose (review: a physical plan opened on its LEM I
    cube)."""
    from tests.workspace_factory import synthetic_plan_result

    app = _start(gui, tmp_path)
    screen = app.planning
    patient = app.session.patient
    app.session.add_plan(synthetic_plan_result(patient, 3), "synthetic")
    gui.click(screen.tab_items["Dose"])
    gui.frames(3)
    screen.dose_panel.select_layer("mkm")
    gui.frames(2)
    assert screen.dose_panel.layer_key == "mkm"
    screen._run_plan_task("Computing plan", lambda progress, cancel: synthetic_plan_result(
        patient, 4), 57.6, "synthetic, computed", {})
    gui.wait_until(lambda: len(app.session.plans) == 2, 60, "the new plan")
    gui.frames(3)
    assert screen.shown_plan is app.session.plans[-1]
    assert screen.dose_panel.layer_key == "rbe"
    assert screen.shown_layer.key == "rbe"
