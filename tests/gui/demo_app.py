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
