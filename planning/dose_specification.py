"""The dose specification point of a plan and each beam's dose there (RT Ion Plan Beam Doses).

ICRU Report 78 (protons) and the photon practice of Reports 50/62 specify a beam's dose at a
reference point in the central, high-dose region of the target, where the dose is close to the
prescription and varies little. IonPlan takes the dose-grid voxel centre inside the target
nearest to the isocentre (the planner's isocentre is the target's centroid) whose RBE-weighted
dose lies within :data:`PRESCRIPTION_WINDOW` of the prescription; without one (a plan far from
its prescription), the target voxel whose dose is closest to the prescription. A voxel centre
makes the point's doses exactly the dose cubes' values, with no interpolation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from planning.dose_grid import DoseGrid
from planning.errors import PlanningError
from planning.plan import BeamDoses

#: Relative distance to the prescription of the voxels that may hold the point.
PRESCRIPTION_WINDOW = 0.02


def dose_specification_voxel(dose_grid: DoseGrid, target_rows: NDArray[np.int64],
                             rbe_dose_gy_rbe: NDArray[np.floating],
                             total_dose_gy_rbe: float,
                             isocenter_mm: Sequence[float]) -> int:
    """Flat dose-grid index of the dose specification point (see the module docstring).

    Parameters
    ----------
    dose_grid : DoseGrid
    target_rows : int array
        Flat dose-grid indices of the target's voxels.
    rbe_dose_gy_rbe : (nz, ny, nx) array
        The plan's total RBE-weighted dose (Gy(RBE); Gy for physical plans).
    total_dose_gy_rbe : float
        The total prescription, same unit.
    isocenter_mm : (x, y, z)
        LPS position, mm.

    Raises
    ------
    PlanningError
        If the target has no voxel on the dose grid.
    """
    rows = np.asarray(target_rows, dtype=np.int64)
    if rows.size == 0:
        raise PlanningError("the target has no voxel on the dose grid: no dose "
                            "specification point")
    dose = np.asarray(rbe_dose_gy_rbe, dtype=np.float64).reshape(-1)[rows]
    off = np.abs(dose / total_dose_gy_rbe - 1.0)
    near = off <= PRESCRIPTION_WINDOW
    if not near.any():
        return int(rows[int(np.argmin(off))])
    candidates = rows[near]
    centers = dose_grid.voxel_centers_lps(candidates)
    distance = np.linalg.norm(centers - np.asarray(isocenter_mm, dtype=np.float64), axis=1)
    return int(candidates[int(np.argmin(distance))])


def beam_doses_at(dose_grid: DoseGrid, voxel: int,
                  beam_physical_dose_gy: Sequence[NDArray[np.floating]],
                  physical_dose_gy: NDArray[np.floating], rbe_dose_gy_rbe: NDArray[np.floating],
                  n_fractions: int) -> BeamDoses:
    """Each beam's physical dose and share of the RBE-weighted dose per fraction at ``voxel``.

    The share is the plan's RBE at the voxel (total RBE-weighted over total physical dose)
    times the beam's physical dose, so the shares sum to the plan's RBE-weighted dose there.
    All cubes are whole-plan totals (all fractions); the result is per fraction.
    """
    total_phys = float(np.asarray(physical_dose_gy).reshape(-1)[voxel])
    total_rbe = float(np.asarray(rbe_dose_gy_rbe).reshape(-1)[voxel])
    rbe = total_rbe / total_phys if total_phys > 0 else 0.0
    phys = [float(np.asarray(b).reshape(-1)[voxel]) / n_fractions for b in beam_physical_dose_gy]
    point = dose_grid.voxel_centers_lps(np.array([voxel]))[0]
    return BeamDoses(point_mm=(float(point[0]), float(point[1]), float(point[2])),
                     physical_gy=tuple(phys), rbe_weighted_gy_rbe=tuple(rbe * p for p in phys))
