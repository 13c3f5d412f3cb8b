"""Closed planar contours to voxel masks on a CT grid (even-odd rule at voxel centres).

A voxel is inside a structure when its centre is inside an odd number of the structure's
contours on its slice: a contour drawn inside another is a hole, one inside a hole an island.
The test is a vectorized scan line: for every image row the crossings of all contour edges with
the line through the row's voxel centres are found (an edge owns its lower end point and not its
upper one, so a vertex on the line is counted once and horizontal edges never), and a voxel is
inside when an odd number of crossings lie at or left of its centre.

:func:`slice_polygons` puts each closed planar contour of a structure on the CT slice nearest to
its plane, in fractional pixel indices: the step shared by the masks (rasterized here) and the
clinical DVH's sample points (:mod:`planning.structure_sampling`). When contours of several
planes fall on one slice (a structure drawn on another, finer or shifted, series of the same
frame of reference), the slice takes the plane nearest its centre: the even-odd rule combines
contours of one plane only, so two nearly equal contours of neighbouring planes never cancel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from planning.patient import Contour, CtVolume

BoolArray = NDArray[np.bool_]
#: Contour Geometric Types that enclose an area: CLOSED_PLANAR and CLOSEDPLANAR_XOR (PS3.3
#: C.8.8.6.3: contours of one plane combined by exclusive or, which the even-odd rule does for
#: both).
CLOSED_TYPES = ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR")
FloatArray = NDArray[np.float64]

#: A closed planar contour counts as axial when its z spread is under this fraction of a slice.
PLANARITY_TOLERANCE = 0.01
#: A contour further than this fraction of a slice spacing from a slice plane is reported.
OFF_PLANE_TOLERANCE = 0.01


def row_crossings(polygons_ij: Sequence[FloatArray], ny: int
                  ) -> tuple[NDArray[np.int64], FloatArray]:
    """Where the edges of closed polygons cross the lines through the pixel rows' centres.

    Parameters
    ----------
    polygons_ij : sequence of (N, 2) float arrays
        Vertices in fractional pixel indices ``(i, j)`` = (column, row); pixel ``(j, i)`` has
        its centre at ``(i, j)``. Each polygon is implicitly closed; fewer than 3 vertices are
        skipped.
    ny : int
        Rows ``j = 0 .. ny - 1``.

    Returns
    -------
    rows : (M,) int64 array
    u : (M,) float array
        Each crossing's row and column position. An edge owns its lower end point and not its
        upper one, so a vertex on a row line counts once and horizontal edges never: every
        row has an even number of crossings.
    """
    starts: list[FloatArray] = []
    ends: list[FloatArray] = []
    for poly in polygons_ij:
        p = np.asarray(poly, dtype=np.float64)
        if p.shape[0] < 3:
            continue
        starts.append(p)
        ends.append(np.roll(p, -1, axis=0))
    if not starts or ny == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    a = np.concatenate(starts)
    b = np.concatenate(ends)
    v_lo = np.minimum(a[:, 1], b[:, 1])
    v_hi = np.maximum(a[:, 1], b[:, 1])
    # rows j with v_lo <= j < v_hi, clipped to the image
    first = np.clip(np.ceil(v_lo), 0, ny).astype(np.int64)
    stop = np.clip(np.ceil(v_hi), 0, ny).astype(np.int64)
    counts = np.maximum(stop - first, 0)
    total = int(counts.sum())
    edge = np.repeat(np.arange(a.shape[0]), counts)
    offsets = np.cumsum(counts) - counts
    rows = first[edge] + (np.arange(total) - offsets[edge])
    a_e = a[edge]
    b_e = b[edge]
    t = (rows - a_e[:, 1]) / (b_e[:, 1] - a_e[:, 1])
    return rows, a_e[:, 0] + t * (b_e[:, 0] - a_e[:, 0])


def rasterize_even_odd(polygons_ij: Sequence[FloatArray], shape_yx: tuple[int, int]) -> BoolArray:
    """Even-odd fill of closed polygons, sampled at pixel centres.

    Parameters
    ----------
    polygons_ij : sequence of (N, 2) float arrays
        Vertices in fractional pixel indices, as for :func:`row_crossings`.
    shape_yx : tuple of int
        Output shape ``(ny, nx)``.

    Returns
    -------
    (ny, nx) bool array
        True where the pixel centre lies inside an odd number of polygons.
    """
    ny, nx = shape_yx
    out = np.zeros((ny, nx), dtype=bool)
    rows, u = row_crossings(polygons_ij, ny)
    if rows.size == 0 or nx == 0:
        return out
    # a crossing at u toggles every centre i >= u
    col = np.clip(np.ceil(u), 0, nx).astype(np.int64)
    toggles = np.bincount(rows * (nx + 1) + col, minlength=ny * (nx + 1))
    parity = np.cumsum(toggles.reshape(ny, nx + 1)[:, :nx], axis=1) & 1
    out[:] = parity.astype(bool)
    return out


def row_coverage_even_odd(polygons_ij: Sequence[FloatArray], shape_yx: tuple[int, int]
                          ) -> tuple[FloatArray, FloatArray]:
    """Even-odd fill of closed polygons along the pixel rows' centre lines, exact along them.

    Parameters
    ----------
    polygons_ij : sequence of (N, 2) float arrays
        Vertices in fractional pixel indices, as for :func:`row_crossings`.
    shape_yx : tuple of int
        Output shape ``(ny, nx)``.

    Returns
    -------
    length : (ny, nx) float array
        The length (in pixels, 0 to 1) of each pixel's centre line ``j`` from ``i - 1/2`` to
        ``i + 1/2`` that lies inside an odd number of polygons.
    moment : (ny, nx) float array
        The first moment of that length about the pixel's left edge ``i - 1/2`` (pixels^2):
        ``moment / length`` is where its middle lies, 0 to 1 from the left edge.
    """
    ny, nx = shape_yx
    length = np.zeros((ny, nx))
    moment = np.zeros((ny, nx))
    rows, u = row_crossings(polygons_ij, ny)
    if rows.size == 0 or nx == 0:
        return length, moment
    # sorted along each row, the crossings enter (+1) and leave (-1) by turns
    order = np.lexsort((u, rows))
    rows, u = rows[order], u[order]
    row_start = np.searchsorted(rows, rows, side="left")
    sign = np.where((np.arange(rows.size) - row_start) % 2 == 0, 1.0, -1.0)
    x = np.clip(u + 0.5, 0.0, nx)  # from the row's left edge, in pixels
    cell = np.minimum(np.floor(x).astype(np.int64), nx - 1)
    head = cell + 1 - x  # the part of the crossing's own pixel right of it
    # pixels right of a crossing's pixel are wholly on its inner side
    whole = np.bincount(rows * (nx + 1) + cell + 1, weights=sign, minlength=ny * (nx + 1))
    inside = np.cumsum(whole.reshape(ny, nx + 1)[:, :nx], axis=1)
    flat = rows * nx + cell
    length += inside + np.bincount(flat, weights=sign * head,
                                   minlength=ny * nx).reshape(ny, nx)
    moment += inside * 0.5 + np.bincount(
        flat, weights=sign * (1.0 - (x - cell) ** 2) / 2.0, minlength=ny * nx).reshape(ny, nx)
    return length, moment


def box_bounds(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Index range ``[start, stop)`` of centres ``0..size-1`` lying in ``[lo, hi]`` (clipped)."""
    start = max(int(np.ceil(lo)), 0)
    stop = min(int(np.floor(hi)) + 1, size)
    return start, max(stop, start)


