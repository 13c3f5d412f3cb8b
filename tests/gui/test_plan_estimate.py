"""The plan's pre-flight estimate in the Plan tab: shown before every plan runs, and a long
plan asks first (Continue / Cancel), keeping the form on Cancel.

Screenshots: docs/screenshots/plan_estimate.png (a short plan's estimate above the buttons
while it runs) and plan_estimate_dialog.png (the question before a 0.5 mm plan).
"""

from __future__ import annotations

import re

import pytest

from tests.gui.demo_app import start_on_demo

pytestmark = pytest.mark.gui

ESTIMATE_TIMEOUT_S = 180.0


def _plan_tab(gui, app):
    screen = app.planning
    gui.click(screen.tab_items["Plan"])
    gui.frames(2)
    return screen.plan_panel


def _long_plan_dialogs(gui) -> list:
    return gui.find_all(lambda w: getattr(w, "name", "") == "long_plan_dialog")


def _wait_for_plan_task(gui, app) -> None:
    gui.wait_until(lambda: (app.task is not None and app.task.name == "Computing plan"
                            and app.task.running) or app.last_error, ESTIMATE_TIMEOUT_S,
                   "the plan to start")
    assert not app.last_error, app.last_error


def _cancel_plan(gui, app) -> None:
    gui.frames(2)
    assert not app.task_bar.cancel_button.disabled
    gui.click(app.task_bar.cancel_button)
    gui.wait_until(lambda: not app.task.running, 180, "the cancellation")
    gui.frames(2)
    assert app.session.plans == []


def test_a_long_plan_asks_first_and_cancel_keeps_the_form(gui, tmp_path):
    app = start_on_demo(gui, tmp_path / "data")
    form = _plan_tab(gui, app)
    form.grid_mm.text = "0.5"
    form.spot_spacing.text = "0.5"
    gui.click(form.compute_button)
    gui.wait_until(lambda: _long_plan_dialogs(gui) or app.last_error, ESTIMATE_TIMEOUT_S,
                   "the estimate of the 0.5 mm plan")
    assert not app.last_error, app.last_error
    gui.frames(3)
    (dialog,) = _long_plan_dialogs(gui)
    # Nothing computes while the dialog asks: the estimate's task is over, no plan started.
    assert app.task.name == "Estimating plan" and not app.task.running
    text = " ".join(getattr(w, "text", "") for w in dialog.walk(restrict=True))
    assert "This plan is large" in text and "Continue" in text
    # The demo head's brain alone is 1.25 litres: at 0.5 mm every one of its 10 million
    # points is an optimizer point, so the plan is long by any rate (hours, not minutes).
    likely = re.search(r"likely ([\d.]+) (s|min|h)[;)]", text)
    assert likely is not None, text
    assert likely[2] == "h" or (likely[2] == "min" and float(likely[1]) > 10), text
    note = form.estimate_note.text
    assert note.startswith("Estimate for a 0.5 mm dose grid and 0.5 mm spots:"), note
    assert form.estimate_note.height > 0
    gui.screenshot("plan_estimate_dialog")
    gui.click(dialog.cancel_button)
    gui.advance(0.5)
    gui.frames(2)
    assert not _long_plan_dialogs(gui)
    assert not app.task.running and app.session.plans == []
    # The form is as the user left it.
    assert (form.grid_mm.text, form.spot_spacing.text) == ("0.5", "0.5")


def test_a_short_plan_shows_its_estimate_and_continue_computes_a_long_one(gui, tmp_path,
                                                                          monkeypatch):
    app = start_on_demo(gui, tmp_path / "data")
    form = _plan_tab(gui, app)
    form.grid_mm.text = "5"
    form.spot_spacing.text = "6"
    gui.click(form.compute_button)
    _wait_for_plan_task(gui, app)  # short: no question
    assert not _long_plan_dialogs(gui)
    note = form.estimate_note.text
    assert note.startswith("Estimate for a 5 mm dose grid and 6 mm spots:"), note
    assert re.search(r"about [\d.]+(-[\d.]+)? (s|min)", note), note
    gui.frames(3)
    gui.screenshot("plan_estimate")
    _cancel_plan(gui, app)
    # Any plan is long under a threshold of 0 s: Continue then computes it.
    monkeypatch.setattr("planning.plan_estimate.LONG_PLAN_S", 0.0)
    gui.click(form.compute_button)
    gui.wait_until(lambda: _long_plan_dialogs(gui) or app.last_error, ESTIMATE_TIMEOUT_S,
                   "the question")
    assert not app.last_error, app.last_error
    gui.frames(2)
    (dialog,) = _long_plan_dialogs(gui)
    gui.click(dialog.confirm_button)
    gui.advance(0.5)  # the dialog's closing animation holds the clicks until it is gone
    gui.frames(2)
    assert not _long_plan_dialogs(gui)
    _wait_for_plan_task(gui, app)
    _cancel_plan(gui, app)
