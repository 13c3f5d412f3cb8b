"""The notes every front end shows beside a plan's numbers (planning.plan_notes)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from planning.plan_notes import (
    model_note,
    optimizer_note,
    optimizer_passes,
    optimizer_status,
    plan_notes,
)


def _result(message: str, *, model: str = "mMKM HSG", plan_model: str = "mMKM HSG"):
    return SimpleNamespace(
        report={"warnings": ["the dose grid is coarser than 2.5 mm"],
                "optimizer_message": message, "iterations": 199},
        patient=SimpleNamespace(import_warnings=lambda: ("CT: 2 slices missing",
                                                         "RS.dcm: Eye_L: open contour")),
        model=SimpleNamespace(describe=lambda: model), plan=SimpleNamespace(rbe_model=plan_model))


def test_an_optimizer_at_its_iteration_limit_is_named_in_plain_words():
    note = optimizer_note("STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT", 199)
    assert note is not None
    assert "iteration limit after 199 iterations" in note and "STOP" not in note
    assert optimizer_note("CONVERGENCE: REL_REDUCTION_OF_F_<=_FACTR*EPSMCH", 80) is None
    assert optimizer_note("", None) is None
    assert "(something new)" in optimizer_note("something new", 3)


def test_plan_notes_hold_the_report_patient_structure_set_optimizer_and_model_notes():
    notes = plan_notes(_result("STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT",
                               model="LEM I chordoma", plan_model="mMKM HSG"))
    assert notes[:3] == ("the dose grid is coarser than 2.5 mm", "CT: 2 slices missing",
                         "RS.dcm: Eye_L: open contour")
    assert "iteration limit" in notes[3]
    assert notes[4] == ("The doses were computed with LEM I chordoma; the plan was optimized "
                        "with mMKM HSG.")
    assert len(plan_notes(_result("CONVERGENCE: NORM_OF_PROJECTED_GRADIENT_<=_PGTOL"))) == 3


def test_a_note_report_json_already_holds_is_listed_once():
    """report.json's warnings now hold the optimizer's and the model's notes (user review:
    they were only in the PDF); reports from before do not: each note is shown once."""
    stopped = optimizer_note("STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT", 199)
    model = model_note("mMKM HSG", "LEM I chordoma")
    assert model == ("The doses were computed with LEM I chordoma; the plan was optimized "
                     "with mMKM HSG.")
    assert model_note("mMKM HSG", "mMKM HSG") is None
    result = _result("STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT", model="LEM I chordoma",
                     plan_model="mMKM HSG")
    result.report["warnings"] += [stopped, model]
    notes = plan_notes(result)
    assert notes.count(stopped) == 1 and notes.count(model) == 1 and len(notes) == 5


@pytest.mark.parametrize(("message", "words"), [
    ("CONVERGENCE: REL_REDUCTION_OF_F_<=_FACTR*EPSMCH",  # scipy before 1.15
     "converged: the objective stopped decreasing (its relative change per iteration fell "
     "below the tolerance)"),
    ("CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH",  # scipy 1.15 on
     "converged: the objective stopped decreasing (its relative change per iteration fell "
     "below the tolerance)"),
    ("CONVERGENCE: NORM_OF_PROJECTED_GRADIENT_<=_PGTOL",
     "converged: no spot weight could lower the objective any more (its projected gradient "
     "fell below the tolerance)"),
    ("STOP: TOTAL NO. of ITERATIONS REACHED LIMIT",
     "stopped at its iteration limit, before its convergence test was met"),
    ("STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT",
     "stopped at its limit of objective evaluations, before its convergence test was met"),
    ("ABNORMAL_TERMINATION_IN_LNSRCH",
     "stopped when its line search failed, before its convergence test was met"),
    ("something new", "ended with the optimizer's message 'something new'"),
])
def test_the_optimizer_status_is_in_words_not_scipys_text(message, words):
    assert optimizer_status(message) == words


#: A report of three optimizer passes: 133 iterations, 44 after the refinement's check, 22 in
#: one settling pass of the halo correction (the demo plan's).
THREE_PASSES = {"iterations": 199,
                "optimizer_message": "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT",
                "refinement": {"iterations": 44},
                "dose_correction": {"settling_passes": 1, "settling_iterations": 22}}


def test_the_status_and_note_of_several_passes_are_the_last_passs():
    """scipy's message is the last pass's (a settling pass of about 30 iterations), not of
    the 199 iterations in all: the words say so and give no count beside the limit."""
    count, parts = optimizer_passes(THREE_PASSES)
    assert count == 3
    assert parts == [("in the first optimization", 133), ("after the refinement's check", 44),
                     ("in 1 settling pass of the halo correction", 22)]
    assert optimizer_passes({}) == (1, [])
    assert optimizer_passes({"iterations": 80}) == (1, [("in the first optimization", 80)])
    assert optimizer_status(THREE_PASSES["optimizer_message"], passes=3) == (
        "the last of its 3 passes stopped at its iteration limit, before its convergence test "
        "was met")
    assert optimizer_status("CONVERGENCE: REL_REDUCTION_OF_F_<=_FACTR*EPSMCH", passes=3) \
        .startswith("converged (the last of its 3 passes): the objective stopped decreasing")
    note = optimizer_note(THREE_PASSES["optimizer_message"], 199, passes=3)
    assert note is not None and note.startswith(
        "The last of the optimizer's 3 passes stopped at its iteration limit (199 iterations "
        "in all), before its convergence test was met")
    result = _result("")
    result.report.update(THREE_PASSES)
    assert plan_notes(result)[3] == note


def test_a_restored_plan_at_its_iteration_limit_is_computed_again_to_continue():
    """Review: a plan restored from the workspace said "re-optimizing continues from these
    spot weights", which Re-optimize then refused (it keeps no influence)."""
    message = "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
    assert optimizer_note(message, 199).endswith("re-optimizing continues from these spot "
                                                 "weights.")
    note = optimizer_note(message, 199, restored=True)
    assert note is not None and "continues from these spot weights" not in note
    assert "restored from a saved session" in note and "compute it again (Compute plan)" in note
    assert plan_notes(_result(message), restored=True)[3] == note
    # A report that holds the optimizer's note among its warnings (plans since December 2026):
    # the restored plan's note takes its place.
    saved = _result(message)
    saved.report["warnings"] = [optimizer_note(message, 199)]
    saved.report["iterations"] = 199
    notes = plan_notes(saved, restored=True)
    assert note in notes and not any("continues from these spot weights" in n for n in notes)


def test_a_settling_pass_that_settled_makes_no_iteration_limit_note():
    """Every default demo plan warned that its optimizer stopped at its iteration limit: its
    last pass is a settling pass of the halo correction, which has a sixth of the iterations
    by design; when the settling met its tolerance that says nothing against the plan."""
    from planning.plan_notes import settled_by_design

    message = "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
    result = _result(message)
    result.report.update(iterations=199, dose_correction={
        "settling_passes": 1, "settling_iterations": 33, "residual_pct": 0.1,
        "tolerance_pct": 0.2})
    assert settled_by_design(result.report)
    assert not any("iteration limit" in n for n in plan_notes(result))
    result.report["dose_correction"]["residual_pct"] = 0.3  # did not settle: the note stays
    assert not settled_by_design(result.report)
    assert any("iteration limit" in n for n in plan_notes(result))
