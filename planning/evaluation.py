"""Dose evaluation: cumulative DVHs and the usual plan-quality metrics.

Conventions (ICRU Report 83): D_x is the minimum dose to the hottest x % of the volume (so D98
is a near-minimum, D2 a near-maximum), V_x the fraction of the volume receiving at least x % of
the prescribed dose. Homogeneity index HI = (D2 - D98) / D50 (ICRU 83). Conformity index
CI = V(95 % isodose, whole body) / V(target) (RTOG-style conformity of the 95 % isodose).
All voxels have equal weight (one dose grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.errors import PlanningError

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Dvh:
    """Cumulative dose-volume histogram of one structure.

    Attributes
    ----------
    name : str
        Structure name.
    dose_gy : (N,) float array
        Dose bin edges, increasing from 0.
    volume_fraction : (N,) float array
        Fraction of the structure's volume receiving at least ``dose_gy``, from 1 down.
    volume_cm3 : float
        Volume of the structure on the dose grid.
    """

    name: str
    dose_gy: FloatArray
    volume_fraction: FloatArray
    volume_cm3: float


@dataclass(frozen=True)
class DoseMetrics:
    """Dose statistics of one structure (Gy or Gy(RBE), like the dose given)."""

    d98: float
    d95: float
    d50: float
    d5: float
    d2: float
    mean: float
    max: float
    min: float
    v95: float
    v107: float
    homogeneity_index: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def dose_at_volume(doses: ArrayLike, volume_percent: float) -> float:
    """D_x: the minimum dose received by the hottest ``volume_percent`` % of the voxels."""
    d = np.asarray(doses, dtype=np.float64).ravel()
    if d.size == 0:
        raise PlanningError("a dose statistic of an empty structure was asked for")
    if not 0 <= volume_percent <= 100:
        raise PlanningError(f"volume percentage must lie in [0, 100], got {volume_percent}")
    return float(np.percentile(d, 100.0 - volume_percent))


def dose_metrics(doses: ArrayLike, prescription: float) -> DoseMetrics:
    """Metrics of the voxel doses of one structure, relative to ``prescription`` (same unit)."""
    d = np.asarray(doses, dtype=np.float64).ravel()
    if d.size == 0:
        raise PlanningError("dose metrics of an empty structure were asked for")
    if not prescription > 0:
        raise PlanningError(f"prescription must be > 0, got {prescription}")
    d98, d95, d50, d5, d2 = (dose_at_volume(d, v) for v in (98, 95, 50, 5, 2))
    return DoseMetrics(
        d98=d98, d95=d95, d50=d50, d5=d5, d2=d2,
        mean=float(d.mean()), max=float(d.max()), min=float(d.min()),
        v95=float(np.mean(d >= 0.95 * prescription)),
        v107=float(np.mean(d >= 1.07 * prescription)),
        homogeneity_index=float((d2 - d98) / d50) if d50 > 0 else float("nan"),
    )


def conformity_index(dose: ArrayLike, target_mask: ArrayLike, prescription: float) -> float:
    """Volume inside the 95 % isodose (anywhere) divided by the target volume."""
    d = np.asarray(dose)
    t = np.asarray(target_mask, dtype=bool)
    if t.shape != d.shape or not t.any():
        raise PlanningError("conformity index needs a non-empty target mask on the dose grid")
    return float(np.count_nonzero(d >= 0.95 * prescription) / np.count_nonzero(t))


def cumulative_dvh(name: str, doses: ArrayLike, voxel_volume_mm3: float,
                   max_dose: float | None = None, n_bins: int = 400) -> Dvh:
    """Cumulative DVH of one structure's voxel doses on ``n_bins`` equal dose bins."""
    d = np.asarray(doses, dtype=np.float64).ravel()
    top = float(max_dose if max_dose is not None else (d.max() if d.size else 1.0))
    edges = np.linspace(0.0, max(top, 1e-9) * 1.001, n_bins + 1)
    if d.size == 0:
        return Dvh(name, edges, np.zeros_like(edges), 0.0)
    counts, _ = np.histogram(d, bins=edges)
    above = np.concatenate((np.cumsum(counts[::-1])[::-1], [0])) / d.size
    above[0] = 1.0  # every voxel receives at least 0
    return Dvh(name, edges, above, d.size * voxel_volume_mm3 / 1000.0)