def slice_polygons(contours: Sequence[Contour], ct: CtVolume
                   ) -> tuple[dict[int, list[FloatArray]], dict[str, int]]:
    """The closed planar contours of one structure, each on the CT slice nearest to its plane.

    Parameters
    ----------
    contours : sequence of Contour
        The structure's contours, LPS mm.
    ct : CtVolume
        The grid (axes along +x, +y, +z LPS).

    Returns
    -------
    per_slice : dict of int to list of (N, 2) float arrays
        By slice index ``k``: the polygons in fractional pixel indices ``(i, j)`` (pixel
        ``(k, j, i)`` has its centre at ``(i, j)``), as :func:`rasterize_even_odd` takes them.
    problems : dict of str to int
        Counts of contours ``"outside"`` the CT (left out), ``"clipped"`` by its edge,
        ``"off_plane"`` (between slices, put on the nearest), ``"non_axial"``, ``"open"`` and
        ``"degenerate"`` (all three left out), ``"other_plane"`` (left out: another plane is
        nearer to their slice), and ``"gap"``: slices between the first and the last slice
        with contours that have none.
    """
    ox, oy, oz = ct.origin_mm
    sz, sy, sx = ct.spacing_mm
    nz, ny, nx = ct.shape
    # By slice, by source plane (its offset from the slice centre, in slices): the even-odd
    # rule combines the contours of one plane only (two nearly equal contours of neighbouring
    # planes that fall on one slice would cancel).
    planes: dict[int, dict[float, list[FloatArray]]] = {}
    problems = dict.fromkeys(
        ("outside", "clipped", "off_plane", "non_axial", "open", "degenerate", "other_plane",
         "gap"), 0
    )
    for contour in contours:
        if contour.geometric_type == "POINT":
            continue
        if contour.geometric_type not in CLOSED_TYPES:
            problems["open"] += 1
            continue
        pts = contour.points_mm
        if pts.shape[0] < 3:
            problems["degenerate"] += 1
            continue
        z = pts[:, 2]
        if float(z.max() - z.min()) > PLANARITY_TOLERANCE * sz:
            problems["non_axial"] += 1
            continue
        k_exact = (float(z.mean()) - oz) / sz
        k = math.floor(k_exact + 0.5)  # half-way planes go up, never by the parity of k
        if k < 0 or k >= nz:
            problems["outside"] += 1
            continue
        if abs(k_exact - k) > OFF_PLANE_TOLERANCE:
            problems["off_plane"] += 1
        ij = np.column_stack(((pts[:, 0] - ox) / sx, (pts[:, 1] - oy) / sy))
        lo = ij.min(axis=0)
        hi = ij.max(axis=0)
        if hi[0] < -0.5 or hi[1] < -0.5 or lo[0] > nx - 0.5 or lo[1] > ny - 0.5:
            problems["outside"] += 1
            continue
        if lo[0] < -0.5 or lo[1] < -0.5 or hi[0] > nx - 0.5 or hi[1] > ny - 0.5:
            problems["clipped"] += 1
        offset = round(k_exact - k, 6)  # contours of one plane share it
        planes.setdefault(k, {}).setdefault(offset, []).append(ij)
    per_slice: dict[int, list[FloatArray]] = {}
    for k, by_plane in planes.items():
        nearest = min(by_plane, key=lambda o: (abs(o), o))
        per_slice[k] = by_plane.pop(nearest)
        problems["other_plane"] += sum(len(polys) for polys in by_plane.values())
    if per_slice:
        problems["gap"] = max(per_slice) - min(per_slice) + 1 - len(per_slice)
    return per_slice, problems
