"""The optimizer's dose correction (planning.engine.dose_correction).

Its matrices keep each pencil beam's dose out to a smaller cut-off radius than the plan's dose;
the rest enters as per-point offsets from a forward pass. Checked against the engine itself:
the smaller matrices are the larger ones' entries inside the smaller radius, and the corrected
products equal the forward pass at the plan's cut-off for the weights they were made from.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from planning.engine import PlanningEngine, dose_correction
from planning.engine.dose_correction import (
    SETTLE_PASSES,
    SETTLE_TOLERANCE_PCT,
    correction_change,
    row_forward,
    settle_correction,
    with_dose_correction,
)
from planning.engine.dose_engine import DoseEngineSettings
from planning.engine.refinement import with_target_rows
from planning.errors import PlanningError
from planning.optimization import (
    Objective,
    OptimizationProblem,
    OptimizerSettings,
    RowCorrection,
    objective_and_weight_gradient,
    optimize_weights,
)
from planning.rbe import LemModel, PhysicalDose
from tests.test_engine import case  # noqa: F401  (the module fixture)

SETTINGS = DoseEngineSettings(device="cpu", n_threads=2, block_voxels=2048,
                              lateral_cutoff_fraction=0.99, matrix_cutoff_fraction=0.9)


def _engine(case):  # type: ignore[no-untyped-def]  # noqa: F811
    machine, rsp, grid, beams, maps, _ = case
    return PlanningEngine(machine, rsp, grid, grid, beams, maps, SETTINGS)


def _core(case, seed: int, n_rows: int, cutoff: float = 0.9):  # type: ignore[no-untyped-def]  # noqa: F811
    """The engine, its tables, a generator, ``n_rows`` random rows and their matrices at the
    ``cutoff`` fraction."""
    tables = case[5]
    engine = _engine(case)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(engine.rows, n_rows, replace=False))
    dose, sums, _ = engine.optimization_matrices(rows, model_tables=tables,
                                                 cutoff_fraction=cutoff)
    return engine, tables, rng, rows, dose, sums


def _problem(dose, sums, rows):  # type: ignore[no-untyped-def]
    return OptimizationProblem(dose, tuple(sums), (("T", np.arange(rows.size)),),
                               LemModel(), 1)


def test_smaller_cutoff_keeps_the_entries_inside_its_radius(case) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    tables = case[5]
    engine = _engine(case)
    rows = np.sort(np.random.default_rng(7).choice(engine.rows, 2000, replace=False))
    full, _, n_full = engine.optimization_matrices(rows, model_tables=tables)
    core, _, n_core = engine.optimization_matrices(rows, model_tables=tables,
                                                   cutoff_fraction=0.9)
    assert 0 < n_core < 0.9 * n_full
    a = full.matrix.full.toarray()
    b = core.matrix.full.toarray()
    kept = b != 0
    np.testing.assert_array_equal(b[kept], a[kept])
    # What is dropped lies farther out: the smallest entries of each spot.
    dropped = (a != 0) & ~kept
    for j in np.flatnonzero(dropped.any(axis=0))[:50]:
        assert a[dropped[:, j], j].max() <= a[kept[:, j], j].max()
    with pytest.raises(PlanningError, match="cut-off fraction"):
        engine.optimization_matrices(rows, cutoff_fraction=0.995)


def test_settings_refuse_a_bad_matrix_fraction() -> None:
    with pytest.raises(PlanningError, match="matrix_cutoff_fraction"):
        DoseEngineSettings(matrix_cutoff_fraction=1.0)
    assert DoseEngineSettings(lateral_cutoff_fraction=0.8,
                              matrix_cutoff_fraction=0.9).optimizer_cutoff_fraction == 0.8


def test_corrected_products_equal_the_forward_pass(case) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """For the weights it was made from, in the problem's own (unsorted) row order; for other
    weights the products move with the matrices only."""
    engine, tables, rng, rows, dose, sums = _core(case, seed=8, n_rows=1500)
    shuffle = rng.permutation(rows.size)  # the problem's rows in another order
    problem = _problem(_rows(dose, shuffle), [_rows(s, shuffle) for s in sums], rows)
    w = rng.uniform(0.5, 1.5, engine.n_spots)
    corrected = with_dose_correction(problem, engine, w, tables, rows[shuffle])
    exact = engine.forward(w, model_tables=tables, with_let=False, rows=rows)
    d, s = corrected.products(w)
    scale = exact.dose_gy.max()
    np.testing.assert_allclose(d, exact.dose_gy[shuffle], rtol=1e-5, atol=1e-7 * scale)
    for got, want in zip(s, exact.model_sums, strict=True):
        np.testing.assert_allclose(got, want[shuffle], rtol=1e-5,
                                   atol=1e-7 * np.abs(want).max())
    assert corrected.correction is not None
    # The halo only adds dose, and it is a small part of it where the dose is high.
    assert corrected.correction.dose.min() > -1e-6 * scale
    high = exact.dose_gy[shuffle] > 0.5 * scale
    assert high.any()
    assert np.all(corrected.correction.dose[high] < 0.2 * exact.dose_gy[shuffle][high])
    assert corrected.correction.dose.max() > 1e-3 * scale
    # Other weights: the offsets stay, the matrices' products change.
    w2 = 2.0 * w
    d2, _ = corrected.products(w2)
    np.testing.assert_allclose(d2, 2.0 * (d - corrected.correction.dose)
                               + corrected.correction.dose, rtol=1e-6, atol=1e-9 * scale)
    change = correction_change(problem, corrected, w, "T", 1.0)
    assert 0 < change.target_share < 0.2 and change.largest_pct > 0


def test_a_kept_forward_pass_serves_the_same_weights_scaled(case) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A re-optimization's first correction (the last weights scaled to a new prescription)
    is the kept pass times the factor, without a forward pass, and equals the engine's;
    other weights or other rows get the engine's pass."""
    engine, tables, rng, rows, dose, sums = _core(case, seed=12, n_rows=1200)
    shuffle = rng.permutation(rows.size)
    w = rng.uniform(0.0, 1.5, engine.n_spots)
    kept = row_forward(engine, w, tables, rows[shuffle])
    exact = engine.forward(2.5 * w, model_tables=tables, with_let=False, rows=rows)
    calls = []
    real = engine.forward

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    engine.forward = counted  # type: ignore[method-assign]
    scaled = row_forward(engine, 2.5 * w, tables, rows[shuffle], kept=kept)
    assert not calls
    scale = exact.dose_gy.max()
    np.testing.assert_allclose(scaled.dose_gy, exact.dose_gy[shuffle], rtol=1e-6,
                               atol=1e-9 * scale)
    for got, want in zip(scaled.model_sums, exact.model_sums, strict=True):
        np.testing.assert_allclose(got, want[shuffle], rtol=1e-6, atol=1e-9 * np.abs(want).max())
    problem = _problem(_rows(dose, shuffle), [_rows(m, shuffle) for m in sums], rows)
    d, _ = with_dose_correction(problem, engine, 2.5 * w, tables, rows[shuffle],
                                forward=scaled).products(2.5 * w)
    np.testing.assert_allclose(d, exact.dose_gy[shuffle], rtol=1e-5, atol=1e-7 * scale)
    # Not a common factor, other rows, other row order: the engine's pass.
    other = w.copy()
    other[0] += 0.1
    for weights, order in ((other, shuffle), (2.0 * w, np.arange(rows.size))):
        assert kept.scaled_to(weights, rows[order]) is None
        row_forward(engine, weights, tables, rows[order], kept=kept)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="other rows"):
        with_dose_correction(problem, engine, 2.5 * w, tables, rows, forward=scaled)
    with pytest.raises(ValueError, match="other weights"):
        with_dose_correction(problem, engine, 2.0 * w, tables, rows[shuffle], forward=scaled)


