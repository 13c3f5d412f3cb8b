"""Water-equivalent path length (WEPL) by beam's-eye-view resampling.

The relative stopping power (RSP) volume is resampled onto a grid aligned with the beam:
parallel rays (no divergence) on a lateral grid, sampled along the beam at cell centres.
The cumulative sum along each ray, times the step, gives the WEPL at the cell *boundaries*
(starting with 0 where the grid enters the volume's bounding box). Trilinear interpolation of
this boundary cube at a query point is then the exact integral of the cell-wise constant RSP up
to the point's own depth, not to the next grid plane.

Outside the volume the RSP is 0: the volume is padded with one layer of zeros and the
interpolation clamps to that layer, so air before the body contributes what the caller's RSP
says (about nothing for air) and nothing beyond the volume.

All functions are written against the array API standard (``take`` on flattened arrays,
``cumulative_sum``, ``floor``...), so they run on NumPy, CuPy and array_api_strict arrays; the
result is in the namespace of ``rsp``. For NumPy arrays the cube's rays are integrated, and
the cube sampled at points, by the compiled loops of :mod:`kernels.wepl_cpu` where they were
built: the same operations in the same order, so the same values, without the NumPy path's
temporaries (about 100 B per sample).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from kernels import wepl_cpu
from kernels.backend import array_namespace

#: Samples per chunk in the resampling and interpolation loops (about 100 B of temporaries each).
DEFAULT_CHUNK_SAMPLES = 1 << 20


@dataclass(frozen=True)
class WeplCube:
    """WEPL on a beam-aligned grid.

    Attributes
    ----------
    wepl_mm : (Nu, Nv, Nt + 1) float32 array
        WEPL at lateral node ``(i, j)`` and boundary plane ``k`` (namespace of the RSP input).
    reference_lps : (3,) float array
        LPS point from which the grid coordinates below are measured.
    u_axis, v_axis, direction : (3,) float arrays
        Unit lateral axes and beam direction, LPS.
    u0_mm, v0_mm, t0_mm : float
        Coordinates of node ``(0, 0)`` and of boundary plane 0 relative to ``reference_lps``.
    lateral_step_mm, depth_step_mm : float
        Grid steps across and along the beam.
    """

    wepl_mm: Any
    reference_lps: np.ndarray
    u_axis: np.ndarray
    v_axis: np.ndarray
    direction: np.ndarray
    u0_mm: float
    v0_mm: float
    t0_mm: float
    lateral_step_mm: float
    depth_step_mm: float


def _trilinear(xp: Any, flat: Any, dims: tuple[int, int, int], coords: Sequence[Any]) -> Any:
    """Trilinear interpolation of a C-ordered 3-D array given flattened.

    ``coords`` are three float arrays of equal shape: fractional indices along the three axes.
    Coordinates are clamped to the array, so values beyond the edge are the edge values.
    Returns an array of the shape of the coordinates.
    """
    shape = coords[0].shape
    n0, n1, n2 = dims
    lo = []
    w = []
    for c, n in zip(coords, dims, strict=True):
        c = xp.clip(xp.reshape(c, (-1,)), 0.0, float(n - 1))
        i = xp.clip(xp.floor(c), 0.0, float(max(n - 2, 0)))
        lo.append(xp.astype(i, xp.int64))
        w.append(xp.astype(c - i, flat.dtype))
    base = (lo[0] * n1 + lo[1]) * n2 + lo[2]
    s0 = n1 * n2 if n0 > 1 else 0
    s1 = n2 if n1 > 1 else 0
    s2 = 1 if n2 > 1 else 0
    w0, w1, w2 = w
    out = None
    for d0, f0 in ((0, 1.0 - w0), (s0, w0)):
        for d1, f1 in ((0, 1.0 - w1), (s1, w1)):
            inner = (xp.take(flat, base + (d0 + d1)) * (1.0 - w2)
                     + xp.take(flat, base + (d0 + d1 + s2)) * w2)
            term = inner * (f0 * f1)
            out = term if out is None else out + term
    return xp.reshape(out, shape)


def _zero_padded(xp: Any, volume: Any) -> tuple[Any, tuple[int, int, int]]:
    """The volume as float32 with one layer of zeros around it, flattened, and its shape."""
    nz, ny, nx = (int(s) for s in volume.shape)
    dims = (nz + 2, ny + 2, nx + 2)
    padded = xp.zeros(dims, dtype=xp.float32)
    padded[1:-1, 1:-1, 1:-1] = xp.astype(volume, xp.float32)
    return xp.reshape(padded, (-1,)), dims


def sample_volume(
    volume: Any,
    spacing_mm: ArrayLike,
    origin_mm: ArrayLike,
    points_lps: Any,
    *,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> Any:
    """Trilinear interpolation of an axis-aligned volume at LPS points, 0 outside.

    Parameters
    ----------
    volume : (nz, ny, nx) float array
        Values at voxel centres.
    spacing_mm, origin_mm
        Spacing ``(z, y, x)`` and LPS position ``(x, y, z)`` of voxel ``(0, 0, 0)``, mm.
    points_lps : (N, 3) float array
        Query points ``(x, y, z)``, same namespace as ``volume``.

    Returns
    -------
    (N,) float32 array
    """
    xp = array_namespace(volume, points_lps)
    flat, dims = _zero_padded(xp, volume)
    sp = [float(s) for s in np.asarray(spacing_mm, dtype=np.float64)]  # z, y, x
    org = [float(o) for o in np.asarray(origin_mm, dtype=np.float64)]  # x, y, z
    out = []
    n_pts = int(points_lps.shape[0])
    for start in range(0, n_pts, chunk_samples):
        p = xp.astype(points_lps[start:min(start + chunk_samples, n_pts), :], xp.float64)
        coords = [(p[:, 2] - org[2]) / sp[0] + 1.0, (p[:, 1] - org[1]) / sp[1] + 1.0,
                  (p[:, 0] - org[0]) / sp[2] + 1.0]
        out.append(_trilinear(xp, flat, dims, coords))
    if not out:
        return xp.zeros((0,), dtype=xp.float32)
    return xp.astype(xp.concat(out) if len(out) > 1 else out[0], xp.float32)


@dataclass(frozen=True)
class _CubeGrid:
    """The beam-aligned grid of a WEPL cube (see :func:`wepl_cube`)."""

    spacing: np.ndarray
    origin: np.ndarray
    axes: np.ndarray  # rows u, v, direction
    reference: np.ndarray
    h_lat: float
    h_t: float
    n_u: int
    n_v: int
    n_t: int
    u0: float
    v0: float
    t0: float


def _cube_grid(shape: tuple[int, int, int], spacing_mm: ArrayLike, origin_mm: ArrayLike,
               direction: ArrayLike, u_axis: ArrayLike, v_axis: ArrayLike,
               lateral_step_mm: float | None, depth_step_mm: float | None) -> _CubeGrid:
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    origin = np.asarray(origin_mm, dtype=np.float64)
    axes = np.array([u_axis, v_axis, direction], dtype=np.float64)
    if not np.allclose(axes @ axes.T, np.eye(3), atol=1e-9):
        raise ValueError("direction, u_axis and v_axis must be orthonormal")
    if np.any(spacing <= 0):
        raise ValueError(f"spacing_mm must be positive, got {tuple(spacing)}")
    h_lat = float(lateral_step_mm or spacing.min())
    h_t = float(depth_step_mm or 0.5 * spacing.min())
    if h_lat <= 0 or h_t <= 0:
        raise ValueError("WEPL grid steps must be positive")
    reference = origin + 0.5 * (np.array(shape[::-1]) - 1) * spacing[::-1]
    bmin, bmax = _volume_box_bev(shape, spacing, origin, axes, reference)
    n_u = math.floor((bmax[0] - bmin[0]) / h_lat) + 2
    n_v = math.floor((bmax[1] - bmin[1]) / h_lat) + 2
    n_t = max(math.ceil((bmax[2] - bmin[2]) / h_t), 1)
    return _CubeGrid(spacing, origin, axes, reference, h_lat, h_t, n_u, n_v, n_t,
                     u0=float(0.5 * (bmin[0] + bmax[0]) - 0.5 * (n_u - 1) * h_lat),
                     v0=float(0.5 * (bmin[1] + bmax[1]) - 0.5 * (n_v - 1) * h_lat),
                     t0=float(bmin[2]))


def wepl_cube_shape(volume_shape: tuple[int, int, int], spacing_mm: ArrayLike,
                    origin_mm: ArrayLike, direction: ArrayLike, u_axis: ArrayLike,
                    v_axis: ArrayLike, *, lateral_step_mm: float | None = None,
                    depth_step_mm: float | None = None) -> tuple[int, int, int]:
    """Shape ``(Nu, Nv, Nt + 1)`` of the :func:`wepl_cube` of a ``volume_shape`` (z, y, x)
    volume (same parameters), without making it: what the cube will cost, 4 bytes a value."""
    g = _cube_grid(tuple(int(n) for n in volume_shape), spacing_mm,  # type: ignore[arg-type]
                   origin_mm, direction, u_axis, v_axis, lateral_step_mm, depth_step_mm)
    return g.n_u, g.n_v, g.n_t + 1


def _volume_box_bev(
    shape: tuple[int, int, int], spacing: np.ndarray, origin: np.ndarray, axes: np.ndarray,
    reference: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """BEV bounding box (min, max of u, v, t) of the zero-padded volume's voxel centres.

    The interpolated RSP ramps down to 0 between the outer voxel centres and the padding
    centres, one voxel further out; the box includes that ramp so its integral is kept.
    """
    nz, ny, nx = shape
    sp_xyz = np.array([spacing[2], spacing[1], spacing[0]])
    lo = origin - sp_xyz
    hi = origin + np.array([nx, ny, nz]) * sp_xyz
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                        for c in (lo[2], hi[2])])
    bev = (corners - reference) @ axes.T
    return bev.min(axis=0), bev.max(axis=0)


def wepl_cube(
    rsp: Any,
    spacing_mm: ArrayLike,
    origin_mm: ArrayLike,
    direction: ArrayLike,
    u_axis: ArrayLike,
    v_axis: ArrayLike,
    *,
    lateral_step_mm: float | None = None,
    depth_step_mm: float | None = None,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    on_chunk: Callable[[float], None] | None = None,
    threads: int = 1,
) -> WeplCube:
    """Resample an RSP volume along parallel rays and integrate it into a WEPL cube.

    Parameters
    ----------
    rsp : (nz, ny, nx) float array
        Relative stopping power, axis-aligned volume indexed ``(z, y, x)``.
    spacing_mm : (3,) floats
        Voxel spacing ``(z, y, x)`` in mm.
    origin_mm : (3,) floats
        LPS position ``(x, y, z)`` of the centre of voxel ``(0, 0, 0)``.
    direction, u_axis, v_axis : (3,) floats
        Unit beam direction and orthonormal lateral axes, LPS.
    lateral_step_mm : float, optional
        Ray spacing; the smallest voxel spacing by default.
    depth_step_mm : float, optional
        Sampling step along the rays; half the smallest voxel spacing by default.
    chunk_samples : int
        Upper bound of RSP samples computed at once, over all threads (memory about 100 B per
        sample).
    on_chunk : callable, optional
        Called after each chunk with the fraction of the cube done (0..1]; a caller reports
        progress with it, and may raise from it to stop the computation (cancellation).
        Always called in the calling thread.
    threads : int
        NumPy only: chunks computed on this many threads (NumPy and the compiled loop release
        the GIL), each of ``chunk_samples / threads`` samples.

    Returns
    -------
    WeplCube
        The cube (float32, same namespace as ``rsp``) and its geometry.
    """
    xp = array_namespace(rsp)
    if rsp.ndim != 3:
        raise ValueError(f"rsp must be a 3-D (z, y, x) volume, got shape {tuple(rsp.shape)}")
    shape = (int(rsp.shape[0]), int(rsp.shape[1]), int(rsp.shape[2]))
    g = _cube_grid(shape, spacing_mm, origin_mm, direction, u_axis, v_axis, lateral_step_mm,
                   depth_step_mm)
    spacing, origin, axes, reference = g.spacing, g.origin, g.axes, g.reference
    h_lat, h_t, n_u, n_v, n_t = g.h_lat, g.h_t, g.n_u, g.n_v, g.n_t
    u0, v0, t0 = g.u0, g.v0, g.t0

    flat, padded_dims = _zero_padded(xp, rsp)

    # Fractional padded index (z, y, x) = a0 + u*au + v*av + t*at, affine in (u, v, t).
    inv_sp = 1.0 / spacing[::-1]  # per LPS axis x, y, z
    a0_xyz = (reference - origin) * inv_sp + 1.0
    a_xyz = axes * inv_sp  # rows: d(index_xyz)/du, /dv, /dt
    t_mid = xp.asarray(t0 + (np.arange(n_t) + 0.5) * h_t, dtype=xp.float64)
    v_nodes = xp.asarray(v0 + np.arange(n_v) * h_lat, dtype=xp.float64)
    pooled = threads > 1 and xp is np
    # Threads share the temporaries' bound: each chunk holds 1 / threads of it.
    per_chunk = chunk_samples // threads if pooled else chunk_samples
    rows_per_chunk = max(1, per_chunk // max(n_v * n_t, 1))
    # The compiled loop (same arithmetic) writes each chunk's rays into the cube itself.
    compiled = (np.empty((n_u, n_v, n_t + 1), dtype=np.float32)
                if xp is np and wepl_cpu.available() else None)
    index_at_origin = [float(a0_xyz[ax]) for ax in (2, 1, 0)]
    index_per_mm = [[float(a_xyz[r, ax]) for ax in (2, 1, 0)] for r in range(3)]

    def chunk(i_start: int) -> Any:
        i_stop = min(n_u, i_start + rows_per_chunk)
        if compiled is not None:
            wepl_cpu.integrate_rays(flat, padded_dims, i_start, i_stop, n_v, n_t,
                                    (float(u0), float(v0), float(t0)), h_lat, h_t,
                                    index_at_origin, index_per_mm, compiled[i_start:i_stop])
            return None
        u_nodes = xp.asarray(u0 + np.arange(i_start, i_stop) * h_lat, dtype=xp.float64)
        uu = xp.reshape(u_nodes, (-1, 1, 1))
        vv = xp.reshape(v_nodes, (1, -1, 1))
        tt = xp.reshape(t_mid, (1, 1, -1))
        coords = []
        for ax in (2, 1, 0):  # padded array order z, y, x <- LPS components z, y, x
            coords.append(float(a0_xyz[ax]) + uu * float(a_xyz[0, ax])
                          + vv * float(a_xyz[1, ax]) + tt * float(a_xyz[2, ax]))
        samples = _trilinear(xp, flat, padded_dims, coords)
        return xp.cumulative_sum(samples * h_t, axis=2, include_initial=True)

    starts = range(0, n_u, rows_per_chunk)
    pieces = []
    with ThreadPoolExecutor(max_workers=threads) if pooled else contextlib.nullcontext() as pool:
        done = (map if pool is None else pool.map)(chunk, starts)  # in order, lazily
        try:
            for i_start, piece in zip(starts, done, strict=True):
                pieces.append(piece)
                if on_chunk is not None:
                    on_chunk(min(n_u, i_start + rows_per_chunk) / n_u)
        except BaseException:
            if pool is not None:
                pool.shutdown(cancel_futures=True)  # chunks not started yet never start
            raise
    if compiled is not None:
        cube = compiled
    else:
        cube = xp.concat(pieces, axis=0) if len(pieces) > 1 else pieces[0]
    return WeplCube(
        wepl_mm=xp.astype(cube, xp.float32, copy=False),  # no second cube where it is float32
        reference_lps=reference,
        u_axis=axes[0],
        v_axis=axes[1],
        direction=axes[2],
        u0_mm=float(u0),
        v0_mm=float(v0),
        t0_mm=t0,
        lateral_step_mm=h_lat,
        depth_step_mm=h_t,
    )


def sample_wepl(
    cube: WeplCube, points_lps: Any, *, chunk_samples: int = DEFAULT_CHUNK_SAMPLES
) -> Any:
    """WEPL at LPS points by trilinear interpolation of a :class:`WeplCube`.

    Parameters
    ----------
    cube : WeplCube
        From :func:`wepl_cube`.
    points_lps : (N, 3) float array
        Query points ``(x, y, z)`` in LPS, mm, in the namespace of the cube.
    chunk_samples : int
        Points interpolated at once by the NumPy path (the compiled loop needs no temporaries).

    Returns
    -------
    (N,) float32 array
        WEPL in mm from where the rays enter the volume's bounding box to each point.
    """
    xp = array_namespace(cube.wepl_mm, points_lps)
    n_u, n_v, n_tb = (int(s) for s in cube.wepl_mm.shape)
    flat = xp.reshape(cube.wepl_mm, (-1,))
    axes = np.stack([cube.u_axis, cube.v_axis, cube.direction])
    offs = (
        cube.u0_mm + float(cube.reference_lps @ axes[0]),
        cube.v0_mm + float(cube.reference_lps @ axes[1]),
        cube.t0_mm + float(cube.reference_lps @ axes[2]),
    )
    steps = (cube.lateral_step_mm, cube.lateral_step_mm, cube.depth_step_mm)
    n = int(points_lps.shape[0])
    if xp is np and wepl_cpu.available():  # the same arithmetic, compiled, without chunks
        return wepl_cpu.sample_points(np.ascontiguousarray(cube.wepl_mm, dtype=np.float32),
                                      np.ascontiguousarray(points_lps, dtype=np.float64),
                                      axes, offs, steps)
    out = []
    for start in range(0, n, chunk_samples):
        p = xp.astype(points_lps[start:min(start + chunk_samples, n), :], xp.float64)
        coords = []
        for k in range(3):
            ax = [float(a) for a in axes[k]]
            proj = p[:, 0] * ax[0] + p[:, 1] * ax[1] + p[:, 2] * ax[2]
            coords.append((proj - offs[k]) / steps[k])
        out.append(_trilinear(xp, flat, (n_u, n_v, n_tb), coords))
    if not out:
        return xp.zeros((0,), dtype=xp.float32)
    res = xp.concat(out) if len(out) > 1 else out[0]
    return xp.astype(res, xp.float32)


def wepl_at_points(
    rsp: Any,
    spacing_mm: ArrayLike,
    origin_mm: ArrayLike,
    direction: ArrayLike,
    u_axis: ArrayLike,
    v_axis: ArrayLike,
    points_lps: Any,
    *,
    lateral_step_mm: float | None = None,
    depth_step_mm: float | None = None,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> Any:
    """WEPL (mm) at query points along parallel rays of the given direction.

    Parameters are those of :func:`wepl_cube`, plus ``points_lps``: an ``(N, 3)`` float array
    of LPS points (same namespace as ``rsp``). Returns an ``(N,)`` float32 array.
    Rays are parallel (no beam divergence). A diverging ray at lateral offset ``u`` crosses a
    layer with a path longer by the relative amount ``(u / SAD)^2 / 2`` (below 1e-3 for
    ``|u| < 200 mm`` at ``SAD = 6.5 m``) and samples the tissue at most ``u * depth / SAD``
    away from the parallel ray.
    """
    cube = wepl_cube(
        rsp, spacing_mm, origin_mm, direction, u_axis, v_axis,
        lateral_step_mm=lateral_step_mm, depth_step_mm=depth_step_mm,
        chunk_samples=chunk_samples,
    )
    return sample_wepl(cube, points_lps, chunk_samples=chunk_samples)
