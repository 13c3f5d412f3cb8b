"""The per-structure part of a plan's report: metrics and DVHs on the whole-plan dose cubes.

``ionplan plan`` (:func:`planning.planner.make_plan`) and ``ionplan recalc``
(:func:`planning.compare.recalc.recalculate`) both write these entries of ``report.json``:

- ``structures``: for each structure with DVH samples on the dose grid (structure-set order)
  its interpreted type, volume (cm^3), number of DVH samples and of dose-grid voxels, D98, D95,
  D50, D5, D2, maximum and mean dose of the plan's model (the ``*_gy_rbe`` keys: Gy(RBE), or
  Gy under the physical model: report.json's ``dose_unit`` says which), mean physical dose
  (Gy), V95 and V107 (fractions of the structure's volume at or above 95 % and 107 % of the
  prescription; null when the dose is not of the prescription's kind, a recalculation under
  another kind of model) and the homogeneity index (ICRU 83, :mod:`planning.evaluation`) of
  target volumes (:data:`planning.patient.TARGET_TYPES`, and the plan's target; null for the
  other structures, whose D50 may be 0 or float noise: 1.85e9 for the body); the target also
  gets the conformity index (null like V95);
- ``dvh_gy_rbe``: cumulative DVHs of that dose on :data:`DVH_BINS` bins shared by
  all structures (0 to 1.1 x the cube maximum).

Doses, volumes and DVHs are those of the clinical DVH samples (contours sampled at 1 mm or
finer with partial volumes, dose interpolated trilinearly:
:func:`planning.structure_dose.sampled_structures`); the conformity index counts dose-grid
voxels (the 95 % isodose anywhere over the target's voxels), and ``rows_by_name`` are the
structures' dose-grid voxels for the callers' voxel-based numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.dose_grid import DoseGrid
from planning.dose_interpolation import VoxelLabels
from planning.evaluation import conformity_index, cumulative_dvh, dose_metrics
from planning.patient import Patient
from planning.structure_dose import sampled_structures, structures_on_grid
from planning.structure_sampling import DoseSamples

#: Number of bins of the report's DVHs.
DVH_BINS = 100


@dataclass(frozen=True, eq=False)
class StructureReport:
    """The ``structures`` and ``dvh_gy_rbe`` entries of a report and the rows behind them.

    Attributes
    ----------
    structures : dict
        ``{name: {"interpreted_type", "volume_cm3", "dvh_samples", "voxels", "d98_gy_rbe",
        ..., "homogeneity_index"}}``
        (and ``"conformity_index"`` for the target), JSON-ready; V95, V107 and the conformity
        index None when the dose is not relative to the prescription, the homogeneity index
        None for structures that are not targets.
    dvh_gy_rbe : dict
        ``{name: {"dose_gy_rbe": [...], "volume_fraction": [...]}}``, rounded to 4 and 5
        decimals.
    rows_by_name : dict of str to (n,) int64 array
        Flat dose-grid indices of each structure with dose-grid voxels.
    samples_by_name : dict of str to DoseSamples
        Clinical DVH samples of each structure in ``structures``.
    """

    structures: dict[str, dict[str, Any]]
    dvh_gy_rbe: dict[str, dict[str, list[float]]]
    rows_by_name: dict[str, NDArray[np.int64]]
    samples_by_name: dict[str, DoseSamples]

    def mean_of(self, name: str | None, cube: NDArray[np.floating]) -> float | None:
        """Volume-weighted mean of ``cube`` (on the report's dose grid) over structure
        ``name``'s DVH samples, as the report's means; None for a structure not reported."""
        if name is None or name not in self.samples_by_name:
            return None
        samples = self.samples_by_name[name]
        return float(np.average(samples.dose(cube), weights=samples.volume_mm3))


def structure_report(patient: Patient, dose_grid: DoseGrid,
                     physical_dose_gy: NDArray[np.floating],
                     rbe_dose_gy_rbe: NDArray[np.floating], prescription_gy_rbe: float,
                     target: str | None, *,
                     known_rows: Mapping[str, NDArray[np.int64]] | None = None,
                     labels: VoxelLabels | None = None,
                     relative: bool = True) -> StructureReport:
    """Metrics and DVHs of every structure on the whole-plan dose cubes.

    Parameters
    ----------
    patient : Patient
        CT and structure set (masks on the CT grid); without a structure set the report is
        empty.
    dose_grid : DoseGrid
        Grid of the cubes, in the CT's frame.
    physical_dose_gy, rbe_dose_gy_rbe : (nz, ny, nx) float arrays on ``dose_grid``
        Total physical dose (Gy) and the dose of the model computed with (Gy(RBE); Gy under
        the physical model).
    prescription_gy_rbe : float
        Total prescribed dose, in the prescription's unit (> 0): the reference of V95, V107
        and the conformity index.
    target : str or None
        Structure-set name of the target, which gets the conformity index; None (or a
        structure without voxels on the grid) gives none.
    known_rows : mapping of str to (n,) int64 array, optional
        Dose-grid rows already computed for some structures (by exact ROI name).
    labels : VoxelLabels, optional
        The LEM I tissue region of each voxel and structure (plans with a tissue per
        structure): a listed structure's RBE-weighted dose is read within its own tissue.
    relative : bool
        Whether ``rbe_dose_gy_rbe`` is a dose of the prescription's kind
        (:func:`planning.rbe.prescription_unit_of`); False leaves V95, V107 and the conformity
        index out (None): against a prescription of the other kind they read 0 % (a physical
        dose under a Gy(RBE) prescription) or 100 %.

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
    rbe = np.asarray(rbe_dose_gy_rbe).reshape(-1)
    p = prescription_gy_rbe
    sampled = sampled_structures(patient, dose_grid)
    # the samples hold their structure's rows already (DoseSamples.grid_rows)
    known = {**{s.name: samples.grid_rows for s, samples in sampled}, **(known_rows or {})}
    for s, rows in structures_on_grid(patient, dose_grid, known_rows=known):
        rows_by_name[s.name] = rows
    top = 1.1 * float(rbe.max()) if rbe.size and rbe.max() > 0 else 1.0
    dvhs = {}
    samples_by_name: dict[str, DoseSamples] = {}
    for s, samples in sampled:
        samples_by_name[s.name] = samples
        within = labels.within(s.name) if labels is not None else None
        values = samples.dose(rbe_dose_gy_rbe, within)
        m = dose_metrics(values, p, samples.volume_mm3,
                         maximum=samples.maximum(rbe_dose_gy_rbe, values, within))
        structures[s.name] = {
            "interpreted_type": s.interpreted_type, "volume_cm3": samples.volume_cm3,
            "dvh_samples": samples.n_samples,
            "voxels": int(rows_by_name[s.name].size) if s.name in rows_by_name else 0,
            "d98_gy_rbe": m.d98, "d95_gy_rbe": m.d95, "d50_gy_rbe": m.d50, "d5_gy_rbe": m.d5,
            "d2_gy_rbe": m.d2, "dmax_gy_rbe": m.max, "mean_gy_rbe": m.mean,
            "mean_gy": float(np.average(samples.dose(physical_dose_gy),
                                        weights=samples.volume_mm3)),
            "v95": m.v95 if relative else None, "v107": m.v107 if relative else None,
            "homogeneity_index": (m.homogeneity_index if s.is_target or s.name == target
                                  else None)}
        h = cumulative_dvh(s.name, values, samples.volume_mm3, max_dose=top, n_bins=DVH_BINS)
        dvhs[s.name] = {"dose_gy_rbe": [round(float(x), 4) for x in h.dose_gy],
                        "volume_fraction": [round(float(x), 5) for x in h.volume_fraction]}
    if target is not None and target in rows_by_name and target in structures:
        on_grid = np.zeros(dose_grid.n_voxels, dtype=bool)
        on_grid[rows_by_name[target]] = True
        structures[target]["conformity_index"] = (conformity_index(rbe, on_grid, p)
                                                  if relative else None)
    return StructureReport(structures, dvhs, rows_by_name, samples_by_name)
