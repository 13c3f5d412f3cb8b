"""Fused pencil-beam kernels on a CUDA device (CuPy RawModule), one launch per beam and pass.

The layers of a beam (:class:`kernels.influence.LayerSetup`, built on the device) are packed
once into flat device arrays (:func:`pack_layers`); then

- :func:`count_entries` gives the entries of every voxel of the beam (one launch),
- :func:`fill_entries` writes them into preallocated CSR arrays from each voxel's start
  (one launch; the caller computes the starts with a device prefix sum), and
- :func:`accumulate` adds weight x dose, x LETd and x each model quantity of all the beam's
  spots straight into per-row sums (one launch), a forward dose without a matrix.

There is no host synchronisation inside a beam. The arithmetic is that of
:mod:`kernels.influence` (see :mod:`kernels.pencil_beam_source`), whose NumPy functions are the
twins the tests compare against. The compiled module is cached by CuPy on disk (``CUPY_CACHE_DIR``,
default ``~/.cupy/kernel_cache``), so the NVRTC compilation is paid once per machine and CuPy
version; :func:`warm_up` compiles it ahead (the GUI calls it in the background at start).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from kernels.backend import cupy_module
from kernels.influence import BeamVoxels, LayerSetup, weighted_layers
from kernels.pencil_beam_source import CUDA_SOURCE, LINT_FIELDS, MAX_MODEL_QUANTITIES

#: Threads per block of the per-voxel kernel.
THREADS_PER_BLOCK = 128


@dataclass(frozen=True)
class PackedLayers:
    """The layers of one beam as flat arrays (all on one device, or all NumPy for the twin).

    Attributes
    ----------
    lint : (L * LINT_FIELDS,) int64
        Per layer: table node offset, nodes, rank-table offset, width, iu_min, iu_max, iv_min,
        iv_max, rank offset.
    depth_max_mm : (L,) float32
        Deepest WEPL with dose of each layer (-1 for none).
    radius_mm : (sum of nodes,) float32
        Cut-off radius tables, concatenated.
    tabs : (sum of (5 + K) x nodes,) float32
        Dose tables (see :class:`kernels.influence.LayerSetup`), concatenated.
    rank_table : int64
        Rank tables, concatenated.
    spot_iu : int64
        Lattice column of each spot by rank, concatenated.
    spot_id : int32
        Column (spot identifier) of each spot by rank, concatenated.
    n_model : int
        ``K``.
    """

    lint: Any
    depth_max_mm: Any
    radius_mm: Any
    tabs: Any
    rank_table: Any
    spot_iu: Any
    spot_id: Any
    n_model: int

    @property
    def n_layers(self) -> int:
        return int(self.depth_max_mm.shape[0])


def pack_layers(layers: Sequence[LayerSetup], xp: Any) -> PackedLayers:
    """Concatenate a beam's layer set-ups (in the order given) into :class:`PackedLayers`.

    Raises
    ------
    ValueError
        For no layers, layers with different numbers of model quantities, more than
        ``MAX_MODEL_QUANTITIES`` of them, or spot identifiers beyond int32.
    """
    if not layers:
        raise ValueError("a beam needs at least one layer")
    n_model = layers[0].n_model
    if any(lay.n_model != n_model for lay in layers):
        raise ValueError("all layers of a beam must carry the same model quantities")
    if n_model > MAX_MODEL_QUANTITIES:
        raise ValueError(f"at most {MAX_MODEL_QUANTITIES} model quantities, got {n_model}")
    lint = np.zeros((len(layers), LINT_FIELDS), dtype=np.int64)
    t_off = r_off = s_off = 0
    ids = []
    for i, lay in enumerate(layers):
        n_spots = int(lay.spot_iu.shape[0])
        lint[i] = (t_off, lay.table_nodes, r_off, lay.table_width, lay.iu_min, lay.iu_max,
                   lay.iv_min, lay.iv_max, s_off)
        t_off += lay.table_nodes
        r_off += int(lay.rank_table.shape[0])
        s_off += n_spots
        ids.append(xp.arange(n_spots, dtype=xp.int32) if lay.rank_to_spot is None
                   else lay.rank_to_spot)
    if any(i.dtype != xp.int32 for i in ids):
        raise ValueError("spot identifiers must fit in int32")
    return PackedLayers(
        lint=xp.asarray(lint.reshape(-1)),
        depth_max_mm=xp.asarray(np.array([lay.depth_max_mm for lay in layers], np.float32)),
        radius_mm=xp.concatenate([lay.radius_mm for lay in layers]),
        tabs=xp.concatenate([lay.dose_tables for lay in layers]),
        rank_table=xp.concatenate([xp.asarray(lay.rank_table, dtype=xp.int64)
                                   for lay in layers]),
        spot_iu=xp.concatenate([xp.asarray(lay.spot_iu, dtype=xp.int64) for lay in layers]),
        spot_id=xp.concatenate(ids),
        n_model=n_model,
    )


def pack_weighted(layers: Sequence[LayerSetup], weights: Any, xp: Any) -> PackedLayers | None:
    """A beam's layers packed with only their spots of non-zero ``weights`` (by spot
    identifier, where the layers' arrays live; :func:`kernels.influence.weighted_layers`), for
    the accumulate mode of the GPU launch and of the CPU build; None when no spot has
    weight."""
    kept = [layer for layer, _ in weighted_layers(layers, weights)]
    return pack_layers(kept, xp) if kept else None


@cache
def _kernel() -> Any:
    cp = cupy_module()
    module = cp.RawModule(code=CUDA_SOURCE, options=("-std=c++14",), name_expressions=None)
    return module.get_function("pb_beam")


def warm_up() -> None:
    """Compile (or load from CuPy's disk cache) the kernel module now."""
    _kernel()


def _launch(mode: int, voxels: BeamVoxels, packed: PackedLayers, *, with_let: bool,
            counts: Any = None, start: Any = None, out_dose: Any = None, out_let: Any = None,
            out_model: Any = None, model_stride: int = 0, out_col: Any = None,
            weights: Any = None, acc_dose: Any = None, acc_let: Any = None,
            acc_model: Any = None, acc_stride: int = 0) -> None:
    cp = cupy_module()
    n = voxels.n
    if n == 0:
        return
    null = cp.zeros(1, dtype=cp.int8)  # placeholder for pointers a mode does not use

    def ptr(a: Any) -> Any:
        return null if a is None else a

    args = (np.int32(mode), np.int64(n),
            voxels.cu, voxels.cv, voxels.step_u_mm, voxels.step_v_mm, voxels.wepl_mm,
            voxels.wepl_index, voxels.wepl_frac, voxels.index,
            np.int32(packed.n_layers), packed.lint, packed.depth_max_mm, packed.radius_mm,
            packed.tabs, packed.rank_table, packed.spot_iu, packed.spot_id,
            np.int32(packed.n_model), np.int32(1 if with_let else 0),
            ptr(counts), ptr(start), ptr(out_dose), ptr(out_let), ptr(out_model),
            np.int64(model_stride), ptr(out_col), ptr(weights), ptr(acc_dose), ptr(acc_let),
            ptr(acc_model), np.int64(acc_stride))
    blocks = (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    _kernel()((blocks,), (THREADS_PER_BLOCK,), args)


def count_entries(voxels: BeamVoxels, packed: PackedLayers) -> Any:
    """Entries of each voxel of the beam over all its layers, (n,) int32 in voxel order."""
    cp = cupy_module()
    counts = cp.zeros(voxels.n, dtype=cp.int32)
    _launch(0, voxels, packed, with_let=False, counts=counts)
    return counts


def fill_entries(voxels: BeamVoxels, packed: PackedLayers, start: Any, *, dose: Any,
                 col: Any, let_dose: Any = None, model: Any = None) -> None:
    """Write every voxel's entries from ``start[v]`` (int64, voxel order) on.

    ``dose``, ``let_dose`` (or None) are (nnz,) float32, ``col`` (nnz,) int32, ``model`` a
    (K, nnz) float32 C-contiguous array (or None when K = 0).
    """
    stride = 0 if model is None else int(model.shape[1])
    _launch(1, voxels, packed, with_let=let_dose is not None, start=start, out_dose=dose,
            out_let=let_dose, out_model=model, model_stride=stride, out_col=col)


def accumulate(voxels: BeamVoxels, packed: PackedLayers, weights: Any, *, dose: Any,
               let_dose: Any = None, model: Any = None) -> None:
    """Add the weighted sums of every voxel into row ``voxels.index[v]`` of the outputs.

    ``weights`` (n_spots,) float64 by spot identifier; ``dose``, ``let_dose`` (n_rows,) float64,
    ``model`` (K, n_rows) float64 C-contiguous (or None when K = 0). A voxel's row appears once
    per beam, so one launch per beam needs no atomics.
    """
    stride = 0 if model is None else int(model.shape[1])
    _launch(2, voxels, packed, with_let=let_dose is not None, weights=weights, acc_dose=dose,
            acc_let=let_dose, acc_model=model, acc_stride=stride)
