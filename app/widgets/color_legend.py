"""Colour bar of a dose overlay: its colour map from vmin (bottom) to vmax (top), ticks, unit.

Isodose levels are marked on the bar with short lines in their colours. Values washed beyond
the scale (a quantity scaled to its percentiles) are marked by an arrow at that end, in the
end colour they take, with the extreme value ("max 2.721"). With no overlay the widget draws
nothing.
"""

from __future__ import annotations

import numpy as np
from kivy.core.text import Label as CoreLabel
from kivy.graphics import Color, Line, Rectangle, Triangle
from kivy.graphics.texture import Texture
from kivy.uix.widget import Widget

from app import rendering
from app.viewer_state import DoseOverlay

_TEXT_RGBA = (0.9, 0.9, 0.9, 1.0)
_BAR_WIDTH_PX = 16.0
_MARGIN_PX = 6.0
#: Height of the arrow at an end of the bar that has values beyond it, px.
_ARROW_PX = 10.0


def _text_texture(text: str, font_size: float, width: float | None = None) -> Texture:
    """``text`` rendered; with ``width``, wrapped at spaces to lines of at most that width."""
    label = (CoreLabel(text=text, font_size=font_size) if width is None else
             CoreLabel(text=text, font_size=font_size, text_size=(max(width, 1.0), None)))
    label.refresh()
    return label.texture


class ColorLegend(Widget):
    """Vertical colour bar with ticks and unit for a :class:`DoseOverlay`.

    Attributes
    ----------
    overlay : DoseOverlay or None
        What is shown; set it with :meth:`set_overlay`.
    tick_values : numpy array
        The tick values drawn (empty with no overlay).
    tick_texts : list of str
        Their texts (:func:`app.rendering.tick_texts`).
    title : str
        The text above the bar: the unit, or for a quantity without one its name (``"RBE"``,
        ``"LEM/mMKM"``); empty with no overlay.
    beyond : dict
        The ends with values beyond the scale and their text: ``{"over": "max 2.721",
        "under": "min 1.02"}`` (empty when the scale spans every value shown).
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.overlay: DoseOverlay | None = None
        self.tick_values = np.zeros(0)
        self.tick_texts: list[str] = []
        self.title = ""
        #: (width, height) px of the title as drawn (it wraps within the legend).
        self.title_size: tuple[int, ...] = (0, 0)
        self.beyond: dict[str, str] = {}
        self._bar_texture: Texture | None = None
        self._end_rgb: tuple[tuple[float, ...], tuple[float, ...]] = ((0, 0, 0), (0, 0, 0))
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
            self._end_rgb = (tuple(float(c) / 255.0 for c in rgb[0]),
                             tuple(float(c) / 255.0 for c in rgb[-1]))
        self._redraw()

    def _redraw(self, *_args: object) -> None:
        self.canvas.clear()
        overlay = self.overlay
        if overlay is None or self._bar_texture is None:
            self.tick_values = np.zeros(0)
            self.tick_texts = []
            self.title = ""
            self.beyond = {}
            return
        self.title = overlay.unit or overlay.scale_name
        # A long title ("Gy vs Gy(RBE)") wraps within the legend rather than run past it.
        unit_texture = _text_texture(self.title or " ", 12, self.width - _MARGIN_PX)
        self.title_size = tuple(unit_texture.size)
        note_texture = (_text_texture(overlay.note, 10, self.width - 2) if overlay.note
                        else None)
        note_h = note_texture.height + 4 if note_texture is not None else 0
        self.beyond = {}
        if overlay.shown_max is not None and overlay.shown_max > overlay.vmax:
            self.beyond["over"] = f"max {overlay.shown_max:.4g}"
        if overlay.shown_min is not None and overlay.shown_min < overlay.vmin:
            self.beyond["under"] = f"min {overlay.shown_min:.4g}"
        over_h = _ARROW_PX + 2 if "over" in self.beyond else 0.0
        under_h = _ARROW_PX + 2 if "under" in self.beyond else 0.0
        bar_x = self.x + _MARGIN_PX
        bar_y = self.y + _MARGIN_PX + 8 + note_h + under_h
        bar_h = max(self.height - 2 * _MARGIN_PX - unit_texture.height - 16 - note_h
                    - over_h - under_h, 10.0)
        self.tick_values = rendering.legend_ticks(overlay.vmin, overlay.vmax)
        self.tick_texts = rendering.tick_texts(self.tick_values)
        span = overlay.vmax - overlay.vmin
        with self.canvas:
            Color(1.0, 1.0, 1.0, 1.0)
            Rectangle(texture=self._bar_texture, pos=(bar_x, bar_y), size=(_BAR_WIDTH_PX, bar_h))
            Color(*_TEXT_RGBA)
            Line(rectangle=(bar_x, bar_y, _BAR_WIDTH_PX, bar_h), width=1.0)
            Rectangle(texture=unit_texture, size=unit_texture.size,
                      pos=(bar_x, bar_y + bar_h + over_h + 6))
            if note_texture is not None:
                Rectangle(texture=note_texture, size=note_texture.size,
                          pos=(self.x + 2, self.y + _MARGIN_PX))
            # The arrows: up from the top, down from the bottom, in the end colours.
            arrows = []
            text_x = bar_x + _BAR_WIDTH_PX + 6
            for end, base, tip in (("over", bar_y + bar_h + 2, bar_y + bar_h + over_h),
                                   ("under", bar_y - 2, bar_y - under_h)):
                if end not in self.beyond:
                    continue
                Color(*self._end_rgb[end == "over"], 1.0)
                Triangle(points=[bar_x, base, bar_x + _BAR_WIDTH_PX, base,
                                 bar_x + _BAR_WIDTH_PX / 2, tip])
                Color(*_TEXT_RGBA)
                text = _text_texture(self.beyond[end], 10)
                middle = (base + tip) / 2
                Rectangle(texture=text, size=text.size, pos=(text_x, middle - text.height / 2))
                arrows.append((middle, text.height))
            for value, tick_text in zip(self.tick_values, self.tick_texts, strict=True):
                y = bar_y + (float(value) - overlay.vmin) / span * bar_h
                Line(points=[bar_x + _BAR_WIDTH_PX, y, bar_x + _BAR_WIDTH_PX + 4, y], width=1.0)
                text = _text_texture(tick_text, 11)
                if any(abs(y - m) < (text.height + h) / 2 for m, h in arrows):
                    continue  # the arrow's value is written there
                Rectangle(texture=text, size=text.size,
                          pos=(text_x, y - text.height / 2))
            for level, colour in zip(overlay.isodose_levels, overlay.level_colours, strict=True):
                if not overlay.vmin <= level <= overlay.vmax:
                    continue
                y = bar_y + (level - overlay.vmin) / span * bar_h
                Color(colour[0] / 255.0, colour[1] / 255.0, colour[2] / 255.0, 1.0)
                Line(points=[bar_x - 5, y, bar_x, y], width=1.5)
