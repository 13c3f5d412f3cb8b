"""Cumulative DVH panel drawn with Kivy graphics: curves, axes, legend, cursor readout.

The caller supplies the curves (from ``planning.evaluation.cumulative_dvh``); this widget only
draws them. Curves are plain ``Line`` instructions (solid) or one triangle ``Mesh`` of dash quads
(dashed), which is the fastest way found to draw a few hundred points per structure on software
OpenGL. Arrays are plain attributes, never Kivy properties.
"""

from __future__ import annotations

import math
import os

import numpy as np
from kivy.core.text import Label as CoreLabel
from kivy.graphics import (
    Color,
    InstructionGroup,
    Line,
    Mesh,
    PopMatrix,
    PushMatrix,
    Rectangle,
    Rotate,
)
from kivy.metrics import dp
from kivy.properties import ColorProperty, NumericProperty, StringProperty
from kivy.uix.widget import Widget

from app.plot_axes import (
    AxisMapping,
    dash_segments,
    nice_upper_limit,
    ticks_and_labels,
    wrap_words,
)
from app.plot_data import VOLUME_MAX_PERCENT, DvhCurve, FloatArray
from planning.errors import InputError

_TEXTURE_CACHE_LIMIT = 512
#: Smallest share of the font size a dose axis title is shrunk to, to fit the plot's width
#: when one of its words alone is wider (it is wrapped at spaces first).
_MIN_TITLE_SCALE = 0.6


def _unit_of(label: str) -> str:
    """Unit in the last bracketed group of an axis label (brackets may nest):
    "Dose (Gy(RBE))" and "RBE-weighted dose (mMKM) (Gy(RBE))" -> "Gy(RBE)"; "" without one."""
    text = label.rstrip()
    if not text.endswith(")"):
        return ""
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        if text[i] == ")":
            depth += 1
        elif text[i] == "(":
            depth -= 1
            if depth == 0:
                return text[i + 1:-1]
    return ""


def _rgba(rgb: tuple[int, int, int], alpha: float = 1.0) -> tuple[float, float, float, float]:
    return (rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0, alpha)


