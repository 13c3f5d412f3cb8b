"""The IonPlan Kivy application: toolbar, the planning and compare screens, the task bar.

It owns the session, runs one background task at a time and shows every error in a dialog
(the user's patient and plans stay as they were).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.screenmanager import NoTransition, ScreenManager
from kivy.uix.togglebutton import ToggleButton

from app import dialogs, export
from app.compare_screen import CompareScreen
from app.panels.task_bar import TaskBar
from app.plan_setup import parse_grid_mm
from app.planning_screen import PlanningScreen
from app.recent import RecentFolders, user_data_dir
from app.session import DoseLayer, PlanEntry, Session, received_plan_note
from app.tasks import BackgroundTask, Work
from app.theme import BACKGROUND_RGBA, PAD, TOOLBAR_HEIGHT
from app.workspace_keeper import SAVE_CHECK_S, WorkspaceKeeper
from planning import __version__, api
from planning.about import third_party_notices, version_text
from planning.document.identity import Identification
from planning.errors import IonPlanError
from planning.workspace import WorkspaceStore

log = logging.getLogger(__name__)

ESCAPE_KEY = 27
#: Time for a dialog's closing animation (Kivy's ModalView takes 0.1 s) and a redraw, seconds.
DIALOG_CLOSE_S = 0.3
#: Smallest window (width, height) the layout is made for, pixels: panels overlap below it.
MIN_WINDOW_SIZE_PX = (1024, 640)
#: Toolbar buttons: font size and the room left and right of their text.
TOOLBAR_FONT_SIZE = "14sp"
TOOLBAR_TEXT_PAD = 10
#: Frames rendered after the start-up patient appears before a --screenshot is taken.
SCREENSHOT_SETTLE_FRAMES = 5
#: The source of the bundled demo patient (its workspace is kept like any other).
DEMO_SOURCE = "demo patient"


class IonPlanApp(App):
    """The desktop application.

    Parameters
    ----------
    start_folder : str, optional
        DICOM folder opened at start; default: the patient open when the application last
        ran, or the demo patient the first time.
    screenshot_path : str, optional
        Smoke-test mode: save the window to this PNG once the start-up patient is shown, quit
        (opens ``start_folder`` or the demo patient; reads and writes no workspace).
    user_data_dir_override : str, optional
        Where the recent-folders list and the plan workspaces (``workspaces/``, see
        docs/workspace.md) live; default: :func:`app.recent.user_data_dir`.
    """

    title = f"IonPlan {__version__}"

    def __init__(self, start_folder: str | None = None, screenshot_path: str | None = None,
                 user_data_dir_override: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_folder = start_folder
        self.screenshot_path = screenshot_path
        self.exit_status = 0
        self.session = Session()
        self._data_dir = user_data_dir_override
        self.recent: RecentFolders | None = None
        self.task: BackgroundTask | None = None
        self.last_error: str = ""
        self.last_export: list[str] = []
        # plan_id of the plans written out (an entry replaced by its robust evaluation keeps it)
        self.exported: set[str] = set()
        # the monitor calibration last given for a plan in MU (offered again in this session)
        self.monitor_calibration_text = ""
        self.keeper: WorkspaceKeeper | None = None  # None in screenshot mode
        self._closing = False

    # --- building ----------------------------------------------------------------------------
    def build(self) -> BoxLayout:
        Window.clearcolor = BACKGROUND_RGBA
        Window.minimum_width, Window.minimum_height = MIN_WINDOW_SIZE_PX
        Window.bind(on_request_close=self._confirm_close, on_keyboard=self._swallow_escape)
        data_dir = Path(self._data_dir) if self._data_dir else user_data_dir()
        self.recent = RecentFolders(data_dir)
        root = BoxLayout(orientation="vertical", spacing=2)
        self.toolbar = self._build_toolbar()
        root.add_widget(self.toolbar)
        self.screens = ScreenManager(transition=NoTransition())
        self.planning = PlanningScreen(self.session, self)
        self.compare = CompareScreen(self.session, self)
        self.screens.add_widget(self.planning)
        self.screens.add_widget(self.compare)
        root.add_widget(self.screens)
        self.task_bar = TaskBar()
        root.add_widget(self.task_bar)
        if not self.screenshot_path:
            self.keeper = WorkspaceKeeper(WorkspaceStore(data_dir / "workspaces"),
                                          self.session, self.planning.workspace_settings,
                                          lambda entry: entry.plan_id in self.exported)
            Clock.schedule_interval(lambda _dt: self.save_workspace(), SAVE_CHECK_S)
        return root

    def save_workspace(self) -> None:
        """Write the open patient's workspace if anything it keeps changed."""
        if self.keeper is not None:
            self.keeper.save_if_changed()

    def _build_toolbar(self) -> BoxLayout:
        bar = BoxLayout(size_hint_y=None, height=TOOLBAR_HEIGHT, spacing=4, padding=(PAD, 4))
        self.buttons: dict[str, Button] = {}

        def fit(key: str, b: Button) -> Button:
            # As wide as its text: the whole bar fits the minimum window width.
            b.bind(texture_size=lambda w, ts: setattr(w, "width", ts[0] + 2 * TOOLBAR_TEXT_PAD))
            self.buttons[key] = b
            bar.add_widget(b)
            return b

        for key, text, action in (("open", "Open folder...", self.open_folder),
                                  ("demo", "Demo patient", self.open_demo),
                                  ("import_plan", "Import RT plan...", self.import_plan)):
            fit(key, Button(text=text, size_hint_x=None, font_size=TOOLBAR_FONT_SIZE)).bind(
                on_release=lambda _b, act=action: act())
        for key, text in (("planning", "Plan & review"), ("compare", "Compare")):
            t = fit(key, ToggleButton(text=text, group="screens", size_hint_x=None,
                                      font_size=TOOLBAR_FONT_SIZE,
                                      state="down" if key == "planning" else "normal",
                                      allow_no_selection=False))
            t.bind(on_release=lambda _b, k=key: self.show_screen(k))
        bar.add_widget(Label())
        for key, text, action in (("export_dicom", "Export DICOM...", self.export_dicom),
                                  ("export_png", "Save view PNG...", self.export_view_png),
                                  ("export_report", "Plan report...", self.export_report),
                                  ("about", "About", self.show_about)):
            fit(key, Button(text=text, size_hint_x=None, font_size=TOOLBAR_FONT_SIZE)).bind(
                on_release=lambda _b, act=action: act())
        return bar

    def show_screen(self, name: str) -> None:
        self.screens.current = name
        for key in ("planning", "compare"):
            self.buttons[key].state = "down" if key == name else "normal"
        if name == "compare":
            self.compare.refresh_choices()

    def on_start(self) -> None:
        # The GPU kernels compile (or load from CuPy's cache) while the user looks at the
        # patient; a daemon thread, silent, so it never holds the app or a task up.
        threading.Thread(target=api.warm_up_gpu, name="gpu-warm-up", daemon=True).start()
        last = self.keeper.store.last_patient() if self.keeper is not None else None
        if self.start_folder:
            self.load_folder(self.start_folder)
        elif last is None or last[0] == DEMO_SOURCE:
            self.open_demo()
        elif os.path.isdir(last[0]):
            self._import(last[0], last[1])
        else:
            self.show_error("Reopen the last patient", f"{last[0]}: the folder of the last "
                            "patient is no longer there; the demo patient opens instead")
            self.open_demo()

    # --- tasks and errors --------------------------------------------------------------------
    def run_task(self, name: str, work: Work, on_done: Any, *, cancellable: bool = True
                 ) -> bool:
        """Start ``work`` in the background unless another task runs (then say so).

        ``on_done(result)`` runs on the main thread; an exception there is shown in a dialog
        like a failure of the work itself, and the session stays as it was.
        """
        if self.task is not None and self.task.running:
            self.show_error(name, f"{self.task.name} is still running: wait for it or "
                                  "press Cancel")
            return False

        def done(result: Any) -> None:
            self.task_bar.finish(f"{name}: done in {task.elapsed_s:.1f} s")
            try:
                on_done(result)
            except Exception as exc:  # a bad result must not take the user's plans with it
                log.exception("%s: showing the result failed", name)
                failed(exc)

        def failed(exc: BaseException) -> None:
            self.task_bar.finish(f"{name}: failed")
            self.show_error(name, exc)
            if self.screenshot_path:
                self.exit_status = 1
                self.stop()

        def cancelled() -> None:
            self.task_bar.finish(f"{name}: cancelled after {task.elapsed_s:.1f} s")

        task = BackgroundTask(name, work, on_done=done, on_error=failed,
                              on_cancelled=cancelled, cancellable=cancellable)
        self.task = task
        task.start()
        self.task_bar.watch(task)
        return True

    def show_error(self, title: str, error: BaseException | str) -> None:
        self.last_error = str(error)
        log.warning("%s: %s", title, error)
        dialogs.error_dialog(title, error)

    # --- patients ----------------------------------------------------------------------------
    def unexported_plans(self) -> list[str]:
        """Names of the plans of this session not exported yet."""
        return [p.name for p in self.session.plans if p.plan_id not in self.exported]

    def _unless_plans_would_be_lost(self, action: str, proceed: Any) -> None:
        """Run ``proceed()`` now, or after the user confirms losing unexported plans."""
        unsaved = self.unexported_plans()
        if not unsaved:
            proceed()
            return
        fate = (self._kept_text(len(unsaved) > 1) if self.keeper is not None
                else "they will be lost")
        popup = dialogs.confirm_dialog(
            f"{action}?", f"{', '.join(unsaved)} of the open patient "
            f"{'was' if len(unsaved) == 1 else 'were'} not exported; {fate}.",
            confirm_text=action, on_confirm=proceed)
        popup.name = "discard_dialog"

    def open_demo(self) -> None:
        self._unless_plans_would_be_lost("Open the demo patient", lambda: self.run_task(
            "Loading the demo patient", lambda progress, cancel: api.demo_patient(),
            lambda patient: self._patient_loaded(patient, DEMO_SOURCE), cancellable=False))

    def open_folder(self) -> None:
        recent = self.recent.load() if self.recent else []
        start = recent[0] if recent else str(Path.home())
        self._unless_plans_would_be_lost("Open another patient", lambda: dialogs.folder_dialog(
            "Open a DICOM folder (CT and RT Structure Set)", start, self.load_folder,
            recent=recent))

    def load_folder(self, folder: str) -> None:
        """Scan ``folder``; ask which CT series when there are several; import it."""
        if not os.path.isdir(folder):
            self.show_error("Open folder", f"{folder}: not a folder")
            return

        def chosen(series: list[api.SeriesChoice]) -> None:
            if not series:
                self.show_error("Open folder", f"{folder}: no CT series found "
                                               f"(see 'ionplan info {folder}')")
            elif len(series) == 1:
                self._import(folder, series[0].series_uid)
            else:
                dialogs.choice_dialog(
                    "Choose a CT series", f"{folder} holds {len(series)} CT series:",
                    [(s.series_uid, f"{s.description or '(no description)'} - "
                                    f"{s.n_images} images - {s.patient_position or '?'}")
                     for s in series],
                    lambda uid: self._import(folder, uid))

        self.run_task("Scanning the folder", lambda p, c: api.list_ct_series(folder), chosen,
                      cancellable=False)

    def _import(self, folder: str, series_uid: str) -> None:
        def work(progress: Any, cancel: Any) -> Any:
            return api.load_patient(folder, series_uid=series_uid, progress=progress,
                                    cancel=cancel)

        def done(patient: Any) -> None:
            if self.recent is not None:
                self.recent.add(folder)
            self._patient_loaded(patient, folder)

        self.run_task("Importing the CT", work, done)

    def import_plan(self) -> None:
        """Recalculate a received RT Ion Plan (ours or another system's) on the open CT."""
        if self.session.patient is None:
            self.show_error("Import RT plan", "open the plan's CT first")
            return
        recent = self.recent.load() if self.recent else []
        dialogs.folder_dialog("Choose an RT Ion Plan file (recalculated on the open CT)",
                              recent[0] if recent else str(Path.home()),
                              self.import_plan_file, action="Recalculate")

    def import_plan_file(self, path: str, calibration: Any = None) -> None:
        """Recalculate the RT Ion Plan at ``path``; a plan in MU first asks for the machine's
        monitor calibration (``calibration``, :mod:`planning.monitor_calibration`)."""
        patient = self.session.patient
        if patient is None:
            return
        if not os.path.isfile(path):
            self.show_error("Import RT plan", f"{path}: not a file; choose the RT Ion Plan "
                                              "(RTPLAN*.dcm)")
            return

        try:  # the dose grid the user set up for planning
            grid_mm = parse_grid_mm(self.planning.plan_panel.grid_mm.text)
        except IonPlanError as exc:
            self.show_error("Import RT plan", exc)
            return
        if calibration is None and api.metersets_in_mu(path):
            self._ask_monitor_calibration(path)
            return

        def work(progress: Any, cancel: Any) -> Any:
            return api.recalculate_plan(patient, path, grid_mm=grid_mm, exchange=True,
                                        progress=progress, cancel=cancel,
                                        monitor_calibration=calibration)

        def done(result: Any) -> None:
            if self.session.patient is not patient:
                return
            rep = result.report
            model = f"{rep.get('rbe_model', '?')} ({rep.get('rbe_model_source', '?')})"
            entry = self.session.add_plan(result, f"recalculated from {path}; RBE model {model}",
                                          name=result.plan.label)
            self.planning.tabs.switch_to(self.planning.tab_items["Dose"])
            notes = [received_plan_note(entry, Path(path).name), f"RBE model: {model}",
                     *rep.get("warnings", [])]
            dialogs.message_dialog("Imported plan recalculated", "\n".join(notes),
                                   name="import_notes_dialog")

        self.run_task("Recalculating the imported plan", work, done)

    def _ask_monitor_calibration(self, path: str, problem: str = "") -> None:
        """Ask for the particles per MU of the plan's machine, then import with it; a text
        that does not parse asks again, saying why."""
        def submit(text: str) -> None:
            try:
                calibration = api.parse_monitor_calibration(text)
            except IonPlanError as exc:
                self._ask_monitor_calibration(path, str(exc))
                return
            self.monitor_calibration_text = text
            self.import_plan_file(path, calibration)

        prompt = (f"{Path(path).name} gives its metersets in MU. Particles per MU of the "
                  "machine: N@E (N measured at E MeV/u; other energies by the stopping power "
                  "of air), a CSV table 'energy_MeV_u,particles_per_MU', or one N for every "
                  "energy.")
        dialogs.text_dialog("Monitor calibration",
                            f"Not understood: {problem}\n\n{prompt}" if problem else prompt,
                            self.monitor_calibration_text, action="Recalculate",
                            on_submit=submit, name="monitor_calibration_dialog",
                            height=320 if problem else 260)

    def _patient_loaded(self, patient: Any, source: str) -> None:
        """Show ``patient`` with the plans and settings of its workspace."""
        self.save_workspace()  # the previous patient's last changes
        self.exported.clear()
        if self.keeper is None:
            self.session.set_patient(patient, source)
        else:
            restored = self.keeper.restore(patient, source)
            self.exported.update(e.plan_id for e in restored.exported)
            self.session.set_patient(patient, source, restored.plans)
            self.planning.apply_workspace_settings(restored.settings)
            self.keeper.mark_saved()
            if restored.problem:
                self.show_error("Saved workspace", restored.problem)
        if self.screenshot_path:
            Clock.schedule_once(lambda _dt: self._take_screenshot(SCREENSHOT_SETTLE_FRAMES), 0)

    def _take_screenshot(self, frames_left: int) -> None:
        if frames_left > 0:
            Clock.schedule_once(lambda _dt: self._take_screenshot(frames_left - 1), 0)
            return
        assert self.screenshot_path is not None
        try:
            export.save_window_png(self.screenshot_path)
        except (OSError, ValueError) as exc:
            log.error("cannot save the screenshot %s: %s", self.screenshot_path, exc)
            self.exit_status = 1
        self.stop()

    # --- export ------------------------------------------------------------------------------
    def _ask_folder(self, title: str, then: Any) -> None:
        recent = self.recent.load() if self.recent else []
        dialogs.folder_dialog(title, recent[0] if recent else str(Path.home()), then,
                              action="Save here")

    def export_dicom(self) -> None:
        entry = self.planning.shown_plan
        if entry is None:
            self.show_error("Export DICOM", "compute a plan first")
            return
        self._ask_folder("Export RT Ion Plan and RT Doses to a folder",
                         lambda folder: self.export_dicom_to(folder))

    def export_dicom_to(self, folder: str) -> None:
        entry = self.planning.shown_plan
        if entry is None:
            return
        ident = self._identification(entry)
        try:  # each export in a new folder named after patient, plan and time
            target = api.new_plan_folder(Path(folder).expanduser(), ident)
        except IonPlanError as exc:
            self.show_error("Export DICOM", exc)
            return

        def done(paths: list[str]) -> None:
            self.last_export = paths
            self.exported.add(entry.plan_id)
            dialogs.message_dialog("Export DICOM", "Wrote:\n" + "\n".join(paths),
                                   name="export_dialog")

        # The RT Plan Name (and its first 16 characters, the RT Plan Label) is the plan's name.
        named = dataclasses.replace(entry.result,
                                    plan=dataclasses.replace(entry.result.plan, label=entry.name))
        # A plan's robust evaluation goes with it: worst-case RT Doses, report.html, and the
        # plan document's robustness section.
        if not self.run_task("Exporting DICOM",
                             lambda p, c: api.export_plan(named, target, plan_name=entry.name,
                                                          robust=entry.robust,
                                                          created=ident.created),
                             done, cancellable=False):
            target.rmdir()  # not started: leave no empty folder behind

    def _identification(self, entry: PlanEntry | None,
                        layer: DoseLayer | None = None) -> Identification:
        """Patient, plan, model and now, for a file about ``entry`` (or the screen); with
        ``layer``, the cube of ``entry`` shown (its label follows the model)."""
        patient = self.session.patient
        if entry is not None:
            model = str(entry.result.report.get("rbe_model", entry.result.model.describe()))
            if layer is not None:
                model = f"{model}; shown: {layer.label}"
            return api.identification(patient, entry.name, model)
        if self.screens.current_screen is self.compare:
            pair = self.compare.compared_text()  # what the views show, not the drop-downs
            return api.identification(patient, pair or "no comparison",
                                      "as labelled" if pair else "-")
        return api.identification(patient, "no plan", "-")

    @staticmethod
    def _once_dialogs_closed(action: Any) -> None:
        """Run ``action`` after the folder dialog's closing animation: pictures of the screen
        are cut out of the window and must not show the dialog."""
        Clock.schedule_once(lambda _dt: action(), DIALOG_CLOSE_S)

    def export_view_png(self) -> None:
        self._ask_folder("Save the current view as PNG",
                         lambda folder: self._once_dialogs_closed(
                             lambda: self.export_view_png_to(folder)))

    def export_view_png_to(self, folder: str) -> None:
        screen = self.screens.current_screen
        entry = self.planning.shown_plan if screen is self.planning else None
        layer = self.planning.shown_layer if entry is not None else None
        try:
            path = export.save_identified_png(screen, Path(folder).expanduser(),
                                              self._identification(entry, layer),
                                              f"{screen.name}_view")
        except (OSError, ValueError, IonPlanError) as exc:
            self.show_error("Save view PNG", exc)
            return
        self.last_export = [str(path)]
        dialogs.message_dialog("Save view PNG", f"Wrote {path}", name="export_dialog")

    def export_report(self) -> None:
        if self.planning.shown_plan is None:
            self.show_error("Plan report", "compute a plan first")
            return
        self._ask_folder("Save the plan report (PDF)", self.export_report_to)

    def export_report_to(self, folder: str) -> None:
        """Write the plan document of the plan on screen into ``folder`` (a new file)."""
        entry = self.planning.shown_plan
        if entry is None:
            return

        def done(path: Path) -> None:
            self.last_export = [str(path)]
            dialogs.message_dialog("Plan report", f"Wrote:\n{path}", name="export_dialog")

        levels = self.planning.dose_panel.display().isodose_percent  # as on screen
        # A plan without its influence (restored from the workspace): its notes as the Dose
        # tab's say that re-optimizing cannot continue from it.
        restored = entry.keeps_no_influence
        self.run_task("Writing the plan report",
                      lambda p, c: api.write_plan_document(entry.result,
                                                           Path(folder).expanduser(),
                                                           entry.name, isodose_percent=levels,
                                                           restored=restored),
                      done, cancellable=False)

    def on_stop(self) -> None:
        Window.unbind(on_request_close=self._confirm_close, on_keyboard=self._swallow_escape)
        self.save_workspace()
        if self.keeper is not None:
            self.keeper.close()  # the patient's workspace lock, for the next IonPlan window

    @staticmethod
    def _swallow_escape(_window: Any, key: int, *_args: Any) -> bool:
        """Escape closes an open dialog (the dialog handles it first), never the application
        with the user's plans in it."""
        return key == ESCAPE_KEY

    def _confirm_close(self, *_args: Any, **_kwargs: Any) -> bool:
        """Ask before closing when plans computed in this session were not exported."""
        unsaved = self.unexported_plans()
        running = self.task is not None and self.task.running
        if not (unsaved or running) or self._closing:
            return False
        notes = []
        if unsaved:
            fate = (self._kept_text(len(unsaved) > 1) if self.keeper is not None
                    else "quitting loses them")
            notes.append(f"{', '.join(unsaved)} {'was' if len(unsaved) == 1 else 'were'} not "
                         f"exported; {fate}")
        if running:
            assert self.task is not None
            notes.append(f"{self.task.name} is still running: quitting now loses that work")
        popup = dialogs.confirm_dialog(
            "Quit IonPlan?", ".\n".join(notes) + ".",
            confirm_text="Quit", on_confirm=self._close_now)
        popup.name = "quit_dialog"
        return True

    def _kept_text(self, plural: bool) -> str:
        """Where unexported plans stay (the workspace), or why they may not."""
        it, stays, comes = ("they", "stay", "come") if plural else ("it", "stays", "comes")
        if self.keeper is not None and self.keeper.last_error:
            return f"saving the workspace failed ({self.keeper.last_error}): {it} may be lost"
        return (f"{it} {stays} in the patient's workspace and {comes} back when the patient "
                "is opened")

    def _close_now(self) -> None:
        self._closing = True
        self.stop()

    # --- about -------------------------------------------------------------------------------
    def show_about(self) -> None:
        text = (version_text() + "\n\nCarbon-ion treatment planning: pencil-beam dose, mMKM "
                "and LEM I RBE-weighted dose, spot-weight optimization, DICOM RT.\nNot a "
                "certified medical device: for research and plan comparison.\n\n"
                "Third-party software:\n" + third_party_notices()[:20000])
        dialogs.message_dialog("About IonPlan", text, name="about_dialog", size=(760, 560))
