"""The refinement that adds the target's points the optimizer's sample missed
(planning.engine.refinement) and the row stack it builds on (kernels.sparse_device.RowStack)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

from kernels.sparse_device import RowStack, host_spot_matrices
from planning.engine import PlanningEngine
from planning.engine.dose_engine import DoseEngineSettings
from planning.engine.refinement import (
    HOT_POINT_WEIGHT_SHARE,
    TARGET_WINDOW,
    WATCH_LEVEL,
    hot_point_objectives,
    hot_points_name,
    outside_window,
    refine_target,
    target_rbe_dose,
    with_target_rows,
)
from planning.errors import PlanningError
from planning.optimization import (
    Objective,
    OptimizationProblem,
    OptimizationResult,
    OptimizerSettings,
    RbeGroup,
    optimize_weights,
)
from planning.rbe import ConstantRbe, PhysicalDose
from tests.test_engine import case  # noqa: F401  (the synthetic two-beam fixture)


def _random_csr(rows: int, cols: int, seed: int) -> sp.csr_array:
    return sp.random_array((rows, cols), density=0.3, format="csr", dtype=np.float64,
                           random_state=seed)


def test_row_stack_multiplies_as_the_stacked_matrix() -> None:
    a, b = _random_csr(40, 12, 1), _random_csr(7, 12, 2)
    top, bottom = host_spot_matrices((a, b))
    stack = RowStack((top, bottom))
    whole = sp.vstack([a, b]).toarray()
    w = np.random.default_rng(3).uniform(size=12)
    g = np.random.default_rng(4).uniform(-1, 1, size=47)
    assert stack.shape == (47, 12) and stack.T.shape == (12, 47)
    assert stack.nnz == a.nnz + b.nnz
    np.testing.assert_allclose(stack @ w, whole @ w, rtol=1e-12)
    np.testing.assert_allclose(stack.T @ g, whole.T @ g, rtol=1e-12)


def test_outside_window_picks_the_voxels_beyond_either_limit() -> None:
    rows = np.array([3, 8, 9, 20, 31])
    dose = np.array([2.0, 1.89, 2.11, 2.09, 1.91])  # prescription 2 Gy: 95-105 % is 1.9-2.1
    assert TARGET_WINDOW == (0.95, 1.05)
    np.testing.assert_array_equal(outside_window(dose, rows, 2.0), [8, 9])


def test_added_rows_are_target_points_with_their_own_groups() -> None:
    a, b = host_spot_matrices((_random_csr(10, 5, 5), _random_csr(3, 5, 6)))
    problem = OptimizationProblem(a, (), (("T", np.array([0, 2, 4])), ("OAR", np.array([9]))),
                                  PhysicalDose(), 1,
                                  groups=(RbeGroup(ConstantRbe(1.1), np.arange(10), ()),))
    added_groups = (RbeGroup(ConstantRbe(1.1), np.array([0, 1]), ()),
                    RbeGroup(PhysicalDose(), np.array([2]), ()))
    extended = with_target_rows(problem, b, (), "T", added_groups)
    assert extended.dose.shape == (13, 5)
    np.testing.assert_array_equal(extended.rows_of("T"), [0, 2, 4, 10, 11, 12])
    np.testing.assert_array_equal(extended.rows_of("OAR"), [9])
    assert [g.rows.tolist() for g in extended.groups] == [list(range(10)), [10, 11], [12]]
    w = np.ones(5)
    d = np.concatenate([a @ w, b @ w])
    expected = np.concatenate([1.1 * d[:12], d[12:]])
    np.testing.assert_allclose(extended.rbe_dose(w), expected, rtol=1e-12)


def test_start_weights_are_checked() -> None:
    (a,) = host_spot_matrices((_random_csr(10, 5, 7),))
    problem = OptimizationProblem(a, (), (("T", np.arange(10)),), PhysicalDose(), 1)
    with pytest.raises(PlanningError, match="start weights"):
        optimize_weights(problem, [Objective("T", "squared_deviation", 1.0)], 1.0, "T",
                         start=np.array([1.0, -1.0, 0.0, 0.0, 0.0]))


@dataclass
class _Sparse:
    """A synthetic target optimized on every third voxel along each axis (1 in 27)."""

    engine: PlanningEngine
    target_rows: np.ndarray
    sampled: np.ndarray
    problem: OptimizationProblem
    objectives: list[Objective]
    settings: OptimizerSettings
    first: OptimizationResult


def _sparsely_sampled_target(fixture) -> _Sparse:  # type: ignore[no-untyped-def]
    machine, rsp, grid, beams, maps, _ = fixture
    engine = PlanningEngine(machine, rsp, grid, grid, beams, maps,
                            DoseEngineSettings(device="cpu", n_threads=2, block_voxels=2048))
    target = np.zeros(grid.shape, bool)
    target[5:11, 14:26, 14:26] = True
    target_rows = np.flatnonzero(target.reshape(-1))
    k, j, i = np.unravel_index(target_rows, grid.shape)
    sampled = target_rows[(k % 3 == 0) & (j % 3 == 0) & (i % 3 == 0)]
    dose_m, _, _ = engine.optimization_matrices(sampled)
    problem = OptimizationProblem(dose_m, (), (("T", np.arange(sampled.size)),),
                                  PhysicalDose(), 1)
    objectives = [Objective("T", "squared_deviation", 2.0, 1.0)]
    settings = OptimizerSettings(max_iterations=60, min_spot_weight=0.0)
    first = optimize_weights(problem, objectives, 2.0, "T", settings)
    return _Sparse(engine, target_rows, sampled, problem, objectives, settings, first)


def test_refinement_adds_the_missed_voxels_and_brings_them_towards_the_window(case) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A target sampled on one voxel in 27 only: the optimum on those points leaves voxels
    between them outside 95-105 %; the refinement adds exactly those (checked against the
    whole forward dose) and the continued optimization brings the worst of them closer."""
    c = _sparsely_sampled_target(case)
    engine, target_rows, sampled, first = c.engine, c.target_rows, c.sampled, c.first
    problem, objectives, settings = c.problem, c.objectives, c.settings
    before = target_rbe_dose(engine, first.weights, PhysicalDose(), None, (), target_rows)
    whole = engine.forward(first.weights).dose_gy[target_rows]
    np.testing.assert_allclose(before, whole, rtol=1e-5)
    missed = outside_window(before, target_rows, 2.0)
    assert 0 < missed.size < target_rows.size

    refined = refine_target(problem, objectives, settings, first, engine=engine,
                            model=PhysicalDose(), tables=None, voxel_groups=(), target="T",
                            target_rows=target_rows, sampled_rows=sampled,
                            prescription_per_fraction=2.0)
    np.testing.assert_array_equal(refined.rows, np.setdiff1d(missed, sampled))
    # no maximum asked of the target: no objective added, no point watched
    assert refined.objectives == tuple(objectives) and refined.hot_points == 0
    assert refined.problem is not None
    assert refined.problem.dose.shape[0] == problem.dose.shape[0] + refined.rows.size
    assert refined.result is not None
    after = target_rbe_dose(engine, refined.result.weights, PhysicalDose(), None, (),
                            target_rows)
    worst = [float(np.max(np.abs(d - 2.0))) for d in (before, after)]
    assert worst[1] < worst[0], worst
    assert outside_window(after, target_rows, 2.0).size < missed.size


