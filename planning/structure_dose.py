"""Dose statistics of every structure on a dose cube: cumulative DVH and metrics.

The structure masks live on the CT grid; a dose cube lives on its own (usually coarser) grid.
A dose-grid voxel belongs to a structure when its centre falls in a CT voxel of the structure
(:func:`planning.planner.structure_rows`), the rule the planner's report uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planning.dose_engine import DoseGrid
from planning.errors import InputError
from planning.evaluation import DoseMetrics, Dvh, cumulative_dvh, dose_metrics
from planning.patient import Patient
from planning.planner import grid_of, structure_rows


@dataclass(frozen=True, eq=False)
class StructureDose:
    """DVH and metrics of one structure.

    Attributes
    ----------
    name : str
        ROI name.
    colour_rgb : tuple of 3 int
        ROI display colour (a neutral grey when the structure set gave none).
    interpreted_type : str
        RT ROI Interpreted Type.
    dvh : Dvh
        Cumulative DVH; ``dvh.dose_gy`` is in the unit of the cube (Gy, Gy(RBE), keV/µm, ...).
    metrics : DoseMetrics
        D98, D95, D50, D5, D2, mean, max, min, V95, V107 and HI against ``reference``.
    voxels : int
        Dose-grid voxels of the structure.
    """

    name: str
    colour_rgb: tuple[int, int, int]
    interpreted_type: str
    dvh: Dvh
    metrics: DoseMetrics
    voxels: int


NO_COLOUR_RGB = (200, 200, 200)


def structure_dose_statistics(
    patient: Patient,
    dose: NDArray[np.floating],
    dose_grid: DoseGrid,
    reference: float,
    *,
    names: Sequence[str] | None = None,
    n_bins: int = 200,
) -> list[StructureDose]:
    """DVHs and metrics of the patient's structures on one dose cube.

    Parameters
    ----------
    patient : Patient
        CT and structure set (masks on the CT grid).
    dose : (nz, ny, nx) array
        Dose (any unit) on ``dose_grid``.
    dose_grid : DoseGrid
        Grid of ``dose``; must lie in the CT's frame (same patient).
    reference : float
        Prescription (same unit as ``dose``) for V95, V107 and HI.
    names : sequence of str, optional
        Only these structures (default: all, in structure-set order).
    n_bins : int
        DVH bins; all structures share the bin edges (0 to 1.05 x the cube maximum).

    Returns
    -------
    list of StructureDose
        Structures with at least one dose-grid voxel, in structure-set order.
    """
    cube = np.asarray(dose)
    if cube.shape != tuple(dose_grid.shape):
        raise InputError(f"dose cube of shape {cube.shape} does not match its grid "
                         f"{tuple(dose_grid.shape)}")
    if not (np.isfinite(reference) and reference > 0):
        raise InputError(f"the reference dose must be a positive number, got {reference}")
    if patient.structure_set is None:
        return []
    flat = cube.reshape(-1)
    top = 1.05 * float(flat.max()) if flat.size and flat.max() > 0 else 1.0
    voxel_mm3 = float(np.prod(dose_grid.spacing_mm))
    ct_grid = grid_of(patient.ct)
    wanted = None if names is None else set(names)
    out = []
    for s in patient.structure_set.structures:
        if wanted is not None and s.name not in wanted:
            continue
        rows = structure_rows(s.mask.to_dense(), ct_grid, dose_grid)
        if rows.size == 0:
            continue
        values = flat[rows]
        out.append(StructureDose(
            name=s.name, colour_rgb=s.colour_rgb or NO_COLOUR_RGB,
            interpreted_type=s.interpreted_type,
            dvh=cumulative_dvh(s.name, values, voxel_mm3, max_dose=top, n_bins=n_bins),
            metrics=dose_metrics(values, reference), voxels=int(rows.size)))
    return out
