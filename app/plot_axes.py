"""Axis arithmetic for plots: "nice" tick values and labels, and the data <-> pixel mapping.

Pure functions (no Kivy); the DVH plot and the plan report use them. Tick steps are 1, 2, 2.5 or
5 times a power of ten, the usual choice for readable axes (Heckbert, "Nice numbers for graph
labels", Graphics Gems, 1990, extended with 2.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.errors import InputError

_MANTISSAS = (1.0, 2.0, 2.5, 5.0)
# Relative slack so that a range end equal to a tick up to rounding (0.3 = 3 x 0.1) counts as one.
_SLACK = 1e-9
_EPS = float(np.finfo(np.float64).eps)


def _check_range(lo: float, hi: float) -> tuple[float, float]:
    lo_f, hi_f = float(lo), float(hi)
    if not (math.isfinite(lo_f) and math.isfinite(hi_f)):
        raise InputError(f"axis range must be finite, got [{lo}, {hi}]")
    if hi_f < lo_f:
        raise InputError(f"axis range upper end {hi} is below its lower end {lo}")
    return lo_f, hi_f


def _steps_from(span: float, max_ticks: int) -> list[tuple[float, int]]:
    """Candidate steps (value, decimals) in increasing order, starting below span / max_ticks."""
    exponent = math.floor(math.log10(span / max_ticks)) - 1
    out = []
    for e in range(exponent, exponent + 4):
        for m in _MANTISSAS:
            decimals = max(0, -e + (1 if m == 2.5 else 0))
            out.append((m * 10.0**e, decimals))
    return out


def tick_step(lo: float, hi: float, max_ticks: int = 8) -> tuple[float, int]:
    """The smallest nice step that puts at most ``max_ticks`` ticks in ``[lo, hi]``.

    Parameters
    ----------
    lo, hi : float
        The axis range in data units, ``lo < hi``.
    max_ticks : int
        Largest number of ticks allowed, at least 2.

    Returns
    -------
    step : float
        Distance between ticks (1, 2, 2.5 or 5 times a power of ten), data units.
    decimals : int
        Number of decimals that shows every multiple of ``step`` exactly.
    """
    lo, hi = _check_range(lo, hi)
    if max_ticks < 2:
        raise InputError(f"an axis needs room for at least 2 ticks, got max_ticks={max_ticks}")
    if hi == lo:
        raise InputError(f"axis range [{lo}, {hi}] is empty: no tick step can be chosen")
    span = hi - lo
    for step, decimals in _steps_from(span, max_ticks):
        first, last = _index_range(lo, hi, step)
        if last - first + 1 <= max_ticks:
            return step, decimals
    raise InputError(f"no tick step found for [{lo}, {hi}] with max_ticks={max_ticks}")


def _index_range(lo: float, hi: float, step: float) -> tuple[int, int]:
    """Indices k of the first and last multiples k * step inside [lo, hi] (ends with a slack)."""
    # The slack covers decimal steps that are not exact in binary (0.3 / 0.1 = 2.9999999999999996)
    # and the rounding of lo / step for ranges far from 0.
    tol = max(_SLACK * (hi - lo), 8 * _EPS * max(abs(lo), abs(hi)))
    return math.ceil((lo - tol) / step), math.floor((hi + tol) / step)


def nice_ticks(lo: float, hi: float, max_ticks: int = 8) -> NDArray[np.float64]:
    """Tick values inside ``[lo, hi]`` at a nice step, increasing, at most ``max_ticks`` of them.

    A degenerate range (``lo == hi``) has the single tick ``lo``.

    Returns
    -------
    (T,) float64 array
        Multiples of :func:`tick_step`, rounded to its decimals so that they print exactly.
    """
    lo, hi = _check_range(lo, hi)
    if hi == lo:
        return np.array([lo])
    step, decimals = tick_step(lo, hi, max_ticks)
    first, last = _index_range(lo, hi, step)
    values = np.round(np.arange(first, last + 1, dtype=np.float64) * step, decimals)
    # Rounding may nudge an end tick a hair outside the range; clip it back onto the end.
    return np.clip(values, lo, hi)


def nice_upper_limit(value: float, max_ticks: int = 8) -> float:
    """The smallest tick at or above ``value`` for an axis starting at 0 (1.0 when value <= 0).

    Used to choose the dose axis end so that the last tick sits at the right edge.
    """
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"axis maximum must be finite, got {value}")
    if v <= 0:
        return 1.0
    step, decimals = tick_step(0.0, v, max_ticks - 1)
    return round(math.ceil(v / step - _SLACK * max(1.0, v / step)) * step, decimals)


def tick_labels(values: ArrayLike, decimals: int) -> list[str]:
    """Format tick values with a fixed number of decimals ("-0" shown as "0")."""
    out = []
    for v in np.asarray(values, dtype=np.float64).ravel():
        text = f"{v:.{decimals}f}"
        if float(text) == 0.0:
            text = f"{0.0:.{decimals}f}"
        out.append(text)
    return out


def ticks_and_labels(lo: float, hi: float, max_ticks: int = 8) -> tuple[NDArray[np.float64],
                                                                        list[str]]:
    """:func:`nice_ticks` and their :func:`tick_labels` in one call."""
    values = nice_ticks(lo, hi, max_ticks)
    decimals = 0 if values.size < 2 else tick_step(lo, hi, max_ticks)[1]
    return values, tick_labels(values, decimals)


@dataclass(frozen=True)
class AxisMapping:
    """Linear map between a data range and a pixel range along one axis.

    Attributes
    ----------
    data_lo, data_hi : float
        Data values (e.g. Gy(RBE), %) at the two ends of the axis, ``data_lo != data_hi``.
    pixel_lo, pixel_hi : float
        Pixel coordinates of those ends (Kivy window pixels, y up; may be reversed).
    """

    data_lo: float
    data_hi: float
    pixel_lo: float
    pixel_hi: float

    def __post_init__(self) -> None:
        values = (self.data_lo, self.data_hi, self.pixel_lo, self.pixel_hi)
        if not all(math.isfinite(float(v)) for v in values):
            raise InputError(f"axis mapping needs finite ends, got {values}")
        if self.data_lo == self.data_hi:
            raise InputError(f"axis mapping data range [{self.data_lo}, {self.data_hi}] is empty")
        if self.pixel_lo == self.pixel_hi:
            raise InputError(f"axis mapping pixel range [{self.pixel_lo}, {self.pixel_hi}] "
                             "is empty")

    @property
    def scale(self) -> float:
        """Pixels per data unit (negative for a reversed axis)."""
        return (self.pixel_hi - self.pixel_lo) / (self.data_hi - self.data_lo)

    def to_pixel(self, data: ArrayLike) -> NDArray[np.float64]:
        """Pixel coordinates of data values (any shape, float64)."""
        d = np.asarray(data, dtype=np.float64)
        return self.pixel_lo + (d - self.data_lo) * self.scale

    def to_data(self, pixel: ArrayLike) -> NDArray[np.float64]:
        """Data values at pixel coordinates (any shape, float64); inverse of :meth:`to_pixel`."""
        p = np.asarray(pixel, dtype=np.float64)
        return self.data_lo + (p - self.pixel_lo) / self.scale


def dash_segments(xy_px: ArrayLike, dash_px: float, gap_px: float) -> NDArray[np.float64]:
    """Cut a polyline into the straight pieces of a dash pattern.

    Dashes are measured along the line from its first point: "on" for ``dash_px``, then "off"
    for ``gap_px``, repeated. A dash that turns a corner is split at the corner.

    Parameters
    ----------
    xy_px : (N, 2) array
        Polyline vertices in pixels, N >= 2.
    dash_px, gap_px : float
        Lengths of a dash and of a gap along the line, pixels, both > 0.

    Returns
    -------
    (M, 2, 2) float64 array
        Segment ``m`` runs from ``out[m, 0]`` to ``out[m, 1]`` (x, y pixels).
    """
    xy = np.asarray(xy_px, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] < 2:
        raise InputError(f"a polyline must be an (N >= 2, 2) array, got shape {xy.shape}")
    if not (dash_px > 0 and gap_px > 0):
        raise InputError(f"dash and gap lengths must be > 0 px, got {dash_px} and {gap_px}")
    arc = np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))))
    total = float(arc[-1])
    if total == 0.0:
        return np.zeros((0, 2, 2))
    period = dash_px + gap_px
    n_periods = math.ceil(total / period)
    starts = np.arange(n_periods) * period
    pattern = np.concatenate((starts, starts + dash_px))
    breaks = np.unique(np.concatenate((arc, pattern[pattern < total], [total])))
    mid = 0.5 * (breaks[:-1] + breaks[1:])
    on = (mid % period) < dash_px
    # Interpolate positions at the breaks along the arc length (zero-length pieces drop out).
    xb = np.interp(breaks, arc, xy[:, 0])
    yb = np.interp(breaks, arc, xy[:, 1])
    keep = on & (np.diff(breaks) > 0)
    a = np.stack((xb[:-1], yb[:-1]), axis=1)[keep]
    b = np.stack((xb[1:], yb[1:]), axis=1)[keep]
    return np.stack((a, b), axis=1)


def wrap_words(text: str, max_width: float, width_of: Callable[[str], float]) -> list[str]:
    """``text`` broken at spaces into lines of at most ``max_width`` (as ``width_of``
    measures a line), each as full as it can be; a word wider than ``max_width`` gets a line
    of its own (the caller shrinks the text for it). An axis title as long as "Worst case:
    voxel-wise minimum of 9 scenarios (LEM I chordoma, averaged) (Gy(RBE))" ran past its plot.
    """
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}" if current else word
        if current and width_of(trial) > max_width:
            lines.append(current)
            current = word
        else:
            current = trial
    return [*lines, current] if current or not lines else lines