class DvhPlot(Widget):
    """Cumulative DVH plot: volume (%) against dose, one curve per structure (and plan).

    Call :meth:`set_curves` with :class:`DvhCurve` objects. Hovering the mouse over the plot area
    (or touching/dragging in it) shows a vertical cursor line and fills :attr:`readout_text` with
    every visible curve's volume at that dose.
    """

    x_label = StringProperty("Dose (Gy(RBE))")
    """Dose axis title; the unit in its last brackets is used in the readout."""
    y_label = StringProperty("Volume (%)")
    readout_text = StringProperty("")
    """Cursor readout, e.g. "D = 57.1 Gy(RBE): PTV 95.2 %, Brainstem 3.1 %" ("" off the plot)."""
    font_size = NumericProperty(dp(13))
    line_width = NumericProperty(dp(1.5))
    background_color = ColorProperty((0.11, 0.12, 0.13, 1.0))
    foreground_color = ColorProperty((0.88, 0.89, 0.90, 1.0))
    grid_color = ColorProperty((0.30, 0.32, 0.34, 1.0))
    cursor_color = ColorProperty((1.0, 1.0, 1.0, 0.85))
    prescription_color = ColorProperty((0.65, 0.65, 0.65, 1.0))

    def __init__(self, **kwargs: object) -> None:
        self._curves: list[DvhCurve] = []
        self._hidden: set[str] = set()
        self._prescription: float | None = None
        self._dose_max_fixed: float | None = None
        self._cursor_dose: float | None = None
        self._x_map: AxisMapping | None = None
        self._y_map: AxisMapping | None = None
        self._textures: dict[tuple[object, ...], object] = {}
        self._legend_labels: list[str] = []
        self._x_label_lines: list[str] = []
        self._x_label_box = (0.0, 0.0, 0.0, 0.0)
        self._bound_window: object | None = None
        self._x_decimals = 0
        # Drawn instructions per curve (by id), reused while axes and line width are unchanged,
        # so that showing/hiding structures and moving the marker do not rebuild every line.
        self._curve_cache: dict[int, tuple[tuple[object, ...], list[object]]] = {}
        super().__init__(**kwargs)
        self._plot_group = InstructionGroup()
        self._cursor_group = InstructionGroup()
        self.canvas.add(self._plot_group)
        self.canvas.add(self._cursor_group)
        self._redraw_trigger = self._make_trigger()
        self.bind(pos=self._redraw_trigger, size=self._redraw_trigger,
                  x_label=self._redraw_trigger, y_label=self._redraw_trigger,
                  font_size=self._redraw_trigger, line_width=self._redraw_trigger,
                  background_color=self._redraw_trigger, foreground_color=self._redraw_trigger,
                  grid_color=self._redraw_trigger, parent=self._on_parent)
        self.redraw()

    def _make_trigger(self):  # type: ignore[no-untyped-def]
        from kivy.clock import Clock
        return Clock.create_trigger(lambda _dt: self.redraw(), -1)

    # ------------------------------------------------------------------ public interface
    def set_curves(self, curves: list[DvhCurve]) -> None:
        """Replace the curves (an empty list clears the plot) and redraw at once."""
        for c in curves:
            if not isinstance(c, DvhCurve):
                raise InputError(f"DvhPlot.set_curves takes DvhCurve objects, got {type(c)}")
        self._curves = list(curves)
        self._curve_cache = {}
        self.redraw()

    @property
    def curves(self) -> list[DvhCurve]:
        """The curves last set (a copy of the list)."""
        return list(self._curves)

    def set_visible(self, name: str, visible: bool) -> None:
        """Show or hide every curve of the structure ``name`` (all groups)."""
        if visible:
            self._hidden.discard(name)
        else:
            self._hidden.add(name)
        self.redraw()

    def is_visible(self, name: str) -> bool:
        """Whether curves of the structure ``name`` are drawn."""
        return name not in self._hidden

    @property
    def prescription(self) -> float | None:
        """The prescription marker's dose, or None when none is drawn."""
        return self._prescription

    def set_prescription(self, value: float | None) -> None:
        """Draw a vertical marker at the prescribed dose (plot units), or remove it (None)."""
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"prescription marker needs a dose > 0, got {value}")
        self._prescription = None if value is None else float(value)
        self.redraw()

    def set_dose_range(self, dose_max: float | None) -> None:
        """Fix the dose axis end (plot units), or choose it from the curves (None).

        A fixed end keeps two DVH panels comparable; curve parts beyond it are cut off.
        """
        if dose_max is not None and not (math.isfinite(dose_max) and dose_max > 0):
            raise InputError(f"dose axis end must be > 0, got {dose_max}")
        self._dose_max_fixed = None if dose_max is None else float(dose_max)
        self.redraw()

    @property
    def dose_axis_max(self) -> float:
        """Dose at the right edge of the plot area (plot units)."""
        return self._x_map.data_hi if self._x_map is not None else self._choose_dose_max()

    @property
    def legend_labels(self) -> list[str]:
        """Texts of the legend entries as drawn, top to bottom."""
        return list(self._legend_labels)

    @property
    def x_label_lines(self) -> list[str]:
        """The dose axis title's lines as drawn (wrapped at spaces to the plot's width)."""
        return list(self._x_label_lines)

    @property
    def x_label_box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the dose axis title as drawn, in parent coordinates."""
        return self._x_label_box

    def _x_title(self, width: float) -> tuple[list[str], float]:
        """The dose axis title's lines for a plot ``width`` px wide, and their font size:
        wrapped at spaces, shrunk (to no less than :data:`_MIN_TITLE_SCALE`) if a word alone
        is wider."""
        size = float(self.font_size)

        def width_of(text: str) -> float:
            return float(CoreLabel(font_size=size).get_extents(text)[0])

        lines = wrap_words(self.x_label, width, width_of)
        widest = max(width_of(line) for line in lines)
        if widest > width:
            size *= max(width / widest, _MIN_TITLE_SCALE)
        return lines, size

    @property
    def plot_area(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the plot area in this widget's parent coordinates (pixels)."""
        if self._x_map is None or self._y_map is None:
            return (self.x, self.y, self.x, self.y)
        return (self._x_map.pixel_lo, self._y_map.pixel_lo,
                self._x_map.pixel_hi, self._y_map.pixel_hi)

    def dose_to_x(self, dose: float) -> float:
        """Pixel x (parent coordinates) of a dose on the current axis."""
        if self._x_map is None:
            raise InputError("the DVH plot has no axes yet (zero size)")
        return float(self._x_map.to_pixel(dose))

    def volume_to_y(self, volume_percent: float) -> float:
        """Pixel y (parent coordinates) of a volume percentage on the current axis."""
        if self._y_map is None:
            raise InputError("the DVH plot has no axes yet (zero size)")
        return float(self._y_map.to_pixel(volume_percent))

    def set_cursor_dose(self, dose: float | None) -> None:
        """Put the cursor line at ``dose`` (plot units) and update the readout; None hides it."""
        self._cursor_dose = None if dose is None else float(dose)
        self._draw_cursor()

    def export_png(self, path: str | os.PathLike[str]) -> None:
        """Write the plot as it is drawn now to a PNG file, atomically."""
        from app.widget_image import render_widget_rgba, write_png

        write_png(path, render_widget_rgba(self))

    # ------------------------------------------------------------------ input
    def _on_parent(self, _widget: object, parent: object) -> None:
        from kivy.core.window import Window

        if parent is not None and self._bound_window is None:
            Window.fbind("mouse_pos", self._on_mouse_pos)
            self._bound_window = Window
        elif parent is None and self._bound_window is not None:
            Window.funbind("mouse_pos", self._on_mouse_pos)
            self._bound_window = None

    def _dose_at_window_pos(self, pos: tuple[float, float]) -> float | None:
        if self._x_map is None or self.get_root_window() is None:
            return None
        x, y = self.to_widget(*pos)
        return self._dose_at_local(x, y)

    def _dose_at_local(self, x: float, y: float) -> float | None:
        if self._x_map is None:
            return None
        x0, y0, x1, y1 = self.plot_area
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            return None
        return float(self._x_map.to_data(x))

    def _on_mouse_pos(self, _window: object, pos: tuple[float, float]) -> None:
        dose = self._dose_at_window_pos(pos)
        if dose is None and self._cursor_dose is None:
            return
        self.set_cursor_dose(dose)

    def on_touch_down(self, touch):  # type: ignore[no-untyped-def]
        if getattr(touch, "button", "left").startswith("scroll"):
            return super().on_touch_down(touch)
        dose = self._dose_at_local(*touch.pos)
        if dose is None:
            return super().on_touch_down(touch)
        touch.grab(self)
        self.set_cursor_dose(dose)
        return True

    def on_touch_move(self, touch):  # type: ignore[no-untyped-def]
        if touch.grab_current is self:
            x0, _y0, x1, _y1 = self.plot_area
            x = min(max(touch.x, x0), x1)
            if self._x_map is not None:
                self.set_cursor_dose(float(self._x_map.to_data(x)))
            return True
        return super().on_touch_move(touch)

    def on_touch_up(self, touch):  # type: ignore[no-untyped-def]
        if touch.grab_current is self:
            touch.ungrab(self)
            return True
        return super().on_touch_up(touch)

    # ------------------------------------------------------------------ drawing
    def _texture(self, text: str, *, bold: bool = False,
                 font_size: float | None = None) -> object:
        """White text texture (tinted by the current Color when drawn), cached by text;
        in the plot's font size unless ``font_size`` is given."""
        size = float(self.font_size if font_size is None else font_size)
        key = (text, size, bold)
        tex = self._textures.get(key)
        if tex is None:
            if len(self._textures) > _TEXTURE_CACHE_LIMIT:
                self._textures.clear()
            label = CoreLabel(text=text, font_size=size, bold=bold)
            label.refresh()
            tex = label.texture
            self._textures[key] = tex
        return tex

    def _choose_dose_max(self) -> float:
        if self._dose_max_fixed is not None:
            return self._dose_max_fixed
        top = max((c.last_dose_with_volume() for c in self._curves), default=0.0)
        if self._prescription is not None:
            top = max(top, 1.05 * self._prescription)
        return nice_upper_limit(top * 1.02 if top > 0 else 0.0)

    def _visible_curves(self) -> list[DvhCurve]:
        return [c for c in self._curves if c.name not in self._hidden]

    def _legend_entries(self) -> list[tuple[str, tuple[float, ...], bool]]:
        """(text, colour rgba, dashed) of each legend row, top to bottom."""
        visible = self._visible_curves()
        groups: list[str] = []
        for c in visible:
            if c.group and c.group not in groups:
                groups.append(c.group)
        entries: list[tuple[str, tuple[float, ...], bool]] = []
        if len(groups) > 1:
            # One row per structure (colour), then one row per plan/model (line style).
            seen: list[str] = []
            for c in visible:
                if c.name not in seen:
                    seen.append(c.name)
                    entries.append((c.name, _rgba(c.colour_rgb), False))
            for g in groups:
                dashed = all(c.dashed for c in visible if c.group == g)
                entries.append((g, tuple(self.foreground_color), dashed))
        else:
            seen_keys: list[tuple[str, bool]] = []
            for c in visible:
                if (c.label, c.dashed) not in seen_keys:
                    seen_keys.append((c.label, c.dashed))
                    entries.append((c.label, _rgba(c.colour_rgb), c.dashed))
        return entries

    def redraw(self) -> None:
        """Rebuild axes, curves and legend for the current size, curves and settings."""
        g = self._plot_group
        g.clear()
        self._legend_labels = []
        self._x_label_lines = []
        self._x_label_box = (self.x, self.y, self.x, self.y)
        g.add(Color(*self.background_color))
        g.add(Rectangle(pos=self.pos, size=self.size))
        if self.width < dp(80) or self.height < dp(60):
            self._x_map = self._y_map = None
            self._cursor_group.clear()
            return
        pad = dp(8)
        tick_len = dp(4)
        line_h = self._texture("0").size[1]  # type: ignore[attr-defined]

        entries = self._legend_entries()
        sample_w = dp(26)
        legend_w = 0.0
        if entries:
            text_w = max(self._texture(t).size[0] for t, _, _ in entries)  # type: ignore
            legend_w = min(sample_w + dp(6) + text_w + 2 * pad, 0.4 * self.width)

        dose_max = self._choose_dose_max()
        x_ticks, x_texts = ticks_and_labels(0.0, dose_max, max_ticks=8)
        y_ticks, y_texts = ticks_and_labels(0.0, VOLUME_MAX_PERCENT, max_ticks=6)
        y_text_w = max(self._texture(t).size[0] for t in y_texts)  # type: ignore[attr-defined]
        left = self.x + pad + line_h + pad + y_text_w + tick_len + dp(3)
        right = self.right - pad - legend_w
        # The dose axis title wraps to the width from the widget's left edge to the plot's right
        # (a long one ran into the next panel): it is below the volume axis's ticks and title,
        # and the plot alone gave a model's name three lines in a 1024 x 640 window.
        title_left = self.x + pad
        title_lines, title_size = self._x_title(max(right - title_left, dp(40)))
        title = [self._texture(t, font_size=title_size) for t in title_lines]
        title_h = sum(tex.size[1] for tex in title)  # type: ignore[attr-defined]
        bottom = self.y + pad + title_h + dp(4) + line_h + tick_len + dp(2)
        top = self.top - pad - line_h - dp(4)  # a line for the cursor readout
        if right - left < dp(40) or top - bottom < dp(40):
            self._x_map = self._y_map = None
            self._cursor_group.clear()
            return
        # Fewer x ticks when labels would collide.
        label_w = max(self._texture(t).size[0] for t in x_texts)  # type: ignore
        max_x_ticks = max(2, min(8, int((right - left) / (label_w + dp(12))) + 1))
        x_ticks, x_texts = ticks_and_labels(0.0, dose_max, max_ticks=max_x_ticks)
        self._x_map = xm = AxisMapping(0.0, dose_max, left, right)
        self._y_map = ym = AxisMapping(0.0, VOLUME_MAX_PERCENT, bottom, top)
        self._x_decimals = _decimals_of(x_texts)

        # Grid and ticks.
        g.add(Color(*self.grid_color))
        for xv in xm.to_pixel(x_ticks):
            g.add(Line(points=[float(xv), bottom, float(xv), top], width=1))
        for yv in ym.to_pixel(y_ticks):
            g.add(Line(points=[left, float(yv), right, float(yv)], width=1))
        g.add(Color(*self.foreground_color))
        g.add(Line(rectangle=(left, bottom, right - left, top - bottom), width=1))
        for xv, text in zip(xm.to_pixel(x_ticks), x_texts, strict=True):
            xv = float(xv)
            g.add(Line(points=[xv, bottom, xv, bottom - tick_len], width=1))
            tex = self._texture(text)
            w, h = tex.size  # type: ignore[attr-defined]
            g.add(Rectangle(texture=tex, size=(w, h),
                            pos=(round(xv - w / 2), round(bottom - tick_len - dp(2) - h))))
        for yv, text in zip(ym.to_pixel(y_ticks), y_texts, strict=True):
            yv = float(yv)
            g.add(Line(points=[left, yv, left - tick_len, yv], width=1))
            tex = self._texture(text)
            w, h = tex.size  # type: ignore[attr-defined]
            g.add(Rectangle(texture=tex, size=(w, h),
                            pos=(round(left - tick_len - dp(3) - w), round(yv - h / 2))))
        ty = self.y + pad + title_h
        x0 = x1 = (left + right) / 2
        for tex in title:  # first line on top, centred under the plot as far as it can be
            w, h = tex.size  # type: ignore[attr-defined]
            ty -= h
            tx = max(title_left, min((left + right - w) / 2, right - w))
            g.add(Rectangle(texture=tex, size=(w, h), pos=(round(tx), round(ty))))
            x0, x1 = min(x0, tx), max(x1, tx + w)
        self._x_label_lines = title_lines
        self._x_label_box = (x0, self.y + pad, x1, self.y + pad + title_h)
        tex = self._texture(self.y_label)
        w, h = tex.size  # type: ignore[attr-defined]
        cx, cy = self.x + pad + h / 2, (bottom + top) / 2
        g.add(PushMatrix())
        g.add(Rotate(angle=90, origin=(cx, cy)))
        g.add(Rectangle(texture=tex, size=(w, h), pos=(round(cx - w / 2), round(cy - h / 2))))
        g.add(PopMatrix())

        # Prescription marker under the curves.
        if self._prescription is not None and self._prescription <= dose_max:
            px = float(xm.to_pixel(self._prescription))
            g.add(Color(*self.prescription_color))
            self._add_dashed(g, np.array([[px, bottom], [px, top]]), dp(1), dp(4), dp(3))
            tex = self._texture("Rx")
            w, h = tex.size  # type: ignore[attr-defined]
            g.add(Rectangle(texture=tex, size=(w, h), pos=(round(px + dp(3)),
                                                          round(top - h - dp(2)))))

        # Curves.
        key = (xm, ym, float(self.line_width))
        for c in self._visible_curves():
            cached = self._curve_cache.get(id(c))
            if cached is None or cached[0] != key:
                cached = (key, self._curve_instructions(c, xm, ym))
                self._curve_cache[id(c)] = cached
            for instruction in cached[1]:
                g.add(instruction)

        # Legend, right of the plot area.
        if entries:
            lx = right + pad
            ly = top
            for text, rgba, dashed in entries:
                tex = self._texture(text)
                w, h = tex.size  # type: ignore[attr-defined]
                ly -= h + dp(4)
                ym_row = ly + h / 2
                g.add(Color(*rgba))
                sample = np.array([[lx, ym_row], [lx + sample_w, ym_row]])
                if dashed:
                    self._add_dashed(g, sample, max(self.line_width, dp(2)), dp(5), dp(3))
                else:
                    g.add(Rectangle(pos=(lx, ym_row - max(self.line_width, dp(2)) / 2),
                                    size=(sample_w, max(self.line_width, dp(2)))))
                g.add(Color(*self.foreground_color))
                max_text_w = max(0.0, self.right - pad - (lx + sample_w + dp(6)))
                shown_w = min(w, max_text_w)
                g.add(Rectangle(texture=tex, pos=(lx + sample_w + dp(6), ly),
                                size=(shown_w, h),
                                tex_coords=_crop_tex_coords(tex, shown_w / w if w else 1.0)))
                self._legend_labels.append(text)
        self._draw_cursor()

    def _curve_instructions(self, c: DvhCurve, xm: AxisMapping, ym: AxisMapping
                            ) -> list[object]:
        """Colour and line (or dash mesh) instructions of one curve on the given axes."""
        xy = _clip_to_dose(*c.drawn_points(), xm.data_hi)
        pts = np.empty((xy.shape[0], 2))
        pts[:, 0] = xm.to_pixel(xy[:, 0])
        pts[:, 1] = ym.to_pixel(xy[:, 1])
        pts = _drop_collinear(pts)
        out: list[object] = [Color(*_rgba(c.colour_rgb))]
        if c.dashed:
            out.extend(_dash_meshes(pts, self.line_width, dp(7), dp(5)))
        else:
            out.append(Line(points=pts.ravel().tolist(), width=self.line_width,
                            joint="bevel", cap="none"))
        return out

    def _add_dashed(self, g: InstructionGroup, pts: FloatArray, width: float,
                    dash: float, gap: float) -> None:
        for mesh in _dash_meshes(pts, width, dash, gap):
            g.add(mesh)

    def _draw_cursor(self) -> None:
        cg = self._cursor_group
        cg.clear()
        dose = self._cursor_dose
        if dose is None or self._x_map is None or self._y_map is None:
            self.readout_text = ""
            return
        x0, y0, x1, y1 = self.plot_area
        px = float(self._x_map.to_pixel(dose))
        if not x0 <= px <= x1:
            self.readout_text = ""
            return
        cg.add(Color(*self.cursor_color))
        cg.add(Line(points=[px, y0, px, y1], width=1))
        unit = _unit_of(self.x_label)
        decimals = self._x_decimals + 1
        parts = []
        r = dp(3)
        for c in self._visible_curves():
            v = c.volume_at(dose)
            parts.append(f"{c.label} {v:.1f} %")
            py = float(self._y_map.to_pixel(v))
            cg.add(Color(*_rgba(c.colour_rgb)))
            cg.add(Line(circle=(px, py, r), width=1))
        head = f"D = {dose:.{decimals}f}" + (f" {unit}" if unit else "")
        self.readout_text = head + (": " + ", ".join(parts) if parts else "")
        tex = self._texture(self.readout_text)
        w, h = tex.size  # type: ignore[attr-defined]
        shown_w = min(w, max(0.0, self.right - x0 - dp(8)))
        cg.add(Color(*self.foreground_color))
        cg.add(Rectangle(texture=tex, pos=(x0, round(y1 + dp(4))), size=(shown_w, h),
                         tex_coords=_crop_tex_coords(tex, shown_w / w if w else 1.0)))


