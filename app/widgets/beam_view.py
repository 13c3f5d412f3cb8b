"""Beam's-eye view of one energy layer: the target's projection and the layer's spots
coloured by their particles, in the isocentre plane (u to the right, v up, mm).

The geometry comes from :mod:`planning.beam_eye_view`; this widget only scales and draws it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from kivy.core.text import Label as CoreLabel
from kivy.graphics import Color, Line, Rectangle
from kivy.uix.widget import Widget
from numpy.typing import NDArray

from app import rendering
from planning.beam_eye_view import LayerSpots

_MARGIN_PX = 24.0
_BACKGROUND_RGBA = (0.0, 0.0, 0.0, 1.0)
_AXIS_RGBA = (1.0, 1.0, 1.0, 0.35)
_TEXT_RGBA = (0.85, 0.87, 0.9, 1.0)
#: A spot's square: this fraction of the lattice spacing.
_SPOT_FILL = 0.8


class BeamEyeView(Widget):
    """Draws a target outline and one layer's spots.

    Attributes
    ----------
    extent_mm : (u_min, u_max, v_min, v_max)
        What the view fits (the outline and every spot of the beam, so the scale stays when
        the layer changes).
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.outlines: list[NDArray[np.float64]] = []
        self.outline_rgb: tuple[int, int, int] = (255, 128, 0)
        self.spots: LayerSpots | None = None
        self.spacing_mm = (5.0, 5.0)
        self.top_particles = 1.0
        self.extent_mm = (-50.0, 50.0, -50.0, 50.0)
        self._lut = rendering.colormap_rgb("dose")
        self.bind(pos=self.redraw, size=self.redraw)

    def show(self, outlines: Sequence[NDArray[np.float64]], outline_rgb: tuple[int, int, int],
             spots: LayerSpots, spacing_mm: tuple[float, float],
             extent_mm: tuple[float, float, float, float]) -> None:
        """Draw ``outlines`` and ``spots`` (colours from 0 to the layer's most particles)."""
        self.outlines = list(outlines)
        self.outline_rgb = outline_rgb
        self.spots = spots
        self.spacing_mm = spacing_mm
        self.top_particles = float(spots.particles.max()) if spots.particles.size else 1.0
        self.extent_mm = extent_mm
        self.redraw()

    def mm_to_px(self, u_mm: float, v_mm: float) -> tuple[float, float]:
        """Widget coordinates of a point of the isocentre plane."""
        scale, cx, cy = self._fit()
        return (self.x + self.width / 2 + (u_mm - cx) * scale,
                self.y + self.height / 2 + (v_mm - cy) * scale)

    def _fit(self) -> tuple[float, float, float]:
        u0, u1, v0, v1 = self.extent_mm
        room_w = max(self.width - 2 * _MARGIN_PX, 1.0)
        room_h = max(self.height - 2 * _MARGIN_PX, 1.0)
        scale = min(room_w / max(u1 - u0, 1.0), room_h / max(v1 - v0, 1.0))
        return scale, 0.5 * (u0 + u1), 0.5 * (v0 + v1)

    def spot_colour(self, particles: float) -> tuple[int, int, int]:
        """The colour of a spot with ``particles`` (0 = first colour, the layer's most =
        last)."""
        f = particles / self.top_particles if self.top_particles > 0 else 0.0
        index = round(min(max(f, 0.0), 1.0) * (len(self._lut) - 1))
        r, g, b = (int(c) for c in self._lut[index])
        return (r, g, b)

    def redraw(self, *_args: object) -> None:
        self.canvas.clear()
        scale, _cx, _cy = self._fit()
        with self.canvas:
            Color(*_BACKGROUND_RGBA)
            Rectangle(pos=self.pos, size=self.size)
            Color(*_AXIS_RGBA)
            ox, oy = self.mm_to_px(0.0, 0.0)
            Line(points=[self.x, oy, self.x + self.width, oy], width=1.0)
            Line(points=[ox, self.y, ox, self.y + self.height], width=1.0)
            if self.spots is not None:
                du, dv = (_SPOT_FILL * s * scale for s in self.spacing_mm)
                for u, v, n in zip(self.spots.u_mm, self.spots.v_mm, self.spots.particles,
                                   strict=True):
                    r, g, b = self.spot_colour(float(n))
                    Color(r / 255, g / 255, b / 255, 1.0 if n > 0 else 0.35)
                    x, y = self.mm_to_px(float(u), float(v))
                    Rectangle(pos=(x - du / 2, y - dv / 2), size=(du, dv))
            r, g, b = self.outline_rgb
            Color(r / 255, g / 255, b / 255, 1.0)
            for poly in self.outlines:
                pts = [c for u, v in poly for c in self.mm_to_px(float(u), float(v))]
                Line(points=pts, width=1.5, close=True)
            Color(*_TEXT_RGBA)
            for text, pos in (("u (mm)", (self.x + self.width - 56, oy + 4)),
                              ("v (mm)", (ox + 4, self.y + self.height - 18))):
                label = CoreLabel(text=text, font_size=12)
                label.refresh()
                Rectangle(texture=label.texture, size=label.texture.size, pos=pos)
