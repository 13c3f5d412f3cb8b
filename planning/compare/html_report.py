"""The comparison's report.json and a self-contained, readable report.html.

report.html holds everything inline: slice images (PNG, base64) through the focus point (the
target's centre, else the reference maximum) of dose A, dose B, B - A on its own diverging
scale and each gamma map, over the CT where one is known; the DVH overlay (SVG, A solid, B
dashed, one colour per structure); and tables of the difference statistics, gamma pass rates,
DVH metrics and the cross-model view.

A physical against an RBE-weighted dose: A and B each on its own colour scale in its unit, the
effective RBE (RBE-weighted over physical dose) in place of B - A and its statistics, no gamma
(the report says why), and B / A in place of B - A in the DVH metrics.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import math
import os
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.atomic import atomic_write_text
from planning.compare.comparison import ComparisonResult
from planning.compare.images import (
    colour_bar,
    colour_map,
    dvh_svg,
    grey_ct,
    overlay,
    planes,
    png_bytes,
    upscale,
)
from planning.document.identity import identification
from planning.errors import InputError
from planning.report_json import report_json_text

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td.l, th.l { text-align: left; }
.grid { display: grid; grid-template-columns: repeat(var(--cols), auto); gap: 6px;
        align-items: start; }
.grid figure { margin: 0; } figcaption { font-size: 0.8em; text-align: center; }
.bar { display: flex; align-items: center; gap: 6px; font-size: 0.8em; margin: 2px 0; }
.warn { color: #8a4b00; } .pass { color: #006400; } .fail { color: #a00000; }
"""


