"""Where the optimizer samples the dose: finer than the dose grid inside and around the target.

The optimizer fits the dose at its sample points only. With as many spots as target voxels, a
plan optimized on the dose grid itself can be flat at those points and ripple between them
(carbon Bragg peaks fall from 80 % to 20 % in 1-2 mm). So the optimizer gets its own grid,
:func:`optimization_grid` (half the dose grid's spacing by default), and samples it where the
dose must be right everywhere (:func:`sample_stride`):

- the target and the near ring around it (inner distance below
  :data:`planning.regions.SMOOTH_FROM_MM`): a stratified part of the optimization grid's
  points (:func:`jittered_rows`: :func:`fine_points_per_block` of every 2 x 2 x 2 block, at
  every sub-voxel position somewhere), a mean spacing of 2.4 mm or finer (twice the density
  of a 3 mm dose grid);
- other structures (organs at risk): at about the dose grid's spacing; for their maximum-dose
  objectives also every optimization-grid point on either side of their surface
  (:func:`boundary_rows`, under :func:`max_points_name`), where a structure beside the
  target meets the dose fall-off: the lattice alone sits up to half a dose voxel inside the
  contour, and on the demo head the brainstem (a few mm from the PTV) reached 47 Gy(RBE) on
  its DVH under a 30.6 Gy(RBE) maximum that none of its points exceeded (2.5 mm dose grid,
  2026-12-07);
- rings from :data:`planning.regions.SMOOTH_FROM_MM` out: at about
  :data:`planning.regions.SMOOTH_SAMPLING_MM` (the dose there varies over the pencil beams'
  width).

The final cubes (report, DICOM, GUI) stay on the dose grid; a second planning engine on the
optimization grid, limited to :func:`optimization_region`, provides the optimizer's matrices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from planning.dose_grid import DoseGrid
from planning.patient import Patient
from planning.regions import SMOOTH_FROM_MM, SMOOTH_SAMPLING_MM, region_mask, ring_match
from planning.structure_dose import body_structures, structure_rows

#: The default optimization grid is half the dose grid's spacing but not finer than this (mm),
#: unless the dose grid is: finer points add matrix rows faster than they add information at
#: the pencil beams' smallest widths.
FINEST_DEFAULT_MM = 1.0


#: Most points the optimizer keeps of every 2 x 2 x 2 block of the optimization grid in the
#: target and the near rings (a full half-spacing grid, 8 of 8, costs four times the matrices:
#: 15 GB for a TG-119-sized target with 8,000 spots).
FINE_POINTS_PER_BLOCK = 2

#: Mean spacing of the optimizer's points in the target and the near rings that suffices, mm:
#: a grid fine enough reaches it with fewer than :data:`FINE_POINTS_PER_BLOCK` of a block (two
#: of 8 at 1.25-1.5 mm, the half spacing of 2.5-3 mm dose grids: 2.0-2.4 mm; one of 8 at
#: 1 mm, a 2 mm dose grid's: 2.0 mm, half the matrices of two).
FINE_MEAN_SPACING_MM = 2.4


def fine_points_per_block(spacing_mm: float) -> int:
    """Points kept of every 2 x 2 x 2 block of an optimization grid of ``spacing_mm`` in the
    target and the near rings: the fewest whose mean spacing ``spacing_mm (8 / n)^(1/3)`` is at
    most :data:`FINE_MEAN_SPACING_MM`, at most :data:`FINE_POINTS_PER_BLOCK`."""
    wanted = math.ceil(8.0 * (spacing_mm / FINE_MEAN_SPACING_MM) ** 3 - 1e-9)
    return max(1, min(FINE_POINTS_PER_BLOCK, wanted))


def default_optimization_spacing_mm(dose_grid_mm: float) -> float:
    """Half the dose grid spacing, not below :data:`FINEST_DEFAULT_MM`."""
    return max(0.5 * dose_grid_mm, min(FINEST_DEFAULT_MM, dose_grid_mm))


def optimization_grid(ct_grid: DoseGrid, dose_grid: DoseGrid, spacing_mm: float | None
                      ) -> DoseGrid:
    """The optimizer's grid over the CT (``spacing_mm`` or the default of the dose grid)."""
    spacing = (default_optimization_spacing_mm(float(max(dose_grid.spacing_mm)))
               if spacing_mm is None else float(spacing_mm))
    if tuple(dose_grid.spacing_mm) == (spacing,) * 3:
        return dose_grid
    return DoseGrid.covering(ct_grid, spacing)


def sample_stride(name: str, target: str, opt_grid: DoseGrid, dose_grid: DoseGrid) -> int:
    """Every how many optimization-grid points (along each axis) the optimizer samples
    structure or region ``name`` (see the module docstring)."""
    step = float(max(opt_grid.spacing_mm))
    match = ring_match(name)
    if name == target or (match is not None and float(match["inner"]) < SMOOTH_FROM_MM):
        return 1
    if match is not None:
        return max(1, math.floor(SMOOTH_SAMPLING_MM / step + 1e-9))
    return max(1, round(float(max(dose_grid.spacing_mm)) / step))


