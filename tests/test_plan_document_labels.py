"""What the plan document's labels and numbers say, against what they are (a physicist's
review): metrics relative to the prescription only for a dose of the prescription's kind.

Plans made without the dose engine (:mod:`tests.workspace_factory`), so the document's
content (:func:`planning.document.from_plan.plan_document`) and its PDF text are checked in
seconds.
"""

from __future__ import annotations

import dataclasses
import io

import pytest
from pypdf import PdfReader

from planning.document.content import DoseSection, RobustnessSection, TextTable
from planning.document.from_plan import plan_document
from planning.document.pdf import pdf_bytes
from planning.rbe import PhysicalDose
from tests.workspace_factory import PRESCRIPTION_GY_RBE, synthetic_plan_result

#: The metric columns relative to the prescription.
PRESCRIPTION_RELATIVE_COLUMNS = ("V95 %", "V107 %")


@pytest.fixture(scope="module")
def lem_plan():
    """A LEM I plan with its exchange view (mMKM beside it) on the demo head."""
    from planning import api

    return synthetic_plan_result(api.demo_patient(), 3)


def _flat_pdf_text(doc) -> str:
    reader = PdfReader(io.BytesIO(pdf_bytes(doc)))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def _section(sections: tuple[DoseSection, ...], start: str) -> DoseSection:
    (section,) = [s for s in sections if s.title.startswith(start)]
    return section


def _physical_dose_plan(lem_plan):
    """``lem_plan`` as a plan made under the physical model (prescribed in Gy)."""
    plan = dataclasses.replace(lem_plan.plan, rbe_model=PhysicalDose().describe(),
                               rbe=PhysicalDose())
    return dataclasses.replace(lem_plan, plan=plan, model=PhysicalDose())


def test_the_physical_dose_table_has_no_prescription_relative_volumes(lem_plan):
    """V95 and V107 of the physical dose against the Gy(RBE) prescription were 0 % for every
    structure (the physical dose is about a third of it): they are left out, and the table
    says why; the RBE-weighted tables keep them."""
    doc = plan_document(lem_plan, "Plan 1")
    physical = _section(doc.sections, "Physical dose")
    assert physical.title == "Physical dose (same spots, Gy)"
    assert not set(PRESCRIPTION_RELATIVE_COLUMNS) & set(physical.metrics.header)
    assert physical.metrics.header[-1] == "Dmean"
    assert all(len(row) == len(physical.metrics.header) for row in physical.metrics.rows)
    assert f"relative to the prescription, {PRESCRIPTION_GY_RBE:g} Gy(RBE)" in physical.note
    own = doc.sections[0]  # the plan's model: its prescription's
    assert own.metrics.header[-2:] == PRESCRIPTION_RELATIVE_COLUMNS and own.note == ""
    flat = _flat_pdf_text(doc)
    table = flat[flat.index("Physical dose (same spots, Gy)"):flat.index("Warnings")]
    assert "V95" not in table.split("No V95")[0] and "V107 %" not in table
    assert "No V95 or V107: they are relative to the prescription, 57.6 Gy(RBE)" in table


