"""Pure NumPy rendering helpers of the slice viewer (no Kivy import; unit-tested without a window).

Display frames
--------------
Each view shows a plane of an axis-aligned volume (see :mod:`planning.patient`: arrays ``(z, y,
x)``, axes +x left, +y posterior, +z superior, LPS mm). A view draws in its own 2-D *plane*
coordinates ``(u, v)`` in mm, ``u`` towards the screen's right and ``v`` towards the screen's top:

============  ==========  ==========  =================================  ====================
orientation   ``u``       ``v``       display rows / columns             edge labels T/B/L/R
============  ==========  ==========  =================================  ====================
axial         ``x``       ``-y``      rows ``y`` ascending, cols ``x``   A / P / R / L
coronal       ``x``       ``z``       rows ``z`` descending, cols ``x``  S / I / R / L
sagittal      ``y``       ``z``       rows ``z`` descending, cols ``y``  S / I / A / P
============  ==========  ==========  =================================  ====================

so the patient's right is on the screen's left in axial and coronal views (radiological
convention), anterior is at the top of axial views and superior at the top of the others.
Display row 0 is the top row. :class:`PlaneMapping` maps display pixels of a grid's slice to
``(u, v)``; because ``u`` and ``v`` are in mm, non-square pixels and thick slices get their
correct aspect ratio, and a coarse dose grid is placed over the CT by its own mapping.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from skimage.measure import find_contours

from planning.errors import InputError
from planning.patient import RoiMask

Orientation = Literal["axial", "coronal", "sagittal"]
ORIENTATIONS: tuple[Orientation, ...] = ("axial", "coronal", "sagittal")

#: Array axis (z=0, y=1, x=2) normal to each orientation's plane.
NORMAL_AXIS: dict[str, int] = {"axial": 0, "coronal": 1, "sagittal": 2}

#: Patient-direction letters on the top, bottom, left and right edges of each view.
EDGE_LABELS: dict[str, dict[str, str]] = {
    "axial": {"top": "A", "bottom": "P", "left": "R", "right": "L"},
    "coronal": {"top": "S", "bottom": "I", "left": "R", "right": "L"},
    "sagittal": {"top": "S", "bottom": "I", "left": "A", "right": "P"},
}

Polyline = NDArray[np.float64]
"""(N, 2) float64 vertices ``(u, v)`` in plane mm."""


class GridLike(Protocol):
    """Anything with an axis-aligned grid: :class:`planning.patient.CtVolume`, ``DoseGrid``."""

    @property
    def shape(self) -> tuple[int, int, int]: ...

    @property
    def spacing_mm(self) -> tuple[float, float, float]: ...

    @property
    def origin_mm(self) -> tuple[float, float, float]: ...


def check_orientation(orientation: str) -> Orientation:
    """Return ``orientation`` if it is one of :data:`ORIENTATIONS`, else raise InputError."""
    if orientation not in NORMAL_AXIS:
        raise InputError(
            f"view orientation {orientation!r} is not one of {', '.join(ORIENTATIONS)}"
        )
    return orientation  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Geometry: voxels, LPS mm and plane mm
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaneMapping:
    """Where the display pixels of one orientation's slices of a grid lie in plane mm.

    The centre of display pixel ``(row, col)`` is at ``u = u0_mm + col * du_mm``,
    ``v = v0_mm - row * dv_mm`` (row 0 at the top).

    Attributes
    ----------
    orientation : str
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    shape : (rows, cols)
        Display slice shape.
    u0_mm, v0_mm : float
        Plane position of the centre of display pixel ``(0, 0)``.
    du_mm, dv_mm : float
        Pixel width and height, mm (positive).
    """

    orientation: Orientation
    shape: tuple[int, int]
    u0_mm: float
    v0_mm: float
    du_mm: float
    dv_mm: float

    @property
    def extent_mm(self) -> tuple[float, float, float, float]:
        """Outer pixel edges ``(u_min, v_min, u_max, v_max)`` in plane mm."""
        rows, cols = self.shape
        u_min = self.u0_mm - 0.5 * self.du_mm
        v_max = self.v0_mm + 0.5 * self.dv_mm
        return (u_min, v_max - rows * self.dv_mm, u_min + cols * self.du_mm, v_max)

    def pixel_to_plane(self, rows: ArrayLike, cols: ArrayLike) -> tuple[NDArray[np.float64], ...]:
        """Plane ``(u, v)`` mm of (fractional) display pixel indices."""
        r = np.asarray(rows, dtype=np.float64)
        c = np.asarray(cols, dtype=np.float64)
        return (self.u0_mm + c * self.du_mm, self.v0_mm - r * self.dv_mm)

    def plane_to_pixel(self, u_mm: ArrayLike, v_mm: ArrayLike) -> tuple[NDArray[np.float64], ...]:
        """Fractional display pixel ``(row, col)`` of plane positions."""
        u = np.asarray(u_mm, dtype=np.float64)
        v = np.asarray(v_mm, dtype=np.float64)
        return ((self.v0_mm - v) / self.dv_mm, (u - self.u0_mm) / self.du_mm)


def plane_mapping(grid: GridLike, orientation: str) -> PlaneMapping:
    """The :class:`PlaneMapping` of ``grid``'s slices in ``orientation``.

    Parameters
    ----------
    grid : CtVolume, DoseGrid or any object with ``shape (nz, ny, nx)``, ``spacing_mm (sz, sy,
        sx)`` and ``origin_mm (x, y, z)`` LPS.
    orientation : str
    """
    o = check_orientation(orientation)
    nz, ny, nx = grid.shape
    sz, sy, sx = (float(s) for s in grid.spacing_mm)
    ox, oy, oz = (float(v) for v in grid.origin_mm)
    z_top = oz + (nz - 1) * sz
    if o == "axial":
        return PlaneMapping(o, (ny, nx), ox, -oy, sx, sy)
    if o == "coronal":
        return PlaneMapping(o, (nz, nx), ox, z_top, sx, sz)
    return PlaneMapping(o, (nz, ny), oy, z_top, sy, sz)


def lps_to_plane(points_lps: ArrayLike, orientation: str) -> NDArray[np.float64]:
    """Project LPS points ``(N, 3)`` ``(x, y, z)`` mm onto a view's plane: ``(N, 2)`` ``(u, v)``."""
    o = check_orientation(orientation)
    p = np.atleast_2d(np.asarray(points_lps, dtype=np.float64))
    if o == "axial":
        return np.stack([p[:, 0], -p[:, 1]], axis=1)
    if o == "coronal":
        return np.stack([p[:, 0], p[:, 2]], axis=1)
    return np.stack([p[:, 1], p[:, 2]], axis=1)


