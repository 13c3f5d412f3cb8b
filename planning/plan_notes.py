"""What a reader of a plan must be told beside its numbers, in one list for every front end.

The plan report's own warnings (coarse grid, unmet limits, ...), the patient's and the
structure set's (from their import), an optimizer that stopped before its convergence test was
met, and a dose computed with another RBE model than the plan was optimized with. The PDF
(:mod:`planning.document.from_plan`) adds what concerns its pictures; the app's Dose tab shows
these as they are. :func:`report_optimizer_status` says in the same words how the optimizer
ended, and :func:`optimizer_passes` what passes it made, for the PDF's optimizer table.

The notes are made in the words of a warning, in lower case, as report.json's ``warnings`` and
the terminal's ``ionplan: warning:`` lines give them (they are among them); :func:`plan_notes`
gives each as a sentence (:func:`as_sentence`), as the PDF and the app list them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from planning.rbe.record import model_label

if TYPE_CHECKING:
    from planning.planner import PlanResult

#: What scipy's L-BFGS-B stop messages mean, by their start once normalised
#: (:func:`_normalised`: upper case, "_" read as a space, as scipy before 1.15 wrote them):
#: (start, whether the convergence test was met, plain words). A converged optimizer's words
#: say which test it met; a stopped one's complete "the optimizer stopped ...".
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


def optimizer_passes(report: Mapping[str, Any]) -> tuple[int, list[tuple[str, int]]]:
    """How many passes the optimizer made and their iterations, as far as ``report`` tells:
    the first optimization (the rest of the total), the pass after the refinement's check
    (``refinement.iterations``) and the halo correction's settling passes
    (``dose_correction.settling_passes``, ``settling_iterations``: reports since December
    2026); (1, []) for a report without an iteration count."""
    total = report.get("iterations")
    if not isinstance(total, int):
        return 1, []
    count, later = 1, []
    refined = int((report.get("refinement") or {}).get("iterations", 0))
    if refined:
        count += 1
        later.append(("after the refinement's check", refined))
    correction = report.get("dose_correction") or {}
    settling = int(correction.get("settling_passes", 0))
    if settling:
        count += settling
        later.append((f"in {settling} settling pass{'es' if settling > 1 else ''} of the "
                      "halo correction", int(correction["settling_iterations"])))
    first = total - sum(n for _, n in later)
    return count, [("in the first optimization", first), *later]


def settled_by_design(report: Mapping[str, Any]) -> bool:
    """Whether the optimizer's last pass was a halo correction's settling pass and the settling
    met its tolerance (``dose_correction``: ``settling_passes``, ``residual_pct`` within
    ``tolerance_pct``). Such a pass has a sixth of the plan's iterations by design
    (:mod:`planning.engine.dose_correction`): its stopping at that limit says nothing against
    the plan, and no note is made of it (every default demo plan had one)."""
    correction = report.get("dose_correction") or {}
    residual, tolerance = correction.get("residual_pct"), correction.get("tolerance_pct")
    return (int(correction.get("settling_passes", 0)) > 0 and residual is not None
            and tolerance is not None and float(residual) <= float(tolerance))


#: The optimizer's passes as report.json's ``optimizer_pass_messages`` names them ("pass"),
#: in words ("{n}": the settling pass's number).
PASS_WORDS = {"first": "the first optimization",
              "refinement": "the pass after the refinement's check",
              "settling": "settling pass {n} of the halo correction"}


def stopped_passes(report: Mapping[str, Any]) -> list[tuple[str, str, int, bool]] | None:
    """(the pass in words, how it stopped, its iterations, whether it is the last pass) of
    each of the optimizer's passes that stopped before its convergence test was met, from
    report.json's ``optimizer_pass_messages`` (plans since December 2026; None for a report
    without it). How it stopped is in words, or scipy's message in brackets where it is not
    known here. Left out are the halo correction's settling passes when the settling met its
    tolerance (:func:`settled_by_design`: their short limit is by design)."""
    ends = report.get("optimizer_pass_messages")
    if not isinstance(ends, list):
        return None
    settled = settled_by_design(report)
    stopped, settling = [], 0
    for i, end in enumerate(ends):
        kind = str(end.get("pass"))
        settling += kind == "settling"
        text = str(end.get("message", "")).strip()
        meaning = _meaning(text)
        if not text or (meaning is not None and meaning[0]) or (kind == "settling" and settled):
            continue
        words = PASS_WORDS.get(kind, f"the {kind} pass").format(n=settling)
        stopped.append((words, f"({text})" if meaning is None else meaning[1],
                        int(end.get("iterations", 0)), i == len(ends) - 1))
    return stopped


def report_optimizer_status(report: Mapping[str, Any]) -> str:
    """:func:`optimizer_status` of ``report``'s last pass (``optimizer_message``), preceded by
    the passes before it that stopped before their convergence test (:func:`stopped_passes`),
    e.g. "the first optimization stopped at its iteration limit after 60 iterations, before
    its convergence test was met; the last of its 3 passes converged: ..."."""
    last = optimizer_status(str(report.get("optimizer_message", "")),
                            passes=optimizer_passes(report)[0])
    earlier = [f"{who} stopped {how} after {n} iterations, before its convergence test was met"
               for who, how, n, is_last in stopped_passes(report) or [] if not is_last]
    return "; ".join([*earlier, last])


