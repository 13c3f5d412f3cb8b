"""Forward sums without a matrix on the CPU: pencil beams evaluated and summed per voxel.

Each block of a beam's voxels runs all the beam's layers, each reduced to its spots of non-zero
weight (:func:`kernels.influence.subset_layer`): the pairs of a chunk are weighted by
their spots' weights and summed per voxel (:func:`kernels.influence.chunk_dose`), so nothing is
stored per pair beyond one chunk. LET and model quantities depend on the voxel's depth only, so
a layer's LET x dose and model sums are its per-voxel dose times the voxel's values, added per
voxel rather than per pair. Blocks run in a thread pool; each beam has its own dose array (blocks
of one beam own distinct rows) and the shared LET and model sums are added under a lock.

Where the compiled kernel is built (:mod:`kernels.pencil_beam_cpu`) and the settings allow it
(``compiled_kernels``), each beam's layers are packed once and blocks of its voxels run the
kernel's accumulate mode on the thread pool instead: every pair in registers, one beam after
the other (their blocks add into the same LET and model rows).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kernels import pencil_beam_cpu
from kernels.influence import (
    chunk_dose,
    chunk_quantities,
    plan_layer,
    weighted_layers,
)
from kernels.pencil_beam_gpu import pack_weighted
from planning.engine.cpu_influence import BeamWork, compiled_block_voxels
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
    if settings.compiled_kernels and pencil_beam_cpu.usable(n_model):
        _compiled_sums(work, w, settings, beam_dose, let_dose, model, progress, cancel)
        return beam_dose, let_dose, model
    lock = threading.Lock()
    blocks = [(bw, start, min(start + settings.block_voxels, bw.voxels.n))
              for bw in work for start in range(0, bw.voxels.n, settings.block_voxels)]
    weighted = {bw.beam: weighted_layers(bw.layers.layers, w) for bw in work}

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


def _compiled_sums(work: Sequence[BeamWork], weights: FloatArray, settings: DoseEngineSettings,
                   beam_dose: list[FloatArray], let_dose: FloatArray | None,
                   model: FloatArray | None, progress: ProgressCallback | None,
                   cancel: CancelToken | None) -> None:
    """:func:`accumulate_sums` with the compiled kernel, into the given zeroed outputs."""
    n_threads = cpu_threads(settings.n_threads)
    jobs = []
    for bw in work:
        packed = pack_weighted(bw.layers.layers, weights, np)
        if packed is None or bw.voxels.n == 0:
            continue
        size = compiled_block_voxels(bw.voxels.n, settings)
        jobs.append((bw, packed,
                     [(a, min(a + size, bw.voxels.n)) for a in range(0, bw.voxels.n, size)]))
    total = sum(len(blocks) for _, _, blocks in jobs)
    done = 0
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        for bw, packed, blocks in jobs:  # beams in turn: their blocks share LET and model rows

            def run(block: tuple[int, int], bw: BeamWork = bw, packed: Any = packed) -> None:
                if cancel is not None:
                    cancel.raise_if_cancelled("dose calculation")
                pencil_beam_cpu.accumulate(bw.voxels, packed, block[0], block[1], weights,
                                           dose=beam_dose[bw.beam], let_dose=let_dose,
                                           model=model)

            try:
                for _ in pool.map(run, blocks):
                    done += 1
                    report(progress, done / total, "dose cubes")
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
