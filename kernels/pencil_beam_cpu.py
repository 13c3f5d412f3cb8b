"""The fused pencil-beam kernel compiled for the CPU (``kernels._pencil_beam_cpu``).

``setup.py`` compiles the kernel source of :mod:`kernels.pencil_beam_source` (the one CuPy
compiles for the GPU) with ``PB_CPU_TWIN`` into a loop over voxels, ``pb_beam_cpu``, called
here through ctypes, which releases the GIL for the call: blocks of voxels run in parallel on
a thread pool. It evaluates each (voxel, spot) pair in registers, where the NumPy kernels of
:mod:`kernels.influence` (its twins, which the tests compare it with) make a dozen passes over
per-pair temporaries. Without the extension (no C++ compiler at install time)
:func:`available` is False and the engine uses the NumPy kernels.

Same modes as :mod:`kernels.pencil_beam_gpu`: count the entries of each voxel, fill them from
each voxel's start, or accumulate weight x dose (x LETd, x model quantities) per voxel.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from kernels import extension
from kernels.influence import BeamVoxels
from kernels.pencil_beam_gpu import PackedLayers
from kernels.pencil_beam_source import MAX_MODEL_QUANTITIES

_I64, _I32 = ctypes.c_int64, ctypes.c_int32


def _library() -> ctypes.CDLL | None:
    return extension.load("kernels._pencil_beam_cpu")


def available() -> bool:
    """Whether the compiled kernel was built with this installation."""
    return _library() is not None


def usable(n_model: int) -> bool:
    """Whether the compiled kernel is built and takes ``n_model`` model quantities (it keeps
    at most ``MAX_MODEL_QUANTITIES`` per voxel in registers, as on the GPU)."""
    return n_model <= MAX_MODEL_QUANTITIES and available()


def _ptr(a: Any) -> Any:
    if a is None:
        return None
    if not (isinstance(a, np.ndarray) and a.flags.c_contiguous):
        raise ValueError("the compiled kernel takes C-contiguous NumPy arrays")
    return a.ctypes.data_as(ctypes.c_void_p)


def _checked(voxels: BeamVoxels) -> BeamVoxels:
    expected = {"cu": np.float32, "cv": np.float32, "step_u_mm": np.float32,
                "step_v_mm": np.float32, "wepl_mm": np.float32, "wepl_index": np.int64,
                "wepl_frac": np.float32, "index": np.int64}
    for name, dtype in expected.items():
        a = getattr(voxels, name)
        if a.dtype != dtype:
            raise ValueError(f"voxel array {name} is {a.dtype}, the kernel takes {dtype}")
    return voxels


def call_kernel(lib: ctypes.CDLL, mode: int, voxels: BeamVoxels, packed: PackedLayers,
                start: int, stop: int, *, with_let: bool, counts: Any = None,
                row_start: Any = None, out_dose: Any = None, out_let: Any = None,
                out_model: Any = None, out_col: Any = None, weights: Any = None,
                acc_dose: Any = None, acc_let: Any = None, acc_model: Any = None) -> None:
    """Call ``pb_beam_cpu`` of ``lib`` (this extension, or the tests' build of the same
    source) on the voxels ``start:stop``; ``counts`` and ``row_start`` are per voxel of the
    beam, the outputs as the public functions below describe them."""
    v = _checked(voxels)
    if not 0 <= start <= stop <= v.n:
        raise ValueError(f"voxel block [{start}, {stop}) outside 0..{v.n}")
    if stop == start:
        return
    s = slice(start, stop)
    stride = 0 if out_model is None else int(out_model.shape[1])
    acc_stride = 0 if acc_model is None else int(acc_model.shape[1])
    lib.pb_beam_cpu(
        _I32(mode), _I64(stop - start), _ptr(v.cu[s]), _ptr(v.cv[s]), _ptr(v.step_u_mm[s]),
        _ptr(v.step_v_mm[s]), _ptr(v.wepl_mm[s]), _ptr(v.wepl_index[s]),
        _ptr(v.wepl_frac[s]), _ptr(v.index[s]), _I32(packed.n_layers), _ptr(packed.lint),
        _ptr(packed.depth_max_mm), _ptr(packed.radius_mm), _ptr(packed.tabs),
        _ptr(packed.rank_table), _ptr(packed.spot_iu), _ptr(packed.spot_id),
        _I32(packed.n_model), _I32(1 if with_let else 0),
        _ptr(None if counts is None else counts[s]),
        _ptr(None if row_start is None else row_start[s]), _ptr(out_dose), _ptr(out_let),
        _ptr(out_model), _I64(stride), _ptr(out_col), _ptr(weights), _ptr(acc_dose),
        _ptr(acc_let), _ptr(acc_model), _I64(acc_stride))


def _run(mode: int, voxels: BeamVoxels, packed: PackedLayers, start: int, stop: int,
         **arrays: Any) -> None:
    call_kernel(extension.require("kernels._pencil_beam_cpu", "pencil-beam kernel"), mode,
                voxels, packed, start, stop, **arrays)


def count_entries(voxels: BeamVoxels, packed: PackedLayers, start: int, stop: int,
                  counts: Any) -> None:
    """Entries of the voxels ``start:stop`` over all layers into ``counts[start:stop]``
    ((n,) int32, voxel order)."""
    if counts.dtype != np.int32 or counts.shape != (voxels.n,):
        raise ValueError(f"counts must be ({voxels.n},) int32")
    _run(0, voxels, packed, start, stop, with_let=False, counts=counts)


def fill_entries(voxels: BeamVoxels, packed: PackedLayers, start: int, stop: int,
                 row_start: Any, *, dose: Any, col: Any, let_dose: Any = None,
                 model: Any = None) -> None:
    """Write the entries of the voxels ``start:stop`` from ``row_start[v]`` ((n,) int64,
    voxel order) on: ``dose``, ``let_dose`` (nnz,) float32, ``col`` (nnz,) int32, ``model``
    (K, nnz) float32 C-contiguous (or None when K = 0)."""
    _run(1, voxels, packed, start, stop, with_let=let_dose is not None,
         row_start=np.ascontiguousarray(row_start, dtype=np.int64), out_dose=dose,
         out_let=let_dose, out_model=model, out_col=col)


def accumulate(voxels: BeamVoxels, packed: PackedLayers, start: int, stop: int,
               weights: Any, *, dose: Any, let_dose: Any = None, model: Any = None) -> None:
    """Add the weighted sums of the voxels ``start:stop`` into their rows
    (``voxels.index``) of ``dose``, ``let_dose`` ((n_rows,) float64) and ``model``
    ((K, n_rows) float64, C-contiguous, or None when K = 0). ``weights`` (n_spots,) float64 by
    spot identifier. Blocks of one beam own distinct rows; blocks of different beams may not
    run at the same time on the same outputs."""
    n_rows = int(dose.shape[0])
    for name, a, shape in (("dose", dose, (n_rows,)), ("let_dose", let_dose, (n_rows,)),
                           ("model", model, (packed.n_model, n_rows))):
        if a is not None and (a.dtype != np.float64 or a.shape != shape):
            raise ValueError(f"{name} must be float64 of shape {shape}")
    if (model is None) != (packed.n_model == 0):
        raise ValueError(f"the layers carry {packed.n_model} model quantities: give model "
                         "sums exactly when there are some")
    if stop > start and int(voxels.index[start:stop].max()) >= n_rows:
        raise ValueError(f"voxel rows beyond the {n_rows} rows of the outputs")
    _run(2, voxels, packed, start, stop, with_let=let_dose is not None,
         weights=np.ascontiguousarray(weights, dtype=np.float64), acc_dose=dose,
         acc_let=let_dose, acc_model=model)
