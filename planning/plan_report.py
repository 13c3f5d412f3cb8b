"""The per-structure part of a plan's report: metrics and DVHs on the whole-plan dose cubes.

``ionplan plan`` (:func:`planning.planner.make_plan`) and ``ionplan recalc``
(:func:`planning.compare.recalc.recalculate`) both write these entries of ``report.json``:

- ``structures``: for each structure with dose-grid voxels (structure-set order) its
  interpreted type, voxel count, D98, D95, D50, D5, D2, maximum and mean RBE-weighted dose
  (Gy(RBE)), mean physical dose (Gy), V95 and V107 (fractions of the structure at or above 95 %
  and 107 % of the prescription) and the homogeneity index (ICRU 83, :mod:`planning.evaluation`);
  the target also gets the conformity index;
- ``dvh_gy_rbe``: cumulative DVHs of the RBE-weighted dose on :data:`DVH_BINS` bins shared by
  all structures (0 to 1.1 x the cube maximum).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.dose_grid import DoseGrid
from planning.evaluation import conformity_index, cumulative_dvh, dose_metrics
from planning.patient import Patient
from planning.structure_dose import structures_on_grid

#: Number of bins of the report's DVHs.
DVH_BINS = 100


@dataclass(frozen=True, eq=False)
class StructureReport:
    """The ``structures`` and ``dvh_gy_rbe`` entries of a report and the rows behind them.

    Attributes
    ----------
    structures : dict
        ``{name: {"interpreted_type", "voxels", "d98_gy_rbe", ..., "homogeneity_index"}}``
        (and ``"conformity_index"`` for the target), JSON-ready.
    dvh_gy_rbe : dict
        ``{name: {"dose_gy_rbe": [...], "volume_fraction": [...]}}``, rounded to 4 and 5
        decimals.
    rows_by_name : dict of str to (n,) int64 array
        Flat dose-grid indices of each structure in ``structures``.
    """

    structures: dict[str, dict[str, Any]]
    dvh_gy_rbe: dict[str, dict[str, list[float]]]
    rows_by_name: dict[str, NDArray[np.int64]]


def structure_report(patient: Patient, dose_grid: DoseGrid,
                     physical_dose_gy: NDArray[np.floating],
                     rbe_dose_gy_rbe: NDArray[np.floating], prescription_gy_rbe: float,
                     target: str | None, *,
                     known_rows: Mapping[str, NDArray[np.int64]] | None = None
                     ) -> StructureReport:
    """Metrics and DVHs of every structure on the whole-plan dose cubes.

    Parameters
    ----------
    patient : Patient
        CT and structure set (masks on the CT grid); without a structure set the report is
        empty.
    dose_grid : DoseGrid
        Grid of the cubes, in the CT's frame.
    physical_dose_gy, rbe_dose_gy_rbe : (nz, ny, nx) float arrays on ``dose_grid``
        Total physical dose (Gy) and RBE-weighted dose (Gy(RBE)) of the plan.
    prescription_gy_rbe : float
        Total prescribed dose, Gy(RBE) (> 0): the reference of V95, V107 and the conformity
        index.
    target : str or None
        Structure-set name of the target, which gets the conformity index; None (or a
        structure without voxels on the grid) gives none.
    known_rows : mapping of str to (n,) int64 array, optional
        Dose-grid rows already computed for some structures (by exact ROI name).

    Returns
    -------
    StructureReport

    Raises
    ------
    PlanningError
        A prescription that is not positive.
    """
    structures: dict[str, dict[str, Any]] = {}
    rows_by_name: dict[str, NDArray[np.int64]] = {}
    phys = np.asarray(physical_dose_gy).reshape(-1)
    rbe = np.asarray(rbe_dose_gy_rbe).reshape(-1)
    p = prescription_gy_rbe
    for s, rows in structures_on_grid(patient, dose_grid, known_rows=known_rows):
        rows_by_name[s.name] = rows
        m = dose_metrics(rbe[rows], p)
        structures[s.name] = {
            "interpreted_type": s.interpreted_type, "voxels": int(rows.size),
            "d98_gy_rbe": m.d98, "d95_gy_rbe": m.d95, "d50_gy_rbe": m.d50, "d5_gy_rbe": m.d5,
            "d2_gy_rbe": m.d2, "dmax_gy_rbe": m.max, "mean_gy_rbe": m.mean,
            "mean_gy": float(phys[rows].mean()), "v95": m.v95, "v107": m.v107,
            "homogeneity_index": m.homogeneity_index}
    if target is not None and target in rows_by_name:
        on_grid = np.zeros(dose_grid.n_voxels, dtype=bool)
        on_grid[rows_by_name[target]] = True
        structures[target]["conformity_index"] = conformity_index(rbe, on_grid, p)
    top = 1.1 * float(rbe.max()) if rbe.size and rbe.max() > 0 else 1.0
    voxel_mm3 = float(np.prod(dose_grid.spacing_mm))
    dvhs = {}
    for name, rows in rows_by_name.items():
        h = cumulative_dvh(name, rbe[rows], voxel_mm3, max_dose=top, n_bins=DVH_BINS)
        dvhs[name] = {"dose_gy_rbe": [round(float(x), 4) for x in h.dose_gy],
                      "volume_fraction": [round(float(x), 5) for x in h.volume_fraction]}
    return StructureReport(structures, dvhs, rows_by_name)
