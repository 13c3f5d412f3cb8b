"""Which dose-grid voxels a structure covers: the voxel whose centre lies in a CT voxel of the
structure (nearest CT voxel), checked against that definition point by point."""

from __future__ import annotations

import numpy as np
import pytest

from planning.dose_grid import DoseGrid
from planning.structure_dose import structure_rows

CT = DoseGrid((12, 15, 17), (2.5, 1.1, 0.9), (-20.3, -30.1, 14.0))


def _by_definition(mask: np.ndarray, dose_grid: DoseGrid) -> np.ndarray:
    """Each dose-grid centre, its nearest CT voxel by distance along each axis, then the mask
    (the shifts of the tests keep centres off the CT voxels' boundaries, where rounding ties)."""
    rows = []
    for flat, (x, y, z) in enumerate(dose_grid.voxel_centers_lps()):
        ct_centres = [CT.origin_mm[c] + CT.spacing_mm[2 - c] * np.arange(CT.shape[2 - c])
                      for c in range(3)]
        ijk = [int(np.argmin(np.abs(cc - p))) for cc, p in zip(ct_centres, (x, y, z), strict=True)]
        outside = any(abs(cc[n] - p) > 0.5 * CT.spacing_mm[2 - c] + 1e-9
                      for c, (cc, n, p) in enumerate(zip(ct_centres, ijk, (x, y, z), strict=True)))
        if not outside and mask[ijk[2], ijk[1], ijk[0]]:
            rows.append(flat)
    return np.asarray(rows, dtype=np.int64)


@pytest.mark.parametrize("spacing", [0.7, 1.6, 3.1])
@pytest.mark.parametrize("shift", [(0.013, -0.021, 0.017), (3.31, -4.13, 6.27), (0.0, 0.0, -40.03)])
def test_rows_are_the_voxels_whose_centres_fall_in_the_structure(spacing, shift):
    rng = np.random.default_rng(7)
    mask = np.zeros(CT.shape, dtype=bool)
    mask[3:9, 2:12, 4:15] = rng.random((6, 10, 11)) < 0.6
    grid = DoseGrid.covering(CT, spacing)
    grid = DoseGrid(grid.shape, grid.spacing_mm,
                    tuple(o + d for o, d in zip(grid.origin_mm, shift, strict=True)))
    rows = structure_rows(mask, CT, grid)
    assert rows.dtype == np.int64
    assert np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, _by_definition(mask, grid))


def test_an_empty_structure_has_no_rows():
    empty = np.zeros(CT.shape, dtype=bool)
    assert structure_rows(empty, CT, DoseGrid.covering(CT, 2.0)).size == 0
