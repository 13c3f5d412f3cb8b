"""The WEPL cube's ray integration and sampling compiled for the CPU (``kernels._wepl_cpu``).

``setup.py`` compiles :mod:`kernels.wepl_source` into the optional extension
``kernels._wepl_cpu``, called here through ctypes (without the GIL, so the rays of a cube run on
:func:`kernels.wepl.wepl_cube`'s threads). Same arithmetic as the NumPy path, the same cube and
the same WEPL at points to the last bit (tests/test_wepl.py); without the extension
:func:`available` is False and NumPy does both.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np

from kernels import extension

_I64, _F64 = ctypes.c_int64, ctypes.c_double


def _library() -> ctypes.CDLL | None:
    return extension.load("kernels._wepl_cpu")


def available() -> bool:
    """Whether the compiled ray integration was built with this installation."""
    return _library() is not None


def _vector(values: Sequence[float]) -> ctypes.Array[ctypes.c_double]:
    return (ctypes.c_double * 3)(*(float(x) for x in values))


def _loaded() -> ctypes.CDLL:
    return extension.require("kernels._wepl_cpu", "WEPL ray integration")


def _c_contiguous(array: np.ndarray, dtype: type, shape: tuple[int, ...], what: str) -> None:
    if array.dtype != dtype or not array.flags.c_contiguous or array.shape != shape:
        raise ValueError(f"{what} must be C-ordered {np.dtype(dtype).name} of shape {shape}, "
                         f"got {array.dtype} {array.shape}")


def integrate_rays(flat: np.ndarray, dims: tuple[int, int, int], i_start: int, i_stop: int,
                   n_v: int, n_t: int, nodes_mm: tuple[float, float, float],
                   h_lat_mm: float, h_t_mm: float, index_at_origin: Sequence[float],
                   index_per_mm: Sequence[Sequence[float]], out: np.ndarray) -> None:
    """WEPL at the boundary planes of the rays ``i_start..i_stop - 1`` (each with its ``n_v``
    rays) into ``out``.

    Parameters
    ----------
    flat : (n0 * n1 * n2,) float32 array
        The zero-padded RSP volume, C order ``(z, y, x)``.
    dims : (n0, n1, n2)
        Its padded shape.
    nodes_mm : (u0, v0, t0)
        Lateral position of ray node (0, 0) and depth of boundary plane 0, mm.
    h_lat_mm, h_t_mm : float
        Ray spacing and depth step.
    index_at_origin : (3,) floats
        Fractional padded index ``(z, y, x)`` at ``u = v = t = 0``.
    index_per_mm : three (3,) float sequences
        Its change per mm along u, v and t.
    out : (i_stop - i_start, n_v, n_t + 1) float32 array, C-contiguous
    """
    lib = _loaded()
    _c_contiguous(flat, np.float32, (int(np.prod(dims)),), "the padded volume")
    _c_contiguous(out, np.float32, (i_stop - i_start, n_v, n_t + 1), "the output")
    shape = (ctypes.c_int64 * 3)(*(int(n) for n in dims))
    status = lib.wepl_rays(
        ctypes.c_void_p(flat.ctypes.data), shape, _I64(i_start), _I64(i_stop), _I64(n_v),
        _I64(n_t), _F64(nodes_mm[0]), _F64(nodes_mm[1]), _F64(nodes_mm[2]), _F64(h_lat_mm),
        _F64(h_t_mm), _vector(index_at_origin), *(_vector(a) for a in index_per_mm),
        ctypes.c_void_p(out.ctypes.data))
    if status != 0:
        raise RuntimeError(f"the compiled WEPL ray integration refused the call ({status})")


def sample_points(cube: np.ndarray, points_lps: np.ndarray, axes: np.ndarray,
                  offsets_mm: Sequence[float], steps_mm: Sequence[float]) -> np.ndarray:
    """WEPL of ``cube`` at the points: trilinear at ``(p . axes[k] - offsets_mm[k]) /
    steps_mm[k]`` along cube axis ``k``.

    Parameters
    ----------
    cube : (n_u, n_v, n_t + 1) float32 array, C-contiguous
    points_lps : (N, 3) float64 array, C-contiguous
        Points ``(x, y, z)``, LPS mm.
    axes : (3, 3) float array
        Rows: the cube's u, v and depth axes, LPS.
    offsets_mm, steps_mm : three floats each

    Returns
    -------
    (N,) float32 array
    """
    lib = _loaded()
    if cube.ndim != 3:
        raise ValueError(f"the cube must be 3-D, got shape {cube.shape}")
    _c_contiguous(cube, np.float32, cube.shape, "the cube")
    n = int(points_lps.shape[0]) if points_lps.ndim == 2 else -1
    _c_contiguous(points_lps, np.float64, (n, 3), "the points")
    out = np.empty(n, dtype=np.float32)
    shape = (ctypes.c_int64 * 3)(*(int(d) for d in cube.shape))
    flat_axes = (ctypes.c_double * 9)(*(float(a) for a in np.asarray(axes).reshape(-1)))
    status = lib.wepl_points(ctypes.c_void_p(cube.ctypes.data), shape,
                             ctypes.c_void_p(points_lps.ctypes.data), _I64(n), flat_axes,
                             _vector(offsets_mm), _vector(steps_mm),
                             ctypes.c_void_p(out.ctypes.data))
    if status != 0:
        raise RuntimeError(f"the compiled WEPL sampling refused the call ({status})")
    return out
