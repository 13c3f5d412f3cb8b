"""How a plan's cube is shown: unit (absolute or % of prescription), wash threshold, opacity,
isodose levels. Turns a :class:`~app.session.DoseLayer` and the user's
:class:`DoseDisplay` choices into the viewer's :class:`~app.viewer_state.DoseOverlay`.
No Kivy widgets here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.session import QUANTITY_MASK_FRACTION, DoseLayer
from app.viewer_state import DoseOverlay
from planning.dose_grid import DoseGrid
from planning.errors import InputError
from planning.isodose import STANDARD_ISODOSE_PERCENT


@dataclass(frozen=True)
class DoseDisplay:
    """The user's display choices.

    Attributes
    ----------
    percent : bool
        Show values as % of the layer's reference (the prescription for RBE-weighted dose).
    wash : bool
        Draw the colour wash.
    isodoses : bool
        Draw isodose lines.
    threshold_percent : float
        Wash starts at this % of the reference (0..100).
    opacity : float
        Wash opacity, 0..1.
    isodose_percent : tuple of float
        Isodose levels in % of the reference.
    """

    percent: bool = False
    wash: bool = True
    isodoses: bool = True
    threshold_percent: float = 10.0
    opacity: float = 0.45
    isodose_percent: tuple[float, ...] = STANDARD_ISODOSE_PERCENT


def parse_levels(text: str) -> tuple[float, ...]:
    """Isodose levels typed as ``"107, 95, 80"`` (% of the reference), highest first."""
    values = []
    for part in text.replace(";", ",").split(","):
        part = part.strip().rstrip("%")
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise InputError(f"isodose level {part!r} is not a number (give % values, "
                             "e.g. 95, 80, 50)") from None
        if not (math.isfinite(v) and 0 < v <= 500):
            raise InputError(f"isodose level {v:g} % must lie in (0, 500]")
        values.append(v)
    return tuple(sorted(set(values), reverse=True))


def overlay_for(layer: DoseLayer, display: DoseDisplay) -> DoseOverlay:
    """The viewer overlay of ``layer`` as ``display`` asks.

    The colour scale runs from 0 to the larger of the cube's maximum and 110 % of the
    reference, so 100 % always sits at the same colour whatever the hot spots.
    """
    if layer.mask_dose is not None:
        return _masked_quantity_overlay(layer, display)
    ref = layer.reference
    top = max(float(np.max(layer.cube)) if layer.cube.size else 0.0, 1.1 * ref, 1e-6)
    if display.percent:
        cube = layer.cube * np.float32(100.0 / ref)
        unit, scale, vmax = "%", 100.0, 100.0 * top / ref
    else:
        cube, unit, scale, vmax = layer.cube, layer.unit, ref, top
    levels = (tuple(p / 100.0 * scale for p in display.isodose_percent)
              if display.isodoses else ())
    threshold = display.threshold_percent / 100.0 * scale
    opacity = display.opacity if display.wash else 0.0
    return DoseOverlay(dose=cube, grid=layer.grid, unit=unit, vmin=0.0, vmax=vmax,
                       threshold=threshold, opacity=opacity, isodose_levels=levels,
                       label=layer.label, scale_name=layer.scale_name)


#: A masked quantity's colours span these percentiles of its values where it is shown; the
#: few beyond take the end colours (the legend marks them), so that a field edge's outliers
#: do not squeeze the rest into a few colours.
SCALE_PERCENTILES = (1.0, 99.0)


def _masked_quantity_overlay(layer: DoseLayer, display: DoseDisplay) -> DoseOverlay:
    """A quantity (LETd, RBE, ratio) where the dose reaches ``layer.mask_dose_min`` only, its
    colours spread over :data:`SCALE_PERCENTILES` of its values there (the target's 1.03 and
    an entrance channel's 2 of the LEM I / mMKM ratio both within the scale); values beyond
    take the end colours and are marked on the legend (``shown_min``/``shown_max``). No
    isodose lines: they are lines of dose."""
    assert layer.mask_dose is not None
    keep = layer.mask_dose >= layer.mask_dose_min
    values = layer.cube[keep]
    if display.percent:
        values = values * np.float32(100.0 / layer.reference)
    lo, hi = _percentile_scale(values)
    cube = np.zeros(layer.cube.shape, np.float32)
    cube[keep] = values
    lowest = float(values.min()) if values.size else 0.0
    highest = float(values.max()) if values.size else 0.0
    p_lo, p_hi = (ordinal(p) for p in SCALE_PERCENTILES)
    return DoseOverlay(dose=cube, grid=layer.grid, unit="%" if display.percent else layer.unit,
                       vmin=lo, vmax=hi, threshold=0.5 * lowest if lowest > 0 else 0.0,
                       opacity=display.opacity if display.wash else 0.0, label=layer.label,
                       scale_name=layer.scale_name,
                       note=f"shown ≥{100 * QUANTITY_MASK_FRACTION:g}% Rx; scale {p_lo}-{p_hi} "
                            "percentile",
                       shown_min=lowest if values.size else None,
                       shown_max=highest if values.size else None)


def _percentile_scale(values: np.ndarray) -> tuple[float, float]:
    """The colour scale of a quantity's shown values: :data:`SCALE_PERCENTILES` of them,
    widened about a single value."""
    lo, hi = ((float(np.percentile(values, SCALE_PERCENTILES[0])),
               float(np.percentile(values, SCALE_PERCENTILES[1])))
              if values.size else (0.0, 1.0))
    if not hi > lo:
        lo, hi = lo - 0.5 * max(abs(lo), 1e-3), hi + 0.5 * max(abs(hi), 1e-3)
    return lo, hi


def ratio_overlay(ratio: np.ndarray, grid: DoseGrid, *, label: str, scale_name: str,
                  where: str, opacity: float = 0.6) -> DoseOverlay:
    """A dimensionless voxel ratio (the effective RBE of a physical and an RBE-weighted
    dose), NaN where it was not taken, on :data:`SCALE_PERCENTILES` of its values as a
    masked quantity is; ``where`` says where it was taken (the legend's note)."""
    keep = ~np.isnan(ratio)
    values = np.asarray(ratio[keep], dtype=np.float32)
    lo, hi = _percentile_scale(values)
    cube = np.zeros(ratio.shape, np.float32)
    cube[keep] = values
    lowest = float(values.min()) if values.size else 0.0
    p_lo, p_hi = (ordinal(p) for p in SCALE_PERCENTILES)
    return DoseOverlay(dose=cube, grid=grid, unit="", vmin=lo, vmax=hi,
                       threshold=0.5 * lowest if lowest > 0 else 0.0, opacity=opacity,
                       label=label, scale_name=scale_name,
                       note=f"{where}; scale {p_lo}-{p_hi} percentile",
                       shown_min=lowest if values.size else None,
                       shown_max=float(values.max()) if values.size else None)


def ordinal(number: float) -> str:
    """``1`` -> ``"1st"``, ``99`` -> ``"99th"``, ``2.5`` -> ``"2.5th"``."""
    n = int(number)
    suffix = "th" if n != number or 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(
        n % 10, "th")
    return f"{number:g}{suffix}"


def difference_overlay(diff: np.ndarray, grid: DoseGrid, unit: str, *, label: str,
                       opacity: float = 0.6, threshold: float = 0.0,
                       least_peak: float = 0.0) -> DoseOverlay:
    """A symmetric diverging overlay for ``diff`` (B - A) with its own colour scale, from
    -peak to +peak: the largest magnitude of ``diff``, at least ``least_peak`` (so that
    rounding-level differences of equal doses are not spread over the whole scale)."""
    peak = max(float(np.max(np.abs(diff))) if diff.size else 0.0, least_peak)
    peak = peak if peak > 0 else 1.0
    return DoseOverlay(dose=np.asarray(diff, dtype=np.float32), grid=grid,
                       unit=unit, vmin=-peak, vmax=peak, threshold=threshold, opacity=opacity,
                       colormap="diverging", label=label)
