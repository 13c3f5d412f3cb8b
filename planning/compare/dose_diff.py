"""Dose-difference statistics of two doses on one grid.

The difference is ``evaluated - reference`` (B - A). Statistics are taken over the voxels
where either dose reaches the low-dose threshold (a percentage of the reference maximum, as the
gamma index's), so that the large volume of zero dose does not dilute them; they are given in
Gy and in percent of the reference maximum and, when known, of the prescription.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from planning.errors import InputError

#: Percentiles of the difference reported.
PERCENTILES = (1.0, 5.0, 50.0, 95.0, 99.0)


@dataclass(frozen=True)
class DoseDifferenceStats:
    """Statistics of ``evaluated - reference`` over the compared voxels.

    Attributes
    ----------
    threshold_percent : float
        Voxels where the reference or the evaluated dose reaches this percentage of the
        reference maximum are compared.
    voxels : int
        Number of compared voxels.
    reference_max_gy : float
        Maximum of the reference dose (Gy or Gy(RBE)).
    prescription_gy : float or None
        Prescribed total dose, when known.
    mean_gy, sd_gy : float
        Mean and (population) standard deviation of the difference.
    mean_abs_gy, max_abs_gy : float
        Mean and maximum of the absolute difference.
    max_abs_index : tuple of 3 int
        (z, y, x) grid index of the largest absolute difference.
    percentiles_gy : tuple of (float, float)
        ``(percentile, value)`` of the difference for :data:`PERCENTILES`.
    integral_ratio : float
        Sum of the evaluated over sum of the reference dose in the compared voxels (1 when they
        deliver the same integral dose there).
    """

    threshold_percent: float
    voxels: int
    reference_max_gy: float
    prescription_gy: float | None
    mean_gy: float
    sd_gy: float
    mean_abs_gy: float
    max_abs_gy: float
    max_abs_index: tuple[int, int, int]
    percentiles_gy: tuple[tuple[float, float], ...]
    integral_ratio: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values in Gy, % of the reference maximum and % of the prescription."""
        gy = {"mean": self.mean_gy, "sd": self.sd_gy, "mean_abs": self.mean_abs_gy,
              "max_abs": self.max_abs_gy,
              **{f"p{p:g}": v for p, v in self.percentiles_gy}}
        out: dict[str, Any] = {
            "threshold_percent": self.threshold_percent, "voxels": self.voxels,
            "reference_max_gy": self.reference_max_gy, "prescription_gy": self.prescription_gy,
            "max_abs_index_zyx": list(self.max_abs_index),
            "integral_ratio": self.integral_ratio, "gy": gy,
            "percent_of_reference_max": {k: _percent(v, self.reference_max_gy)
                                         for k, v in gy.items()}}
        out["percent_of_prescription"] = (
            {k: _percent(v, self.prescription_gy) for k, v in gy.items()}
            if self.prescription_gy else None)
        return out


def _percent(value: float, of: float | None) -> float | None:
    return 100.0 * value / of if of and of > 0 and math.isfinite(value) else None


def difference_stats(reference: ArrayLike, evaluated: ArrayLike, *,
                     threshold_percent: float = 10.0,
                     prescription_gy: float | None = None) -> DoseDifferenceStats:
    """Statistics of ``evaluated - reference`` where either dose is above the threshold.

    Parameters
    ----------
    reference, evaluated : (nz, ny, nx) float arrays
        Doses on the same grid (Gy or Gy(RBE)).
    threshold_percent : float
        Low-dose threshold, percent of the reference maximum, in [0, 100).
    prescription_gy : float, optional
        Prescribed total dose, for the percentages of the prescription.

    Raises
    ------
    InputError
        Different shapes, a reference without dose, a bad threshold.
    """
    ref = np.asarray(reference, dtype=np.float64)
    ev = np.asarray(evaluated, dtype=np.float64)
    if ref.shape != ev.shape:
        raise InputError(f"dose difference: shapes {ref.shape} and {ev.shape} differ; resample "
                         "onto a common grid first")
    if not 0 <= threshold_percent < 100:
        raise InputError(f"low-dose threshold must lie in [0, 100) %, got {threshold_percent}")
    top = float(ref.max()) if ref.size else 0.0
    if not top > 0:
        raise InputError("the reference dose is zero everywhere: nothing to compare")
    level = threshold_percent / 100.0 * top
    region = (ref >= level) | (ev >= level)
    diff = (ev - ref)[region]
    adiff = np.abs(ev - ref)
    adiff[~region] = -1.0
    k = int(np.argmax(adiff))
    idx = np.unravel_index(k, ref.shape)
    ref_sum = float(ref[region].sum())
    return DoseDifferenceStats(
        threshold_percent=float(threshold_percent), voxels=int(diff.size),
        reference_max_gy=top, prescription_gy=prescription_gy,
        mean_gy=float(diff.mean()), sd_gy=float(diff.std()),
        mean_abs_gy=float(np.abs(diff).mean()), max_abs_gy=float(adiff.reshape(-1)[k]),
        max_abs_index=(int(idx[0]), int(idx[1]), int(idx[2])),
        percentiles_gy=tuple((p, float(v)) for p, v in
                             zip(PERCENTILES, np.percentile(diff, PERCENTILES), strict=True)),
        integral_ratio=float(ev[region].sum()) / ref_sum if ref_sum > 0 else float("nan"))
