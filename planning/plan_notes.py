"""What a reader of a plan must be told beside its numbers, in one list for every front end.

The plan report's own warnings (coarse grid, unmet limits, ...), the patient's and the
structure set's (from their import), an optimizer that stopped before its convergence test was
met, and a dose computed with another RBE model than the plan was optimized with. The PDF
(:mod:`planning.document.from_plan`) adds what concerns its pictures; the app's Dose tab shows
these as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from planning.planner import PlanResult

#: Start of scipy's L-BFGS-B message when its convergence test was met.
_CONVERGED = "CONVERGENCE"
#: Plain words for scipy's L-BFGS-B stop messages (their start, upper case).
_STOPS = {"STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT": "at its iteration limit",
          "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT": "at its evaluation limit",
          "ABNORMAL": "when its line search failed"}


def optimizer_note(message: str, iterations: int | None = None) -> str | None:
    """The note for an optimizer that stopped with ``message`` (scipy's L-BFGS-B text) after
    ``iterations``; None when it converged or no message is known."""
    text = message.strip()
    if not text or text.upper().startswith(_CONVERGED):
        return None
    how = next((words for start, words in _STOPS.items() if text.upper().startswith(start)),
               f"({text})")
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
