"""Closed planar contours to voxel masks on a CT grid (even-odd rule at voxel centres).

A voxel is inside a structure when its centre is inside an odd number of the structure's
contours on its slice: a contour drawn inside another is a hole, one inside a hole an island.
The test is a vectorized scan line: for every image row the crossings of all contour edges with
the line through the row's voxel centres are found (an edge owns its lower end point and not its
upper one, so a vertex on the line is counted once and horizontal edges never), and a voxel is
inside when an odd number of crossings lie at or left of its centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]


def rasterize_even_odd(polygons_ij: Sequence[FloatArray], shape_yx: tuple[int, int]) -> BoolArray:
    """Even-odd fill of closed polygons, sampled at pixel centres.

    Parameters
    ----------
    polygons_ij : sequence of (N, 2) float arrays
        Vertices in fractional pixel indices ``(i, j)`` = (column, row); pixel ``(j, i)`` has
        its centre at ``(i, j)``. Each polygon is implicitly closed.
    shape_yx : tuple of int
        Output shape ``(ny, nx)``.

    Returns
    -------
    (ny, nx) bool array
        True where the pixel centre lies inside an odd number of polygons.
    """
    ny, nx = shape_yx
    out = np.zeros((ny, nx), dtype=bool)
    starts: list[FloatArray] = []
    ends: list[FloatArray] = []
    for poly in polygons_ij:
        p = np.asarray(poly, dtype=np.float64)
        if p.shape[0] < 3:
            continue
        starts.append(p)
        ends.append(np.roll(p, -1, axis=0))
    if not starts or ny == 0 or nx == 0:
        return out
    a = np.concatenate(starts)
    b = np.concatenate(ends)
    v_lo = np.minimum(a[:, 1], b[:, 1])
    v_hi = np.maximum(a[:, 1], b[:, 1])
    # rows j with v_lo <= j < v_hi, clipped to the image
    first = np.clip(np.ceil(v_lo), 0, ny).astype(np.int64)
    stop = np.clip(np.ceil(v_hi), 0, ny).astype(np.int64)
    counts = np.maximum(stop - first, 0)
    total = int(counts.sum())
    if total == 0:
        return out
    edge = np.repeat(np.arange(a.shape[0]), counts)
    offsets = np.cumsum(counts) - counts
    rows = first[edge] + (np.arange(total) - offsets[edge])
    a_e = a[edge]
    b_e = b[edge]
    t = (rows - a_e[:, 1]) / (b_e[:, 1] - a_e[:, 1])
    u = a_e[:, 0] + t * (b_e[:, 0] - a_e[:, 0])
    # a crossing at u toggles every centre i >= u
    col = np.clip(np.ceil(u), 0, nx).astype(np.int64)
    toggles = np.bincount(rows * (nx + 1) + col, minlength=ny * (nx + 1))
    parity = np.cumsum(toggles.reshape(ny, nx + 1)[:, :nx], axis=1) & 1
    out[:] = parity.astype(bool)
    return out


def box_bounds(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Index range ``[start, stop)`` of centres ``0..size-1`` lying in ``[lo, hi]`` (clipped)."""
    start = max(int(np.ceil(lo)), 0)
    stop = min(int(np.floor(hi)) + 1, size)
    return start, max(stop, start)
