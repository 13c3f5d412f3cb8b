"""Per-structure DVH curves and metric differences of two doses on one grid.

Structures come from the CT's structure set. DVHs and metrics use the clinical DVH samples
(contours sampled at 1 mm or finer with partial volumes, each dose interpolated trilinearly at
them: :func:`planning.structure_dose.sampled_structures`, as the planner's report and the GUI's
statistics); :func:`structure_masks` gives the dose-grid voxels of each structure (a voxel
belongs to a structure when the CT voxel nearest to its centre does) for the view's focus.
Metrics follow
ICRU 83 (:mod:`planning.evaluation`): D98, D95, D50, D2, mean and maximum, and V95 (the fraction
of the structure receiving at least 95 % of the prescription, only when it is known).

A and B may be two quantities (a physical and an RBE-weighted dose): each side's metrics are
then in its own unit, B - A is not taken (None) and B / A is the metrics' ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.dose_grid import DoseGrid
from planning.evaluation import Dvh, cumulative_dvh, dose_metrics
from planning.patient import Patient, Structure
from planning.structure_dose import paired_samples, sampled_structures, structures_on_grid

#: Metrics compared, in report order.
METRICS = ("d98", "d95", "d50", "d2", "mean", "max", "v95")
DVH_BINS = 200


@dataclass(frozen=True, eq=False)
class StructureComparison:
    """One structure's DVHs and metrics under the reference (A) and evaluated (B) dose.

    Attributes
    ----------
    name : str
        ROI name.
    interpreted_type : str
        RT ROI Interpreted Type.
    colour_rgb : tuple of 3 int
        Display colour (the structure set's, else a fixed palette colour).
    volume_cm3 : float
        Volume of the structure on the grid (its DVH samples').
    samples : int
        DVH samples of the structure.
    metrics_a, metrics_b : dict
        ``{metric: value}`` for :data:`METRICS`; doses in each side's unit (Gy or Gy(RBE)),
        V95 a fraction in [0, 1] or None without a prescription of that side's quantity.
    dvh_a, dvh_b : Dvh
        Cumulative DVHs on the same dose bins (each in its side's unit).
    same_quantity : bool
        Whether A and B are one quantity (both physical or both RBE-weighted): only then is
        :attr:`difference` taken.
    """

    name: str
    interpreted_type: str
    colour_rgb: tuple[int, int, int]
    volume_cm3: float
    samples: int
    metrics_a: dict[str, float | None]
    metrics_b: dict[str, float | None]
    dvh_a: Dvh
    dvh_b: Dvh
    same_quantity: bool = True

    @property
    def difference(self) -> dict[str, float | None]:
        """``B - A`` of each metric (None where either is None, and for every metric of two
        quantities: a Gy(RBE) minus a Gy is no dose difference)."""
        out: dict[str, float | None] = {}
        for k in METRICS:
            a, b = self.metrics_a[k], self.metrics_b[k]
            out[k] = None if a is None or b is None or not self.same_quantity else b - a
        return out

    @property
    def ratio(self) -> dict[str, float | None]:
        """``B / A`` of each dose metric (None for V95, and where A is None or not above 0);
        of a physical A and an RBE-weighted B, B / A of Dmean is the structure's mean RBE
        weighted by physical dose."""
        out: dict[str, float | None] = {}
        for k in METRICS:
            a, b = self.metrics_a[k], self.metrics_b[k]
            out[k] = None if k == "v95" or a is None or b is None or not a > 0 else b / a
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready metrics (DVH curves left out: see :func:`dvh_curves_dict`)."""
        return {"interpreted_type": self.interpreted_type, "volume_cm3": self.volume_cm3,
                "dvh_samples": self.samples,
                "colour_rgb": list(self.colour_rgb), "a": self.metrics_a, "b": self.metrics_b,
                "b_minus_a": self.difference, "b_over_a": self.ratio}


def structure_masks(patient: Patient, grid: DoseGrid) -> list[tuple[Structure, NDArray[np.int64]]]:
    """``(structure, flat rows on grid)`` of every structure with voxels on ``grid``
    (:func:`planning.structure_dose.structures_on_grid`)."""
    return structures_on_grid(patient, grid)


def _metrics(doses: NDArray[np.float64], volumes_mm3: NDArray[np.float32],
             prescription_gy: float | None, maximum: float) -> dict[str, float | None]:
    m = dose_metrics(doses, prescription_gy if prescription_gy else 1.0, volumes_mm3,
                     maximum=maximum)
    return {"d98": m.d98, "d95": m.d95, "d50": m.d50, "d2": m.d2, "mean": m.mean,
            "max": m.max, "v95": m.v95 if prescription_gy else None}


def compare_structures(reference: ArrayLike, evaluated: ArrayLike, grid: DoseGrid,
                       patient: Patient, *, evaluated_grid: DoseGrid | None = None,
                       prescription_gy: float | None = None,
                       prescription_b_gy: float | None = None, same_quantity: bool = True,
                       n_bins: int = DVH_BINS) -> tuple[StructureComparison, ...]:
    """DVHs and metrics of every structure of ``patient`` under both doses.

    Parameters
    ----------
    reference : (nz, ny, nx) float array on ``grid``
        Dose A, Gy or Gy(RBE).
    evaluated : float array on ``evaluated_grid``
        Dose B.
    grid : DoseGrid
        A's grid (same Frame of Reference as the patient's CT).
    patient : Patient
        CT and structure set; structures without DVH samples on the grids are left out.
    evaluated_grid : DoseGrid, optional
        B's grid (default: ``grid``). Where it differs, each dose is read on its own grid at
        the samples that lie on both (:func:`planning.structure_dose.paired_samples`), so
        that each side's metrics are those of its own report, not of a dose resampled onto
        the other's grid.
    prescription_gy : float, optional
        Total prescribed dose for V95 of A (None: no V95 of A).
    prescription_b_gy : float, optional
        B's (None: no V95 of B): the same as A's for doses of one quantity and one RBE
        model, else that of B's quantity and model, if any (a prescription is of one of
        them).
    same_quantity : bool
        Whether A and B are one quantity (both physical or both RBE-weighted).
    n_bins : int
        DVH dose bins, shared by A and B (0 to 1.05 x the larger maximum).
    """
    ref = np.asarray(reference, dtype=np.float64)
    ev = np.asarray(evaluated, dtype=np.float64)
    top = 1.05 * max(float(ref.max()), float(ev.max()), 1e-9)
    out = []
    paired = ([(s, samples, samples) for s, samples in sampled_structures(patient, grid)]
              if evaluated_grid is None or evaluated_grid == grid
              else paired_samples(patient, grid, evaluated_grid))
    for s, on_a, on_b in paired:
        assert patient.structure_set is not None  # structures were sampled
        colour = patient.structure_set.display_colour(s)
        dose_a, dose_b, w = on_a.dose(ref), on_b.dose(ev), on_a.volume_mm3
        out.append(StructureComparison(
            name=s.name, interpreted_type=s.interpreted_type,
            colour_rgb=(int(colour[0]), int(colour[1]), int(colour[2])),
            volume_cm3=on_a.volume_cm3, samples=on_a.n_samples,
            metrics_a=_metrics(dose_a, w, prescription_gy, on_a.maximum(ref, dose_a)),
            metrics_b=_metrics(dose_b, w, prescription_b_gy, on_b.maximum(ev, dose_b)),
            dvh_a=cumulative_dvh(s.name, dose_a, w, max_dose=top, n_bins=n_bins),
            dvh_b=cumulative_dvh(s.name, dose_b, w, max_dose=top, n_bins=n_bins),
            same_quantity=same_quantity))
    return tuple(out)


def dvh_curves_dict(structures: tuple[StructureComparison, ...]) -> dict[str, Any]:
    """``{name: {"dose_gy", "a", "b"}}``: the DVH curves for report.json (rounded)."""
    return {s.name: {"dose_gy": [round(float(x), 4) for x in s.dvh_a.dose_gy],
                     "a": [round(float(x), 5) for x in s.dvh_a.volume_fraction],
                     "b": [round(float(x), 5) for x in s.dvh_b.volume_fraction]}
            for s in structures}
