"""report.html of a robust evaluation: the DVH bands (SVG) and the table of scenarios.

Self-contained (inline SVG and CSS), in the style of the comparison report
(:mod:`planning.compare.html_report`). Input is the evaluation's ``report.json`` content
(:func:`planning.robust.evaluate_robustness`), so a report can be rendered again from the file.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from planning.compare.html_report import _CSS, _fmt, _table
from planning.compare.images import dvh_frame
from planning.hlut import describe_hlut_record
from planning.plan import fractions_text
from planning.rbe import prescription_unit_of
from planning.rbe.record import short_model_name
from planning.robust_tables import (
    SCENARIO_METRICS,
    dose_unit,
    tabled_structures,
    worst_case_metrics,
)


def _combination_text(robust: Mapping[str, Any]) -> str:
    if robust.get("combined_only"):
        return ", only combined with each other (and the nominal scenario)"
    return ", and combined" if robust["combined"] else ""


def _colour(i: int) -> str:
    r, g, b = colorsys.hsv_to_rgb((0.13 + 0.61803 * i) % 1.0, 0.75, 0.8)
    return f"#{round(255 * r):02x}{round(255 * g):02x}{round(255 * b):02x}"


def dvh_band_svg(bands: Mapping[str, Mapping[str, Sequence[float]]], *, width: int = 760,
                 height: int = 440, unit: str = "Gy(RBE)") -> str:
    """Cumulative DVH bands: per structure the area between the scenarios' lowest and
    highest DVH (translucent) and the nominal DVH (solid line); dose in ``unit`` (Gy under
    the physical model, :func:`dose_unit`)."""
    d_max = max((max(b["dose_max_gy_rbe"], default=0.0) for b in bands.values()), default=0.0)
    d_max = 1.05 * d_max if d_max > 0 else 1.0
    frame, parts = dvh_frame(width, height, d_max, unit)
    left, top, pw, x = frame.left, frame.top, frame.pw, frame.x

    def y(v_percent: float) -> float:
        return frame.y(v_percent / 100.0)

    for i, (name, band) in enumerate(bands.items()):
        colour = _colour(i)
        vol = band["volume_percent"]
        lo = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in zip(band["dose_min_gy_rbe"], vol,
                                                                 strict=True))
        hi = " ".join(f"{x(d):.1f},{y(v):.1f}"
                      for d, v in reversed(list(zip(band["dose_max_gy_rbe"], vol, strict=True))))
        parts.append(f'<polygon points="{lo} {hi}" fill="{colour}" fill-opacity="0.3" '
                     'stroke="none"/>')
        nom = " ".join(f"{x(d):.1f},{y(v):.1f}"
                       for d, v in zip(band["dose_nominal_gy_rbe"], vol, strict=True))
        parts.append(f'<polyline points="{nom}" fill="none" stroke="{colour}" '
                     'stroke-width="1.6"/>')
        ly = top + 14 * i + 8
        parts.append(f'<rect x="{left + pw + 10}" y="{ly - 5}" width="24" height="10" '
                     f'fill="{colour}" fill-opacity="0.5" stroke="{colour}"/>'
                     f'<text x="{left + pw + 40}" y="{ly + 4}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _scenario_table(rep: Mapping[str, Any]) -> str:
    target, organs = tabled_structures(rep)
    header = ["scenario", "stopping power error (%)", "shift x, y, z (mm)"]
    if target is not None:
        header += [f"{target} D98", f"{target} D95", f"{target} D50", f"{target} D2"]
    for organ in organs:
        header += [f"{organ} Dmean", f"{organ} D2", f"{organ} Dmax"]
    rows = []
    for sc in rep["scenarios"]:
        st = sc["structures"]
        row: list[Any] = [sc["name"], sc["range_error_pct"],
                          ", ".join(f"{c:+.2f}" for c in sc["shift_mm"])]
        if target is not None:
            row += [st[target][k] for k in ("d98_gy_rbe", "d95_gy_rbe", "d50_gy_rbe",
                                             "d2_gy_rbe")]
        for organ in organs:
            row += [st[organ][k] for k in ("mean_gy_rbe", "d2_gy_rbe", "max_gy_rbe")]
        rows.append(row)
    return _table(header, rows, left=3)


def _worst_table(rep: Mapping[str, Any]) -> str:
    """Every structure's worst case over the scenarios: a target's lowest D98, D95, D50 and
    highest D2, Dmean, Dmax, any other structure's highest of each
    (:func:`planning.robust_tables.worst_case_metrics`); the last column says which extreme
    each value is."""
    rows = []
    for name in rep["worst_case"]["structures"]:
        values, label = worst_case_metrics(rep, name)
        rows.append([name, *(values[key] for _, key in SCENARIO_METRICS),
                     label.split(": ", 1)[1]])
    return _table(["structure", *(title for title, _ in SCENARIO_METRICS),
                   "extreme over the scenarios"], rows)


def _scenario_set_text(robust: Mapping[str, Any]) -> str:
    """The range and setup errors of the scenarios (HTML), "no ... scenarios" for an error of 0
    (it said "setup error 0 mm in 6 directions": user review)."""
    range_pct, setup_mm = float(robust["range_error_pct"]), float(robust["setup_error_mm"])
    ranged = (f"stopping power error &plusmn;{_fmt(range_pct)} % (+: ranges shorter)"
              if range_pct > 0 else "no range scenarios")
    shifted = (f"setup error {_fmt(setup_mm)} mm in {robust['setup_directions']} directions"
               if setup_mm > 0 else "no setup scenarios")
    return f"{ranged}, {shifted}"


def _prescription_text(rep: Mapping[str, Any]) -> str:
    """The prescription in its own unit (``prescription.unit``: that of the model the plan was
    made under; it gave the dose's, "66 Gy" for a 66 Gy(RBE) plan evaluated in physical dose:
    user review) and, where the report names it, the prescription's model when the doses are
    under another: ``"66 Gy(RBE) (LEM I chordoma, averaged)"``."""
    pres = rep.get("prescription", {})
    # A fresh plan's evaluation (`plan --robust`) names no plan model apart from its own.
    unit = pres.get("unit") or prescription_unit_of(
        rep.get("plan_rbe_model", rep.get("rbe_model")))
    text = f"{_fmt(pres.get('total_dose_gy_rbe'))} {unit}"
    model = pres.get("model")
    if model and model != short_model_name(str(rep.get("rbe_model", ""))):
        text += f" ({model})"
    return text


def render_robust_html(rep: Mapping[str, Any]) -> str:
    """The robust evaluation's report page as one HTML string (no external resources)."""
    robust = rep["robust"]
    pres = rep.get("prescription", {})
    unit = dose_unit(rep)
    warnings = "".join(f'<li class="warn">{escape(w)}</li>' for w in rep.get("warnings", ()))
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in rep.get("timings_s", {}).items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>IonPlan robust evaluation</title><style>{_CSS}</style></head><body>"
        "<h1>IonPlan robust evaluation</h1>"
        f"<p>{robust['n_scenarios']} scenarios: {_scenario_set_text(robust)}"
        f"{_combination_text(robust)}. RBE model: "
        f"{escape(str(rep.get('rbe_model', '')))}. Prescription "
        f"{escape(_prescription_text(rep))} to "
        f"{escape(str(pres.get('target', '')))} in {fractions_text(pres.get('n_fractions'))}. "
        f"HU to stopping power (HLUT): {escape(describe_hlut_record(rep.get('hlut')))}. "
        f"Doses in {unit}{' (physical dose)' if unit == 'Gy' else ''}, whole plan.</p>"
        + (f"<ul>{warnings}</ul>" if warnings else "")
        + "<h2>DVH bands</h2><p>Band: lowest to highest DVH over the scenarios; line: "
          "nominal.</p>" + dvh_band_svg(rep["dvh_bands_gy_rbe"], unit=unit)
        + "<h2>Worst case per structure</h2>" + _worst_table(rep)
        + "<h2>Scenarios</h2>" + _scenario_table(rep)
        + f"<h2>Timings</h2><p>{escape(timings)}</p>"
        + "</body></html>\n")
