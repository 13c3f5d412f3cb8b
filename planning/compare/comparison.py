"""The compare pipeline (``ionplan compare``) and its typed result.

Two doses, A (the reference) and B (evaluated), each an RT Dose file, a plan output folder or a
dose in memory (:mod:`planning.compare.sources`), of the same Frame of Reference (different
frames are an error naming both), are brought onto one grid (A's when the grids are equal,
else the common grid of :func:`planning.compare.resample.common_grid`, trilinear), then:

- dose-difference statistics of B - A (:mod:`planning.compare.dose_diff`);
- the 3D gamma index of B against A for each criterion (default global 3 %/3 mm and
  2 %/2 mm, 10 % low-dose threshold of A's maximum), with timings;
- DVHs and metric differences per structure (:mod:`planning.compare.dvh_compare`) when a CT with
  structures is available (given, or found in a side's folder);
- the cross-model view of each side that is a plan with a CT (:mod:`planning.compare.cross_model`;
  one for both sides when they are one plan on one grid).

A physical dose (Gy) against an RBE-weighted dose (Gy(RBE)) are two quantities: neither B - A,
its statistics nor the gamma index is computed (a dose difference or gamma between them has no
clinical meaning; :attr:`ComparisonResult.gamma_skipped_reason` says why). The voxel ratio of
the RBE-weighted to the physical dose, an effective RBE, takes the difference's place
(:mod:`planning.compare.dose_ratio`); the DVHs and metrics stay, each side in its unit, with
B / A for B - A (docs/physics.md, "Comparing a physical with an RBE-weighted dose").
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.compare.cross_model import CrossModelView, cross_model_view
from planning.compare.dose_diff import DoseDifferenceStats, difference_stats
from planning.compare.dose_ratio import EffectiveRbeStats, effective_rbe
from planning.compare.dvh_compare import (
    StructureComparison,
    compare_structures,
    dvh_curves_dict,
    structure_masks,
)
from planning.compare.gamma import GammaCriteria, GammaResult, gamma_index
from planning.compare.resample import (
    common_grid,
    grids_equal,
    resample_to_grid,
    share_outside,
)
from planning.compare.sources import DoseSide, load_side
from planning.dose_grid import DoseGrid
from planning.errors import InputError, PlanningError
from planning.machine import Machine
from planning.patient import Patient
from planning.progress import CancelToken, ProgressCallback, report, stage_progress
from planning.rbe.record import describe_structure_tissues, short_model_name
from planning.structure_dose import grid_of

#: Gamma criteria of a comparison by default: (dose %, distance-to-agreement mm).
DEFAULT_GAMMA = ((3.0, 3.0), (2.0, 2.0))
#: HU of air, outside the CT (for the CT underlay of the report's slices).
AIR_HU = -1000.0
#: Why a comparison has no cross-model view: it was not asked for (``CompareSettings``'s
#: ``cross_model`` off), or neither side is a plan with a CT.
CROSS_MODEL_NOT_ASKED = "not asked for (--no-cross-model, or a batch job's no_cross_model = true)"
CROSS_MODEL_NO_PLAN = "neither side is a plan (RTPLAN.dcm) with a CT"


@dataclass(frozen=True)
class CompareSettings:
    """What to compute.

    Attributes
    ----------
    gamma : tuple of (dose_percent, dta_mm)
        Gamma criteria, global; dose in (0, 100] %, DTA in (0, 50] mm.
    threshold_percent : float
        Low-dose threshold of the gamma index and the difference statistics, percent of the
        reference (A) maximum, in [0, 100); of the effective RBE of a physical and an
        RBE-weighted dose, percent of the physical dose's maximum.
    quantity : {"rbe", "physical", "mkm", "lem1"}
        Which dose of a plan output folder.
    prescription_gy : float or None
        Total prescription for V95 and the percentages of the prescription; None takes the
        prescription of a side's plan where it is of that side's dose unit (Gy(RBE), or Gy
        for a plan made under the physical-dose model; ``DoseSide.dose_prescription``). Of a
        physical and an RBE-weighted dose, it is the RBE-weighted side's.
    cross_model : bool
        Compute the cross-model view of the sides that are plans with a CT.
    device : {"auto", "cpu", "gpu"}
        Dose engine device of the cross-model view.
    hlut_path : str or None
        HU to RSP curve of the cross-model view.
    lem_tissue : str or None
        LEM I tissue of the cross-model view.
    """

    gamma: tuple[tuple[float, float], ...] = DEFAULT_GAMMA
    threshold_percent: float = 10.0
    quantity: str = "rbe"
    prescription_gy: float | None = None
    cross_model: bool = True
    device: str = "auto"
    hlut_path: str | None = None
    lem_tissue: str | None = None

    def __post_init__(self) -> None:
        if not self.gamma:
            raise InputError("give at least one gamma criterion, e.g. 3,3")
        for dose_percent, dta_mm in self.gamma:
            if not (math.isfinite(dose_percent) and 0 < dose_percent <= 100):
                raise InputError(f"gamma dose criterion must lie in (0, 100] %, got "
                                 f"{dose_percent:g}")
            if not (math.isfinite(dta_mm) and 0 < dta_mm <= 50):
                raise InputError(f"gamma distance criterion must lie in (0, 50] mm, got "
                                 f"{dta_mm:g}")
        if not (math.isfinite(self.threshold_percent) and 0 <= self.threshold_percent < 100):
            raise InputError(f"low-dose threshold must lie in [0, 100) %, got "
                             f"{self.threshold_percent:g}")
        if self.prescription_gy is not None and not (
                math.isfinite(self.prescription_gy) and self.prescription_gy > 0):
            raise InputError(f"prescription must be a positive dose, got {self.prescription_gy}")

    def criteria(self) -> tuple[GammaCriteria, ...]:
        """The gamma criteria (global, normalized to the reference maximum on the reference's
        own grid, see :func:`compare`)."""
        return tuple(GammaCriteria(dose_percent=float(d), dta_mm=float(r),
                                   low_dose_threshold_percent=self.threshold_percent)
                     for d, r in self.gamma)


@dataclass(frozen=True, eq=False)
class ComparisonResult:
    """Everything a comparison found (all cubes (nz, ny, nx) float32 on ``grid``).

    Attributes
    ----------
    a, b : DoseSide
        The reference and the evaluated side as loaded (their own grids).
    grid : DoseGrid
        The common grid.
    resampled : tuple of str
        Roles (``"A"``, ``"B"``) of the sides resampled onto ``grid`` (empty when the grids
        were equal), whatever the sides' own labels.
    reference_gy, evaluated_gy : arrays
        A and B on ``grid``, each in its unit (:attr:`unit_a`, :attr:`unit_b`).
    difference_gy : array or None
        B - A on ``grid``; None when A and B are two quantities (:attr:`mixed_units`).
    stats : DoseDifferenceStats or None
        Difference statistics; None when A and B are two quantities.
    gamma : tuple of GammaResult
        One per criterion, in the settings' order; empty when A and B are two quantities.
    gamma_seconds : tuple of float
        Time of each gamma evaluation.
    structures : tuple of StructureComparison
        Per structure DVHs and metrics (empty without a CT with structures).
    cross_model : tuple of CrossModelView
        The cross-model view of each side that is a plan with a CT.
    patient : Patient or None
        The CT used for structures.
    ct_hu : array or None
        The CT on ``grid`` (HU, air outside), for display.
    focus_index : tuple of 3 int
        (z, y, x) grid index of the slices shown: the target's centre, else A's maximum.
    focus_name : str
        What ``focus_index`` is (``"PTV centre"``, ``"reference maximum"``).
    settings : CompareSettings
    warnings : tuple of str
    timings_s : dict
    gamma_skipped_reason : str or None
        Why neither the gamma index nor B - A was computed (``"A is physical dose (Gy), B is
        RBE-weighted dose (Gy(RBE))"``); None when they were.
    rbe_ratio : array or None
        When A and B are two quantities: RBE-weighted over physical dose (B / A or A / B,
        :attr:`rbe_ratio_text`) on ``grid`` where the physical dose reaches the low-dose
        threshold of its maximum, NaN elsewhere; None otherwise.
    rbe_ratio_stats : EffectiveRbeStats or None
        Its statistics.
    v95_note : str
        Why a side of the same quantity has no V95 (its dose is under another RBE model than
        the prescription's); ``""`` when none lacks it for that reason.
    cross_model_skipped_reason : str or None
        Why :attr:`cross_model` is empty: :data:`CROSS_MODEL_NOT_ASKED`,
        :data:`CROSS_MODEL_NO_PLAN`, or each side's reason (``"A: no CT (give --ct)"``);
        None when there is a view.
    """

    a: DoseSide
    b: DoseSide
    grid: DoseGrid
    resampled: tuple[str, ...]
    reference_gy: NDArray[np.float32]
    evaluated_gy: NDArray[np.float32]
    difference_gy: NDArray[np.float32] | None
    stats: DoseDifferenceStats | None
    gamma: tuple[GammaResult, ...]
    gamma_seconds: tuple[float, ...]
    structures: tuple[StructureComparison, ...]
    cross_model: tuple[CrossModelView, ...]
    patient: Patient | None
    ct_hu: NDArray[np.float32] | None
    focus_index: tuple[int, int, int]
    focus_name: str
    settings: CompareSettings
    warnings: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)
    gamma_skipped_reason: str | None = None
    rbe_ratio: NDArray[np.float32] | None = None
    rbe_ratio_stats: EffectiveRbeStats | None = None
    v95_note: str = ""
    cross_model_skipped_reason: str | None = None

    @property
    def unit_a(self) -> str:
        """A's unit: ``"Gy(RBE)"`` for an RBE-weighted dose, ``"Gy"`` for a physical one."""
        return self.a.unit

    @property
    def unit_b(self) -> str:
        """B's unit (as :attr:`unit_a`)."""
        return self.b.unit

    @property
    def unit(self) -> str:
        """The unit of both doses and of B - A: ``"Gy(RBE)"`` when both are RBE-weighted,
        ``"Gy"`` when both are physical; for one of each, A's unit vs B's (``"Gy vs
        Gy(RBE)"``), which no single number of the comparison has."""
        a, b = self.unit_a, self.unit_b
        return a if a == b else f"{a} vs {b}"

    @property
    def mixed_units(self) -> bool:
        """Whether A and B are two quantities: one physical (Gy), one RBE-weighted
        (Gy(RBE))."""
        return self.unit_a != self.unit_b

    @property
    def rbe_ratio_text(self) -> str | None:
        """Which ratio :attr:`rbe_ratio` is: ``"B / A"`` (A physical) or ``"A / B"`` (B
        physical); None when A and B are one quantity."""
        if not self.mixed_units:
            return None
        return "B / A" if self.unit_a == "Gy" else "A / B"

    def to_report(self) -> dict[str, Any]:
        """The content of report.json (no cubes; DVH curves rounded)."""
        def side(s: DoseSide) -> dict[str, Any]:
            return {"label": s.label, "source": s.source, "dose_type": s.dose_type,
                    "unit": s.unit,
                    "description": s.summary(), "model": s.description,
                    "frame_of_reference_uid": s.frame_of_reference_uid,
                    "max_gy": float(s.dose_gy.max()), "grid": _grid_dict(s.grid),
                    "plan": s.plan.label if s.plan is not None else None,
                    "prescription": None if s.prescription is None else {
                        "target": s.prescription.target,
                        "total_dose_gy_rbe": s.prescription.total_dose_gy_rbe,
                        "n_fractions": s.prescription.n_fractions,
                        "unit": s.prescription_unit or "Gy(RBE)",
                        # Whose Gy(RBE) it is, as a plan's report.json names it.
                        "model": short_model_name(s.prescription_model)
                        if s.prescription_model else None}}

        named = next((x for x in (self.a, self.b) if x.patient_id or x.patient_name), None)
        return {
            # The CT's patient; without a CT, the patient the dose files name.
            "patient": (self.patient.record() if self.patient is not None else None
                        if named is None else {"patient_id": named.patient_id,
                                               "patient_name": named.patient_name,
                                               "from": f"RT Dose of {named.label}"}),
            "a": side(self.a), "b": side(self.b), "unit": self.unit,
            "grid": _grid_dict(self.grid), "resampled": list(self.resampled),
            "focus": {"name": self.focus_name, "index_zyx": list(self.focus_index),
                      "lps_mm": [float(v) for v in self.grid.voxel_centers_lps(
                          [np.ravel_multi_index(self.focus_index, self.grid.shape)])[0]]},
            "dose_difference": None if self.stats is None else self.stats.as_dict(),
            "dose_difference_skipped_reason": self.gamma_skipped_reason,
            "gamma_skipped_reason": self.gamma_skipped_reason,
            "effective_rbe": None if self.rbe_ratio_stats is None else {
                "ratio": self.rbe_ratio_text,
                "definition": "RBE-weighted dose (Gy(RBE)) / physical dose (Gy) per voxel, "
                              "where the physical dose reaches the threshold percentage of "
                              "its maximum",
                **self.rbe_ratio_stats.as_dict()},
            "gamma": [{"criteria": g.criteria.label,
                       "dose_percent": g.criteria.dose_percent, "dta_mm": g.criteria.dta_mm,
                       "low_dose_threshold_percent": g.criteria.low_dose_threshold_percent,
                       "global": g.criteria.global_normalization,
                       "normalization_dose_gy": g.normalization_dose_gy,
                       "pass_rate_percent": g.pass_rate_percent,
                       "evaluated_voxels": g.evaluated_voxels,
                       "voxels_at_cap": g.voxels_at_cap, "mean_gamma": g.mean_gamma,
                       "mean_gamma_capped": g.mean_capped,
                       "gamma_p95": g.gamma_p95, "gamma_p95_capped": g.p95_capped,
                       "seconds": t}
                      for g, t in zip(self.gamma, self.gamma_seconds, strict=True)],
            "structures": {s.name: s.as_dict() for s in self.structures},
            **({"v95_note": self.v95_note} if self.v95_note else {}),
            "dvh": dvh_curves_dict(self.structures),
            "cross_model": [v.as_dict() for v in self.cross_model],
            "cross_model_skipped_reason": self.cross_model_skipped_reason,
            "warnings": list(self.warnings),
            "timings_s": dict(self.timings_s),
        }


def other_model_v95_note(prescribed: DoseSide, other: DoseSide) -> str:
    """Why ``other`` has no V95: the prescription (of ``prescribed``'s plan) is in the Gy(RBE)
    of another RBE model than ``other``'s dose."""
    assert prescribed.prescription is not None
    return (f"No V95 of {other.label}: it is relative to the prescription, "
            f"{prescribed.prescription.total_dose_gy_rbe:g} Gy(RBE) under "
            f"{short_model_name(prescribed.prescription_model)}, and {other.label}'s dose is "
            f"under {short_model_name(other.description)}: the same Gy(RBE) number is a "
            "different physical dose under another model.")


def side_quantity(side: DoseSide) -> str:
    """``"RBE-weighted dose (Gy(RBE))"`` or ``"physical dose (Gy)"``."""
    kind = "RBE-weighted dose" if side.dose_type == "EFFECTIVE" else "physical dose"
    return f"{kind} ({side.unit})"


def _grid_dict(g: DoseGrid) -> dict[str, list[float] | list[int]]:
    return {"shape": list(g.shape), "spacing_mm": list(g.spacing_mm),
            "origin_mm": list(g.origin_mm)}


def check_same_frame(a: DoseSide, b: DoseSide) -> list[str]:
    """Refuse doses of different Frames of Reference; warn when one is unknown."""
    fa, fb = a.frame_of_reference_uid, b.frame_of_reference_uid
    if fa and fb and fa != fb:
        raise InputError(f"{a.source} (Frame of Reference {fa}) and {b.source} (Frame of "
                         f"Reference {fb}) are not in the same patient frame; compare doses "
                         "of the same CT, or register the CTs first")
    if not (fa and fb):
        return ["a dose states no Frame of Reference: it is assumed to be the other's"]
    return []


def _patient_for(patient: Patient | str | os.PathLike[str] | None, a: DoseSide, b: DoseSide,
                 frame: str, progress: ProgressCallback | None, cancel: CancelToken | None,
                 ct_series_uid: str | None = None) -> Patient | None:
    """The CT for structures: the given one (the ``ct_series_uid`` series of a folder), else a
    side's; checked against the doses' frame."""
    if ct_series_uid is not None and not isinstance(patient, (str, os.PathLike)):
        raise InputError("a CT series is chosen in the CT folder given for the structures; "
                         "give that folder too")
    if isinstance(patient, (str, os.PathLike)):
        from planning.dicom import load_patient

        if not os.path.isdir(patient):
            raise InputError(f"{patient}: not a folder; give the folder of the CT series")
        patient = load_patient(patient, series_uid=ct_series_uid, progress=progress,
                               cancel=cancel)
    chosen = patient or a.patient or b.patient
    if chosen is not None and frame and chosen.ct.frame_of_reference_uid and (
            chosen.ct.frame_of_reference_uid != frame):
        raise InputError(f"the CT (Frame of Reference {chosen.ct.frame_of_reference_uid}) is not "
                         f"the doses' frame ({frame}); give the CT the doses were computed on")
    return chosen


def patient_warnings(a: DoseSide, b: DoseSide, ct: Patient | None) -> list[str]:
    """Warnings when the doses name different patients (Patient ID), or the CT given for the
    structures is of another patient than the doses. Not refused: a centre that pseudonymises
    its exports gives the same patient another ID (the doses share one Frame of Reference,
    which is checked)."""
    out = []
    if a.patient_id and b.patient_id and a.patient_id != b.patient_id:
        out.append(f"{a.label} is a dose of patient {a.patient_id!r} and {b.label} of patient "
                   f"{b.patient_id!r}: compare doses of one patient (a pseudonymised export "
                   "may give it another ID)")
    study = ct.ct.study if ct is not None else None
    ids = {s.patient_id for s in (a, b) if s.patient_id}
    if study is not None and study.patient_id and ids and study.patient_id not in ids:
        out.append(f"the CT for the structures is of patient {study.patient_id!r}, the doses "
                   f"of {', '.join(repr(i) for i in sorted(ids))}")
    return out


def _focus(grid: DoseGrid, reference: NDArray[np.float32],
           structures: Sequence[tuple[Any, NDArray[np.int64]]], target: str | None
           ) -> tuple[tuple[int, int, int], str]:
    """Slice position: the centre of mass of the plan's target (else of the first PTV, CTV or
    GTV), else the reference maximum."""
    def wanted(s: Any) -> int:
        if target is not None and s.name.casefold() == target.casefold():
            return 0
        kinds = ("PTV", "CTV", "GTV")
        kind = s.interpreted_type.upper()
        return 1 + kinds.index(kind) if kind in kinds else len(kinds) + 1

    ranked = sorted(((wanted(s), i) for i, (s, _) in enumerate(structures)))
    if ranked and ranked[0][0] <= 3:
        s, rows = structures[ranked[0][1]]
        centre = np.rint(np.mean(np.unravel_index(rows, grid.shape), axis=1)).astype(int)
        return (int(centre[0]), int(centre[1]), int(centre[2])), f"{s.name} centre"
    k = np.unravel_index(int(np.argmax(reference)), grid.shape)
    return (int(k[0]), int(k[1]), int(k[2])), "reference maximum"


def _same_plan(a: DoseSide, b: DoseSide) -> bool:
    """Both sides are doses of one plan: the same RT Ion Plan file (SOP Instance UID; a
    recalculation writes the received file back unchanged) or the same plan in memory. Label
    and prescription do not tell plans apart (every IonPlan plan is labelled "IonPlan")."""
    if a.plan is None or b.plan is None:
        return False
    if a.plan_uid and b.plan_uid:
        return a.plan_uid == b.plan_uid
    return a.plan is b.plan


def _models_warning(family_a: str, family_b: str, one_plan: bool) -> str:
    """What a comparison of RBE-weighted doses of two models measures. Of one plan (the
    exchange view, or a plan recalculated under the other model: compared on purpose, but a
    gamma pass rate of 17 % read as a delivery failure; review) it is the models' difference
    alone."""
    if one_plan:
        return (f"A and B are one plan's RBE-weighted dose under two models (A {family_a}, "
                f"B {family_b}): gamma and B - A measure the difference between the models, "
                "not between deliveries")
    return (f"A's RBE-weighted dose is {family_a} and B's {family_b}: the same plan has "
            "different Gy(RBE) numbers under the two models, so their difference is the "
            "models' as well as the plans'")


def _model_family(description: str) -> str | None:
    """``"mMKM"``, ``"LEM I"`` or ``"a constant RBE"`` from a dose's description (IonPlan
    writes the model there), None when it names none of them."""
    text = description.strip()
    for prefix, family in (("mMKM", "mMKM"), ("LEM I", "LEM I"),
                           ("constant RBE", "a constant RBE")):
        if text.startswith(prefix):
            return family
    return None


def compare(a: Any, b: Any, *, patient: Patient | str | os.PathLike[str] | None = None,
            settings: CompareSettings | None = None, machine: Machine | None = None,
            progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
            ct_series_uid: str | None = None) -> ComparisonResult:
    """Compare dose B against the reference A (see the module docstring).

    Parameters
    ----------
    a, b : path, DoseSide, DoseVolume or PlanResult
        The reference and the evaluated dose (:func:`planning.compare.sources.load_side`).
    patient : Patient or path, optional
        CT with structures; default: one found with a side.
    ct_series_uid : str, optional
        The CT series of a ``patient`` folder that holds several.
    settings : CompareSettings, optional
    machine : Machine, optional
        Beam data of the cross-model view (default: the generic machine).
    progress, cancel : optional
        Progress callback ``(fraction, stage)`` and cancel token.

    Raises
    ------
    InputError
        Unreadable or unsuitable inputs, different Frames of Reference, bad settings.
    OperationCancelled
        When ``cancel`` is set.
    """
    settings = settings or CompareSettings()
    criteria = settings.criteria()
    timings: dict[str, float] = {}
    t_start = t0 = time.perf_counter()
    report(progress, 0.0, "loading doses")
    side_a = load_side(a, label="A", quantity=settings.quantity)
    side_b = load_side(b, label="B", quantity=settings.quantity)
    warnings = check_same_frame(side_a, side_b)
    for side in (side_a, side_b):
        if side.structure_tissues:
            warnings.append(
                f"{side.label} was computed with LEM I tissues per structure "
                f"({describe_structure_tissues(side.structure_tissues)}): the DVHs here read it "
                "across the tissue boundaries, where its RBE-weighted dose jumps (its plan's "
                "own report reads each structure within its tissue)")
    mixed = side_a.unit != side_b.unit
    skipped = (f"A is {side_quantity(side_a)}, B is {side_quantity(side_b)}" if mixed
               else None)
    if mixed:
        role_p, role_w = ("A", "B") if side_a.dose_type != "EFFECTIVE" else ("B", "A")
        one_plan = ("" if _same_plan(side_a, side_b) else
                    " if both are doses of one plan (not known here)")
        warnings.append(f"a dose difference or gamma index between a physical ({role_p}) "
                        f"and an RBE-weighted dose ({role_w}) has no clinical meaning: neither "
                        f"is computed; {role_w} / {role_p} is reported, their effective "
                        f"RBE{one_plan}")
    elif side_a.dose_type == "EFFECTIVE":
        family_a, family_b = (_model_family(s.description) for s in (side_a, side_b))
        if family_a is not None and family_b is not None and family_a != family_b:
            warnings.append(_models_warning(family_a, family_b, _same_plan(side_a, side_b)))
    frame = side_a.frame_of_reference_uid or side_b.frame_of_reference_uid
    chosen = _patient_for(patient, side_a, side_b, frame, stage_progress(progress, 0.0, 0.05),
                          cancel, ct_series_uid)
    warnings += patient_warnings(side_a, side_b, chosen)
    if chosen is not None:  # its structures' DVHs are compared: what their import warned of
        warnings += chosen.import_warnings()
    timings["load"] = time.perf_counter() - t0
    if cancel is not None:
        cancel.raise_if_cancelled("the comparison")

    t0 = time.perf_counter()
    resampled: list[str] = []
    if grids_equal(side_a.grid, side_b.grid):
        grid = side_a.grid
        ref, ev = side_a.dose_gy, side_b.dose_gy
    else:
        grid = common_grid(side_a.grid, side_b.grid)
        ref, ev = side_a.dose_gy, side_b.dose_gy
        if not grids_equal(side_a.grid, grid):
            ref = resample_to_grid(side_a.dose_gy, side_a.grid, grid)
            resampled.append("A")
        if not grids_equal(side_b.grid, grid):
            ev = resample_to_grid(side_b.dose_gy, side_b.grid, grid)
            resampled.append("B")
        warnings.append(f"the dose grids differ: {', '.join(resampled)} resampled "
                        f"(trilinear) onto a common grid of {grid.spacing_mm} mm")
        for side, other in ((side_a, "B"), (side_b, "A")):
            outside, hot = share_outside(side.dose_gy, side.grid, grid,
                                         settings.threshold_percent)
            if outside:
                warnings.append(
                    f"{100 * outside / hot:.1f} % of {side.label}'s voxels at or above "
                    f"{settings.threshold_percent:g} % of its maximum ({outside} of {hot}) lie "
                    f"outside {other}'s grid and are not compared: "
                    f"{'the ratio' if mixed else 'gamma, the difference statistics'} and the "
                    "DVHs cover the overlap of the two grids only")
    ref = np.ascontiguousarray(ref, dtype=np.float32)
    ev = np.ascontiguousarray(ev, dtype=np.float32)
    timings["resample"] = time.perf_counter() - t0

    prescription = settings.prescription_gy
    v95_note = ""
    plan_rx = side_a.prescription or side_b.prescription
    # A side's plan prescription counts only for a dose of its unit (dose_prescription): of a
    # physical and an RBE-weighted dose, it is the RBE-weighted one's (carbon plans are
    # prescribed RBE-weighted) unless the plan was made under the physical-dose model.
    own = (side_a if side_a.dose_type == "EFFECTIVE" else side_b) if mixed else None
    own_rx = (own.dose_prescription() if own is not None
              else side_a.dose_prescription() or side_b.dose_prescription())
    if prescription is None and own_rx is not None:
        prescription = own_rx.total_dose_gy_rbe
    target = plan_rx.target if plan_rx is not None else None

    t0 = time.perf_counter()
    stats: DoseDifferenceStats | None = None
    rbe_ratio: NDArray[np.float32] | None = None
    rbe_ratio_stats: EffectiveRbeStats | None = None
    if mixed:
        report(progress, 0.1, "effective RBE")
        physical, weighted = (ref, ev) if side_a.dose_type != "EFFECTIVE" else (ev, ref)
        rbe_ratio, rbe_ratio_stats = effective_rbe(
            physical, weighted, threshold_percent=settings.threshold_percent)
    else:
        report(progress, 0.1, "dose difference")
        stats = difference_stats(ref, ev, threshold_percent=settings.threshold_percent,
                                 prescription_gy=prescription)
    timings["effective_rbe" if mixed else "difference"] = time.perf_counter() - t0

    gammas, seconds = [], []
    span = 0.5 if settings.cross_model else 0.8
    if mixed:
        criteria = ()
    elif "A" in resampled:
        # Global gamma is normalised to the reference's maximum on its own grid: trilinear
        # resampling lowers a peak that falls between the common grid's points.
        a_max_gy = float(np.max(side_a.dose_gy))
        criteria = tuple(c if c.normalization_dose_gy is not None or a_max_gy <= 0
                         else replace(c, normalization_dose_gy=a_max_gy)
                         for c in criteria)
    for i, c in enumerate(criteria):
        t0 = time.perf_counter()
        lo = 0.1 + span * i / len(criteria)
        gammas.append(gamma_index(ref, ev, grid.spacing_mm, c,
                                  progress=stage_progress(progress, lo, lo + span / len(criteria)),
                                  cancel=cancel))
        seconds.append(time.perf_counter() - t0)
    if not mixed:
        timings["gamma"] = float(sum(seconds))

    t0 = time.perf_counter()
    report(progress, 0.1 + span, "structures")
    masks = structure_masks(chosen, grid) if chosen is not None else []
    if not mixed:
        # A prescription of the sides' plans is read against the doses of its own RBE model
        # only (DoseSide.dose_prescription); one given in the settings against both.
        rx_side = None if settings.prescription_gy is not None or own_rx is None else (
            side_a if side_a.dose_prescription() is own_rx else side_b)
        rx_a, rx_b = (prescription if rx_side is None or s.of_prescription_model(rx_side)
                      else None for s in (side_a, side_b))
        if rx_side is not None and None in (rx_a, rx_b):
            v95_note = other_model_v95_note(rx_side, side_b if rx_b is None else side_a)
    elif side_a.dose_type == "EFFECTIVE":
        rx_a, rx_b = prescription, None
    else:
        rx_a, rx_b = None, prescription
    # Each dose read on its own grid: a resampled one lost its peaks between the points.
    structures = (compare_structures(side_a.dose_gy, side_b.dose_gy, side_a.grid, chosen,
                                     evaluated_grid=side_b.grid, prescription_gy=rx_a,
                                     prescription_b_gy=rx_b, same_quantity=not mixed)
                  if chosen is not None else ())
    if chosen is None:
        warnings.append("no CT with structures: give --ct for DVH metrics")
    elif not structures:
        warnings.append("the CT has no structure inside the dose grid")
    focus, focus_name = _focus(grid, ref, masks, target)
    ct_hu = None
    if chosen is not None:
        ct_hu = resample_to_grid(np.asarray(chosen.ct.hu, dtype=np.float32),
                                 grid_of(chosen.ct), grid, fill_value=AIR_HU)
    timings["structures"] = time.perf_counter() - t0

    views: list[CrossModelView] = []
    cross_model_skipped = CROSS_MODEL_NOT_ASKED
    if settings.cross_model:
        t0 = time.perf_counter()
        views, cross_model_skipped = _cross_model_views(side_a, side_b, chosen, settings,
                                                        machine, warnings, progress, cancel)
        timings["cross_model"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    report(progress, 1.0, "comparison done")
    return ComparisonResult(
        a=side_a, b=side_b, grid=grid, resampled=tuple(resampled), reference_gy=ref,
        evaluated_gy=ev, difference_gy=None if mixed else (ev - ref).astype(np.float32),
        stats=stats, gamma=tuple(gammas), gamma_seconds=tuple(seconds), structures=structures,
        cross_model=tuple(views), patient=chosen, ct_hu=ct_hu, focus_index=focus,
        focus_name=focus_name, settings=settings, warnings=tuple(warnings), timings_s=timings,
        gamma_skipped_reason=skipped, rbe_ratio=rbe_ratio, rbe_ratio_stats=rbe_ratio_stats,
        v95_note=v95_note, cross_model_skipped_reason=None if views else cross_model_skipped)


def _cross_model_views(side_a: DoseSide, side_b: DoseSide, chosen: Patient | None,
                       settings: CompareSettings, machine: Machine | None, warnings: list[str],
                       progress: ProgressCallback | None, cancel: CancelToken | None
                       ) -> tuple[list[CrossModelView], str]:
    """The cross-model view of each side that is a plan with a CT, and why there is none
    (``"A: no CT (give --ct)"``, each side's reason; ``""`` when there is one). Each side
    that has none also gets a warning saying why."""
    sides = [s for s in (side_a, side_b) if s.plan is not None]
    # One plan on one grid (a plan and its recalculation under the other model): the same
    # spots give the same view, computed and shown once for both sides.
    both = (_same_plan(side_a, side_b) and grids_equal(side_a.grid, side_b.grid))
    if both:
        sides = [side_a]
    views: list[CrossModelView] = []
    missing: list[tuple[str, str]] = []  # (side's label, why it has no view)
    for k, s in enumerate(sides):
        lo = 0.6 + 0.4 * k / len(sides)
        view = _cross_model_of(s, s.patient or chosen, settings, machine,
                               stage_progress(progress, lo, lo + 0.4 / len(sides)), cancel,
                               label=f"{side_a.label} and {side_b.label} (the same plan)"
                               if both else s.label)
        if isinstance(view, str):
            missing.append((s.label, view))
        else:
            views.append(view)
    missing += [(s.label, s.plan_problem)
                for s in (side_a, side_b) if s.plan is None and s.plan_problem]
    warnings.extend(f"cross-model view of {label} not computed: {why}"
                    for label, why in missing)
    if not sides and not missing:
        warnings.append(f"cross-model view: {CROSS_MODEL_NO_PLAN}")
        return views, CROSS_MODEL_NO_PLAN
    return views, "; ".join(f"{label}: {why}" for label, why in missing)


def _cross_model_of(side: DoseSide, patient: Patient | None, settings: CompareSettings,
                    machine: Machine | None, progress: ProgressCallback | None,
                    cancel: CancelToken | None, label: str) -> CrossModelView | str:
    """The cross-model view of one side, or why it has none; ``label`` names the sides it
    serves."""
    from planning.compare.recalc import check_plan_on_ct

    assert side.plan is not None
    if patient is None:
        return "no CT (give --ct)"
    try:
        check_plan_on_ct(patient, side.plan_frame_of_reference_uid, side.plan_patient_position,
                         side.source)
        return cross_model_view(patient, side.plan, label=label, dose_grid=side.grid,
                                machine=machine, hlut_path=settings.hlut_path,
                                device=settings.device, lem_tissue=settings.lem_tissue,
                                progress=progress, cancel=cancel)
    except PlanningError as exc:
        return str(exc)
