"""Forward sums without a matrix on the CPU: pencil beams evaluated and summed per voxel.

Each block of a beam's voxels runs all the beam's layers: the entries of a chunk
(:func:`kernels.influence.chunk_pairs`) are multiplied by their spots' weights and summed per
voxel with ``bincount``, so nothing is stored per entry beyond one chunk. Blocks run in a
thread pool; each beam has its own dose array (blocks of one beam own distinct rows) and the
shared LET and model sums are added under a lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from kernels.influence import chunk_pairs, plan_layer
from planning.engine.cpu_influence import BeamWork
from planning.engine.dose_engine import DoseEngineSettings
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

    def run(block: tuple[BeamWork, int, int]) -> None:
        bw, start, stop = block
        size = stop - start
        d = np.zeros(size)
        ld = np.zeros(size) if with_let else None
        md = np.zeros((n_model, size))
        for layer in bw.layers.layers:
            if cancel is not None:
                cancel.raise_if_cancelled("dose calculation")
            plan = plan_layer(bw.voxels, layer, start=start, stop=stop,
                              chunk_candidates=settings.chunk_candidates)
            if plan is None:
                continue
            for chunk in plan.chunks:
                if cancel is not None:
                    cancel.raise_if_cancelled("dose calculation")
                pairs = chunk_pairs(plan, chunk, let=with_let)
                local = np.repeat(pairs.voxel - start, pairs.counts)
                w_pair = w[pairs.spot]
                d += np.bincount(local, weights=w_pair * pairs.dose, minlength=size)
                if ld is not None:
                    ld += np.bincount(local, weights=w_pair * pairs.let_dose, minlength=size)
                for k, values in enumerate(pairs.model_dose):
                    md[k] += np.bincount(local, weights=w_pair * values, minlength=size)
        rows = bw.voxels.index[start:stop]
        beam_dose[bw.beam][rows] += d
        with lock:
            if let_dose is not None and ld is not None:
                let_dose[rows] += ld
            if model is not None:
                model[:, rows] += md

    n_threads = settings.n_threads or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        try:
            for i, _ in enumerate(pool.map(run, blocks)):
                report(progress, (i + 1) / len(blocks), "dose cubes")
        except BaseException:
            pool.shutdown(cancel_futures=True)  # blocks not started yet never start
            raise
    return beam_dose, let_dose, model
