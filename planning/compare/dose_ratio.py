"""The voxel ratio of an RBE-weighted to a physical dose on one grid: an effective RBE.

A physical dose (Gy) and an RBE-weighted dose (Gy(RBE)) are two quantities: their difference
is no dose difference and a gamma index between them has no meaning. Their ratio is the
effective RBE of each voxel (RBE-weighted over physical dose), when both are doses of one plan
(the same particle fluence); of two plans, it mixes the RBE with the plans' differences.

The ratio is taken where the physical dose reaches the low-dose threshold (a percentage of its
own maximum, the comparison's threshold): where there is hardly any dose the ratio is a ratio
of small numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.compare.dose_diff import PERCENTILES
from planning.errors import InputError


@dataclass(frozen=True)
class EffectiveRbeStats:
    """Statistics of RBE-weighted over physical dose where the physical dose is shown.

    Attributes
    ----------
    threshold_percent : float
        The ratio is taken where the physical dose reaches this percentage of its maximum.
    voxels : int
        Number of voxels with a ratio.
    physical_max_gy : float
        Maximum of the physical dose, Gy.
    mean, sd, minimum, maximum : float
        Of the ratio over those voxels (unweighted; SD the population's).
    percentiles : tuple of (float, float)
        ``(percentile, value)`` of the ratio for :data:`planning.compare.dose_diff.PERCENTILES`
        (the difference's).
    dose_weighted_mean : float
        Sum of the RBE-weighted over sum of the physical dose in those voxels: the mean
        RBE weighted by physical dose.
    """

    threshold_percent: float
    voxels: int
    physical_max_gy: float
    mean: float
    sd: float
    minimum: float
    maximum: float
    percentiles: tuple[tuple[float, float], ...]
    dose_weighted_mean: float

    def percentile(self, p: float) -> float:
        """The ``p`` percentile (one of :data:`planning.compare.dose_diff.PERCENTILES`)."""
        return dict(self.percentiles)[p]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (dimensionless)."""
        return {"threshold_percent": self.threshold_percent, "voxels": self.voxels,
                "physical_max_gy": self.physical_max_gy, "mean": self.mean, "sd": self.sd,
                "min": self.minimum, "max": self.maximum,
                **{f"p{p:g}": v for p, v in self.percentiles},
                "dose_weighted_mean": self.dose_weighted_mean}


def effective_rbe(physical_gy: ArrayLike, rbe_weighted_gy: ArrayLike, *,
                  threshold_percent: float = 10.0
                  ) -> tuple[NDArray[np.float32], EffectiveRbeStats]:
    """Voxel ratio ``rbe_weighted_gy / physical_gy`` and its statistics.

    Parameters
    ----------
    physical_gy, rbe_weighted_gy : (nz, ny, nx) float arrays
        The physical dose (Gy) and the RBE-weighted dose (Gy(RBE)) on one grid.
    threshold_percent : float
        The ratio is taken where the physical dose reaches this percentage of its maximum,
        in [0, 100) (and is above zero).

    Returns
    -------
    ratio : (nz, ny, nx) float32 array
        The ratio there, NaN elsewhere.
    stats : EffectiveRbeStats

    Raises
    ------
    InputError
        Different shapes, a physical dose without dose, a bad threshold.
    """
    phys = np.asarray(physical_gy, dtype=np.float64)
    rbe = np.asarray(rbe_weighted_gy, dtype=np.float64)
    if phys.shape != rbe.shape:
        raise InputError(f"dose ratio: shapes {phys.shape} and {rbe.shape} differ; resample "
                         "onto a common grid first")
    if not 0 <= threshold_percent < 100:
        raise InputError(f"low-dose threshold must lie in [0, 100) %, got {threshold_percent}")
    top = float(phys.max()) if phys.size else 0.0
    if not top > 0:
        raise InputError("the physical dose is zero everywhere: no ratio to take")
    region = (phys >= threshold_percent / 100.0 * top) & (phys > 0)
    values = rbe[region] / phys[region]
    ratio = np.full(phys.shape, np.nan, dtype=np.float32)
    ratio[region] = values
    stats = EffectiveRbeStats(
        threshold_percent=float(threshold_percent), voxels=int(values.size),
        physical_max_gy=top, mean=float(values.mean()), sd=float(values.std()),
        minimum=float(values.min()), maximum=float(values.max()),
        percentiles=tuple((p, float(v)) for p, v in
                          zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True)),
        dose_weighted_mean=float(rbe[region].sum() / phys[region].sum()))
    return ratio, stats
