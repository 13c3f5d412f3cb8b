"""What a reader of a plan must be told beside its numbers, in one list for every front end.

The plan report's own warnings (coarse grid, unmet limits, ...), the patient's and the
structure set's (from their import), an optimizer that stopped before its convergence test was
met, and a dose computed with another RBE model than the plan was optimized with. The PDF
(:mod:`planning.document.from_plan`) adds what concerns its pictures; the app's Dose tab shows
these as they are. :func:`optimizer_status` says in the same words how the optimizer ended,
for the PDF's optimizer table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from planning.planner import PlanResult

#: What scipy's L-BFGS-B stop messages mean, by their start once normalised
#: (:func:`_normalised`: upper case, "_" read as a space, as scipy before 1.15 wrote them):
#: (start, whether the convergence test was met, plain words). A converged optimizer's words
#: say which test it met; a stopped one's complete "The optimizer stopped ...".
_MEANINGS = (
    ("CONVERGENCE: REL", True, "the objective stopped decreasing (its relative change per "
                               "iteration fell below the tolerance)"),
    ("CONVERGENCE: NORM OF PROJECTED GRADIENT", True,
     "no spot weight could lower the objective any more (its projected gradient fell below "
     "the tolerance)"),
    ("CONVERGENCE", True, "its convergence test was met"),
    ("STOP: TOTAL NO. OF ITERATIONS", False, "at its iteration limit"),
    ("STOP: TOTAL NO. OF F", False, "at its limit of objective evaluations"),
    ("ABNORMAL", False, "when its line search failed"),
)


def _normalised(message: str) -> str:
    """``message`` in upper case with "_" read as a space (scipy before 1.15 wrote
    ``REL_REDUCTION_OF_F_<=_FACTR*EPSMCH``, later versions ``RELATIVE REDUCTION OF F``)."""
    return " ".join(message.replace("_", " ").upper().split())


def _meaning(message: str) -> tuple[bool, str] | None:
    """(converged, plain words) of scipy's L-BFGS-B ``message``; None for one not known."""
    text = _normalised(message)
    return next(((met, words) for start, met, words in _MEANINGS if text.startswith(start)),
                None)


def _iterations_text(iterations: int | None) -> str:
    """"199 iterations" ("1 iteration"); "" when the number is not known."""
    return "" if iterations is None else (
        f"{iterations} iteration{'' if iterations == 1 else 's'}")


def optimizer_status(message: str, iterations: int | None = None) -> str:
    """How the optimizer ended after ``iterations``, in words for the plan document's "Status"
    row: e.g. "converged: the objective stopped decreasing (its relative change per iteration
    fell below the tolerance)" or "stopped at its iteration limit (200 iterations), before its
    convergence test was met". scipy's own text (report.json keeps it as
    ``optimizer_message``) is quoted only for a message not known here."""
    meaning = _meaning(message)
    count = _iterations_text(iterations)
    if meaning is None:
        said = message.strip() or "no message"
        return f"ended with the optimizer's message {said!r}" + (f" ({count})" if count else "")
    converged, words = meaning
    if converged:  # the number of iterations is the document's next row
        return f"converged: {words}"
    return (f"stopped {words}" + (f" ({count})" if count else "")
            + ", before its convergence test was met")


def optimizer_note(message: str, iterations: int | None = None) -> str | None:
    """The note for an optimizer that stopped with ``message`` (scipy's L-BFGS-B text) after
    ``iterations``; None when it converged or no message is known."""
    text = message.strip()
    if not text:
        return None
    meaning = _meaning(text)
    if meaning is not None and meaning[0]:
        return None
    how = f"({text})" if meaning is None else meaning[1]
    after = f" after {iterations} iterations" if iterations else ""
    return (f"The optimizer stopped {how}{after}, before its convergence test was met: the "
            "plan is what it reached then; re-optimizing continues from these spot weights.")


def plan_notes(result: PlanResult) -> tuple[str, ...]:
    """The notes of the module docstring for ``result``, in that order."""
    report = result.report
    notes = [str(w) for w in report.get("warnings", ())]
    notes += [str(w) for w in result.patient.warnings]
    if result.patient.structure_set is not None:
        notes += [str(w) for w in result.patient.structure_set.warnings]
    stopped = optimizer_note(str(report.get("optimizer_message", "")),
                             report.get("iterations"))
    if stopped is not None:
        notes.append(stopped)
    if result.model.describe() != result.plan.rbe_model:
        notes.append(f"The doses were computed with {result.model.describe()}; the plan was "
                     f"optimized with {result.plan.rbe_model}.")
    return tuple(notes)
