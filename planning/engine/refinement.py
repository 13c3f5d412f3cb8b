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
above :data:`TARGET_WINDOW` (105 %) of the prescription, and the dose-grid voxels below it
(95 %), become further points of the target (their influence from the check grid's engine,
stacked under the sample's rows without copying them: :class:`kernels.sparse_device.RowStack`),
and the optimizer continues from the plan's weights for a third of its iterations. Every
objective on the target then counts them as target points. Where the plan has a maximum-dose
objective on the target (the defaults do), the points above :data:`WATCH_LEVEL` (103 %) also
get one of their own at the window's top (105 %), weighted like the target's: as target points
alone a few dozen hot points among tens of thousands weigh almost nothing in the target's
means, and the points just under the window are where the continued pass puts the next hot
spot. Those between 103 and 105 % are rows of that objective only, not target points.

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

The objective on the hot points from 103 % (2026-12-07; before, the points above 105 % joined
the target only). Generator 1.4.0, mMKM; maximum anywhere on the plan's grid, then the target's
maximum / D98 / D95 on the finer recalculation, % of the prescription:

| plan | before | after |
|---|---|---|
| demo, 3 mm grid and spots (60 / 20), 1.5 mm | -, 108.0 / - / - | 107.8, 107.0 / 95.9 / 97.2 |
| demo, defaults (57.6 / 16), 2 mm | 105.8, 105.2 / 96.1 / 97.2 | 106.2, 105.3 / 96.1 / 97.2 |
| TG-119 phantom, defaults, 2 mm | 105.7, 105.4 / 97.2 / 98.1 | 105.1, 105.3 / 97.2 / 98.1 |

(76, 65 and 991 points under the objective; the added target points as before: 21, 30, 142.)
Tried on the way: the objective on the points above 105 % only left the 3 mm demo plan at
107.9 % (weight share 1) and 107.8 % (0.3): the hot spot moved onto points that had been just
under the window. Making the points from 103 % target points as well gave 107.1 % but lowered
a coarse plan's target mean by 0.3 % (a target-only squared deviation pulls them down).
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

#: A target point of the check grid above this share of the prescription joins the
#: maximum-dose objective on the hot points (:func:`hot_point_objectives`, at the window's top)
#: where the plan has one: points just under the window are watched, as the continued pass
#: moves dose onto them (module docstring); they do not become target points.
WATCH_LEVEL = 1.03

#: The maximum-dose objective on the hot points is weighted as this share of the target's own
#: maximum-dose objective (the largest weight on the target). Counted only as target points,
#: a few dozen hot points among tens of thousands weigh almost nothing in the target's means.
HOT_POINT_WEIGHT_SHARE = 1.0


def hot_points_name(target: str) -> str:
    """The name under which the added hot points of ``target`` are a structure of the
    problem; a backslash cannot occur in a DICOM ROI Name (LO), so no ROI has it."""
    return f"{target}\\hot points"


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
    objectives : tuple of Objective
        The objectives that optimization ran with: the plan's and, where points above
        :data:`WATCH_LEVEL` were added, the maximum-dose objective on them
        (:func:`hot_point_objectives`).
    hot_points : int
        How many check-grid points the maximum-dose objective on the hot points holds (those
        above :data:`WATCH_LEVEL`, the points above the window among them); 0 without it.
    """

    rows: NDArray[np.int64]
    result: OptimizationResult | None
    problem: OptimizationProblem | None = None
    objectives: tuple[Objective, ...] = ()
    hot_points: int = 0


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
                     target: str, groups: Sequence[RbeGroup],
                     hot: NDArray[np.int64] | None = None,
                     in_target: NDArray[np.int64] | None = None) -> OptimizationProblem:
    """``problem`` with further rows (``dose`` and ``model_sums``: matrices of the same spots)
    below its own, points of ``target`` (those at the positions ``in_target`` among the new
    rows; None: all); ``groups`` are the new rows' RBE groups (positions among the new rows)
    when the problem has groups; ``hot`` (positions among the new rows), when given and not
    empty, become the structure :func:`hot_points_name` of ``target``."""
    n0 = problem.dose.shape[0]
    added = (np.arange(n0, n0 + dose.shape[0], dtype=np.int64) if in_target is None
             else n0 + np.asarray(in_target, dtype=np.int64))
    structure_rows = tuple((name, np.concatenate([rows, added]) if name == target else rows)
                           for name, rows in problem.structure_rows)
    if hot is not None and hot.size:
        structure_rows += ((hot_points_name(target), n0 + np.asarray(hot, dtype=np.int64)),)
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
        is checked for dose above :data:`WATCH_LEVEL`.
    again : bool
        Continue the optimization even where no point is added (``problem`` changed since
        ``result``: a new dose correction, :mod:`planning.engine.dose_correction`).
    """
    shorter = dataclasses.replace(settings, max_iterations=max(settings.max_iterations // 3, 1))

    def continued(rows: NDArray[np.int64], extended: OptimizationProblem,
                  used: Sequence[Objective] = objectives, hot_points: int = 0) -> Refinement:
        return Refinement(rows, optimize_weights(
            extended, used, prescription_per_fraction, target, shorter,
            start=result.weights, progress=progress, cancel=cancel), extended, tuple(used),
            hot_points)

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
    joining = np.setdiff1d(np.union1d(hot, cold), sampled_rows)
    hot_objective = hot_point_objectives(objectives, target, problem.n_fractions
                                         * prescription_per_fraction)
    watched = (np.setdiff1d(outside_window(dose, target_rows, prescription_per_fraction,
                                           (-np.inf, WATCH_LEVEL)), sampled_rows)
               if hot_objective else np.zeros(0, np.int64))
    rows = np.union1d(joining, watched)
    if joining.size == 0:  # nothing outside the window: nothing to watch for either
        return continued(joining, problem) if again else Refinement(joining, None)
    dose_m, sums_m, _ = engine.optimization_matrices(rows, model_tables=tables, cancel=cancel)
    hot_positions = np.flatnonzero(np.isin(rows, watched))
    extended = with_target_rows(problem, dose_m, sums_m, target,
                                groups_on_rows(voxel_groups, rows), hot=hot_positions,
                                in_target=np.flatnonzero(np.isin(rows, joining)))
    return continued(joining, extended,
                     [*objectives, *hot_objective] if hot_positions.size else objectives,
                     int(hot_positions.size))


def hot_point_objectives(objectives: Sequence[Objective], target: str,
                         total_dose_gy_rbe: float) -> list[Objective]:
    """The maximum-dose objective on the hot points of ``target``: at :data:`TARGET_WINDOW`'s
    top of ``total_dose_gy_rbe`` (the prescription, all fractions) or at the highest maximum
    the plan allows the target where that is higher, weighted :data:`HOT_POINT_WEIGHT_SHARE`
    of the largest weight among the target's own maximum-dose objectives. None where the plan
    asks no maximum of the target (a configuration that replaces the defaults may not): the
    refinement adds no goal the plan does not have, it weighs one where the sample missed it
    (and never holds the hot points below the maximum the plan allows the target)."""
    own = [o for o in objectives if o.structure == target and o.kind == "max_dose"]
    if not own:
        return []
    level = max(TARGET_WINDOW[1] * total_dose_gy_rbe, *(o.dose_gy_rbe for o in own))
    return [Objective(hot_points_name(target), "max_dose", level,
                      HOT_POINT_WEIGHT_SHARE * max(o.weight for o in own))]