#: Decimals of the structures table's doses (Gy, Gy(RBE)) and V95 (%): a body's D50 of
#: 1.02e-08 Gy and a difference of 5.00e-08 are float noise of the dose engine and read 0
#: (report.json keeps every digit).
TABLE_DECIMALS = 3


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "&ndash;"
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return escape(str(value))


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{escape(h)}</th>'
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_fmt(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(image: NDArray[np.uint8], caption: str) -> str:
    data = base64.b64encode(png_bytes(image)).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _bar(scale: str, lo: str, hi: str, title: str) -> str:
    data = base64.b64encode(png_bytes(colour_bar(scale))).decode("ascii")
    return (f'<div class="bar"><span>{escape(title)}</span><span>{escape(lo)}</span>'
            f'<img src="data:image/png;base64,{data}" alt="{escape(title)} scale">'
            f"<span>{escape(hi)}</span></div>")


#: The effective RBE's colours span these percentiles of its values (a field edge's outliers
#: take the end colours).
RATIO_SCALE_PERCENTILES = (1.0, 99.0)

_Column = tuple[str, NDArray[Any], str, float, float, NDArray[np.bool_] | None]


def _dose_columns(result: ComparisonResult) -> tuple[list[_Column], str]:
    """The slice columns of A and B and their colour bars: one scale for one unit, each side
    its own for a physical and an RBE-weighted dose (one colour is then no one dose)."""
    ref, ev = result.reference_gy, result.evaluated_gy
    threshold = result.settings.threshold_percent
    wash = threshold / 100.0 * float(ref.max())
    if not result.mixed_units:
        top = max(float(ref.max()), float(ev.max()), 1e-9)
        return ([(f"A ({result.unit_a})", ref, "dose", 0.0, top, ref >= wash),
                 (f"B ({result.unit_b})", ev, "dose", 0.0, top, ev >= wash)],
                _bar("dose", "0", f"{top:.3g}",
                     f"dose ({result.unit}), shown above {threshold:g} % of A's max"))
    top_a, top_b = max(float(ref.max()), 1e-9), max(float(ev.max()), 1e-9)
    return ([(f"A ({result.unit_a})", ref, "dose", 0.0, top_a, ref >= wash),
             (f"B ({result.unit_b})", ev, "dose", 0.0, top_b,
              ev >= threshold / 100.0 * top_b)],
            _bar("dose", "0", f"{top_a:.3g}", f"A ({result.unit_a}), shown above "
                                               f"{threshold:g} % of its max")
            + _bar("dose", "0", f"{top_b:.3g}", f"B ({result.unit_b}), shown above "
                                                 f"{threshold:g} % of its max"))


def _comparison_column(result: ComparisonResult) -> tuple[_Column, str]:
    """The slice column of B - A (one quantity) or of the effective RBE (two), and its bar."""
    ref, ev = result.reference_gy, result.evaluated_gy
    if result.rbe_ratio is not None:
        ratio, text = result.rbe_ratio, result.rbe_ratio_text
        shown = ~np.isnan(ratio)
        values = ratio[shown]
        lo, hi = ((float(np.percentile(values, RATIO_SCALE_PERCENTILES[0])),
                   float(np.percentile(values, RATIO_SCALE_PERCENTILES[1])))
                  if values.size else (0.0, 1.0))
        if not hi > lo:
            lo, hi = lo - 0.05, hi + 0.05
        title = f"effective RBE {text}"
        return ((title, ratio, "dose", lo, hi, shown),
                _bar("dose", f"{lo:.3g}", f"{hi:.3g}",
                     f"{title} (Gy(RBE) / Gy), where the physical dose reaches "
                     f"{result.settings.threshold_percent:g} % of its max; scale 1st-99th "
                     "percentile"))
    assert result.difference_gy is not None
    diff = result.difference_gy
    wash = result.settings.threshold_percent / 100.0 * float(ref.max())
    region = (ref >= wash) | (ev >= wash)
    d = np.abs(diff[region])
    limit = max(float(np.percentile(d, 99)) if d.size else 0.0, 0.01 * float(ref.max()), 1e-9)
    return ((f"B - A ({result.unit})", diff, "diff", -limit, limit, region),
            _bar("diff", f"{-limit:.3g}", f"{limit:.3g}", f"B - A ({result.unit})"))


def slice_figures(result: ComparisonResult) -> str:
    """HTML of the slice images (rows: axial, coronal, sagittal) and their colour scales."""
    grid = result.grid
    max_gamma = max((g.criteria.max_gamma for g in result.gamma), default=2.0)
    columns, bars = _dose_columns(result)
    column, bar = _comparison_column(result)
    columns.append(column)
    bars += bar
    for g in result.gamma:
        columns.append((f"gamma {g.criteria.label}", g.gamma, "gamma", 0.0, max_gamma,
                        None))
    if result.gamma:
        bars += _bar("gamma", "0", f"{max_gamma:g}", "gamma (green passes, < 1)")
    rows = []
    for plane in planes(grid.shape, grid.spacing_mm, result.focus_index):
        base_cube = result.ct_hu
        for title, cube, scale, lo, hi, mask in columns:
            values = plane.take(cube)
            if base_cube is not None:
                base = grey_ct(plane.take(base_cube))
            else:
                base = np.full((*values.shape, 3), 40, dtype=np.uint8)
            shown = np.asarray(~np.isnan(values) if mask is None else plane.take(mask), dtype=bool)
            image = overlay(base, colour_map(values, lo, hi, scale), shown)
            rows.append(_img(upscale(image, plane.pixel_mm),
                             f"{title}, {plane.name} slice {plane.index}"))
    return (bars + f'<div class="grid" style="--cols: {len(columns)}">' + "".join(rows)
            + "</div>")


def _sides_table(result: ComparisonResult) -> str:
    rows = []
    # compare() records the resampled sides by role ("A", "B"), not by their own labels
    # (a side from api.comparison_side or the GUI carries a label of its own).
    for s, role, unit in ((result.a, "A", result.unit_a), (result.b, "B", result.unit_b)):
        rows.append((s.label, s.source, s.dose_type, s.description or None,
                     f"{float(s.dose_gy.max()):.3g} {unit}",
                     " x ".join(str(n) for n in s.grid.shape),
                     ", ".join(f"{v:g}" for v in s.grid.spacing_mm),
                     "yes" if role in result.resampled else "no"))
    return _table(["side", "source", "dose type", "description", "max",
                   "grid (z, y, x)", "spacing mm", "resampled"], rows, left=4)


def _stats_table(result: ComparisonResult) -> str:
    if result.stats is None:
        return (f"<p>Not computed: {escape(str(result.gamma_skipped_reason))}; a difference of "
                "the two quantities is no dose difference.</p>")
    st = result.stats.as_dict()
    keys = list(st["gy"])
    rows = [(k, st["gy"][k], st["percent_of_reference_max"][k],
             (st["percent_of_prescription"] or {}).get(k)) for k in keys]
    note = (f"<p>{st['voxels']} voxels where A or B reach {st['threshold_percent']:g} % of A's "
            f"maximum ({_fmt(st['reference_max_gy'])} {result.unit_a}); integral dose ratio "
            f"B/A {_fmt(st['integral_ratio'], 4)}; prescription "
            f"{_fmt(st['prescription_gy'])} {result.unit_a}.</p>")
    return note + _table(["B - A", result.unit, "% of A max", "% of prescription"], rows)


def _rbe_ratio_section(result: ComparisonResult) -> str:
    """The effective RBE of a physical and an RBE-weighted dose: what it is, its statistics."""
    st = result.rbe_ratio_stats
    if st is None:
        return ""
    text = str(result.rbe_ratio_text)
    physical = "A" if text == "B / A" else "B"
    rows = [("mean", st.mean), ("SD", st.sd), ("minimum", st.minimum),
            *((f"{p:g}{'st' if p == 1 else 'th'} percentile", v) for p, v in st.percentiles),
            ("maximum", st.maximum), ("dose-weighted mean", st.dose_weighted_mean)]
    return (f"<h2>Effective RBE ({escape(text)})</h2><p>{escape(text)}: RBE-weighted dose "
            f"(Gy(RBE)) over physical dose (Gy) in each of the {st.voxels} voxels where the "
            f"physical dose {physical} reaches {st.threshold_percent:g} % of its maximum "
            f"({_fmt(st.physical_max_gy)} Gy); the dose-weighted mean is the sum of the one "
            "over the sum of the other there. It is the effective RBE of the plan only if "
            "both are doses of that plan.</p>" + _table([text, "value"], rows))


def _gamma_table(result: ComparisonResult) -> str:
    if result.gamma_skipped_reason is not None:
        return (f"<p>Gamma not evaluated: {escape(result.gamma_skipped_reason)}. A gamma index "
                "between two quantities has no clinical meaning.</p>")
    rows = []
    for g, t in zip(result.gamma, result.gamma_seconds, strict=True):
        rows.append((g.criteria.label, g.pass_rate_percent, g.evaluated_voxels, g.mean_text(),
                     g.p95_text(), g.normalization_dose_gy, t))
    table = _table(["criteria (global)", "pass rate %", "evaluated voxels", "mean gamma",
                    "gamma 95th pct", f"normalization ({result.unit_a})", "seconds"], rows)
    capped = [f"{g.voxels_at_cap} of {g.evaluated_voxels} for {g.criteria.label}"
              for g in result.gamma if g.mean_capped]
    if not capped:
        return table
    caps = sorted({g.criteria.max_gamma for g in result.gamma if g.mean_capped})
    return table + (f"<p>≥: a lower bound. The search for gamma stops at "
                    f"{' or '.join(f'{c:g}' for c in caps)} (the cap), and the gamma of a "
                    "voxel there is only known to be at least that; voxels at the cap: "
                    f"{escape(', '.join(capped))}.</p>")


def _structures_table(result: ComparisonResult) -> str:
    if not result.structures:
        return "<p>No structures (give a CT with an RT Structure Set).</p>"
    header = ["structure", "volume cm³"]
    names = {"d98": "D98", "d95": "D95", "d50": "D50", "d2": "D2", "mean": "Dmean",
             "max": "Dmax", "v95": "V95 %"}
    mixed = result.mixed_units
    third = "B/A" if mixed else "B-A"
    for k in names.values():
        header += [f"{k} A", f"{k} B", f"{k} {third}"]
    rows = []
    for s in result.structures:
        row: list[Any] = [s.name, f"{s.volume_cm3:.1f}"]  # not "2.94e+03" (review)
        other = s.ratio if mixed else s.difference
        for k in names:
            scale = 100.0 if k == "v95" else 1.0
            row += [None if v is None else round(scale * v, TABLE_DECIMALS) + 0.0
                    for v in (s.metrics_a[k], s.metrics_b[k])]
            third_value = other[k]
            row.append(None if third_value is None
                       else round((1.0 if mixed else scale) * third_value, TABLE_DECIMALS) + 0.0)
        rows.append(row)
    if not mixed:
        note = f" {escape(result.v95_note)}" if result.v95_note else ""
        return f"<p>Doses in {result.unit}.{note}</p>" + _table(header, rows)
    return (f"<p>Doses in {result.unit_a} (A) and {result.unit_b} (B); B/A is their ratio (no "
            "B-A: a difference of the two quantities is no dose difference). B/A of Dmean is "
            "the structure's mean RBE weighted by physical dose, when A and B are doses of one "
            "plan; V95 only of the RBE-weighted dose.</p>" + _table(header, rows))


def _optimized_with(plan_rbe_model: str | None) -> str:
    """What the cross-model section says of the model a plan was optimized with (escaped)."""
    if plan_rbe_model is None:
        return "The plan names no RBE model"
    return f"Optimized with {escape(plan_rbe_model)}"


def _cross_model_section(result: ComparisonResult) -> str:
    if not result.cross_model:
        return f"<p>Not computed: {escape(str(result.cross_model_skipped_reason))}.</p>"
    out = []
    for v in result.cross_model:
        rows = [(name, m["mkm_d95_gy_rbe"], m["lem_d95_gy_rbe"], m["mkm_d50_gy_rbe"],
                 m["lem_d50_gy_rbe"], m["mkm_mean_gy_rbe"], m["lem_mean_gy_rbe"],
                 m["ratio_mean"], m["ratio_median"])
                for name, m in v.structures.items()]
        ratio = v.target_ratio_mean
        out.append(
            f"<h3>{escape(v.label)}: plan {escape(v.plan_label)}</h3>"
            f"<p>{_optimized_with(v.plan_rbe_model)}; prescription "
            f"{v.prescription_gy_rbe:g} Gy(RBE) to {escape(str(v.target))}. Under "
            f"<b>mMKM</b> ({escape(v.view.mkm_model)}) and <b>LEM I</b> "
            f"({escape(v.view.lem_model)}); mean LEM I / mMKM ratio in the target: "
            f"<b>{_fmt(ratio, 4)}</b>.</p>"
            + _table(["structure", "mMKM D95", "LEM I D95", "mMKM D50", "LEM I D50",
                      "mMKM mean", "LEM I mean", "ratio mean", "ratio median"], rows))
    return "<p>Total doses in Gy(RBE).</p>" + "".join(out)


def identification_table(result: ComparisonResult, created: datetime.datetime) -> str:
    """The identification block: patient name and ID, each side's plan and model, date."""
    patient = result.patient or result.a.patient or result.b.patient
    ident = identification(patient, "", "", created)
    named = next((s for s in (result.a, result.b) if s.patient_id or s.patient_name), None)
    if patient is None and named is not None:  # no CT: the patient the dose files name
        ident = dataclasses.replace(ident, patient_name=named.patient_name,
                                    patient_id=named.patient_id)
    rows: list[tuple[str, Any]] = [("Patient", ident.patient_text),
                                   ("Patient ID", ident.patient_id or None)]
    for side, role in ((result.a, "reference"), (result.b, "evaluated")):
        rows.append((f"{side.label} ({role})", side.summary()))
    rows.append(("Date", ident.date_text))
    return _table(["Identification", ""], rows)


def render_html(result: ComparisonResult, *, created: datetime.datetime | None = None) -> str:
    """The report page as one HTML string (no external resources), dated ``created``
    (default now)."""
    when = created if created is not None else datetime.datetime.now().astimezone()
    warnings = "".join(f'<li class="warn">{escape(w)}</li>' for w in result.warnings)
    if result.gamma_skipped_reason is not None:
        gamma_summary = (f"<b>Gamma not evaluated</b>: {escape(result.gamma_skipped_reason)}")
    else:
        rates = ", ".join(f"{g.criteria.label}: {g.pass_rate_percent:.2f} %"
                          for g in result.gamma)
        gamma_summary = (f"Gamma pass rates (global, {result.settings.threshold_percent:g} % "
                         f"low-dose threshold): <b>{escape(rates)}</b>")
    dvh_unit = (result.unit if result.unit_a == result.unit_b
                else f"A solid: {result.unit_a}, B dashed: {result.unit_b}")
    dvh = (dvh_svg(result.structures, dvh_unit) if result.structures
           else "<p>No structures.</p>")
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in result.timings_s.items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>IonPlan dose comparison</title><style>{_CSS}</style></head><body>"
        "<h1>IonPlan dose comparison: B against the reference A</h1>"
        + identification_table(result, when) +
        f"<p>{gamma_summary}. Slices through the "
        f"{escape(result.focus_name)} (grid index z, y, x = {result.focus_index}).</p>"
        + (f"<ul>{warnings}</ul>" if warnings else "")
        + "<h2>Doses</h2>" + _sides_table(result)
        + "<h2>Slices</h2>" + slice_figures(result)
        + "<h2>Dose difference</h2>" + _stats_table(result) + _rbe_ratio_section(result)
        + "<h2>Gamma index</h2>" + _gamma_table(result)
        + "<h2>DVH</h2><p>A solid, B dashed.</p>" + dvh
        + "<h2>DVH metrics</h2>" + _structures_table(result)
        + "<h2>Cross-model view (mMKM and LEM I)</h2>" + _cross_model_section(result)
        + f"<h2>Timings</h2><p>{escape(timings)}</p>"
        + "</body></html>\n")


def write_comparison_report(result: ComparisonResult, out_dir: str | os.PathLike[str]
                            ) -> list[Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (created), atomically.

    Returns
    -------
    list of Path
        The two files.

    Raises
    ------
    InputError
        The folder cannot be created.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    html_path, json_path = out / "report.html", out / "report.json"
    atomic_write_text(html_path, render_html(result))
    data = result.to_report()
    data["files"] = [html_path.name, json_path.name]
    atomic_write_text(json_path, report_json_text(data))
    return [json_path, html_path]
