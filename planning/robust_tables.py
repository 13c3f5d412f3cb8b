"""What a robust evaluation adds to its plan's report, and the rows its tables read from it:
shared by report.html (:mod:`planning.robust_report`), the plan document
(:mod:`planning.document`) and the Robustness view (``app.robust_review``).

Light on imports on purpose: the plan document imports it, and the modules that run an
evaluation (:mod:`planning.robust`) import the plan document's writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planning.patient import TARGET_TYPES
from planning.rbe import dose_unit_of

#: The entries a robust evaluation adds to its nominal plan's report (see
#: :func:`planning.robust.evaluate_robustness`).
ROBUST_REPORT_KEYS = ("robust", "scenarios", "worst_case", "dvh_bands_gy_rbe")
#: Per-scenario metrics of the scenario tables (the Robustness view, the plan document):
#: (title, report key); doses in the plan's unit (:func:`dose_unit`).
SCENARIO_METRICS = (("D98", "d98_gy_rbe"), ("D95", "d95_gy_rbe"), ("D50", "d50_gy_rbe"),
                    ("D2", "d2_gy_rbe"), ("Dmean", "mean_gy_rbe"), ("Dmax", "max_gy_rbe"))
#: Metrics whose lowest value over the scenarios is a target's worst case (under-dosage); a
#: target's other :data:`SCENARIO_METRICS`, and every metric of any other structure, are worst
#: at their highest (:func:`worst_extreme`).
LOWER_IS_WORSE_IN_TARGET = ("d98_gy_rbe", "d95_gy_rbe", "d50_gy_rbe")
#: Names of the two rows after the scenarios in :func:`scenario_metric_rows`.
LOWEST_ROW, HIGHEST_ROW = "lowest over scenarios", "highest over scenarios"


def dose_unit(report: Mapping[str, Any]) -> str:
    """``"Gy"`` for a plan evaluated under the physical model, else ``"Gy(RBE)"``: the unit of
    the doses a plan's or robust evaluation's ``report.json`` holds (its ``*_gy_rbe`` keys hold
    the plan's dose under either): its ``dose_unit``, or by its model in reports without it."""
    return str(report.get("dose_unit") or dose_unit_of(str(report.get("rbe_model", ""))))


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


def worst_extreme(key: str, *, target: bool) -> str:
    """``"min"`` or ``"max"``: the extreme over the scenarios that is the worst case of the
    :data:`SCENARIO_METRICS` metric ``key`` in a target (its lowest D98, D95 and D50: too
    little dose; its highest D2, Dmean and Dmax: too much) or in any other structure (its
    highest, every metric). The worst-case report keys are ``key + "_" + extreme``
    (e.g. ``"d95_gy_rbe_min"``, :func:`planning.robust.worst_case`)."""
    return "min" if target and key in LOWER_IS_WORSE_IN_TARGET else "max"


def is_target(report: Mapping[str, Any], structure: str) -> bool:
    """Whether ``structure`` is a target of the plan of ``report`` (a plan's or robust
    evaluation's ``report.json`` content): its prescription target, or a structure whose RT
    ROI Interpreted Type is PTV, CTV or GTV."""
    if structure == report.get("prescription", {}).get("target"):
        return True
    entry = report.get("structures", {}).get(structure, {})
    return str(entry.get("interpreted_type", "")).upper() in TARGET_TYPES


def worst_case_metrics(report: Mapping[str, Any], structure: str
                       ) -> tuple[dict[str, float], str]:
    """``structure``'s worst case over the scenarios of a robust ``report``: each
    :data:`SCENARIO_METRICS` key's value at its :func:`worst_extreme` (by
    :func:`is_target`), and a label that says which extreme each value is, e.g.
    ``"worst of 9 scenarios: min D98, D95, D50; max D2, Dmean, Dmax"`` (a target) or
    ``"worst of 9 scenarios: max of each"`` (an organ)."""
    target = is_target(report, structure)
    extremes = report["worst_case"]["structures"][structure]
    values: dict[str, float] = {}
    titles: dict[str, list[str]] = {"min": [], "max": []}
    for title, key in SCENARIO_METRICS:
        extreme = worst_extreme(key, target=target)
        values[key] = float(extremes[f"{key}_{extreme}"])
        titles[extreme].append(title)
    n = len(report.get("scenarios", ()))
    which = ("max of each" if not titles["min"] else
             "; ".join(f"{e} {', '.join(t)}" for e, t in titles.items() if t))
    return values, f"worst of {n} scenarios: {which}"
