"""The plan report as one page image (PNG) and one-page PDF: header, views, DVH, metrics.

The report is a Kivy widget tree drawn offscreen into an ``Fbo`` on a white page (A4 at 200 dpi
by default), so it looks like the panels of the app. Kivy needs an OpenGL context for that: call
:func:`render_report` from the Kivy main thread of the running app (or any process where
``kivy.core.window`` has been imported, which opens a window).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from kivy.graphics import (
    ClearBuffers,
    ClearColor,
    Color,
    Fbo,
    Line,
    Rectangle,
    Translate,
)
from kivy.graphics.texture import Texture
from kivy.lang import Builder
from kivy.uix.label import Label
from kivy.uix.layout import Layout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget
from numpy.typing import NDArray

from app.pdf_image import write_pdf_image
from app.widgets.dvh_plot import DvhCurve, DvhPlot
from app.widgets.metrics_table import MetricsRow, MetricsTable
from planning.atomic import atomic_binary_file
from planning.errors import InputError

#: A4 portrait (210 x 297 mm) at 200 dpi, in pixels (width, height).
A4_200DPI_PX: tuple[int, int] = (1654, 2339)
_A4_WIDTH_IN = 210.0 / 25.4
_INK = (0.08, 0.09, 0.10, 1.0)
_MUTED = (0.35, 0.37, 0.40, 1.0)
_RULE = (0.75, 0.77, 0.80, 1.0)


@dataclass(frozen=True)
class ReportContent:
    """Everything a plan report shows, prepared by the caller.

    Attributes
    ----------
    title : str
        Report title ("Plan report: HN-01 / Plan A").
    lines : list of str
        Header lines: patient, plan, prescription, RBE model, beams, date.
    view_images : list of (str, (H, W, 4) uint8 array)
        Caption and pixels (row 0 at the top) of each slice view the caller grabbed.
    dvh_curves : list of DvhCurve
        Curves of the DVH panel.
    dvh_x_label : str
        Dose axis title, e.g. "Dose (Gy(RBE))".
    prescription : float or None
        Prescribed dose for the DVH marker (dose axis units), or None.
    metrics_columns : list of str
        Metric column titles ("D98", "D95", "D2", "Dmean", "Dmax", "V95").
    metrics_rows : list of MetricsRow
        One row per structure, values already formatted.
    footer : str
        Small print at the bottom (software version, "not for clinical use" notes, ...).
    """

    title: str
    lines: list[str]
    view_images: list[tuple[str, NDArray[np.uint8]]]
    dvh_curves: list[DvhCurve]
    dvh_x_label: str
    prescription: float | None
    metrics_columns: list[str]
    metrics_rows: list[MetricsRow]
    footer: str


# ---------------------------------------------------------------------- image files
def png_bytes(rgba: NDArray[np.uint8]) -> bytes:
    """Encode an (H, W, 4) uint8 RGBA array (row 0 at the top) as a PNG file.

    8-bit RGBA, no interlace, filter type 0 on every row (PNG specification, ISO/IEC 15948).
    """
    a = np.asarray(rgba)
    if a.ndim != 3 or a.shape[2] != 4 or a.dtype != np.uint8 or 0 in a.shape[:2]:
        raise InputError(f"PNG image must be an (H, W, 4) uint8 array, got {a.shape} {a.dtype}")
    height, width = a.shape[:2]
    rows = np.zeros((height, 1 + 4 * width), dtype=np.uint8)
    rows[:, 1:] = a.reshape(height, 4 * width)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def write_png(path: str | os.PathLike[str], rgba: NDArray[np.uint8]) -> None:
    """Write an (H, W, 4) uint8 RGBA array (row 0 at the top) to ``path`` as PNG, atomically."""
    data = png_bytes(rgba)
    with atomic_binary_file(path) as fh:
        fh.write(data)


def render_widget_rgba(widget: Widget) -> NDArray[np.uint8]:
    """Draw ``widget`` (and its children) offscreen and read its pixels.

    The widget's canvas is lent to an ``Fbo`` for the draw and put back in its parent's canvas
    at the same index afterwards.

    Returns
    -------
    (H, W, 4) uint8 array
        RGBA, H x W = the widget's size rounded to whole pixels, row 0 at the top.
    """
    width, height = round(widget.width), round(widget.height)
    if width <= 0 or height <= 0:
        raise InputError(f"cannot render a widget of size {widget.width} x {widget.height} px")
    parent_canvas = widget.parent.canvas if widget.parent is not None else None
    index = parent_canvas.indexof(widget.canvas) if parent_canvas is not None else -1
    if index > -1:
        parent_canvas.remove(widget.canvas)
    fbo = Fbo(size=(width, height), with_stencilbuffer=True)
    with fbo:
        ClearColor(0, 0, 0, 0)
        ClearBuffers()
        Translate(-widget.x, -widget.y, 0)
    fbo.add(widget.canvas)
    try:
        fbo.draw()
        pixels = np.frombuffer(fbo.pixels, dtype=np.uint8).reshape(height, width, 4)
    finally:
        fbo.remove(widget.canvas)
        if index > -1:
            parent_canvas.insert(index, widget.canvas)
    # Fbo pixels start at the bottom row (OpenGL); images start at the top.
    return pixels[::-1].copy()


# ---------------------------------------------------------------------- report tree
def _text(text: str, font_size: float, *, bold: bool = False,
          color: tuple[float, ...] = _INK, max_width: float | None = None) -> Label:
    label = Label(text=text, font_size=font_size, bold=bold, color=color,
                  size_hint=(None, None), halign="left", valign="top")
    if max_width is not None:
        label.text_size = (max_width, None)
    label.texture_update()
    label.size = label.texture_size
    return label


class _ImageView(Widget):
    """An RGBA image fitted into the widget's box (aspect kept), with a thin frame."""

    def __init__(self, rgba: NDArray[np.uint8], **kwargs: object) -> None:
        super().__init__(**kwargs)
        a = np.asarray(rgba)
        if a.ndim != 3 or a.shape[2] != 4 or a.dtype != np.uint8 or 0 in a.shape[:2]:
            raise InputError(f"report view images must be (H, W, 4) uint8, got {a.shape} "
                             f"{a.dtype}")
        self.image_height_px, self.image_width_px = a.shape[:2]
        tex = Texture.create(size=(a.shape[1], a.shape[0]), colorfmt="rgba")
        # Textures fill from the bottom row up: upload the image upside down.
        tex.blit_buffer(np.ascontiguousarray(a[::-1]).tobytes(), colorfmt="rgba",
                        bufferfmt="ubyte")
        with self.canvas:
            Color(1, 1, 1, 1)
            self._rect = Rectangle(texture=tex)
            Color(*_RULE)
            self._frame = Line(width=1)
        self.bind(pos=self._place, size=self._place)
        self._place()

    def _place(self, *_args: object) -> None:
        scale = min(self.width / self.image_width_px, self.height / self.image_height_px)
        w, h = self.image_width_px * scale, self.image_height_px * scale
        x, y = self.x + (self.width - w) / 2, self.y + (self.height - h) / 2
        self._rect.pos, self._rect.size = (x, y), (w, h)
        self._frame.rectangle = (x, y, w, h)