def test_only_the_points_given_as_cold_rows_are_added_for_too_little_dose(case) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Points above the window are added wherever they are; points below it only among
    ``cold_rows`` (the dose grid's voxels among the check grid's points)."""
    c = _sparsely_sampled_target(case)
    engine, target_rows, sampled, first = c.engine, c.target_rows, c.sampled, c.first
    dose = engine.forward(first.weights).dose_gy[target_rows]
    hot, cold = target_rows[dose > 2.1], target_rows[dose < 1.9]
    assert hot.size and cold.size > 1
    cold_rows = cold[::2]
    refined = refine_target(c.problem, c.objectives, c.settings, first, engine=engine,
                            model=PhysicalDose(), tables=None, voxel_groups=(), target="T",
                            target_rows=target_rows, sampled_rows=sampled,
                            prescription_per_fraction=2.0,
                            cold_rows=np.union1d(cold_rows, target_rows[dose > 1.9][:5]))
    np.testing.assert_array_equal(refined.rows,
                                  np.setdiff1d(np.union1d(hot, cold_rows), sampled))


def test_hot_points_become_a_structure_of_their_own() -> None:
    a, b = host_spot_matrices((_random_csr(10, 5, 8), _random_csr(4, 5, 9)))
    problem = OptimizationProblem(a, (), (("T", np.array([0, 2, 4])),), PhysicalDose(), 1)
    extended = with_target_rows(problem, b, (), "T", (), hot=np.array([1, 3]))
    np.testing.assert_array_equal(extended.rows_of("T"), [0, 2, 4, 10, 11, 12, 13])
    np.testing.assert_array_equal(extended.rows_of(hot_points_name("T")), [11, 13])
    some = with_target_rows(problem, b, (), "T", (), hot=np.array([1, 3]),
                            in_target=np.array([0, 1]))
    np.testing.assert_array_equal(some.rows_of("T"), [0, 2, 4, 10, 11])
    assert "\\" in hot_points_name("T")  # a character no DICOM ROI Name holds
    plain = with_target_rows(problem, b, (), "T", (), hot=np.array([], dtype=np.int64))
    assert [name for name, _ in plain.structure_rows] == ["T"]


def test_the_hot_points_objective_sits_at_the_window_s_top_with_the_target_s_max_weight() -> None:
    objectives = [Objective("T", "squared_deviation", 60.0, 100.0),
                  Objective("T", "max_dose", 61.5, 500.0),
                  Objective("OAR", "max_dose", 30.0, 900.0)]
    (hot,) = hot_point_objectives(objectives, "T", 60.0)
    assert hot == Objective(hot_points_name("T"), "max_dose", TARGET_WINDOW[1] * 60.0,
                            HOT_POINT_WEIGHT_SHARE * 500.0)
    # no maximum asked of the target (only of another structure): no goal added
    assert hot_point_objectives([objectives[0], objectives[2]], "T", 60.0) == []
    # a plan that allows the target 110 %: the hot points are held there, not at 105 %
    (lenient,) = hot_point_objectives([*objectives, Objective("T", "max_dose", 66.0, 50.0)],
                                      "T", 60.0)
    assert (lenient.dose_gy_rbe, lenient.weight) == (66.0, HOT_POINT_WEIGHT_SHARE * 500.0)


def test_the_hot_points_objective_lowers_the_hot_points_further(case) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The same continued pass over the same added points, with and without the objective on
    the points above the watch level: with it, the hottest of them ends lower."""
    c = _sparsely_sampled_target(case)
    engine, target_rows, sampled, first = c.engine, c.target_rows, c.sampled, c.first
    objectives = [*c.objectives, Objective("T", "max_dose", 2.05, 5.0)]
    refined = refine_target(c.problem, objectives, c.settings, first, engine=engine,
                            model=PhysicalDose(), tables=None, voxel_groups=(), target="T",
                            target_rows=target_rows, sampled_rows=sampled,
                            prescription_per_fraction=2.0)
    assert refined.problem is not None and refined.result is not None
    assert [o.structure for o in refined.objectives] == ["T", "T", hot_points_name("T")]
    hot_rows = refined.problem.rows_of(hot_points_name("T"))
    # the points above 103 %: those above 105 % are target points too, the others are not
    dose = engine.forward(first.weights).dose_gy[target_rows]
    watched = np.setdiff1d(target_rows[dose > WATCH_LEVEL * 2.0], sampled)
    above = np.setdiff1d(target_rows[dose > TARGET_WINDOW[1] * 2.0], sampled)
    assert refined.hot_points == hot_rows.size == watched.size > above.size > 0
    n0 = c.problem.dose.shape[0]
    assert np.intersect1d(refined.problem.rows_of("T"), hot_rows).size == above.size
    assert refined.problem.rows_of("T").size == n0 + refined.rows.size
    shorter = OptimizerSettings(max_iterations=20, min_spot_weight=0.0)
    without = optimize_weights(refined.problem, objectives, 2.0, "T", shorter,
                               start=first.weights)
    hottest = [float(np.max(refined.problem.rbe_dose(w)[hot_rows]))
               for w in (refined.result.weights, without.weights)]
    assert hottest[0] < hottest[1], hottest
