"""A robust evaluation's report shaped for the Robustness view (no Kivy).

The numbers come from :func:`planning.api.robust_evaluation_of_result` (its report: the
``scenarios`` list, ``dvh_bands_gy_rbe`` and ``robust`` settings); this module only picks
columns, formats values and builds the band curves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.plot_data import DvhCurve, MetricsRow
from planning.errors import InputError
from planning.robust_tables import (  # dose_unit: re-exported for the robustness panel
    SCENARIO_METRICS,
    dose_unit,
    scenario_metric_rows,
)

#: Colour of a scenario row whose metric leaves the nominal one by more than this share of
#: the prescription (a quick flag for the eye; the numbers are all there).
_NEUTRAL_RGB = (150, 150, 150)


@dataclass(frozen=True)
class RobustChoice:
    """The scenario set the user asked for (see :class:`planning.robust.RobustSettings`).

    Attributes
    ----------
    range_error_pct, setup_error_mm : float
        Error sizes.
    setup_directions : {6, 14}
        Shift directions.
    scenario_set : {"separate", "combined", "combined only"}
        Which scenarios: single errors; those and every combination; or the nominal scenario
        with the combinations only.
    """

    range_error_pct: float
    setup_error_mm: float
    setup_directions: int
    scenario_set: str

    def api_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`planning.api.robust_evaluation_of_result`."""
        return {"range_error_pct": self.range_error_pct, "setup_error_mm": self.setup_error_mm,
                "setup_directions": self.setup_directions,
                "combined": self.scenario_set != "separate",
                "combined_only": self.scenario_set == "combined only"}


SCENARIO_SETS = ("separate", "combined", "combined only")


def parse_robust_choice(range_text: str, setup_text: str, directions_text: str,
                        scenario_set: str) -> RobustChoice:
    """Check the Robustness form before any work; errors name the field."""
    def number(text: str, field: str, hi: float) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise InputError(f"{field}: expected a number, got {text!r}") from None
        if not (0.0 <= value <= hi):
            raise InputError(f"{field} must lie between 0 and {hi:g}, got {value:g}")
        return value

    range_pct = number(range_text, "range error (%)", 20.0)
    setup_mm = number(setup_text, "setup error (mm)", 20.0)
    if directions_text not in ("6", "14"):
        raise InputError(f"setup directions must be 6 or 14, got {directions_text!r}")
    if scenario_set not in SCENARIO_SETS:
        raise InputError(f"scenario set must be one of {', '.join(SCENARIO_SETS)}, "
                         f"got {scenario_set!r}")
    if range_pct == 0 and setup_mm == 0:
        raise InputError("range error and setup error are both 0: there is nothing to "
                         "evaluate beyond the nominal plan")
    if scenario_set != "separate" and (range_pct == 0 or setup_mm == 0):
        raise InputError(f"'{scenario_set}' needs both a range error and a setup error: "
                         "with one of them 0 there is no combination (choose 'separate')")
    return RobustChoice(range_pct, setup_mm, int(directions_text), scenario_set)


def band_curves(report: Mapping[str, Any], colours: Mapping[str, tuple[int, int, int]]
                ) -> list[DvhCurve]:
    """Per structure: the nominal DVH (solid) and the band's lower and upper edges (dashed).

    ``report["dvh_bands_gy_rbe"][roi]`` gives, per volume percentage 0..100, the lowest and
    highest dose over the scenarios that this volume receives at least; turned around here into
    cumulative curves (dose rising, volume falling).
    """
    curves = []
    for name, band in report.get("dvh_bands_gy_rbe", {}).items():
        volume = np.asarray(band["volume_percent"], dtype=np.float64)[::-1]
        colour = colours.get(name, _NEUTRAL_RGB)
        for key, group, dashed in (("dose_nominal_gy_rbe", "nominal", False),
                                   ("dose_min_gy_rbe", "band low", True),
                                   ("dose_max_gy_rbe", "band high", True)):
            dose = np.maximum.accumulate(np.asarray(band[key], dtype=np.float64)[::-1])
            curves.append(DvhCurve(name, colour, dose, volume, dashed=dashed, group=group))
    return curves


