"""Spot-weight optimizer: analytic gradients, minimum spot weight, cancellation, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from planning.optimization import (
    OBJECTIVE_KINDS,
    Objective,
    OptimizationProblem,
    OptimizerSettings,
    objective_and_weight_gradient,
    objective_terms,
    optimize_weights,
)
from planning.progress import CancelToken, OperationCancelled
from planning.rbe import LemModel, MkmModel, PhysicalDose, RbeModel

N_ROWS, N_SPOTS, N_FX = 60, 25, 10


def _problem(model: RbeModel, seed: int = 0) -> OptimizationProblem:
    """Random sparse dose matrix; model sums = dose x per-entry quantities of carbon ions."""
    rng = np.random.default_rng(seed)
    a = sp.random(N_ROWS, N_SPOTS, density=0.4, random_state=rng, format="csr") * 0.1
    a.data += 0.01
    sums = []
    if model.quantity_names:
        table = model.particle_tables([6], rng.uniform(5.0, 300.0, a.nnz))
        for q in table.quantities:
            sums.append(sp.csr_array((a.data * q[0], a.indices, a.indptr), shape=a.shape))
    rows = np.arange(N_ROWS)
    return OptimizationProblem(
        dose=sp.csr_array(a), model_sums=tuple(sums),
        structure_rows=(("T", rows[:30]), ("OAR", rows[30:])), model=model, n_fractions=N_FX)


def _objective(kind: str) -> Objective:
    vf = 0.5 if kind.endswith("dvh") else None
    structure = "T" if kind in ("squared_deviation", "min_dose", "min_dvh") else "OAR"
    # Levels that make each penalty active: mean and DVH-max below, DVH-min above the median.
    level = {"mean_dose": 10.0, "max_dvh": 15.0, "min_dvh": 25.0}.get(kind, 20.0)
    return Objective(structure, kind, level, 3.0, vf)


MODELS = {"physical": PhysicalDose(), "mkm": MkmModel(), "lem1": LemModel()}


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("kind", OBJECTIVE_KINDS)
def test_gradient_matches_finite_differences(kind: str, model_name: str) -> None:
    problem = _problem(MODELS[model_name])
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 1.5, N_SPOTS)
    # Scale so that doses straddle the objective level of 20 Gy(RBE) / 10 fractions.
    d = problem.rbe_dose(w)
    w *= 2.0 / float(np.median(d))
    objectives = [_objective(kind)]
    value, grad = objective_and_weight_gradient(objectives, problem, w)
    assert value > 0
    direction = rng.normal(size=N_SPOTS)
    eps = 1e-6
    plus, _ = objective_and_weight_gradient(objectives, problem, w + eps * direction)
    minus, _ = objective_and_weight_gradient(objectives, problem, w - eps * direction)
    numeric = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(grad @ direction, numeric, rtol=2e-4, atol=1e-10 * abs(value))


def _run(problem, settings=None, cancel=None):
    objectives = [Objective("T", "squared_deviation", 20.0, 10.0),
                  Objective("OAR", "max_dose", 10.0, 1.0)]
    return optimize_weights(problem, objectives, 2.0, "T",
                            settings or OptimizerSettings(max_iterations=40), cancel=cancel)


def test_min_spot_weight_respected_and_deterministic() -> None:
    problem = _problem(MkmModel())
    settings = OptimizerSettings(max_iterations=40, min_spot_weight=0.5)
    a = _run(problem, settings)
    b = _run(problem, settings)
    np.testing.assert_array_equal(a.weights, b.weights)
    w = a.weights
    assert np.all((w == 0) | (w >= 0.5 - 1e-12))
    assert np.count_nonzero(w) > 0
    target = problem.rbe_dose(w)[problem.rows_of("T")]
    assert abs(float(np.mean(target)) - 2.0) < 0.3


def test_cancellation_raises() -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(OperationCancelled):
        _run(_problem(LemModel()), cancel=token)


def test_max_spot_weight_bounds_every_spot_and_binds() -> None:
    problem = _problem(PhysicalDose())
    free = _run(problem, OptimizerSettings(max_iterations=40, min_spot_weight=0.0))
    top = 0.5 * float(free.weights.max())  # below what the unbounded optimum wants
    bounded = _run(problem, OptimizerSettings(max_iterations=40, min_spot_weight=0.0,
                                              max_spot_weight=top))
    assert float(bounded.weights.max()) <= top
    assert np.any(bounded.weights >= top * (1 - 1e-9))  # the bound is active, not vacuous
    assert float(free.weights.max()) > top


def test_min_and_max_spot_weight_together() -> None:
    problem = _problem(MkmModel())
    low, top = 0.3, 3.0  # the free optimum has spots near 0, in (0.15, 0.3) and above 3
    result = _run(problem, OptimizerSettings(max_iterations=40, min_spot_weight=low,
                                             max_spot_weight=top))
    w = result.weights
    delivered = w[w > 0]
    assert delivered.size > 0
    assert float(delivered.min()) >= low and float(delivered.max()) <= top
    # the minimum removes spots (re-optimized without them), it does not round them up only
    assert np.count_nonzero(w == 0) > 0


@pytest.mark.parametrize(("low", "top"), [(0.5, 0.5), (0.5, 0.1), (0.0, float("inf"))])
def test_bad_spot_weight_limits_refused(low: float, top: float) -> None:
    from planning.errors import PlanningError

    with pytest.raises(PlanningError, match="max_spot_weight"):
        OptimizerSettings(min_spot_weight=low, max_spot_weight=top)


def test_objective_terms_are_each_objectives_weighted_penalty_and_add_up_to_the_value():
    """The report's per-objective terms: weight x mean squared (one-sided) deviation of the
    dose per fraction over the structure's rows, worked out here from the matrix product."""
    problem = _problem(PhysicalDose())
    w = np.random.default_rng(3).uniform(0.5, 1.5, N_SPOTS)
    d = problem.dose @ w  # physical model: the RBE-weighted dose is the dose
    w *= 2.0 / float(np.median(d))
    d = problem.dose @ w
    target, oar = d[:30], d[30:]
    objectives = [Objective("T", "min_dose", 20.0, 3.0), Objective("OAR", "max_dose", 20.0, 2.0),
                  Objective("T", "squared_deviation", 20.0, 1.0)]
    terms = objective_terms(objectives, problem, w)
    p = 20.0 / N_FX
    expected = [3.0 * np.mean(np.minimum(target - p, 0) ** 2),
                2.0 * np.mean(np.maximum(oar - p, 0) ** 2),
                1.0 * np.mean((target - p) ** 2)]
    np.testing.assert_allclose(terms, expected, rtol=1e-9)
    assert all(t > 0 for t in terms)  # the doses straddle the level: every penalty is active
    value, _ = objective_and_weight_gradient(objectives, problem, w)
    assert sum(terms) == pytest.approx(value, rel=1e-12)
