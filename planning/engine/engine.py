"""The planning engine: one object per (CT, beams, dose grid, device) that keeps its data where
it computes.

A :class:`PlanningEngine` checks its inputs once, computes each beam's voxels (water-equivalent
depth, spot-lattice coordinates) on the device, tabulates the energy layers once per set of
RBE-model depth tables, and then serves

- :meth:`PlanningEngine.influence`: dose, LET x dose and model-sum influence matrices (SciPy,
  on the host) of any subset of its voxels;
- :meth:`PlanningEngine.optimization_matrices`: the same for the optimizer, float64 with a
  precomputed transpose, on the engine's device (cuSPARSE on a GPU);
- :meth:`PlanningEngine.forward`: per-beam dose, LET x dose and model sums of spot weights
  without building a matrix (a fused kernel on a GPU, chunked pencil beams on the CPU).

The GPU path uses the fused kernels of :mod:`kernels.pencil_beam_gpu`; the CPU path the
array-API kernels of :mod:`kernels.influence` (their NumPy twins) in a thread pool.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kernels import backend
from kernels.influence import BeamVoxels, scale_wepl, select_voxels
from kernels.pencil_beam_gpu import PackedLayers, pack_layers, pack_weighted
from kernels.sparse_device import SpotMatrix, device_spot_matrix, host_spot_matrices
from planning.beams import Beam, SpotMap
from planning.dose_grid import DoseGrid
from planning.engine import cpu_forward, cpu_influence, gpu_influence
from planning.engine.cpu_influence import BeamWork
from planning.engine.dose_engine import (
    DoseEngineSettings,
    DoseInfluence,
    check_volume,
    cpu_threads,
    resolve_device,
)
from planning.engine.memory import check_host_memory, engine_bytes
from planning.engine.setup import (
    BeamLayers,
    beam_geometry,
    beam_layers,
    calculation_mask,
    check_energies,
    spot_table,
    with_radii_of,
)
from planning.engine.wepl_cubes import WeplCubes
from planning.errors import PlanningError
from planning.machine import Machine
from planning.progress import CancelToken, ProgressCallback, report, stage_progress
from planning.rbe.tables import DepthTables

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class DoseSums:
    """Per-row sums of a forward pass over the dose grid (flat C order), host float64.

    Attributes
    ----------
    beam_dose_gy : tuple of (n_voxels,) arrays
        Physical dose of each beam's spots, Gy per the weights' unit.
    let_dose : (n_voxels,) array or None
        LET x dose (keV/um x Gy); None when not asked for.
    model_sums : tuple of (n_voxels,) arrays
        Dose x model quantity ``q_k`` of each quantity of the depth tables given.
    """

    beam_dose_gy: tuple[FloatArray, ...]
    let_dose: FloatArray | None
    model_sums: tuple[FloatArray, ...]

    @property
    def dose_gy(self) -> FloatArray:
        return np.sum(self.beam_dose_gy, axis=0)



def sorted_contains(sorted_unique: NDArray[np.int64], values: NDArray[np.int64]
                    ) -> NDArray[np.bool_]:
    """Whether each of ``values`` (n,) is in ``sorted_unique`` (m,), sorted and unique, as an
    (n,) bool array: a binary search per value (a set difference would sort both, seconds
    for the rows of a fine whole-body grid)."""
    if sorted_unique.size == 0:
        return np.zeros(values.shape, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_unique, values), sorted_unique.size - 1)
    return sorted_unique[at] == values

class PlanningEngine:
    """Dose engine state of one plan geometry on one device (see the module docstring).

    Parameters
    ----------
    machine : Machine
        Beam data.
    rsp_volume : (nz, ny, nx) float array
        Relative stopping power on ``ct_grid``.
    ct_grid, dose_grid : DoseGrid
        Grids of the RSP volume and of the dose.
    beams, spot_maps : sequences of Beam and SpotMap
        The beams and their spots (same length); columns are the spots of ``spot_maps[0]``,
        then those of ``spot_maps[1]``, and so on.
    settings : DoseEngineSettings, optional
        Cut-off, device, threads.
    calc_mask : (nz, ny, nx) bool array on ``dose_grid``, optional
        The voxels the engine can compute (e.g. the body). By default those whose RSP is at
        least ``settings.min_rsp_for_dose``.
    wepl_cubes : WeplCubes, optional
        The plan's WEPL cubes of ``rsp_volume`` (the same array), shared with its other
        engines; cubes of its own otherwise.
    layers_of : PlanningEngine, optional
        Another engine of the same plan (machine, beams, spot maps, device and cut-off):
        the two share their layer set-ups (they do not depend on the dose grid), each made
        once for both. Ignored where anything of those differs.
    progress, cancel : optional
        Progress callback and cancel token of the set-up (WEPL of every beam).

    Raises
    ------
    PlanningError
        Inconsistent input, an empty calculation region.
    DeviceError
        When the GPU is requested and unavailable.
    """

    def __init__(self, machine: Machine, rsp_volume: ArrayLike, ct_grid: DoseGrid,
                 dose_grid: DoseGrid, beams: Sequence[Beam], spot_maps: Sequence[SpotMap],
                 settings: DoseEngineSettings | None = None, *,
                 calc_mask: ArrayLike | None = None, wepl_cubes: WeplCubes | None = None,
                 layers_of: PlanningEngine | None = None,
                 progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> None:
        settings = settings or DoseEngineSettings()
        if len(beams) == 0 or len(beams) != len(spot_maps):
            raise PlanningError(f"need one spot map per beam; got {len(beams)} beams and "
                                f"{len(spot_maps)} spot maps")
        rsp = check_volume(rsp_volume, ct_grid)
        for beam, sm in zip(beams, spot_maps, strict=True):
            if sm.n_spots == 0:
                raise PlanningError(f"{beam.label}: the spot map has no spots")
            check_energies(machine, beam, sm)
        self.machine = machine
        self.dose_grid = dose_grid
        self.beams = tuple(beams)
        self.spot_maps = tuple(spot_maps)
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.xp = backend.namespace_for(self.device)
        rsp_x = self.xp.asarray(rsp)
        report(progress, 0.0, "selecting voxels")
        if cancel is not None:
            cancel.raise_if_cancelled("the dose engine set-up")
        self.calc_mask = calculation_mask(self.xp, rsp_x, ct_grid, dose_grid, calc_mask,
                                          settings.min_rsp_for_dose)
        if not self.calc_mask.any():
            raise PlanningError("the dose calculation region is empty")
        self.rows = np.flatnonzero(self.calc_mask).astype(np.int64)
        check_host_memory(engine_bytes(self.rows.size, len(beams), 4),
                          f"the dose engine for {self.rows.size:,} dose-grid voxels and "
                          f"{len(beams)} beams", "use a coarser dose grid")
        self.spots = spot_table(spot_maps)
        cubes = (wepl_cubes if wepl_cubes is not None
                 and wepl_cubes.serves(rsp_volume, ct_grid, settings.wepl_step_mm,
                                       lateral_step_mm=settings.wepl_lateral_step_mm)
                 else WeplCubes(rsp, ct_grid, settings.wepl_step_mm,
                                lateral_step_mm=settings.wepl_lateral_step_mm, keep=False,
                                threads=cpu_threads(settings.n_threads)))
        self._first_spot = np.cumsum([0] + [s.n_spots for s in spot_maps])
        voxels = []
        for b, (beam, sm) in enumerate(zip(beams, spot_maps, strict=True)):
            if cancel is not None:
                cancel.raise_if_cancelled("water-equivalent depth")
            voxels.append(beam_geometry(
                self.xp, machine, cubes, dose_grid, self.rows, beam, sm,
                progress=stage_progress(progress, b / len(beams), (b + 1) / len(beams)),
                cancel=cancel))
        if cancel is not None:
            cancel.raise_if_cancelled("water-equivalent depth")
        self._voxels: tuple[BeamVoxels, ...] = tuple(voxels)
        # Keyed by (id of the depth tables, cut-off fraction); the tables are kept beside
        # their set-ups so that their id stays theirs.
        self._layers: dict[tuple[int, float],
                           tuple[DepthTables | None, tuple[BeamLayers, ...]]] = {}
        self._packed: dict[tuple[int, float], tuple[PackedLayers, ...]] = {}
        if layers_of is not None and self._same_layers(layers_of):
            self._layers, self._packed = layers_of._layers, layers_of._packed

    def _same_layers(self, other: PlanningEngine) -> bool:
        """Whether ``other``'s layer set-ups are this engine's (what they depend on agrees)."""
        return (other.machine is self.machine and other.beams == self.beams
                and other.spot_maps == self.spot_maps and other.device == self.device
                and other.settings.lateral_cutoff_fraction
                == self.settings.lateral_cutoff_fraction)

    @property
    def n_spots(self) -> int:
        return self.spots.n_spots

    def with_stopping_power_scaled(self, factor: float) -> PlanningEngine:
        """This engine with the stopping power multiplied by ``factor`` (> 0) everywhere.

        A range-uncertainty scenario: WEPL is linear in the stopping power, so every beam's
        WEPL is scaled instead of traced again (the voxels, beams, spots and layer set-ups are
        shared with this engine). Same result as a new engine on ``rsp * factor`` to float32
        rounding of the WEPL.
        """
        if not (math.isfinite(factor) and factor > 0):
            raise PlanningError(f"stopping-power scale must be positive, got {factor}")
        scaled = copy.copy(self)
        scaled._voxels = tuple(scale_wepl(v, factor) for v in self._voxels)
        return scaled

    # ------------------------------------------------------------------ set-up per model

    def _beam_layers(self, tables: DepthTables | None, cutoff_fraction: float | None = None
                     ) -> tuple[BeamLayers, ...]:
        """Layer set-ups for one set of depth tables (computed once, kept), with the cut-off
        radii of ``cutoff_fraction`` (the settings' by default; another fraction's set-ups
        share the depth tables of the settings' and differ only in their radii)."""
        if tables is not None and any(np.shape(v) != self.machine.depth_mm.shape
                                      for v in tables.values):
            raise PlanningError(f"the RBE depth tables ({tables.model_description}) do not "
                                f"match machine '{self.machine.name}': make them from this "
                                "machine")
        own = self.settings.lateral_cutoff_fraction
        key = self._layer_key(tables, cutoff_fraction)
        fraction = key[1]
        if key not in self._layers:
            made = tuple(
                beam_layers(self.xp, self.machine, beam, sm, int(self._first_spot[b]), tables,
                            fraction)
                for b, (beam, sm) in enumerate(zip(self.beams, self.spot_maps, strict=True)))
            if fraction != own:
                made = tuple(with_radii_of(base, other) for base, other in zip(
                    self._beam_layers(tables), made, strict=True))
            self._layers[key] = (tables, made)
        return self._layers[key][1]

    def _layer_key(self, tables: DepthTables | None, cutoff_fraction: float | None
                   ) -> tuple[int, float]:
        """Cache key of layer set-ups: the tables' id and the cut-off (the settings' if None)."""
        own = self.settings.lateral_cutoff_fraction
        return id(tables), own if cutoff_fraction is None else float(cutoff_fraction)

    def _packed_layers(self, tables: DepthTables | None, cutoff_fraction: float | None = None
                       ) -> tuple[PackedLayers, ...]:
        key = self._layer_key(tables, cutoff_fraction)
        if key not in self._packed:
            self._packed[key] = tuple(pack_layers(bl.layers, self.xp)
                                      for bl in self._beam_layers(tables, cutoff_fraction))
        return self._packed[key]

    def _voxels_of(self, rows: NDArray[np.int64] | None, compact: bool) -> list[BeamVoxels]:
        """Each beam's voxels restricted to ``rows`` (flat dose-grid indices, sorted), their
        identifiers renamed to positions in ``rows`` when ``compact``."""
        if rows is None and not compact:
            return list(self._voxels)
        xp = self.xp
        want = self.rows if rows is None else np.asarray(rows, dtype=np.int64)
        missing = int(np.count_nonzero(~sorted_contains(self.rows, want)))
        if missing:
            raise PlanningError(f"{missing} requested voxels lie outside the engine's "
                                "calculation region")
        want_x = xp.asarray(want)
        out = []
        for vox in self._voxels:
            pos = xp.searchsorted(want_x, vox.index)
            pos_c = xp.clip(pos, 0, want.size - 1)
            keep = xp.take(want_x, pos_c) == vox.index
            out.append(select_voxels(vox, keep, pos_c if compact else None))
        return out

    # ------------------------------------------------------------------ products

    def influence(self, rows: ArrayLike | None = None, *,
                  model_tables: DepthTables | None = None, store_let: bool = True,
                  progress: ProgressCallback | None = None, cancel: CancelToken | None = None
                  ) -> DoseInfluence:
        """Influence matrices (host SciPy CSR, one row per dose-grid voxel) of ``rows``.

        Parameters
        ----------
        rows : int array, optional
            Flat dose-grid indices to compute (within the calculation region); all by default.
        model_tables : DepthTables, optional
            RBE-model depth tables: one ``dose x q_k`` matrix per quantity.
        store_let : bool
            Keep the LET x dose matrix.
        """
        rows_np = None if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
        n_rows = self.dose_grid.n_voxels
        n_model = 0 if model_tables is None else len(model_tables.values)
        voxels = self._voxels_of(rows_np, compact=False)
        layers = self._beam_layers(model_tables)
        if self.device == "gpu":
            csr = gpu_influence.build_csr(self.xp, voxels, self._packed_layers(model_tables),
                                          n_rows, self.n_spots, store_let=store_let)
            dose_m, let_m, model_m = _host_matrices(csr)
        else:
            work = [BeamWork(b, v, bl) for b, (v, bl) in enumerate(zip(voxels, layers,
                                                                       strict=True))]
            dose_m, let_m, model_m = cpu_influence.build_matrices(
                self.xp, work, n_rows, self.n_spots, self.settings, store_let=store_let,
                n_model=n_model, progress=progress, cancel=cancel)
        mask = np.zeros(n_rows, dtype=bool)
        mask[self.rows if rows_np is None else rows_np] = True
        report(progress, 1.0, "done")
        return DoseInfluence(
            dose=dose_m, let_dose=let_m, grid=self.dose_grid, spots=self.spots,
            calc_mask=mask.reshape(self.dose_grid.shape), device=self.device,
            model_sums=model_m,
            model_quantity_names=() if model_tables is None else model_tables.quantity_names,
            model_description="" if model_tables is None else model_tables.model_description)

    def optimization_matrices(self, rows: ArrayLike, *, model_tables: DepthTables | None = None,
                              cutoff_fraction: float | None = None,
                              progress: ProgressCallback | None = None,
                              cancel: CancelToken | None = None
                              ) -> tuple[SpotMatrix, tuple[SpotMatrix, ...], int]:
        """Dose and model-sum matrices of ``rows`` (sorted, unique flat dose-grid indices) for
        the optimizer: row ``i`` is ``rows[i]``, transpose precomputed, on the engine's
        device (float32 on the host, float64 on a GPU; products in float64 either way, see
        :mod:`kernels.sparse_device`). Also returns the number of entries.

        ``cutoff_fraction`` (at most the settings' ``lateral_cutoff_fraction``, which is the
        default) keeps less of each pencil beam's dose in the matrices: the optimizer then
        adds the rest as a per-point correction (:mod:`planning.engine.dose_correction`).
        """
        if cutoff_fraction is not None and not (
                0.5 <= cutoff_fraction <= self.settings.lateral_cutoff_fraction):
            raise PlanningError(f"the matrices' cut-off fraction must lie in [0.5, "
                                f"{self.settings.lateral_cutoff_fraction:g}], got "
                                f"{cutoff_fraction}")
        rows_np = np.asarray(rows, dtype=np.int64)
        if rows_np.size == 0 or np.any(np.diff(rows_np) <= 0):
            raise PlanningError("optimization rows must be non-empty, sorted and unique")
        voxels = self._voxels_of(rows_np, compact=True)
        n_model = 0 if model_tables is None else len(model_tables.values)
        if self.device == "gpu":
            csr = gpu_influence.build_csr(self.xp, voxels,
                                          self._packed_layers(model_tables, cutoff_fraction),
                                          rows_np.size, self.n_spots, store_let=False)
            shape = (rows_np.size, self.n_spots)
            dose = device_spot_matrix(csr.dose, csr.indices, csr.indptr, shape)
            sums = tuple(device_spot_matrix(csr.model[k], csr.indices, csr.indptr, shape)
                         for k in range(n_model))
            report(progress, 1.0, "done")
            return dose, sums, csr.nnz
        layers = self._beam_layers(model_tables, cutoff_fraction)
        work = [BeamWork(b, v, bl) for b, (v, bl) in enumerate(zip(voxels, layers, strict=True))]
        dose_m, _, model_m = cpu_influence.build_matrices(
            self.xp, work, rows_np.size, self.n_spots, self.settings, store_let=False,
            n_model=n_model, dtype=np.float32, progress=progress, cancel=cancel)
        host = host_spot_matrices((dose_m, *model_m), cpu_threads(self.settings.n_threads))
        return host[0], host[1:], int(dose_m.nnz)

    def entry_counts(self, rows: ArrayLike, *, cutoff_fraction: float | None = None,
                     cancel: CancelToken | None = None) -> NDArray[np.int64]:
        """Entries of each of ``rows`` (sorted, unique flat dose-grid indices within the
        calculation region) in the matrices :meth:`optimization_matrices` would build with
        ``cutoff_fraction`` (the settings' ``lateral_cutoff_fraction`` by default: the
        (voxel, spot) pairs a forward pass evaluates), counted without building them:
        ``(len(rows),)`` int64. CPU engines only (a work estimate's, :mod:`planning.plan_work`).
        """
        if self.device != "cpu":
            raise PlanningError("entries are counted by a CPU engine; make one with "
                                "device='cpu'")
        rows_np = np.asarray(rows, dtype=np.int64)
        if rows_np.size == 0 or np.any(np.diff(rows_np) <= 0):
            raise PlanningError("rows to count must be non-empty, sorted and unique")
        fraction = (self.settings.lateral_cutoff_fraction if cutoff_fraction is None
                    else float(cutoff_fraction))
        voxels = self._voxels_of(rows_np, compact=True)
        layers = self._beam_layers(None, fraction)
        work = [BeamWork(b, v, bl) for b, (v, bl) in enumerate(zip(voxels, layers, strict=True))]
        return np.asarray(cpu_influence.count_entries(np, work, rows_np.size, self.settings,
                                                      cancel=cancel))

    def forward(self, weights: ArrayLike, *, model_tables: DepthTables | None = None,
                with_let: bool = True, rows: ArrayLike | None = None,
                progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None) -> DoseSums:
        """Per-beam dose, LET x dose and model sums of spot weights over the calculation region,
        without an influence matrix.

        Parameters
        ----------
        weights : (n_spots,) float array
            Spot weights (10^6 primaries), >= 0, in column order.
        rows : int array, optional
            Only these flat dose-grid indices (sorted, unique, within the calculation region):
            the sums then have one entry per row, in that order, instead of one per voxel.
        """
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.size != self.n_spots:
            raise PlanningError(f"got {w.size} spot weights for {self.n_spots} spots")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise PlanningError("spot weights must be finite and >= 0")
        if rows is None:
            voxels, n_rows = list(self._voxels), self.dose_grid.n_voxels
        else:
            rows_np = np.asarray(rows, dtype=np.int64)
            if rows_np.size and np.any(np.diff(rows_np) <= 0):
                raise PlanningError("forward rows must be sorted and unique")
            voxels, n_rows = self._voxels_of(rows_np, compact=True), int(rows_np.size)
        n_model = 0 if model_tables is None else len(model_tables.values)
        if self.device == "gpu":
            xp = self.xp
            w_dev = xp.asarray(w)
            # Spots of zero weight left out (an optimized plan has a fifth to a third of
            # them); the kept packing when there are none.
            packed: list[PackedLayers | None] = (
                list(self._packed_layers(model_tables)) if np.all(w > 0) else
                [pack_weighted(bl.layers, w_dev, xp) for bl in self._beam_layers(model_tables)])
            beam_d, let_d, model = gpu_influence.accumulate_sums(
                xp, voxels, packed, w_dev, n_rows, n_model=n_model, with_let=with_let)
            report(progress, 1.0, "dose cubes")
            return DoseSums(tuple(backend.to_numpy(d) for d in beam_d),
                            None if let_d is None else backend.to_numpy(let_d),
                            () if model is None else tuple(backend.to_numpy(model)))
        work = [BeamWork(b, v, bl) for b, (v, bl) in enumerate(zip(
            voxels, self._beam_layers(model_tables), strict=True))]
        beam_d, let_d, model = cpu_forward.accumulate_sums(
            work, w, n_rows, self.settings, with_let=with_let, n_model=n_model,
            progress=progress, cancel=cancel)
        return DoseSums(tuple(beam_d), let_d, () if model is None else tuple(model))


def _host_matrices(csr: gpu_influence.DeviceCsr) -> tuple[Any, Any, tuple[Any, ...]]:
    from kernels.sparse_device import device_csr_to_host

    def host(data: Any) -> Any:
        return device_csr_to_host(data, csr.indices, csr.indptr, csr.shape)

    let_m = None if csr.let_dose is None else host(csr.let_dose)
    model = () if csr.model is None else tuple(host(csr.model[k])
                                               for k in range(csr.model.shape[0]))
    return host(csr.dose), let_m, model


def build_influence(machine: Machine, rsp_volume: ArrayLike, ct_grid: DoseGrid,
                    dose_grid: DoseGrid, beams: Sequence[Beam], spot_maps: Sequence[SpotMap],
                    settings: DoseEngineSettings | None = None, *,
                    calc_mask: ArrayLike | None = None,
                    model_tables: DepthTables | None = None,
                    progress: ProgressCallback | None = None,
                    cancel: CancelToken | None = None) -> DoseInfluence:
    """One-shot influence matrices of all voxels of the calculation region (a
    :class:`PlanningEngine` made and asked once; see its parameters)."""
    settings = settings or DoseEngineSettings()
    engine = PlanningEngine(machine, rsp_volume, ct_grid, dose_grid, beams, spot_maps, settings,
                            calc_mask=calc_mask, cancel=cancel)
    return engine.influence(model_tables=model_tables, store_let=settings.store_let_dose,
                            progress=progress, cancel=cancel)