def _decimals_of(texts: list[str]) -> int:
    return max((len(t.split(".")[1]) if "." in t else 0) for t in texts) if texts else 0


def _crop_tex_coords(tex: object, fraction: float) -> tuple[float, ...]:
    """Texture coordinates that show the left ``fraction`` of a text texture (long labels)."""
    u0, v0, u1, _v1, _u2, v2, _u3, _v3 = tex.tex_coords  # type: ignore[attr-defined]
    f = min(max(fraction, 0.0), 1.0)
    ur = u0 + (u1 - u0) * f
    return (u0, v0, ur, v0, ur, v2, u0, v2)


def _clip_to_dose(dose: FloatArray, volume: FloatArray, dose_max: float) -> FloatArray:
    """(K, 2) points of the curve with dose <= dose_max, ending exactly at dose_max if cut."""
    inside = dose <= dose_max
    pts = np.stack((dose[inside], volume[inside]), axis=1)
    if not inside.all() and inside.any():
        pts = np.vstack((pts, [[dose_max, float(np.interp(dose_max, dose, volume))]]))
    if pts.shape[0] < 2:
        v0 = float(volume[0])
        pts = np.array([[0.0, v0], [dose_max, v0 if dose[0] > dose_max else 0.0]])
    return pts


def _drop_collinear(pts: FloatArray) -> FloatArray:
    """Remove interior points inside exactly horizontal or vertical runs.

    A DVH on 400 equal bins has long flat runs at 100 % and 0 %; dropping their interior points
    keeps the line instructions small without changing a drawn pixel.
    """
    if pts.shape[0] <= 2:
        return pts
    a, b, c = pts[:-2], pts[1:-1], pts[2:]
    flat = (a[:, 1] == b[:, 1]) & (b[:, 1] == c[:, 1]) & (a[:, 0] <= b[:, 0]) & (b[:, 0] <= c[:, 0])
    falling = (a[:, 1] >= b[:, 1]) & (b[:, 1] >= c[:, 1])
    rising = (a[:, 1] <= b[:, 1]) & (b[:, 1] <= c[:, 1])
    upright = (a[:, 0] == b[:, 0]) & (b[:, 0] == c[:, 0]) & (falling | rising)
    keep = np.concatenate(([True], ~(flat | upright), [True]))
    return pts[keep]


