"""Resampling between axis-aligned dose grids and the common grid of two doses.

Expected values are analytic: trilinear interpolation reproduces any function that is linear
in x, y and z, so a linear field sampled on one grid and resampled onto another must equal the
same field sampled directly on the destination grid.
"""

from __future__ import annotations

import numpy as np
import pytest

from planning.compare.resample import common_grid, grids_equal, resample_to_grid
from planning.dose_grid import DoseGrid
from planning.errors import InputError


def _centres(grid: DoseGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, y, x) LPS centre coordinates of all voxels, broadcastable, mm."""
    x0, y0, z0 = grid.origin_mm
    sz, sy, sx = grid.spacing_mm
    nz, ny, nx = grid.shape
    z = (z0 + sz * np.arange(nz))[:, None, None]
    y = (y0 + sy * np.arange(ny))[None, :, None]
    x = (x0 + sx * np.arange(nx))[None, None, :]
    return z, y, x


def _linear(grid: DoseGrid) -> np.ndarray:
    z, y, x = _centres(grid)
    return (1.5 * x - 0.75 * y + 0.4 * z + 20.0) * np.ones(grid.shape)


SRC = DoseGrid((12, 10, 14), (2.5, 2.0, 3.0), (-20.0, -9.0, 4.0))


def test_identity_grid_returns_a_float32_copy() -> None:
    rng = np.random.default_rng(1)
    values = rng.random(SRC.shape).astype(np.float32)
    out = resample_to_grid(values, SRC, SRC)
    assert out.dtype == np.float32 and out.shape == SRC.shape
    np.testing.assert_array_equal(out, values)
    assert not np.shares_memory(out, values)
    np.testing.assert_array_equal(resample_to_grid(values, SRC, SRC, order=0), values)


@pytest.mark.parametrize(
    "dst",
    [
        DoseGrid((20, 15, 25), (1.0, 1.1, 1.5), (-18.7, -8.2, 5.3)),  # coarse -> fine, offset
        DoseGrid((5, 4, 6), (5.0, 4.0, 6.5), (-19.0, -8.5, 5.0)),  # fine -> coarse
        DoseGrid((11, 9, 13), (2.5, 2.0, 3.0), (-18.5, -8.0, 5.25)),  # half-voxel shift
    ],
    ids=["coarse-to-fine", "fine-to-coarse", "half-voxel"],
)
def test_trilinear_is_exact_for_a_linear_field(dst: DoseGrid) -> None:
    out = resample_to_grid(_linear(SRC), SRC, dst)
    np.testing.assert_allclose(out, _linear(dst), rtol=0, atol=2e-4 * np.abs(_linear(dst)).max())


def test_half_voxel_shift_is_the_mean_of_neighbours() -> None:
    rng = np.random.default_rng(2)
    values = rng.random(SRC.shape)
    x0, y0, z0 = SRC.origin_mm
    sx = SRC.spacing_mm[2]
    dst = DoseGrid((12, 10, 13), SRC.spacing_mm, (x0 + 0.5 * sx, y0, z0))
    out = resample_to_grid(values, SRC, dst)
    np.testing.assert_allclose(out, 0.5 * (values[:, :, :-1] + values[:, :, 1:]), rtol=1e-6)


def test_nearest_picks_the_closest_voxel() -> None:
    values = np.arange(SRC.n_voxels, dtype=np.float64).reshape(SRC.shape)
    x0, y0, z0 = SRC.origin_mm
    # 0.4 voxel along x -> the same voxel; 0.6 voxel along y -> the next one
    dst = DoseGrid((12, 9, 14), SRC.spacing_mm, (x0 + 0.4 * 3.0, y0 + 0.6 * 2.0, z0))
    out = resample_to_grid(values, SRC, dst, order=0)
    np.testing.assert_array_equal(out, values[:, 1:, :])


def test_points_outside_the_source_get_the_fill_value() -> None:
    values = np.full(SRC.shape, 7.0)
    x0, y0, z0 = SRC.origin_mm
    # shifted by 1.5 voxels along z: the last two destination planes lie beyond the source
    dst = DoseGrid(SRC.shape, SRC.spacing_mm, (x0, y0, z0 + 1.5 * 2.5))
    out = resample_to_grid(values, SRC, dst, fill_value=-1.0)
    assert np.all(out[:-2] == 7.0) and np.all(out[-2:] == -1.0)
    # a destination point on the last source centre is inside (no fill from round-off)
    dst2 = DoseGrid((1, 1, 1), (1.0, 1.0, 1.0),
                    (x0 + 13 * 3.0, y0 + 9 * 2.0, z0 + 11 * 2.5))
    assert resample_to_grid(values, SRC, dst2, fill_value=-1.0)[0, 0, 0] == 7.0
    # nearest: inside the last source voxel up to half a voxel beyond its centre, not further
    inside = DoseGrid((1, 1, 1), (1.0, 1.0, 1.0), (x0 + 13.45 * 3.0, y0, z0))
    beyond = DoseGrid((1, 1, 1), (1.0, 1.0, 1.0), (x0 + 13.55 * 3.0, y0, z0))
    assert resample_to_grid(values, SRC, inside, order=0, fill_value=-1.0)[0, 0, 0] == 7.0
    assert resample_to_grid(values, SRC, beyond, order=0, fill_value=-1.0)[0, 0, 0] == -1.0
    assert resample_to_grid(values, SRC, inside, order=1, fill_value=-1.0)[0, 0, 0] == -1.0


def test_bad_resampling_input() -> None:
    with pytest.raises(InputError, match="shape"):
        resample_to_grid(np.zeros((3, 3, 3)), SRC, SRC)
    with pytest.raises(InputError, match="order"):
        resample_to_grid(np.zeros(SRC.shape), SRC, SRC, order=3)


def test_grids_equal() -> None:
    assert grids_equal(SRC, DoseGrid(SRC.shape, SRC.spacing_mm, (-20.0005, -9.0, 4.0)))
    assert not grids_equal(SRC, DoseGrid(SRC.shape, SRC.spacing_mm, (-20.01, -9.0, 4.0)))
    assert not grids_equal(SRC, DoseGrid(SRC.shape, (2.5, 2.0, 3.01), SRC.origin_mm))
    assert not grids_equal(SRC, DoseGrid((12, 10, 15), SRC.spacing_mm, SRC.origin_mm))
    assert grids_equal(SRC, DoseGrid(SRC.shape, SRC.spacing_mm, (-20.01, -9.0, 4.0)), tol_mm=0.02)


def test_common_grid_of_overlapping_grids() -> None:
    # a: 2 mm isotropic, centres x -10..30, y 0..20, z -4..16
    a = DoseGrid((11, 11, 21), (2.0, 2.0, 2.0), (-10.0, 0.0, -4.0))
    # b: 3 x 1 x 2.5 mm (z, y, x), centres x 0..50, y 5..35, z 2..29
    b = DoseGrid((10, 31, 21), (3.0, 1.0, 2.5), (0.0, 5.0, 2.0))
    g = common_grid(a, b)
    # finer spacing per axis: z 2 (a), y 1 (b), x 2 (a)
    assert g.spacing_mm == (2.0, 1.0, 2.0)
    # x: intersection [0, 30] on a's centres: 0, 2, ..., 30 -> 16
    # y: intersection [5, 20] on b's centres: 5, 6, ..., 20 -> 16
    # z: intersection [2, 16] on a's centres: 2, 4, ..., 16 -> 8
    assert g.shape == (8, 16, 16)
    assert g.origin_mm == pytest.approx((0.0, 5.0, 2.0))
    # symmetric in its arguments when no spacing ties
    h = common_grid(b, a)
    assert h.shape == g.shape and h.origin_mm == pytest.approx(g.origin_mm)
    # the dose on a is not interpolated along the axes where a is the finer grid
    values = np.random.default_rng(3).random(a.shape)
    on_g = resample_to_grid(values, a, g)
    # g's y centres 6, 8, ..., 20 are a's y centres 3..10; z 2..16 -> a's 3..10; x 0..30 -> 5..20
    np.testing.assert_allclose(on_g[:, 1::2, :], values[3:11, 3:11, 5:21], rtol=1e-6)


def test_common_grid_of_a_grid_with_itself_and_a_contained_grid() -> None:
    assert grids_equal(common_grid(SRC, SRC), SRC)
    inner = DoseGrid((4, 4, 4), (2.5, 2.0, 3.0), (-14.0, -5.0, 9.0))
    assert grids_equal(common_grid(SRC, inner), inner)


def test_common_grid_of_disjoint_grids_names_both() -> None:
    a = DoseGrid((5, 5, 5), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    b = DoseGrid((5, 5, 5), (2.0, 2.0, 2.0), (100.0, 0.0, 0.0))
    with pytest.raises(InputError, match=r"do not overlap along x.*grid A.*grid B"):
        common_grid(a, b)
