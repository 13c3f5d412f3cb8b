"""The notes every front end shows beside a plan's numbers (planning.plan_notes)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from planning.plan_notes import (
    as_sentence,
    model_note,
    optimizer_note,
    optimizer_passes,
    optimizer_status,
    plan_notes,
    report_optimizer_status,
    settled_by_design,
)


def _result(message: str, *, model: str = "mMKM HSG", plan_model: str = "mMKM HSG"):
    return SimpleNamespace(
        report={"warnings": ["the dose grid is coarser than 2.5 mm"],
                "optimizer_message": message, "iterations": 199},
        patient=SimpleNamespace(import_warnings=lambda: ("CT: 2 slices missing",
                                                         "RS.dcm: Eye_L: open contour")),
        model=SimpleNamespace(describe=lambda: model), structure_tissues=(),
        plan=SimpleNamespace(rbe_model=plan_model, rbe_label=plan_model))


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
    assert notes[:3] == ("The dose grid is coarser than 2.5 mm", "CT: 2 slices missing",
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
    assert model == ("the doses were computed with LEM I chordoma; the plan was optimized "
                     "with mMKM HSG.")
    assert model_note("mMKM HSG", "mMKM HSG") is None
    assert stopped is not None
    result = _result("STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT", model="LEM I chordoma",
                     plan_model="mMKM HSG")
    result.report["warnings"] += [stopped, model]
    notes = plan_notes(result)
    assert notes.count(as_sentence(stopped)) == 1 and notes.count(as_sentence(model)) == 1
    assert len(notes) == 5


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
        "the last of the optimizer's 3 passes stopped at its iteration limit (199 iterations "
        "in all), before its convergence test was met")
    result = _result("")
    result.report.update(THREE_PASSES)
    assert plan_notes(result)[3] == as_sentence(note)


def test_a_restored_plan_at_its_iteration_limit_is_computed_again_to_continue():
    """Review: a plan restored from the workspace said "re-optimizing continues from these
    spot weights", which Re-optimize then refused (it keeps no influence)."""
    message = "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
    assert optimizer_note(message, 199).endswith("re-optimizing continues from these spot "
                                                 "weights.")
    note = optimizer_note(message, 199, restored=True)
    assert note is not None and "continues from these spot weights" not in note
    assert "restored from a saved session" in note and "compute it again (Compute plan)" in note
    assert plan_notes(_result(message), restored=True)[3] == as_sentence(note)
    # A report that holds the optimizer's note among its warnings (plans since December 2026):
    # the restored plan's note takes its place.
    saved = _result(message)
    saved.report["warnings"] = [optimizer_note(message, 199)]
    saved.report["iterations"] = 199
    notes = plan_notes(saved, restored=True)
    assert as_sentence(note) in notes
    assert not any("continues from these spot weights" in n for n in notes)
    # Reports before 2026-12-08 held the note capitalised: replaced as well.
    saved.report["warnings"] = [as_sentence(optimizer_note(message, 199) or "")]
    notes = plan_notes(saved, restored=True)
    assert not any("continues from these spot weights" in n for n in notes)


def test_a_settling_pass_that_settled_makes_no_iteration_limit_note():
    """Every default demo plan warned that its optimizer stopped at its iteration limit: its
    last pass is a settling pass of the halo correction, which has a sixth of the iterations
    by design; when the settling met its tolerance that says nothing against the plan."""
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


@pytest.fixture(scope="module")
def limited_plan():
    """A small demo plan (6 mm spots, 5 mm grid) at 60 iterations a pass: its first
    optimization stops at its iteration limit (measured: 60 + 20 at the minimum spot weight)."""
    from planning.dicom import load_demo_patient
    from planning.optimization import OptimizerSettings
    from planning.plan_config import PlanConfig
    from planning.planner import PlanRequest, make_plan

    config = PlanConfig(optimizer=OptimizerSettings(max_iterations=60, min_spot_weight=0.0))
    return make_plan(PlanRequest(target="PTV", total_dose_gy_rbe=57.6, n_fractions=16,
                                 gantry_deg=(90.0, 270.0), patient=load_demo_patient(),
                                 spot_spacing_mm=6.0, dose_grid_mm=5.0, device="cpu",
                                 config=config), keep_influence=False)


def test_a_first_optimization_at_its_iteration_limit_is_named_in_the_status(limited_plan):
    """Review: report.json kept the last pass's message only; a plan whose first optimization
    stopped at its iteration limit, its settling passes then settling, said so nowhere. Each
    pass's end is recorded and the document's Status row names the stopped ones; no warning,
    since later passes continued from its weights (measured: report_optimizer_note)."""
    report = limited_plan.report
    ends = report["optimizer_pass_messages"]
    assert [e["pass"] for e in ends][:2] == ["first", "refinement"]
    assert {e["pass"] for e in ends[2:]} <= {"settling"}
    assert len(ends) == optimizer_passes(report)[0]
    assert sum(e["iterations"] for e in ends) == report["iterations"]
    assert ends[-1]["message"] == report["optimizer_message"]  # kept for older readers
    first = ends[0]
    assert first["message"].startswith("STOP: TOTAL NO. OF ITERATIONS")
    assert first["iterations"] >= 60
    status = report_optimizer_status(report)
    assert status.startswith(
        f"the first optimization stopped at its iteration limit after {first['iterations']} "
        "iterations, before its convergence test was met; ")
    assert "converged" not in status.split(";")[0]
    if settled_by_design(report):
        assert not [w for w in report["warnings"] if "convergence test" in w]
    else:
        (note,) = [w for w in report["warnings"] if "convergence test" in w]
        assert note.startswith(f"the last of the optimizer's {len(ends)} passes")


