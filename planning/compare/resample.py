"""Resampling of dose cubes between axis-aligned grids, and the common grid of two doses.

Grids are :class:`planning.dose_grid.DoseGrid`: arrays indexed ``(z, y, x)``, ``spacing_mm``
in that order, ``origin_mm`` the LPS ``(x, y, z)`` centre of voxel ``(0, 0, 0)``. Both grids of
a resampling are axis-aligned in the same patient frame (no rotation), so the map from a
destination voxel to source index coordinates is a per-axis scale and shift and trilinear
interpolation separates into three one-dimensional linear interpolations, applied one axis at a
time. Trilinear values are defined between the source voxel centres, nearest-voxel values inside
the source voxels; a destination point outside (beyond a tolerance of ``1e-6`` voxel, which
absorbs round-off of coinciding centres) gets ``fill_value``: no extrapolation.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.dose_grid import DoseGrid
from planning.errors import InputError

#: Destination points this close (in source voxels) beyond the source centres count as inside,
#: and points this close to a source centre take its value exactly (no round-off blending).
_INSIDE_TOLERANCE_VOXELS = 1e-6


def _zyx_origin(grid: DoseGrid) -> tuple[float, float, float]:
    """Origin of ``grid`` in array order ``(z, y, x)``, mm."""
    x, y, z = grid.origin_mm
    return (z, y, x)


def _describe(grid: DoseGrid) -> str:
    return (f"shape (z, y, x) {tuple(grid.shape)}, spacing (z, y, x) {tuple(grid.spacing_mm)} mm, "
            f"origin (x, y, z) {tuple(grid.origin_mm)} mm")


def _axis_positions(src: DoseGrid, dst: DoseGrid, axis: int) -> NDArray[np.float64]:
    """Source index coordinate of every destination voxel centre along ``axis``, shape (n_dst,)."""
    src_o = _zyx_origin(src)[axis]
    dst_o = _zyx_origin(dst)[axis]
    n_dst = dst.shape[axis]
    centres_mm = dst_o + np.arange(n_dst, dtype=np.float64) * dst.spacing_mm[axis]
    pos = (centres_mm - src_o) / src.spacing_mm[axis]
    nearest = np.round(pos)
    return np.where(np.abs(pos - nearest) <= _INSIDE_TOLERANCE_VOXELS, nearest, pos)


def _resample_axis(
    values: NDArray[np.float32], pos: NDArray[np.float64], axis: int, order: int
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Interpolate ``values`` along ``axis`` at index positions ``pos``.

    Returns the interpolated array (``axis`` now of length ``len(pos)``) and the (len(pos),)
    mask of positions inside the source centres. Positions outside are clamped for the arithmetic;
    the caller fills them.
    """
    n = values.shape[axis]
    # trilinear: between the source centres; nearest: inside the source voxels (half a voxel more)
    margin = _INSIDE_TOLERANCE_VOXELS + (0.5 if order == 0 else 0.0)
    inside = (pos >= -margin) & (pos <= n - 1 + margin)
    p = np.clip(pos, 0.0, n - 1.0)
    if order == 0:
        idx = np.clip(np.floor(p + 0.5).astype(np.intp), 0, n - 1)
        return np.take(values, idx, axis=axis), inside
    if n == 1:
        return np.take(values, np.zeros(p.shape, dtype=np.intp), axis=axis), inside
    i0 = np.minimum(np.floor(p).astype(np.intp), n - 2)
    w = (p - i0).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = w.size
    w = w.reshape(shape)
    lo = np.take(values, i0, axis=axis)
    hi = np.take(values, i0 + 1, axis=axis)
    # (1 - w) lo + w hi, not lo + w (hi - lo): exact at both ends (w = 0 or 1)
    lo *= 1.0 - w
    hi *= w
    hi += lo
    return hi, inside


def resample_to_grid(
    values: ArrayLike,
    src: DoseGrid,
    dst: DoseGrid,
    *,
    order: int = 1,
    fill_value: float = 0.0,
) -> NDArray[np.float32]:
    """Resample a cube from one axis-aligned grid onto another.

    Parameters
    ----------
    values : (nz, ny, nx) array_like
        Values on ``src`` (e.g. dose in Gy), ``values.shape == src.shape``.
    src, dst : DoseGrid
        Source and destination grids, in the same patient frame (LPS, mm).
    order : {0, 1}, keyword-only
        1: trilinear interpolation between source voxel centres; 0: the nearest source voxel
        (ties, exactly half-way, go to the higher index).
    fill_value : float, keyword-only
        Value of destination voxels whose centre lies outside the source: for ``order=1``
        outside the box spanned by the source voxel centres (no extrapolation), for ``order=0``
        outside the source voxels themselves (centres +- half a voxel).

    Returns
    -------
    (dst.shape) ndarray of float32
        The resampled values. Trilinear interpolation reproduces a function linear in x, y and z
        exactly at every destination point inside the source box.

    Raises
    ------
    InputError
        ``values`` does not have the shape of ``src``, or ``order`` is not 0 or 1.
    """
    arr = np.asarray(values)
    if arr.shape != tuple(src.shape):
        raise InputError(f"cannot resample: values have shape {arr.shape} but the source grid "
                         f"has {tuple(src.shape)}")
    if order not in (0, 1):
        raise InputError(f"resampling order must be 0 (nearest) or 1 (trilinear), got {order!r}")
    out = arr.astype(np.float32, copy=False)
    masks = []
    # Interpolate the axis that shrinks the array most first, to keep the temporaries small.
    ratios = [dst.shape[a] / src.shape[a] for a in range(3)]
    for axis in sorted(range(3), key=lambda a: ratios[a]):
        out, inside = _resample_axis(out, _axis_positions(src, dst, axis), axis, order)
        masks.append((axis, inside))
    outside_any = any(not bool(m.all()) for _, m in masks)
    if outside_any:
        inside3 = np.ones(dst.shape, dtype=bool)
        for axis, m in masks:
            shape = [1, 1, 1]
            shape[axis] = m.size
            inside3 &= m.reshape(shape)
        out[~inside3] = np.float32(fill_value)
    return np.ascontiguousarray(out, dtype=np.float32)