def test_another_models_table_has_no_volumes_of_the_prescription(lem_plan):
    """The exchange view's mMKM table of a LEM I plan gave "GTV V95 0.0 %": the share above
    95 % of the LEM I prescription, read off an mMKM dose (review). The same Gy(RBE) number
    is another physical dose under another model: no V95 or V107 there, and a note; a
    recalculation under mMKM keeps them in the table of the plan's own LEM I dose."""
    doc = plan_document(lem_plan, "Plan 1")
    other = _section(doc.sections, "RBE-weighted dose, mMKM")
    assert other.title.endswith("(other model, same spots, Gy(RBE))")
    assert not set(PRESCRIPTION_RELATIVE_COLUMNS) & set(other.metrics.header)
    assert other.metrics.header[-1] == "Dmean"
    assert all(len(row) == len(other.metrics.header) for row in other.metrics.rows)
    assert other.note.startswith(f"No V95 or V107: they are relative to the prescription, "
                                 f"{PRESCRIPTION_GY_RBE:g} Gy(RBE) under LEM I chordoma, "
                                 "averaged, and this table's dose is under mMKM")
    assert "different physical dose under another model" in other.note
    flat = _flat_pdf_text(doc)
    table = flat[flat.index("(other model, same spots, Gy(RBE))"):]
    assert "V95" not in table.split("No V95")[0]
    # Under mMKM, the LEM I dose beside it is the prescription's model: V95 and V107 stay.
    x = lem_plan.exchange
    recalc = dataclasses.replace(lem_plan, model=x.mkm,
                                 report={**lem_plan.report, "rbe_model": x.mkm_model,
                                         "rbe_model_source": "requested"})
    lem = _section(plan_document(recalc, "Plan 1").sections, "RBE-weighted dose, LEM I")
    assert lem.title.endswith("(other model, same spots, Gy(RBE))")
    assert lem.metrics.header[-2:] == PRESCRIPTION_RELATIVE_COLUMNS and lem.note == ""


def test_a_physical_dose_plan_leaves_the_volumes_out_of_the_rbe_weighted_tables(lem_plan):
    """The other way round: a plan prescribed in Gy (physical) shows V95 and V107 of its own
    dose only, not of the other models' Gy(RBE) doses."""
    doc = plan_document(_physical_dose_plan(lem_plan), "Plan 1")
    own = doc.sections[0]
    assert own.title.startswith("Physical dose")
    assert own.metrics.header[-2:] == PRESCRIPTION_RELATIVE_COLUMNS and own.note == ""
    others = doc.sections[1:]
    assert others and all(s.title.startswith("RBE-weighted dose") for s in others)
    for section in others:
        assert not set(PRESCRIPTION_RELATIVE_COLUMNS) & set(section.metrics.header)
        assert "the prescription, 57.6 Gy, a physical dose" in section.note


def test_a_physical_recalculation_of_a_gy_rbe_plan_keeps_the_prescription_in_gy_rbe(lem_plan):
    """recalc --rbe physical of a 57.6 Gy(RBE) plan: its document said "Prescribed dose 57.6
    Gy in 16 fractions", drew isodoses in % of 57.6 Gy over a dose of at most 19.7 Gy and
    gave V95 0.0 (review). The prescription keeps its unit and model; the physical dose's
    isodoses, colour scale and table are not tied to it: 100 % is its maximum, as on screen."""
    physical = PhysicalDose()
    recalc = dataclasses.replace(lem_plan, model=physical, exchange=None,
                                 report={**lem_plan.report, "rbe_model": physical.describe(),
                                         "rbe_model_source": "requested"})
    doc = plan_document(recalc, "Plan 1")
    facts = dict(doc.plan_facts.rows)
    assert facts["Prescribed dose"] == (f"{PRESCRIPTION_GY_RBE:g} Gy(RBE) in 16 fractions "
                                        "(LEM I chordoma, averaged)")
    assert facts["Dose per fraction"] == f"{PRESCRIPTION_GY_RBE / 16:.3f} Gy(RBE)"
    (own,) = doc.sections
    assert own.title.startswith("Physical dose (the model asked for in this recalculation")
    assert not set(PRESCRIPTION_RELATIVE_COLUMNS) & set(own.metrics.header)
    assert f"relative to the prescription, {PRESCRIPTION_GY_RBE:g} Gy(RBE)" in own.note
    top = float(recalc.rbe_dose_gy_rbe.max())
    assert doc.display.reference_dose == pytest.approx(top)
    assert doc.display.reference_name == "maximum" and doc.display.unit == "Gy"
    assert doc.display.wash_max == pytest.approx(1.1 * top)
    flat = _flat_pdf_text(doc)
    assert f"Isodose lines (solid), 100 % = {top:.4g} Gy (maximum)" in flat
    assert f"{PRESCRIPTION_GY_RBE:g} Gy in" not in flat and "% of 57.6" not in flat
    # The plan's own model keeps the prescription as its 100 %.
    own_doc = plan_document(lem_plan, "Plan 1")
    assert own_doc.display.reference_dose == PRESCRIPTION_GY_RBE
    assert own_doc.display.reference_name == "prescription"
    assert "Isodose lines (solid), 100 % = 57.6 Gy(RBE) (prescription)" in _flat_pdf_text(own_doc)


