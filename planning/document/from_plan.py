"""The plan document's content (:class:`PlanDocument`) from a computed plan.

Prescription, model and beams come from the plan itself; objectives and the optimizer's
result from its report (``report.json``: ``objectives``, ``iterations``,
``objective_value``, ``optimizer_message``; a recalculated plan has none of these); metrics
and DVHs are evaluated on the plan's dose cubes for its own model and, when the plan has an
exchange view (:mod:`planning.exchange`), for the other models too, plus the physical dose.
The DVH's axis has the unit of the plan's model; the other models' Gy(RBE) curves are drawn on
it (each model in its own dash pattern) only when that unit is Gy(RBE). A plan with a robust
evaluation (its report has the entries :func:`planning.robust.evaluate_robustness` adds) gets
its robustness section from those entries.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from planning.beams import PRIMARIES_PER_WEIGHT_UNIT
from planning.document.content import (
    DoseSection,
    DvhLine,
    PlanDocument,
    RobustnessSection,
    TextTable,
)
from planning.document.identity import identification
from planning.document.views import (
    DEFAULT_OUTLINE_RGB,
    SliceView,
    dose_display,
    target_views,
)
from planning.dose_interpolation import VoxelLabels
from planning.hlut import describe_hlut_record
from planning.isodose import STANDARD_ISODOSE_PERCENT
from planning.machine import TREATMENT_MACHINE_NAME_CHARS
from planning.plan import fractions_text
from planning.plan_notes import optimizer_passes, plan_notes, report_optimizer_status
from planning.rbe import (
    LemModel,
    MkmModel,
    PhysicalDose,
    RbeModel,
    dose_unit_of,
    prescription_unit_of,
)
from planning.rbe.record import (
    StructureTissues,
    model_label,
    model_record,
    same_prescription_model,
    short_model_name,
)
from planning.robust_tables import (
    ROBUST_REPORT_KEYS,
    SCENARIO_METRICS,
    dose_unit,
    scenario_metric_rows,
    tabled_structures,
)
from planning.structure_dose import StructureDose, structure_dose_statistics

if TYPE_CHECKING:
    from planning.planner import PlanResult

#: Metric columns of the dose sections: doses, then the prescription-relative volumes (shown
#: only for a dose of the prescription's kind, :data:`PRESCRIPTION_RELATIVE_COLUMNS`).
METRIC_COLUMNS = ("D98", "D95", "D50", "D2", "Dmax", "Dmean", "V95 %", "V107 %")
#: The columns of :data:`METRIC_COLUMNS` that are relative to the prescription.
PRESCRIPTION_RELATIVE_COLUMNS = ("V95 %", "V107 %")
#: Bins of the document's DVH curves.
DVH_BINS = 200
#: Dash pattern (on, off, points) of each other model's DVH lines; the plan's model is solid.
MODEL_DASHES: dict[str, tuple[float, ...]] = {MkmModel.name: (4.0, 2.0),
                                             LemModel.name: (1.0, 1.5)}
#: Dash pattern of a model without its own in :data:`MODEL_DASHES`.
OTHER_DASH = (6.0, 2.0, 1.0, 2.0)
#: Characters of the DICOM RT Plan Label (SH).
PLAN_LABEL_CHARS = 16
#: Dash pattern of the robustness DVH bands' edges (the nominal DVH is solid).
BAND_DASH = (3.0, 2.0)


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def plan_label(result: PlanResult, plan_name: str) -> str:
    """The plan's RT Plan Label as its RTPLAN.dcm carries it.

    A received plan (recalculated from an RT Ion Plan file, which is written back unchanged)
    gives the file's own label (its report's ``source_plan.rt_plan_label``; the plan is named
    by its RT Plan Name, which may be longer or another text). A plan labelled by its request
    keeps its own label, cut to 16 characters as it is exported. A plan computed here under
    the request's default label (the app's plans) is exported under the name the caller gives
    it (the app's DICOM export writes the plan's name, its first 16 characters as the label),
    so the document shows that.
    """
    import dataclasses

    from planning.dicom._export_common import clip_text
    from planning.planner import PlanRequest

    label = result.plan.label
    default = next(f.default for f in dataclasses.fields(PlanRequest) if f.name == "label")
    source = result.report.get("source_plan") or {}
    if source.get("path"):
        held = source.get("rt_plan_label", clip_text(label, PLAN_LABEL_CHARS, "plan label"))
        return str(held) or "none"
    if plan_name and label == default:
        return clip_text(plan_name, PLAN_LABEL_CHARS, "plan label") or label
    return clip_text(label, PLAN_LABEL_CHARS, "plan label") or label


def prescription_model(result: PlanResult) -> str | None:
    """The short name of the model of the prescription's Gy(RBE) or Gy when the document's
    dose is under another model (a recalculation under another model: of another kind, or
    another RBE model of the same unit, whose Gy(RBE) are another dose); None otherwise, and
    for a plan that names no model."""
    named = result.plan.rbe_label
    if (named is None or named in ("", "unknown")
            or named == model_label(result.model, result.structure_tissues)):
        return None
    return short_model_name(named)


def _prescription_model(result: PlanResult) -> str:
    """`` (mMKM)``: :func:`prescription_model` in brackets, "" for None."""
    named = prescription_model(result)
    return "" if named is None else f" ({named})"


def machine_text(result: PlanResult) -> str:
    """The machine whose beam data computed the dose (report.json's ``machine``) and, for a
    received plan naming another treatment machine, that name too."""
    used = str(result.report.get("machine") or result.plan.machine_name)
    named = result.plan.machine_name
    if named in (used, used[:TREATMENT_MACHINE_NAME_CHARS].rstrip()):
        return used
    return f"{used} (beam data used); the plan names {named}"


def _plan_facts(result: PlanResult, plan_name: str) -> TextTable:
    rx, plan, grid = result.plan.prescription, result.plan, result.dose_grid
    unit = prescription_unit_of(plan.rbe_model)
    spec = result.report.get("dose_specification_point")
    rows = [
        ("Target", rx.target),
        ("Prescribed dose", f"{rx.total_dose_gy_rbe:g} {unit} in "
                            f"{fractions_text(rx.n_fractions)}{_prescription_model(result)}"),
        ("Dose per fraction", f"{rx.dose_per_fraction_gy_rbe:.3f} {unit}"),
        ("Plan label", plan_label(result, plan_name)),
        ("Machine", machine_text(result)),
        ("Ion", f"Z={plan.ion_z}, A={plan.ion_a}"),
        ("HU calibration (HLUT)", describe_hlut_record(result.report.get("hlut"))),
        ("Dose grid", f"{' x '.join(str(n) for n in grid.shape[::-1])} voxels of "
                      f"{' x '.join(f'{s:g}' for s in grid.spacing_mm[::-1])} mm (x, y, z)"),
    ]
    if spec is not None:
        rows.append(("Dose specification point", _specification_text(spec, unit)))
    return TextTable((), tuple(rows))


def _specification_text(spec: Mapping[str, Any], unit: str) -> str:
    """The dose specification point and its doses per fraction: the RBE-weighted and the
    physical dose, or the one dose of a physical-dose plan (``unit`` Gy), whose two numbers
    are the same ("1.252 Gy and 1.252 Gy")."""
    x, y, z = spec["point_mm"]
    physical = f"{spec['physical_gy_per_fraction']:.3f} Gy"
    doses = (f"{physical} (physical dose)" if unit == "Gy" else
             f"{spec['rbe_weighted_gy_rbe_per_fraction']:.3f} {unit} and {physical}")
    return f"({x:.1f}, {y:.1f}, {z:.1f}) mm: {doses} per fraction"


def _flat(prefix: str, values: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += _flat(f"{name}.", value)
        else:
            rows.append((name, f"{value:g}" if isinstance(value, float) else str(value)))
    return rows


def _beams(result: PlanResult) -> TextTable:
    rows = []
    for bp in result.plan.beams:
        w = np.asarray(bp.weights, dtype=np.float64)
        on = w > 0
        energies = np.asarray(bp.spots.energy_mev_u)[on]
        layers = np.unique(np.asarray(bp.spots.layer)[on]).size
        x, y, z = bp.beam.isocenter_mm
        rows.append((bp.beam.label, f"{bp.beam.gantry_deg:g}", f"{bp.beam.couch_deg:g}",
                     f"{x:.1f}, {y:.1f}, {z:.1f}",
                     f"{energies.min():.1f} - {energies.max():.1f}" if energies.size else "-",
                     str(layers), f"{int(on.sum())} of {bp.spots.n_spots}",
                     f"{w.sum() * PRIMARIES_PER_WEIGHT_UNIT:.3e}",
                     f"{bp.range_shifter_wet_mm:g}"))
    return TextTable(("Beam", "Gantry (deg)", "Couch (deg)", "Isocentre x, y, z (mm)",
                      "Energy (MeV/u)", "Layers", "Spots", "Particles / fraction",
                      "Range shifter (mm WET)"), tuple(rows),
                     (0.08, 0.08, 0.08, 0.17, 0.15, 0.08, 0.11, 0.13, 0.12))


def _objectives(report: Mapping[str, Any], unit: str) -> TextTable:
    """The objectives and, for plans from 2026-12-07 on, how far the plan is from each: the
    RMS deviation over its points and its share of the objective's value. A recalculated plan
    (no ``objectives`` in its report) says that its objectives are not known here, not that it
    has none."""
    if "objectives" not in report:
        return TextTable((), (("Objectives", "not known here: a recalculated plan, optimized "
                                             "elsewhere or earlier"),))
    rows = []
    terms = any("share_percent" in o for o in report.get("objectives", ()))
    for o in report.get("objectives", ()):
        volume = o.get("volume_fraction")
        row = [o["structure"], o["type"], _num(o["dose_gy_rbe"]), f"{o['weight']:g}",
               "-" if volume is None else f"{100 * volume:g}"]
        if terms:
            rms = o.get("rms_deviation_gy_rbe")
            row += ["-" if rms is None else f"{rms:.2f}", f"{o.get('share_percent', 0):.1f}"]
        rows.append(tuple(row))
    header = ["Structure", "Objective", f"Dose ({unit})", "Weight", "Volume %"]
    if terms:
        header += [f"RMS deviation ({unit})", "Share %"]
        return TextTable(tuple(header), tuple(rows), (0.25, 0.16, 0.12, 0.08, 0.10, 0.17, 0.12))
    return TextTable(tuple(header), tuple(rows))


def _optimizer(report: Mapping[str, Any]) -> TextTable:
    if "optimizer_message" not in report:
        return TextTable((), (("Optimizer", "not optimized here (a recalculated plan)"),))
    delivery = report.get("delivery", {})
    count, parts = optimizer_passes(report)
    rows = [("Status", report_optimizer_status(report)),
            ("Iterations", _iterations_text(report.get("iterations"), count, parts)),
            ("Objective value", f"{report.get('objective_value', float('nan')):.6g} "
                                "(weighted mean squared dose deviations per fraction at the "
                                "optimizer's points; each objective's share and RMS deviation, "
                                "whole plan, in the objectives table)")]
    start = report.get("optimizer_start")
    if start:
        rows.append(("Started from", "the previous plan's spot weights, scaled to the "
                     "prescription" if start == "previous plan" else
                     "uniform spot weights scaled to the prescription"))
    refinement = report.get("refinement")
    if refinement:
        low, high = (100 * v for v in refinement["window"])
        spacing = refinement.get("check_grid_spacing_mm")
        if spacing:
            added = refinement["target_points_added"]
            which = (f"points of a {max(spacing):g} mm check grid above {high:g} % and "
                     f"dose-grid voxels below {low:g} %")
            hot = refinement.get("hot_point_objective")  # reports from 2026-12-07
            if hot:
                which += (f"; {hot['points']} points above "
                          f"{100 * refinement['watch_level']:g} % under a maximum-dose "
                          f"objective at {hot['level_pct']:g} %, weight {hot['weight']:g}")
                if "share_percent" in hot:
                    which += f" ({hot['share_percent']:.1f} % of the objective value)"
        else:  # reports before December 2026 checked the dose grid's voxels only
            added = refinement["target_voxels_added"]
            which = f"dose-grid voxels outside {low:g}-{high:g} %"
        rows.append(("Target points added (refinement)",
                     f"{added} ({which}); {refinement['iterations']} iterations after the "
                     "check"))
    correction = report.get("dose_correction")
    if correction:
        rows.append(("Pencil-beam halo in the optimizer",
                     f"matrices to {100 * correction['matrix_cutoff_fraction']:g} % of each "
                     f"spot's dose, the rest to "
                     f"{100 * report.get('lateral_cutoff_fraction', 0.99):g} % as a "
                     f"correction ({100 * correction['target_dose_share']:.1f} % of the "
                     f"target's dose; its update after the first pass moved the dose by at "
                     f"most {correction['largest_change_pct']:.2f} % of the prescription)"
                     + _settling(correction)))
    if delivery:
        rows.append(("Spots removed below the minimum",
                     f"{delivery['spots_removed']} of {delivery['spots_planned']} "
                     f"(minimum {delivery['min_particles_per_spot']:.3g} particles)"))
    return TextTable((), tuple(rows))


def _iterations_text(total: Any, count: int, parts: Sequence[tuple[str, int]]) -> str:
    """The "Iterations" row: the total and, over several passes, each pass's share."""
    if total is None:
        return "-"
    if count <= 1:
        return str(total)
    return f"{total} in {count} passes: " + "; ".join(f"{n} {what}" for what, n in parts)


def _dose_section(title: str, stats: Sequence[StructureDose], dashed: bool,
                  unrelated: str = "") -> DoseSection:
    """The metrics table of one dose; without V95 and V107 when ``unrelated`` says why that
    dose is not of the prescription's kind (:func:`unrelated_to_prescription`)."""
    relative = not unrelated
    columns = tuple(c for c in METRIC_COLUMNS
                    if relative or c not in PRESCRIPTION_RELATIVE_COLUMNS)
    rows = []
    for st in stats:
        m = st.metrics
        volumes = (_num(100 * m.v95, 1), _num(100 * m.v107, 1)) if relative else ()
        rows.append((st.name, *(_num(v) for v in (m.d98, m.d95, m.d50, m.d2, m.max, m.mean)),
                     *volumes))
    return DoseSection(title, TextTable(("Structure", *columns), tuple(rows)), dashed,
                       unrelated)


def unrelated_to_prescription(prescription: float, prescription_unit: str,
                              table_unit: str) -> str:
    """Why a table of a dose in ``table_unit`` has no V95 and V107 when the prescription
    (``prescription`` in ``prescription_unit``) is a dose of the other kind (physical, Gy,
    against RBE-weighted, Gy(RBE)); "" when both are of one kind, so that the volumes at 95 %
    and 107 % of the prescription mean something."""
    if table_unit == prescription_unit:
        return ""
    kinds = {"Gy": "a physical dose", "Gy(RBE)": "an RBE-weighted dose"}
    return (f"No V95 or V107: they are relative to the prescription, {prescription:g} "
            f"{prescription_unit}, {kinds[prescription_unit]}, and this table's dose is "
            f"{kinds[table_unit]}; its D-metrics and mean are in {table_unit}.")


def other_model_than_prescription(prescription: float, prescription_model: str | None,
                                  table_model: str) -> str:
    """Why a table of the RBE-weighted dose under ``table_model`` (the label of the exchange
    view's other model) has no V95 and V107 when the prescription's Gy(RBE) are of another model
    (``prescription_model``, its short name; :func:`same_prescription_model`); "" when they
    are of one model, or the prescription's model is unknown."""
    if same_prescription_model(prescription_model, table_model):
        return ""
    return (f"No V95 or V107: they are relative to the prescription, {prescription:g} "
            f"Gy(RBE) under {prescription_model}, and this table's dose is under "
            f"{short_model_name(table_model)}: the same Gy(RBE) number is a "
            "different physical dose under another model; its D-metrics and mean are in "
            "Gy(RBE) of its own model.")


def _other_models(result: PlanResult
                  ) -> list[tuple[RbeModel, str, NDArray[np.float32]]]:
    """The exchange view's doses under a model other than the dose's own: (model, its label
    with the LEM I side's tissues per structure, total dose in Gy(RBE))."""
    view = result.exchange
    if view is None:
        return []
    return [(m, label, d) for m, label, d in ((view.mkm, view.mkm_model, view.mkm_dose_gy_rbe),
                                              (view.lem, view.lem_model, view.lem_dose_gy_rbe))
            if m != result.model]


def _model_role(result: PlanResult) -> tuple[str, str]:
    """What the model of ``result``'s dose is to its plan, in full and short: the plan's own
    (a plan made here, or a recalculation under the model the plan names), one asked for in a
    recalculation (with the plan's own, when it names one), or the default for a plan that
    names none (report.json's ``rbe_model_source``)."""
    source = result.report.get("rbe_model_source", "plan")
    if source == "plan":
        return "the plan's model", "plan's model"
    if source == "requested":
        named = result.plan.rbe_label
        made = ("" if not named or named == model_label(result.model, result.structure_tissues)
                else f"; the plan was made under {named}")
        return f"the model asked for in this recalculation{made}", "recalculated"
    return "the default model: the plan names none", "default model"


def _drawn(result: PlanResult) -> bool:
    """Whether the other models' DVHs go on the plan's DVH axis: only when it is Gy(RBE) like
    theirs (a physical-dose plan's axis is Gy)."""
    return dose_unit_of(result.model) == "Gy(RBE)"


def dash_of(model: RbeModel) -> tuple[float, ...]:
    """The dash pattern of ``model``'s DVH lines when it is not the plan's model."""
    return MODEL_DASHES.get(model.name, OTHER_DASH)


def _warnings(result: PlanResult, views: Sequence[SliceView], restored: bool
              ) -> tuple[str, ...]:
    """The plan's notes (:func:`planning.plan_notes.plan_notes`, ``restored`` as there) and
    what concerns the document's pictures."""
    notes = list(plan_notes(result, restored=restored))
    target = result.plan.prescription.target
    if views and views[0].focus != f"the centre of {target}":
        notes.append(f"The views go through {views[0].focus}: the plan's target {target!r} "
                     "is not a contoured structure of this CT.")
    others = _other_models(result)
    if others and not _drawn(result):
        names = " and ".join(m.name for m, _, _ in others)
        notes.append(f"The DVHs show the plan's physical dose (Gy) only: the {names} doses of "
                     "the same spots are RBE-weighted (Gy(RBE)) and are not drawn on its axis; "
                     "their metrics are in their own tables.")
    notes.append("IonPlan is research software, not a certified medical device: check this "
                 "plan independently before any clinical use.")
    return tuple(notes)


def plan_document(result: PlanResult, plan_name: str, *,
                  created: datetime.datetime | None = None,
                  isodose_percent: Sequence[float] = STANDARD_ISODOSE_PERCENT,
                  restored: bool = False) -> PlanDocument:
    """The document of ``result`` under the name ``plan_name`` (e.g. "Plan 1"), its views with
    the isodose lines ``isodose_percent`` (% of the prescription: the app passes those on its
    screen; % of the dose's maximum for a dose of another kind than the prescription's).
    ``restored``: the app restored the plan from a saved session without its influence, so
    re-optimizing cannot continue from it (:func:`planning.plan_notes.optimizer_note`).

    A plan whose target is not a structure of the patient (a received plan) still gets its
    document: views through the dose maximum, and a warning.
    """
    model, rx = result.model, result.plan.prescription
    unit = dose_unit_of(model)
    rx_unit = prescription_unit_of(result.plan.rbe_model)
    reference = rx.total_dose_gy_rbe
    structure_set = result.patient.structure_set
    colours = ({} if structure_set is None else  # as the app draws them
               dict(zip(structure_set.names, structure_set.display_colours(), strict=True)))

    def stats(cube: NDArray[np.floating], labels: VoxelLabels | None = None
              ) -> list[StructureDose]:
        # The clinical DVHs of the report (structure samples from the contours).
        return structure_dose_statistics(result.patient, cube, result.dose_grid, reference,
                                         n_bins=DVH_BINS, labels=labels)

    plan_stats = stats(result.rbe_dose_gy_rbe, result.tissue_labels)
    label = model_label(model, result.structure_tissues)
    what = "Physical dose" if unit == "Gy" else f"RBE-weighted dose, {label}"
    role, short_role = _model_role(result)
    own = unrelated_to_prescription(reference, rx_unit, unit)
    sections = [_dose_section(f"{what} ({role}, {unit})", plan_stats, False, own)]
    doses: list[tuple[list[StructureDose], tuple[float, ...]]] = [(plan_stats, ())]
    legend: list[tuple[str, tuple[float, ...]]] = [(f"{model.name} ({short_role})", ())]
    drawn = _drawn(result)
    named = result.plan.rbe_label
    rx_short = short_model_name(named) if named and named != "unknown" else None
    for other, other_label, cube in _other_models(result):
        other_stats = stats(cube)
        unrelated = (unrelated_to_prescription(reference, rx_unit, "Gy(RBE)")
                     or other_model_than_prescription(reference, rx_short, other_label))
        sections.append(_dose_section(f"RBE-weighted dose, {other_label} (other model, "
                                      "same spots, Gy(RBE))", other_stats, drawn, unrelated))
        if drawn:  # on the plan's Gy(RBE) axis, each model in its own dash pattern
            doses.append((other_stats, dash_of(other)))
            legend.append((other.name, dash_of(other)))
    if not isinstance(model, PhysicalDose):
        sections.append(_dose_section("Physical dose (same spots, Gy)",
                                      stats(result.physical_dose_gy), False,
                                      unrelated_to_prescription(reference, rx_unit, "Gy")))
    lines = tuple(
        DvhLine(st.name, colours.get(st.name, DEFAULT_OUTLINE_RGB), st.dvh.dose_gy,
                st.dvh.volume_fraction, dash)
        for group, dash in doses for st in group)
    dose_max = float(np.max(result.rbe_dose_gy_rbe))
    # A dose of another kind than the prescription's: 100 % is its maximum, as in the app.
    rx_model = prescription_model(result)  # its Gy(RBE) are not this dose's: it is named
    rx_name = "prescription" if rx_model is None else f"prescription, {rx_model}"
    display = (dose_display(reference, dose_max, unit, isodose_percent, rx_name) if not own else
               dose_display(dose_max if dose_max > 0 else 1.0, dose_max, unit,
                            isodose_percent, "maximum"))
    views = target_views(result.patient, rx.target, result.dose_grid, result.rbe_dose_gy_rbe,
                         display)
    variant, parameters = _model_facts(model, result.structure_tissues)
    return PlanDocument(
        ident=identification(result.patient, plan_name, label, created),
        plan_facts=_plan_facts(result, plan_name),
        model_name=label,
        model_variant=variant,
        model_parameters=parameters,
        beams=_beams(result),
        objectives=_objectives(result.report, unit),
        optimizer=_optimizer(result.report),
        sections=tuple(sections),
        dvh_lines=lines,
        dvh_unit=unit,
        dvh_legend=tuple(legend),
        views=views,
        display=display,
        warnings=_warnings(result, views, restored),
        robustness=_robustness(result, colours),
    )


def _robustness(result: PlanResult, colours: Mapping[str, tuple[int, int, int]]
                ) -> RobustnessSection | None:
    """The robustness section from a robust evaluation's entries of the plan's report; None
    when the plan has none."""
    report = result.report
    if not all(key in report for key in ROBUST_REPORT_KEYS):
        return None
    robust = report["robust"]
    unit = dose_unit(report)
    e, s = float(robust["range_error_pct"]), float(robust["setup_error_mm"])
    combination = ("only combined with each other (and the nominal scenario)"
                   if robust.get("combined_only") else
                   "separately, and each setup shift with each stopping-power error"
                   if robust.get("combined") else "separately")
    settings = TextTable((), (
        ("Stopping-power error",
         f"+/-{e:g} % of the relative stopping power of the whole CT (+: ranges shorter, "
         "-: longer)" if e else "none"),
        ("Setup error", f"{s:g} mm isocentre shift in {robust['setup_directions']} "
                        "directions (the dose moves over the patient)" if s else "none"),
        ("Errors applied", combination),
        ("Scenarios", f"{robust['n_scenarios']}, the nominal one included"),
    ))
    ss = result.patient.structure_set
    target, organs = tabled_structures(
        report, target=result.plan.prescription.target,
        types=None if ss is None else {st.name: st.interpreted_type for st in ss.structures})
    names = [n for n in (target, *organs) if n is not None]
    bands = report["dvh_bands_gy_rbe"]
    lines = []
    for name in names:
        band = bands[name]
        volume = np.asarray(band["volume_percent"], dtype=np.float64)[::-1] / 100.0
        for key, dash in (("dose_nominal_gy_rbe", ()), ("dose_min_gy_rbe", BAND_DASH),
                          ("dose_max_gy_rbe", BAND_DASH)):
            # The dose each volume receives at least, turned into a cumulative DVH (dose up,
            # volume down) from zero dose at the whole volume.
            dose = np.maximum.accumulate(np.asarray(band[key], dtype=np.float64)[::-1])
            lines.append(DvhLine(name, colours.get(name, DEFAULT_OUTLINE_RGB),
                                 np.concatenate(([0.0], dose)),
                                 np.concatenate(([1.0], volume)), dash))
    header = ("Scenario", *(title for title, _ in SCENARIO_METRICS))
    tables = []
    for name in names:
        rows = tuple((row, *(f"{v:.2f}" for v in values))
                     for row, values in scenario_metric_rows(report, name))
        if rows:
            title = f"{name}{' (target)' if name == target else ''}, {unit}"
            tables.append((title, TextTable(header, rows, (0.34,) + (0.11,) * 6)))
    return RobustnessSection(settings, tuple(lines),
                             (("nominal", ()), ("lowest / highest over scenarios", BAND_DASH)),
                             unit, tuple(tables))


def _model_facts(model: RbeModel, structure_tissues: StructureTissues
                 ) -> tuple[str, TextTable]:
    """What formulation the model is and every parameter of it (from its record), then the
    LEM I tissue of each listed structure."""
    record = model_record(model, structure_tissues)
    rows = _flat("", record["parameters"])
    for entry in record.get("tissues_by_structure", ()):
        rows += _flat(f"structure {entry['structure']}: tissue.", entry["tissue"])
    return (str(record["variant"]), TextTable((), tuple(rows) or (("parameters", "none"),)))


def _settling(correction: dict[str, Any]) -> str:
    """The correction's settling passes and what they left (reports since December 2026)."""
    if "residual_pct" not in correction:
        return ""
    passes = correction["settling_passes"]
    return (f"; made again after the last pass{'es' if passes else ''} "
            f"({passes} further pass{'es' if passes != 1 else ''}, "
            f"{correction['settling_iterations']} iterations): the optimizer's dose at its "
            f"points within {correction['residual_pct']:.2f} % of the plan's (tolerance "
            f"{correction['tolerance_pct']:g} %)")