def optimizer_status(message: str, *, passes: int = 1) -> str:
    """How the optimizer ended, in words for the plan document's "Status" row: e.g.
    "converged: the objective stopped decreasing (its relative change per iteration fell below
    the tolerance)" or "stopped at its iteration limit, before its convergence test was met".

    ``message`` is scipy's L-BFGS-B text of the last of the optimizer's ``passes`` (the first
    optimization, the refinement's, the halo correction's settling passes; report.json keeps it
    as ``optimizer_message``); with more than one pass the words say that they are the last
    one's. No number of iterations: each pass has its own limit (the document's "Iterations"
    row counts them). scipy's own text is quoted only for a message not known here."""
    meaning = _meaning(message)
    last = f"the last of its {passes} passes" if passes > 1 else ""
    if meaning is None:
        said = message.strip() or "no message"
        return f"{last + ' ' if last else ''}ended with the optimizer's message {said!r}"
    converged, words = meaning
    if converged:
        return f"converged{f' ({last})' if last else ''}: {words}"
    return f"{last + ' ' if last else ''}stopped {words}, before its convergence test was met"


def optimizer_note(message: str, iterations: int | None = None, *, passes: int = 1,
                   restored: bool = False) -> str | None:
    """The note for an optimizer whose last of ``passes`` stopped with ``message`` (scipy's
    L-BFGS-B text) after ``iterations`` in all; None when it converged or no message is
    known. ``restored``: the plan came back from a saved session without its influence, so
    re-optimizing cannot continue from it."""
    text = message.strip()
    if not text:
        return None
    meaning = _meaning(text)
    if meaning is not None and meaning[0]:
        return None
    how = f"({text})" if meaning is None else meaning[1]
    if passes > 1:
        who = f"the last of the optimizer's {passes} passes"
        after = f" ({iterations} iterations in all)" if iterations else ""
    else:
        who, after = "the optimizer", f" after {iterations} iterations" if iterations else ""
    return (f"{who} stopped {how}{after}, before its convergence test was met: the "
            f"plan is what it reached then; {_then(restored)}")


def _then(restored: bool) -> str:
    """What re-optimizing a plan that stopped early does (``restored``: see
    :func:`optimizer_note`)."""
    return ("restored from a saved session, it keeps no influence to re-optimize from: "
            "compute it again (Compute plan), then re-optimizing continues from the new "
            "plan's spot weights." if restored
            else "re-optimizing continues from these spot weights.")


