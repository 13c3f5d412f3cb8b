"""Fixes from a physicist's drive through the plan form and its views (GUI review): the
form's messages, the objective rows, structure colours, the Robustness view's axis, long DVH
axis labels. Plans are made without the dose engine (tests/workspace_factory.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gui


def _start(gui, tmp_path: Path):
    from app.ionplan_app import IonPlanApp

    app = gui.start(IonPlanApp(user_data_dir_override=str(tmp_path / "data")))
    gui.wait_until(lambda: app.session.patient is not None or app.last_error, 120,
                   "the demo patient")
    assert not app.last_error, app.last_error
    gui.frames(3)
    return app


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
    app = _start(gui, tmp_path)
    screen = app.planning
    gui.click(screen.tab_items["Plan"])
    gui.frames(2)
    form = screen.plan_panel
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
