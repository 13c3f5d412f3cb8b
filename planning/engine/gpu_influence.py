"""Influence matrices and forward sums with the fused CUDA kernels (kernels.pencil_beam_gpu).

Per beam one count launch; a device prefix sum gives the CSR row pointers and each beam's start
within every row; one fill launch per beam writes the entries in place. The only host
synchronisation is reading the number of entries (to allocate). Forward sums need no matrix:
one accumulate launch per beam, over its spots of non-zero weight only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kernels import pencil_beam_gpu as gpu
from kernels.influence import BeamVoxels
from kernels.pencil_beam_gpu import PackedLayers
from planning.errors import PlanningError

log = logging.getLogger(__name__)

#: Fraction of the device's free memory a build may take (the rest: CuPy's pool, other work).
DEVICE_MEMORY_FRACTION = 0.8


@dataclass(frozen=True, eq=False)
class DeviceCsr:
    """CSR arrays on the device: rows x spots, shared indices, several data arrays."""

    indptr: Any  # (rows + 1,) int64
    indices: Any  # (nnz,) int32
    dose: Any  # (nnz,) float32
    let_dose: Any  # (nnz,) float32 or None
    model: Any  # (K, nnz) float32 or None
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    @property
    def nbytes(self) -> int:
        arrays = (self.indptr, self.indices, self.dose, self.let_dose, self.model)
        return int(sum(a.nbytes for a in arrays if a is not None))


def free_device_bytes(xp: Any) -> int:
    """Free device memory plus what CuPy's pool holds unused."""
    free, _ = xp.cuda.runtime.memGetInfo()
    return int(free + xp.get_default_memory_pool().free_bytes())


def build_csr(xp: Any, voxels: Sequence[BeamVoxels], packed: Sequence[PackedLayers],
              n_rows: int, n_spots: int, *, store_let: bool) -> DeviceCsr:
    """All beams' entries as device CSR over rows ``voxels[b].index`` (beams in order).

    Raises
    ------
    PlanningError
        When no entry exists, or the matrices would not fit in the free device memory.
    """
    n_model = packed[0].n_model if packed else 0
    per_beam = []
    for vox, pk in zip(voxels, packed, strict=True):
        counts = xp.zeros(n_rows, dtype=xp.int64)
        counts[vox.index] = gpu.count_entries(vox, pk)
        per_beam.append(counts)
    offsets = [xp.zeros(n_rows, dtype=xp.int64)]
    for counts in per_beam:
        offsets.append(offsets[-1] + counts)
    indptr = xp.concatenate([xp.zeros(1, dtype=xp.int64), xp.cumsum(offsets[-1])])
    nnz = int(indptr[-1])
    if nnz == 0:
        raise PlanningError("no spot deposits dose in the calculation region: check the "
                            "isocentre, the spot positions and the calculation mask")
    need = nnz * 4 * (2 + int(store_let) + n_model)
    free = free_device_bytes(xp)
    if need > DEVICE_MEMORY_FRACTION * free:
        raise PlanningError(
            f"the influence matrices need {need / 2**30:.1f} GiB of GPU memory ({nnz:,} "
            f"entries) but {free / 2**30:.1f} GiB are free: use a coarser dose grid or spot "
            "spacing, or the CPU")
    log.info("device influence matrix: %d rows, %d entries, %.2f GiB", n_rows, nnz,
             need / 2**30)
    dose = xp.empty(nnz, dtype=xp.float32)
    indices = xp.empty(nnz, dtype=xp.int32)
    let_dose = xp.empty(nnz, dtype=xp.float32) if store_let else None
    model = xp.empty((n_model, nnz), dtype=xp.float32) if n_model else None
    for b, (vox, pk) in enumerate(zip(voxels, packed, strict=True)):
        start = xp.take(indptr, vox.index) + xp.take(offsets[b], vox.index)
        gpu.fill_entries(vox, pk, start, dose=dose, col=indices, let_dose=let_dose, model=model)
    return DeviceCsr(indptr, indices, dose, let_dose, model, (n_rows, n_spots))


def accumulate_sums(xp: Any, voxels: Sequence[BeamVoxels],
                    packed: Sequence[PackedLayers | None], weights: Any, n_rows: int, *,
                    n_model: int, with_let: bool) -> tuple[list[Any], Any, Any]:
    """Per-beam dose, LET x dose and model sums (n_model, n_rows) of spot weights, float64,
    device.

    ``weights`` (n_spots,) float64 on the device, by column; ``packed`` one entry per beam
    (:func:`kernels.pencil_beam_gpu.pack_weighted`), None for a beam without weight (its dose
    stays zero).
    """
    let_dose = xp.zeros(n_rows) if with_let else None
    model = xp.zeros((n_model, n_rows)) if n_model else None
    beam_dose = []
    for vox, pk in zip(voxels, packed, strict=True):
        dose = xp.zeros(n_rows)
        if pk is not None:
            gpu.accumulate(vox, pk, weights, dose=dose, let_dose=let_dose, model=model)
        beam_dose.append(dose)
    return beam_dose, let_dose, model
