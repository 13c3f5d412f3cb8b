"""Structures on a dose grid: which voxels each one covers, and its dose statistics.

Two ways to put a structure on a dose grid, each with its job:

- **Dose-grid voxels** (:func:`structure_rows`): a dose-grid voxel belongs to a structure when
  its centre falls in a CT voxel of the structure (nearest CT voxel). The optimizer's objectives,
  the dose specification point, the conformity index and the comparison's focus use them.
- **Clinical DVH samples** (:func:`sampled_structures`): the contours sampled at 1 mm or finer
  with partial volumes (:mod:`planning.structure_sampling`), the dose interpolated trilinearly
  at each sample (:mod:`planning.dose_interpolation`). The DVHs and metrics of the report (the
  beams' target means and the mMKM/LEM I exchange table included), the GUI
  (:func:`structure_dose_statistics`), the comparison and robust evaluation use them.

The samples of a structure on a dose grid are computed once and kept while the structure
lives (the dose changes, the geometry does not): at most :data:`GRIDS_KEPT` dose grids per
structure, about 20 bytes a sample.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planning.dose_grid import DoseGrid
from planning.dose_interpolation import VoxelLabels, trilinear_stencil
from planning.errors import InputError
from planning.evaluation import DoseMetrics, Dvh, cumulative_dvh, dose_metrics
from planning.patient import CtVolume, Patient, Structure
from planning.structure_sampling import (
    DoseSamples,
    SamplingSettings,
    dose_samples,
    sample_structure,
)

#: Names (case-insensitive) that mark the body contour when no ROI is of type EXTERNAL.
BODY_NAMES = ("external", "body", "skin")


def grid_of(ct: CtVolume) -> DoseGrid:
    """The dose-engine grid of a CT volume."""
    return DoseGrid(shape=ct.shape, spacing_mm=ct.spacing_mm, origin_mm=ct.origin_mm)


def structure_rows(mask: NDArray[np.bool_], ct_grid: DoseGrid, dose_grid: DoseGrid
                   ) -> NDArray[np.int64]:
    """Flat dose-grid indices whose centres fall in ``mask`` (nearest CT voxel).

    Parameters
    ----------
    mask : (nz, ny, nx) bool array on ``ct_grid``
    ct_grid, dose_grid : DoseGrid

    Returns
    -------
    (n,) int64 array, increasing.
    """
    # The grids are axis-aligned, so the nearest CT index of a dose-grid centre is one lookup
    # per axis: no (N, 3) array of centres for a fine grid.
    nearest = []
    for axis in range(3):
        lps = 2 - axis  # LPS component of array axis (z, y, x)
        centres = (np.arange(dose_grid.shape[axis], dtype=np.float64)
                   * dose_grid.spacing_mm[axis] + dose_grid.origin_mm[lps])
        nearest.append(np.rint((centres - ct_grid.origin_mm[lps])
                               / ct_grid.spacing_mm[axis]).astype(np.int64))
    present = [np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a)))
               for a in range(3)]
    if not all(p.size for p in present):
        return np.zeros(0, dtype=np.int64)
    # dose-grid indices per axis whose nearest CT index lies within the mask's bounding box
    near = [np.flatnonzero((n >= p[0]) & (n <= p[-1]))
            for n, p in zip(nearest, present, strict=True)]
    if not all(a.size for a in near):
        return np.zeros(0, dtype=np.int64)
    covered = np.zeros(dose_grid.shape, dtype=bool)
    covered[np.ix_(*near)] = mask[np.ix_(*(n[a] for n, a in zip(nearest, near, strict=True)))]
    return np.flatnonzero(covered).astype(np.int64)


def structures_on_grid(patient: Patient, dose_grid: DoseGrid, *,
                       names: Sequence[str] | None = None,
                       known_rows: Mapping[str, NDArray[np.int64]] | None = None
                       ) -> list[tuple[Structure, NDArray[np.int64]]]:
    """Every structure with voxels on ``dose_grid`` and its flat dose-grid rows.

    Parameters
    ----------
    patient : Patient
        CT and structure set (masks on the CT grid); no structure set gives an empty list.
    dose_grid : DoseGrid
        Grid in the CT's frame.
    names : sequence of str, optional
        Only these structures (exact ROI names; default: all).
    known_rows : mapping of str to (n,) int64 array, optional
        Rows already computed with :func:`structure_rows`, by exact ROI name (reused, not
        recomputed).

    Returns
    -------
    list of (Structure, (n,) int64 array)
        In structure-set order; structures without a dose-grid voxel are left out.
    """
    if patient.structure_set is None:
        return []
    ct_grid = grid_of(patient.ct)
    wanted = None if names is None else set(names)
    known = known_rows or {}
    out = []
    for s in patient.structure_set.structures:
        if wanted is not None and s.name not in wanted:
            continue
        rows = known.get(s.name)
        if rows is None:
            rows = structure_rows(s.mask.to_dense(), ct_grid, dose_grid)
        if rows.size:
            out.append((s, rows))
    return out


#: Dose grids whose samples are kept per structure (the latest ones).
GRIDS_KEPT = 2
_SampleKey = tuple[CtVolume, DoseGrid, SamplingSettings]
_samples_kept: weakref.WeakKeyDictionary[Structure, dict[_SampleKey, DoseSamples | None]] = (
    weakref.WeakKeyDictionary())
_samples_lock = threading.Lock()


def _kept_samples(structure: Structure, ct: CtVolume, dose_grid: DoseGrid,
                  settings: SamplingSettings) -> DoseSamples | None:
    """:func:`planning.structure_sampling.dose_samples`, computed once per structure and grid."""
    key = (ct, dose_grid, settings)
    with _samples_lock:
        kept = _samples_kept.get(structure, {})
        if key in kept:
            return kept[key]
    samples = dose_samples(structure, ct, dose_grid, settings)
    if samples is not None:
        samples = dataclasses.replace(samples, grid_rows=structure_rows(
            structure.mask.to_dense(), grid_of(ct), dose_grid))
    with _samples_lock:
        kept = _samples_kept.setdefault(structure, {})
        kept[key] = samples
        while len(kept) > GRIDS_KEPT:
            del kept[next(iter(kept))]
    return samples


def sampled_structures(patient: Patient, dose_grid: DoseGrid, *,
                       names: Sequence[str] | None = None,
                       settings: SamplingSettings | None = None
                       ) -> list[tuple[Structure, DoseSamples]]:
    """Every structure with DVH samples on ``dose_grid`` and those samples.

    Parameters
    ----------
    patient : Patient
        CT and structure set; no structure set gives an empty list.
    dose_grid : DoseGrid
        Grid in the CT's frame.
    names : sequence of str, optional
        Only these structures (exact ROI names; default: all).
    settings : SamplingSettings, optional
        Sampling density (default :class:`planning.structure_sampling.SamplingSettings`).

    Returns
    -------
    list of (Structure, DoseSamples)
        In structure-set order; structures without a sample on the grid are left out.
    """
    if patient.structure_set is None:
        return []
    settings = settings or SamplingSettings()
    wanted = None if names is None else set(names)
    out = []
    for s in patient.structure_set.structures:
        if wanted is not None and s.name not in wanted:
            continue
        samples = _kept_samples(s, patient.ct, dose_grid, settings)
        if samples is not None:
            out.append((s, samples))
    return out


def paired_samples(patient: Patient, grid_a: DoseGrid, grid_b: DoseGrid, *,
                   settings: SamplingSettings | None = None
                   ) -> list[tuple[Structure, DoseSamples, DoseSamples]]:
    """Every structure's clinical DVH samples that lie on both ``grid_a`` and ``grid_b``,
    ready to read a cube on each grid: two doses on different grids read at the same points
    and volumes, each on its own grid (a dose resampled onto another grid loses the peaks
    between that grid's points: a comparison read A's PTV D95 1.7 % below A's own report).
    A structure inside both grids gets on each the samples :func:`sampled_structures` gives
    there, so each side's metrics are those of its own report. Each side's
    :attr:`DoseSamples.grid_rows` are its own grid's voxels in the structure.

    Returns
    -------
    list of (Structure, DoseSamples on grid_a, DoseSamples on grid_b)
        In structure-set order; structures without a sample on both grids are left out.
    """
    if patient.structure_set is None:
        return []
    settings = settings or SamplingSettings()
    ct_grid = grid_of(patient.ct)
    out = []
    for s in patient.structure_set.structures:
        samples = sample_structure(s, patient.ct, settings)
        if samples is None:
            continue
        both = (trilinear_stencil(samples.points_mm, grid_a)[1]
                & trilinear_stencil(samples.points_mm, grid_b)[1])
        if not both.any():
            continue
        points, volume = samples.points_mm[both], samples.volume_mm3[both].astype(np.float32)
        mask = s.mask.to_dense()
        a, b = (DoseSamples(trilinear_stencil(points, grid)[0], volume, samples.cell_mm,
                            grid_rows=structure_rows(mask, ct_grid, grid))
                for grid in (grid_a, grid_b))
        out.append((s, a, b))
    return out


def body_mask(patient: Patient, ct_grid: DoseGrid, dose_grid: DoseGrid
              ) -> NDArray[np.bool_] | None:
    """The body on the dose grid: the first ROI of type EXTERNAL or named as in
    :data:`BODY_NAMES` that has dose-grid voxels.

    Parameters
    ----------
    patient : Patient
        CT with a structure set.
    ct_grid, dose_grid : DoseGrid
        The CT's grid (:func:`grid_of`) and the dose grid.

    Returns
    -------
    (nz, ny, nx) bool array on ``dose_grid``, or None
        None without such a structure (the dose engine then falls back to an RSP threshold).
    """
    for s in body_structures(patient):
        mask = np.zeros(dose_grid.n_voxels, dtype=bool)
        mask[structure_rows(s.mask.to_dense(), ct_grid, dose_grid)] = True
        if mask.any():
            return mask.reshape(dose_grid.shape)
    return None


def body_structures(patient: Patient) -> list[Structure]:
    """The structures that may be the body: type EXTERNAL or named as in :data:`BODY_NAMES`,
    in the structure set's order."""
    ss = patient.structure_set
    if ss is None:
        return []
    return [s for s in ss.structures
            if s.interpreted_type.upper() == "EXTERNAL" or s.name.casefold() in BODY_NAMES]


@dataclass(frozen=True, eq=False)
class StructureDose:
    """DVH and metrics of one structure.

    Attributes
    ----------
    name : str
        ROI name.
    colour_rgb : tuple of 3 int
        The colour it is drawn in (:meth:`planning.patient.StructureSet.display_colours`).
    interpreted_type : str
        RT ROI Interpreted Type.
    dvh : Dvh
        Cumulative DVH; ``dvh.dose_gy`` is in the unit of the cube (Gy, Gy(RBE), keV/µm, ...).
    metrics : DoseMetrics
        D98, D95, D50, D5, D2, mean, max, min, V95, V107 and HI against ``reference``.
    samples : int
        DVH samples of the structure (:func:`sampled_structures`).
    """

    name: str
    colour_rgb: tuple[int, int, int]
    interpreted_type: str
    dvh: Dvh
    metrics: DoseMetrics
    samples: int


def structure_dose_statistics(
    patient: Patient,
    dose: NDArray[np.floating],
    dose_grid: DoseGrid,
    reference: float,
    *,
    names: Sequence[str] | None = None,
    n_bins: int = 200,
    labels: VoxelLabels | None = None,
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
    labels : VoxelLabels, optional
        For a cube that jumps between regions (the RBE-weighted dose or RBE of a plan with a
        LEM I tissue per structure): each listed structure is read within its own region.

    Returns
    -------
    list of StructureDose
        Structures with DVH samples on the grid (:func:`sampled_structures`), in
        structure-set order.
    """
    cube = np.asarray(dose)
    if cube.shape != tuple(dose_grid.shape):
        raise InputError(f"dose cube of shape {cube.shape} does not match its grid "
                         f"{tuple(dose_grid.shape)}")
    if not (np.isfinite(reference) and reference > 0):
        raise InputError(f"the reference dose must be a positive number, got {reference}")
    structure_set = patient.structure_set
    if structure_set is None:
        return []
    top = 1.05 * float(cube.max()) if cube.size and cube.max() > 0 else 1.0
    out = []
    for s, samples in sampled_structures(patient, dose_grid, names=names):
        within = labels.within(s.name) if labels is not None else None
        values = samples.dose(cube, within)
        out.append(StructureDose(
            name=s.name, colour_rgb=structure_set.display_colour(s),
            interpreted_type=s.interpreted_type,
            dvh=cumulative_dvh(s.name, values, samples.volume_mm3, max_dose=top, n_bins=n_bins),
            metrics=dose_metrics(values, reference, samples.volume_mm3,
                                 maximum=samples.maximum(cube, values, within)),
            samples=samples.n_samples))
    return out
