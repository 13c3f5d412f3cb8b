"""Forward sums without a matrix on the CPU: pencil beams evaluated and summed per voxel.

Each block of a beam's voxels runs all the beam's layers, each reduced to its spots of non-zero
weight (:func:`kernels.influence.subset_layer`): the pairs of a chunk are weighted by
their spots' weights and summed per voxel (:func:`kernels.influence.chunk_dose`), so nothing is
stored per pair beyond one chunk. LET and model quantities depend on the voxel's depth only, so
a layer's LET x dose and model sums are its per-voxel dose times the voxel's values, added per
voxel rather than per pair. Blocks run in a thread pool; each beam has its own dose array (blocks
of one beam own distinct rows) and the shared LET and model sums are added under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from kernels.influence import (
    LayerSetup,
    chunk_dose,
    chunk_quantities,
    layer_weights_by_rank,
    plan_layer,
    subset_layer,
)
from planning.engine.cpu_influence import BeamWork
from planning.engine.dose_engine import DoseEngineSettings, cpu_threads
from planning.engine.memory import release_free_heap
from planning.progress import CancelToken, ProgressCallback, report

FloatArray = NDArray[np.float64]


def accumulate_sums(work: Sequence[BeamWork], weights: FloatArray, n_rows: int,
                    settings: DoseEngineSettings, *, with_let: bool, n_model: int,
                    progress: ProgressCallback | None = None, cancel: CancelToken | None = None
                    ) -> tuple[list[FloatArray], FloatArray | None, FloatArray | None]:
    """Per-beam dose, LET x dose and model sums (K, n_rows) of spot weights, host float64.

    Parameters
    ----------
    work : sequence of BeamWork
        Voxels (rows: their ``index``) and layers of each beam.
    weights : (n_spots,) float array
        Weight of each column (spot identifier).
    n_rows : int
        Length of the outputs.
    """
    w = np.asarray(weights, dtype=np.float64)
    beam_dose = [np.zeros(n_rows) for _ in work]
    let_dose = np.zeros(n_rows) if with_let else None
    model = np.zeros((n_model, n_rows)) if n_model else None
    lock = threading.Lock()
    blocks = [(bw, start, min(start + settings.block_voxels, bw.voxels.n))
              for bw in work for start in range(0, bw.voxels.n, settings.block_voxels)]
    weighted = {bw.beam: _weighted_layers(bw.layers.layers, w) for bw in work}

    def run(block: tuple[BeamWork, int, int]) -> None:
        bw, start, stop = block
        size = stop - start
        d = np.zeros(size)
        ld = np.zeros(size) if with_let else None
        md = np.zeros((n_model, size))
        for layer, w_rank in weighted[bw.beam]:
            if cancel is not None:
                cancel.raise_if_cancelled("dose calculation")
            plan = plan_layer(bw.voxels, layer, start=start, stop=stop,
                              chunk_candidates=settings.chunk_candidates)
            if plan is None:
                continue
            for chunk in plan.chunks:
                if cancel is not None:
                    cancel.raise_if_cancelled("dose calculation")
                local = plan.voxel[chunk.start:chunk.stop] - start  # distinct within a layer
                dose = chunk_dose(plan, chunk, w_rank)
                d[local] += dose
                quantities = chunk_quantities(plan, chunk, let=with_let)
                if ld is not None:
                    ld[local] += dose * quantities.pop(0)
                for k, values in enumerate(quantities):
                    md[k, local] += dose * values
        rows = bw.voxels.index[start:stop]
        beam_dose[bw.beam][rows] += d
        with lock:
            if let_dose is not None and ld is not None:
                let_dose[rows] += ld
            if model is not None:
                model[:, rows] += md

    n_threads = cpu_threads(settings.n_threads)
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        try:
            for i, _ in enumerate(pool.map(run, blocks)):
                report(progress, (i + 1) / len(blocks), "dose cubes")
        except BaseException:
            pool.shutdown(cancel_futures=True)  # blocks not started yet never start
            raise
    release_free_heap()  # the chunks' temporaries
    return beam_dose, let_dose, model


def _weighted_layers(layers: Sequence[LayerSetup], weights: FloatArray
                     ) -> list[tuple[LayerSetup, FloatArray]]:
    """Each layer reduced to its spots of non-zero weight (an optimized plan leaves a fifth to
    a third of them at zero), with those spots' weights in rank order; layers without weight
    are left out."""
    out = []
    for layer in layers:
        w_rank = layer_weights_by_rank(layer, weights)
        keep = w_rank != 0
        sub = subset_layer(layer, keep)
        if sub is not None:
            out.append((sub, w_rank[keep]))
    return out
