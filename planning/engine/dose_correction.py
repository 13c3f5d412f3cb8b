"""The optimizer's dose correction: the part of each pencil beam its matrices leave out.

A carbon pencil beam's dose has a narrow core and a wide, faint fragment halo. The plan's
dose keeps each spot's dose out to the radius holding ``lateral_cutoff_fraction`` (0.99) of
its integral (:class:`planning.engine.dose_engine.DoseEngineSettings`); the halo between the
radius of ``matrix_cutoff_fraction`` (0.9) and that one is most of the entries of the
optimizer's matrices (57 % of the 77 M entries of the TG-119 benchmark plan) but a small,
smooth part of each point's dose. The optimizer's products read every entry per evaluation
and are bound by memory bandwidth, so its matrices keep the dose out to the smaller radius
only, and the rest enters as a per-point constant (:attr:`planning.optimization.
OptimizationProblem.correction`): a forward pass of the weights over the optimizer's points at
the plan's cut-off, less the matrices' products. It is made from the
starting weights for the first pass and from that pass's result for the last (the refinement,
:mod:`planning.engine.refinement`), so the optimizer's dose differs from the plan's only by the
change of the halo over the last pass (correction-based optimization, as Siebers et al., Med
Phys 2002, did with Monte Carlo dose).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.engine.engine import PlanningEngine
from planning.optimization import OptimizationProblem, RowCorrection
from planning.progress import CancelToken
from planning.rbe import DepthTables


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


def with_dose_correction(problem: OptimizationProblem, engine: PlanningEngine,
                         weights: NDArray[np.float64], tables: DepthTables | None,
                         rows: NDArray[np.int64], *, cancel: CancelToken | None = None
                         ) -> OptimizationProblem:
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
        Flat indices on ``engine``'s grid of the problem's rows, in its row order (unique,
        not necessarily sorted).
    """
    order = np.argsort(rows, kind="stable")
    sums = engine.forward(weights, model_tables=tables, with_let=False, rows=rows[order],
                          cancel=cancel)
    xp = problem.xp

    def in_row_order(values: NDArray[np.float64]) -> Any:
        out = np.empty(rows.size, dtype=np.float64)
        out[order] = values
        return xp.asarray(out)

    w = problem.to_device(weights)
    return dataclasses.replace(problem, correction=RowCorrection(
        in_row_order(sums.dose_gy) - problem.dose @ w,
        tuple(in_row_order(s) - b @ w
              for s, b in zip(sums.model_sums, problem.model_sums, strict=True))))


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
