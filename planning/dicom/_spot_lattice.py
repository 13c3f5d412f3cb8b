"""Put imported spot positions on the regular lattice the dose engine needs.

:class:`planning.beams.SpotMap` requires every spot of a beam at
``lattice_origin + (i du, j dv)``. Plans made elsewhere list positions only, so the lattice is
inferred per beam and per axis, gcd-like: the most common gap between neighbouring distinct
positions is the candidate spacing; if some positions lie between its nodes (interleaved or
hexagonal patterns), the spacing is divided by 2, 3, ... down to :data:`MIN_SPACING_MM`. The
spacing and origin are refined by least squares, then rounded to the fewest decimals (from
0.01 mm) that keep every position within the tolerance (0.01 mm by default) of its node, and
every position is snapped to its node; this also removes the float32 rounding of the DICOM
values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: The finest lattice spacing accepted (finer lattices make the engine's spot tables huge).
MIN_SPACING_MM = 0.5
#: Largest divisor of the most common gap tried.
MAX_DIVISOR = 12
#: Width of the bins used to find the most common gap.
GAP_BIN_MM = 0.01


class LatticeError(ValueError):
    """The spot positions do not lie on a regular lattice."""


@dataclass(frozen=True, eq=False)
class SpotLattice:
    """A fitted lattice and the snapped positions.

    Attributes
    ----------
    spacing_mm : (du, dv)
        Lattice spacing, mm.
    origin_mm : (u0, v0)
        The lattice node nearest to the isocentre axis (each in ``[-d/2, d/2]``), mm.
    u_mm, v_mm : (n,) float arrays
        The positions moved onto their nodes, mm.
    """

    spacing_mm: tuple[float, float]
    origin_mm: tuple[float, float]
    u_mm: FloatArray
    v_mm: FloatArray


def _residual(values: FloatArray, origin: float, spacing: float) -> float:
    nodes = np.rint((values - origin) / spacing)
    return float(np.max(np.abs(values - origin - nodes * spacing)))


def _tidy(values: FloatArray, origin: float, spacing: float, tol: float) -> tuple[float, float]:
    """Origin moved to the node nearest 0; origin and spacing rounded to the fewest decimals
    (0.01 mm up to 0.01 um) that keep every position within ``tol`` of its node."""
    origin -= float(np.rint(origin / spacing)) * spacing
    for decimals in (2, 3, 4, 5):
        rounded_origin, rounded_spacing = round(origin, decimals), round(spacing, decimals)
        if rounded_spacing > 0 and _residual(values, rounded_origin, rounded_spacing) <= tol:
            return rounded_origin + 0.0, rounded_spacing
    return float(origin), float(spacing)


def _axis(values: FloatArray, tol: float, name: str) -> tuple[float, float] | None:
    """(origin, spacing) along one axis; None when all positions coincide."""
    ordered = np.sort(values)
    breaks = np.flatnonzero(np.diff(ordered) > tol) + 1
    distinct = np.array([group.mean() for group in np.split(ordered, breaks)])
    if distinct.size == 1:
        return None
    gaps = np.diff(distinct)
    bins = np.rint(gaps / GAP_BIN_MM).astype(np.int64)
    labels, counts = np.unique(bins, return_counts=True)
    base = float(np.mean(gaps[bins == labels[int(np.argmax(counts))]]))
    for divisor in range(1, MAX_DIVISOR + 1):
        spacing = base / divisor
        if spacing < MIN_SPACING_MM:
            break
        nodes = np.rint((distinct - distinct[0]) / spacing)
        design = np.column_stack((np.ones_like(nodes), nodes))
        (origin, fitted), *_ = np.linalg.lstsq(design, distinct, rcond=None)
        if fitted > 0 and _residual(values, float(origin), float(fitted)) <= tol:
            return _tidy(values, float(origin), float(fitted), tol)
    raise LatticeError(
        f"the spot positions along {name} are not on a regular lattice (most common gap "
        f"{base:.3f} mm; no lattice of spacing >= {MIN_SPACING_MM} mm holds all of them within "
        f"{tol} mm); the dose engine needs spots on a lattice"
    )


def fit_lattice(u_mm: FloatArray, v_mm: FloatArray, *, tolerance_mm: float = 0.01) -> SpotLattice:
    """Infer the spot lattice of a beam and snap the positions onto it.

    Parameters
    ----------
    u_mm, v_mm : (n,) float arrays
        Spot positions at the isocentre plane (all layers of the beam), mm; ``n >= 1``.
    tolerance_mm : float
        Largest distance along each axis between a position and its lattice node.

    Returns
    -------
    SpotLattice

    Raises
    ------
    LatticeError
        If the positions are not on a lattice of spacing >= :data:`MIN_SPACING_MM`.
    """
    u = np.asarray(u_mm, dtype=np.float64)
    v = np.asarray(v_mm, dtype=np.float64)
    fit_u = _axis(u, tolerance_mm, "X (u)")
    fit_v = _axis(v, tolerance_mm, "Y (v)")
    # an axis with a single position takes the other's spacing (1 mm if both are single)
    spacing = fit_u[1] if fit_u is not None else fit_v[1] if fit_v is not None else 1.0
    if fit_u is None:
        fit_u = _tidy(u, float(u[0]), spacing, tolerance_mm)
    if fit_v is None:
        fit_v = _tidy(v, float(v[0]), spacing, tolerance_mm)
    (u0, du), (v0, dv) = fit_u, fit_v
    return SpotLattice(
        spacing_mm=(float(du), float(dv)),
        origin_mm=(float(u0), float(v0)),
        u_mm=u0 + np.rint((u - u0) / du) * du,
        v_mm=v0 + np.rint((v - v0) / dv) * dv,
    )