def _dash_meshes(pts: FloatArray, width: float, dash: float, gap: float) -> list[Mesh]:
    """Triangle meshes drawing the dashes of a polyline (pixels) ``width`` px wide."""
    segments = dash_segments(pts, dash, gap)
    # 4 vertices per piece; Kivy meshes index with 16-bit integers, so chunk.
    return [_quads_mesh(segments[start:start + 16000], width)
            for start in range(0, segments.shape[0], 16000)]


def _quads_mesh(segments: FloatArray, width: float) -> Mesh:
    """A triangle mesh drawing each (2, 2) segment as a ``width`` px wide quad."""
    a = segments[:, 0, :]
    b = segments[:, 1, :]
    d = b - a
    length = np.hypot(d[:, 0], d[:, 1])
    length[length == 0] = 1.0
    n = np.stack((-d[:, 1], d[:, 0]), axis=1) / length[:, None] * (width / 2.0)
    m = segments.shape[0]
    verts = np.zeros((m, 4, 4), dtype=np.float64)
    verts[:, 0, :2] = a + n
    verts[:, 1, :2] = a - n
    verts[:, 2, :2] = b - n
    verts[:, 3, :2] = b + n
    base = (np.arange(m) * 4)[:, None]
    indices = (base + np.array([0, 1, 2, 2, 3, 0])[None, :]).ravel()
    return Mesh(vertices=verts.ravel().tolist(), indices=indices.tolist(), mode="triangles")
