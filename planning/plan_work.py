"""The work a plan will do, counted before it is done (the pre-flight estimate's counts).

A plan's time goes to a few kinds of work, each proportional to a count that is known, or can be
estimated, in a second or two before any long step (:mod:`planning.plan_estimate` turns the
counts into time and memory):

- the spots: placed by the planner's own :func:`planning.engine.dose_engine.place_spots`, on
  WEPL cubes of rays and steps of at least :data:`WEPL_STEP_MM` (the plan's are the CT's
  smallest spacing and half of it: 16 times the samples on the demo head): the same lattice
  and layers but for the odd spot at the target's edge where the coarse depth differs by a
  fraction of a millimetre (2,531 against 2,517 spots on the demo head);
- the optimizer's points (the matrices' rows): sampled by the planner's own functions
  (:func:`planning.optimization_grid.optimization_region`) on the optimization grid where it
  is no finer than :data:`MODEL_GRID_MM` (every default grid of a dose grid of 2 mm or more:
  exact), else on a grid of that spacing and scaled to the finer one: a structure's sample
  by the cube of the spacings' ratio times the ratio of the sampling rules' densities
  (:mod:`planning.optimization_grid`: every point, a stratified share of each 2 x 2 x 2 block
  or a sub-lattice), the points on both sides of a surface by the square of the ratio. Each
  point counts once, in the first structure that has it;
- the influence entries per point, at the matrices' cut-off (the optimizer's products and
  the matrices' build) and at the plan's (each forward pass): counted exactly, by the engine's
  own count pass (:meth:`planning.engine.PlanningEngine.entry_counts`), at
  :data:`SAMPLE_POINTS` random points of each structure's sample and surface (and
  :data:`BODY_SAMPLE_POINTS` of the body for the final dose) on the grid they were sampled on,
  and scaled by the points counted above. The sample's standard error is kept
  (:attr:`PlanWork.entries_error`);
- the voxels the engines set up (WEPL and lattice coordinates per beam) and the WEPL cubes'
  samples (known exactly before they are made).

Measured against the plans themselves (docs/benchmarks.md, "Pre-flight estimate"): on the demo
patient and the TG-119-sized phantom at their default grids the points exact and the entries
within 1 %; scaled from the 1 mm grid to 0.75 mm, the points 10 % and the entries 7 % low.
tests/test_plan_estimate.py holds both to a factor 1.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from kernels.wepl import wepl_cube_shape
from planning.dose_grid import DoseGrid
from planning.engine import PlanningEngine
from planning.engine.dose_engine import DoseEngineSettings, cpu_threads, place_spots
from planning.engine.problem import tissue_models
from planning.engine.wepl_cubes import KEPT_BYTES, WeplCubes
from planning.optimization_grid import (
    fine_points_per_block,
    max_point_rows,
    max_points_name,
    optimization_grid,
    optimization_region,
    sample_rows,
    sample_stride,
    structure_of_max_points,
    target_check_grid,
)
from planning.patient import Patient
from planning.planner import (
    PlanBasis,
    PlanRequest,
    generated_regions,
    merged_objectives,
    on_max_points,
)
from planning.progress import CancelToken
from planning.structure_dose import body_structures, structure_rows

#: Random points per structure (and per surface) whose entries are counted.
SAMPLE_POINTS = 400

#: Random points of the body (and the structures) whose pairs are counted for the final dose:
#: most of the body gets no dose, so it takes more to find those that do.
BODY_SAMPLE_POINTS = 1000

#: Finest grid (mm) on which the optimizer's points are sampled as the planner samples them;
#: a finer optimization grid's are scaled from this one's (2 s for the demo head on the
#: 2-core machine, about the cost of the planner's own sampling at this spacing).
MODEL_GRID_MM = 1.0

#: Least ray spacing and step of the estimate's WEPL cubes, mm (the CT's own where coarser).
WEPL_STEP_MM = 2.0

#: The seed of the sample, so that the same plan gets the same estimate.
SAMPLE_SEED = 20261207

#: WEPL cubes a plan samples per beam when it cannot keep them (:mod:`planning.engine.
#: wepl_cubes`): spots, the optimizer's engine, the refinement's and the dose grid's.
CUBE_USES = 4


@dataclass(frozen=True)
class RowGroup:
    """Optimizer points of one kind: a structure's sample or its surface's points.

    Attributes
    ----------
    name : str
        The structure or generated region, or ``"<structure> surface"``.
    points : float
        Points on the optimization grid (none of an earlier group's).
    entries_per_point, pairs_per_point : float
        Mean entries at the matrices' cut-off and at the plan's, over the sample.
    entries_error : float
        Standard error of ``entries_per_point``.
    """

    name: str
    points: float
    entries_per_point: float
    pairs_per_point: float
    entries_error: float


@dataclass(frozen=True)
class PlanWork:
    """What a plan will compute (see the module docstring for how each count is made).

    Attributes
    ----------
    n_beams, n_spots, n_layers : int
        Beams, spots and energy layers (all beams).
    groups : tuple of RowGroup
        The optimizer's points by structure.
    opt_engine_points : float
        Points the optimization grid's engine sets up (every structure's sample and surface,
        and the generated rings), or the dose grid's region when the two grids are one.
    dose_voxels : float
        Dose-grid voxels of the final dose (body and structures).
    body_pairs : float
        (voxel, spot) pairs of one forward pass over ``dose_voxels`` at the plan's cut-off.
    check_points, check_pairs : float
        The refinement's target points (its check grid) and the pairs of a forward pass
        over them.
    objective_points : float
        Points the objectives' penalties read per evaluation (each objective's structure's
        points: a structure under two objectives counts twice).
    n_objectives : int
        The optimizer's objectives.
    structure_voxels : int
        CT voxels of all structures (the report's DVHs and metrics sample them).
    cube_samples : int
        WEPL samples of the cubes the plan makes (all beams, each use).
    n_model : int
        RBE-model quantities stored beside the dose in the optimizer's matrices.
    max_iterations : int
        The optimizer's main-pass iterations (:class:`planning.optimization.
        OptimizerSettings`).
    grids_shared : bool
        Whether the optimization grid is the dose grid (one engine for both).
    """

    n_beams: int
    n_spots: int
    n_layers: int
    groups: tuple[RowGroup, ...]
    opt_engine_points: float
    dose_voxels: float
    body_pairs: float
    check_points: float
    check_pairs: float
    objective_points: float
    n_objectives: int
    structure_voxels: int
    cube_samples: int
    n_model: int
    max_iterations: int
    grids_shared: bool

    @property
    def opt_points(self) -> float:
        """The optimizer's points (rows of its matrices)."""
        return sum(g.points for g in self.groups)

    @property
    def entries(self) -> float:
        """Entries of the optimizer's matrices (each of the dose and the model sums)."""
        return sum(g.points * g.entries_per_point for g in self.groups)

    @property
    def entries_error(self) -> float:
        """Relative standard error of :attr:`entries` from the sample (independent groups)."""
        if self.entries <= 0:
            return 0.0
        return math.sqrt(sum((g.points * g.entries_error) ** 2 for g in self.groups)
                         ) / self.entries

    @property
    def row_pairs(self) -> float:
        """(point, spot) pairs of a forward pass over the optimizer's points at the plan's
        cut-off (its dose correction)."""
        return sum(g.points * g.pairs_per_point for g in self.groups)


def count_plan_work(request: PlanRequest, basis: PlanBasis, *,
                    cancel: CancelToken | None = None) -> PlanWork:
    """Count the work of ``request`` (its :func:`planning.planner.plan_basis` given).

    Raises
    ------
    PlanningError
        Where the plan itself would refuse: an unreachable target, bad objectives.
    OperationCancelled
        When ``cancel`` is set.
    """
    patient, ct_grid, dose_grid = basis.patient, basis.ct_grid, basis.dose_grid
    smallest_mm = float(min(ct_grid.spacing_mm))
    ray_mm, step_mm = max(WEPL_STEP_MM, smallest_mm), max(WEPL_STEP_MM, 0.5 * smallest_mm)
    settings = DoseEngineSettings(
        device="cpu", lateral_cutoff_fraction=basis.settings.lateral_cutoff_fraction,
        matrix_cutoff_fraction=basis.settings.matrix_cutoff_fraction,
        wepl_step_mm=step_mm, wepl_lateral_step_mm=ray_mm, n_threads=basis.settings.n_threads)
    coarse = WeplCubes(basis.rsp, ct_grid, step_mm, lateral_step_mm=ray_mm,
                       threads=cpu_threads(settings.n_threads))
    spot_maps = tuple(place_spots(basis.machine, basis.rsp, ct_grid, b, basis.target_mask,
                                  spot_spacing_mm=request.spot_spacing_mm,
                                  layer_spacing_mm=request.layer_spacing_mm, settings=settings,
                                  cubes=coarse, cancel=cancel)
                      for b in basis.beams)
    opt_grid = optimization_grid(ct_grid, dose_grid, request.optimization_grid_mm)
    shared = opt_grid is dose_grid
    model_grid = (opt_grid if max(opt_grid.spacing_mm) >= MODEL_GRID_MM - 1e-9
                  else DoseGrid.covering(ct_grid, MODEL_GRID_MM))
    objectives = on_max_points(merged_objectives(patient, basis.target,
                                                 request.total_dose_gy_rbe, basis.config),
                               patient, basis.target)
    asked = {o.structure for o in objectives} | {basis.target}
    points = _model_points(patient, basis.target, asked, generated_regions(basis.target,
                                                                           basis.config),
                           ct_grid, model_grid, dose_grid)
    ratios = {g.name: g.ratio(opt_grid, model_grid, dose_grid, basis.target) for g in points}
    scaled = {g.name: g.rows.size * ratios[g.name] for g in points}
    if cancel is not None:
        cancel.raise_if_cancelled("the plan's estimate")
    region = _engine_region(patient, basis.rsp, settings.min_rsp_for_dose)
    sampler = _Sampler(np.random.default_rng(SAMPLE_SEED))
    draws = {g.name: sampler.draw(g.rows, SAMPLE_POINTS) for g in points if g.asked}
    body_draw = sampler.draw(structure_rows(region, ct_grid, model_grid), BODY_SAMPLE_POINTS)
    rows = sampler.rows()
    engine = PlanningEngine(basis.machine, basis.rsp, ct_grid, model_grid, basis.beams,
                            spot_maps, settings, calc_mask=_mask_of(rows, model_grid),
                            wepl_cubes=coarse, cancel=cancel)
    entries = _Counts(rows, engine.entry_counts(
        rows, cutoff_fraction=settings.optimizer_cutoff_fraction, cancel=cancel))
    pairs = _Counts(rows, engine.entry_counts(rows, cancel=cancel))
    groups = []
    for g in points:
        if g.asked:
            mean, error = entries.mean(draws[g.name])
            groups.append(RowGroup(g.name, scaled[g.name], mean, pairs.mean(draws[g.name])[0],
                                   error))
    voxel_mm3 = float(np.prod(ct_grid.spacing_mm))
    dose_voxels = np.count_nonzero(region) * voxel_mm3 / float(np.prod(dose_grid.spacing_mm))
    check_points = (np.count_nonzero(basis.target_mask) * voxel_mm3
                    / float(np.prod(target_check_grid(dose_grid).spacing_mm)))
    return PlanWork(
        n_beams=len(basis.beams), n_spots=sum(s.n_spots for s in spot_maps),
        n_layers=sum(int(np.unique(s.layer).size) for s in spot_maps), groups=tuple(groups),
        opt_engine_points=dose_voxels if shared else sum(scaled.values()),
        dose_voxels=dose_voxels, body_pairs=dose_voxels * pairs.mean(body_draw)[0],
        check_points=check_points,
        check_pairs=check_points * pairs.mean(draws[basis.target])[0],
        objective_points=sum(_points_of(o.structure, points, ratios) for o in objectives),
        n_objectives=len(objectives), structure_voxels=_structure_voxels(patient),
        cube_samples=_cube_samples(basis),
        n_model=sum(len(m.quantity_names) for m in tissue_models(basis.model, basis.config)),
        max_iterations=basis.config.optimizer.max_iterations, grids_shared=shared)


@dataclass(frozen=True, eq=False)
class _ModelPoints:
    """A group's points on the model grid: a structure's sample (``surface`` False) or the
    points of its maximum-dose set beyond its sample (True): ``rows``, none of an earlier
    group's, and how many it has with those."""

    name: str
    structure: str
    surface: bool
    asked: bool
    rows: NDArray[np.int64]
    whole_size: int  # the group's points, those of earlier groups included

    def ratio(self, opt_grid: DoseGrid, model_grid: DoseGrid, dose_grid: DoseGrid,
              target: str) -> float:
        """Points of the group on ``opt_grid`` per point on ``model_grid``: the spacings'
        ratio squared for a surface, cubed times the sampling densities' ratio for a
        structure's sample (1 where the two grids are one)."""
        if model_grid is opt_grid:
            return 1.0
        ratio = float(max(model_grid.spacing_mm) / max(opt_grid.spacing_mm))
        if self.surface:
            return ratio**2
        return ratio**3 * (_density(self.structure, target, opt_grid, dose_grid)
                           / _density(self.structure, target, model_grid, dose_grid))


def _model_points(patient: Patient, target: str, asked: set[str], regions: Sequence[str],
                  ct_grid: DoseGrid, model_grid: DoseGrid, dose_grid: DoseGrid
                  ) -> list[_ModelPoints]:
    """The optimization region's points on ``model_grid`` by group, the target's first, then
    those of the names in ``asked`` (the objectives' structures and maximum-dose sets): every
    point counts once, in the first group that has it (a structure's surface is often
    another's, the target lies in an organ)."""
    _region, by_name = optimization_region(patient, target, regions, ct_grid, model_grid,
                                           dose_grid)
    for name in asked - by_name.keys():  # e.g. the body's, which the region leaves out
        base = structure_of_max_points(name)
        by_name[name] = (sample_rows(patient, name, target, ct_grid, model_grid, dose_grid)
                         if base is None else max_point_rows(patient, base, target, ct_grid,
                                                             model_grid, dose_grid))
    structures = sorted({structure_of_max_points(n) or n for n in by_name},
                        key=lambda n: (n != target, not ({n, max_points_name(n)} & asked), n))
    seen = np.zeros(model_grid.n_voxels, dtype=bool)
    out = []
    for name in structures:
        sample = by_name.get(name, np.zeros(0, np.int64))
        for surface, rows in ((False, sample), (True, by_name.get(max_points_name(name)))):
            if rows is None:
                continue
            if surface:  # the maximum-dose set beyond the sample
                rows = rows[~np.isin(rows, sample, assume_unique=True)]
            own = rows[~seen[rows]]
            seen[own] = True
            out.append(_ModelPoints(f"{name} surface" if surface else name, name, surface,
                                    (max_points_name(name) if surface else name) in asked,
                                    own, int(rows.size)))
    return out


def _points_of(name: str, groups: Sequence[_ModelPoints], ratios: dict[str, float]) -> float:
    """Points of the objectives' structure or maximum-dose set ``name``: its structure's
    groups (the sample, and the surface for a maximum-dose set) whole (points an earlier
    group took included), each scaled by its ratio."""
    base = structure_of_max_points(name)
    return sum(g.whole_size * ratios[g.name] for g in groups
               if g.structure == (base or name) and (base is not None or not g.surface))


def _structure_voxels(patient: Patient) -> int:
    assert patient.structure_set is not None
    return sum(int(np.count_nonzero(st.mask.to_dense()))
               for st in patient.structure_set.structures)


class _Sampler:
    """Random points drawn for the groups, kept together (one engine counts them all)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._drawn: list[NDArray[np.int64]] = []

    def draw(self, rows: NDArray[np.int64], n: int) -> NDArray[np.int64]:
        """Up to ``n`` of ``rows`` (flat indices, increasing), without repetition (all of
        them when there are fewer), increasing."""
        if rows.size > n:
            rows = np.sort(self._rng.choice(rows, size=n, replace=False))
        self._drawn.append(rows)
        return rows

    def rows(self) -> NDArray[np.int64]:
        """Every point drawn, increasing, once."""
        return np.unique(np.concatenate(self._drawn))


class _Counts:
    """Counts per sampled point (``rows``, increasing), averaged over a group's draw."""

    def __init__(self, rows: NDArray[np.int64], counts: NDArray[np.int64]) -> None:
        self._rows, self._counts = rows, counts

    def mean(self, draw: NDArray[np.int64]) -> tuple[float, float]:
        """Mean count over ``draw`` and its standard error (0 for a single point; 0, 0 for an
        empty draw)."""
        if draw.size == 0:
            return 0.0, 0.0
        values = self._counts[np.searchsorted(self._rows, draw)].astype(np.float64)
        error = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0
        return float(values.mean()), error


def _mask_of(rows: NDArray[np.int64], grid: DoseGrid) -> NDArray[np.bool_]:
    mask = np.zeros(grid.n_voxels, dtype=bool)
    mask[rows] = True
    return mask.reshape(grid.shape)


def _density(name: str, target: str, opt_grid: DoseGrid, dose_grid: DoseGrid) -> float:
    """Share of the points of ``opt_grid`` inside structure ``name`` that the optimizer
    samples (the rules of :func:`planning.optimization_grid.sample_rows`)."""
    stride = sample_stride(name, target, opt_grid, dose_grid)
    if stride == 1 and opt_grid is not dose_grid:
        return fine_points_per_block(float(max(opt_grid.spacing_mm))) / 8.0
    return 1.0 / stride**3


def _engine_region(patient: Patient, rsp: NDArray[np.float32], min_rsp: float
                   ) -> NDArray[np.bool_]:
    """The CT voxels of the plan's dose-grid engine: the body and every structure, or where
    the stopping power reaches ``min_rsp`` when there is no body (as the planner's)."""
    assert patient.structure_set is not None
    bodies = [s for s in body_structures(patient) if s.mask.to_dense().any()]
    if not bodies:
        return np.asarray(rsp >= min_rsp)
    region = np.asarray(bodies[0].mask.to_dense(), dtype=bool).copy()
    for s in patient.structure_set.structures:
        region |= np.asarray(s.mask.to_dense(), dtype=bool)
    return region


def _cube_samples(basis: PlanBasis) -> int:
    """WEPL samples of the cubes the plan makes: each beam's once while the plan can keep it
    (:data:`planning.engine.wepl_cubes.KEPT_BYTES`), :data:`CUBE_USES` times beyond."""
    kept_bytes, total = 0, 0
    for beam in basis.beams:
        frame = beam.frame
        n = math.prod(wepl_cube_shape(
            basis.rsp.shape, basis.ct_grid.spacing_mm, basis.ct_grid.origin_mm,
            frame.direction, frame.u_axis, frame.v_axis,
            depth_step_mm=basis.settings.wepl_step_mm,
            lateral_step_mm=basis.settings.wepl_lateral_step_mm))
        if kept_bytes + 4 * n <= KEPT_BYTES:
            kept_bytes += 4 * n
            total += n
        else:
            total += CUBE_USES * n
    return total
