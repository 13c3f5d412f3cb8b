"""The optimizer's dose correction: the part of each pencil beam its matrices leave out.

A carbon pencil beam's dose has a narrow core and a wide, faint fragment halo. The plan's
dose keeps each spot's dose out to the radius holding ``lateral_cutoff_fraction`` (0.99) of
its integral (:class:`planning.engine.dose_engine.DoseEngineSettings`); the halo between the
radius of ``matrix_cutoff_fraction`` (0.8) and that one is most of the entries of the
optimizer's matrices (88 % of the 77 M entries of the TG-119 benchmark plan) but a small,
smooth part of each point's dose (12 % of the target's). The optimizer's products read every
entry per evaluation and are bound by memory bandwidth, so its matrices keep the dose out to
the smaller radius only, and the rest enters as a per-point constant (:attr:`planning.optimization.
OptimizationProblem.correction`): a forward pass of the weights over the optimizer's points at
the plan's cut-off, less the matrices' products. It is made from the
starting weights for the first pass and from that pass's result for the refinement's pass
(:mod:`planning.engine.refinement`), and then again from each result
(:func:`settle_correction`): while the new correction moves the optimizer's RBE-weighted dose
at any of its points by more than :data:`SETTLE_TOLERANCE_PCT` of the prescription, a short
pass continues with it. So the optimizer's dose differs from the plan's at its points by at
most that much at the final weights (correction-based optimization, as Siebers et al., Med
Phys 2002, did with Monte Carlo dose).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.engine.engine import PlanningEngine
from planning.optimization import (
    Objective,
    OptimizationProblem,
    OptimizationResult,
    OptimizerSettings,
    RowCorrection,
    optimize_weights,
)
from planning.progress import CancelToken, ProgressCallback, stage_progress
from planning.rbe import DepthTables

#: The optimizer's dose may differ from the plan's at any of its points by at most this, % of
#: the prescription, at the final weights (:func:`settle_correction`): a tenth of the 2 % to
#: which a dose calculation is commonly asked to agree. It bounds how far from the plan's dose
#: the optimizer judged its result; the plan's dose itself is always the forward dose.
SETTLE_TOLERANCE_PCT = 0.2
#: At most this many passes continue with a new correction.
SETTLE_PASSES = 3
#: Each of them gets this share of the plan's iterations.
SETTLE_ITERATION_SHARE = 1 / 6


@dataclass(frozen=True)
class CorrectionChange:
    """How much a new correction moved the optimizer's RBE-weighted dose, for the report.

    Attributes
    ----------
    largest_pct : float
        Largest change at any of the problem's points for the same weights, % of the
        prescription.
    target_share : float
        Mean share of the target's physical dose that the new correction carries.
    """

    largest_pct: float
    target_share: float


@dataclass(frozen=True)
class RowForward:
    """The engine's forward pass over the optimizer's rows for one set of weights: the part
    of a correction that costs a dose calculation (0.4 s of the TG-119 benchmark plan's
    re-optimization on 2 cores).

    Its dose and model sums are sums over the spots of weight x per-spot value, linear in the
    weights, so the pass for the same weights times a factor (a re-optimization starts from
    the last plan's weights scaled to the new prescription) is this one times that factor
    (:meth:`scaled_to`).

    Attributes
    ----------
    weights : (n_spots,) float array
        Spot weights per fraction, 10^6 primaries.
    rows : (n_rows,) int array
        Flat indices on the engine's grid, in the problem's row order.
    dose_gy : (n_rows,) float array
        Physical dose per fraction, Gy, in the order of ``rows``.
    model_sums : tuple of (n_rows,) float arrays
        Each model sum, likewise.
    """

    weights: NDArray[np.float64]
    rows: NDArray[np.int64]
    dose_gy: NDArray[np.float64]
    model_sums: tuple[NDArray[np.float64], ...]

    def scaled_to(self, weights: NDArray[np.float64], rows: NDArray[np.int64]
                  ) -> RowForward | None:
        """This pass for ``weights`` over ``rows``, or None unless ``rows`` are this pass's
        and ``weights`` are its weights times one factor >= 0 (to 1e-12 of the largest)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != self.weights.shape or not np.array_equal(rows, self.rows):
            return None
        norm = float(self.weights @ self.weights)
        if norm <= 0.0:
            return None
        factor = float(w @ self.weights) / norm
        largest = float(np.max(np.abs(w))) if w.size else 0.0
        if factor < 0.0 or float(np.max(np.abs(w - factor * self.weights))) > 1e-12 * largest:
            return None
        return RowForward(w.copy(), self.rows, factor * self.dose_gy,
                          tuple(factor * s for s in self.model_sums))


def row_forward(engine: PlanningEngine, weights: NDArray[np.float64],
                tables: DepthTables | None, rows: NDArray[np.int64], *,
                kept: RowForward | None = None, cancel: CancelToken | None = None
                ) -> RowForward:
    """The forward pass of ``weights`` over ``rows`` at ``engine``'s cut-off: ``kept``
    scaled where it serves (:meth:`RowForward.scaled_to`), else the engine's.

    ``rows`` as for :func:`with_dose_correction`; ``tables`` the model's depth tables."""
    w = np.asarray(weights, dtype=np.float64)
    if kept is not None and (scaled := kept.scaled_to(w, rows)) is not None:
        return scaled
    order = np.argsort(rows, kind="stable")
    sums = engine.forward(w, model_tables=tables, with_let=False, rows=rows[order],
                          cancel=cancel)

    def in_row_order(values: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.empty(rows.size, dtype=np.float64)
        out[order] = values
        return out

    return RowForward(w.copy(), np.array(rows, dtype=np.int64), in_row_order(sums.dose_gy),
                      tuple(in_row_order(s) for s in sums.model_sums))


def with_dose_correction(problem: OptimizationProblem, engine: PlanningEngine,
                         weights: NDArray[np.float64], tables: DepthTables | None,
                         rows: NDArray[np.int64], *, forward: RowForward | None = None,
                         cancel: CancelToken | None = None) -> OptimizationProblem:
    """``problem`` with the offsets that make its dose that of ``engine`` for ``weights``.

    Parameters
    ----------
    problem : OptimizationProblem
        Its matrices from ``engine`` at a smaller cut-off fraction
        (:meth:`PlanningEngine.optimization_matrices`); its correction is replaced.
    engine : PlanningEngine
        The engine of the matrices; its forward pass (at its settings' cut-off) is the dose
        the offsets complete the products to.
    weights : (n_spots,) float array
        Spot weights per fraction, 10^6 primaries.
    tables : DepthTables or None
        The model's depth tables (those of the matrices' model sums).
    rows : (n_rows,) int array
        Flat indices on ``engine``'s grid of the problem's first ``n_rows`` rows, in its row
        order (unique, not necessarily sorted). Rows after them (points a refinement added,
        whose matrices hold all of their dose) get no correction.
    forward : RowForward, optional
        The forward pass of ``weights`` over ``rows`` (:func:`row_forward`), where it was
        made already.
    """
    n_rows, n_all = rows.size, problem.dose.shape[0]
    if n_rows > n_all:
        raise ValueError(f"{n_rows} rows for a problem of {n_all}")
    if forward is None:
        forward = row_forward(engine, weights, tables, rows, cancel=cancel)
    elif not (np.array_equal(forward.rows, rows) and np.array_equal(forward.weights, weights)):
        raise ValueError("the forward pass was made over other rows or for other weights")
    xp = problem.xp

    def padded(values: NDArray[np.float64]) -> Any:
        out = np.zeros(n_all, dtype=np.float64)
        out[:n_rows] = values
        return xp.asarray(out)

    w = problem.to_device(weights)
    with_rows = np.zeros(n_all, dtype=bool)
    with_rows[:n_rows] = True
    kept = xp.asarray(with_rows)

    def offset(forward_values: NDArray[np.float64], product: Any) -> Any:
        return xp.where(kept, padded(forward_values) - product, 0.0)

    return dataclasses.replace(problem, correction=RowCorrection(
        offset(forward.dose_gy, problem.dose @ w),
        tuple(offset(s, b @ w)
              for s, b in zip(forward.model_sums, problem.model_sums, strict=True))))


def correction_change(before: OptimizationProblem, after: OptimizationProblem,
                      weights: NDArray[np.float64], target: str,
                      prescription_per_fraction: float) -> CorrectionChange:
    """The change from ``before``'s correction to ``after``'s (same matrices) at
    ``weights``."""
    xp = after.xp
    w = after.to_device(weights)
    d_core = after.dose @ w
    sums_core = tuple(b @ w for b in after.model_sums)
    d_new, sums_new = after.offset(d_core, sums_core)
    new = after.rbe_dose_of(d_new, sums_new)
    old = before.rbe_dose_of(*before.offset(d_core, sums_core))
    rows = after.device_rows_of(target)
    share = (float(xp.sum(d_new[rows] - d_core[rows])) / max(float(xp.sum(d_new[rows])), 1e-30)
             if rows.shape[0] else 0.0)
    return CorrectionChange(
        largest_pct=100.0 * float(xp.max(xp.abs(new - old))) / prescription_per_fraction,
        target_share=share)


@dataclass(frozen=True)
class Settled:
    """What :func:`settle_correction` did.

    Attributes
    ----------
    result : OptimizationResult
        The last pass's result (the given one where no pass ran).
    passes : int
        Passes run with a new correction.
    iterations : int
        Their iterations together.
    residual_pct : float
        Largest difference between the optimizer's RBE-weighted dose at its points and the
        plan's at ``result.weights`` (the change a new correction would make there), % of
        the prescription.
    forward : RowForward
        The forward pass of ``result.weights`` over the rows, which measured it.
    problem : OptimizationProblem
        The problem the last pass optimized (the given one where no pass ran): its
        objective at ``result.weights`` is ``result.objective``.
    pass_results : tuple of OptimizationResult
        Each pass's result in order (``passes`` of them; the last is ``result``): how each
        one's optimizer ended (``message``, ``iterations``).
    """

    result: OptimizationResult
    passes: int
    iterations: int
    residual_pct: float
    forward: RowForward
    problem: OptimizationProblem
    pass_results: tuple[OptimizationResult, ...]


def settle_correction(problem: OptimizationProblem, result: OptimizationResult, *,
                      engine: PlanningEngine, tables: DepthTables | None,
                      rows: NDArray[np.int64], objectives: Sequence[Objective],
                      settings: OptimizerSettings, target: str,
                      prescription_per_fraction: float,
                      progress: ProgressCallback | None = None,
                      cancel: CancelToken | None = None) -> Settled:
    """The correction made again from ``result`` (the last pass over ``problem``) and the
    optimization continued with it, while it moves the dose by more than
    :data:`SETTLE_TOLERANCE_PCT` of the prescription and at most :data:`SETTLE_PASSES` times.

    With the matrices at 0.8 of each spot's dose the correction of the first pass's result
    moves the dose by ~5 % of the prescription and the one after the refinement's pass by
    ~0.4 % (TG-119 benchmark plan); one further pass leaves 0.09 %. On the demo plan of
    tests/test_reoptimize.py (one field, 6 mm spots) the passes leave 0.38, 0.53 and 0.18 %:
    they need not fall monotonically. At 0.7 the TG-119 plan does not settle (0.2-0.4 % after
    three passes): the correction, held constant, then carries too much of the dose for the
    optimizer's gradient to see.

    ``rows`` and ``engine`` as for :func:`with_dose_correction`; ``settings`` are the plan's
    (each pass gets :data:`SETTLE_ITERATION_SHARE` of its iterations).
    """
    shorter = dataclasses.replace(settings, max_iterations=max(
        round(SETTLE_ITERATION_SHARE * settings.max_iterations), 1))
    passes = iterations = 0
    ran: list[OptimizationResult] = []
    while True:
        forward = row_forward(engine, result.weights, tables, rows, cancel=cancel)
        corrected = with_dose_correction(problem, engine, result.weights, tables, rows,
                                         forward=forward)
        change = correction_change(problem, corrected, result.weights, target,
                                   prescription_per_fraction)
        if change.largest_pct <= SETTLE_TOLERANCE_PCT or passes == SETTLE_PASSES:
            return Settled(result, passes, iterations, change.largest_pct, forward, problem,
                           tuple(ran))
        problem = corrected
        result = optimize_weights(problem, objectives, prescription_per_fraction, target,
                                  shorter, start=result.weights,
                                  progress=stage_progress(progress, passes / SETTLE_PASSES,
                                                          (passes + 1) / SETTLE_PASSES),
                                  cancel=cancel)
        ran.append(result)
        passes += 1
        iterations += result.iterations