def plane_to_lps(
    u_mm: float, v_mm: float, orientation: str, normal_mm: float
) -> tuple[float, float, float]:
    """LPS ``(x, y, z)`` of plane point ``(u, v)`` on the slice at ``normal_mm``.

    ``normal_mm`` is the LPS coordinate along the view's normal (z axial, y coronal, x sagittal).
    """
    o = check_orientation(orientation)
    if o == "axial":
        return (float(u_mm), float(-v_mm), float(normal_mm))
    if o == "coronal":
        return (float(u_mm), float(normal_mm), float(v_mm))
    return (float(normal_mm), float(u_mm), float(v_mm))


def voxel_to_lps(grid: GridLike, index_zyx: Sequence[float]) -> tuple[float, float, float]:
    """LPS ``(x, y, z)`` mm of a (fractional) voxel index ``(k, j, i)`` of ``grid``."""
    sz, sy, sx = grid.spacing_mm
    ox, oy, oz = grid.origin_mm
    k, j, i = (float(v) for v in index_zyx)
    return (ox + i * sx, oy + j * sy, oz + k * sz)


def lps_to_voxel(grid: GridLike, point_lps: Sequence[float]) -> tuple[float, float, float]:
    """Fractional voxel index ``(k, j, i)`` of ``grid`` at LPS ``(x, y, z)`` mm."""
    sz, sy, sx = grid.spacing_mm
    ox, oy, oz = grid.origin_mm
    x, y, z = (float(v) for v in point_lps)
    return ((z - oz) / sz, (y - oy) / sy, (x - ox) / sx)


def slice_position_mm(grid: GridLike, orientation: str, index: float) -> float:
    """LPS coordinate along the normal of slice ``index`` (z axial, y coronal, x sagittal), mm."""
    axis = NORMAL_AXIS[check_orientation(orientation)]
    return float(grid.origin_mm[2 - axis]) + float(index) * float(grid.spacing_mm[axis])


def slice_count(grid: GridLike, orientation: str) -> int:
    """Number of slices of ``grid`` in ``orientation``."""
    return int(grid.shape[NORMAL_AXIS[check_orientation(orientation)]])