def _rows(m, order):  # type: ignore[no-untyped-def]
    """The host SpotMatrix ``m``'s rows in ``order``, as a SciPy CSR matrix (``@``, ``.T``)."""
    return m.matrix.full[order]


def test_same_cutoff_gives_no_correction(case) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    tables = case[5]
    engine = _engine(case)
    rows = np.sort(np.random.default_rng(9).choice(engine.rows, 800, replace=False))
    dose, sums, _ = engine.optimization_matrices(rows, model_tables=tables)
    w = np.random.default_rng(10).uniform(0.5, 1.5, engine.n_spots)
    corrected = with_dose_correction(_problem(dose, sums, rows), engine, w, tables, rows)
    assert corrected.correction is not None
    d = dose @ w
    assert np.abs(corrected.correction.dose).max() < 1e-5 * d.max()


def test_gradient_with_a_correction_is_the_derivative(case) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The offsets are constant: the analytic gradient still matches finite differences."""
    engine, tables, rng, rows, dose, sums = _core(case, seed=11, n_rows=600)
    w = rng.uniform(0.5, 1.5, engine.n_spots)
    problem = with_dose_correction(_problem(dose, sums, rows), engine, w, tables, rows)
    d0 = float(np.mean(problem.rbe_dose(w)))
    objectives = [Objective("T", "squared_deviation", 0.8 * d0)]
    w1 = w * rng.uniform(0.8, 1.2, w.size)
    _, grad = objective_and_weight_gradient(objectives, problem, w1)
    for j in rng.choice(w.size, 5, replace=False):
        h = 1e-2 * w1[j]  # float32 matrices: a step well above their rounding
        up, down = w1.copy(), w1.copy()
        up[j] += h
        down[j] -= h
        fd = (objective_and_weight_gradient(objectives, problem, up)[0]
              - objective_and_weight_gradient(objectives, problem, down)[0]) / (2 * h)
        assert grad[j] == pytest.approx(fd, rel=1e-3, abs=1e-9 * np.abs(grad).max())


def test_added_rows_get_no_correction() -> None:
    import scipy.sparse as sp

    a = sp.csr_array(np.array([[1.0, 0.0], [0.0, 2.0]]))
    problem = OptimizationProblem(a, (), (("T", np.array([0, 1])),), PhysicalDose(), 1,
                                  correction=RowCorrection(np.array([0.5, 0.25]), ()))
    extended = with_target_rows(problem, sp.csr_array(np.array([[3.0, 1.0]])), (), "T", ())
    d, _ = extended.products(np.array([1.0, 1.0]))
    np.testing.assert_allclose(d, [1.5, 2.25, 4.0])
    with pytest.raises(PlanningError, match="dose correction"):
        dataclasses.replace(problem, correction=RowCorrection(np.zeros(3), ()))


def test_a_refinements_added_rows_keep_no_correction(case) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """``rows`` cover the problem's first rows; the rows a refinement added (matrices at the
    plan's cut-off) get a zero offset, the first ones the forward pass less the products."""
    engine, tables, rng, rows, dose, sums = _core(case, seed=13, n_rows=700, cutoff=0.8)
    extra = np.sort(rng.choice(np.setdiff1d(engine.rows, rows), 50, replace=False))
    full_d, full_s, _ = engine.optimization_matrices(extra, model_tables=tables)
    problem = with_target_rows(_problem(dose, sums, rows), full_d, full_s, "T", ())
    w = rng.uniform(0.5, 1.5, engine.n_spots)
    corrected = with_dose_correction(problem, engine, w, tables, rows)
    assert corrected.correction is not None
    assert np.all(corrected.correction.dose[rows.size:] == 0.0)
    both = np.concatenate([rows, extra])
    order = np.argsort(both)
    exact = engine.forward(w, model_tables=tables, with_let=False, rows=both[order])
    d, _ = corrected.products(w)
    scale = exact.dose_gy.max()
    np.testing.assert_allclose(d[order], exact.dose_gy, rtol=1e-5, atol=1e-6 * scale)
    assert corrected.correction.dose[:rows.size].max() > 1e-3 * scale
    with pytest.raises(ValueError, match="rows for a problem"):
        few = np.arange(10)
        with_dose_correction(_problem(_rows(dose, few), [_rows(m, few) for m in sums],
                                      rows[:10]), engine, w, tables, rows)