def report_optimizer_note(report: Mapping[str, Any], *, restored: bool = False) -> str | None:
    """The note for an optimizer whose last pass in ``report`` (report.json) stopped before its
    convergence test was met, naming that pass (:func:`stopped_passes`), e.g. "the last of the
    optimizer's 2 passes (the pass after the refinement's check) stopped at its iteration
    limit after 44 iterations, ..."; None when it converged or was a settling pass that
    settled. A report without the passes' messages (before December 2026) gets
    :func:`optimizer_note` of its last pass, with the same exception. ``restored``: see
    :func:`optimizer_note`.

    Earlier passes that stopped at their limit are not noted (the plan document's Status row,
    :func:`report_optimizer_status`, names them): each later pass continues the optimization
    from their spot weights. Measured on the demo patient (57.6 Gy(RBE) in 16 fractions, 6 mm
    spots, 5 mm grid, 2026-12-07): with the default 100 iterations a pass every pass stops at
    its limit (133 / 44 / 22 iterations); run to convergence (1000 a pass) the PTV's D98 / D95
    / D2 move from 53.06 / 54.22 / 58.76 to 53.09 / 54.27 / 58.72 Gy(RBE) and the brainstem's
    D2 from 28.10 to 28.22, at 60 a pass D95 is 54.18: a note on every plan would say nothing
    that matters."""
    count = optimizer_passes(report)[0]
    stopped = stopped_passes(report)
    if stopped is None:
        return (None if settled_by_design(report) else optimizer_note(
            str(report.get("optimizer_message", "")), report.get("iterations"),
            passes=count, restored=restored))
    last = [(who, how, n) for who, how, n, is_last in stopped if is_last]
    if not last:
        return None
    ((who, how, n),) = last
    who = ("the optimizer" if count == 1
           else f"the last of the optimizer's {count} passes ({who})")
    return (f"{who} stopped {how} after {n} iterations, before its convergence test was met: "
            f"the plan is what it reached then; {_then(restored)}")


def model_note(plan_model: str | None, dose_model: str) -> str | None:
    """The note for a dose computed with ``dose_model`` (its model's label,
    :func:`planning.rbe.record.model_label`) of a plan optimized with ``plan_model``
    (``Plan.rbe_label``; None: the plan names none); None when they are the same model."""
    if plan_model is None:
        return f"the doses were computed with {dose_model}; the plan names no RBE model."
    if dose_model == plan_model:
        return None
    return (f"the doses were computed with {dose_model}; the plan was optimized with "
            f"{plan_model}.")


def plan_notes(result: PlanResult, *, restored: bool = False) -> tuple[str, ...]:
    """The notes of the module docstring for ``result``, in that order, each once and as a
    sentence (:func:`as_sentence`; report.json's
    warnings hold the optimizer's and the model's notes and the patient's import warnings
    (:meth:`planning.patient.Patient.import_warnings`) of plans and recalculations made since
    December 2026; older reports do not). ``restored``: see :func:`optimizer_note` (its note
    replaces the report's)."""
    report = result.report
    notes = [str(w) for w in report.get("warnings", ())]
    # Reports since December 2026 hold them too, in the same words (kept once below).
    notes += result.patient.import_warnings()
    stopped = report_optimizer_note(report, restored=restored)
    if stopped is not None:
        if restored:  # the report's note says re-optimizing continues: not from this plan
            plain = as_sentence(str(report_optimizer_note(report)))
            notes = [n for n in notes if as_sentence(n) != plain]
        notes.append(stopped)
    # The default model's case is the report's warning (planning.compare.recalc).
    if result.plan.rbe_model is not None or report.get("rbe_model_source") != "default":
        other = model_note(result.plan.rbe_label,
                           model_label(result.model, result.structure_tissues))
        if other is not None:
            notes.append(other)
    # As sentences; reports before 2026-12-08 held the optimizer's note capitalised.
    return tuple(dict.fromkeys(as_sentence(n) for n in notes))


def as_sentence(note: str) -> str:
    """``note`` (a warning as report.json and the terminal give it, after "ionplan: warning:",
    in lower case) as a sentence of a list: its first letter in upper case when its first word
    is a plain lower-case word ("the dose grid ..." -> "The dose grid ..."); a note that begins
    with a file's path ("out/RS.dcm: ..."), a library's name ("pydicom: ...") or a name
    spelt as it is ("mMKM ...") is left as it is."""
    return note[:1].upper() + note[1:] if re.match(r"[a-z]+[ ,]", note) else note
