"""The WEPL cube's ray integration compiled for the CPU (``kernels._wepl_cpu``).

``setup.py`` compiles :mod:`kernels.wepl_source` into the optional extension
``kernels._wepl_cpu``, called here through ctypes (without the GIL, so the rays of a cube run on
:func:`kernels.wepl.wepl_cube`'s threads). Same arithmetic as the NumPy path, the same cube to
the last bit (tests/test_wepl.py); without the extension :func:`available` is False and the cube
is made with NumPy.
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
    lib = _library()
    if lib is None:
        raise RuntimeError("the compiled WEPL ray integration is not built")
    if flat.dtype != np.float32 or not flat.flags.c_contiguous or flat.size != np.prod(dims):
        raise ValueError(f"the padded volume must be {np.prod(dims)} C-ordered float32 values")
    if (out.dtype != np.float32 or not out.flags.c_contiguous
            or out.shape != (i_stop - i_start, n_v, n_t + 1)):
        raise ValueError(f"the output must be C-ordered float32 of shape "
                         f"{(i_stop - i_start, n_v, n_t + 1)}, got {out.dtype} {out.shape}")
    shape = (ctypes.c_int64 * 3)(*(int(n) for n in dims))
    status = lib.wepl_rays(
        ctypes.c_void_p(flat.ctypes.data), shape, _I64(i_start), _I64(i_stop), _I64(n_v),
        _I64(n_t), _F64(nodes_mm[0]), _F64(nodes_mm[1]), _F64(nodes_mm[2]), _F64(h_lat_mm),
        _F64(h_t_mm), _vector(index_at_origin), *(_vector(a) for a in index_per_mm),
        ctypes.c_void_p(out.ctypes.data))
    if status != 0:
        raise RuntimeError(f"the compiled WEPL ray integration refused the call ({status})")
