"""What a robust evaluation adds to its plan's report, and the rows its tables read from it:
shared by report.html (:mod:`planning.robust_report`), the plan document
(:mod:`planning.document`) and the Robustness view (``app.robust_review``).

Light on imports on purpose: the plan document imports it, and the modules that run an
evaluation (:mod:`planning.robust`) import the plan document's writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planning.rbe import dose_unit_of

#: The entries a robust evaluation adds to its nominal plan's report (see
#: :func:`planning.robust.evaluate_robustness`).
ROBUST_REPORT_KEYS = ("robust", "scenarios", "worst_case", "dvh_bands_gy_rbe")
#: Per-scenario metrics of the scenario tables (the Robustness view, the plan document):
#: (title, report key); doses in the plan's unit (:func:`dose_unit`).
SCENARIO_METRICS = (("D98", "d98_gy_rbe"), ("D95", "d95_gy_rbe"), ("D50", "d50_gy_rbe"),
                    ("D2", "d2_gy_rbe"), ("Dmean", "mean_gy_rbe"), ("Dmax", "max_gy_rbe"))
#: Names of the two rows after the scenarios in :func:`scenario_metric_rows`.
LOWEST_ROW, HIGHEST_ROW = "lowest over scenarios", "highest over scenarios"


def dose_unit(report: Mapping[str, Any]) -> str:
    """``"Gy"`` for a plan evaluated under the physical model, else ``"Gy(RBE)"``: the unit of
    the doses a plan's or robust evaluation's ``report.json`` holds (its ``*_gy_rbe`` keys hold
    the plan's dose under either)."""
    return dose_unit_of(str(report.get("rbe_model", "")))


def scenario_metric_rows(report: Mapping[str, Any], structure: str
                         ) -> list[tuple[str, list[float]]]:
    """``structure``'s :data:`SCENARIO_METRICS` in each scenario of ``report`` (nominal first;
    scenarios without the structure left out), then the lowest and the highest value of each
    metric over them (:data:`LOWEST_ROW`, :data:`HIGHEST_ROW`): (row name, values) pairs, the
    scenarios named as the evaluation names them (e.g. ``"SPR +3.5% (short)"``)."""
    rows: list[tuple[str, list[float]]] = []
    for sc in report.get("scenarios", []):
        m = sc["structures"].get(structure)
        if m is not None:
            rows.append((str(sc["name"]), [float(m[key]) for _, key in SCENARIO_METRICS]))
    if rows:
        columns = list(zip(*(values for _, values in rows), strict=True))
        rows += [(LOWEST_ROW, [min(c) for c in columns]),
                 (HIGHEST_ROW, [max(c) for c in columns])]
    return rows


def tabled_structures(report: Mapping[str, Any], *, target: str | None = None,
                      types: Mapping[str, str] | None = None) -> tuple[str | None, list[str]]:
    """The structures a robust evaluation's tables show: the plan's target (None when it has
    no DVH band) and the organs, i.e. the other structures with a band except the external
    contour, in the report's order.

    ``target`` (default: the report's prescription target) and ``types`` (each structure's
    RT ROI Interpreted Type; default: the report's ``structures`` entries) where the caller
    has the plan and patient themselves."""
    if target is None:
        target = report.get("prescription", {}).get("target")
    if types is None:
        types = {n: str(s.get("interpreted_type", ""))
                 for n, s in report.get("structures", {}).items()}
    names = list(report.get("dvh_bands_gy_rbe", {}))
    organs = [n for n in names if n != target and types.get(n, "").upper() != "EXTERNAL"]
    return (target if target in names else None), organs