def band_axis_label(unit: str, model_name: str = "") -> str:
    """The dose axis of the Robustness view's DVH bands: the plan's model named as the Dose
    tab's DVH names it (``model_name``, e.g. ``"LEM I chordoma, averaged"``,
    :attr:`app.session.PlanEntry.model_name`); ``unit`` ``"Gy"``: a physical-dose plan."""
    if unit == "Gy":
        return "Physical dose (Gy)"
    return (f"RBE-weighted dose ({model_name}) ({unit})" if model_name
            else f"RBE-weighted dose ({unit})")


def scenario_columns(unit: str = "Gy(RBE)") -> list[str]:
    """The scenario table's metric columns (the scenario's name, which says its stopping-power
    change and shift, is the row's name)."""
    return [f"{title} {unit}" for title, _ in SCENARIO_METRICS]


def scenario_rows(report: Mapping[str, Any], structure: str,
                  colour: tuple[int, int, int] = _NEUTRAL_RGB) -> list[MetricsRow]:
    """One row per scenario (nominal first) with ``structure``'s metrics, then the lowest and
    the highest value of each metric over the scenarios
    (:func:`planning.robust_report.scenario_metric_rows`)."""
    return [MetricsRow(name, colour, [f"{v:.2f}" for v in values])
            for name, values in scenario_metric_rows(report, structure)]


def summary_text(report: Mapping[str, Any], target: str, prescription_gy_rbe: float) -> str:
    """One line: the scenario set, the target's lowest D95 and D98 over the scenarios, and the
    D95 of the voxel-wise minimum dose (each voxel at its lowest in any scenario), each in the
    unit of the plan and as % of the prescription. The two are different numbers and are
    named so: no single scenario gives the voxel-wise minimum, so its D95 is lower."""
    robust = report.get("robust", {})
    worst = report.get("worst_case", {})
    lowest = worst.get("structures", {}).get(target, {})
    n = robust.get("n_scenarios", len(report.get("scenarios", [])))
    range_pct, setup_mm = robust.get("range_error_pct", 0), robust.get("setup_error_mm", 0)
    # An error of 0 has no scenarios ("setup 0 mm, 6 directions" read as 6 of them).
    ranged = f"stopping power +/-{range_pct:g} %" if range_pct > 0 else "no range scenarios"
    shifted = (f"setup {setup_mm:g} mm, {robust.get('setup_directions', 6)} directions"
               if setup_mm > 0 else "no setup scenarios")
    parts = [f"{n} scenarios ({ranged}, {shifted})"]
    unit = dose_unit(report)

    def dose(value: float) -> str:
        return f"{value:.2f} {unit} = {100 * value / prescription_gy_rbe:.1f} %"

    if prescription_gy_rbe > 0:
        found = [f"{title} {dose(lowest[key])}" for key, title in
                 (("d95_gy_rbe_min", "D95"), ("d98_gy_rbe_min", "D98")) if key in lowest]
        if found:
            parts.append(f"{target} lowest over the scenarios: {', '.join(found)}")
        voxelwise = worst.get("voxelwise_min", {}).get(target, {})
        if "d95_gy_rbe" in voxelwise:
            parts.append(f"{target} D95 of the voxel-wise minimum dose (every voxel at its "
                         f"lowest in any scenario): {dose(voxelwise['d95_gy_rbe'])}")
    return "; ".join(parts)


def structures_of(report: Mapping[str, Any]) -> Sequence[str]:
    """Structures with metrics in every scenario, in the report's order."""
    scenarios = report.get("scenarios", [])
    if not scenarios:
        return []
    names = list(scenarios[0]["structures"])
    return [n for n in names if all(n in sc["structures"] for sc in scenarios)]
