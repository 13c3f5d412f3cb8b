"""The notes every front end shows beside a plan's numbers (planning.plan_notes)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from planning.plan_notes import optimizer_note, optimizer_status, plan_notes


def _result(message: str, *, model: str = "mMKM HSG", plan_model: str = "mMKM HSG"):
    return SimpleNamespace(
        report={"warnings": ["the dose grid is coarser than 2.5 mm"],
                "optimizer_message": message, "iterations": 199},
        patient=SimpleNamespace(warnings=("CT: 2 slices missing",),
                                structure_set=SimpleNamespace(warnings=("Eye_L: open contour",))),
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
                         "Eye_L: open contour")
    assert "iteration limit" in notes[3]
    assert notes[4] == ("The doses were computed with LEM I chordoma; the plan was optimized "
                        "with mMKM HSG.")
    assert len(plan_notes(_result("CONVERGENCE: NORM_OF_PROJECTED_GRADIENT_<=_PGTOL"))) == 3


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
     "stopped at its iteration limit (199 iterations), before its convergence test was met"),
    ("STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT",
     "stopped at its limit of objective evaluations (199 iterations), before its convergence "
     "test was met"),
    ("ABNORMAL_TERMINATION_IN_LNSRCH",
     "stopped when its line search failed (199 iterations), before its convergence test was "
     "met"),
    ("something new", "ended with the optimizer's message 'something new' (199 iterations)"),
])
def test_the_optimizer_status_is_in_words_not_scipys_text(message, words):
    assert optimizer_status(message, 199) == words
