"""The planning screen: patient/plan/dose tabs, the three slice views, DVH and metrics.

It turns session changes into what the widgets show and user actions into session changes or
background tasks (through the :class:`TaskHost`, the application).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.popup import Popup
from kivy.uix.screenmanager import Screen
from kivy.uix.tabbedpanel import TabbedPanel, TabbedPanelItem

from app import dialogs, review
from app.dose_display import overlay_for
from app.panels.dose_panel import DosePanel
from app.panels.patient_panel import PatientPanel
from app.panels.plan_panel import PlanPanel
from app.panels.robust_panel import RobustPanel
from app.plan_setup import BeamSetup, PlanSetup, reoptimization_conflicts
from app.robust_review import RobustChoice
from app.session import DoseLayer, PlanEntry, Session
from app.tasks import Work
from app.theme import BOTTOM_PANEL_HEIGHT, PAD, SIDE_PANEL_WIDTH
from app.viewer_state import BeamOverlay, StructureOverlay, ViewerState
from app.widgets.dvh_plot import DvhPlot
from app.widgets.metrics_table import MetricsTable
from app.widgets.viewer_panel import ViewerPanel
from planning import api
from planning.errors import InputError, IonPlanError

if TYPE_CHECKING:
    from planning.plan_estimate import PlanEstimate

#: Most of the screen's width the side panel takes, and of the right column's height the
#: DVH and metrics row takes (in small windows).
SIDE_PANEL_SHARE = 0.34
BOTTOM_PANEL_SHARE = 0.36
BEAM_COLOURS = ((255, 220, 60), (60, 220, 255), (255, 120, 220), (140, 255, 120),
                (255, 160, 60), (180, 160, 255))


def _keeps_no_influence(entry: PlanEntry) -> str:
    """Why Re-optimize cannot start from ``entry`` (:attr:`PlanEntry.keeps_no_influence`)."""
    return (f"{entry.name} keeps no influence to re-optimize from (it was restored from a "
            "saved session or recalculated from a received plan): press Compute plan for a "
            "new plan (or show a plan computed here)")


class TaskHost(Protocol):
    """What the screen needs from the application."""

    def run_task(self, name: str, work: Work, on_done: Any) -> bool: ...
    def show_error(self, title: str, error: BaseException | str) -> None: ...
    def open_folder(self) -> None: ...
    def open_demo(self) -> None: ...


class PlanningScreen(Screen):
    """Plan on the loaded patient and review the dose."""

    def __init__(self, session: Session, host: TaskHost, **kwargs: Any) -> None:
        super().__init__(name="planning", **kwargs)
        self.session = session
        self.host = host
        self.state = ViewerState()
        # Structure statistics per (plan result, cube key) with the cube they were computed
        # on: computed once per cube shown (a second robust evaluation of a plan gives its
        # worst-case keys new cubes).
        self._stats_cache: dict[tuple[int, str], tuple[Any, list]] = {}
        root = BoxLayout(orientation="horizontal", spacing=PAD)
        self.tabs = TabbedPanel(do_default_tab=False, size_hint_x=None, width=SIDE_PANEL_WIDTH,
                                tab_width=SIDE_PANEL_WIDTH / 3 - 2)
        self.patient_panel = PatientPanel(on_open_folder=host.open_folder,
                                          on_open_demo=host.open_demo,
                                          on_toggle_structure=self._toggle_structure)
        self.plan_panel = PlanPanel(on_compute=self.compute_plan,
                                    on_reoptimize=self.reoptimize_plan,
                                    on_error=lambda e: host.show_error("Plan setup", e),
                                    on_beams_changed=self._show_beams,
                                    default_objectives=self._default_objectives,
                                    gpu_available=api.gpu_available())
        self.dose_panel = DosePanel(on_change=self.refresh_dose,
                                    on_error=lambda e: host.show_error("Dose display", e),
                                    on_rename=self.ask_rename,
                                    on_robustness=self.open_robustness,
                                    on_beam_view=self.show_beam_view)
        self._renamed: PlanEntry | None = None  # keeps the selection through a rename
        # (result id, plan name) of the plan whose objective results the Plan tab shows
        self._results_shown_for: tuple[int, str] | None = None
        self.robust_popup: Popup | None = None
        self.tab_items = {}
        for title, panel in (("Patient", self.patient_panel), ("Plan", self.plan_panel),
                             ("Dose", self.dose_panel)):
            item = TabbedPanelItem(text=title)
            item.add_widget(panel)
            self.tabs.add_widget(item)
            self.tab_items[title] = item
        self.tabs.switch_to(self.tab_items["Patient"])
        root.add_widget(self.tabs)
        right = BoxLayout(orientation="vertical", spacing=PAD)
        self.viewer = ViewerPanel(self.state)
        right.add_widget(self.viewer)
        bottom = BoxLayout(orientation="horizontal", size_hint_y=None,
                           height=BOTTOM_PANEL_HEIGHT, spacing=PAD)
        self.dvh = DvhPlot(size_hint_x=0.5)
        self.metrics = MetricsTable(size_hint_x=0.5)
        bottom.add_widget(self.dvh)
        bottom.add_widget(self.metrics)
        right.add_widget(bottom)
        root.add_widget(right)
        self.add_widget(root)
        # Small windows (down to 1024 x 640): a narrower side panel and a lower DVH/metrics
        # row keep the slice views usable.
        root.bind(width=lambda _w, width: self._fit_side_panel(width))
        right.bind(height=lambda _w, height: setattr(
            bottom, "height", min(BOTTOM_PANEL_HEIGHT, BOTTOM_PANEL_SHARE * height)))
        session.subscribe(self._session_changed)

    def _fit_side_panel(self, width: float) -> None:
        side = min(SIDE_PANEL_WIDTH, SIDE_PANEL_SHARE * width)
        self.tabs.width = side
        self.tabs.tab_width = side / 3 - 2

    # --- session -> widgets ----------------------------------------------------------------
    def _session_changed(self, what: str) -> None:
        if what == "patient":
            self._show_patient()
        else:
            self._show_plans()
        self._offer_reoptimize()

    def _offer_reoptimize(self) -> None:
        """Re-optimize only for a plan it can start from (the Dose tab's, else the latest):
        none, or one restored from a saved session (no kept influence), greys it, with a line
        saying why."""
        entry = self.shown_plan or self.session.latest_plan
        if entry is None:
            self.plan_panel.offer_reoptimize("")
        elif entry.keeps_no_influence:
            self.plan_panel.offer_reoptimize(
                f"Re-optimize: {entry.name} keeps no influence (a restored or received plan); "
                "press Compute plan first.")
        else:
            self.plan_panel.offer_reoptimize(None)

    def _show_patient(self) -> None:
        patient = self.session.patient
        if patient is None:
            return
        self._stats_cache.clear()
        self.state.set_dose(None)
        self.state.set_ct(patient.ct)
        ss = patient.structure_set
        structures = [] if ss is None else [
            StructureOverlay(s.name, colour, s.mask)
            for s, colour in zip(ss.structures, ss.display_colours(), strict=True)]
        self.state.set_structures(structures)
        self.patient_panel.show_patient(patient, self.session.source)
        names = [] if ss is None else list(ss.names)
        types = [] if ss is None else [s.interpreted_type for s in ss.structures]
        self.plan_panel.set_structures(names, types)
        self._show_no_dvh()
        self._show_beams(self._form_beams())

    def _show_no_dvh(self) -> None:
        """Empty DVH and metrics: the last plan's curves, axis, marker and rows go too."""
        self.dvh.set_curves([])
        self.dvh.set_prescription(None)
        self.dvh.x_label = DvhPlot.x_label.defaultvalue
        self.metrics.set_rows(review.metric_columns(""), [])

    def _show_plans(self) -> None:
        names = [p.name for p in self.session.plans]
        latest = self.session.latest_plan
        shown = self._renamed or latest
        self._renamed = None
        self.dose_panel.set_plans(names, select=shown.name if shown else None)
        self.refresh_dose()

    # --- renaming ----------------------------------------------------------------------------
    def ask_rename(self, name: str) -> None:
        """Ask for a new name of plan ``name``."""
        try:
            entry = self.session.plan(name)
        except KeyError:
            return
        dialogs.text_dialog("Rename plan", f"New name of {entry.name} (it names its exports, "
                            "reports and its place in the workspace):", entry.name,
                            action="Rename", on_submit=lambda text: self.rename(entry, text),
                            name="rename_dialog")

    def rename(self, entry: PlanEntry, new_name: str) -> None:
        """Rename ``entry``; a refused name is shown in a dialog and nothing changes."""
        self._renamed = entry
        try:
            self.session.rename_plan(entry, new_name)
        except InputError as exc:
            self.host.show_error("Rename plan", exc)
        finally:
            self._renamed = None

    # --- what the workspace keeps ------------------------------------------------------------
    def workspace_settings(self) -> dict[str, Any]:
        """The plan form and the display settings (docs/workspace.md), JSON-serialisable."""
        display = self.dose_panel.display_settings()
        display.update(window_hu=float(self.state.window_hu),
                       level_hu=float(self.state.level_hu),
                       cursor_ijk=[int(v) for v in self.state.cursor_ijk],
                       tab=self.tabs.current_tab.text if self.tabs.current_tab else "")
        return {"form": self.plan_panel.form_values(), "display": display}

    def apply_workspace_settings(self, settings: Mapping[str, Any]) -> None:
        """Restore :meth:`workspace_settings` (what does not fit is left as it is)."""
        form, display = settings.get("form"), settings.get("display")
        if isinstance(form, dict):
            self.plan_panel.apply_form_values(form)
        if not isinstance(display, dict):
            self._show_objective_results(self.shown_plan)
            return
        self.dose_panel.apply_display_settings(display)
        window, level = display.get("window_hu"), display.get("level_hu")
        try:
            self.state.set_window_level(float(window), float(level))  # type: ignore[arg-type]
        except (TypeError, ValueError, InputError):
            pass
        cursor = display.get("cursor_ijk")
        if isinstance(cursor, list) and len(cursor) == 3 and all(
                isinstance(v, int) for v in cursor):
            self.state.set_cursor(*cursor)
        tab = self.tab_items.get(str(display.get("tab")))
        if tab is not None:
            self.tabs.switch_to(tab)
        self._show_objective_results(self.shown_plan)  # under the restored form's rows

    def show_beam_view(self) -> None:
        """Open the beam's-eye view of the plan shown (target projection, spot maps)."""
        entry = self.shown_plan
        if entry is None:
            self.host.show_error("Beam's-eye view", "compute a plan first")
            return
        from app.beam_view_dialog import BeamViewDialog

        try:
            BeamViewDialog(entry).open()
        except IonPlanError as exc:
            self.host.show_error("Beam's-eye view", exc)

    # --- dose display ------------------------------------------------------------------------
    @property
    def shown_plan(self) -> PlanEntry | None:
        name = self.dose_panel.plan_name
        if not name:
            return None
        try:
            return self.session.plan(name)
        except KeyError:
            return None

    @property
    def shown_layer(self) -> DoseLayer | None:
        """The cube of the shown plan on the views: the quantity chosen, else its first."""
        entry = self.shown_plan
        if entry is None:
            return None
        try:
            return entry.layer(self.dose_panel.layer_key or "rbe")
        except KeyError:
            return entry.layers()[0]

    def refresh_dose(self) -> None:
        """Show the chosen plan's chosen cube with the chosen display settings."""
        entry = self.shown_plan
        if self._results_key(entry) != self._results_shown_for:
            self._show_objective_results(entry)
        if entry is None:  # nothing of the last plan (or patient) stays on screen
            self.state.set_dose(None)
            self.dose_panel.show_no_plan()
            self._show_no_dvh()
            return
        self.dose_panel.set_layers(entry.layers())
        layer = self.shown_layer
        assert layer is not None
        overlay = overlay_for(layer, self.dose_panel.display())
        self.state.set_dose(overlay)
        self.dose_panel.reference.text = layer.description
        self.dose_panel.set_notes(api.plan_notes(entry.result,
                                                 restored=entry.keeps_no_influence))
        self._offer_reoptimize()
        beams = entry.result.plan.beams
        self._show_beams([BeamSetup(b.beam.gantry_deg, b.beam.couch_deg) for b in beams],
                         isocenters=[b.beam.isocenter_mm for b in beams])
        self._show_dvh(entry, layer.key if layer.is_dose else "rbe")

    @staticmethod
    def _results_key(entry: PlanEntry | None) -> tuple[int, str] | None:
        return None if entry is None else (id(entry.result), entry.name)

    def _show_objective_results(self, entry: PlanEntry | None) -> None:
        """Under the Plan tab's objective rows, how far ``entry`` (the plan shown in the Dose
        tab: a new one, another one chosen, one restored with the workspace) is from each of
        its objectives; nothing when no plan is shown."""
        self._results_shown_for = self._results_key(entry)
        if entry is None:
            self.plan_panel.show_objective_results("", (), "")
            return
        self.plan_panel.show_objective_results(
            entry.name, entry.result.report.get("objectives", ()), entry.dose_unit)

    def _show_dvh(self, entry: PlanEntry, key: str) -> None:
        layer = entry.layer(key)
        patient = entry.result.patient
        cache_key = (id(entry.result), key)
        cube, stats = self._stats_cache.get(cache_key, (None, None))
        if cube is not layer.cube or stats is None:
            stats = api.structure_dose_statistics(patient, layer.cube, layer.grid,
                                                  layer.reference, labels=layer.labels)
            self._stats_cache[cache_key] = (layer.cube, stats)
        self.dvh.x_label = f"{layer.label} ({layer.unit})" if layer.unit else layer.label
        self.dvh.set_curves(review.dvh_curves(stats))
        self.dvh.set_prescription(layer.reference
                                  if layer.reference_name.startswith("prescription") else None)
        for s in stats:
            self.dvh.set_visible(s.name, s.name in self.state.visible_structures)
        self.metrics.set_rows(review.metric_columns(layer.unit, layer.reference_name),
                              review.metrics_rows(stats, v95=not layer.v95_note))

    # --- structures and beams ----------------------------------------------------------------
    def _toggle_structure(self, name: str, visible: bool) -> None:
        self.state.set_structure_visible(name, visible)
        if self.dvh.curves:
            self.dvh.set_visible(name, visible)

    def _form_beams(self) -> list[BeamSetup]:
        try:
            return self.plan_panel.beams()
        except IonPlanError:
            return []

    def _show_beams(self, beams: list[BeamSetup],
                    isocenters: list[tuple[float, float, float]] | None = None) -> None:
        """Draw ``beams`` up to their isocentres (default: the planner's, at the target)."""
        patient = self.session.patient
        target = self.plan_panel.target.text
        if patient is None:
            return
        try:
            if isocenters is None:
                iso = api.target_isocenter_mm(patient, target) if target else None
                isocenters = [iso] * len(beams) if iso is not None else []
            position = patient.ct.setup_position()
            overlays = [
                BeamOverlay(f"G{b.gantry_deg:g}" + (f" C{b.couch_deg:g}" if b.couch_deg else ""),
                            iso, api.beam_direction_lps(b.gantry_deg, b.couch_deg, position),
                            BEAM_COLOURS[i % len(BEAM_COLOURS)])
                for i, (b, iso) in enumerate(zip(beams, isocenters, strict=False))]
        except IonPlanError:
            overlays = []  # no target yet, or a position beams cannot be drawn for
        self.state.set_beams(overlays)

    def _default_objectives(self, target: str, dose_gy_rbe: float) -> list:
        patient = self.session.patient
        if patient is None or patient.structure_set is None:
            return []
        return api.default_objectives(patient, target, dose_gy_rbe)

    # --- computing ---------------------------------------------------------------------------
    def compute_plan(self, setup: PlanSetup) -> None:
        """Estimate the plan of ``setup`` (work, memory, time: a second or two in the
        background), show the estimate in the Plan tab, then optimize the plan in the
        background and show it when done. A long or large plan first asks in a dialog
        (Continue / Cancel); Cancel leaves the form as it is."""
        patient = self.session.patient
        if patient is None:
            self.host.show_error("Compute plan", "load a patient first")
            return
        try:
            request = api.plan_request(
                patient, target=setup.target, dose_gy_rbe=setup.total_dose_gy_rbe,
                fractions=setup.fractions, gantry_deg=[b.gantry_deg for b in setup.beams],
                couch_deg=[b.couch_deg for b in setup.beams], rbe=setup.rbe,
                rbe_value=setup.rbe_value, tissue=setup.tissue,
                spot_spacing_mm=setup.spot_spacing_mm, grid_mm=setup.grid_mm,
                objectives=list(setup.objectives), device=setup.device,
                exchange=setup.exchange)
        except InputError as exc:
            self.host.show_error("Compute plan", exc)
            return
        form = self.plan_panel.form_values()  # the form as it was when the user pressed

        def estimate(progress: Any, cancel: Any) -> Any:
            return api.estimate_plan(request, progress=progress, cancel=cancel)

        def optimize(progress: Any, cancel: Any) -> Any:
            return api.plan_patient(request, progress=progress, cancel=cancel)

        def compute() -> None:
            self._run_plan_task("Computing plan", optimize, setup.total_dose_gy_rbe,
                                setup.summary(), form)

        def estimated(estimate: PlanEstimate) -> None:
            if self.session.patient is not patient:
                return  # another patient was opened meanwhile
            self.plan_panel.show_estimate(estimate.summary(),
                                          large=estimate.needs_confirmation)
            concern = estimate.concern()
            if concern is None:
                compute()
                return
            dialogs.confirm_dialog(
                "Long plan", f"{concern}\n\nThe plan ({estimate.dose_grid_mm:g} mm dose grid, "
                f"{estimate.spot_spacing_mm:g} mm spots): {estimate.work_text()}.\n\n"
                "Continue computes it (Cancel in the task bar stops it); Cancel keeps the form "
                "as it is.",
                confirm_text="Continue", on_confirm=compute, name="long_plan_dialog",
                size=(620, 360))

        self.host.run_task("Estimating plan", estimate, estimated)

    def reoptimize_plan(self, setup: PlanSetup) -> None:
        """Optimize the plan on screen (the Dose tab's; the latest when none is shown) again with
        the form's prescription and objectives, from its kept influence (an older plan's is
        rebuilt: only the newest keeps its matrices); refused when the beams, spots, grid,
        model or device changed, or for a plan restored from a saved session."""
        entry = self.shown_plan or self.session.latest_plan
        if self.session.patient is None or entry is None:
            self.host.show_error("Re-optimize", "compute a plan first: re-optimization starts "
                                 "from a plan computed here")
            return
        if entry.keeps_no_influence:
            self.host.show_error("Re-optimize", _keeps_no_influence(entry))
            return
        changed = reoptimization_conflicts(entry.result.prepared.request, setup)
        if changed:
            self.host.show_error("Re-optimize", f"{', '.join(changed)} changed since "
                                 f"{entry.name}: the kept influence no longer applies, so "
                                 "press Compute plan for a new plan")
            return

        def optimize(progress: Any, cancel: Any) -> Any:
            return api.reoptimize_plan(
                entry.result, total_dose_gy_rbe=setup.total_dose_gy_rbe,
                n_fractions=setup.fractions, objectives=list(setup.objectives),
                exchange=setup.exchange,
                exchange_tissue=setup.tissue if setup.exchange else None,
                progress=progress, cancel=cancel)

        self._run_plan_task("Re-optimizing plan", optimize, setup.total_dose_gy_rbe,
                            f"{setup.summary()}, re-optimized from {entry.name}",
                            self.plan_panel.form_values())

    def _run_plan_task(self, name: str, optimize: Any, prescription_gy_rbe: float,
                       summary: str, form: dict[str, Any]) -> None:
        """Run ``optimize(progress, cancel) -> PlanResult`` in the background with the first
        DVHs computed there too (not on the UI thread); add the plan, with ``form`` (the
        form's values it was made from), and show it when done."""
        patient = self.session.patient

        def work(progress: Any, cancel: Any) -> Any:
            result = optimize(progress, cancel)
            stats = api.structure_dose_statistics(patient, result.rbe_dose_gy_rbe,
                                                  result.dose_grid, prescription_gy_rbe,
                                                  labels=result.tissue_labels)
            return result, stats

        def done(outcome: Any) -> None:
            result, stats = outcome
            if self.session.patient is not patient:
                return  # another patient was opened meanwhile: the plan belongs to the old one
            self._stats_cache[(id(result), "rbe")] = (result.rbe_dose_gy_rbe, stats)
            entry = self.session.add_plan(result, summary, form)
            # A new plan opens on its own dose, not on the quantity chosen for the plan shown
            # before (an exchange-view LEM I dose was shown after a physical plan; review).
            if self.shown_plan is entry:
                self.dose_panel.select_layer("rbe")
            # How far the plan is from each objective, under the form's rows it was made with.
            self._show_objective_results(entry)
            self.tabs.switch_to(self.tab_items["Dose"])

        self.host.run_task(name, work, done)

    # --- robustness --------------------------------------------------------------------------
    def open_robustness(self) -> None:
        """The Robustness view of the plan shown in the Dose tab (its last evaluation, if any)."""
        entry = self.shown_plan
        if entry is None:
            self.host.show_error("Robustness", "compute a plan first: the robust evaluation "
                                 "recalculates the plan shown in the Dose tab")
            return
        ss = entry.result.patient.structure_set
        colours = {} if ss is None else dict(zip(ss.names, ss.display_colours(), strict=True))
        panel = RobustPanel(
            plan_name=entry.name, target=entry.result.plan.prescription.target,
            prescription_gy_rbe=entry.prescription_gy_rbe, colours=colours,
            model_name=entry.model_name,
            on_evaluate=lambda choice: self.evaluate_robustness(entry.name, choice),
            on_error=lambda e: self.host.show_error("Robustness", e),
            on_close=lambda: self.robust_popup.dismiss() if self.robust_popup else None)
        if entry.robust is not None:
            panel.show_report(entry.robust.report)
        popup = Popup(title=f"Robustness of {entry.name}", content=panel, size_hint=(0.92, 0.9))
        popup.bind(on_dismiss=lambda *_: setattr(self, "robust_popup", None))
        self.robust_popup = popup
        popup.open()

    def evaluate_robustness(self, plan_name: str, choice: RobustChoice) -> None:
        """Evaluate plan ``plan_name`` over ``choice``'s scenarios in the background (the
        popup closes so that the task bar's progress and Cancel are in reach); the view opens
        again with the result."""
        entry = self.session.plan(plan_name)
        if self.robust_popup is not None:
            self.robust_popup.dismiss()
        result = entry.result
        # The device the plan was computed on (the same engine path as its nominal dose).
        device = str(result.report.get("device", "auto"))

        def work(progress: Any, cancel: Any) -> Any:
            return api.robust_evaluation_of_result(result, **choice.api_options(),
                                                   device=device if device in ("cpu", "gpu")
                                                   else "auto",
                                                   progress=progress, cancel=cancel)

        def done(robust: Any) -> None:
            # The plan evaluated, also when renamed meanwhile.
            current = next((p for p in self.session.plans
                            if p.plan_id == entry.plan_id and p.result is result), None)
            if current is None:
                self.host.show_error("Robustness", f"{entry.name} is no longer a plan of the "
                                     "open patient: its robust evaluation was not kept")
                return
            self.session.set_robust(current.name, robust)
            self.dose_panel.plan.text = current.name
            self.open_robustness()

        self.host.run_task(f"Robust evaluation of {plan_name}", work, done)