def thinned_rows(rows: NDArray[np.int64], shape: tuple[int, int, int], stride: int
                 ) -> NDArray[np.int64]:
    """The flat indices of ``rows`` (on a grid of ``shape``) whose three indices are all
    multiples of ``stride``."""
    if stride <= 1:
        return rows
    k, j, i = np.unravel_index(rows, shape)
    keep = (k % stride == 0) & (j % stride == 0) & (i % stride == 0)
    return rows[keep]


def jittered_rows(rows: NDArray[np.int64], shape: tuple[int, int, int], keep: int
                  ) -> NDArray[np.int64]:
    """``keep`` of the 8 points of every 2 x 2 x 2 block of a grid of ``shape``, chosen by a
    fixed hash of the block (the same points every time), from the flat indices ``rows``.

    Stratified jitter: the kept points take every position within a block somewhere in a
    structure, so a ripple between the points of a regular grid cannot hide from them, at
    ``keep / 8`` of the points of the full grid.
    """
    if keep >= 8:
        return rows
    k, j, i = (np.asarray(a, dtype=np.int64) for a in np.unravel_index(rows, shape))
    sub = (k % 2) * 4 + (j % 2) * 2 + (i % 2)
    block = (k // 2) * 73856093 ^ (j // 2) * 19349663 ^ (i // 2) * 83492791
    first = block % 8
    step = 1 + (block // 8) % 7  # another of the 8, never the first
    chosen = np.zeros(rows.shape, dtype=bool)
    for n in range(keep):
        chosen |= sub == (first + n * step) % 8
    return rows[chosen]


#: Suffix of the point set a maximum-dose objective on an organ at risk is evaluated on
#: (:func:`max_points_name`); a backslash cannot occur in a DICOM ROI Name (LO).
MAX_POINTS_SUFFIX = "\\max points"


def max_points_name(name: str) -> str:
    """The name of structure ``name``'s points for maximum-dose objectives: its sample
    points and both sides of its surface (:func:`max_point_rows`)."""
    return name + MAX_POINTS_SUFFIX


def structure_of_max_points(name: str) -> str | None:
    """The structure whose :func:`max_points_name` is ``name``; None for any other name."""
    return name[:-len(MAX_POINTS_SUFFIX)] if name.endswith(MAX_POINTS_SUFFIX) else None


def boundary_rows(rows: NDArray[np.int64], shape: tuple[int, int, int]) -> NDArray[np.int64]:
    """The points on both sides of the surface of the structure whose points are ``rows``
    (flat indices on a grid of ``shape``, increasing): those of ``rows`` with a face neighbour
    not among them, and the grid points outside with a face neighbour among them; flat
    indices, increasing.

    The contour lies between the two layers, and the clinical DVH reads the dose there by
    interpolating between grid points (:mod:`planning.structure_sampling`): a maximum held on
    both layers holds at the contour."""
    if rows.size == 0:
        return rows
    idx = np.unravel_index(rows, shape)
    lo = [int(a.min()) - 1 for a in idx]  # one layer of room around the bounding box
    box = tuple(int(a.max()) - b + 2 for a, b in zip(idx, lo, strict=True))
    inside = np.zeros(box, dtype=bool)
    inside[tuple(a - b for a, b in zip(idx, lo, strict=True))] = True
    faces = ndimage.generate_binary_structure(3, 1)
    layers = ndimage.binary_dilation(inside, faces) & ~ndimage.binary_erosion(inside, faces)
    k, j, i = (a + b for a, b in zip(np.nonzero(layers), lo, strict=True))
    on_grid = ((k >= 0) & (k < shape[0]) & (j >= 0) & (j < shape[1]) & (i >= 0)
               & (i < shape[2]))
    return np.sort(np.ravel_multi_index((k[on_grid], j[on_grid], i[on_grid]), shape))


def max_point_rows(patient: Patient, name: str, target: str, ct_grid: DoseGrid,
                   opt_grid: DoseGrid, dose_grid: DoseGrid) -> NDArray[np.int64]:
    """The points of a maximum-dose objective on structure ``name``: its sample points
    (:func:`sample_rows`) and every optimization-grid point on either side of its surface
    (:func:`boundary_rows`), flat indices on ``opt_grid``, increasing."""
    rows = structure_rows(region_mask(patient, name), ct_grid, opt_grid)
    target_rows = structure_rows(region_mask(patient, target), ct_grid, opt_grid)
    return _max_points(rows, _sampled(rows, name, target, opt_grid, dose_grid), target_rows,
                       opt_grid.shape)


def _max_points(rows: NDArray[np.int64], sampled: NDArray[np.int64],
                target_rows: NDArray[np.int64], shape: tuple[int, int, int]
                ) -> NDArray[np.int64]:
    """:func:`max_point_rows` of a structure whose points are ``rows`` and sample points
    ``sampled``: the boundary's points in the target (``target_rows``) are left to the target,
    so that a maximum on an organ never holds the target's own points down where the target
    reaches the organ's surface (the demo PTV touches the brain's at 32 points of a 1.5 mm
    grid, and a plan so held grew a 115 % hot spot beside them)."""
    return np.union1d(sampled, np.setdiff1d(boundary_rows(rows, shape), target_rows))


def sample_rows(patient: Patient, name: str, target: str, ct_grid: DoseGrid,
                opt_grid: DoseGrid, dose_grid: DoseGrid) -> NDArray[np.int64]:
    """The optimizer's sample points of structure or region ``name``: flat indices on
    ``opt_grid``, increasing. Strides above 1 take a regular sub-lattice
    (:func:`sample_stride`); the target and the near rings take
    :func:`fine_points_per_block` of every 2 x 2 x 2 block of the optimization grid
    (:func:`jittered_rows`)."""
    rows = structure_rows(region_mask(patient, name), ct_grid, opt_grid)
    return _sampled(rows, name, target, opt_grid, dose_grid)


def _sampled(rows: NDArray[np.int64], name: str, target: str, opt_grid: DoseGrid,
             dose_grid: DoseGrid) -> NDArray[np.int64]:
    """:func:`sample_rows` of structure ``name``'s points ``rows`` on ``opt_grid``."""
    stride = sample_stride(name, target, opt_grid, dose_grid)
    if stride == 1 and opt_grid is not dose_grid:
        keep = fine_points_per_block(float(max(opt_grid.spacing_mm)))
        return jittered_rows(rows, opt_grid.shape, keep)
    return thinned_rows(rows, opt_grid.shape, stride)


def optimization_region(patient: Patient, target: str, names: Sequence[str],
                        ct_grid: DoseGrid, opt_grid: DoseGrid, dose_grid: DoseGrid
                        ) -> tuple[NDArray[np.bool_], dict[str, NDArray[np.int64]]]:
    """The points of ``opt_grid`` the optimization engine computes, (nz, ny, nx) bool: the
    sample points (:func:`sample_rows`) of every structure but the body and of ``names`` (the
    objectives' generated regions), and the maximum-dose points (:func:`max_point_rows`) of
    every structure but the body and ``target``, so that objectives on any structure need no
    new engine; and those points by structure, region or :func:`max_points_name` (computed
    once, kept by the plan)."""
    flat = np.zeros(opt_grid.n_voxels, dtype=bool)
    body = {s.name for s in body_structures(patient)}
    assert patient.structure_set is not None
    wanted = [s.name for s in patient.structure_set.structures if s.name not in body]
    rows_by_name = {}
    target_rows = structure_rows(region_mask(patient, target), ct_grid, opt_grid)
    for name in dict.fromkeys([*wanted, *names]):
        rows = structure_rows(region_mask(patient, name), ct_grid, opt_grid)
        rows_by_name[name] = _sampled(rows, name, target, opt_grid, dose_grid)
        flat[rows_by_name[name]] = True
        if name in wanted and name != target:
            rows_by_name[max_points_name(name)] = _max_points(rows, rows_by_name[name],
                                                              target_rows, opt_grid.shape)
            flat[rows_by_name[max_points_name(name)]] = True
    return flat.reshape(opt_grid.shape), rows_by_name


def target_check_grid(dose_grid: DoseGrid) -> DoseGrid:
    """The grid on which the refinement (:mod:`planning.engine.refinement`) checks the target's
    dose: the dose grid's voxel centres and the midpoints between them (half its spacing,
    ``2 n - 1`` points along each axis, same origin), or the dose grid itself where half its
    spacing would be finer than :data:`FINEST_DEFAULT_MM`.

    Carbon Bragg peaks and the edges of heterogeneities give the dose structure at a scale of
    1-2 mm, so a plan that is right at the dose grid's points can still be hot between them:
    a plan recalculated on a finer grid would show it. Checking the midpoints as well catches
    most of it at eight times the target's points (the check is a forward pass over the target
    only)."""
    half = tuple(0.5 * s for s in dose_grid.spacing_mm)
    if min(half) < FINEST_DEFAULT_MM - 1e-9:
        return dose_grid
    shape = tuple(2 * n - 1 for n in dose_grid.shape)
    return DoseGrid(shape=(shape[0], shape[1], shape[2]), spacing_mm=(half[0], half[1], half[2]),
                    origin_mm=dose_grid.origin_mm)


def rows_on_check_grid(rows: NDArray[np.int64], grid: DoseGrid, check: DoseGrid
                       ) -> NDArray[np.int64]:
    """The points of ``check`` (:func:`target_check_grid`) that are ``rows`` (flat indices on
    ``grid``): all of them when ``grid`` is ``check``, each voxel's centre when ``check`` is the
    half-spacing grid of ``grid``, none when the two grids' points do not coincide. Sorted."""
    if grid == check:
        return np.sort(rows)
    if check == target_check_grid(grid):
        k, j, i = np.unravel_index(rows, grid.shape)
        return np.sort(np.ravel_multi_index((2 * k, 2 * j, 2 * i), check.shape))
    return np.zeros(0, dtype=np.int64)
