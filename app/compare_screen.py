"""The compare screen: two doses side by side with synchronized slices, their difference,
DVH overlay (A solid, B dashed), gamma pass rates and metric differences.

A and B are any of the session's plans, as RBE-weighted or physical dose, or, for plans
computed with the exchange view, the same plan under mMKM and under LEM I. The comparison
itself (resampling, gamma, statistics) is :func:`planning.api.compare_doses`.

A physical dose against an RBE-weighted one: A and B each on its own colour scale in its unit,
the effective RBE (RBE-weighted over physical dose) in place of the difference, no gamma (the
summary says why) and B / A in place of B - A in the table.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.screenmanager import Screen
from kivy.utils import escape_markup

from app.compare_choices import EXTERNAL, CompareChoice, choices_for, default_pair
from app.dose_display import DoseDisplay, difference_overlay, overlay_for, ratio_overlay
from app.plot_data import DvhCurve, MetricsRow
from app.session import DoseLayer, Session
from app.theme import BOTTOM_PANEL_HEIGHT, MUTED_TEXT_RGBA, PAD, ROW_HEIGHT
from app.viewer_state import StructureOverlay, ViewerState
from app.widgets.color_legend import ColorLegend
from app.widgets.dvh_plot import DvhPlot
from app.widgets.menu import WideSpinner
from app.widgets.metrics_table import MetricsTable
from app.widgets.slice_view import SliceView
from app.widgets.viewer_panel import SliceSlider
from planning import api
from planning.errors import InputError
from planning.geometry import lps_to_index
from planning.patient import TARGET_TYPES

if TYPE_CHECKING:
    from app.planning_screen import TaskHost

#: Width of a view's colour legend, px: room for an effective RBE's ticks ("2.4975") and the
#: value beyond its scale ("max 2.501"), as the Plan & review viewer's legend.
LEGEND_WIDTH_PX = 78
#: Least height of the comparison's summary (gamma, B - A, warnings), px.
SUMMARY_HEIGHT_PX = 70
#: Height of a one-line view title, px.
TITLE_HEIGHT_PX = 24
#: Width of the gamma criteria note at the end of the bar (it wraps onto two lines), px.
CRITERIA_WIDTH_PX = 190
#: Most of the screen's height the DVH and table row takes (in small windows).
BOTTOM_PANEL_SHARE = 0.36
class ComparePanel(BoxLayout):
    """One side (or the difference): a title, an axial view and its colour legend."""

    def __init__(self, title: str, state: ViewerState) -> None:
        super().__init__(orientation="vertical", spacing=2)
        # The full name of the side's dose (the drop-down above may shorten it), on a second
        # line when the panel is too narrow for one (the screen keeps the three titles of
        # one height).
        self.title = Label(text=title, size_hint_y=None, height=TITLE_HEIGHT_PX,
                           halign="center", valign="middle")
        self.title.bind(width=lambda w, width: setattr(w, "text_size", (width, None)))
        self.view = SliceView(state, "axial")
        self.legend = ColorLegend(size_hint_x=None, width=LEGEND_WIDTH_PX)
        row = BoxLayout(spacing=2)
        row.add_widget(self.view)
        row.add_widget(self.legend)
        self.add_widget(self.title)
        self.add_widget(row)


class CompareScreen(Screen):
    """Compare two doses of the session."""

    def __init__(self, session: Session, host: TaskHost, **kwargs: Any) -> None:
        super().__init__(name="compare", **kwargs)
        self.session = session
        self.host = host
        self.result: Any = None
        #: The pair ``result`` compares, each side with what it compares (a plan's result or an
        #: imported RT Dose): the drop-downs may since show another pair.
        self.compared: tuple[tuple[CompareChoice, Any], tuple[CompareChoice, Any]] | None = None
        self.external: dict[str, Any] = {}  # imported RT Doses (comparison sides) by file name
        self._choices: list[CompareChoice] = []
        self._sources: dict[CompareChoice, Any] = {}  # what each choice compares
        self._shown_patient: Any = None
        #: The pair pre-selected last (texts of A and B): while the drop-downs still show it,
        #: the user has not chosen, and a newer plan's default pair replaces it.
        self._preselected: tuple[str, str] | None = None
        root = BoxLayout(orientation="vertical", spacing=PAD, padding=PAD)
        bar = BoxLayout(size_hint_y=None, height=ROW_HEIGHT + 4, spacing=PAD)
        # The drop-downs take the bar's free width; a choice longer than that is shortened
        # ("...") on its button, and read whole in the open list and, once compared, over
        # its view.
        self.side_a = WideSpinner(text="", values=[], shorten=True)
        self.side_b = WideSpinner(text="", values=[], shorten=True)
        self.compare_button = Button(text="Compare", size_hint_x=None, width=120, bold=True)
        self.compare_button.bind(on_release=lambda *_: self.run_comparison())
        self.add_dose_button = Button(text="Add RT Dose...", size_hint_x=None, width=130)
        self.add_dose_button.bind(on_release=lambda *_: self.ask_rt_dose())
        for w in (Label(text="A (reference)", size_hint_x=None, width=100), self.side_a,
                  Label(text="B", size_hint_x=None, width=16), self.side_b,
                  self.compare_button, self.add_dose_button):
            bar.add_widget(w)
        self.criteria_label = Label(text="gamma 3%/3mm and 2%/2mm, global, 10 % threshold",
                                    color=MUTED_TEXT_RGBA, font_size="12sp", size_hint_x=None,
                                    width=CRITERIA_WIDTH_PX, halign="left", valign="middle")
        self.criteria_label.bind(size=lambda w, s: setattr(w, "text_size", s))  # two lines
        bar.add_widget(self.criteria_label)
        root.add_widget(bar)

        self.states = [ViewerState(), ViewerState(), ViewerState()]
        # Linking is symmetric: A leads B and the difference, and follows them.
        self.states[0].link(self.states[1])
        self.states[0].link(self.states[2])
        views = BoxLayout(spacing=PAD)
        self.panels = [ComparePanel(t, s) for t, s in
                       zip(("A", "B", "Difference B - A"), self.states, strict=True)]
        for p in self.panels:
            views.add_widget(p)
            p.title.bind(texture_size=lambda *_: self._fit_titles())
        body = BoxLayout(orientation="vertical", spacing=PAD)
        body.add_widget(views)
        self.slice_slider = SliceSlider(min=0, max=1, value=0, size_hint_y=None, height=28)
        self.slice_slider.bind(value=lambda _s, v: setattr(self.panels[0].view, "slice_index",
                                                           int(v)))
        body.add_widget(self.slice_slider)
        root.add_widget(body)

        bottom = BoxLayout(size_hint_y=None, height=BOTTOM_PANEL_HEIGHT, spacing=PAD)
        self.dvh = DvhPlot(size_hint_x=0.5)
        right = BoxLayout(orientation="vertical", size_hint_x=0.5, spacing=2)
        self.summary = Label(text="Choose A and B, then Compare.", size_hint_y=None,
                             height=SUMMARY_HEIGHT_PX, halign="left", valign="top",
                             markup=True, font_size="13sp")
        # As high as its lines (a warning wraps in a small window), the table takes the rest.
        self.summary.bind(width=lambda w, width: setattr(w, "text_size", (width, None)),
                          texture_size=lambda w, size: setattr(
                              w, "height", max(SUMMARY_HEIGHT_PX, size[1])))
        self.table = MetricsTable()
        right.add_widget(self.summary)
        right.add_widget(self.table)
        bottom.add_widget(self.dvh)
        bottom.add_widget(right)
        root.add_widget(bottom)
        self.add_widget(root)
        # Small windows: a lower DVH/table row leaves the views some room.
        root.bind(height=lambda _w, height: setattr(
            bottom, "height", min(BOTTOM_PANEL_HEIGHT, BOTTOM_PANEL_SHARE * height)))
        self.panels[0].view.bind(slice_index=lambda _v, i: setattr(self.slice_slider,
                                                                   "value", i))
        session.subscribe(lambda what: self.refresh_choices())

    def _fit_titles(self) -> None:
        """The three view titles as high as the one with most lines (the views stay level)."""
        height = max(TITLE_HEIGHT_PX, *(p.title.texture_size[1] + 4 for p in self.panels))
        for p in self.panels:
            p.title.height = height

    # --- choices ----------------------------------------------------------------------------
    def refresh_choices(self) -> None:
        """Offer the session's doses; keep the pair the user chose (under the plans' new names
        after a rename), else pre-select the most useful pair of the newest plans. The
        comparison shown goes when one of its sides is no longer there."""
        texts_now = (self.side_a.text, self.side_b.text)
        user_chose = texts_now != self._preselected
        chosen = [self._choice(text) if user_chose else None for text in texts_now]
        chosen_sources = [(c, self._sources.get(c)) if c is not None else None
                          for c in chosen]
        self._choices = choices_for(self.session.plans, tuple(self.external))
        self._sources = {c: self._source_now(c) for c in self._choices}
        texts = [c.text for c in self._choices]
        self.side_a.values = texts
        self.side_b.values = texts
        kept = [self._current(*side) if side is not None else None for side in chosen_sources]
        preselect = None in kept
        if preselect:
            pair = default_pair(self.session.plans)
            kept = list(pair) if pair else [None, None]
        self.side_a.text, self.side_b.text = (c.text if c is not None else "" for c in kept)
        if preselect:
            self._preselected = (self.side_a.text, self.side_b.text)
        if self.compared is not None:
            current = [self._current(*side) for side in self.compared]
            if None in current:
                self._clear_result()
            else:
                for panel, c in zip(self.panels[:2], current, strict=True):
                    panel.title.text = c.text if c is not None else ""
        self._show_patient()

    def _choice(self, text: str) -> CompareChoice | None:
        return next((c for c in self._choices if c.text == text), None)

    def _source_now(self, choice: CompareChoice) -> Any:
        """What ``choice`` compares now: an imported RT Dose, a plan's result, or None."""
        if choice.quantity == EXTERNAL:
            return self.external.get(choice.plan_name)
        return next((p.result for p in self.session.plans if p.name == choice.plan_name),
                    None)

    def _current(self, choice: CompareChoice, source: Any) -> CompareChoice | None:
        """The choice offered now for ``choice``'s quantity of ``source`` (under the plan's
        name now), or None when it is no longer offered."""
        if source is None:
            return None
        return next((c for c, s in self._sources.items()
                     if s is source and c.quantity == choice.quantity), None)

    def compared_text(self) -> str | None:
        """``"A Plan 1: RBE-weighted - B Plan 2: RBE-weighted"``: the pair on the views under
        the names now (None when no comparison is shown)."""
        if self.compared is None:
            return None
        current = [self._current(*side) for side in self.compared]
        if None in current:
            return None
        a, b = current
        assert a is not None and b is not None
        return f"A {a.text} - B {b.text}"

    def _show_patient(self) -> None:
        patient = self.session.patient
        if patient is None or patient is self._shown_patient:
            return
        self._shown_patient = patient
        self._clear_result()
        self.external.clear()
        ss = patient.structure_set
        structures = [] if ss is None else [
            StructureOverlay(s.name, colour, s.mask)
            for s, colour in zip(ss.structures, ss.display_colours(), strict=True)]
        # The slider's range first: setting the CT moves the slice, and the slider follows.
        self.slice_slider.max = max(patient.ct.shape[0] - 1, 1)
        for state in self.states:
            state.set_ct(patient.ct)
            state.set_structures(structures)
        self.slice_slider.value = int(self.panels[0].view.slice_index)

    def _clear_result(self) -> None:
        """Show no comparison (views, titles, DVH, summary and table)."""
        self.result = None
        self.compared = None
        for state in self.states:
            state.set_dose(None)
        self.summary.text = "Choose A and B, then Compare."
        self.dvh.set_curves([])
        self.dvh.set_prescription(None)
        self.dvh.x_label = DvhPlot.x_label.defaultvalue
        self.table.set_rows([], [])
        for panel, title in zip(self.panels, ("A", "B", "Difference B - A"), strict=True):
            panel.title.text = title
            panel.legend.set_overlay(None)

    def _layer(self, choice: CompareChoice) -> DoseLayer:
        if choice.quantity != EXTERNAL:
            return self.session.plan(choice.plan_name).layer(choice.quantity)
        side = self.external[choice.plan_name]
        rx = side.dose_prescription()
        top = float(np.max(side.dose_gy)) or 1.0
        return DoseLayer(EXTERNAL, choice.text, side.dose_gy, side.grid,
                         "Gy(RBE)" if side.dose_type == "EFFECTIVE" else "Gy",
                         rx.total_dose_gy_rbe if rx is not None else top, True)

    def _source(self, choice: CompareChoice) -> Any:
        """What a choice compares: an imported RT Dose side, or the plan's (immutable) result."""
        if choice.quantity == EXTERNAL:
            return self.external[choice.plan_name]
        return self.session.plan(choice.plan_name).result

    # --- importing a dose -------------------------------------------------------------------
    def ask_rt_dose(self) -> None:
        if self.session.patient is None:
            self.host.show_error("Add RT Dose", "open the patient's CT first")
            return
        from app import dialogs

        dialogs.folder_dialog("Choose an RT Dose file (e.g. a partner centre's plan dose)",
                              str(Path.home()), self.add_rt_dose, action="Add")

    def add_rt_dose(self, path: str) -> None:
        """Read an RT Dose of the open patient as a comparison side."""
        patient = self.session.patient
        if patient is None:
            return
        source = Path(path).expanduser()
        name = source.name if source.name not in self.external else (
            f"{source.parent.name}/{source.name}")

        def work(progress: Any, cancel: Any) -> Any:
            side = api.comparison_side(source, label=f"RT Dose: {name}")
            frame = patient.ct.frame_of_reference_uid
            if not side.frame_of_reference_uid:
                raise InputError(f"{source}: the RT Dose states no Frame of Reference, so it "
                                 "cannot be placed on the open CT")
            if frame and side.frame_of_reference_uid != frame:
                raise InputError(f"{source}: its Frame of Reference "
                                 f"{side.frame_of_reference_uid} is not the open CT's "
                                 f"({frame}): a dose of another patient or scan")
            return side

        def done(side: Any) -> None:
            if self.session.patient is not patient:
                return
            self.external[name] = side
            self.refresh_choices()
            self.side_b.text = CompareChoice(name, EXTERNAL).text

        self.host.run_task("Reading the RT Dose", work, done)

    # --- comparing --------------------------------------------------------------------------
    def run_comparison(self) -> None:
        a, b = self._choice(self.side_a.text), self._choice(self.side_b.text)
        if a is None or b is None:
            self.host.show_error("Compare", "choose two doses (compute a plan with the "
                                            "exchange view, or two plans, first)")
            return
        if a == b:
            self.host.show_error("Compare", "A and B are the same dose: choose another B")
            return
        patient = self.session.patient

        sources = [(self._source(c), c) for c in (a, b)]  # read on the main thread

        def work(progress: Any, cancel: Any) -> Any:
            side_a, side_b = (src if c.quantity == EXTERNAL else
                              api.comparison_side(src, label=c.text, quantity=c.quantity)
                              for src, c in sources)
            return api.compare_doses(side_a, side_b, structures=patient, cross_model=False,
                                     progress=progress, cancel=cancel)

        def done(result: Any) -> None:
            # The sides under their names now (a plan may have been renamed meanwhile).
            current = [self._current(c, src) for src, c in sources]
            if self.session.patient is not patient:
                return  # another patient was opened meanwhile
            if None in current:
                self.host.show_error("Compare", f"{a.text} or {b.text} is no longer there: "
                                                "choose the doses again")
                return
            now_a, now_b = current
            assert now_a is not None and now_b is not None
            self.show_result(now_a, now_b, result)

        self.host.run_task("Comparing doses", work, done)

    def show_result(self, a: CompareChoice, b: CompareChoice, result: Any) -> None:
        """Put a comparison result on the views, the DVH overlay and the tables."""
        self.result = result
        self.compared = ((a, self._sources.get(a)), (b, self._sources.get(b)))
        display = DoseDisplay()
        overlays = [overlay_for(self._layer(c), display) for c in (a, b)]
        unit, unit_a, unit_b = result.unit, result.unit_a, result.unit_b
        mixed = result.mixed_units
        if not mixed:
            # One colour scale for both sides, so that one colour is one dose in A and in B
            # (of a physical and an RBE-weighted dose, each keeps its own, in its unit).
            top = max(o.vmax for o in overlays)
            overlays = [dataclasses.replace(o, vmax=top) for o in overlays]
        for state, panel, choice, overlay in zip(self.states[:2], self.panels[:2], (a, b),
                                                 overlays, strict=True):
            state.set_dose(overlay)
            panel.legend.set_overlay(overlay)
            panel.title.text = choice.text
        third, title = self._third_view(result)
        self.states[2].set_dose(third)
        self.panels[2].legend.set_overlay(third)
        self.panels[2].title.text = title
        self._show_focus(result)
        curves: list[DvhCurve] = []
        for s in result.structures:
            curves.append(DvhCurve(s.name, s.colour_rgb, s.dvh_a.dose_gy,
                                   100 * s.dvh_a.volume_fraction, group="A"))
            curves.append(DvhCurve(s.name, s.colour_rgb, s.dvh_b.dose_gy,
                                   100 * s.dvh_b.volume_fraction, dashed=True, group="B"))
        self.dvh.x_label = (f"Dose (A solid: {unit_a}, B dashed: {unit_b})" if mixed
                            else f"Dose ({unit})")
        self.dvh.set_curves(curves)
        warnings = "".join(f"\n[color=ffb040]{escape_markup(w)}[/color]"
                           for w in result.warnings)
        self.summary.text = summary_text(result) + warnings
        self.table.set_rows([f"A {unit_a}", f"B {unit_b}", *(("B / A",) if mixed
                                                            else ("B - A", "B / A"))],
                            comparison_rows(result.structures, mixed=mixed))

    def _third_view(self, result: Any) -> tuple[Any, str]:
        """The third view's overlay and title: B - A, or of a physical and an RBE-weighted
        dose their ratio, the effective RBE (a difference of the two is no dose difference)."""
        if not result.mixed_units:
            diff = difference_overlay(result.difference_gy, result.grid, result.unit,
                                      label="B - A",
                                      threshold=0.01 * result.stats.reference_max_gy,
                                      least_peak=0.01 * result.stats.reference_max_gy)
            return diff, "Difference B - A"
        text = result.rbe_ratio_text
        physical = "A" if text == "B / A" else "B"
        threshold = result.rbe_ratio_stats.threshold_percent
        ratio = ratio_overlay(result.rbe_ratio, result.grid, label=f"effective RBE {text}",
                              scale_name=f"RBE {text.replace(' ', '')}",
                              where=f"where {physical} ≥ {threshold:g}% of its max")
        return ratio, f"Effective RBE {text} (Gy(RBE) / Gy)"

    def _show_focus(self, result: Any) -> None:
        """Move the linked cursor to the comparison's focus (target centre or A's maximum)."""
        patient = self.session.patient
        if patient is None:
            return
        lps = result.grid.voxel_centers_lps([_ravel(result.focus_index, result.grid.shape)])
        ct = patient.ct
        index = np.rint(lps_to_index(lps, ct.spacing_mm, ct.origin_mm)[0]).astype(int)
        ijk = [min(max(int(v), 0), n - 1) for v, n in zip(index, ct.shape, strict=True)]
        self.states[0].set_cursor(*ijk)


