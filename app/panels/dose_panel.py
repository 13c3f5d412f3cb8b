"""Dose tab: which plan and cube to show, in which unit, wash threshold and opacity, isodoses."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kivy.core.text import Label as CoreLabel
from kivy.metrics import dp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.checkbox import CheckBox
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.textinput import TextInput

from app.dose_display import SCALE_PERCENTILES, DoseDisplay, ordinal, parse_levels
from app.session import QUANTITY_MASK_FRACTION, DoseLayer
from app.theme import BUTTON_HEIGHT, MUTED_TEXT_RGBA, PAD, ROW_HEIGHT
from app.widgets.menu import WideSpinner
from app.widgets.viewer_panel import SliceSlider
from planning.errors import InputError
from planning.isodose import STANDARD_ISODOSE_PERCENT

UNITS = ("Absolute", "% of reference")
#: The note under the reference for a dose.
DOSE_HINT = ("Levels, threshold and % are of the reference: the prescription for "
             "RBE-weighted doses, the cube's maximum otherwise.")
#: ... and for a quantity shown where there is dose (LETd, RBE, the model ratio).
QUANTITY_HINT = (f"Not a dose: no isodose lines or threshold. Shown where the dose (for the "
                 f"ratio, the mMKM dose) reaches {100 * QUANTITY_MASK_FRACTION:g} % Rx; colours "
                 f"span its {ordinal(SCALE_PERCENTILES[0])}-{ordinal(SCALE_PERCENTILES[1])} "
                 "percentile there, arrows on the bar mark values beyond.")
#: Room right of the warnings for their scroll bar, px.
_NOTES_BAR_GUTTER = dp(10)


def _label(text: str, width: int = 120) -> Label:
    lab = Label(text=text, size_hint_x=None, width=width, halign="left", valign="middle")
    lab.bind(size=lambda w, s: setattr(w, "text_size", s))
    return lab


def _row(*widgets: object, height: int = ROW_HEIGHT) -> BoxLayout:
    row = BoxLayout(size_hint_y=None, height=height, spacing=PAD)
    for w in widgets:
        row.add_widget(w)  # type: ignore[arg-type]
    return row


class DosePanel(BoxLayout):
    """Display choices for the dose on the views; tells ``on_change`` after every edit.

    Parameters
    ----------
    on_change : callable
        ``on_change()``; read :attr:`plan_name`, :attr:`layer_key` and :meth:`display`.
    on_error : callable
        ``on_error(exception)`` for a bad isodose list.
    on_rename : callable
        ``on_rename(plan_name)``: the user asked to rename the selected plan.
    on_robustness : callable
        ``on_robustness()``: open the Robustness view of the selected plan.
    on_beam_view : callable
        ``on_beam_view()`` when the user asks for the beam's-eye view.
    """

    def __init__(self, *, on_change: Callable[[], None],
                 on_error: Callable[[BaseException], None],
                 on_rename: Callable[[str], None],
                 on_robustness: Callable[[], None],
                 on_beam_view: Callable[[], None]) -> None:
        super().__init__(orientation="vertical", spacing=4, padding=PAD)
        self._on_change = on_change
        self._on_error = on_error
        self._layers: list[DoseLayer] = []
        self._levels = STANDARD_ISODOSE_PERCENT
        self.plan = WideSpinner(text="(no plan yet)", values=[], size_hint_y=None,
                            height=ROW_HEIGHT)
        self.quantity = WideSpinner(text="", values=[], size_hint_y=None, height=ROW_HEIGHT,
                                font_size="13sp", shorten=True)
        self.unit = WideSpinner(text=UNITS[0], values=list(UNITS), size_hint_y=None,
                            height=ROW_HEIGHT)
        self.wash = CheckBox(active=True, size_hint_x=None, width=30)
        self.isodoses = CheckBox(active=True, size_hint_x=None, width=30)
        # Plain-rectangle sliders: Kivy's Slider redraws a full-window buffer every frame.
        self.threshold = SliceSlider(min=0, max=100, value=10)
        self.threshold_text = _label("10 %", 56)
        self.opacity_slider = SliceSlider(min=0, max=100, value=45)
        self.opacity_text = _label("45 %", 56)
        self.levels = TextInput(text=", ".join(f"{v:g}" for v in STANDARD_ISODOSE_PERCENT),
                                multiline=False, size_hint_y=None, height=ROW_HEIGHT)
        self.rename_button = Button(text="Rename...", size_hint_x=None, width=90,
                                    disabled=True)
        self.rename_button.bind(on_release=lambda *_: on_rename(self.plan_name))
        self.add_widget(_row(_label("Plan", 60), self.plan, self.rename_button))
        self.add_widget(_row(_label("Quantity"), self.quantity))
        self.add_widget(_row(_label("Unit"), self.unit))
        self.add_widget(_row(self.wash, _label("Colour wash", 110), self.isodoses,
                             _label("Isodose lines", 110)))
        self.add_widget(_row(_label("Threshold"), self.threshold, self.threshold_text))
        self.add_widget(_row(_label("Opacity"), self.opacity_slider, self.opacity_text))
        self.add_widget(_row(_label("Isodoses (%)"), self.levels))
        # What 100 % is, on as many lines as it takes ("100 % = 2.721 (maximum where the mMKM
        # dose ≥ 10 % Rx)").
        self.reference = Label(text="", size_hint_y=None, height=22, halign="left",
                               valign="middle", font_size="13sp")
        self.reference.bind(width=lambda w, width: setattr(w, "text_size", (width, None)),
                            texture_size=lambda w, size: setattr(w, "height",
                                                                 max(22, size[1])))
        self.add_widget(self.reference)
        # As high as the longer of its two texts: the buttons below stay where they are when
        # the quantity changes.
        self.hint = Label(text=DOSE_HINT, color=MUTED_TEXT_RGBA, font_size="12sp",
                          size_hint_y=None, height=36, halign="left", valign="top")
        self.hint.bind(width=lambda *_: self._fit_hint())
        self.add_widget(self.hint)
        self.robustness_button = Button(text="Robustness...", size_hint_y=None,
                                        height=BUTTON_HEIGHT)
        self.robustness_button.bind(on_release=lambda *_: on_robustness())
        self.add_widget(self.robustness_button)
        self.beam_view_button = Button(text="Beam's-eye view...", size_hint_y=None,
                                       height=ROW_HEIGHT)
        self.beam_view_button.bind(on_release=lambda *_: on_beam_view())
        self.add_widget(self.beam_view_button)
        # The plan's warnings (e.g. a dose grid too coarse to resolve it), in plain sight: in
        # the room left below the controls (which stay where they are), scrolling when they
        # need more (a small window), never drawn over the tabs above.
        self.notes = Label(text="", size_hint=(None, None), height=0, halign="left",
                           valign="top", font_size="12sp", color=(1.0, 0.7, 0.25, 1.0))
        self.notes.bind(width=lambda w, width: setattr(w, "text_size", (width, None)),
                        texture_size=lambda w, size: setattr(w, "height", size[1]))
        self.notes_scroll = ScrollView(do_scroll_x=False, bar_width=dp(6),
                                       scroll_type=["bars", "content"])
        self.notes_scroll.add_widget(self.notes)
        # The text keeps clear of the scroll bar.
        self.notes_scroll.bind(width=lambda _w, width: setattr(
            self.notes, "width", max(width - _NOTES_BAR_GUTTER, 1.0)))
        self.add_widget(self.notes_scroll)
        self.plan.bind(text=lambda *_: self._changed())
        self.quantity.bind(text=lambda *_: self._quantity_changed())
        self.unit.bind(text=lambda *_: self._changed())
        self.wash.bind(active=lambda *_: self._changed())
        self.isodoses.bind(active=lambda *_: self._changed())
        self.threshold.bind(value=lambda *_: self._slider_changed())
        self.opacity_slider.bind(value=lambda *_: self._slider_changed())
        self.levels.bind(on_text_validate=lambda *_: self._levels_changed(),
                         focus=lambda _w, focused: None if focused else self._levels_changed())

    # --- filling ---------------------------------------------------------------------------
    def set_plans(self, names: Sequence[str], select: str | None = None) -> None:
        self.plan.values = list(names)
        if select is not None:
            self.plan.text = select
        elif not names:
            self.plan.text = "(no plan yet)"
        self.rename_button.disabled = not names

    def set_layers(self, layers: Sequence[DoseLayer]) -> None:
        """Offer the cubes of the selected plan; keep the current choice when it still exists."""
        self._layers = list(layers)
        labels = [layer.label for layer in layers]
        current = self.quantity.text
        self.quantity.values = labels
        if current not in labels:
            self.quantity.text = labels[0] if labels else ""
        self._show_controls()

    def show_no_plan(self) -> None:
        """No plan shown (a patient without plans): no quantity, reference or warnings of the
        last plan; the controls as for a dose."""
        self.set_layers([])
        self.reference.text = ""
        self.set_notes([])

    def set_notes(self, warnings: Sequence[str]) -> None:
        """Show the shown plan's warnings (none: the note takes no room), from the first."""
        self.notes.text = "\n".join(f"Warning: {w}" for w in warnings)
        self.notes_scroll.scroll_y = 1.0

    # --- reading ---------------------------------------------------------------------------
    @property
    def plan_name(self) -> str:
        return self.plan.text if self.plan.text in self.plan.values else ""

    @property
    def layer_key(self) -> str:
        for layer in self._layers:
            if layer.label == self.quantity.text:
                return layer.key
        return ""

    def select_layer(self, key: str) -> None:
        for layer in self._layers:
            if layer.key == key:
                self.quantity.text = layer.label
                return
        raise KeyError(f"no cube {key!r} in the selected plan")

    def display(self) -> DoseDisplay:
        return DoseDisplay(percent=self.unit.text == UNITS[1], wash=bool(self.wash.active),
                           isodoses=bool(self.isodoses.active),
                           threshold_percent=float(self.threshold.value),
                           opacity=float(self.opacity_slider.value) / 100.0,
                           isodose_percent=self._levels)

    def display_settings(self) -> dict[str, Any]:
        """The choices as the workspace keeps them (JSON-serialisable)."""
        return {"plan": self.plan_name, "quantity": self.layer_key, "unit": self.unit.text,
                "wash": bool(self.wash.active), "isodoses": bool(self.isodoses.active),
                "threshold_percent": float(self.threshold.value),
                "opacity_percent": float(self.opacity_slider.value),
                "isodose_percent": list(self._levels)}

    def apply_display_settings(self, values: Mapping[str, Any]) -> None:
        """Restore :meth:`display_settings`; entries of the wrong type, a plan or quantity
        that no longer exists, or isodose levels that do not parse are left as they are."""
        if values.get("plan") in self.plan.values:
            self.plan.text = values["plan"]
        if values.get("unit") in UNITS:
            self.unit.text = values["unit"]
        for key, box in (("wash", self.wash), ("isodoses", self.isodoses)):
            if isinstance(values.get(key), bool):
                box.active = values[key]
        for key, slider in (("threshold_percent", self.threshold),
                            ("opacity_percent", self.opacity_slider)):
            value = values.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                slider.value = min(max(float(value), slider.min), slider.max)
        levels = values.get("isodose_percent")
        if isinstance(levels, list):
            try:
                parsed = parse_levels(", ".join(f"{float(v):g}" for v in levels))
            except (InputError, TypeError, ValueError):
                parsed = None
            if parsed is not None:
                self._levels = parsed
                self.levels.text = ", ".join(f"{v:g}" for v in parsed)
                self._changed()
        if isinstance(values.get("quantity"), str):
            try:
                self.select_layer(values["quantity"])
            except KeyError:
                pass

    def _slider_changed(self) -> None:
        self.threshold_text.text = f"{self.threshold.value:.0f} %"
        self.opacity_text.text = f"{self.opacity_slider.value:.0f} %"
        self._changed()

    def _levels_changed(self) -> None:
        try:
            levels = parse_levels(self.levels.text)
        except InputError as exc:
            self._on_error(exc)
            return
        if levels != self._levels:
            self._levels = levels
            self._changed()

    def _quantity_changed(self) -> None:
        self._show_controls()
        self._changed()

    def _show_controls(self) -> None:
        """Isodose lines and the wash threshold for a dose; for a quantity shown where there
        is dose (LETd, RBE, ratio), neither (greyed), and the note says how it is shown."""
        layer = next((x for x in self._layers if x.label == self.quantity.text), None)
        quantity = layer is not None and not layer.is_dose
        for widget in (self.isodoses, self.levels, self.threshold):
            widget.disabled = quantity
        self.hint.text = QUANTITY_HINT if quantity else DOSE_HINT

    def _fit_hint(self) -> None:
        width = max(self.hint.width, 1.0)
        heights = []
        for text in (DOSE_HINT, QUANTITY_HINT):
            core = CoreLabel(text=text, font_size=self.hint.font_size, text_size=(width, None))
            core.refresh()
            heights.append(core.texture.size[1])
        self.hint.height = max(36, *heights)
        self.hint.text_size = (width, self.hint.height)  # its text at the top

    def _changed(self) -> None:
        self._on_change()
