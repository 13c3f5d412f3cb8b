"""Plan tab: target, prescription, beams, RBE model, spots, grid, device, objectives, the
plan's estimate, Compute."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.checkbox import CheckBox
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.textinput import TextInput

from app.model_note import (
    PrescriptionBasis,
    confirmed_note,
    kept_prescription_note,
    unconfirmed_prescription_error,
    unit_changes,
)
from app.panels.form_widgets import note_label, wrapped_label
from app.panels.form_widgets import row_label as _label
from app.plan_setup import (
    CUSTOM_TISSUE,
    DEVICES,
    OBJECTIVE_KIND_LABELS,
    RBE_MODELS,
    TISSUE_CHOICES,
    BeamSetup,
    PlanSetup,
    default_rings_note,
    model_dose_unit,
    names_a_structure,
    objective_kind_key,
    objective_kind_label,
    parse_beam,
    parse_objective,
    parse_plan_setup,
    parse_prescription,
)
from app.theme import (
    BUTTON_HEIGHT,
    MUTED_TEXT_RGBA,
    PAD,
    ROW_HEIGHT,
    UNCONFIRMED_FIELD_RGBA,
    WARNING_TEXT_RGBA,
)
from app.widgets.menu import WideSpinner
from planning.errors import InputError
from planning.optimization import OBJECTIVE_KINDS, Objective
from planning.patient import TARGET_TYPES
from planning.rbe.lem import DEFAULT_RAPID_SCHEME, RAPID_SCHEMES

DEFAULT_BEAMS = (BeamSetup(90.0), BeamSetup(270.0))


def _field(text: str = "", width: int | None = None, **kwargs: object) -> TextInput:
    ti = TextInput(text=text, multiline=False, write_tab=False, size_hint_y=None,
                   height=ROW_HEIGHT, padding=(6, 6), **kwargs)
    if width is not None:
        ti.size_hint_x = None
        ti.width = width
    return ti


def _section(text: str) -> Label:
    lab = Label(text=f"[b]{text}[/b]", markup=True, size_hint_y=None, height=26,
                halign="left", valign="bottom")
    lab.bind(size=lambda w, s: setattr(w, "text_size", s))
    return lab


class BeamRow(BoxLayout):
    """Gantry and couch angle of one beam, and a remove button."""

    def __init__(self, beam: BeamSetup, on_change: Callable[[], None],
                 on_remove: Callable[[BeamRow], None]) -> None:
        super().__init__(size_hint_y=None, height=ROW_HEIGHT, spacing=PAD)
        self.gantry = _field(f"{beam.gantry_deg:g}", input_filter="float")
        self.couch = _field(f"{beam.couch_deg:g}", input_filter="float")
        remove = Button(text="x", size_hint_x=None, width=34)
        remove.bind(on_release=lambda *_: on_remove(self))
        for ti in (self.gantry, self.couch):
            ti.bind(text=lambda *_: on_change())
        self.add_widget(_label("gantry", 52, muted=True))
        self.add_widget(self.gantry)
        self.add_widget(_label("couch", 48, muted=True))
        self.add_widget(self.couch)
        self.add_widget(remove)


#: Shares of an objective row's width (structure, type, dose, weight, DVH volume) and the
#: remove button's width, px: the header's columns are the same. The dose (the number being
#: edited: "59.04") gets the room of five digits, the type the room of its names
#: (:data:`OBJECTIVE_KIND_LABELS`), the structure the rest ("PTV ring 15-30 mm").
OBJECTIVE_COLUMNS = (0.36, 0.26, 0.16, 0.12, 0.10)
REMOVE_WIDTH = 28


class ObjectiveRow(BoxLayout):
    """Structure, type, dose, weight and DVH volume of one objective; below them, once a plan
    was computed with it, how far that plan is from it (:meth:`show_result`). The type is
    shown by its form name (:data:`OBJECTIVE_KIND_LABELS`); :attr:`kind_key` is its key.
    """

    def __init__(self, structures: Sequence[str], objective: Objective,
                 on_remove: Callable[[ObjectiveRow], None]) -> None:
        super().__init__(orientation="vertical", size_hint_y=None, height=ROW_HEIGHT)
        fields = BoxLayout(size_hint_y=None, height=ROW_HEIGHT, spacing=3)
        # Two lines, wrapped further to the row's width (a long plan name), as high as its lines.
        self.result = Label(text="", size_hint_y=None, height=0, font_size="11sp",
                            halign="right", valign="top", color=MUTED_TEXT_RGBA)
        self.result.bind(width=lambda w, width: setattr(w, "text_size", (width, None)),
                         texture_size=lambda *_: self._fit_result())
        shares = iter(OBJECTIVE_COLUMNS)
        self.structure = WideSpinner(text=objective.structure, values=list(structures),
                                     size_hint_x=next(shares), font_size="12sp", shorten=True)
        self.kind = WideSpinner(text=objective_kind_label(objective.kind),
                                values=list(OBJECTIVE_KIND_LABELS.values()),
                                size_hint_x=next(shares), font_size="12sp", shorten=True)
        self.dose = _field(f"{objective.dose_gy_rbe:.4g}", input_filter="float",
                           font_size="12sp")
        self.weight = _field(f"{objective.weight:g}", input_filter="float", font_size="12sp")
        vf = objective.volume_fraction
        self.volume = _field("" if vf is None else f"{100 * vf:g}", input_filter="float",
                             font_size="12sp", hint_text="%")
        for ti in (self.dose, self.weight, self.volume):
            ti.size_hint_x = next(shares)
            ti.padding = (4, 6)
        remove = Button(text="x", size_hint_x=None, width=REMOVE_WIDTH)
        remove.bind(on_release=lambda *_: on_remove(self))
        for w in (self.structure, self.kind, self.dose, self.weight, self.volume, remove):
            fields.add_widget(w)
        self.add_widget(fields)
        self.add_widget(self.result)

    def show_result(self, text: str) -> None:
        """Muted lines under the fields, wrapped to their width (``""``: none, and no room
        taken)."""
        self.result.text = text
        self.result.texture_update()
        self._fit_result()

    def _fit_result(self) -> None:
        self.result.height = self.result.texture_size[1] if self.result.text else 0
        self.height = ROW_HEIGHT + self.result.height

    @property
    def kind_key(self) -> str:
        """The objective type chosen (a :data:`planning.optimization.OBJECTIVE_KINDS` key)."""
        return objective_kind_key(self.kind.text)

    def objective(self, index: int, unit: str = "Gy(RBE)") -> Objective:
        """The row's objective, checked; ``unit``: the chosen model's dose unit, for
        messages."""
        return parse_objective(self.structure.text, self.kind_key, self.dose.text,
                               self.weight.text, self.volume.text, index, unit)


class PlanPanel(BoxLayout):
    """The plan-setup form (scrolling) with the Compute button always in view.

    Parameters
    ----------
    on_compute : callable
        ``on_compute(setup)`` with a checked :class:`PlanSetup`.
    on_reoptimize : callable
        ``on_reoptimize(setup)``: optimize the plan on screen again with the form's prescription
        and objectives, from its kept influence.
    on_error : callable
        ``on_error(exception)`` for a bad field.
    on_beams_changed : callable
        ``on_beams_changed(beams)`` whenever a beam is added, removed or edited (valid rows only),
        so the views can draw them.
    default_objectives : callable
        ``default_objectives(target, total_dose_gy_rbe) -> list[Objective]``.
    gpu_available : bool
        Whether the GPU choice is offered.
    """

    def __init__(self, *, on_compute: Callable[[PlanSetup], None],
                 on_reoptimize: Callable[[PlanSetup], None],
                 on_error: Callable[[BaseException], None],
                 on_beams_changed: Callable[[list[BeamSetup]], None],
                 default_objectives: Callable[[str, float], list[Objective]],
                 gpu_available: bool) -> None:
        super().__init__(orientation="vertical", spacing=PAD)
        self.scroll = ScrollView(do_scroll_x=False)
        self._on_compute = on_compute
        self._on_reoptimize = on_reoptimize
        self._on_error = on_error
        self._on_beams_changed = on_beams_changed
        self._default_objectives = default_objectives
        self._structures: list[str] = []
        form = BoxLayout(orientation="vertical", size_hint_y=None, spacing=4, padding=PAD)
        form.bind(minimum_height=form.setter("height"))
        self.form = form
        self.scroll.add_widget(form)
        self.add_widget(self.scroll)

        form.add_widget(_section("Target and prescription"))
        self.target = WideSpinner(text="", values=[], size_hint_y=None, height=ROW_HEIGHT)
        self.target.bind(text=lambda *_: self._target_changed())
        self._target_name = ""
        self._objectives_rx_gy: float | None = None  # prescription the rows were written for
        form.add_widget(self.target)
        row = BoxLayout(size_hint_y=None, height=ROW_HEIGHT, spacing=PAD)
        self.dose = _field("57.6", input_filter="float")
        self.fractions = _field("16", input_filter="int")
        # As wide as its text ("= 3.60 Gy(RBE)/fx" wrapped onto two lines): the fields give way.
        self.per_fraction = Label(text="", size_hint=(None, None), height=ROW_HEIGHT,
                                  color=MUTED_TEXT_RGBA)
        self.per_fraction.bind(texture_size=lambda w, ts: setattr(w, "width", ts[0]))
        for ti in (self.dose, self.fractions):
            ti.bind(text=lambda *_: self._show_per_fraction())
        # Enter keeps (confirms) the number as it is; leaving the field confirms a typed one.
        self.dose.bind(on_text_validate=lambda *_: self._prescription_changed(confirm=True),
                       focus=lambda _w, on: None if on else self._prescription_changed(),
                       text=lambda *_: setattr(self, "_rx_typed", True))
        self.dose_unit = _label("Gy(RBE)", 58)  # "Gy" under the physical model
        for w in (self.dose_unit, self.dose, _label("fx", 22), self.fractions,
                  self.per_fraction):
            row.add_widget(w)
        form.add_widget(row)

        form.add_widget(_section("Beams"))
        self.beam_rows = BoxLayout(orientation="vertical", size_hint_y=None, spacing=3)
        self.beam_rows.bind(minimum_height=self.beam_rows.setter("height"))
        form.add_widget(self.beam_rows)
        self.add_beam_button = Button(text="Add beam", size_hint_y=None, height=ROW_HEIGHT)
        self.add_beam_button.bind(on_release=lambda *_: self.add_beam(BeamSetup(0.0)))
        form.add_widget(self.add_beam_button)

        form.add_widget(_section("Radiobiology"))
        self.rbe = WideSpinner(text=RBE_MODELS[0][0], values=[m[0] for m in RBE_MODELS],
                           size_hint_y=None, height=ROW_HEIGHT)
        self.rbe.bind(text=lambda *_: self._show_model_fields())
        form.add_widget(self.rbe)
        self._model_key = dict(RBE_MODELS)[self.rbe.text]
        self._rx_typed = False  # the field edited since then
        self.model_note = Label(text="", size_hint_y=None, height=0, halign="left",
                                valign="top", font_size="12sp", color=WARNING_TEXT_RGBA)
        self.model_note.bind(width=lambda w, width: setattr(w, "text_size", (width, None)),
                             texture_size=lambda w, ts: setattr(w, "height", ts[1]))
        form.add_widget(self.model_note)
        grid = GridLayout(cols=2, size_hint_y=None, height=4 * ROW_HEIGHT + 12, spacing=4)
        self.rapid_scheme = WideSpinner(text=DEFAULT_RAPID_SCHEME, values=list(RAPID_SCHEMES),
                                        size_hint_y=None, height=ROW_HEIGHT)
        self._note_rx = ""  # the prescription text the model note speaks of
        self.rapid_scheme.bind(text=lambda *_: self._show_kept_note())
        self.tissue = WideSpinner(text=TISSUE_CHOICES[0], values=list(TISSUE_CHOICES),
                                  size_hint_y=None, height=ROW_HEIGHT)
        self.tissue.bind(text=lambda *_: self._show_model_fields())
        # alpha_x (1/Gy), beta_x (1/Gy^2), D_t (Gy) of the "custom" tissue
        self.tissue_custom = [_field(default, input_filter="float", hint_text=hint)
                              for default, hint in (("0.1", "1/Gy"), ("0.05", "1/Gy2"),
                                                    ("30", "Gy"))]
        for ti in self.tissue_custom:  # a custom value is a change of tissue once left
            ti.bind(on_text_validate=lambda *_: self._show_kept_note(),
                    focus=lambda _w, on: None if on else self._show_kept_note())
        custom = BoxLayout(size_hint_y=None, height=ROW_HEIGHT, spacing=3)
        for ti, name in zip(self.tissue_custom, ("ax", "bx", "Dt"), strict=True):
            custom.add_widget(_label(name, 22, muted=True))
            custom.add_widget(ti)
        self.rbe_value = _field("", input_filter="float", hint_text="e.g. 3.0")
        self.rbe_value.bind(on_text_validate=lambda *_: self._show_kept_note(),
                            focus=lambda _w, on: None if on else self._show_kept_note())
        # What the prescription's number was typed or confirmed under: a note says what
        # differs now; across a change between Gy(RBE) and Gy the number waits for the user
        # (:attr:`prescription_unconfirmed`). And what the note was last made for.
        self._rx_basis = self._basis_now()
        self._noted_basis = self._rx_basis
        grid.add_widget(_label("LEM I tissue", 130))
        grid.add_widget(self.tissue)
        grid.add_widget(_label("Custom tissue", 130, muted=True))
        grid.add_widget(custom)
        grid.add_widget(_label("LEM I rapid scheme", 130))
        grid.add_widget(self.rapid_scheme)
        grid.add_widget(_label("Constant RBE", 130))
        grid.add_widget(self.rbe_value)
        form.add_widget(grid)

        form.add_widget(_section("Spots, grid and device"))
        grid = GridLayout(cols=2, size_hint_y=None, height=3 * ROW_HEIGHT + 8, spacing=4)
        self.spot_spacing = _field("3", input_filter="float")
        self.grid_mm = _field("2.5", input_filter="float")
        devices = [d[0] for d in DEVICES if d[1] != "gpu" or gpu_available]
        self.device = WideSpinner(text="Auto", values=devices, size_hint_y=None, height=ROW_HEIGHT)
        for text, w in (("Spot spacing (mm)", self.spot_spacing),
                        ("Dose grid (mm)", self.grid_mm), ("Device", self.device)):
            grid.add_widget(_label(text, 130))
            grid.add_widget(w)
        form.add_widget(grid)
        exchange_row = BoxLayout(size_hint_y=None, height=ROW_HEIGHT)
        self.exchange = CheckBox(active=True, size_hint_x=None, width=30)
        self.exchange.bind(active=lambda *_: self._show_model_fields())
        exchange_row.add_widget(self.exchange)
        # Two lines in a narrow panel (1024 px windows): the row grows with them.
        self.exchange_label = wrapped_label("Also evaluate under mMKM and LEM I (exchange)")
        self.exchange_label.bind(height=exchange_row.setter("height"))
        exchange_row.add_widget(self.exchange_label)
        form.add_widget(exchange_row)

        self.objectives_heading = _section("Objectives (whole-plan dose)")
        form.add_widget(self.objectives_heading)
        # What the default rings' maxima are for, while the rows have rings (a hint line
        # above them: a far ring at 105 % next to a nearer one at 80 % read as a mistake).
        self.ring_note = Label(text="", size_hint_y=None, height=0, halign="left",
                               valign="top", font_size="11sp", color=MUTED_TEXT_RGBA)
        self.ring_note.bind(width=lambda w, width: setattr(w, "text_size", (width, None)),
                            texture_size=lambda w, ts: setattr(w, "height",
                                                               ts[1] if w.text else 0))
        form.add_widget(self.ring_note)
        header = BoxLayout(size_hint_y=None, height=20, spacing=3)
        for text, hint in zip(("structure", "type", "Gy(RBE)", "weight", "vol %"),
                              OBJECTIVE_COLUMNS, strict=True):
            lab = Label(text=text, font_size="11sp", color=MUTED_TEXT_RGBA, size_hint_x=hint)
            header.add_widget(lab)
            if text == "Gy(RBE)":
                self.objective_unit = lab  # "Gy" under the physical model
        header.add_widget(Label(size_hint_x=None, width=REMOVE_WIDTH))
        form.add_widget(header)
        self.objective_header = header
        self.objective_rows = BoxLayout(orientation="vertical", size_hint_y=None, spacing=3)
        self.objective_rows.bind(minimum_height=self.objective_rows.setter("height"))
        form.add_widget(self.objective_rows)
        row = BoxLayout(size_hint_y=None, height=ROW_HEIGHT, spacing=PAD)
        add = Button(text="Add objective")
        add.bind(on_release=lambda *_: self.add_objective(
            Objective(self._structures[0] if self._structures else "", "max_dose", 1.0)))
        defaults = Button(text="Default objectives")
        defaults.bind(on_release=lambda *_: self.reset_objectives())
        row.add_widget(add)
        row.add_widget(defaults)
        form.add_widget(row)

        # The last Compute's pre-flight estimate (work, memory, time), above the buttons so
        # that it stays in sight while the plan runs; it names the grid and spots it is of.
        self.estimate_note = note_label()
        self.add_widget(self.estimate_note)
        # Why Re-optimize is greyed, while it is (the plan it would start from keeps no
        # influence).
        self.reoptimize_note = note_label()
        self.add_widget(self.reoptimize_note)
        buttons = BoxLayout(size_hint_y=None, height=BUTTON_HEIGHT + 8, spacing=PAD)
        self.compute_button = Button(text="Compute plan", bold=True,
                                     background_color=(0.35, 0.75, 1.0, 1.0))
        self.compute_button.bind(on_release=lambda *_: self.compute())
        # Same prescription form and objectives, the latest plan's beams, spots and grid: the
        # kept influence is reused, so it takes a fraction of a new plan's time.
        self.reoptimize_button = Button(text="Re-optimize", size_hint_x=0.6, disabled=True)
        self.reoptimize_button.bind(on_release=lambda *_: self.reoptimize())
        buttons.add_widget(self.compute_button)
        buttons.add_widget(self.reoptimize_button)
        self.add_widget(buttons)
        for beam in DEFAULT_BEAMS:
            self.add_beam(beam, notify=False)
        self._show_model_fields()
        self._show_per_fraction()

    # --- filling -----------------------------------------------------------------------------
    def set_structures(self, names: Sequence[str], types: Sequence[str]) -> None:
        """Offer the patient's structures; pick the first PTV/CTV/GTV as target."""
        self._structures = list(names)
        self.target.values = list(names)
        target = ""
        for wanted in TARGET_TYPES:
            target = next((n for n, t in zip(names, types, strict=True)
                           if t.upper() == wanted), "")
            if target:
                break
        self.target.text = target or (names[0] if names else "")
        self.reset_objectives()

    def reset_objectives(self) -> None:
        """Replace the objective rows by the defaults for the target and prescription
        (nothing changes while the prescription field holds no number)."""
        try:
            dose = float(self.dose.text)
        except ValueError:
            return
        self.objective_rows.clear_widgets()
        self._show_ring_note()
        self._target_name = self.target.text
        self._objectives_rx_gy = dose
        if not self.target.text:
            return
        for objective in self._default_objectives(self.target.text, dose):
            self.add_objective(objective)

    def _target_changed(self) -> None:
        """The objectives of the previous target now belong to the new one; the others stay."""
        old, new = self._target_name, self.target.text
        rows = self.objective_row_list
        if not rows or not old:
            self.reset_objectives()
            return
        for row in rows:
            if row.structure.text == old:
                row.structure.text = new
        self._target_name = new

    def _prescription_changed(self, confirm: bool = False) -> None:
        """Objective doses follow the prescription: all are scaled by new / old. A model note
        about the kept prescription goes once the prescription is changed. A valid number
        typed, or kept with Enter (``confirm``), is the prescription under the model chosen."""
        if self.model_note.text and self.dose.text.strip() != self._note_rx:
            self._show_note("")
        try:  # a prescription Compute would refuse (5000) rescales nothing
            dose = parse_prescription(self.dose.text)
        except InputError:
            return
        if confirm or self._rx_typed:
            self._confirm_prescription()
        old = self._objectives_rx_gy
        if old is None or dose == old:
            return
        for row in self.objective_row_list:
            try:
                row.dose.text = f"{float(row.dose.text) * dose / old:.6g}"
            except ValueError:
                continue  # a row the user is still typing in: its check comes at Compute
        self._objectives_rx_gy = dose

    def show_objective_results(self, plan_name: str, entries: Sequence[Mapping[str, Any]],
                               unit: str) -> None:
        """Under each objective row, how far plan ``plan_name`` is from it: the RMS deviation
        of its dose over the objective's points (the optimizer's sample points in the
        structure, :func:`planning.planner.term_entry`, not the DVH's voxels: the line says
        so) and the objective's share of the objective value (report.json's ``objectives``,
        matched by structure and type in order); rows the plan had no such objective for show
        nothing."""
        left = [e for e in entries if "share_percent" in e]
        for row in self.objective_row_list:
            match = next((e for e in left if e["structure"] == row.structure.text
                          and e["type"] == row.kind_key), None)
            if match is None:
                row.show_result("")
                continue
            left.remove(match)
            rms = match.get("rms_deviation_gy_rbe")
            rms_text = "-" if rms is None else f"{rms:.2f} {unit}"
            row.show_result(f"{plan_name}: RMS deviation at the optimizer's points "
                            f"{rms_text},\n{match['share_percent']:.0f} % of the objective "
                            "value")

    def offer_reoptimize(self, refusal: str | None) -> None:
        """Re-optimize enabled when ``refusal`` is None, else greyed with ``refusal`` (why it
        cannot: a plan that keeps no influence; ``""``: no plan, no line) above the
        buttons."""
        self.reoptimize_button.disabled = refusal is not None
        self.reoptimize_note.text = refusal or ""
        self.reoptimize_note.texture_update()
        self.reoptimize_note.height = (self.reoptimize_note.texture_size[1]
                                       if refusal else 0)

    def show_estimate(self, text: str, *, large: bool) -> None:
        """Show a plan's pre-flight estimate above the buttons; ``large`` (long, or over the
        memory) in the note colour."""
        self.estimate_note.text = text
        self.estimate_note.color = WARNING_TEXT_RGBA if large else MUTED_TEXT_RGBA

    def add_objective(self, objective: Objective) -> ObjectiveRow:
        row = ObjectiveRow(self._structures, objective, self._remove_objective)
        row.structure.bind(text=lambda *_: self._show_ring_note())
        self.objective_rows.add_widget(row, index=0)
        self._show_ring_note()
        self._show_confirmation()
        return row

    def _remove_objective(self, row: ObjectiveRow) -> None:
        self.objective_rows.remove_widget(row)
        self._show_ring_note()

    def _show_ring_note(self) -> None:
        """The ring hint for the rows now, as high as its wrapped lines (none: no room). Its
        height is set here, not only when its texture size changes: the same text again
        ("Default objectives" over default rows) changes no texture size."""
        note = self.ring_note
        note.text = default_rings_note([r.structure.text for r in self.objective_row_list])
        note.texture_update()
        note.height = note.texture_size[1] if note.text else 0

    def add_beam(self, beam: BeamSetup, *, notify: bool = True) -> BeamRow:
        row = BeamRow(beam, self._beams_changed, self._remove_beam)
        self.beam_rows.add_widget(row, index=0)
        if notify:
            self._beams_changed()
        return row

    def _remove_beam(self, row: BeamRow) -> None:
        self.beam_rows.remove_widget(row)
        self._beams_changed()

    # --- reading -----------------------------------------------------------------------------
    @property
    def beam_row_list(self) -> list[BeamRow]:
        return list(reversed([c for c in self.beam_rows.children if isinstance(c, BeamRow)]))

    @property
    def objective_row_list(self) -> list[ObjectiveRow]:
        return list(reversed([c for c in self.objective_rows.children
                              if isinstance(c, ObjectiveRow)]))

    def beams(self) -> list[BeamSetup]:
        return [parse_beam(r.gantry.text, r.couch.text, i)
                for i, r in enumerate(self.beam_row_list)]

    def setup(self) -> PlanSetup:
        """The checked form; raises InputError naming the first bad field. The prescription
        is checked first; a valid one typed but not yet left rescales the objectives before
        they are read (Kivy fires a button before the field loses its focus), so a refused
        one is reported as itself, not as the objectives it would have scaled."""
        unit = model_dose_unit(self._model_key)
        parse_prescription(self.dose.text, unit)
        self._prescription_changed()
        if self.prescription_unconfirmed:
            raise InputError(unconfirmed_prescription_error(self._rx_model, self._model_key,
                                                            self.dose.text))
        return parse_plan_setup(
            target=self.target.text, dose_text=self.dose.text,
            fractions_text=self.fractions.text, beams=self.beams(), rbe_label=self.rbe.text,
            rbe_value_text=self.rbe_value.text, tissue_choice=self.tissue.text,
            tissue_custom_texts=[ti.text for ti in self.tissue_custom],
            rapid_scheme=self.rapid_scheme.text,
            spot_spacing_text=self.spot_spacing.text, grid_text=self.grid_mm.text,
            device_label=self.device.text, exchange=bool(self.exchange.active),
            objectives=[r.objective(i, unit) for i, r in enumerate(self.objective_row_list)],
            structures=self._structures)

    # --- the form as the workspace keeps it ----------------------------------------------
    def form_values(self) -> dict[str, Any]:
        """Every field as the user left it (text, checked or not), JSON-serialisable."""
        return {
            "target": self.target.text, "dose": self.dose.text,
            "fractions": self.fractions.text,
            "beams": [[r.gantry.text, r.couch.text] for r in self.beam_row_list],
            "rbe": self.rbe.text, "rbe_value": self.rbe_value.text,
            "tissue": self.tissue.text,
            "tissue_custom": [ti.text for ti in self.tissue_custom],
            "rapid_scheme": self.rapid_scheme.text,
            "spot_spacing": self.spot_spacing.text, "grid": self.grid_mm.text,
            "device": self.device.text, "exchange": bool(self.exchange.active),
            "objectives": [[r.structure.text, r.kind_key, r.dose.text, r.weight.text,
                            r.volume.text] for r in self.objective_row_list],
            # The model the prescription's number was entered under: another unit's number
            # awaits confirmation after a restart as before it.
            "prescription_model": self._rx_model}

    def apply_form_values(self, values: Mapping[str, Any]) -> None:
        """Fill the form from :meth:`form_values`; entries of the wrong type or naming a
        choice that is not offered (a structure, model, tissue, device) are left as they
        are."""
        def text(key: str) -> str | None:
            value = values.get(key)
            return value if isinstance(value, str) else None

        def choose(spinner: WideSpinner, key: str) -> None:
            value = text(key)
            if value is not None and value in spinner.values:
                spinner.text = value

        choose(self.target, "target")
        self._target_name = self.target.text
        for key, ti in (("dose", self.dose), ("fractions", self.fractions),
                        ("rbe_value", self.rbe_value), ("spot_spacing", self.spot_spacing),
                        ("grid", self.grid_mm)):
            value = text(key)
            if value is not None:
                ti.text = value
        for key, spinner in (("rbe", self.rbe), ("tissue", self.tissue),
                             ("rapid_scheme", self.rapid_scheme), ("device", self.device)):
            choose(spinner, key)
        custom = values.get("tissue_custom")
        if isinstance(custom, list) and len(custom) == len(self.tissue_custom):
            for ti, value in zip(self.tissue_custom, custom, strict=True):
                ti.text = str(value)
        if isinstance(values.get("exchange"), bool):
            self.exchange.active = values["exchange"]
        beams = values.get("beams")
        if isinstance(beams, list) and all(isinstance(b, list) and len(b) == 2 for b in beams):
            self.beam_rows.clear_widgets()
            for gantry, couch in beams:
                row = self.add_beam(BeamSetup(0.0), notify=False)
                row.gantry.text, row.couch.text = str(gantry), str(couch)
        objectives = values.get("objectives")
        if isinstance(objectives, list) and all(
                isinstance(o, list) and len(o) == 5 for o in objectives):
            self.objective_rows.clear_widgets()
            self._show_ring_note()
            for structure, kind, dose, weight, volume in objectives:
                row = self.add_objective(Objective(
                    self._structures[0] if self._structures else "", OBJECTIVE_KINDS[0], 0.0))
                if isinstance(structure, str) and names_a_structure(structure,
                                                                    self._structures):
                    row.structure.text = structure
                if kind in OBJECTIVE_KINDS:
                    row.kind.text = objective_kind_label(kind)
                row.dose.text, row.weight.text, row.volume.text = (
                    str(dose), str(weight), str(volume))
        try:
            self._objectives_rx_gy = float(self.dose.text)
        except ValueError:
            self._objectives_rx_gy = None
        self._show_model_fields()
        # A restored model, tissue or RBE is no change by the user: no note about the kept
        # prescription, which is the prescription of them.
        self._noted_basis = self._basis_now()
        self._show_note("")
        entered_under = values.get("prescription_model")
        if entered_under in dict(RBE_MODELS).values() and unit_changes(entered_under,
                                                                       self._model_key):
            # still unconfirmed, as when the form was saved
            self._rx_basis = replace(self._noted_basis, model=entered_under)
            self._show_note(kept_prescription_note(self._rx_basis, self._noted_basis,
                                                   self.dose.text))
            self._rx_typed = False
            self._show_confirmation()
        else:
            self._confirm_prescription()
        self._show_per_fraction()
        self._beams_changed()

    def compute(self) -> None:
        try:
            setup = self.setup()
        except InputError as exc:
            self._on_error(exc)
            return
        self._on_compute(setup)

    def reoptimize(self) -> None:
        try:
            setup = self.setup()
        except InputError as exc:
            self._on_error(exc)
            return
        self._on_reoptimize(setup)

    def _beams_changed(self) -> None:
        valid = []
        for i, r in enumerate(self.beam_row_list):
            try:
                valid.append(parse_beam(r.gantry.text, r.couch.text, i))
            except InputError:
                continue
        self._on_beams_changed(valid)

    def _show_model_fields(self) -> None:
        model = dict(RBE_MODELS).get(self.rbe.text, "mkm")
        if model != self._model_key:
            self._model_key = model
            self._show_confirmation()
        self._show_kept_note()
        # The tissue also sets the LEM I side of the exchange view.
        self.tissue.disabled = model != "lem1" and not self.exchange.active
        for ti in self.tissue_custom:
            ti.disabled = self.tissue.disabled or self.tissue.text != CUSTOM_TISSUE
        self.rapid_scheme.disabled = self.tissue.disabled
        self.rbe_value.disabled = model != "const"
        self.dose_unit.text = model_dose_unit(model)
        self.objective_unit.text = model_dose_unit(model)
        self._show_per_fraction()

    def _tissue_name(self) -> str:
        """The LEM I tissue as the notes name it: ``"chordoma"``, or ``"custom (alpha_x 0.1,
        beta_x 0.05, D_t 30)"`` with the custom fields' texts."""
        if self.tissue.text != CUSTOM_TISSUE:
            return self.tissue.text
        ax, bx, dt = (ti.text.strip() for ti in self.tissue_custom)
        return f"{CUSTOM_TISSUE} (alpha_x {ax}, beta_x {bx}, D_t {dt})"

    def _basis_now(self) -> PrescriptionBasis:
        """The model, LEM I tissue and scheme, and constant RBE chosen now."""
        return PrescriptionBasis(self._model_key, self._tissue_name(), self.rapid_scheme.text,
                                 self.rbe_value.text)

    def _show_kept_note(self) -> None:
        """After a change of model, tissue, scheme or constant RBE: the note on the kept
        prescription against what it was entered under (none when back there; the exchange
        view's LEM I tissue alone is no prescription's)."""
        now = self._basis_now()
        if now == self._noted_basis:
            return  # nothing changed (a field left as it was): the note stays
        self._noted_basis = now
        self._show_note(kept_prescription_note(self._rx_basis, now, self.dose.text))

    def _show_note(self, text: str) -> None:
        """The model note (``""``: none, no room), as high as its wrapped lines: set here
        too, as the same text again changes no texture size."""
        note = self.model_note
        note.text = text
        note.texture_update()
        note.height = note.texture_size[1] if text else 0
        self._note_rx = self.dose.text.strip()

    @property
    def _rx_model(self) -> str:
        """The model the prescription's number was typed or confirmed under."""
        return self._rx_basis.model

    @property
    def prescription_unconfirmed(self) -> bool:
        """Whether the prescription's number was entered under a model of the other unit
        (Gy(RBE) or Gy) and kept: Compute refuses it until it is typed or kept with Enter."""
        return unit_changes(self._rx_model, self._model_key)

    def _confirm_prescription(self) -> None:
        """The prescription's number is now meant under the chosen model (tissue, scheme,
        constant RBE); a number kept across Gy(RBE) <-> Gy gets a line saying what it now is."""
        kept = (self.prescription_unconfirmed and self.model_note.text
                and self.dose.text.strip() == self._note_rx)
        self._rx_basis = self._basis_now()
        self._rx_typed = False
        if kept:
            self._show_note(confirmed_note(self._model_key, self.dose.text))
        self._show_confirmation()

    def _show_confirmation(self) -> None:
        """An unconfirmed prescription marks its field, the objectives' doses (written for
        it) and their unit; a confirmed one none."""
        waiting = self.prescription_unconfirmed
        background = UNCONFIRMED_FIELD_RGBA if waiting else (1.0, 1.0, 1.0, 1.0)
        for field in (self.dose, *(r.dose for r in self.objective_row_list)):
            field.background_color = background
        self.objective_unit.color = WARNING_TEXT_RGBA if waiting else MUTED_TEXT_RGBA

    def _show_per_fraction(self) -> None:
        try:
            per = float(self.dose.text) / int(self.fractions.text)
        except (ValueError, ZeroDivisionError):
            self.per_fraction.text = ""
            return
        self.per_fraction.text = f"= {per:.2f} {model_dose_unit(self._model_key)}/fx"
