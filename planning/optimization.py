"""Spot-weight optimization on RBE-weighted dose per fraction.

The objective is a weighted sum of dose objectives on structures, each a mean over the
structure's voxels of a squared penalty of the RBE-weighted dose per fraction (prescription and
objective dose levels are given for the whole plan and divided by the number of fractions):

- ``squared_deviation``: (d - p)^2 in every voxel (target);
- ``min_dose``: (p - d)^2 where d < p;  ``max_dose``: (d - p)^2 where d > p;
- ``mean_dose``: (mean(d) - p)^2 when the mean exceeds p;
- ``max_dvh`` (at most ``volume_fraction`` of the volume above p): (d - p)^2 for voxels above p
  but below D(volume_fraction), the dose at that volume (the voxels that must come down);
- ``min_dvh`` (at least ``volume_fraction`` of the volume above p): (p - d)^2 for voxels below
  p but above D(volume_fraction).

The RBE-weighted dose of each voxel is a function of the physical dose D = A w and of the
dose-weighted model sums S_k = B_k w (influence matrices of the same sparsity), so the gradient
is A^T (g dRBE/dD) + sum_k B_k^T (g dRBE/dS_k) with g the objective's derivative in the
RBE-weighted dose: analytic, no finite differences. scipy's L-BFGS-B keeps the weights between 0
and the maximum deliverable weight; a second pass fixes spots below half the minimum deliverable
weight at 0 (they are removed: never exported) and bounds the others below by that weight, so
every delivered spot lies between the machine's minimum and maximum particles per spot, and the
plan is re-optimized with the spots that remain. The optimization is deterministic.

The problem's matrices may live on a GPU (``OptimizationProblem.device == "gpu"``, matrices
from :meth:`planning.engine.PlanningEngine.optimization_matrices` with their transposes): the
products, the RBE model, the objectives and the gradient are then evaluated in CuPy on the
device, and only the spot weights, the gradient and the objective value cross per evaluation.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from kernels import backend
from kernels.sparse_device import JointProducts, joint_products
from planning.errors import PlanningError
from planning.progress import CancelToken, OperationCancelled, ProgressCallback, report
from planning.rbe import RbeModel

_log = logging.getLogger(__name__)
FloatArray = NDArray[np.float64]

ObjectiveKind = Literal["squared_deviation", "min_dose", "max_dose", "mean_dose", "max_dvh",
                        "min_dvh"]
OBJECTIVE_KINDS: tuple[str, ...] = ("squared_deviation", "min_dose", "max_dose", "mean_dose",
                                    "max_dvh", "min_dvh")

#: The kinds whose gradient is zero at every point where the objective is met (one-sided).
ONE_SIDED_KINDS: tuple[str, ...] = ("min_dose", "max_dose", "max_dvh", "min_dvh")


@dataclass(frozen=True)
class Objective:
    """One dose objective on one structure.

    Attributes
    ----------
    structure : str
        ROI name.
    kind : str
        One of :data:`OBJECTIVE_KINDS`.
    dose_gy_rbe : float
        Dose level for the whole plan (all fractions), Gy(RBE) (Gy under the physical model;
        the objective does not know its model, so its messages name no unit).
    weight : float
        Relative importance (> 0).
    volume_fraction : float or None
        For DVH objectives: the volume fraction in (0, 1).
    """

    structure: str
    kind: str
    dose_gy_rbe: float
    weight: float = 1.0
    volume_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVE_KINDS:
            raise PlanningError(f"objective on {self.structure!r}: unknown type {self.kind!r}; "
                                f"choose one of {', '.join(OBJECTIVE_KINDS)}")
        if not (math.isfinite(self.dose_gy_rbe) and self.dose_gy_rbe >= 0):
            raise PlanningError(f"objective on {self.structure!r}: dose must be >= 0 "
                                f"(whole plan, in the plan's dose unit), got {self.dose_gy_rbe}")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise PlanningError(f"objective on {self.structure!r}: weight must be > 0")
        is_dvh = self.kind in ("max_dvh", "min_dvh")
        if is_dvh and not (self.volume_fraction is not None and 0 < self.volume_fraction < 1):
            raise PlanningError(f"objective on {self.structure!r}: {self.kind} needs a "
                                "volume_fraction in (0, 1)")


@dataclass(frozen=True)
class OptimizerSettings:
    """Settings of the spot-weight optimizer.

    Attributes
    ----------
    max_iterations : int
        L-BFGS-B iterations of the main pass (the minimum-weight pass gets a third of them).
    min_spot_weight : float
        Minimum deliverable spot weight per fraction, 10^6 primaries (0.01 = 10^4 ions).
    tolerance : float
        Relative objective change at which L-BFGS-B stops (its ``ftol``).
    max_spot_weight : float or None
        Maximum deliverable spot weight per fraction, 10^6 primaries (100 = 10^8 ions); None:
        no upper bound.
    """

    max_iterations: int = 200
    min_spot_weight: float = 0.01
    tolerance: float = 1e-7
    max_spot_weight: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int) \
                or self.max_iterations < 1:
            raise PlanningError(f"max_iterations must be a whole number >= 1, got "
                                f"{self.max_iterations!r}")
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) \
                or not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise PlanningError(f"tolerance must be a number > 0, got {self.tolerance!r}")
        if not (math.isfinite(self.min_spot_weight) and self.min_spot_weight >= 0):
            raise PlanningError("min_spot_weight must be >= 0")
        if self.max_spot_weight is not None and not (
                math.isfinite(self.max_spot_weight)
                and self.max_spot_weight > self.min_spot_weight):
            raise PlanningError(f"max_spot_weight must be finite and above min_spot_weight "
                                f"({self.min_spot_weight:g}), got {self.max_spot_weight}")


@dataclass(frozen=True)
class RbeGroup:
    """Rows of a problem evaluated with their own RBE model (e.g. a LEM I tissue per structure).

    Attributes
    ----------
    model : RbeModel
    rows : int array
        Positions in the problem's rows.
    sum_indices : tuple of int
        Which of the problem's ``model_sums`` are this model's sums, in its
        ``quantity_names`` order.
    """

    model: RbeModel
    rows: NDArray[np.int64]
    sum_indices: tuple[int, ...]


@dataclass(frozen=True)
class RowCorrection:
    """Per-row offsets added to the matrices' products.

    Attributes
    ----------
    dose : (n_rows,) float array
        Physical dose per fraction, Gy.
    sums : tuple of (n_rows,) float arrays
        Each model sum, in ``model_sums`` order.
    """

    dose: Any
    sums: tuple[Any, ...] = ()

    def check(self, n_rows: int, n_sums: int) -> None:
        if len(self.sums) != n_sums or any(tuple(a.shape) != (n_rows,)
                                           for a in (self.dose, *self.sums)):
            raise PlanningError(f"the dose correction must give the dose and each of the "
                                f"{n_sums} model sums for each of the {n_rows} rows")

    def apply(self, dose: Any, sums: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        return dose + self.dose, tuple(s + o for s, o in zip(sums, self.sums, strict=True))

    def extended(self, n_rows: int, xp: Any) -> RowCorrection:
        """This correction followed by ``n_rows`` rows without one."""
        zeros = xp.zeros(n_rows)
        return RowCorrection(xp.concatenate([self.dose, zeros]),
                             tuple(xp.concatenate([o, zeros]) for o in self.sums))


@dataclass(frozen=True)
class OptimizationProblem:
    """The rows of the influence matrices the objectives need, and the RBE model.

    Attributes
    ----------
    dose : matrix (n_rows, n_spots)
        Physical dose per fraction per weight unit, Gy: anything with ``@`` and ``.T @`` in
        the namespace of ``device`` (a SciPy sparse matrix, a
        :class:`kernels.sparse_device.SpotMatrix`).
    model_sums : tuple of matrices (n_rows, n_spots)
        Dose-weighted model quantities (``model.quantity_names`` order), same rows.
    structure_rows : tuple of (name, int array)
        For each structure, its positions in the rows.
    model : RbeModel
    n_fractions : int
    groups : tuple of RbeGroup
        When given, each group's rows are evaluated with its own model and sums (the groups
        should cover every row; rows in none get 0); ``model`` is then only descriptive.
    device : {"cpu", "gpu"}
        Where the matrices are (and the objective is evaluated).
    correction : RowCorrection or None
        Per-row offsets of the products (what the matrices leave out, for the
        current weights: :mod:`planning.engine.dose_correction`); held constant while the
        optimizer runs. None: the products as they are.
    """

    dose: Any
    model_sums: tuple[Any, ...]
    structure_rows: tuple[tuple[str, NDArray[np.int64]], ...]
    model: RbeModel
    n_fractions: int
    groups: tuple[RbeGroup, ...] = ()
    device: str = "cpu"
    correction: RowCorrection | None = None

    def __post_init__(self) -> None:
        if self.correction is not None:
            self.correction.check(self.dose.shape[0], len(self.model_sums))

    @cached_property
    def xp(self) -> Any:
        """Array namespace of the device."""
        return np if self.device == "cpu" else backend.namespace_for(self.device)

    @cached_property
    def _device_rows(self) -> dict[str, Any]:
        return {name: self.xp.asarray(rows) for name, rows in self.structure_rows}

    @cached_property
    def _device_groups(self) -> tuple[Any, ...]:
        return tuple(self.xp.asarray(g.rows) for g in self.groups)

    def rows_of(self, name: str) -> NDArray[np.int64]:
        """Host row positions of a structure."""
        for n, rows in self.structure_rows:
            if n == name:
                return rows
        known = ", ".join(n for n, _ in self.structure_rows)
        raise PlanningError(f"no structure named {name!r} in the plan (known: {known})")

    def device_rows_of(self, name: str) -> Any:
        """Row positions of a structure in the device's namespace."""
        self.rows_of(name)  # the error for an unknown name
        return self._device_rows[name]

    def to_device(self, weights: FloatArray) -> Any:
        return self.xp.asarray(np.asarray(weights, dtype=np.float64))

    @cached_property
    def joint(self) -> JointProducts:
        """The matrices' products together (one pass over their shared structure where the
        compiled products can, :func:`kernels.sparse_device.joint_products`)."""
        return joint_products(self.dose, self.model_sums)

    def products(self, weights: Any) -> tuple[Any, tuple[Any, ...]]:
        """Physical dose and model sums per fraction in the problem's rows for ``weights``
        (device namespace): the matrices' products plus the offsets."""
        return self.offset(*self.joint.forward(weights))

    def offset(self, dose: Any, sums: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        """``dose`` and ``sums`` (products of the matrices) with the correction added."""
        if self.correction is None:
            return dose, sums
        return self.correction.apply(dose, sums)

    def rbe_dose(self, weights: Any) -> Any:
        """RBE-weighted dose per fraction in the problem's rows (device namespace)."""
        w = self.to_device(weights) if isinstance(weights, np.ndarray) else weights
        return self.rbe_dose_of(*self.products(w))

    def rbe_dose_of(self, d: Any, sums: tuple[Any, ...]) -> Any:
        """RBE-weighted dose per fraction in the problem's rows from the products of the
        matrices with the weights: ``d`` = dose @ w, ``sums`` = each model sum @ w."""
        if not self.groups:
            return self.model.rbe_weighted_dose_from_sums(d, sums)
        out = self.xp.zeros_like(d)
        for g, rows in zip(self.groups, self._device_groups, strict=True):
            out[rows] = g.model.rbe_weighted_dose_from_sums(
                d[rows], tuple(sums[k][rows] for k in g.sum_indices))
        return out


@dataclass(frozen=True)
class OptimizationResult:
    """Optimized weights (10^6 primaries per fraction) and how the optimizer got there."""

    weights: FloatArray
    objective: float
    iterations: int
    seconds: float
    message: str


def objective_value_and_gradient(
    objectives: Sequence[Objective], problem: OptimizationProblem, rbe_dose: Any
) -> tuple[float, Any]:
    """Objective and its derivative with respect to the RBE-weighted dose of each row
    (arrays in the problem's namespace)."""
    xp = problem.xp
    total = 0.0
    grad = xp.zeros_like(rbe_dose)
    for obj in objectives:
        rows = problem.device_rows_of(obj.structure)
        if rows.shape[0] == 0:
            continue
        d = rbe_dose[rows]
        p = obj.dose_gy_rbe / problem.n_fractions
        value, g = _penalty(xp, obj, d, p)
        total += obj.weight * value
        grad[rows] += obj.weight * g  # a structure's rows are distinct
    return total, grad


def objective_terms(objectives: Sequence[Objective], problem: OptimizationProblem,
                    weights: FloatArray) -> list[float]:
    """Each objective's term of the objective at ``weights``: its weight times its penalty
    (mean squared deviation of the RBE-weighted dose per fraction over its rows,
    (Gy(RBE))^2; for a mean-dose objective the squared excess of the mean). The terms add up
    to the objective's value (:func:`objective_value_and_gradient`).

    Parameters
    ----------
    objectives : sequence of Objective
    problem : OptimizationProblem
    weights : (n_spots,) float array
        Spot weights per fraction, 10^6 primaries.
    """
    rbe_dose = problem.rbe_dose(problem.to_device(weights))
    return [objective_value_and_gradient((o,), problem, rbe_dose)[0] for o in objectives]


def objective_and_weight_gradient(
    objectives: Sequence[Objective], problem: OptimizationProblem, weights: Any
) -> tuple[float, Any]:
    """Objective of spot weights and its analytic gradient (chain rule through the model).

    Parameters
    ----------
    objectives : sequence of Objective
    problem : OptimizationProblem
    weights : (n_spots,) float array
        Spot weights per fraction, 10^6 primaries, in the problem's namespace.

    Returns
    -------
    value : float
    gradient : (n_spots,) float array
        ``A^T (g dRBE/dD) + sum_k B_k^T (g dRBE/dS_k)``, in the problem's namespace.
    """
    xp = problem.xp
    d_phys, sums = problem.products(weights)
    if not problem.groups:
        gm = problem.model.rbe_weighted_dose_gradient(d_phys, sums)
        value, g = objective_value_and_gradient(objectives, problem, gm.dose_gy_rbe)
        return value, _weight_gradient(problem, g, gm.d_dose, gm.d_sums)
    # Per group: its rows' RBE-weighted dose and derivatives, scattered into full-length
    # per-row factors of the dose and of each model sum (zero outside the group's rows).
    rbe_dose = xp.zeros_like(d_phys)
    d_dose = xp.zeros_like(d_phys)
    d_sums = [xp.zeros_like(d_phys) for _ in problem.model_sums]
    for grp, rows in zip(problem.groups, problem._device_groups, strict=True):
        gm = grp.model.rbe_weighted_dose_gradient(
            d_phys[rows], tuple(sums[k][rows] for k in grp.sum_indices))
        rbe_dose[rows] = gm.dose_gy_rbe
        d_dose[rows] = gm.d_dose
        for k, d_s in zip(grp.sum_indices, gm.d_sums, strict=True):
            d_sums[k][rows] = d_s
    value, g = objective_value_and_gradient(objectives, problem, rbe_dose)
    return value, _weight_gradient(problem, g, d_dose, tuple(d_sums))


def _weight_gradient(problem: OptimizationProblem, g: Any, d_dose: Any,
                     d_sums: Sequence[Any]) -> Any:
    """``A^T (g dRBE/dD) + sum_k B_k^T (g dRBE/dS_k)`` (the correction, constant, adds
    nothing)."""
    return problem.joint.backward(g * d_dose, [g * d_s for d_s in d_sums])


def _penalty(xp: Any, obj: Objective, d: Any, p: float) -> tuple[float, Any]:
    """Mean squared penalty of one objective and its per-voxel derivative."""
    n = d.shape[0]
    if obj.kind == "squared_deviation":
        diff = d - p
    elif obj.kind == "min_dose":
        diff = xp.minimum(d - p, 0.0)
    elif obj.kind == "max_dose":
        diff = xp.maximum(d - p, 0.0)
    elif obj.kind == "mean_dose":
        excess = max(float(xp.mean(d)) - p, 0.0)
        return excess**2, xp.full(n, 2.0 * excess / n)
    else:
        assert obj.volume_fraction is not None
        d_at_volume = float(xp.percentile(d, 100.0 * (1.0 - obj.volume_fraction)))
        if obj.kind == "max_dvh":
            diff = xp.where((d > p) & (d < d_at_volume), d - p, 0.0)
        else:
            diff = xp.where((d < p) & (d > d_at_volume), d - p, 0.0)
    return float(diff @ diff) / n, 2.0 * diff / n


def optimize_weights(
    problem: OptimizationProblem,
    objectives: Sequence[Objective],
    prescription_per_fraction_gy_rbe: float,
    target: str,
    settings: OptimizerSettings | None = None,
    *,
    start: FloatArray | None = None,
    reference: FloatArray | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> OptimizationResult:
    """Minimise the objectives over non-negative spot weights (see the module docstring).

    The start is ``start`` (the weights of an earlier optimization, per fraction) or a uniform
    weight scaled so that the mean RBE-weighted dose of ``target`` equals the prescription per
    fraction; either clipped to ``settings.max_spot_weight``. The objective is divided by its
    value at ``reference`` (the start by default), so ``settings.tolerance``, L-BFGS-B's
    change of the objective per iteration relative to max(1, its value), is relative to that:
    a start near the optimum with the default reference would stop the optimizer only at a
    far smaller change than a uniform start does.
    """
    settings = settings or OptimizerSettings()
    if not objectives:
        raise PlanningError("no objectives to optimize")
    n_spots = problem.dose.shape[1]
    if n_spots == 0:
        raise PlanningError("the plan has no spots to optimize")
    t0 = time.perf_counter()
    top = settings.max_spot_weight
    if start is None:
        start = initial_weights(problem, target, prescription_per_fraction_gy_rbe)
    elif np.shape(start) != (n_spots,) or not np.all(np.isfinite(start)) or np.any(start < 0):
        raise PlanningError(f"start weights must be {n_spots} finite numbers >= 0")
    if top is not None:
        start = np.minimum(start, top)
    if reference is not None and np.shape(reference) != (n_spots,):
        raise PlanningError(f"reference weights must be {n_spots} numbers")
    scale = 1.0 / max(objective_value_and_gradient(
        objectives, problem, problem.rbe_dose(start if reference is None else reference))[0],
        1e-12)
    state = {"iterations": 0}
    budget = settings.max_iterations + max(settings.max_iterations // 3, 1)

    def fun(w: FloatArray) -> tuple[float, FloatArray]:
        # Checked per evaluation too: an iteration may take several (line search).
        if cancel is not None and cancel.cancelled:
            raise OperationCancelled("spot-weight optimization was cancelled")
        value, grad = objective_and_weight_gradient(objectives, problem, problem.to_device(w))
        return value * scale, backend.to_numpy(grad).astype(np.float64) * scale

    def callback(w: FloatArray) -> None:
        state["iterations"] += 1
        if cancel is not None and cancel.cancelled:
            raise OperationCancelled("spot-weight optimization was cancelled")
        report(progress, state["iterations"] / budget,
               f"optimizing, iteration {state['iterations']}")

    options = {"maxiter": settings.max_iterations, "ftol": settings.tolerance, "maxcor": 20}
    result = minimize(fun, start, jac=True, method="L-BFGS-B", callback=callback,
                      bounds=[(0.0, top)] * n_spots, options=options)
    weights = np.asarray(result.x)
    if settings.min_spot_weight > 0:
        low = weights < 0.5 * settings.min_spot_weight
        bounds = [(0.0, 0.0) if z else (settings.min_spot_weight, top) for z in low]
        start2 = np.where(low, 0.0, np.clip(weights, settings.min_spot_weight, top))
        options["maxiter"] = max(settings.max_iterations // 3, 1)
        result = minimize(fun, start2, jac=True, method="L-BFGS-B", callback=callback,
                          bounds=bounds, options=options)
        weights = np.asarray(result.x).copy()
        weights[low] = 0.0
        # L-BFGS-B projects onto its bounds; keep them exact against any rounding
        weights[~low] = np.clip(weights[~low], settings.min_spot_weight, top)
    elif top is not None:
        weights = np.minimum(weights, top)
    report(progress, 1.0, "optimization done")
    _log.info("optimization: %d iterations, objective %.4g, %s", state["iterations"],
              result.fun / scale, result.message)
    return OptimizationResult(weights=weights, objective=float(result.fun / scale),
                              iterations=state["iterations"],
                              seconds=time.perf_counter() - t0, message=str(result.message))


def initial_weights(problem: OptimizationProblem, target: str, dose_per_fraction: float,
                    shape: FloatArray | None = None) -> FloatArray:
    """``shape`` (uniform weights by default; e.g. an earlier plan's weights) scaled, by
    bisection (the RBE-weighted dose being monotonic in a common scale factor), so that the
    target's mean RBE-weighted dose equals the prescription per fraction."""
    if problem.rows_of(target).size == 0:
        raise PlanningError(f"target {target!r} has no voxels on the dose grid")
    rows = problem.device_rows_of(target)
    xp = problem.xp
    n_spots = problem.dose.shape[1]
    ones = np.ones(n_spots) if shape is None else np.asarray(shape, dtype=np.float64)
    if ones.shape != (n_spots,) or not np.all(np.isfinite(ones)) or np.any(ones < 0):
        raise PlanningError(f"starting weights must be {n_spots} finite numbers >= 0")
    # The products are linear in the weights: made once for the shape, then scaled (the
    # offsets, held constant, are added to the scaled products).
    ones_device = problem.to_device(ones)
    d_ones = problem.dose @ ones_device
    sums_ones = tuple(b @ ones_device for b in problem.model_sums)
    if float(xp.mean(d_ones[rows])) <= 0:
        raise PlanningError(f"the spots deliver no dose to the target {target!r}")

    def mean_target(scale: float) -> float:
        rbe = problem.rbe_dose_of(*problem.offset(scale * d_ones,
                                                  tuple(scale * s for s in sums_ones)))
        return float(xp.mean(rbe[rows]))

    lo, hi = 0.0, 1.0
    while mean_target(hi) < dose_per_fraction:
        hi *= 4.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if mean_target(mid) < dose_per_fraction:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi) * ones
