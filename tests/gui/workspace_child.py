"""The real IonPlan application in its own process, working as a user would, for the crash
test (tests/gui/test_workspace_crash.py).

``python -m tests.gui.workspace_child DATA_DIR work REPORT``: compute a small plan, rename it,
change the isodose levels, the window/level and the slice, wait until the workspace holds all
that, write REPORT (what was set), then start a second Compute and keep running (the test
kills the process with SIGKILL while it computes).

``python -m tests.gui.workspace_child DATA_DIR check REPORT``: start as after the crash, wait
for the patient, write REPORT (what came back) and quit.

The steps run on the Kivy clock inside ``App.run()``; buttons are pressed by dispatching
their ``on_release``, as a click does.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL_S = 0.2
STEP_TIMEOUT_S = 900.0
#: Seconds to let the workspace save after the last edit (its check runs every second).
SAVE_WAIT_S = 3.0


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _state(app: Any) -> dict[str, Any]:
    screen = app.planning
    form = screen.plan_panel
    return {
        "source": app.session.source,
        "plans": [p.name for p in app.session.plans],
        "exported": sorted(p.name for p in app.session.plans if p.plan_id in app.exported),
        "shown_plan": screen.dose_panel.plan_name,
        "dose_shown": screen.state.dose is not None,
        "objectives": [[r.structure.text, r.kind_key, r.dose.text, r.weight.text]
                       for r in form.objective_row_list],
        "form": form.form_values(),
        "display": screen.dose_panel.display_settings(),
        "window_level": [float(screen.state.window_hu), float(screen.state.level_hu)],
        "cursor_ijk": [int(v) for v in screen.state.cursor_ijk],
        "axial_slice": int(screen.viewer.axial.slice_index),
        "last_error": app.last_error,
        "task": None if app.task is None else [app.task.name, bool(app.task.running)],
    }


class Script:
    """Steps run one after another; each waits (polling) until its condition holds."""

    def __init__(self, app: Any, steps: list[tuple[str, Callable[[], bool]]]) -> None:
        from kivy.clock import Clock

        self.app = app
        self.steps = steps
        self.started = time.monotonic()
        self.event = Clock.schedule_interval(self._poll, POLL_S)

    def _poll(self, _dt: float) -> None:
        if time.monotonic() - self.started > STEP_TIMEOUT_S:
            print(f"workspace child: timed out at {self.steps[0][0]}", file=sys.stderr)
            self.app.stop()
            return
        while self.steps and self.steps[0][1]():
            print(f"workspace child: {self.steps[0][0]}", file=sys.stderr, flush=True)
            self.steps.pop(0)
        if not self.steps:
            self.event.cancel()


def work_steps(app: Any, report: Path) -> list[tuple[str, Callable[[], bool]]]:
    screen = app.planning
    form = screen.plan_panel
    saved_at: list[float] = []

    def patient_shown() -> bool:
        return app.session.patient is not None and app.task is not None and not (
            app.task.running)

    def compute() -> bool:
        screen.tabs.switch_to(screen.tab_items["Plan"])
        form.beam_row_list[1].children[0].dispatch("on_release")  # "x": one beam is enough
        form.spot_spacing.text, form.grid_mm.text = "8", "6"
        form.device.text = "CPU"
        form.fractions.text = "12"
        form.objective_row_list[-1].weight.text = "7.5"
        form.compute_button.dispatch("on_release")
        return True

    def plan_done() -> bool:
        if app.last_error:
            raise RuntimeError(app.last_error)
        return bool(app.session.plans)

    def edit() -> bool:
        entry = app.session.plans[0]
        screen.rename(entry, "Crash test plan")
        panel = screen.dose_panel
        panel.levels.text = "100, 80, 20"
        panel.levels.dispatch("on_text_validate")
        panel.select_layer("physical")
        screen.state.apply_preset("bone")
        screen.state.set_cursor(40, 120, 130)
        saved_at.append(time.monotonic())
        return True

    def saved() -> bool:
        return time.monotonic() - saved_at[0] > SAVE_WAIT_S

    def second_compute() -> bool:
        form.grid_mm.text = "5"
        form.compute_button.dispatch("on_release")
        return True

    def second_plan_running() -> bool:  # after its estimate (a second or two)
        if app.task is None or app.task.name != "Computing plan" or not app.task.running:
            return False
        _write(report, {**_state(app), "computing": True})
        return True

    return [("patient shown", patient_shown), ("compute pressed", compute),
            ("plan computed", plan_done), ("edits made", edit), ("workspace saved", saved),
            ("second compute pressed", second_compute),
            ("second plan running", second_plan_running)]


def check_steps(app: Any, report: Path) -> list[tuple[str, Callable[[], bool]]]:
    def patient_shown() -> bool:
        return app.session.patient is not None

    def dump() -> bool:
        _write(report, _state(app))
        app.stop()
        return True

    return [("patient shown", patient_shown), ("state written", dump)]


def main(argv: list[str]) -> int:
    data_dir, mode, report = argv[1], argv[2], Path(argv[3])
    from app.main import configure_kivy, prepare_environment

    prepare_environment()
    configure_kivy()
    from app.ionplan_app import IonPlanApp

    steps = work_steps if mode == "work" else check_steps

    class ScriptedApp(IonPlanApp):
        def on_start(self) -> None:
            super().on_start()
            # Kept: the Clock holds its callback weakly.
            self.script = Script(self, steps(self, report))

    ScriptedApp(user_data_dir_override=data_dir).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
