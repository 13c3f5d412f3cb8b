"""Pictures for the comparison report: colour-mapped slices as PNG, the DVH overlay as SVG.

Slices are shown in the usual radiological orientation: axial with anterior up and the
patient's left on the image's right; coronal and sagittal with superior up. Pixels are scaled to
the voxel spacing, so that anatomy keeps its proportions. PNG files are written here with zlib
(no imaging library needed in packaged builds).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.compare.dvh_compare import StructureComparison
from planning.errors import InputError

RgbImage = NDArray[np.uint8]
#: Dose colour scale (jet-like), stops at 0, 1/4, 1/2, 3/4, 1.
_DOSE_STOPS = np.array([[0, 0, 143], [0, 112, 255], [40, 220, 160], [255, 220, 0],
                        [200, 0, 0]], dtype=np.float64)
#: Diverging scale for differences: blue (B < A), white (0), red (B > A).
_DIFF_STOPS = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130],
                        [178, 24, 43]], dtype=np.float64)
#: Gamma scale: green from 0 to 1 (pass), then orange to red up to the maximum (fail).
_GAMMA_STOPS = np.array([[0, 90, 0], [120, 220, 90], [255, 200, 0], [240, 90, 0],
                         [170, 0, 0]], dtype=np.float64)
SCALES = {"dose": _DOSE_STOPS, "diff": _DIFF_STOPS, "gamma": _GAMMA_STOPS}
#: Target height of a slice image, pixels.
TARGET_PIXELS = 240


def colour_map(values: ArrayLike, lo: float, hi: float, scale: str) -> RgbImage:
    """RGB (..., 3) uint8 of ``values`` on a colour scale from ``lo`` to ``hi`` (clipped)."""
    stops = SCALES[scale]
    v = np.asarray(values, dtype=np.float64)
    t = np.clip((v - lo) / (hi - lo) if hi > lo else np.zeros_like(v), 0.0, 1.0)
    t = np.nan_to_num(t)
    pos = t * (len(stops) - 1)
    i = np.minimum(pos.astype(int), len(stops) - 2)
    f = (pos - i)[..., None]
    rgb = stops[i] * (1 - f) + stops[i + 1] * f
    return np.rint(rgb).astype(np.uint8)


def grey_ct(hu: ArrayLike, level: float = 40.0, width: float = 400.0) -> RgbImage:
    """RGB grey image of CT numbers in a window (soft tissue by default)."""
    v = np.clip((np.asarray(hu, dtype=np.float64) - (level - width / 2)) / width, 0.0, 1.0)
    g = np.rint(255 * v).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def overlay(base: RgbImage, colour: RgbImage, mask: NDArray[np.bool_], alpha: float = 0.65
            ) -> RgbImage:
    """``colour`` blended over ``base`` where ``mask``; ``base`` elsewhere."""
    out = base.astype(np.float64)
    m = mask[..., None]
    out = np.where(m, (1 - alpha) * out + alpha * colour.astype(np.float64), out)
    return np.rint(out).astype(np.uint8)


@dataclass(frozen=True)
class SlicePlane:
    """One of the three orthogonal planes through a grid index.

    Attributes
    ----------
    name : str
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    index : int
        The grid index along the plane's normal axis (z, y or x).
    pixel_mm : (row, column) float
        Spacing of the slice's rows and columns, mm.
    """

    name: str
    index: int
    pixel_mm: tuple[float, float]

    def take(self, cube: NDArray[np.generic]) -> NDArray[np.generic]:
        """The 2-D slice of a (nz, ny, nx) cube, oriented for display."""
        if self.name == "axial":
            return cube[self.index]
        if self.name == "coronal":
            return cube[::-1, self.index, :]
        return cube[::-1, :, self.index]


def planes(shape: Sequence[int], spacing_mm: Sequence[float], focus: Sequence[int]
           ) -> tuple[SlicePlane, SlicePlane, SlicePlane]:
    """Axial, coronal and sagittal planes through ``focus`` (z, y, x) of a grid."""
    sz, sy, sx = (float(s) for s in spacing_mm)
    z, y, x = (int(np.clip(f, 0, n - 1)) for f, n in zip(focus, shape, strict=True))
    return (SlicePlane("axial", z, (sy, sx)), SlicePlane("coronal", y, (sz, sx)),
            SlicePlane("sagittal", x, (sz, sy)))


def upscale(image: RgbImage, pixel_mm: tuple[float, float],
            target_pixels: int = TARGET_PIXELS) -> RgbImage:
    """Nearest-neighbour enlargement to about ``target_pixels`` rows, square pixels in mm."""
    rows, cols = image.shape[:2]
    mm_per_px = max(rows * pixel_mm[0], cols * pixel_mm[1]) / target_pixels
    ny = max(1, round(rows * pixel_mm[0] / mm_per_px))
    nx = max(1, round(cols * pixel_mm[1] / mm_per_px))
    ri = np.minimum((np.arange(ny) * rows / ny).astype(int), rows - 1)
    ci = np.minimum((np.arange(nx) * cols / nx).astype(int), cols - 1)
    return image[ri][:, ci]


def png_bytes(image: RgbImage) -> bytes:
    """A PNG file (8-bit RGB, no interlace) of a (rows, columns, 3) uint8 image."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise InputError(f"PNG needs a (rows, columns, 3) image, got shape {img.shape}")
    rows, cols = img.shape[:2]
    raw = np.concatenate([np.zeros((rows, 1), np.uint8), img.reshape(rows, cols * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", cols, rows, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def colour_bar(scale: str, width: int = 240, height: int = 12) -> RgbImage:
    """A horizontal strip of a colour scale, low on the left."""
    row = colour_map(np.linspace(0.0, 1.0, width), 0.0, 1.0, scale)
    return np.repeat(row[None], height, axis=0)


def _nice_step(span: float, n: int = 6) -> float:
    raw = span / max(n, 1)
    mag = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


@dataclass(frozen=True)
class DvhFrame:
    """The plot area of a DVH chart in SVG pixels: dose 0..``d_max`` left to right, volume
    fraction 1..0 top to bottom; the legend goes right of ``left + pw``."""

    left: float
    top: float
    pw: float
    ph: float
    d_max: float

    def x(self, dose: float) -> float:
        return self.left + self.pw * dose / self.d_max

    def y(self, fraction: float) -> float:
        return self.top + self.ph * (1.0 - fraction)


def dvh_frame(width: int, height: int, d_max: float, unit: str
              ) -> tuple[DvhFrame, list[str]]:
    """The frame of a DVH chart and its SVG opening: white plot area, dose grid at round
    steps, volume grid every 20 %, axis labels (dose in ``unit``, volume in %)."""
    left, right, top, bottom = 60, 170, 15, 45
    f = DvhFrame(left, top, width - left - right, height - top - bottom, d_max)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             f'<rect x="{left}" y="{top}" width="{f.pw}" height="{f.ph}" fill="white" '
             'stroke="#444"/>']
    step = _nice_step(d_max)
    for k in range(int(d_max / step) + 1):
        d = k * step
        parts.append(f'<line x1="{f.x(d):.1f}" y1="{top}" x2="{f.x(d):.1f}" y2="{top + f.ph}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{f.x(d):.1f}" y="{top + f.ph + 14}" text-anchor="middle">'
                     f'{d:g}</text>')
    for k in range(0, 101, 20):
        parts.append(f'<line x1="{left}" y1="{f.y(k / 100):.1f}" x2="{left + f.pw}" '
                     f'y2="{f.y(k / 100):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{f.y(k / 100) + 4:.1f}" text-anchor="end">'
                     f'{k}</text>')
    parts.append(f'<text x="{left + f.pw / 2}" y="{height - 8}" text-anchor="middle">dose '
                 f'({escape(unit)})</text>')
    parts.append(f'<text x="14" y="{top + f.ph / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + f.ph / 2})">volume (%)</text>')
    return f, parts


def dvh_svg(structures: Sequence[StructureComparison], unit: str, *, width: int = 720,
            height: int = 420, label_a: str = "A", label_b: str = "B") -> str:
    """An SVG of the cumulative DVHs: A solid, B dashed, one colour per structure."""
    d_max = max((float(s.dvh_a.dose_gy[-1]) for s in structures), default=1.0)
    frame, parts = dvh_frame(width, height, d_max, unit)
    x, y = frame.x, frame.y
    left, top, pw = frame.left, frame.top, frame.pw
    for i, s in enumerate(structures):
        colour = "#{:02x}{:02x}{:02x}".format(*s.colour_rgb)
        for dvh, dash in ((s.dvh_a, ""), (s.dvh_b, ' stroke-dasharray="6 4"')):
            pts = " ".join(f"{x(float(d)):.1f},{y(float(v)):.1f}"
                           for d, v in zip(dvh.dose_gy, dvh.volume_fraction, strict=True))
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" '
                         f'stroke-width="1.6"{dash}/>')
        ly = top + 14 * i + 8
        parts.append(f'<line x1="{left + pw + 10}" y1="{ly}" x2="{left + pw + 34}" y2="{ly}" '
                     f'stroke="{colour}" stroke-width="3"/>')
        parts.append(f'<text x="{left + pw + 40}" y="{ly + 4}">{escape(s.name)}</text>')
    ly = top + 14 * len(structures) + 16
    parts.append(f'<line x1="{left + pw + 10}" y1="{ly}" x2="{left + pw + 34}" y2="{ly}" '
                 'stroke="#000" stroke-width="1.6"/>')
    parts.append(f'<text x="{left + pw + 40}" y="{ly + 4}">{escape(label_a)}</text>')
    parts.append(f'<line x1="{left + pw + 10}" y1="{ly + 14}" x2="{left + pw + 34}" '
                 f'y2="{ly + 14}" stroke="#000" stroke-width="1.6" stroke-dasharray="6 4"/>')
    parts.append(f'<text x="{left + pw + 40}" y="{ly + 18}">{escape(label_b)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