class _Page(Widget):
    """White page background."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        with self.canvas.before:
            Color(1, 1, 1, 1)
            self._bg = Rectangle(pos=self.pos, size=self.size)
        self.bind(size=lambda _w, s: setattr(self._bg, "size", s))


def _settle(root: Widget) -> None:
    """Lay out a tree that is not in the window now (layouts normally wait for the next frame)."""
    for _ in range(3):
        for w in root.walk(restrict=True):
            if isinstance(w, Label):
                w.texture_update()
            if isinstance(w, Layout):
                w.do_layout()
            if isinstance(w, ScrollView):
                w.update_from_scroll()
        # kv canvas expressions (label text rectangles) run at the next frame unless synced.
        Builder.sync()


def _build_page(content: ReportContent, width: int, height: int) -> tuple[_Page, DvhPlot]:
    s = width / A4_200DPI_PX[0]  # sizes below are designed for A4 at 200 dpi
    margin, gap = 90 * s, 28 * s
    inner_w = width - 2 * margin
    page = _Page(size=(width, height), pos=(0, 0))
    top = height - margin

    title = _text(content.title, 44 * s, bold=True, max_width=inner_w)
    title.pos = (margin, top - title.height)
    page.add_widget(title)
    top = title.y - 14 * s
    for line in content.lines:
        label = _text(line, 25 * s, max_width=inner_w)
        label.pos = (margin, top - label.height)
        page.add_widget(label)
        top = label.y - 6 * s
    top -= gap / 2
    with page.canvas:
        Color(*_RULE)
        Line(points=[margin, top, width - margin, top], width=max(1.0, 1.5 * s))
    top -= gap

    footer = _text(content.footer, 18 * s, color=_MUTED, max_width=inner_w)
    footer.pos = (margin, margin - footer.height / 2)
    page.add_widget(footer)
    bottom = footer.top + gap

    # Slice views, up to three in a row, each with its caption below.
    views = content.view_images
    if views:
        per_row = min(3, len(views))
        n_rows = -(-len(views) // per_row)
        cell_w = (inner_w - (per_row - 1) * gap) / per_row
        cell_h = min(cell_w, 0.27 * height / n_rows)
        for first in range(0, len(views), per_row):
            captions = [_text(c, 22 * s, color=_MUTED, max_width=cell_w)
                        for c, _ in views[first:first + per_row]]
            for col, ((_, rgba), cap) in enumerate(zip(views[first:first + per_row], captions,
                                                       strict=True)):
                x = margin + col * (cell_w + gap)
                view = _ImageView(rgba, size=(cell_w, cell_h), pos=(x, top - cell_h))
                cap.pos = (x, view.y - 6 * s - cap.height)
                page.add_widget(view)
                page.add_widget(cap)
            top -= cell_h + 6 * s + max(c.height for c in captions) + gap

    # DVH and metrics table share the rest; the table rows shrink when there are many.
    table = MetricsTable(font_size=22 * s, row_height=38 * s,
                         background_color=(1, 1, 1, 1), stripe_color=(0.95, 0.96, 0.97, 1),
                         header_color=(0.88, 0.90, 0.92, 1), foreground_color=_INK)
    table.set_rows(content.metrics_columns, content.metrics_rows)
    available = top - bottom
    min_dvh = 0.18 * height
    if available - table.content_height - gap < min_dvh:
        # Shrink rows (and their text) until the table fits under a DVH of minimum height.
        row_h = table.row_height * (available - gap - min_dvh) / table.content_height
        if row_h < 20 * s:
            raise InputError(
                f"the report page ({width} x {height} px) has no room for {len(views)} views, "
                f"a DVH and {len(content.metrics_rows)} metrics rows: use fewer structures or "
                "views")
        table.row_height = row_h
        table.font_size = min(22 * s, 0.58 * row_h)
    table_h = table.content_height
    # DVH right under the views, the table right under the DVH; spare room stays at the bottom.
    dvh_h = min(available - table_h - gap, 0.42 * height)
    plot = DvhPlot(font_size=22 * s, line_width=max(1.0, 2.5 * s),
                   background_color=(1, 1, 1, 1), foreground_color=_INK,
                   grid_color=(0.86, 0.87, 0.89, 1), prescription_color=(0.45, 0.45, 0.45, 1),
                   x_label=content.dvh_x_label, size=(inner_w, dvh_h),
                   pos=(margin, top - dvh_h))
    table.size = (inner_w, table_h)
    table.pos = (margin, plot.y - gap - table_h)
    page.add_widget(table)
    plot.set_curves(content.dvh_curves)
    plot.set_prescription(content.prescription)
    page.add_widget(plot)
    _settle(page)
    plot.redraw()
    return page, plot


def render_report(content: ReportContent, png_path: str | os.PathLike[str] | None = None,
                  pdf_path: str | os.PathLike[str] | None = None, *,
                  size_px: tuple[int, int] = A4_200DPI_PX) -> NDArray[np.uint8]:
    """Draw the plan report page and write it as PNG and/or PDF (atomically).

    Parameters
    ----------
    content : ReportContent
        What to show.
    png_path, pdf_path : path, optional
        Files to write; either, both or neither (then only the pixels are returned).
    size_px : (width, height)
        Page size in pixels; the PDF page is this at the resolution that makes the width
        A4's 210 mm (200 dpi for the default A4 size).

    Returns
    -------
    (H, W, 4) uint8 array
        The page, RGBA, row 0 at the top, H x W = ``size_px`` reversed.

    Raises
    ------
    InputError
        For a page size below 400 x 400 px or contents that do not fit on one page.
    """
    width, height = (int(v) for v in size_px)
    if width < 400 or height < 400:
        raise InputError(f"report page must be at least 400 x 400 px, got {width} x {height}")
    page, plot = _build_page(content, width, height)
    try:
        rgba = render_widget_rgba(page)
    finally:
        # Detach the plot so that it lets go of the window's mouse position.
        page.remove_widget(plot)
    if png_path is not None:
        write_png(png_path, rgba)
    if pdf_path is not None:
        write_pdf_image(pdf_path, rgba, dpi=width / _A4_WIDTH_IN, title=content.title)
    return rgba
