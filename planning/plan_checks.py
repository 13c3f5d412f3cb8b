"""Plausibility checks of a plan that warn and never refuse.

Two checks a clinical reader expects a planning system to make, whose warnings go into the plan
report's ``warnings`` (hence the CLI's standard error, the app's Dose tab and the PDF's notes,
:mod:`planning.plan_notes`). Values that are physically impossible are refused elsewhere
(:class:`planning.plan.Prescription`: a dose outside (0, 200] Gy(RBE), fractions outside
1..100).

Dose per fraction
-----------------
An RBE-weighted prescription is compared with the carbon-ion schedules in clinical use:

- the lowest doses per fraction are about 2 Gy(RBE): 46.2 Gy(RBE) in 24 fractions (1.9 per
  fraction) for diffuse astrocytomas at NIRS (Hasegawa et al. 2012, IJROBP 83:100); the
  usual schedules give 3 to 4.6 Gy(RBE) per fraction (57.6 or 70.4 Gy(RBE) in 16 fractions at
  NIRS, 60 Gy(RBE) in 20 at HIT). Below :data:`LOWEST_GY_RBE_PER_FRACTION` a total dose was
  probably given as the dose per fraction;
- schedules of :data:`LONG_SCHEDULE_MIN_FRACTIONS` or more fractions stay at or below 4.4
  Gy(RBE) per fraction: 70.4 Gy(RBE) in 16 fractions for bone and soft-tissue sarcomas at NIRS
  (Kamada et al. 2002, J Clin Oncol 20:4466), 60-66 Gy(RBE) in 20-22 at HIT (LEM I). Above
  :data:`HIGHEST_LONG_SCHEDULE_GY_RBE` it is warned about;
- schedules of more than :data:`HYPOFRACTIONATED_MAX_FRACTIONS` fractions stay at or below 8.8
  Gy(RBE) per fraction: lung 79.2 Gy(RBE) in 9 fractions (Miyamoto et al. 2003, Radiother
  Oncol 66:127), liver 58.0 Gy(RBE) in 8 and 69.6 in 12 (Kasuya et al. 2017, Cancer
  123:3955). Above :data:`HIGHEST_FRACTIONATED_GY_RBE` it is warned about;
- hypofractionated schedules of 1 to 4 fractions reach 15 Gy(RBE) per fraction in 4 fractions
  (liver 60.0 Gy(RBE), Shibuya et al. 2022, Liver Cancer 11:61) and 50 Gy(RBE) in a single
  fraction (peripheral stage I lung, Yamamoto et al. 2017, J Thorac Oncol 12:673). Above
  :data:`HIGHEST_HYPOFRACTIONATED_GY_RBE` it is warned about.

These are mMKM clinical doses (NIRS/QST). The same plan reads higher under LEM I: 1.37 to 1.46
times at 2.7 to 3 Gy(RBE) per fraction, the ratio growing towards lower doses per fraction
(Zhang et al. 2020, Radiat Oncol 15, doi 10.1186/s13014-020-01723-z). For a LEM I plan the upper
thresholds are raised by :data:`LEM_MARGIN`; the lower one, far below the lowest schedule,
holds for every model.

A physical-dose plan (Gy: research, QA) is compared through the RBE of carbon ions in a target,
roughly :data:`CARBON_TARGET_RBE` (it varies with LET, tissue and dose per fraction): its dose
per fraction is warned about when even the lower RBE puts it above the schedules' limit, or
the higher one below the lowest dose (:func:`physical_fractionation_warning`). The usual slip
is a Gy(RBE) number typed for a physical plan: 66 Gy in 22 fractions is 6-9 Gy(RBE) per
fraction.

Target coverage
---------------
An optimized plan's target D95 below :data:`COVERAGE_D95` of the prescription, or D2 above
:data:`HOT_D2`, is reported: the 95 % to 107 % window ICRU Reports 50 and 62 set for the dose in
a planning target volume, read on the near-minimum and near-maximum doses of ICRU Report 83
(D95 for coverage, as is usual; D2). The doses are the report's own (:mod:`planning.plan_report`,
clinical DVH samples).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Below this dose per fraction (Gy(RBE)) a prescription is warned about (the lowest clinical
#: schedules give about 1.9 Gy(RBE)).
LOWEST_GY_RBE_PER_FRACTION = 1.0
#: The most fractions of a hypofractionated schedule (1 to 4 fractions: lung, liver).
HYPOFRACTIONATED_MAX_FRACTIONS = 4
#: The fewest fractions of a long schedule (16 at NIRS, 20-22 at HIT; 12 in liver and
#: pancreas reach 5.8 Gy(RBE) per fraction and are not long here).
LONG_SCHEDULE_MIN_FRACTIONS = 13
#: Above this dose per fraction (Gy(RBE), mMKM), with 13 fractions or more, a prescription is
#: warned about (published schedules: 4.4 Gy(RBE) at most).
HIGHEST_LONG_SCHEDULE_GY_RBE = 5.5
#: Above this dose per fraction (Gy(RBE), mMKM), with more than 4 fractions, a prescription
#: is warned about (published schedules: 8.8 Gy(RBE) at most).
HIGHEST_FRACTIONATED_GY_RBE = 10.0
#: Above this dose per fraction (Gy(RBE), mMKM), in 1 to 4 fractions, a prescription is
#: warned about (the largest schedule: 50 Gy(RBE) in one fraction for stage I lung).
HIGHEST_HYPOFRACTIONATED_GY_RBE = 50.0
#: The factor on the upper thresholds for a LEM I plan: LEM I reads the same plan about 1.4
#: times higher at the usual doses per fraction (Zhang et al. 2020).
LEM_MARGIN = 1.4
#: The RBE of carbon ions in a target, roughly (low, high): what a physical dose per fraction
#: is compared with the schedules through, and what the app's notes use to say what a kept
#: number becomes; not a conversion.
CARBON_TARGET_RBE = (2.0, 3.0)
#: The least target D95 of an optimized plan, a share of the prescription (ICRU 50/62).
COVERAGE_D95 = 0.95
#: The most target D2 of an optimized plan, a share of the prescription (ICRU 50/62).
HOT_D2 = 1.07


def fractionation_warning(total_dose_gy_rbe: float, n_fractions: int, *,
                          lem: bool = False) -> str | None:
    """The warning for an RBE-weighted prescription whose dose per fraction lies outside the
    clinical carbon-ion schedules (see the module docstring), or None.

    Parameters
    ----------
    total_dose_gy_rbe : float
        Total prescribed RBE-weighted dose, Gy(RBE) (> 0).
    n_fractions : int
        Number of fractions (>= 1).
    lem : bool
        Whether the dose is LEM I RBE-weighted (upper thresholds times :data:`LEM_MARGIN`);
        else mMKM clinical dose or a constant RBE.

    Returns
    -------
    str or None
    """
    per_fraction = total_dose_gy_rbe / n_fractions
    schedule = (f"the prescription of {total_dose_gy_rbe:g} Gy(RBE) in {n_fractions} "
                f"fraction{'s' if n_fractions > 1 else ''} ({per_fraction:.3g} Gy(RBE) per "
                "fraction)")
    check = "check the dose (the total, not per fraction) and the number of fractions"
    if per_fraction < LOWEST_GY_RBE_PER_FRACTION:
        return (f"{schedule} is below the {LOWEST_GY_RBE_PER_FRACTION:g} Gy(RBE) per fraction "
                f"of any clinical carbon-ion schedule (the lowest give about 2): {check}")
    limit, largest = _schedule_limit(n_fractions, lem)
    if per_fraction <= limit:
        return None
    return (f"{schedule} is above the {limit:g} Gy(RBE) per fraction of clinical carbon-ion "
            f"schedules{' under LEM I' if lem else ''} (the largest: {largest}): {check}")


def _schedule_limit(n_fractions: int, lem: bool) -> tuple[float, str]:
    """The highest dose per fraction (Gy(RBE)) not warned about in ``n_fractions`` fractions
    and the largest published schedule it stands for."""
    margin = LEM_MARGIN if lem else 1.0
    if n_fractions <= HYPOFRACTIONATED_MAX_FRACTIONS:
        return (HIGHEST_HYPOFRACTIONATED_GY_RBE * margin,
                "50 Gy(RBE) mMKM in one fraction for stage I lung")
    if n_fractions >= LONG_SCHEDULE_MIN_FRACTIONS:
        return (HIGHEST_LONG_SCHEDULE_GY_RBE * margin,
                f"4.4 Gy(RBE) mMKM per fraction in {LONG_SCHEDULE_MIN_FRACTIONS} fractions "
                "or more")
    return (HIGHEST_FRACTIONATED_GY_RBE * margin,
            f"about 9 Gy(RBE) mMKM per fraction in more than {HYPOFRACTIONATED_MAX_FRACTIONS} "
            "fractions")


def physical_fractionation_warning(total_dose_gy: float, n_fractions: int) -> str | None:
    """The warning for a physical-dose prescription whose dose per fraction, read through
    :data:`CARBON_TARGET_RBE`, lies outside the clinical carbon-ion schedules whatever the RBE
    in that range (a Gy(RBE) number typed for a physical plan, most often), or None.

    Parameters
    ----------
    total_dose_gy : float
        Total prescribed physical dose, Gy (> 0).
    n_fractions : int
        Number of fractions (>= 1).
    """
    per_fraction = total_dose_gy / n_fractions
    low_rbe, high_rbe = CARBON_TARGET_RBE
    low, high = per_fraction * low_rbe, per_fraction * high_rbe
    limit, largest = _schedule_limit(n_fractions, lem=False)
    schedule = (f"the prescription of {total_dose_gy:g} Gy in {n_fractions} "
                f"fraction{'s' if n_fractions > 1 else ''} ({per_fraction:.3g} Gy per fraction) "
                f"is physical dose: with a carbon-ion RBE of {low_rbe:g}-{high_rbe:g} in a "
                f"target it is about {low:.3g}-{high:.3g} Gy(RBE) per fraction")
    if low > limit:
        return (f"{schedule}, above the {limit:g} Gy(RBE) per fraction of clinical carbon-ion "
                f"schedules (the largest: {largest}): if {total_dose_gy:g} was meant in "
                "Gy(RBE), plan under an RBE model; else check the dose and the number of "
                "fractions")
    if high < LOWEST_GY_RBE_PER_FRACTION:
        return (f"{schedule}, below the {LOWEST_GY_RBE_PER_FRACTION:g} Gy(RBE) per fraction "
                "of any clinical carbon-ion schedule: check the dose (the total, not per "
                "fraction) and the number of fractions")
    return None


def coverage_warning(target: str, metrics: Mapping[str, Any], prescription: float,
                     unit: str) -> str | None:
    """The warning for an optimized plan whose target is under-dosed (D95 below 95 % of the
    prescription) or has hot spots (D2 above 107 %), or None.

    Parameters
    ----------
    target : str
        The target's name.
    metrics : mapping
        The target's entry of the report's ``structures`` (:mod:`planning.plan_report`):
        ``d95_gy_rbe`` and ``d2_gy_rbe``, in the unit of the prescription.
    prescription : float
        Total prescribed dose (> 0).
    unit : str
        Its unit, for the message (``"Gy(RBE)"``, ``"Gy"``).

    Returns
    -------
    str or None
    """
    d95 = float(metrics["d95_gy_rbe"]) / prescription
    d2 = float(metrics["d2_gy_rbe"]) / prescription
    problems = []
    if d95 < COVERAGE_D95:
        problems.append(f"D95 is {100 * d95:.1f} % of the prescription, below "
                        f"{100 * COVERAGE_D95:g} % (under-dosed)")
    if d2 > HOT_D2:
        problems.append(f"D2 is {100 * d2:.1f} % of the prescription, above "
                        f"{100 * HOT_D2:g} % (hot spots)")
    if not problems:
        return None
    return (f"the target {target!r} is not covered as prescribed ({prescription:g} {unit}): "
            f"{'; '.join(problems)}; review the objectives, beams and spot spacing, and "
            "re-optimize")


#: A recalculated physical dose at the plan's dose specification point this far from the
#: plan's own statement (its Beam Doses), as a share, is warned about: two dose engines
#: agree to a few % there; a meterset or calibration error is off by far more.
REFERENCE_POINT_TOLERANCE = 0.05
#: A recalculated target median outside this range of the prescription is warned about
#: whatever the RBE model: the RBE models differ by less (LEM I / mMKM about 1.1-1.5), a wrong
#: meterset, monitor calibration or fraction count by more. Only like is held against like: a
#: physical dose against a physical prescription, an RBE-weighted one against a Gy(RBE) one
#: (:func:`planning.compare.recalc.plausibility_warnings`).
GROSS_DOSE_RANGE = (0.5, 2.0)


def reference_point_warning(stated_gy: float, recalculated_gy: float,
                            point_mm: tuple[float, float, float]) -> str | None:
    """The warning for a recalculated plan whose physical dose per fraction at the plan's dose
    specification point differs from the plan's Beam Doses there by more than
    :data:`REFERENCE_POINT_TOLERANCE`, or None (physical dose: the same whatever the RBE
    model)."""
    if not stated_gy > 0:
        return None
    off = recalculated_gy / stated_gy - 1.0
    if abs(off) <= REFERENCE_POINT_TOLERANCE:
        return None
    x, y, z = point_mm
    return (f"the recalculated physical dose at the plan's dose specification point ({x:.1f}, "
            f"{y:.1f}, {z:.1f}) mm is {recalculated_gy:.4g} Gy per fraction, the plan states "
            f"{stated_gy:.4g} Gy ({100 * off:+.1f} %): check the metersets (the monitor "
            "calibration of a plan in MU), the number of fractions and the machine's beam data")


def gross_dose_warning(target: str, d50: float, prescription: float, unit: str
                       ) -> str | None:
    """The warning for a recalculated target median outside :data:`GROSS_DOSE_RANGE` of the
    prescription, or None."""
    if not prescription > 0:
        return None
    share = d50 / prescription
    lo, hi = GROSS_DOSE_RANGE
    if lo <= share <= hi:
        return None
    return (f"the recalculated dose of {target!r} (D50 {d50:.4g} {unit}) is "
            f"{100 * share:.3g} % of the prescription of {prescription:g} {unit}: far more than "
            "RBE models differ; check the metersets (the monitor calibration of a plan in MU) "
            "and the number of fractions")