#: Metrics of the compare table: coverage for targets, hot spots and mean for the rest.
TARGET_METRICS = (("d95", "D95"), ("mean", "Dmean"), ("d2", "D2"))
ORGAN_METRICS = (("d2", "D2"), ("max", "Dmax"), ("mean", "Dmean"))


def summary_text(result: Any) -> str:
    """The summary's lines (Kivy markup) before the warnings: gamma pass rates and B - A, or
    why gamma was not evaluated and the effective RBE."""
    st = result.stats
    if st is None:
        r = result.rbe_ratio_stats
        text = result.rbe_ratio_text
        physical = "A" if text == "B / A" else "B"
        return (f"γ not evaluated: {escape_markup(result.gamma_skipped_reason)}\n"
                f"Effective RBE {text}: median [b]{r.percentile(50.0):.3f}[/b] (5th-95th "
                f"percentile {r.percentile(5.0):.3f}-{r.percentile(95.0):.3f}), "
                f"dose-weighted mean {r.dose_weighted_mean:.3f} ({r.voxels} voxels where "
                f"{physical} >= {r.threshold_percent:g} % of its max "
                f"{r.physical_max_gy:.2f} Gy)")
    gamma = "   ".join(f"γ {g.criteria.label}: [b]{g.pass_rate_percent:.1f} %[/b]"
                       for g in result.gamma)
    return (f"{gamma}\nB - A: mean {st.mean_gy:+.3f}, SD {st.sd_gy:.3f}, max |d| "
            f"{st.max_abs_gy:.3f} {result.unit} ({st.voxels} voxels >= "
            f"{st.threshold_percent:g} % of A's max {st.reference_max_gy:.2f} "
            f"{result.unit_a})")


def comparison_rows(structures: Any, *, mixed: bool = False) -> list[MetricsRow]:
    """Rows "PTV D95", "Brainstem D2", ... of a comparison's structures: A, B, B - A, B / A;
    of a physical and an RBE-weighted dose (``mixed``) A, B, B / A (no B - A: a difference
    of the two quantities is no dose difference)."""
    rows = []
    for s in structures:
        target = s.interpreted_type.upper() in TARGET_TYPES
        for key, title in TARGET_METRICS if target else ORGAN_METRICS:
            a, b, d = s.metrics_a[key], s.metrics_b[key], s.difference[key]
            ratio = f"{b / a:.3f}" if a and b is not None else "-"
            values = [_fmt(a), _fmt(b), ratio] if mixed else [
                _fmt(a), _fmt(b), _fmt(d, signed=True), ratio]
            rows.append(MetricsRow(f"{s.name} {title}", s.colour_rgb, values))
    return rows


def _ravel(index: tuple[int, int, int], shape: tuple[int, int, int]) -> int:
    z, y, x = index
    return (z * shape[1] + y) * shape[2] + x


def _fmt(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"
