"""Colour bar of a dose overlay: its colour map from vmin (bottom) to vmax (top), ticks, unit.

Isodose levels are marked on the bar with short lines in their colours. With no overlay the
widget draws nothing.
"""

from __future__ import annotations

import numpy as np
from kivy.core.text import Label as CoreLabel
from kivy.graphics import Color, Line, Rectangle
from kivy.graphics.texture import Texture
from kivy.uix.widget import Widget

from app import rendering
from app.viewer_state import DoseOverlay

_TEXT_RGBA = (0.9, 0.9, 0.9, 1.0)
_BAR_WIDTH_PX = 16.0
_MARGIN_PX = 6.0


def _text_texture(text: str, font_size: float, width: float | None = None) -> Texture:
    """``text`` rendered; with ``width``, wrapped at spaces to lines of at most that width."""
    label = (CoreLabel(text=text, font_size=font_size) if width is None else
             CoreLabel(text=text, font_size=font_size, text_size=(max(width, 1.0), None)))
    label.refresh()
    return label.texture


def format_tick(value: float, step: float) -> str:
    """A tick value with as many decimals as the tick step needs (``2.5`` -> 1, ``10`` -> 0)."""
    decimals = 0
    while decimals < 4 and abs(round(step, decimals) - step) > 1e-9 * max(abs(step), 1.0):
        decimals += 1
    return f"{value:.{decimals}f}"


class ColorLegend(Widget):
    """Vertical colour bar with ticks and unit for a :class:`DoseOverlay`.

    Attributes
    ----------
    overlay : DoseOverlay or None
        What is shown; set it with :meth:`set_overlay`.
    tick_values : numpy array
        The tick values drawn (empty with no overlay).
    title : str
        The text above the bar: the unit, or for a quantity without one its name (``"RBE"``,
        ``"LEM/mMKM"``); empty with no overlay.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.overlay: DoseOverlay | None = None
        self.tick_values = np.zeros(0)
        self.title = ""
        #: (width, height) px of the title as drawn (it wraps within the legend).
        self.title_size: tuple[int, ...] = (0, 0)
        self._bar_texture: Texture | None = None
        self.bind(pos=self._redraw, size=self._redraw)

    def set_overlay(self, overlay: DoseOverlay | None) -> None:
        """Show ``overlay``'s colour scale (or nothing)."""
        self.overlay = overlay
        self._bar_texture = None
        if overlay is not None:
            rgb = rendering.colormap_rgb(overlay.colormap)
            rgba = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
            texture = Texture.create(size=(1, len(rgb)), colorfmt="rgba", bufferfmt="ubyte")
            texture.blit_buffer(np.ascontiguousarray(rgba).reshape(-1), colorfmt="rgba",
                                bufferfmt="ubyte")
            self._bar_texture = texture
        self._redraw()

    def _redraw(self, *_args: object) -> None:
        self.canvas.clear()
        overlay = self.overlay
        if overlay is None or self._bar_texture is None:
            self.tick_values = np.zeros(0)
            self.title = ""
            return
        self.title = overlay.unit or overlay.scale_name
        # A long title ("Gy vs Gy(RBE)") wraps within the legend rather than run past it.
        unit_texture = _text_texture(self.title or " ", 12, self.width - _MARGIN_PX)
        self.title_size = tuple(unit_texture.size)
        note_texture = _text_texture(overlay.note, 10) if overlay.note else None
        note_h = note_texture.height + 4 if note_texture is not None else 0
        bar_x = self.x + _MARGIN_PX
        bar_y = self.y + _MARGIN_PX + 8 + note_h
        bar_h = max(self.height - 2 * _MARGIN_PX - unit_texture.height - 16 - note_h, 10.0)
        self.tick_values = rendering.legend_ticks(overlay.vmin, overlay.vmax)
        step = (float(self.tick_values[1] - self.tick_values[0])
                if len(self.tick_values) > 1 else overlay.vmax - overlay.vmin)
        span = overlay.vmax - overlay.vmin
        with self.canvas:
            Color(1.0, 1.0, 1.0, 1.0)
            Rectangle(texture=self._bar_texture, pos=(bar_x, bar_y), size=(_BAR_WIDTH_PX, bar_h))
            Color(*_TEXT_RGBA)
            Line(rectangle=(bar_x, bar_y, _BAR_WIDTH_PX, bar_h), width=1.0)
            Rectangle(texture=unit_texture, size=unit_texture.size,
                      pos=(bar_x, bar_y + bar_h + 6))
            if note_texture is not None:
                Rectangle(texture=note_texture, size=note_texture.size,
                          pos=(self.x + 2, self.y + _MARGIN_PX))
            for value in self.tick_values:
                y = bar_y + (float(value) - overlay.vmin) / span * bar_h
                Line(points=[bar_x + _BAR_WIDTH_PX, y, bar_x + _BAR_WIDTH_PX + 4, y], width=1.0)
                text = _text_texture(format_tick(float(value), step), 11)
                Rectangle(texture=text, size=text.size,
                          pos=(bar_x + _BAR_WIDTH_PX + 6, y - text.height / 2))
            for level, colour in zip(overlay.isodose_levels, overlay.level_colours, strict=True):
                if not overlay.vmin <= level <= overlay.vmax:
                    continue
                y = bar_y + (level - overlay.vmin) / span * bar_h
                Color(colour[0] / 255.0, colour[1] / 255.0, colour[2] / 255.0, 1.0)
                Line(points=[bar_x - 5, y, bar_x, y], width=1.5)
