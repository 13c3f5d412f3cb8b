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
from app.plot_axes import ticks_and_labels
from planning.beam_eye_view import LayerSpots

#: Room around the plane's picture, px: the tick values below and left of it.
_MARGIN_LEFT_PX, _MARGIN_BOTTOM_PX, _MARGIN_RIGHT_PX, _MARGIN_TOP_PX = 40.0, 24.0, 12.0, 22.0
_BACKGROUND_RGBA = (0.0, 0.0, 0.0, 1.0)
_AXIS_RGBA = (1.0, 1.0, 1.0, 0.35)
_TEXT_RGBA = (0.85, 0.87, 0.9, 1.0)
#: A spot's square: this fraction of the lattice spacing.
_SPOT_FILL = 0.8
#: Tick marks: length, px, and at most one labelled tick per this many px of axis.
_TICK_PX = 5.0
_PX_PER_TICK = 70.0
_FONT_PX = 12


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
        #: The labelled tick positions drawn last along u and v, mm (isocentre plane).
        self.ticks_mm: tuple[NDArray[np.float64], NDArray[np.float64]] = (np.zeros(0),
                                                                          np.zeros(0))
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
        px, py = self._plot_centre_px()
        return px + (u_mm - cx) * scale, py + (v_mm - cy) * scale

    def visible_mm(self) -> tuple[float, float, float, float]:
        """The isocentre plane's (u_min, u_max, v_min, v_max) inside the tick frame, mm."""
        scale, cx, cy = self._fit()
        px, py = self._plot_centre_px()
        return (cx + (self.x + _MARGIN_LEFT_PX - px) / scale,
                cx + (self.right - _MARGIN_RIGHT_PX - px) / scale,
                cy + (self.y + _MARGIN_BOTTOM_PX - py) / scale,
                cy + (self.top - _MARGIN_TOP_PX - py) / scale)

    def _plot_centre_px(self) -> tuple[float, float]:
        return (self.x + _MARGIN_LEFT_PX + self._room()[0] / 2,
                self.y + _MARGIN_BOTTOM_PX + self._room()[1] / 2)

    def _room(self) -> tuple[float, float]:
        return (max(self.width - _MARGIN_LEFT_PX - _MARGIN_RIGHT_PX, 1.0),
                max(self.height - _MARGIN_BOTTOM_PX - _MARGIN_TOP_PX, 1.0))

    def _fit(self) -> tuple[float, float, float]:
        u0, u1, v0, v1 = self.extent_mm
        room_w, room_h = self._room()
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
            left, bottom = self.x + _MARGIN_LEFT_PX, self.y + _MARGIN_BOTTOM_PX
            right, top = self.right - _MARGIN_RIGHT_PX, self.top - _MARGIN_TOP_PX
            if bottom <= oy <= top:
                Line(points=[left, oy, right, oy], width=1.0)
            if left <= ox <= right:
                Line(points=[ox, bottom, ox, top], width=1.0)
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
            self._draw_ticks()

    def _draw_ticks(self) -> None:
        """A frame round the plane with tick marks and their values (mm) below and left of
        it, and the axis names (none while the widget is too small to hold them)."""
        u0, u1, v0, v1 = self.visible_mm()
        if u1 <= u0 or v1 <= v0:
            self.ticks_mm = (np.zeros(0), np.zeros(0))
            return
        room_w, room_h = self._room()
        u_ticks, u_texts = ticks_and_labels(u0, u1, max(2, int(room_w / _PX_PER_TICK)))
        v_ticks, v_texts = ticks_and_labels(v0, v1, max(2, int(room_h / _PX_PER_TICK)))
        self.ticks_mm = (u_ticks, v_ticks)
        left, bottom = self.x + _MARGIN_LEFT_PX, self.y + _MARGIN_BOTTOM_PX
        Color(*_AXIS_RGBA)
        Line(rectangle=(left, bottom, room_w, room_h), width=1.0)
        for u in u_ticks:
            x = self.mm_to_px(float(u), 0.0)[0]
            Line(points=[x, bottom, x, bottom + _TICK_PX], width=1.0)
        for v in v_ticks:
            y = self.mm_to_px(0.0, float(v))[1]
            Line(points=[left, y, left + _TICK_PX, y], width=1.0)
        Color(*_TEXT_RGBA)
        for u, text in zip(u_ticks, u_texts, strict=True):
            texture = _text_texture(text)
            x = self.mm_to_px(float(u), 0.0)[0] - texture.width / 2
            self._blit(texture, x, bottom - 3 - texture.height)
        for v, text in zip(v_ticks, v_texts, strict=True):
            texture = _text_texture(text)
            y = self.mm_to_px(0.0, float(v))[1] - texture.height / 2
            self._blit(texture, left - 4 - texture.width, y)
        # Axis names at the ends of the lines through the isocentre (or of the frame).
        ox, oy = self.mm_to_px(0.0, 0.0)
        ox = min(max(ox, left), left + room_w)
        oy = min(max(oy, bottom), bottom + room_h)
        for text, (x, y) in (("u (mm)", (left + room_w - 52, oy + 4)),
                             ("v (mm)", (ox + 4, self.top - _MARGIN_TOP_PX + 3))):
            self._blit(_text_texture(text), x, y)

    def _blit(self, texture: object, x: float, y: float) -> None:
        """Draw a text texture with its lower left corner at (x, y), kept inside the widget."""
        w, h = texture.size  # type: ignore[attr-defined]
        x = min(max(x, self.x + 2), self.right - w - 2)
        y = min(max(y, self.y + 2), self.top - h - 2)
        Rectangle(texture=texture, size=(w, h), pos=(x, y))


def _text_texture(text: str) -> object:
    label = CoreLabel(text=text, font_size=_FONT_PX)
    label.refresh()
    return label.texture
