"""Influence matrices with the array-API kernels (NumPy on the CPU, in a thread pool).

Two passes over work items that are blocks of a beam's voxels (in WEPL order). The first counts
the entries of every row (index arithmetic per window row, no pair is visited), which fixes the
CSR row pointers and, per row, where each beam's entries start. The second evaluates the pencil
beams and writes every entry straight to its final place: no concatenation, no sort. A block
runs all layers of its beam, in column order, and owns its rows within that beam's part of each
row, so blocks are independent; they run in a thread pool (NumPy releases the GIL in its loops).
Where the compiled kernel is built (:mod:`kernels.pencil_beam_cpu`; float32 host matrices,
``DoseEngineSettings.compiled_kernels``) its count and fill passes do both passes' work per block
of voxels instead, all of a beam's layers at once, without the GIL.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from kernels import backend, pencil_beam_cpu
from kernels.influence import BeamVoxels, LayerPlan, chunk_pairs, count_pairs, plan_layer
from kernels.pencil_beam_gpu import PackedLayers, pack_layers
from planning.engine.dose_engine import DoseEngineSettings, cpu_threads
from planning.engine.memory import check_host_memory, release_free_heap
from planning.engine.setup import BeamLayers
from planning.errors import PlanningError
from planning.progress import CancelToken, ProgressCallback, report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BeamWork:
    """One beam's voxels (the rows to compute) and its layers; ``beam`` is its position in
    the work list (beams' entries follow each other in that order within a row)."""

    beam: int
    voxels: BeamVoxels
    layers: BeamLayers


@dataclass(frozen=True)
class _Run:
    """What every step of one build needs: namespace, settings, progress, cancel."""

    xp: Any
    settings: DoseEngineSettings
    progress: ProgressCallback | None
    cancel: CancelToken | None

    def report(self, fraction: float, stage: str) -> None:
        report(self.progress, fraction, stage)

    def check(self) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled("influence matrix calculation")

    def plans(self, bw: BeamWork, start: int, stop: int) -> Iterator[LayerPlan]:
        """The plans of all layers of a beam on one block of its voxels, in column order."""
        for layer in bw.layers.layers:
            self.check()
            plan = plan_layer(bw.voxels, layer, start=start, stop=stop,
                              chunk_candidates=self.settings.chunk_candidates)
            if plan is not None:
                yield plan


_Block = tuple[BeamWork, int, int]

#: Blocks per thread of a beam's voxels for the compiled kernel: their costs differ (the voxels
#: are in WEPL order and deep ones see fewer layers), so many small ones keep every thread busy
#: to the end (TG-119 forward dose on 2 threads: 1.26x with 4 per thread, 1.85x with 32).
BLOCKS_PER_THREAD = 32


def compiled_block_voxels(n_voxels: int, settings: DoseEngineSettings) -> int:
    """Voxels per block of a beam of ``n_voxels`` voxels for the compiled kernel (it keeps
    no per-pair temporaries): ``BLOCKS_PER_THREAD`` blocks per thread, at least 64 voxels,
    at most ``settings.block_voxels``."""
    n_threads = cpu_threads(settings.n_threads)
    return min(settings.block_voxels,
               max(64, -(-n_voxels // (BLOCKS_PER_THREAD * n_threads))))


def build_matrices(xp: Any, work: Sequence[BeamWork], n_rows: int, n_spots: int,
                   settings: DoseEngineSettings, *, store_let: bool, n_model: int,
                   dtype: Any = np.float32, progress: ProgressCallback | None = None,
                   cancel: CancelToken | None = None
                   ) -> tuple[sp.csr_array, sp.csr_array | None, tuple[sp.csr_array, ...]]:
    """Dose, LET x dose (or None) and model-sum CSR matrices (n_rows, n_spots) on the host,
    data of ``dtype`` (float32; float64 for the optimizer, written directly without a copy).

    Rows are the voxels' ``index`` values; rows of no voxel stay empty. The memory of the
    matrices is checked against the available memory once the entries are counted.
    """
    run = _Run(xp, settings, progress, cancel)
    compiled = (xp is np and np.dtype(dtype) == np.float32 and settings.compiled_kernels
                and pencil_beam_cpu.usable(n_model))
    blocks, packed = _work_items(work, settings, compiled)
    with ThreadPoolExecutor(max_workers=cpu_threads(settings.n_threads)) as pool:
        try:
            csr = _CsrAssembly(xp, _count_rows(run, pool, blocks, work, n_rows, packed),
                               let=store_let, n_model=n_model, dtype=dtype)
            _write_entries(run, pool, blocks, work, csr, packed)
        except BaseException:
            pool.shutdown(cancel_futures=True)  # blocks not started yet never start
            raise
    if not csr.complete:
        raise RuntimeError("influence matrix assembly is inconsistent (counts differ between "
                           "passes); please report this as a bug")
    run.report(0.98, "building sparse matrices")
    release_free_heap()  # the chunks' temporaries, before the matrices are used
    return csr.to_scipy((n_rows, n_spots), sorted_rows=_rows_sorted(work))


def count_entries(xp: Any, work: Sequence[BeamWork], n_rows: int,
                  settings: DoseEngineSettings, *, cancel: CancelToken | None = None) -> Any:
    """Entries of every row of the matrices :func:`build_matrices` would build: the first of
    its two passes alone (no pencil beam is evaluated, nothing of the matrices allocated);
    ``(n_rows,)`` int64 in namespace ``xp``."""
    run = _Run(xp, settings, None, cancel)
    compiled = xp is np and settings.compiled_kernels and pencil_beam_cpu.usable(0)
    blocks, packed = _work_items(work, settings, compiled)
    with ThreadPoolExecutor(max_workers=cpu_threads(settings.n_threads)) as pool:
        try:
            offsets = _count_rows(run, pool, blocks, work, n_rows, packed)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return xp.astype(offsets[-1], xp.int64)


def _work_items(work: Sequence[BeamWork], settings: DoseEngineSettings, compiled: bool
                ) -> tuple[list[_Block], dict[int, PackedLayers]]:
    """The blocks of voxels the passes run on, and each beam's layers packed for the compiled
    kernel (none without it)."""
    size = settings.block_voxels
    if compiled:  # no per-pair temporaries: many blocks per thread (see compiled_block_voxels)
        size = compiled_block_voxels(max(bw.voxels.n for bw in work), settings)
    blocks = [(bw, start, min(start + size, bw.voxels.n))
              for bw in work for start in range(0, bw.voxels.n, size)]
    packed = {bw.beam: pack_layers(bw.layers.layers, np) for bw in work} if compiled else {}
    return blocks, packed


def _count_rows(run: _Run, pool: ThreadPoolExecutor, blocks: Sequence[_Block],
                work: Sequence[BeamWork], n_rows: int, packed: dict[int, PackedLayers]
                ) -> list[Any]:
    """First pass: entries of every row per beam, returned as cumulative row offsets.

    Returns ``offsets`` with ``offsets[b][r]`` = entries of row ``r`` from beams before ``b``
    (``offsets[n_beams]`` = all entries of the row), int32. With ``packed`` (each beam's
    layers for the compiled kernel) the kernel counts.
    """
    xp = run.xp
    # The compiled kernel counts into its beam's array (blocks of a beam own distinct voxels).
    by_voxel = {bw.beam: np.zeros(bw.voxels.n, dtype=np.int32) for bw in work} if packed else {}

    def count(block: _Block) -> Any:
        bw, start, stop = block
        if packed:
            run.check()
            pencil_beam_cpu.count_entries(bw.voxels, packed[bw.beam], start, stop,
                                          by_voxel[bw.beam])
            return by_voxel[bw.beam][start:stop]
        local = xp.zeros((stop - start,), dtype=xp.int32)
        for plan in run.plans(bw, start, stop):
            local[plan.voxel - start] += xp.astype(count_pairs(plan), xp.int32)
        return local

    per_beam = [xp.zeros((n_rows,), dtype=xp.int32) for _ in work]
    run.report(0.1, "counting entries")
    for i, (block, local) in enumerate(zip(blocks, pool.map(count, blocks), strict=True)):
        bw, start, stop = block
        per_beam[bw.beam][bw.voxels.index[start:stop]] = local  # rows of a beam differ
        run.report(0.1 + 0.1 * (i + 1) / len(blocks), "counting entries")
    offsets = [xp.zeros((n_rows,), dtype=xp.int32)]
    for counts in per_beam:
        offsets.append(offsets[-1] + counts)
    return offsets


def _write_entries(run: _Run, pool: ThreadPoolExecutor, blocks: Sequence[_Block],
                   work: Sequence[BeamWork], csr: _CsrAssembly,
                   packed: dict[int, PackedLayers]) -> None:
    """Second pass: every block evaluates all its beam's layers and writes them in place.

    Blocks of one beam have distinct rows and each beam writes after the entries of the beams
    before it, so blocks are independent and run in parallel.
    """
    # The compiled kernel's first entry of every voxel of a beam, made once per beam.
    first = {bw.beam: csr.first_entries(bw) for bw in work} if packed else {}

    def write(block: _Block) -> bool:
        bw, start, stop = block
        if packed:
            run.check()
            pencil_beam_cpu.fill_entries(bw.voxels, packed[bw.beam], start, stop,
                                         first[bw.beam], dose=csr.data, col=csr.indices,
                                         let_dose=csr.let_data, model=csr.model_block)
            return True  # the fill pass writes what its count pass counted (one code path)
        return csr.write_block(run, bw, start, stop)

    done = 0
    for ok in pool.map(write, blocks):
        csr.complete &= ok
        done += 1
        run.report(0.2 + 0.78 * done / len(blocks), "computing pencil beams")


class _CsrAssembly:
    """CSR arrays allocated from the row counts and filled in place, block by block."""

    def __init__(self, xp: Any, offsets: list[Any], *, let: bool, n_model: int,
                 dtype: Any = np.float32) -> None:
        self.xp = xp
        self.offsets = offsets
        self.indptr = xp.cumulative_sum(xp.astype(offsets[-1], xp.int64), include_initial=True)
        nnz = int(self.indptr[-1])
        if nnz == 0:
            raise PlanningError("no spot deposits dose in the calculation region: check the "
                                "isocentre, the spot positions and the calculation mask")
        n_rows = int(offsets[-1].shape[0])
        item = np.dtype(dtype).itemsize
        release_free_heap()  # before the largest allocation, and before it is checked
        check_host_memory(nnz * (4 + item * (1 + int(let) + n_model)),
                          f"the influence matrices ({nnz:,} entries in {n_rows:,} rows)",
                          "use a coarser dose grid or spot spacing")
        log.info("influence matrix: %d rows, %d entries", n_rows, nnz)
        self.data = xp.empty((nnz,), dtype=dtype)
        self.let_data = xp.empty((nnz,), dtype=dtype) if let else None
        # One (K, nnz) array, so that the compiled kernel writes all model sums by one stride.
        self.model_block = xp.empty((n_model, nnz), dtype=dtype) if n_model else None
        self.model_data = [] if self.model_block is None else [
            self.model_block[k] for k in range(n_model)]
        self.indices = xp.empty((nnz,), dtype=xp.int32)
        self.complete = True

    def first_entries(self, bw: BeamWork, start: int = 0, stop: int | None = None) -> Any:
        """(stop - start,) int64: where each voxel ``start:stop`` of a beam (all by default)
        writes its first entry (its row's start plus the entries of the beams before it), in
        the beam's voxel order."""
        xp = self.xp
        rows = bw.voxels.index[start:stop]
        return xp.take(self.indptr, rows) + xp.astype(xp.take(self.offsets[bw.beam], rows),
                                                      xp.int64)

    def write_block(self, run: _Run, bw: BeamWork, start: int, stop: int) -> bool:
        """Evaluate all layers of a beam on a block and write their entries.

        Returns True when every row of the block received exactly its counted entries.
        """
        xp = self.xp
        b = bw.beam
        rows = bw.voxels.index[start:stop]
        fill = self.first_entries(bw, start, stop)
        for plan in run.plans(bw, start, stop):
            local = plan.voxel - start
            for chunk in plan.chunks:
                run.check()
                at = local[chunk.start:chunk.stop]
                row_start = xp.take(fill, at)
                pairs = chunk_pairs(plan, chunk, row_start=row_start,
                                    let=self.let_data is not None)
                self.data[pairs.dest] = pairs.dose
                if self.let_data is not None:
                    self.let_data[pairs.dest] = pairs.let_dose
                for out, values in zip(self.model_data, pairs.model_dose, strict=True):
                    out[pairs.dest] = values
                self.indices[pairs.dest] = pairs.spot
                fill[at] = row_start + pairs.counts
        end = xp.take(self.indptr, rows) + xp.astype(xp.take(self.offsets[b + 1], rows),
                                                    xp.int64)
        return bool(xp.all(fill == end))

    def to_scipy(self, shape: tuple[int, int], *, sorted_rows: bool
                 ) -> tuple[sp.csr_array, sp.csr_array | None, tuple[sp.csr_array, ...]]:
        """Host SciPy matrices (dose, LET x dose or None, model sums) sharing read-only
        index arrays."""
        nnz = int(self.indptr[-1])
        idx_dtype = np.int32 if max(nnz, shape[1]) < 2**31 - 1 else np.int64
        indptr = backend.to_numpy(self.indptr).astype(idx_dtype)
        indices = backend.to_numpy(self.indices).astype(idx_dtype, copy=False)
        # Read-only, so that an in-place operation on one matrix (eliminate_zeros,
        # sort_indices...) fails instead of silently corrupting the other.
        indices.flags.writeable = False
        indptr.flags.writeable = False

        def matrix(data: Any) -> sp.csr_array:
            m = sp.csr_array((backend.to_numpy(data), indices, indptr), shape=shape, copy=False)
            if sorted_rows:
                m.has_sorted_indices = True
            return m

        let_m = None if self.let_data is None else matrix(self.let_data)
        return matrix(self.data), let_m, tuple(matrix(d) for d in self.model_data)


def _rows_sorted(work: Sequence[BeamWork]) -> bool:
    """True when the entries of every row come out in increasing column order.

    That holds when each layer's spots are consecutive columns in row-major lattice order,
    since layers are written in increasing column order and beams one after the other.
    """
    return all(all(bw.layers.row_major) for bw in work) and all(
        a.layers.first_column[-1] < b.layers.first_column[0]
        for a, b in itertools.pairwise(work))
