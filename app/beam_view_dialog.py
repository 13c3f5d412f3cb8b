"""The beam's-eye view dialog of a plan: per beam, the target projected along the beam and
the spot map of each energy layer (particles as colour), with the energy/layer list.

Geometry and tables come from :mod:`planning.beam_eye_view`; nothing is computed here.
"""

from __future__ import annotations

import numpy as np
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.popup import Popup

from app.plot_data import MetricsRow
from app.session import PlanEntry
from app.theme import BUTTON_HEIGHT, MUTED_TEXT_RGBA, PAD, ROW_HEIGHT
from app.widgets.beam_view import BeamEyeView
from app.widgets.menu import WideSpinner
from app.widgets.metrics_table import MetricsTable
from planning.beam_eye_view import LayerRow, layer_spots, layer_table, target_projection
from planning.structure_dose import grid_of


def _layer_text(row: LayerRow) -> str:
    return f"Layer {row.index + 1}: {row.energy_mev_u:.1f} MeV/u"


class BeamViewDialog(Popup):
    """Beam's-eye view of ``entry``'s beams; the beam and layer chosen by two menus.

    Attributes
    ----------
    view : BeamEyeView
    beam_menu, layer_menu : WideSpinner
    table : MetricsTable
        One row per energy layer: MeV/u, spots (delivered), particles per fraction.
    """

    def __init__(self, entry: PlanEntry) -> None:
        self.entry = entry
        result = entry.result
        plan = result.plan
        patient = result.patient
        target = patient.structure_set.get(plan.prescription.target)
        self._target_mask = target.mask.to_dense()
        self._target_rgb = patient.structure_set.display_colour(target)  # as in the views
        self._ct_grid = grid_of(patient.ct)
        # Spots were placed along diverging rays; the outline is projected the same way.
        self._sad_mm = result.prepared.machine.sad_mm if result.prepared is not None else None
        body = BoxLayout(orientation="horizontal", spacing=PAD, padding=PAD)
        self.view = BeamEyeView()
        body.add_widget(self.view)
        side = BoxLayout(orientation="vertical", spacing=4, size_hint_x=None, width=360)
        beams = [b.beam.label for b in plan.beams]
        self.beam_menu = WideSpinner(text=beams[0], values=beams, size_hint_y=None,
                                     height=ROW_HEIGHT)
        self.layer_menu = WideSpinner(text="", values=[], size_hint_y=None, height=ROW_HEIGHT)
        self.note = Label(text="", font_size="12sp", color=MUTED_TEXT_RGBA, size_hint_y=None,
                          height=64, halign="left", valign="top")
        self.note.bind(size=lambda w, s: setattr(w, "text_size", s))
        self.table = MetricsTable(name_title="Layer")
        close = Button(text="Close", size_hint_y=None, height=BUTTON_HEIGHT)
        close.name = "beam_view_close"  # type: ignore[attr-defined]
        close.bind(on_release=lambda *_: self.dismiss())
        for w in (self.beam_menu, self.layer_menu, self.note, self.table, close):
            side.add_widget(w)
        body.add_widget(side)
        super().__init__(title=f"Beam's-eye view - {entry.name} (target {target.name})",
                         content=body, size_hint=(0.92, 0.92))
        self.name = "beam_view_dialog"
        self._rows: list[LayerRow] = []
        self.beam_menu.bind(text=lambda *_: self.show_beam(self.beam_menu.text))
        self.layer_menu.bind(text=lambda *_: self._show_layer())
        self.show_beam(beams[0])

    def _beam_index(self, label: str) -> int:
        return [b.beam.label for b in self.entry.result.plan.beams].index(label)

    def show_beam(self, label: str) -> None:
        """Show beam ``label``: its target projection, layer list and first layer."""
        beam_plan = self.entry.result.plan.beams[self._beam_index(label)]
        self._outlines = target_projection(self._target_mask, self._ct_grid, beam_plan.beam,
                                           sad_mm=self._sad_mm)
        spots = beam_plan.spots
        pts = np.vstack([*self._outlines, np.column_stack([spots.u_mm, spots.v_mm])])
        pad = max(spots.spacing_mm)
        self._extent = (float(pts[:, 0].min()) - pad, float(pts[:, 0].max()) + pad,
                        float(pts[:, 1].min()) - pad, float(pts[:, 1].max()) + pad)
        self._rows = layer_table(beam_plan)
        self.table.set_rows(
            ["MeV/u", "spots", "particles /fx"],
            [MetricsRow(f"{r.index + 1}", (200, 200, 200),
                        [f"{r.energy_mev_u:.1f}", f"{r.n_spots_delivered}/{r.n_spots}",
                         f"{r.particles:.3g}"]) for r in self._rows])
        texts = [_layer_text(r) for r in self._rows]
        self.layer_menu.values = texts
        if self.layer_menu.text == texts[0]:
            self._show_layer()
        else:
            self.layer_menu.text = texts[0]

    def select_layer(self, position: int) -> None:
        """Show the ``position``-th layer of the list (0 = highest energy)."""
        self.layer_menu.text = _layer_text(self._rows[position])

    @property
    def layer(self) -> LayerRow | None:
        """The layer shown."""
        return next((r for r in self._rows if _layer_text(r) == self.layer_menu.text), None)

    def _show_layer(self) -> None:
        row = self.layer
        if row is None:
            return
        beam_plan = self.entry.result.plan.beams[self._beam_index(self.beam_menu.text)]
        spots = layer_spots(beam_plan, row.index)
        self.view.show(self._outlines, self._target_rgb, spots, beam_plan.spots.spacing_mm,
                       self._extent)
        projection = "diverging rays" if self._sad_mm is not None else "parallel"
        self.note.text = (
            f"{row.energy_mev_u:.1f} MeV/u: {row.n_spots_delivered} of {row.n_spots} spots "
            f"delivered, {row.particles:.3g} ions per fraction. Colour: ions per spot, 0 to "
            f"{self.view.top_particles:.3g} (blue to red). Outline: target projected along "
            f"the beam ({projection}) onto the isocentre plane.")