def _passes(*ends, settled=True, start="uniform"):
    """A report of the optimizer's passes: (pass, message) each, 10 iterations."""
    return {"optimizer_message": ends[-1][1], "iterations": 10 * len(ends),
            "optimizer_start": start,
            "refinement": {"iterations": 10 * sum(p == "refinement" for p, _ in ends)},
            "dose_correction": {"settling_passes": sum(p == "settling" for p, _ in ends),
                                "settling_iterations": 10 * sum(p == "settling"
                                                                for p, _ in ends),
                                "residual_pct": 0.1 if settled else 0.3,
                                "tolerance_pct": 0.2},
            "optimizer_pass_messages": [{"pass": p, "iterations": 10, "message": m}
                                        for p, m in ends]}


LIMIT = "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
CONVERGED = "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"


def test_only_a_last_pass_that_stopped_early_is_noted_and_the_status_names_every_one():
    from planning.plan_notes import report_optimizer_note

    # Earlier passes at their limit: later passes continued from their weights; no note.
    assert report_optimizer_note(_passes(("first", LIMIT), ("refinement", LIMIT),
                                         ("settling", LIMIT))) is None
    assert report_optimizer_note(_passes(("first", LIMIT), ("refinement", CONVERGED))) is None
    # The last pass at its limit (not a settling pass that settled): named.
    assert report_optimizer_note(_passes(("first", CONVERGED), ("refinement", LIMIT))) == (
        "the last of the optimizer's 2 passes (the pass after the refinement's check) stopped "
        "at its iteration limit after 10 iterations, before its convergence test was met: the "
        "plan is what it reached then; re-optimizing continues from these spot weights.")
    note = report_optimizer_note(_passes(("first", LIMIT), ("refinement", LIMIT),
                                         ("settling", CONVERGED), ("settling", LIMIT),
                                         settled=False), restored=True)
    assert note == (
        "the last of the optimizer's 4 passes (settling pass 2 of the halo correction) "
        "stopped at its iteration limit after 10 iterations, before its convergence test was "
        "met: the plan is what it reached then; restored from a saved session, it keeps no "
        "influence to re-optimize from: compute it again (Compute plan), then re-optimizing "
        "continues from the new plan's spot weights.")
    # The Status row names every pass that stopped, the last one's status after them.
    assert report_optimizer_status(_passes(("first", LIMIT), ("refinement", LIMIT),
                                           ("settling", CONVERGED))) == (
        "the first optimization stopped at its iteration limit after 10 iterations, before "
        "its convergence test was met; the pass after the refinement's check stopped at its "
        "iteration limit after 10 iterations, before its convergence test was met; "
        + optimizer_status(CONVERGED, passes=3))
    # One pass only: the optimizer's note as before.
    assert report_optimizer_note(_passes(("first", LIMIT))) == optimizer_note(LIMIT, 10)


def test_a_report_without_the_passes_messages_keeps_its_last_pass_note():
    from planning.plan_notes import report_optimizer_note

    old = _passes(("first", LIMIT), ("refinement", LIMIT), ("settling", LIMIT))
    del old["optimizer_pass_messages"]
    assert report_optimizer_note(old) is None  # the settling settled
    assert report_optimizer_status(old) == optimizer_status(LIMIT, passes=3)
    old["dose_correction"]["residual_pct"] = 0.3
    assert report_optimizer_note(old) == optimizer_note(LIMIT, 30, passes=3)


def test_notes_are_warnings_in_lower_case_and_sentences_in_the_list():
    """Review finding 8: the optimizer's and the model's notes began with a capital after
    "ionplan: warning:" (report.json's warnings, the terminal, batch), unlike every other
    warning; the plan document and the app list every note as a sentence."""
    from planning.plan_notes import report_optimizer_note

    stopped = optimizer_note("STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT", 199, passes=3)
    model = model_note(None, "LEM I chordoma")
    assert stopped is not None and stopped.startswith("the last of the optimizer's 3 passes")
    assert model is not None and model.startswith("the doses were computed with LEM I")
    assert str(report_optimizer_note(_passes(("first", LIMIT)))).startswith(
        "the optimizer stopped at its iteration limit")
    assert as_sentence(stopped).startswith("The last of the optimizer's")
    for kept in ("out/RS.dcm: ROI 'PTV' is empty", "pydicom: a bad UID", "mMKM dose", "CT: 2",
                 "'PTV' is empty", ""):
        assert as_sentence(kept) == kept
