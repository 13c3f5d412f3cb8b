"""Dose evaluation: cumulative DVHs and the usual plan-quality metrics.

Conventions (ICRU Report 83): D_x is the minimum dose to the hottest x % of the volume (so D98
is a near-minimum, D2 a near-maximum), V_x the fraction of the volume receiving at least x % of
the prescribed dose. Homogeneity index HI = (D2 - D98) / D50 (ICRU 83). Conformity index
CI = V(95 % isodose, whole body) / V(target) (RTOG-style conformity of the 95 % isodose).

Doses come as samples of a structure, each with its volume: the clinical DVH's weighted sample
points (:mod:`planning.structure_sampling`), or dose-grid voxels of equal volume (no volumes
given). D_x interpolates between samples: sorted from the hottest down, each dose level (the
samples of one dose together, to float32 precision) stands at the middle of its volume on the
cumulative volume axis, and D_x is the dose interpolated linearly at x % of the structure's
volume (the hottest dose below the first middle, the coldest above the last). With n distinct
doses of equal volume, the k-th hottest (k = 0, 1, ...) stands at (k + 1/2) / n.
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
        Volume of the structure (the sum of its sample volumes).
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


def _samples(doses: ArrayLike, volumes_mm3: ArrayLike | None, what: str
             ) -> tuple[FloatArray, FloatArray]:
    """Doses and volumes as (n,) float64 arrays (equal volumes of 1 when none are given)."""
    d = np.asarray(doses, dtype=np.float64).ravel()
    if d.size == 0:
        raise PlanningError(f"{what} of an empty structure was asked for")
    bad = int(np.count_nonzero(~np.isfinite(d)))
    if bad:  # one NaN would sort above every dose and make each D_x the maximum
        raise PlanningError(f"{what}: {bad} of {d.size} doses are not finite numbers")
    if volumes_mm3 is None:
        return d, np.ones_like(d)
    w = np.asarray(volumes_mm3, dtype=np.float64).ravel()
    if w.shape != d.shape or not np.all(w >= 0) or not w.sum() > 0:
        raise PlanningError(f"{what}: sample volumes must be {d.size} non-negative values "
                            "with a positive sum")
    return d, w


def doses_at_volumes(doses: ArrayLike, volume_percents: ArrayLike,
                     volumes_mm3: ArrayLike | None = None) -> FloatArray:
    """D_x for each x of ``volume_percents``: the minimum dose of the hottest x % of the volume.

    Parameters
    ----------
    doses : (n,) array_like
        Dose of each sample (any unit).
    volume_percents : (m,) array_like
        Percentages x in [0, 100]; D_0 is the maximum, D_100 the minimum.
    volumes_mm3 : (n,) array_like, optional
        Volume of each sample; equal volumes when omitted.

    Returns
    -------
    (m,) float64 array, in the unit of ``doses``.
    """
    d, w = _samples(doses, volumes_mm3, "a dose statistic")
    x = np.asarray(volume_percents, dtype=np.float64).ravel()
    if not np.all((x >= 0) & (x <= 100)):
        raise PlanningError(f"volume percentages must lie in [0, 100], got {x.tolist()}")
    order = np.argsort(-d, kind="stable")
    d_sorted = d[order]
    # Samples of one dose to float32 precision (the cubes' precision; interpolation weights
    # leave ties a few float64 ulps apart) are one level, at the middle of their volume. Equal
    # keys, not neighbours closer than a tolerance: that would chain a densely sampled spread
    # of doses into one level.
    key = d_sorted.astype(np.float32)
    first = np.flatnonzero(np.concatenate(([True], key[:-1] != key[1:])))
    level_mm3 = np.add.reduceat(w[order], first)
    middle = (np.cumsum(level_mm3) - 0.5 * level_mm3) / level_mm3.sum()
    return np.interp(x / 100.0, middle, d_sorted[first])


def dose_at_volume(doses: ArrayLike, volume_percent: float,
                   volumes_mm3: ArrayLike | None = None) -> float:
    """D_x: the minimum dose of the hottest ``volume_percent`` % (see :func:`doses_at_volumes`)."""
    return float(doses_at_volumes(doses, [volume_percent], volumes_mm3)[0])


def dose_metrics(doses: ArrayLike, prescription: float,
                 volumes_mm3: ArrayLike | None = None, *,
                 maximum: float | None = None) -> DoseMetrics:
    """Metrics of the dose samples of one structure, relative to ``prescription`` (same unit).

    Parameters
    ----------
    doses : (n,) array_like
        Dose of each sample.
    prescription : float
        Reference of V95, V107 (> 0).
    volumes_mm3 : (n,) array_like, optional
        Volume of each sample (mean and V_x are volume-weighted); equal volumes when omitted.
    maximum : float, optional
        The structure's maximum where it is known beyond the samples
        (:meth:`planning.structure_sampling.DoseSamples.maximum`); the samples' otherwise.
    """
    d, w = _samples(doses, volumes_mm3, "dose metrics")
    if not prescription > 0:
        raise PlanningError(f"prescription must be > 0, got {prescription}")
    d98, d95, d50, d5, d2 = doses_at_volumes(d, (98, 95, 50, 5, 2), w)
    total = w.sum()
    return DoseMetrics(
        d98=float(d98), d95=float(d95), d50=float(d50), d5=float(d5), d2=float(d2),
        mean=float(np.dot(d, w) / total),
        max=float(d.max()) if maximum is None else max(float(maximum), float(d.max())),
        min=float(d.min()),
        v95=float(w[d >= 0.95 * prescription].sum() / total),
        v107=float(w[d >= 1.07 * prescription].sum() / total),
        homogeneity_index=float((d2 - d98) / d50) if d50 > 0 else float("nan"),
    )


def conformity_index(dose: ArrayLike, target_mask: ArrayLike, prescription: float) -> float:
    """Volume inside the 95 % isodose (anywhere) divided by the target volume."""
    d = np.asarray(dose)
    t = np.asarray(target_mask, dtype=bool)
    if t.shape != d.shape or not t.any():
        raise PlanningError("conformity index needs a non-empty target mask on the dose grid")
    return float(np.count_nonzero(d >= 0.95 * prescription) / np.count_nonzero(t))


def cumulative_dvh(name: str, doses: ArrayLike, volume_mm3: float | ArrayLike,
                   max_dose: float | None = None, n_bins: int = 400) -> Dvh:
    """Cumulative DVH of one structure's dose samples on ``n_bins`` equal dose bins.

    Parameters
    ----------
    name : str
    doses : (n,) array_like
        Dose of each sample.
    volume_mm3 : float or (n,) array_like
        Volume of every sample (one number for voxels of one grid) or of each.
    max_dose : float, optional
        Top of the bins (default: the largest dose).
    n_bins : int
    """
    d = np.asarray(doses, dtype=np.float64).ravel()
    w = np.broadcast_to(np.asarray(volume_mm3, dtype=np.float64), d.shape)
    top = float(max_dose if max_dose is not None else (d.max() if d.size else 1.0))
    edges = np.linspace(0.0, max(top, 1e-9) * 1.001, n_bins + 1)
    if d.size == 0:
        return Dvh(name, edges, np.zeros_like(edges), 0.0)
    total = float(w.sum())
    per_bin, _ = np.histogram(d, bins=edges, weights=w)
    above = np.concatenate((np.cumsum(per_bin[::-1])[::-1], [0.0])) / total
    above[0] = 1.0  # every sample receives at least 0
    return Dvh(name, edges, np.minimum(above, 1.0), total / 1000.0)
