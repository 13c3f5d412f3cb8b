"""The target's points the optimizer's sample missed, added to it for one more pass.

The optimizer fits the dose at its sample points (:mod:`planning.optimization_grid`). Between
them the dose can have structure the points do not see, and the optimizer then builds hot or
cold spots there: on the TG-119-sized benchmark phantom (two opposed fields whose Bragg peaks
pass the edge of an air rod, the WEPL changing by 3 mm per mm across it) one 2.5 mm dose-grid
voxel of the default plan had 110.6 % of the prescription while the 230 sample points within
4 mm of it saw at most 106.6 % (measured 2026-12-05; more iterations made it worse: 113 % after
266). So after the optimization the plan's RBE-weighted dose is computed on the target's points
of a check grid (:func:`planning.optimization_grid.target_check_grid`: the dose grid's voxel
centres and the midpoints between them; a forward pass over those points only); the points
above :data:`TARGET_WINDOW` of the prescription, and the dose-grid voxels below it, become
further points of the target (their influence from the check grid's engine, stacked under the
sample's rows without copying them: :class:`kernels.sparse_device.RowStack`), and the
optimizer continues from the plan's weights for a third of its iterations. Every objective on
the target then counts them as target points.

The midpoints are checked for hot spots only: at the target's surface they reach half a dose
voxel further out than the dose grid's edge voxels, into the fall-off the rings ask for, and
adding the cold ones (632 of the TG-119 plan's 40,078 points at a 3 mm dose grid) pulled the
plan's edge outwards and made it hotter inside (maximum on a 1.5 mm grid 109.4 %).

Measured 2026-12-05 (sixth session; mMKM, 60 Gy(RBE) in 20, gantry 90/270, 3 mm dose grid,
recalculated on finer grids with :func:`planning.compare.recalc.recalculate`; target maximum
/ D98 in % of the prescription):

| plan | checked | plan's grid | 2 mm | 1.5 mm |
|---|---|---|---|---|
| TG-119 phantom, 5 mm spots | dose-grid voxels | 105.7 / 97.5 | 109.4 / 97.0 | 110.4 / 97.2 |
| | check grid | 105.8 / 97.3 | 106.9 / 96.9 | 108.0 / 97.1 |
| demo head, 3 mm spots | dose-grid voxels | 109.2 / 96.8 | 111.6 / 96.1 | 114.2 / 96.5 |
| | check grid | 106.8 / 96.2 | 107.5 / 95.8 | 107.6 / 95.9 |

The 2 mm TG-119 plan of ``ionplan plan`` (1 mm check grid, 130,806 points) on a 1 mm grid over
the target: maximum 110.6 -> 109.0 %, 57 -> 4 points above 107 %, D98 97.6 % either way, for
4.5 s more (refinement 17.1 -> 21.6 s). One pass: a second one chases hot spots of a cubic
millimetre.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kernels.sparse_device import RowStack
from planning.engine import PlanningEngine
from planning.engine.forward_dose import cubes_from_sums
from planning.engine.problem import groups_on_rows
from planning.optimization import (
    Objective,
    OptimizationProblem,
    OptimizationResult,
    OptimizerSettings,
    RbeGroup,
    optimize_weights,
)
from planning.progress import CancelToken, ProgressCallback
from planning.rbe import DepthTables, RbeModel

#: A target point whose RBE-weighted dose lies outside this share of the prescription joins the
#: optimizer's points (above it: any point of the check grid; below it: the dose grid's
#: voxels), inside ICRU 50's 95-107 %, so that a plan that meets it on the points still meets
#: ICRU's window between them.
TARGET_WINDOW = (0.95, 1.05)


@dataclass(frozen=True)
class Refinement:
    """What the refinement did.

    Attributes
    ----------
    rows : int array
        Flat check-grid indices of the target points added to the optimizer's points.
    result : OptimizationResult or None
        The continued optimization; None when no point was outside the window.
    problem : OptimizationProblem or None
        The problem that optimization ran on (with the added points); None without one.
    """

    rows: NDArray[np.int64]
    result: OptimizationResult | None
    problem: OptimizationProblem | None = None


def target_rbe_dose(engine: PlanningEngine, weights: NDArray[np.float64], model: RbeModel,
                    tables: DepthTables | None, voxel_groups: Sequence[RbeGroup],
                    rows: NDArray[np.int64], *, cancel: CancelToken | None = None
                    ) -> NDArray[np.float64]:
    """RBE-weighted dose per fraction, Gy(RBE), of spot ``weights`` at ``rows`` (sorted flat
    indices of ``engine``'s dose grid), by a forward pass over those voxels only;
    ``voxel_groups`` as for :func:`planning.engine.forward_dose.forward_cubes`."""
    sums = engine.forward(weights, model_tables=tables, with_let=False, rows=rows,
                          cancel=cancel)
    cubes = cubes_from_sums(sums, model, 1, (1, 1, int(rows.size)),
                            groups_on_rows(voxel_groups, rows))
    return cubes.rbe_dose_gy_rbe.reshape(-1).astype(np.float64)


def outside_window(dose_per_fraction: NDArray[np.float64], rows: NDArray[np.int64],
                   prescription_per_fraction: float,
                   window: tuple[float, float] = TARGET_WINDOW) -> NDArray[np.int64]:
    """Those of ``rows`` whose dose (same order) lies outside ``window`` x the prescription."""
    low, high = window[0] * prescription_per_fraction, window[1] * prescription_per_fraction
    return rows[(dose_per_fraction < low) | (dose_per_fraction > high)]


def with_target_rows(problem: OptimizationProblem, dose: Any, model_sums: Sequence[Any],
                     target: str, groups: Sequence[RbeGroup]) -> OptimizationProblem:
    """``problem`` with further rows (``dose`` and ``model_sums``: matrices of the same spots)
    below its own, all of them points of ``target``; ``groups`` are the new rows' RBE groups
    (positions among the new rows) when the problem has groups."""
    n0 = problem.dose.shape[0]
    added = np.arange(n0, n0 + dose.shape[0], dtype=np.int64)
    structure_rows = tuple((name, np.concatenate([rows, added]) if name == target else rows)
                           for name, rows in problem.structure_rows)
    shifted = tuple(RbeGroup(g.model, n0 + g.rows, g.sum_indices) for g in groups)
    # The new rows' matrices hold all of their dose: no correction there.
    correction = (None if problem.correction is None
                  else problem.correction.extended(dose.shape[0], problem.xp))
    return dataclasses.replace(
        problem, correction=correction, dose=RowStack((problem.dose, dose)),
        model_sums=tuple(RowStack((a, b)) for a, b in zip(problem.model_sums, model_sums,
                                                          strict=True)),
        structure_rows=structure_rows,
        groups=problem.groups + shifted if problem.groups else ())


def refine_target(problem: OptimizationProblem, objectives: Sequence[Objective],
                  settings: OptimizerSettings, result: OptimizationResult, *,
                  engine: PlanningEngine, model: RbeModel, tables: DepthTables | None,
                  voxel_groups: Sequence[RbeGroup], target: str,
                  target_rows: NDArray[np.int64], sampled_rows: NDArray[np.int64],
                  prescription_per_fraction: float,
                  cold_rows: NDArray[np.int64] | None = None, again: bool = False,
                  progress: ProgressCallback | None = None,
                  cancel: CancelToken | None = None) -> Refinement:
    """One pass of the module docstring's refinement.

    Parameters
    ----------
    problem, objectives, settings, result :
        The optimization just run and its result.
    engine, model, tables, voxel_groups :
        The engine on the check grid (the dose grid's engine when that is the check grid)
        and what its forward dose needs (as for ``forward_cubes``, groups on that grid).
    target : str
        The target's name among ``problem.structure_rows``.
    target_rows : int array
        The target's points on ``engine``'s grid (sorted flat indices).
    sampled_rows : int array
        Points of ``engine``'s grid that already are points of the problem (when the
        optimizer samples the dose grid or the check grid itself; empty otherwise): never
        added twice.
    prescription_per_fraction : float
        Gy(RBE); :data:`TARGET_WINDOW` is relative to it.
    cold_rows : int array, optional
        The points checked for dose below the window as well (the dose grid's voxels among
        ``target_rows``, see the module docstring); None: all of ``target_rows``. Every point
        is checked for dose above it.
    again : bool
        Continue the optimization even where no point is added (``problem`` changed since
        ``result``: a new dose correction, :mod:`planning.engine.dose_correction`).
    """
    shorter = dataclasses.replace(settings, max_iterations=max(settings.max_iterations // 3, 1))

    def continued(rows: NDArray[np.int64], extended: OptimizationProblem) -> Refinement:
        return Refinement(rows, optimize_weights(
            extended, objectives, prescription_per_fraction, target, shorter,
            start=result.weights, progress=progress, cancel=cancel), extended)

    if target_rows.size == 0:
        return continued(target_rows, problem) if again else Refinement(target_rows, None)
    dose = target_rbe_dose(engine, result.weights, model, tables, voxel_groups, target_rows,
                           cancel=cancel)
    hot = outside_window(dose, target_rows, prescription_per_fraction,
                         (-np.inf, TARGET_WINDOW[1]))
    cold = outside_window(dose, target_rows, prescription_per_fraction,
                          (TARGET_WINDOW[0], np.inf))
    if cold_rows is not None:
        cold = np.intersect1d(cold, cold_rows)
    rows = np.setdiff1d(np.union1d(hot, cold), sampled_rows)
    if rows.size == 0:
        return continued(rows, problem) if again else Refinement(rows, None)
    dose_m, sums_m, _ = engine.optimization_matrices(rows, model_tables=tables, cancel=cancel)
    return continued(rows, with_target_rows(problem, dose_m, sums_m, target,
                                            groups_on_rows(voxel_groups, rows)))
