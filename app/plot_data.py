"""What the DVH plot and the metrics table draw, as plain data (no Kivy).

:class:`DvhCurve` is one cumulative DVH curve of :class:`app.widgets.dvh_plot.DvhPlot`,
:class:`MetricsRow` one structure's row of :class:`app.widgets.metrics_table.MetricsTable`.
The view-model modules (app.review, app.robust_review, app.compare_choices) build them without
importing Kivy, so that they are testable and usable where no window can open.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from planning.errors import InputError

FloatArray = NDArray[np.float64]

#: Top of the volume axis: DVH volumes are percentages of the structure.
VOLUME_MAX_PERCENT = 100.0


@dataclass(frozen=True, eq=False)
class DvhCurve:
    """One cumulative DVH curve to draw.

    Attributes
    ----------
    name : str
        Structure name (legend, readout, :meth:`app.widgets.dvh_plot.DvhPlot.set_visible`).
    colour_rgb : tuple of 3 int
        Curve colour, 0-255 per channel (the RTSTRUCT display colour).
    dose : (N,) float array
        Dose at the curve's points, non-decreasing, in the unit of the plot's ``x_label``
        (Gy, Gy(RBE)); bin edges from ``cumulative_dvh`` fit as they are. N >= 2.
    volume_percent : (N,) float array
        Percentage of the structure's volume receiving at least ``dose``, from 100 down to 0.
    dashed : bool
        Draw dashed (the second plan or model of a comparison).
    group : str
        Plan or model the curve belongs to ("A", "B", "mMKM", "LEM I"); shown in the legend.
    """

    name: str
    colour_rgb: tuple[int, int, int]
    dose: FloatArray
    volume_percent: FloatArray
    dashed: bool = False
    group: str = ""
    # Derived once: float64 copies that callers cannot change under the widget.
    _dose: FloatArray = field(init=False, repr=False)
    _volume: FloatArray = field(init=False, repr=False)
    _last_dose: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        dose = np.array(self.dose, dtype=np.float64).ravel()
        volume = np.array(self.volume_percent, dtype=np.float64).ravel()
        if dose.shape != volume.shape or dose.size < 2:
            raise InputError(
                f"DVH curve {self.name!r}: dose and volume_percent need the same length >= 2, "
                f"got {np.shape(self.dose)} and {np.shape(self.volume_percent)}")
        if not (np.isfinite(dose).all() and np.isfinite(volume).all()):
            raise InputError(f"DVH curve {self.name!r}: dose and volume must be finite")
        if np.any(np.diff(dose) < 0):
            raise InputError(f"DVH curve {self.name!r}: dose must be non-decreasing")
        if volume.min() < -1e-6 or volume.max() > VOLUME_MAX_PERCENT + 1e-6:
            raise InputError(
                f"DVH curve {self.name!r}: volume_percent must lie in [0, 100], "
                f"got [{volume.min():.4g}, {volume.max():.4g}] (pass percent, not a fraction)")
        if len(self.colour_rgb) != 3 or not all(0 <= int(c) <= 255 for c in self.colour_rgb):
            raise InputError(f"DVH curve {self.name!r}: colour_rgb must be 3 ints in 0..255, "
                             f"got {self.colour_rgb}")
        dose.setflags(write=False)
        volume.setflags(write=False)
        object.__setattr__(self, "_dose", dose)
        object.__setattr__(self, "_volume", np.clip(volume, 0.0, VOLUME_MAX_PERCENT))
        nonzero = np.flatnonzero(self._volume > 0)
        # The curve reaches 0 % at the point after the last nonzero one.
        last = dose[min(int(nonzero[-1]) + 1, dose.size - 1)] if nonzero.size else dose[0]
        object.__setattr__(self, "_last_dose", float(last))

    @property
    def label(self) -> str:
        """Name with the group in brackets when there is one ("PTV (LEM I)")."""
        return f"{self.name} ({self.group})" if self.group else self.name

    def volume_at(self, dose: float) -> float:
        """Volume percentage at ``dose`` along the drawn (piecewise linear) curve.

        Below the first point the volume is the first value; above the last, 0 %.
        """
        if dose > self._dose[-1]:
            return 0.0
        return float(np.interp(dose, self._dose, self._volume))

    def drawn_points(self) -> tuple[FloatArray, FloatArray]:
        """The curve as drawn: (dose, volume percent clipped to [0, 100]), read-only (N,)
        float64 arrays."""
        return self._dose, self._volume

    def last_dose_with_volume(self) -> float:
        """Dose where the curve reaches 0 % for good (its first dose if it never leaves 0)."""
        return self._last_dose


@dataclass(frozen=True)
class MetricsRow:
    """One structure's row.

    Attributes
    ----------
    name : str
        Structure name (with the plan or model, if the caller wants it: "PTV (LEM I)").
    colour_rgb : tuple of 3 int
        Swatch colour, 0-255 per channel.
    values : list of str
        Formatted values, one per metric column ("57.1", "98.7 %", "-" for not applicable).
    """

    name: str
    colour_rgb: tuple[int, int, int]
    values: list[str]
