"""Patient tab: where the CT came from, its geometry, and the structures with visibility toggles."""

from __future__ import annotations

from collections.abc import Callable

from kivy.graphics import Color, Rectangle
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.checkbox import CheckBox
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from app.theme import BUTTON_HEIGHT, MUTED_TEXT_RGBA, PAD, ROW_HEIGHT
from planning.patient import Patient


class ColourSwatch(Widget):
    """A small filled square in a structure's colour."""

    def __init__(self, colour_rgb: tuple[int, int, int], **kwargs: object) -> None:
        super().__init__(size_hint=(None, None), size=(16, 16), **kwargs)
        with self.canvas:
            Color(*(c / 255.0 for c in colour_rgb), 1.0)
            self._rect = Rectangle(pos=self.pos, size=self.size)
        self.bind(pos=lambda w, p: setattr(self._rect, "pos", p))


class StructureRow(BoxLayout):
    """Visibility check box, colour, name, type and volume of one structure."""

    def __init__(self, name: str, colour_rgb: tuple[int, int, int], kind: str,
                 volume_cm3: float, on_toggle: Callable[[str, bool], None]) -> None:
        super().__init__(orientation="horizontal", size_hint_y=None, height=ROW_HEIGHT,
                         spacing=PAD)
        self.structure_name = name
        self.colour_rgb = colour_rgb
        self.checkbox = CheckBox(active=True, size_hint_x=None, width=30)
        self.checkbox.bind(active=lambda _w, on: on_toggle(name, bool(on)))
        holder = BoxLayout(size_hint_x=None, width=20, padding=(0, 7))
        holder.add_widget(ColourSwatch(colour_rgb))
        label = Label(text=name, halign="left", valign="middle", shorten=True)
        label.bind(size=lambda w, s: setattr(w, "text_size", s))
        info = Label(text=f"{kind or '-'}  {volume_cm3:.1f} cm³", size_hint_x=None, width=130,
                     color=MUTED_TEXT_RGBA, halign="right", valign="middle", font_size="12sp")
        info.bind(size=lambda w, s: setattr(w, "text_size", s))
        for w in (self.checkbox, holder, label, info):
            self.add_widget(w)


class PatientPanel(BoxLayout):
    """Open a folder or the demo, read the patient's summary, toggle structures.

    Parameters
    ----------
    on_open_folder, on_open_demo : callables
        Called when the buttons are pressed.
    on_toggle_structure : callable
        ``(name, visible)`` when a structure's check box changes.
    """

    def __init__(self, *, on_open_folder: Callable[[], None], on_open_demo: Callable[[], None],
                 on_toggle_structure: Callable[[str, bool], None]) -> None:
        super().__init__(orientation="vertical", spacing=PAD, padding=PAD)
        self._on_toggle = on_toggle_structure
        buttons = BoxLayout(size_hint_y=None, height=BUTTON_HEIGHT, spacing=PAD)
        self.open_button = Button(text="Open DICOM folder...")
        self.open_button.bind(on_release=lambda *_: on_open_folder())
        self.demo_button = Button(text="Demo patient", size_hint_x=0.6)
        self.demo_button.bind(on_release=lambda *_: on_open_demo())
        buttons.add_widget(self.open_button)
        buttons.add_widget(self.demo_button)
        self.add_widget(buttons)
        self.summary = Label(text="No patient loaded", halign="left", valign="top",
                             size_hint_y=None, height=120, font_size="13sp")
        self.summary.bind(size=lambda w, s: setattr(w, "text_size", s))
        self.add_widget(self.summary)
        # Wrapped to the panel's width (a fixed text_size pushed it past a narrow panel's edge).
        self.structures_heading = Label(text="Structures (visible)", size_hint_y=None,
                                        height=24, halign="left", valign="middle", bold=True)
        self.structures_heading.bind(size=lambda w, s: setattr(w, "text_size", s))
        self.add_widget(self.structures_heading)
        scroll = ScrollView()
        self.rows = BoxLayout(orientation="vertical", size_hint_y=None, spacing=2)
        self.rows.bind(minimum_height=self.rows.setter("height"))
        scroll.add_widget(self.rows)
        self.add_widget(scroll)

    def show_patient(self, patient: Patient, source: str) -> None:
        """Fill the summary and one row per structure (all visible)."""
        ct = patient.ct
        nz, ny, nx = ct.shape
        sz, sy, sx = ct.spacing_mm
        study = ct.study
        lines = [f"[b]{study.patient_name or 'Anonymous'}[/b]  ID {study.patient_id or '-'}",
                 f"CT {nx} x {ny} x {nz}, {sx:.2f} x {sy:.2f} x {sz:.2f} mm, "
                 f"{ct.patient_position or 'position ?'}",
                 f"Series: {ct.series_description or ct.series_instance_uid[-24:]}",
                 f"From: {source}"]
        if patient.structure_set is None:
            lines.append("No structure set: contour the target before planning.")
        if patient.warnings:
            lines.append(f"{len(patient.warnings)} import note(s): {patient.warnings[0][:80]}")
        self.summary.markup = True
        self.summary.text = "\n".join(lines)
        self.rows.clear_widgets()
        if patient.structure_set is None:
            return
        ss = patient.structure_set
        for s, colour in zip(ss.structures, ss.display_colours(), strict=True):
            self.rows.add_widget(StructureRow(
                s.name, colour, s.interpreted_type,
                s.volume_cm3(ct.spacing_mm), self._on_toggle))

    def row(self, name: str) -> StructureRow:
        """The row of structure ``name`` (for tests and keyboard focus)."""
        for child in self.rows.children:
            if isinstance(child, StructureRow) and child.structure_name == name:
                return child
        raise KeyError(f"no structure row {name!r}")