def test_the_machine_is_the_beam_data_that_computed_the_dose(lem_plan):
    """A received plan naming machine CENTRE_B_R1, recalculated with IonPlan's generic beam
    data: the document said "Machine CENTRE_B_R1" while report.json and its own warning named
    the generic machine (review). It names the beam data used and the plan's machine."""
    received = dataclasses.replace(lem_plan.plan, machine_name="CENTRE_B_R1")
    recalc = dataclasses.replace(lem_plan, plan=received,
                                 report={**lem_plan.report, "machine": "IonPlan generic"})
    facts = dict(plan_document(recalc, "Plan 1").plan_facts.rows)
    assert facts["Machine"] == ("IonPlan generic (beam data used); the plan names "
                                "CENTRE_B_R1")
    # A plan computed with the machine it names (one of 16 characters or more: its plans
    # carry the first 16) names it once.
    for machine, named in (("IonPlan generic", "IonPlan generic"),
                           ("Centre B room 1 carbon", "Centre B room 1 ")):
        same = dataclasses.replace(lem_plan, plan=dataclasses.replace(lem_plan.plan,
                                                                      machine_name=named.rstrip()),
                                   report={**lem_plan.report, "machine": machine})
        assert dict(plan_document(same, "Plan 1").plan_facts.rows)["Machine"] == machine


def test_the_optimizer_status_is_in_words_and_scipys_text_stays_in_the_report(lem_plan):
    """The "Status" row showed scipy's L-BFGS-B text ("CONVERGENCE: REL_REDUCTION_OF_F_<=_
    FACTR*EPSMCH"); it says in words how the optimizer ended, and report.json keeps scipy's
    text (``optimizer_message``)."""
    raw = "CONVERGENCE: REL_REDUCTION_OF_F_<=_FACTR*EPSMCH"
    report = {**lem_plan.report, "optimizer_message": raw, "iterations": 80,
              "objective_value": 0.25}
    doc = plan_document(dataclasses.replace(lem_plan, report=report), "Plan 1")
    rows = dict(doc.optimizer.rows)
    assert rows["Status"] == ("converged: the objective stopped decreasing (its relative "
                              "change per iteration fell below the tolerance)")
    assert rows["Iterations"] == "80"
    flat = _flat_pdf_text(doc)
    assert "Status converged: the objective stopped decreasing" in flat
    assert "REL_REDUCTION" not in flat and "CONVERGENCE" not in flat
    assert report["optimizer_message"] == raw
    # Several passes: the status is the last pass's, the iterations are counted per pass.
    passes = {**report, "optimizer_message": "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT",
              "iterations": 199,
              "refinement": {"iterations": 44, "target_points_added": 28, "window": [0.95, 1.05],
                             "check_grid_spacing_mm": [1.25, 1.25, 1.25], "watch_level": 1.03},
              "dose_correction": {"settling_passes": 1, "settling_iterations": 22,
                                  "matrix_cutoff_fraction": 0.8, "target_dose_share": 0.09,
                                  "largest_change_pct": 5.6}}
    rows = dict(plan_document(dataclasses.replace(lem_plan, report=passes), "Plan 1")
                .optimizer.rows)
    assert rows["Status"] == ("the last of its 3 passes stopped at its iteration limit, before "
                              "its convergence test was met")
    assert rows["Iterations"] == ("199 in 3 passes: 133 in the first optimization; 44 after "
                                  "the refinement's check; 22 in 1 settling pass of the halo "
                                  "correction")
    # Each pass's message kept (plans since December 2026): a first optimization stopped at
    # its limit is named in the status, though the last pass (a settling pass that settled)
    # says nothing against the plan; the status no longer reads as the last pass's alone.
    ends = [{"pass": "first", "iterations": 133, "message": passes["optimizer_message"]},
            {"pass": "refinement", "iterations": 44, "message": raw},
            {"pass": "settling", "iterations": 22, "message": raw}]
    each = {**passes, "optimizer_message": raw, "optimizer_pass_messages": ends,
            "dose_correction": {**passes["dose_correction"], "residual_pct": 0.1,
                                "tolerance_pct": 0.2}}
    doc = plan_document(dataclasses.replace(lem_plan, report=each), "Plan 1")
    assert dict(doc.optimizer.rows)["Status"] == (
        "the first optimization stopped at its iteration limit after 133 iterations, before "
        "its convergence test was met; converged (the last of its 3 passes): the objective "
        "stopped decreasing (its relative change per iteration fell below the tolerance)")
    # No warning of it: the later passes continued from its weights (plan_notes).
    assert [w for w in doc.warnings if "convergence test" in w] == []