def extract_slice(volume: NDArray, orientation: str, index: int) -> NDArray:
    """Slice ``index`` of a ``(nz, ny, nx)`` volume in display order (row 0 at the top).

    Returns a view (no copy): axial ``volume[k]``, coronal ``volume[::-1, j, :]``,
    sagittal ``volume[::-1, :, i]``.

    Raises
    ------
    InputError
        If ``index`` is outside the volume.
    """
    o = check_orientation(orientation)
    axis = NORMAL_AXIS[o]
    n = volume.shape[axis]
    if not 0 <= index < n:
        raise InputError(f"{o} slice index {index} is outside 0..{n - 1}")
    if o == "axial":
        return volume[index]
    if o == "coronal":
        return volume[::-1, index, :]
    return volume[::-1, :, index]


def interpolated_slice(
    volume: NDArray, grid: GridLike, orientation: str, position_mm: float
) -> NDArray[np.float32] | None:
    """A volume's slice at an LPS position along the normal, linear between its two neighbours.

    Used for the dose cube, whose slices rarely coincide with the CT's.

    Parameters
    ----------
    volume : (nz, ny, nx) array on ``grid``
    grid : GridLike
    orientation : str
    position_mm : float
        LPS coordinate along the view normal (z axial, y coronal, x sagittal).

    Returns
    -------
    (rows, cols) float32 array in display order, or None when ``position_mm`` lies more than half
    a voxel outside the grid. Within half a voxel of an end slice that slice is returned.
    """
    o = check_orientation(orientation)
    axis = NORMAL_AXIS[o]
    n = volume.shape[axis]
    f = (position_mm - float(grid.origin_mm[2 - axis])) / float(grid.spacing_mm[axis])
    if f < -0.5 or f > n - 0.5:
        return None
    f = min(max(f, 0.0), n - 1.0)
    lo = math.floor(f)
    hi = min(lo + 1, n - 1)
    w = f - lo
    a = extract_slice(volume, o, lo)
    if w < 1e-6 or hi == lo:
        return np.asarray(a, dtype=np.float32)
    b = extract_slice(volume, o, hi)
    return (a * np.float32(1.0 - w) + b * np.float32(w)).astype(np.float32, copy=False)


def sample_trilinear(volume: NDArray, grid: GridLike, point_lps: Sequence[float]) -> float | None:
    """Value of ``volume`` at an LPS point by trilinear interpolation; None outside the grid.

    Points within half a voxel outside the outer voxel centres take the edge values (the region
    the voxels cover).
    """
    idx = np.asarray(lps_to_voxel(grid, point_lps))
    shape = np.asarray(volume.shape)
    if np.any(idx < -0.5) or np.any(idx > shape - 0.5):
        return None
    idx = np.clip(idx, 0.0, shape - 1.0)
    lo = np.floor(idx).astype(int)
    hi = np.minimum(lo + 1, shape - 1)
    w = idx - lo
    total = 0.0
    for dk in (0, 1):
        for dj in (0, 1):
            for di in (0, 1):
                weight = ((w[0] if dk else 1.0 - w[0]) * (w[1] if dj else 1.0 - w[1])
                          * (w[2] if di else 1.0 - w[2]))
                if weight > 0.0:
                    k = hi[0] if dk else lo[0]
                    j = hi[1] if dj else lo[1]
                    i = hi[2] if di else lo[2]
                    total += weight * float(volume[k, j, i])
    return total


def nearest_voxel(grid: GridLike, point_lps: Sequence[float]) -> tuple[int, int, int] | None:
    """Index ``(k, j, i)`` of the voxel of ``grid`` containing an LPS point; None outside."""
    idx = np.rint(np.asarray(lps_to_voxel(grid, point_lps))).astype(int)
    if np.any(idx < 0) or np.any(idx >= np.asarray(grid.shape)):
        return None
    return (int(idx[0]), int(idx[1]), int(idx[2]))


# --------------------------------------------------------------------------------------------
# Colour: window/level and dose maps
# --------------------------------------------------------------------------------------------

_HU_LUT_SIZE = 65536  # every int16 value


