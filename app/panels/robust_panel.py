"""The Robustness view: scenario settings, DVH bands and the scenario table of one plan.

Opened from the Dose tab in a popup. *Evaluate* checks the form (before any work) and hands the
choice to ``on_evaluate``; the screen runs the evaluation in the background (progress and
Cancel on the main window's task bar) and calls :meth:`RobustPanel.show_report` with the result.
The worst-case cubes appear in the Dose tab's quantity chooser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.textinput import TextInput

from app.panels.form_widgets import row_label as _label
from app.panels.form_widgets import wrapped_label
from app.robust_review import (
    SCENARIO_SETS,
    RobustChoice,
    band_axis_label,
    band_curves,
    dose_unit,
    parse_robust_choice,
    scenario_columns,
    scenario_rows,
    structures_of,
    summary_text,
)
from app.theme import BUTTON_HEIGHT, PAD, ROW_HEIGHT
from app.widgets.dvh_plot import DvhPlot
from app.widgets.menu import WideSpinner
from app.widgets.metrics_table import MetricsTable
from planning.errors import InputError


def _field(text: str, width: int) -> TextInput:
    return TextInput(text=text, multiline=False, write_tab=False, size_hint=(None, None),
                     width=width, height=ROW_HEIGHT, padding=(6, 6))


class RobustPanel(BoxLayout):
    """Settings row, summary, structure chooser, DVH bands and scenario table.

    Parameters
    ----------
    plan_name : str
        The plan evaluated (shown in the summary).
    target : str
        The plan's target (the structure shown first).
    prescription_gy_rbe : float
        For the summary's percentages.
    model_name : str
        The plan's model as the Dose tab names it (``"LEM I chordoma, averaged"``), for the
        DVH's dose axis.
    colours : mapping of str to (r, g, b)
        Structure colours (RTSTRUCT, 0-255).
    on_evaluate : callable
        ``on_evaluate(choice)`` with a checked :class:`RobustChoice`.
    on_error : callable
        ``on_error(exception)`` for a bad form.
    on_close : callable
        ``on_close()``: the Close button (the view's popup closed only by Escape or a click
        beside it).
    """

    def __init__(self, *, plan_name: str, target: str, prescription_gy_rbe: float,
                 colours: Mapping[str, tuple[int, int, int]], model_name: str = "",
                 on_evaluate: Callable[[RobustChoice], None],
                 on_error: Callable[[BaseException], None],
                 on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(orientation="vertical", spacing=PAD, padding=PAD, **kwargs)
        self.plan_name = plan_name
        self.target = target
        self.prescription_gy_rbe = prescription_gy_rbe
        self.model_name = model_name
        self.colours = dict(colours)
        self._on_evaluate = on_evaluate
        self._on_error = on_error
        self._report: Mapping[str, Any] = {}
        self.range_error = _field("3.5", 60)
        self.setup_error = _field("3", 60)
        self.directions = WideSpinner(text="6", values=["6", "14"], size_hint=(None, None),
                                  width=60, height=ROW_HEIGHT)
        self.scenario_set = WideSpinner(text=SCENARIO_SETS[0], values=list(SCENARIO_SETS),
                                    size_hint=(None, None), width=150, height=ROW_HEIGHT)
        self.evaluate_button = Button(text="Evaluate", size_hint=(None, None), width=110,
                                      height=BUTTON_HEIGHT)
        settings = BoxLayout(size_hint_y=None, height=BUTTON_HEIGHT, spacing=PAD)
        for w in (_label("Range error %", 105), self.range_error, _label("Setup mm", 72),
                  self.setup_error, _label("Directions", 78), self.directions,
                  _label("Scenarios", 74), self.scenario_set, self.evaluate_button):
            settings.add_widget(w)
        settings.add_widget(Label())
        self.close_button = Button(text="Close", size_hint=(None, None), width=90,
                                   height=BUTTON_HEIGHT)
        self.close_button.name = "robust_close"
        self.close_button.bind(on_release=lambda *_: on_close())
        settings.add_widget(self.close_button)
        self.add_widget(settings)
        self.summary = wrapped_label(f"{plan_name}: not evaluated yet. Range scenarios scale "
                                     "the stopping power by 1 +/- the error (SPR +: ranges "
                                     "shorter); setup scenarios move the beams' isocentres.",
                                     muted=True)
        self.add_widget(self.summary)
        self.structure = WideSpinner(text="", values=[], size_hint=(None, None), width=220,
                                 height=ROW_HEIGHT)
        chooser = BoxLayout(size_hint_y=None, height=ROW_HEIGHT, spacing=PAD)
        chooser.add_widget(_label("Scenario table of", 130))
        chooser.add_widget(self.structure)
        chooser.add_widget(_label("DVH: nominal solid, band edges (lowest and highest dose "
                                  "at each volume over the scenarios) dashed", muted=True))
        self.add_widget(chooser)
        body = BoxLayout(orientation="horizontal", spacing=PAD)
        self.bands = DvhPlot(size_hint_x=0.42,
                             x_label=band_axis_label("Gy(RBE)", model_name))
        self.table = MetricsTable(name_title="Scenario", size_hint_x=0.58)
        body.add_widget(self.bands)
        body.add_widget(self.table)
        self.add_widget(body)
        self.evaluate_button.bind(on_release=lambda *_: self.evaluate())
        self.structure.bind(text=lambda *_: self._show_table())

    def choice(self) -> RobustChoice:
        """The form's scenario set, checked (raises :class:`InputError`)."""
        return parse_robust_choice(self.range_error.text, self.setup_error.text,
                                   self.directions.text, self.scenario_set.text)

    def evaluate(self) -> None:
        try:
            choice = self.choice()
        except InputError as exc:
            self._on_error(exc)
            return
        self._on_evaluate(choice)

    def show_report(self, report: Mapping[str, Any]) -> None:
        """Show a robust evaluation's report (its bands, scenarios and summary); the settings
        row shows the settings it was made with (a restored evaluation's, not the defaults)."""
        self._report = report
        made = report.get("robust", {})
        if "range_error_pct" in made:
            self.range_error.text = f"{float(made['range_error_pct']):g}"
        if "setup_error_mm" in made:
            self.setup_error.text = f"{float(made['setup_error_mm']):g}"
        if str(made.get("setup_directions")) in self.directions.values:
            self.directions.text = str(made["setup_directions"])
        if "combined" in made:
            self.scenario_set.text = SCENARIO_SETS[
                2 if made.get("combined_only") else 1 if made["combined"] else 0]
        self.summary.text = f"{self.plan_name}: " + summary_text(report, self.target,
                                                                  self.prescription_gy_rbe)
        self.summary.color = (1, 1, 1, 1)
        unit = dose_unit(report)
        self.bands.x_label = band_axis_label(unit, self.model_name)
        self.bands.set_curves(band_curves(report, self.colours))
        self.bands.set_prescription(self.prescription_gy_rbe)
        names = list(structures_of(report))
        self.structure.values = names
        self.structure.text = self.target if self.target in names else (names[0] if names
                                                                         else "")
        self._show_table()

    def _show_table(self) -> None:
        name = self.structure.text
        colour = self.colours.get(name, (150, 150, 150))
        self.table.set_rows(scenario_columns(dose_unit(self._report)),
                            scenario_rows(self._report, name, colour) if name else [])