def test_a_restored_plans_document_says_it_is_computed_again_to_re_optimize(lem_plan):
    """The document of a plan the app restored from a saved session (no kept influence) said
    "re-optimizing continues from these spot weights", which Re-optimize refuses for it; it
    says what the app's Dose tab says."""
    stopped = {**lem_plan.report, "optimizer_message": "STOP: TOTAL NO. OF ITERATIONS "
               "REACHED LIMIT", "iterations": 199}
    plan = dataclasses.replace(lem_plan, report=stopped)
    assert any(w.endswith("re-optimizing continues from these spot weights.")
               for w in plan_document(plan, "Plan 1").warnings)
    (note,) = [w for w in plan_document(plan, "Plan 1", restored=True).warnings
               if "iteration limit" in w]
    assert note.startswith("The optimizer stopped at its iteration limit after 199 iterations")
    assert note.endswith("restored from a saved session, it keeps no influence to re-optimize "
                         "from: compute it again (Compute plan), then re-optimizing continues "
                         "from the new plan's spot weights.")


#: Headings of the plan document's sections (pdf.py's story).
HEADINGS = {"Prescription and plan", "RBE model", "Beams", "Objectives", "Optimizer", "Dose",
            "Dose-volume histograms", "Robustness", "Warnings", "Approval"}


def test_no_page_ends_with_a_heading_whose_table_is_on_the_next_page(lem_plan):
    """With 21 objectives the "Optimizer" heading was the last line of page 1 and its table
    began page 2 untitled: every heading stays with what it heads. The objectives table
    grows row by row over the counts that move the break across the optimizer's heading."""
    doc = plan_document(lem_plan, "Plan 1")
    header = ("Structure", "Objective", "Dose (Gy(RBE))", "Weight", "Volume %")
    for count in range(16, 28):
        rows = tuple((f"Organ {i}", "max_dose", "50.00", "5", "-") for i in range(count))
        grown = dataclasses.replace(doc, objectives=TextTable(header, rows))
        pages = PdfReader(io.BytesIO(pdf_bytes(grown))).pages
        last_lines = [page.extract_text().strip().splitlines()[-1].strip() for page in pages]
        assert not HEADINGS & set(last_lines), (count, last_lines)


def test_a_recalculated_plan_says_its_objectives_are_not_known_not_none(lem_plan):
    """A recalculated plan's objectives table read "none" under the column titles, as if the
    plan had been made without objectives: its report has none because it was optimized
    elsewhere (or earlier), and the document says so, as the optimizer table does."""
    assert "objectives" not in lem_plan.report and "optimizer_message" not in lem_plan.report
    doc = plan_document(lem_plan, "Plan 1")
    assert doc.objectives.header == ()
    assert doc.objectives.rows == (("Objectives", "not known here: a recalculated plan, "
                                                  "optimized elsewhere or earlier"),)
    assert dict(doc.optimizer.rows)["Optimizer"] == "not optimized here (a recalculated plan)"
    made_here = dataclasses.replace(lem_plan, report={**lem_plan.report, "objectives": []})
    assert plan_document(made_here, "Plan 1").objectives.header[0] == "Structure"