def window_level_lut(window_hu: float, level_hu: float) -> NDArray[np.uint32]:
    """Grey-scale RGBA look-up table over all int16 CT numbers.

    Grey ``g = 255 * (HU - (level - window / 2)) / window``, rounded and clipped to 0..255, so
    HU = level shows mid grey (127.5 rounds to 128) and level -/+ window / 2 black / white.

    Parameters
    ----------
    window_hu : float
        Window width in HU, > 0.
    level_hu : float
        Window centre in HU.

    Returns
    -------
    (65536,) uint32 array
        Packed RGBA (bytes R, G, B, A = 255 in memory order); entry ``HU + 32768``.
    """
    if not (math.isfinite(window_hu) and window_hu > 0):
        raise InputError(f"window width must be a positive number of HU, got {window_hu}")
    if not math.isfinite(level_hu):
        raise InputError(f"window level must be a finite number of HU, got {level_hu}")
    hu = np.arange(-32768, 32768, dtype=np.float64)
    grey = np.clip(np.rint(255.0 * (hu - (level_hu - 0.5 * window_hu)) / window_hu), 0, 255)
    rgba = np.empty((_HU_LUT_SIZE, 4), dtype=np.uint8)
    rgba[:, 0] = rgba[:, 1] = rgba[:, 2] = grey.astype(np.uint8)
    rgba[:, 3] = 255
    return rgba.view(np.uint32).reshape(_HU_LUT_SIZE)


def hu_to_rgba(hu_slice: NDArray, lut: NDArray[np.uint32]) -> NDArray[np.uint8]:
    """Apply a :func:`window_level_lut` to a CT slice.

    Parameters
    ----------
    hu_slice : (rows, cols) int16 or float array
        HU; float values are rounded and clipped to the int16 range.
    lut : (65536,) uint32

    Returns
    -------
    (rows, cols, 4) uint8 C-contiguous RGBA.
    """
    if hu_slice.dtype != np.int16:
        hu_slice = np.clip(np.rint(hu_slice), -32768, 32767).astype(np.int16)
    index = hu_slice.view(np.uint16) ^ np.uint16(0x8000)
    packed = lut[index]
    return packed.view(np.uint8).reshape(hu_slice.shape[0], hu_slice.shape[1], 4)


