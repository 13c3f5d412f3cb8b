"""Vector figures of the plan document (ReportLab graphics): slice views with outlines,
the dose colour bar, the isodose legend and the DVH chart.

Sizes are in PDF points (1/72 inch). Slice pixels are embedded as an image; everything else
(outlines, isodose lines, letters, scales, axes, curves, text) is vector graphics and text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image as PilImage
from reportlab.graphics.shapes import Drawing, Group, Line, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase.pdfmetrics import stringWidth

from planning.compare.images import colour_map
from planning.document.content import DvhLine
from planning.document.fonts import FONT, text_runs
from planning.document.views import DoseDisplay, OutlineSet, SliceView

_GRID = colors.Color(0.85, 0.86, 0.88)
_INK = colors.Color(0.1, 0.1, 0.12)
#: Dash pattern (on, off, points) of the structure outlines on the views; isodose lines are
#: solid. Structure colours come from the structure set and may be isodose colours (the demo's
#: GTV is the red of the 107 % line, its PTV the orange of the 95 % line): the line style tells
#: them apart, as the app's views do.
STRUCTURE_DASH = (2.0, 1.5)


def _text(x: float, y: float, text: str, size: float) -> Group:
    """``text`` from ``(x, y)``, each run in the font that shows it (a structure's name may
    be Japanese: :func:`planning.document.fonts.text_runs`)."""
    group = Group()
    for run, font in text_runs(text):
        group.add(String(x, y, run, fontName=font, fontSize=size, fillColor=_INK))
        x += stringWidth(run, font, size)
    return group


def _rgb(c: Sequence[int]) -> colors.Color:
    return colors.Color(c[0] / 255.0, c[1] / 255.0, c[2] / 255.0)


def _outline_group(sets: Sequence[OutlineSet], scale: float, height: float,
                   width: float, dash: Sequence[float] = ()) -> Group:
    group = Group()
    for s in sets:
        for line in s.lines:
            pts: list[float] = []
            for col, row in line:
                pts += [float(col + 0.5) * scale, height - float(row + 0.5) * scale]
            group.add(PolyLine(pts, strokeColor=_rgb(s.colour_rgb), strokeWidth=width,
                               strokeDashArray=list(dash) or None))
    return group


class _OverPixels(Drawing):
    """A drawing over a square of pixels that the PDF holds as an image object.

    ReportLab's ``Image`` shape writes an inline image (ASCII85 inside the page's content
    stream), which some readers fail to parse for some pixel contents: pypdf 7.1 stopped with
    "Unexpected end of stream" on a plan document's dose views (2026-12-05). An image object
    (``drawImage``) is read by every reader.
    """

    def __init__(self, width: float, height: float, rgb: np.ndarray, size_pt: float) -> None:
        super().__init__(width, height)
        self._pixels = ImageReader(PilImage.fromarray(rgb, "RGB"))
        self._size_pt = size_pt

    def draw(self, *args: Any, **kwargs: Any) -> None:
        self.canv.drawImage(self._pixels, 0, 0, self._size_pt, self._size_pt)
        super().draw(*args, **kwargs)


def view_drawing(view: SliceView, size_pt: float) -> Drawing:
    """A square drawing of one view: pixels, structure outlines (thin, dashed:
    :data:`STRUCTURE_DASH`), isodose lines (thicker, solid), edge letters, the view's name and
    a 5 cm scale bar."""
    n = view.rgb.shape[0]
    scale = size_pt / n
    d = _OverPixels(size_pt, size_pt + 12, view.rgb, size_pt)
    d.add(_outline_group(view.structures, scale, size_pt, 0.7, STRUCTURE_DASH))
    d.add(_outline_group(view.isodoses, scale, size_pt, 1.0))
    top, bottom, left, right = (view.edge_letters[k] for k in range(4))
    white = colors.white
    d.add(String(size_pt / 2, size_pt - 9, top, fontName=FONT, fontSize=8, fillColor=white,
                 textAnchor="middle"))
    d.add(String(size_pt / 2, 3, bottom, fontName=FONT, fontSize=8, fillColor=white,
                 textAnchor="middle"))
    d.add(String(3, size_pt / 2, left, fontName=FONT, fontSize=8, fillColor=white))
    d.add(String(size_pt - 3, size_pt / 2, right, fontName=FONT, fontSize=8, fillColor=white,
                 textAnchor="end"))
    bar_pt = 50.0 / view.pixel_mm * scale
    d.add(Line(size_pt - 6 - bar_pt, 14, size_pt - 6, 14, strokeColor=white, strokeWidth=1.5))
    d.add(String(size_pt - 6 - bar_pt / 2, 17, "5 cm", fontName=FONT, fontSize=6,
                 fillColor=white, textAnchor="middle"))
    axis = {"axial": "z", "coronal": "y", "sagittal": "x"}[view.name]
    d.add(String(0, size_pt + 3, f"{view.name.capitalize()}, {axis} = {view.plane_mm:.1f} mm",
                 fontName=FONT, fontSize=8, fillColor=_INK))
    return d


def colour_bar_drawing(display: DoseDisplay, width_pt: float, steps: int = 64) -> Drawing:
    """The dose colour scale as ``steps`` filled rectangles with tick labels (dose units)."""
    height = 34.0
    d = Drawing(width_pt, height)
    lo, hi = display.wash_min, display.wash_max
    values = np.linspace(lo, hi, steps)
    rgb = colour_map(values, lo, hi, "dose")
    w = width_pt / steps
    for k in range(steps):
        d.add(Rect(k * w, 14, w + 0.3, 10, fillColor=_rgb(rgb[k]), strokeColor=None))
    d.add(Rect(0, 14, width_pt, 10, fillColor=None, strokeColor=_INK, strokeWidth=0.4))
    for k in range(5):
        value = lo + (hi - lo) * k / 4
        x = width_pt * k / 4
        d.add(Line(x, 12, x, 14, strokeColor=_INK, strokeWidth=0.4))
        d.add(String(x, 3, f"{value:.2f}", fontName=FONT, fontSize=7, fillColor=_INK,
                     textAnchor="start" if k == 0 else "end" if k == 4 else "middle"))
    d.add(String(0, 27, f"Dose ({display.unit}); no colour below {display.wash_min:.2f}",
                 fontName=FONT, fontSize=7, fillColor=_INK))
    return d


def isodose_legend_drawing(display: DoseDisplay, width_pt: float) -> Drawing:
    """One entry per isodose level: its line colour, % of the reference and dose."""
    height = 34.0
    d = Drawing(width_pt, height)
    d.add(String(0, 27, f"Isodose lines (solid), {display.reference_text}",
                 fontName=FONT, fontSize=7, fillColor=_INK))
    step = width_pt / max(len(display.isodose_percent), 1)
    for k, (p, c) in enumerate(zip(display.isodose_percent, display.isodose_rgb, strict=True)):
        x = k * step
        d.add(Line(x, 18, x + 16, 18, strokeColor=_rgb(c), strokeWidth=2))
        d.add(String(x + 19, 15.5, f"{p:g} %", fontName=FONT, fontSize=7, fillColor=_INK))
        d.add(String(x + 19, 5, f"{p / 100 * display.reference_dose:.2f}", fontName=FONT,
                     fontSize=6, fillColor=_INK))
    return d


def structure_legend_drawing(views: Sequence[SliceView], width_pt: float) -> Drawing:
    """The structures outlined on ``views`` (in their order of first appearance), each with a
    dashed sample of its outline, in rows across ``width_pt`` after the title."""
    size, sample, gap, line_pt = 7.0, 16.0, 12.0, 11.0
    title = "Structure outlines (dashed):"
    entries = list(dict.fromkeys((s.label, s.colour_rgb) for v in views for s in v.structures))
    placed: list[tuple[float, int, str, tuple[int, int, int]]] = []  # x, row, name, colour
    x, row = stringWidth(title, FONT, size) + gap, 0
    for name, colour in entries:
        w = sample + 3 + sum(stringWidth(run, font, size) for run, font in text_runs(name))
        if x > 0 and x + w > width_pt:
            x, row = 0.0, row + 1
        placed.append((x, row, name, colour))
        x += w + gap
    height = line_pt * (row + 1)
    d = Drawing(width_pt, height)
    top = height - 8
    d.add(String(0, top, title, fontName=FONT, fontSize=size, fillColor=_INK))
    for x, k, name, colour in placed:
        y = top - line_pt * k
        d.add(Line(x, y + 2.5, x + sample, y + 2.5, strokeColor=_rgb(colour),
                   strokeWidth=1.2, strokeDashArray=list(STRUCTURE_DASH)))
        d.add(_text(x + sample + 3, y, name, size))
    return d


def _nice_step(span: float) -> float:
    raw = span / 6.0
    magnitude = 10.0 ** np.floor(np.log10(raw)) if raw > 0 else 1.0
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * magnitude:
            return float(m * magnitude)
    return float(10 * magnitude)


def dvh_drawing(lines: Sequence[DvhLine], unit: str, width_pt: float, height_pt: float,
                legend: Sequence[tuple[str, tuple[float, ...]]]) -> Drawing:
    """Cumulative DVHs: dose on x (``unit``), volume % on y, one colour per structure, each
    line in its model's dash pattern (the plan's model solid); legend on the right: the
    structures, then ``legend``'s (label, dash pattern) pairs."""
    left, bottom, legend_w, top_pad = 34.0, 26.0, 120.0, 6.0
    pw, ph = width_pt - left - legend_w - 8, height_pt - bottom - top_pad
    d_max = max((float(line.dose[-1]) for line in lines), default=1.0) or 1.0
    d = Drawing(width_pt, height_pt)
    d.add(Rect(left, bottom, pw, ph, fillColor=colors.white, strokeColor=_INK,
               strokeWidth=0.5))
    step = _nice_step(d_max)
    for k in range(int(d_max / step) + 1):
        x = left + pw * k * step / d_max
        d.add(Line(x, bottom, x, bottom + ph, strokeColor=_GRID, strokeWidth=0.3))
        d.add(String(x, bottom - 9, f"{k * step:g}", fontName=FONT, fontSize=7,
                     fillColor=_INK, textAnchor="middle"))
    for pct in range(0, 101, 20):
        y = bottom + ph * pct / 100
        d.add(Line(left, y, left + pw, y, strokeColor=_GRID, strokeWidth=0.3))
        d.add(String(left - 3, y - 2.5, str(pct), fontName=FONT, fontSize=7, fillColor=_INK,
                     textAnchor="end"))
    d.add(String(left + pw / 2, 3, f"Dose ({unit})", fontName=FONT, fontSize=8,
                 fillColor=_INK, textAnchor="middle"))
    d.add(Group(String(0, 0, "Volume (%)", fontName=FONT, fontSize=8, fillColor=_INK,
                       textAnchor="middle"), transform=(0, 1, -1, 0, 9, bottom + ph / 2)))
    for line in lines:
        pts: list[float] = []
        for dose, vol in zip(line.dose, line.volume_fraction, strict=True):
            pts += [left + pw * float(dose) / d_max, bottom + ph * float(vol)]
        d.add(PolyLine(pts, strokeColor=_rgb(line.colour_rgb), strokeWidth=1.0,
                       strokeDashArray=list(line.dash) or None))
    names = list(dict.fromkeys(line.structure for line in lines))
    colour_of = {line.structure: line.colour_rgb for line in lines}
    x0 = left + pw + 10
    y = bottom + ph - 8
    for name in names:
        d.add(Line(x0, y + 2.5, x0 + 16, y + 2.5, strokeColor=_rgb(colour_of[name]),
                   strokeWidth=2))
        d.add(_text(x0 + 20, y, name, 7))
        y -= 10
    y -= 4
    for label, dash in legend:
        d.add(Line(x0, y + 2.5, x0 + 16, y + 2.5, strokeColor=_INK, strokeWidth=1,
                   strokeDashArray=list(dash) or None))
        d.add(String(x0 + 20, y, label, fontName=FONT, fontSize=7, fillColor=_INK))
        y -= 10
    return d
