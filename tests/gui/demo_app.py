"""Start IonPlan in the test window on the demo patient (a test's own user-data folder, so no
workspace of another test is restored)."""

from __future__ import annotations

from pathlib import Path


def start_on_demo(gui, data_dir: Path):
    """The application started by ``gui`` (a :class:`tests.gui.driver.GuiDriver`) with its
    user data in ``data_dir``, once the demo patient is shown; fails on a start-up error."""
    from app.ionplan_app import IonPlanApp

    app = gui.start(IonPlanApp(user_data_dir_override=str(data_dir)))
    gui.wait_until(lambda: app.session.patient is not None or app.last_error, 120,
                   "the demo patient")
    assert not app.last_error, app.last_error
    gui.frames(3)
    return app


#: Seconds a small plan of the demo patient may take in the test window (2 cores, shared).
SMALL_PLAN_TIMEOUT_S = 600.0


def compute_small_plan(gui, app):
    """A quick plan of the demo patient (6 mm spots, 5 mm grid) computed from the Plan tab,
    which is opened; fails on an error. Returns the Plan tab's form."""
    screen = app.planning
    gui.click(screen.tab_items["Plan"])
    gui.frames(2)
    form = screen.plan_panel
    form.spot_spacing.text = "6"
    form.grid_mm.text = "5"
    gui.click(form.compute_button)
    gui.wait_until(lambda: app.session.plans or app.last_error, SMALL_PLAN_TIMEOUT_S,
                   "the plan")
    assert not app.last_error, app.last_error
    return form