def test_settling_brings_the_optimizers_dose_to_the_plans(case, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """After an optimization with a stale correction (made from uniform weights), the settling
    passes leave the optimizer's RBE-weighted dose at its points within the tolerance of that
    of the matrices at the plan's cut-off (an independent path: the full matrices, not the
    forward pass the corrections come from), and the residual it reports is that
    difference."""
    engine, tables, _, rows, dose, sums = _core(case, seed=14, n_rows=1500, cutoff=0.8)
    settings = OptimizerSettings(max_iterations=60, min_spot_weight=0.0)
    objectives = [Objective("T", "squared_deviation", 3.0)]
    problem = with_dose_correction(_problem(dose, sums, rows), engine,
                                   np.ones(engine.n_spots), tables, rows)
    first = optimize_weights(problem, objectives, 3.0, "T", settings)
    stale = correction_change(problem, with_dose_correction(problem, engine, first.weights,
                                                            tables, rows),
                              first.weights, "T", 3.0).largest_pct
    assert stale > 5 * SETTLE_TOLERANCE_PCT  # the case needs settling
    seen: list[OptimizationProblem] = []

    def recording(p, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(p)
        return optimize_weights(p, *args, **kwargs)

    monkeypatch.setattr(dose_correction, "optimize_weights", recording)
    settled = settle_correction(problem, first, engine=engine, tables=tables, rows=rows,
                                objectives=objectives, settings=settings, target="T",
                                prescription_per_fraction=3.0)
    assert settled.passes == len(seen) >= 1
    assert settled.iterations > 0
    assert settled.residual_pct < stale / 5
    assert settled.residual_pct <= SETTLE_TOLERANCE_PCT or settled.passes == SETTLE_PASSES
    full_d, full_s, _ = engine.optimization_matrices(rows, model_tables=tables)
    w = settled.result.weights
    exact = _problem(full_d, full_s, rows).rbe_dose(w)
    used = seen[-1].rbe_dose(w)
    assert 100 * np.abs(used - exact).max() / 3.0 == pytest.approx(settled.residual_pct,
                                                                   abs=0.01)
