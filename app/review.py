"""Per-structure dose statistics shaped for the DVH plot and the metrics table (no Kivy).

The numbers come from :func:`planning.api.structure_dose_statistics`; this module only picks
columns, formats values and builds curves.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.plot_data import DvhCurve, MetricsRow
from planning.structure_dose import StructureDose

METRIC_COLUMNS = ("D98", "D95", "D2", "Dmean", "Dmax", "V95")


def dvh_curves(stats: Sequence[StructureDose], *, dashed: bool = False, group: str = ""
               ) -> list[DvhCurve]:
    """One curve per structure in its RTSTRUCT colour."""
    return [DvhCurve(s.name, s.colour_rgb, s.dvh.dose_gy, 100.0 * s.dvh.volume_fraction,
                     dashed=dashed, group=group) for s in stats]


def metrics_rows(stats: Sequence[StructureDose], *, suffix: str = "", v95: bool = True
                 ) -> list[MetricsRow]:
    """D98, D95, D2, Dmean, Dmax (in the cube's unit) and V95 (% of the structure's volume;
    "-" with ``v95`` False: a dose under another RBE model than the prescription's)."""
    rows = []
    for s in stats:
        m = s.metrics
        rows.append(MetricsRow(
            f"{s.name} ({suffix})" if suffix else s.name, s.colour_rgb,
            [f"{m.d98:.2f}", f"{m.d95:.2f}", f"{m.d2:.2f}", f"{m.mean:.2f}", f"{m.max:.2f}",
             f"{100 * m.v95:.1f} %" if v95 else "-"]))
    return rows


def metric_columns(unit: str, reference_name: str = "prescription") -> list[str]:
    """Column titles with the unit of the dose columns; V95 says what its 100 % is when that
    is not the prescription (e.g. the maximum of a physical-dose cube)."""
    # "D98 Gy(RBE)": the table wraps the title at the space, and the unit fits a column.
    u = f" {unit}" if unit else ""
    v95 = "V95 %" if reference_name.startswith("prescription") else "V95 % of max"
    return [f"{c}{u}" if c != "V95" else v95 for c in METRIC_COLUMNS]