#: Anchor colours (RGB 0..1) of the dose map: blue, cyan, green, yellow, red (hue decreasing).
_DOSE_ANCHORS = np.array(
    [[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
)
#: Diverging map: blue (negative) through white (zero) to red (positive).
_DIVERGING_ANCHORS = np.array([[0.0, 0.0, 0.85], [1.0, 1.0, 1.0], [0.85, 0.0, 0.0]])
COLORMAPS = ("dose", "diverging")
_COLORMAP_SIZE = 255  # odd: 0 of a symmetric diverging scale hits the centre entry


def colormap_rgb(name: str, n: int = _COLORMAP_SIZE) -> NDArray[np.uint8]:
    """``(n, 3)`` uint8 colours of a colour map, low to high (n odd keeps a centre entry).

    ``"dose"``: blue - cyan - green - yellow - red, linear between anchors (hue falls
    monotonically from 240 to 0 degrees). ``"diverging"``: blue - white - red, white at the centre.
    """
    if name == "dose":
        anchors = _DOSE_ANCHORS
    elif name == "diverging":
        anchors = _DIVERGING_ANCHORS
    else:
        raise InputError(f"colour map {name!r} is not one of {', '.join(COLORMAPS)}")
    t = np.linspace(0.0, 1.0, n)
    at = np.linspace(0.0, 1.0, len(anchors))
    rgb = np.stack([np.interp(t, at, anchors[:, c]) for c in range(3)], axis=1)
    return np.rint(rgb * 255).astype(np.uint8)


def colour_index(
    values: NDArray, vmin: float, vmax: float, n: int = _COLORMAP_SIZE
) -> NDArray[np.intp]:
    """Colour-map entry (0..n-1) of each value: linear from ``vmin`` (0) to ``vmax`` (n - 1)."""
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
        raise InputError(f"colour scale needs finite vmin < vmax, got {vmin} .. {vmax}")
    scaled = (np.asarray(values, dtype=np.float32) - np.float32(vmin)) * np.float32(
        (n - 1) / (vmax - vmin)
    )
    return np.clip(np.rint(scaled), 0, n - 1).astype(np.intp)


def dose_to_rgba(
    dose_slice: NDArray,
    *,
    colormap: str,
    vmin: float,
    vmax: float,
    threshold: float,
    opacity: float,
) -> NDArray[np.uint8]:
    """Colour wash of a dose (or difference, LET, ...) slice.

    Parameters
    ----------
    dose_slice : (rows, cols) float array
        Values in the overlay's unit.
    colormap : ``"dose"`` or ``"diverging"``
    vmin, vmax : float
        Values shown with the first and last colour (clipped beyond).
    threshold : float
        ``"dose"``: values below are transparent. ``"diverging"``: values whose magnitude is below
        are transparent (a difference map hides near-zero differences).
    opacity : float
        Alpha 0..1 of the visible pixels.

    Returns
    -------
    (rows, cols, 4) uint8 RGBA. Transparent pixels keep the colour of the threshold, so linear
    texture filtering at the edge fades the wash out instead of darkening it.
    """
    if not 0.0 <= opacity <= 1.0:
        raise InputError(f"dose wash opacity must be within 0..1, got {opacity}")
    lut = colormap_rgb(colormap)
    values = np.asarray(dose_slice, dtype=np.float32)
    index = colour_index(values, vmin, vmax, len(lut))
    rgba = np.empty((*values.shape, 4), dtype=np.uint8)
    rgba[..., :3] = lut[index]
    visible = (np.abs(values) if colormap == "diverging" else values) >= np.float32(threshold)
    alpha = np.uint8(round(255 * opacity))
    rgba[..., 3] = np.where(visible, alpha, np.uint8(0))
    if colormap == "dose":
        edge = lut[colour_index(np.array([threshold]), vmin, vmax, len(lut))[0]]
        rgba[~visible, :3] = edge
    return rgba


def legend_ticks(vmin: float, vmax: float, max_ticks: int = 6) -> NDArray[np.float64]:
    """"Nice" tick values (1, 2, 2.5 or 5 x 10^k steps) within ``vmin..vmax``, ascending."""
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
        raise InputError(f"legend needs finite vmin < vmax, got {vmin} .. {vmax}")
    raw = (vmax - vmin) / max(max_ticks - 1, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * mag >= raw * (1 - 1e-9))
    first = math.ceil(vmin / step - 1e-9) * step
    ticks = np.arange(first, vmax + step * 1e-6, step)
    return np.where(np.abs(ticks) < step * 1e-9, 0.0, ticks)


#: Tick steps below this are written in scientific notation (fixed decimals would need more
#: than four).
SCIENTIFIC_TICK_STEP = 1e-3


def tick_texts(ticks: ArrayLike) -> list[str]:
    """The texts of ascending, evenly spaced tick values (:func:`legend_ticks`): as many
    decimals as their step needs (a 2.5 step one, a 10 step none), in scientific notation
    (``"4e-07"``) for steps below :data:`SCIENTIFIC_TICK_STEP`, and never a negative zero."""
    values = [float(v) for v in np.ravel(ticks)]
    if len(values) > 1:
        step = min(abs(b - a) for a, b in itertools.pairwise(values))
    else:
        step = abs(values[0]) if values else 0.0
    if 0 < step < SCIENTIFIC_TICK_STEP:
        texts = [f"{v:.3g}" for v in values]
    else:
        decimals = 0
        while decimals < 4 and abs(round(step, decimals) - step) > 1e-9 * max(step, 1.0):
            decimals += 1
        texts = [f"{v:.{decimals}f}" for v in values]
    return [t[1:] if t.startswith("-") and float(t) == 0 else t for t in texts]


# --------------------------------------------------------------------------------------------
# Lines: isodoses, structure outlines, beams
# --------------------------------------------------------------------------------------------


def isodose_lines(
    dose_slice: NDArray, mapping: PlaneMapping, levels: Sequence[float]
) -> list[list[Polyline]]:
    """Isodose lines of a dose slice on its own grid, in plane mm.

    Parameters
    ----------
    dose_slice : (rows, cols) float array
        In display order, on the grid ``mapping`` describes.
    mapping : PlaneMapping
        Of the dose grid, same orientation.
    levels : sequence of float
        In the dose slice's unit.

    Returns
    -------
    One list per level of ``(N, 2)`` polylines ``(u, v)`` in mm (marching squares, linear
    interpolation between pixel centres; lines cut by the grid edge stay open).
    """
    values = np.asarray(dose_slice, dtype=np.float64)
    out: list[list[Polyline]] = []
    finite_max = float(values.max()) if values.size else 0.0
    finite_min = float(values.min()) if values.size else 0.0
    for level in levels:
        lines: list[Polyline] = []
        if values.shape[0] >= 2 and values.shape[1] >= 2 and finite_min < level < finite_max:
            for rc in find_contours(values, float(level)):
                u, v = mapping.pixel_to_plane(rc[:, 0], rc[:, 1])
                lines.append(np.stack([u, v], axis=1))
        out.append(lines)
    return out


def _mask_display_slice(
    mask: RoiMask, orientation: str, index: int
) -> tuple[NDArray[np.bool_], int, int] | None:
    """A mask's slice cropped to its box: ``(crop, row0, col0)`` in display order, or None."""
    o = check_orientation(orientation)
    axis = NORMAL_AXIS[o]
    local = index - mask.offset_zyx[axis]
    if mask.box.size == 0 or not 0 <= local < mask.box.shape[axis]:
        return None
    oz, oy, ox = mask.offset_zyx
    bz = mask.box.shape[0]
    nz = mask.grid_shape[0]
    crop = extract_slice(mask.box, o, local)
    if o == "axial":
        return crop, oy, ox
    row0 = nz - oz - bz  # display rows run from z = nz - 1 down
    return crop, row0, (ox if o == "coronal" else oy)


def mask_outlines(mask: RoiMask, mapping: PlaneMapping, index: int) -> list[Polyline]:
    """Outlines of a structure mask on one display slice of the CT grid, in plane mm.

    Marching squares at 0.5 on the cropped mask padded with one empty voxel, so every outline
    closes and runs half-way between inside and outside voxel centres.

    Parameters
    ----------
    mask : RoiMask
        On the CT grid.
    mapping : PlaneMapping
        The CT grid's mapping for the orientation.
    index : int
        Slice index along the orientation's normal.
    """
    found = _mask_display_slice(mask, mapping.orientation, index)
    if found is None:
        return []
    crop, row0, col0 = found
    if not crop.any():
        return []
    padded = np.pad(crop.astype(np.float32), 1)
    lines: list[Polyline] = []
    for rc in find_contours(padded, 0.5):
        u, v = mapping.pixel_to_plane(rc[:, 0] + (row0 - 1), rc[:, 1] + (col0 - 1))
        lines.append(np.stack([u, v], axis=1))
    return lines


class OutlineCache:
    """Per-slice structure outlines, computed on first use and kept (least recently used out).

    Parameters
    ----------
    max_entries : int
        Slices kept over all structures and orientations.
    """

    def __init__(self, max_entries: int = 6000) -> None:
        if max_entries < 1:
            raise InputError(f"outline cache size must be >= 1, got {max_entries}")
        self._max = max_entries
        self._entries: OrderedDict[tuple[int, str, int], list[Polyline]] = OrderedDict()
        self.misses = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every outline (new structures or CT)."""
        self._entries.clear()

    def outlines(self, mask: RoiMask, mapping: PlaneMapping, index: int) -> list[Polyline]:
        """:func:`mask_outlines` of ``mask`` on slice ``index``, cached per mask, view and slice.

        Masks are immutable, so their identity is the key; callers keep the masks alive while
        the cache is in use (the viewer state holds them).
        """
        key = (id(mask), mapping.orientation, int(index))
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        lines = mask_outlines(mask, mapping, index)
        self._entries[key] = lines
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return lines


def beam_segment(
    isocenter_mm: Sequence[float],
    direction_lps: Sequence[float],
    length_mm: float,
    orientation: str,
    *,
    min_projected_mm: float = 1.0,
) -> NDArray[np.float64] | None:
    """A beam's central axis from ``length_mm`` upstream of the isocentre to it, in plane mm.

    Parameters
    ----------
    isocenter_mm : (x, y, z) LPS mm
    direction_lps : (3,)
        Direction of travel (source towards isocentre); normalised here.
    length_mm : float
        Distance of the drawn start from the isocentre (e.g. beyond the body).
    orientation : str
    min_projected_mm : float
        Beams whose projection onto the plane is shorter (seen end-on) are not drawn.

    Returns
    -------
    (2, 2) array ``[[u_start, v_start], [u_iso, v_iso]]``, or None when seen end-on.
    """
    d = np.asarray(direction_lps, dtype=np.float64)
    norm = float(np.linalg.norm(d))
    if not math.isfinite(norm) or norm == 0.0:
        raise InputError(f"beam direction {tuple(direction_lps)} is not a usable vector")
    iso = np.asarray(isocenter_mm, dtype=np.float64)
    start = iso - d / norm * float(length_mm)
    seg = lps_to_plane(np.stack([start, iso]), orientation)
    if float(np.linalg.norm(seg[1] - seg[0])) < min_projected_mm:
        return None
    return seg