def grids_equal(a: DoseGrid, b: DoseGrid, *, tol_mm: float = 1e-3) -> bool:
    """True when ``a`` and ``b`` have the same shape, and spacing and origin within ``tol_mm``.

    Parameters
    ----------
    a, b : DoseGrid
        The grids to compare.
    tol_mm : float, keyword-only
        Largest allowed difference of any spacing or origin component, mm.
    """
    if tuple(a.shape) != tuple(b.shape):
        return False
    sp = max(abs(p - q) for p, q in zip(a.spacing_mm, b.spacing_mm, strict=True))
    org = max(abs(p - q) for p, q in zip(a.origin_mm, b.origin_mm, strict=True))
    return sp <= tol_mm and org <= tol_mm


def share_outside(dose: NDArray[np.floating], grid: DoseGrid, common: DoseGrid,
                  threshold_percent: float) -> tuple[int, int]:
    """Voxels of ``dose`` (on ``grid``) at or above ``threshold_percent`` of its maximum whose
    centres lie outside ``common`` (beyond half a voxel of its outer centres): they are not
    compared. Returns (outside, at or above the threshold)."""
    top = float(np.max(dose)) if dose.size else 0.0
    hot = np.asarray(dose) >= threshold_percent / 100.0 * top if top > 0 else np.zeros(
        np.shape(dose), dtype=bool)
    inside = np.ones((1, 1, 1), dtype=bool)
    for axis in range(3):
        n = grid.shape[axis]
        pos = _zyx_origin(grid)[axis] + grid.spacing_mm[axis] * np.arange(n)
        lo = _zyx_origin(common)[axis] - 0.5 * common.spacing_mm[axis]
        hi = lo + common.shape[axis] * common.spacing_mm[axis]
        shape = [1, 1, 1]
        shape[axis] = n
        inside = inside & ((pos >= lo - 1e-6) & (pos <= hi + 1e-6)).reshape(shape)
    total = int(np.count_nonzero(hot))
    return int(np.count_nonzero(hot & ~inside)), total


def common_grid(a: DoseGrid, b: DoseGrid) -> DoseGrid:
    """The grid on which to compare a dose on ``a`` with a dose on ``b``.

    Per axis, the spacing is the finer of the two and the voxel centres are those of the finer
    grid (``a`` on a tie) that lie inside the intersection of both grids' centre extents, so that
    the dose on the finer grid is not interpolated along that axis. Only where the overlap is
    narrower than one fine voxel and holds none of its centres is the single centre put in the
    middle of the overlap.

    Parameters
    ----------
    a, b : DoseGrid
        The two dose grids, same patient frame (LPS, mm).

    Returns
    -------
    DoseGrid
        Covers the region where both doses are defined (between voxel centres).

    Raises
    ------
    InputError
        The grids do not overlap (names both grids and the axis).
    """
    shape: list[int] = []
    spacing: list[float] = []
    origin: list[float] = []
    names = ("z", "y", "x")
    for axis in range(3):
        oa, ob = _zyx_origin(a)[axis], _zyx_origin(b)[axis]
        sa, sb = a.spacing_mm[axis], b.spacing_mm[axis]
        lo = max(oa, ob)
        hi = min(oa + (a.shape[axis] - 1) * sa, ob + (b.shape[axis] - 1) * sb)
        fine_o, fine_s = (oa, sa) if sa <= sb else (ob, sb)
        tol = 1e-6 * fine_s
        if hi < lo - tol:
            raise InputError(
                f"dose grids do not overlap along {names[axis]} (centres {lo:.3f} > {hi:.3f} mm): "
                f"grid A {_describe(a)}; grid B {_describe(b)}")
        first = math.ceil((lo - fine_o) / fine_s - 1e-6)
        last = math.floor((hi - fine_o) / fine_s + 1e-6)
        if last >= first:
            shape.append(last - first + 1)
            origin.append(fine_o + first * fine_s)
        else:
            shape.append(1)
            origin.append(0.5 * (lo + hi))
        spacing.append(fine_s)
    return DoseGrid(
        shape=(shape[0], shape[1], shape[2]),
        spacing_mm=(spacing[0], spacing[1], spacing[2]),
        origin_mm=(origin[2], origin[1], origin[0]),
    )