def test_the_specification_point_of_a_physical_dose_plan_gives_its_dose_once(lem_plan):
    """A physical-dose plan's specification point read "1.252 Gy and 1.252 Gy per fraction"
    (its RBE-weighted dose is its physical dose): one number, said to be physical."""
    spec = {"point_mm": [27.5, 12.5, 10.0], "physical_gy_per_fraction": 1.252,
            "rbe_weighted_gy_rbe_per_fraction": 1.252}
    report = {**lem_plan.report, "dose_specification_point": spec}
    physical = dataclasses.replace(_physical_dose_plan(lem_plan), report=report)
    rows = dict(plan_document(physical, "Plan 1").plan_facts.rows)
    assert rows["Dose specification point"] == ("(27.5, 12.5, 10.0) mm: 1.252 Gy (physical "
                                                "dose) per fraction")
    rbe = {**spec, "rbe_weighted_gy_rbe_per_fraction": 3.604}
    lem = dataclasses.replace(lem_plan, report={**report, "dose_specification_point": rbe})
    rows = dict(plan_document(lem, "Plan 1").plan_facts.rows)
    assert rows["Dose specification point"] == ("(27.5, 12.5, 10.0) mm: 3.604 Gy(RBE) and "
                                                "1.252 Gy per fraction")


def test_structure_names_in_robustness_headings_are_shown_as_named(lem_plan):
    """The scenario tables' headings were markup, not text: a structure named with "<b>" or
    "&" lost characters, and one in Japanese had no font. They are text like every cell."""
    doc = plan_document(lem_plan, "Plan 1")
    name = "脳幹 <b>PRV</b> & 3 mm"
    table = TextTable(("Scenario", "D98"), (("nominal", "1.00"),))
    section = RobustnessSection(TextTable((), (("Scenarios", "1"),)), doc.dvh_lines[:1],
                                (("nominal", ()),), "Gy(RBE)", ((f"{name}, Gy(RBE)", table),))
    text = _flat_pdf_text(dataclasses.replace(doc, robustness=section))
    # pypdf breaks the line where the font changes: compare without white space.
    assert "".join(f"{name}, Gy(RBE)".split()) in "".join(text.split())


def test_structure_outlines_are_dashed_where_isodose_lines_are_solid(lem_plan):
    """On the demo head the GTV outline is the red of the 107 % isodose and the PTV outline
    the orange of the 95 % one: a thin red closed line inside the target read as a 107 % hot
    spot (review). Outlines are dashed, isodose lines solid, and a legend names the
    structures and their dashed lines."""
    from reportlab.graphics.shapes import Group, PolyLine

    from planning.document.drawings import view_drawing

    doc = plan_document(lem_plan, "Plan 1")
    axial = doc.views[0]
    colour = {s.label: s.colour_rgb for s in (*axial.structures, *axial.isodoses)}
    assert colour["GTV"] == colour["107 %"] and colour["PTV"] == colour["95 %"]

    def polylines(node):
        for child in getattr(node, "contents", ()):
            if isinstance(child, PolyLine):
                yield child
            elif isinstance(child, Group):
                yield from polylines(child)

    drawing = view_drawing(axial, 200.0)
    structures, isodoses = (list(polylines(group)) for group in drawing.contents[:2])
    assert len(structures) == sum(len(s.lines) for s in axial.structures) > 0
    assert len(isodoses) == sum(len(s.lines) for s in axial.isodoses) > 0
    assert all(line.strokeDashArray for line in structures)
    assert not any(line.strokeDashArray for line in isodoses)
    flat = _flat_pdf_text(doc)
    legend = flat[flat.index("Structure outlines (dashed):"):]
    assert "GTV" in legend.split("Three planes")[0] and "PTV" in legend.split("Three planes")[0]
    assert "Structure outlines thin and dashed, isodose lines thicker and solid" in flat
