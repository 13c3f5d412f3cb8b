"""A received plan's beam geometry against the beam model that computes its dose.

An RT Ion Plan states the virtual source-axis distances of each beam (Virtual Source-Axis
Distances) and, per control point, the spot size (Scanning Spot Size: FWHM in air at the
isocentre). IonPlan's dose engine uses its machine's beam model whatever the plan states, so a
plan made for a beam line with other values gets a warning naming both: a SAD more than
:data:`SAD_TOLERANCE` from the model's (the spot positions' divergence), a spot FWHM more than
:data:`SPOT_FWHM_TOLERANCE` from the model's at the layer's energy (the lateral dose).
"""

from __future__ import annotations

from collections.abc import Sequence

from planning.dicom.rtplan_export import FWHM_PER_SIGMA
from planning.machine import Machine, spot_sigma_air_at
from planning.plan import Plan

#: Relative difference of a stated virtual SAD from the beam model's that gets a warning.
SAD_TOLERANCE = 0.01
#: Relative difference of a stated spot FWHM from the beam model's that gets a warning.
SPOT_FWHM_TOLERANCE = 0.10


def _apart(stated: float, model: float, tolerance: float) -> bool:
    return abs(stated - model) > tolerance * model


def beam_model_warnings(plan: Plan, sad_mm: Sequence[tuple[float, float] | None],
                        spot_fwhm_mm: Sequence[Sequence[tuple[float, float, float]]],
                        machine: Machine) -> list[str]:
    """Warnings for the beams of ``plan`` whose stated virtual SAD or spot size differs from
    ``machine``'s beam model beyond the tolerances.

    Parameters
    ----------
    plan : Plan
        The imported plan (its beams name the warnings).
    sad_mm : sequence of (x, y) mm or None
        Each beam's stated virtual source-axis distances (None: not stated).
    spot_fwhm_mm : sequence of sequences of (energy MeV/u, FWHM x mm, FWHM y mm)
        Each beam's stated spot sizes per energy layer (empty: none stated).
    machine : Machine
        The beam model the dose is computed with.
    """
    out = []
    model_sad = machine.sad_mm
    for bp, sad, sizes in zip(plan.beams, sad_mm, spot_fwhm_mm, strict=True):
        name = bp.beam.label
        if sad is not None and any(_apart(s, m, SAD_TOLERANCE)
                                   for s, m in zip(sad, model_sad, strict=True)):
            out.append(f"beam {name!r}: the plan states a virtual source-axis distance of "
                       f"{sad[0]:g} x {sad[1]:g} mm, the beam model of {machine.name!r} has "
                       f"{model_sad[0]:g} x {model_sad[1]:g} mm (more than "
                       f"{100 * SAD_TOLERANCE:g} % apart); the dose is computed with the beam "
                       "model's")
        differing = []
        for energy, fwhm_x, fwhm_y in sizes:
            model_fwhm = FWHM_PER_SIGMA * spot_sigma_air_at(machine, energy)
            worst = max(abs(fwhm_x - model_fwhm), abs(fwhm_y - model_fwhm)) / model_fwhm
            if worst > SPOT_FWHM_TOLERANCE:
                differing.append((worst, energy, fwhm_x, fwhm_y, model_fwhm))
        if differing:  # the layer most apart speaks for them
            _, energy, fwhm_x, fwhm_y, model_fwhm = max(differing)
            out.append(f"beam {name!r}: the plan states a spot size (FWHM in air at the "
                       f"isocentre) of {fwhm_x:.1f} x {fwhm_y:.1f} mm at {energy:g} MeV/u, the "
                       f"beam model of {machine.name!r} has {model_fwhm:.1f} mm (more than "
                       f"{100 * SPOT_FWHM_TOLERANCE:g} % apart in {len(differing)} of the "
                       f"beam's {len(sizes)} energy layers that state a spot size); the dose "
                       "is computed with the beam model's")
    return out
