"""app.rendering: window/level, display orientation, mm mapping, colour maps, isodose lines,
structure outlines and their cache, beams. Pure NumPy: no window, no Kivy."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest

from app import rendering
from planning.dose_grid import DoseGrid
from planning.errors import InputError
from planning.patient import RoiMask

# ---------------------------------------------------------------------------------------------
# Window / level


@pytest.mark.parametrize(("window", "level"), [(400.0, 40.0), (1500.0, -600.0), (80.0, 40.0)])
def test_window_level_maps_level_to_mid_grey_and_edges_to_black_and_white(
    window: float, level: float
) -> None:
    lut = rendering.window_level_lut(window, level)
    hu = np.array([[level, level - window / 2, level + window / 2],
                   [level - window, level + window, -32768]], dtype=np.float32)
    rgba = rendering.hu_to_rgba(hu, lut)
    assert rgba.shape == (2, 3, 4) and rgba.dtype == np.uint8
    assert abs(int(rgba[0, 0, 0]) - 127.5) == 0.5  # mid grey
    assert rgba[0, 1, 0] == 0 and rgba[0, 2, 0] == 255
    assert rgba[1, 0, 0] == 0 and rgba[1, 1, 0] == 255 and rgba[1, 2, 0] == 0
    assert np.all(rgba[..., 0] == rgba[..., 1]) and np.all(rgba[..., 1] == rgba[..., 2])
    assert np.all(rgba[..., 3] == 255)


def test_window_level_is_linear_and_monotonic_over_int16() -> None:
    lut = rendering.window_level_lut(1000.0, 0.0)
    hu = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16).reshape(256, 256)
    grey = rendering.hu_to_rgba(hu, lut)[..., 0].reshape(-1).astype(int)
    assert np.all(np.diff(grey) >= 0)
    # 100 HU is 255 * 600 / 1000 = 153 grey.
    assert grey[100 + 32768] == 153


def test_float_ct_is_rounded_like_int16() -> None:
    lut = rendering.window_level_lut(400.0, 40.0)
    a = rendering.hu_to_rgba(np.array([[10.4, -200.6]], np.float32), lut)
    b = rendering.hu_to_rgba(np.array([[10, -201]], np.int16), lut)
    assert np.array_equal(a, b)


@pytest.mark.parametrize(("window", "level"), [(0.0, 0.0), (-5.0, 0.0), (math.nan, 0.0),
                                               (100.0, math.inf)])
def test_window_level_rejects_bad_values(window: float, level: float) -> None:
    with pytest.raises(InputError, match="window"):
        rendering.window_level_lut(window, level)


# ---------------------------------------------------------------------------------------------
# Orientation, display order and mm mapping


class Grid:
    def __init__(self, shape, spacing_mm, origin_mm) -> None:
        self.shape = shape
        self.spacing_mm = spacing_mm
        self.origin_mm = origin_mm


GRID = Grid((5, 6, 7), (3.0, 2.0, 0.5), (-10.0, 20.0, 100.0))  # (sz, sy, sx); (x, y, z)


def _marker_volume(k: int, j: int, i: int) -> np.ndarray:
    volume = np.zeros(GRID.shape, np.int16)
    volume[k, j, i] = 1
    return volume


@pytest.mark.parametrize(
    ("orientation", "index", "row", "col"),
    [("axial", 1, 2, 3), ("coronal", 2, 5 - 1 - 1, 3), ("sagittal", 3, 5 - 1 - 1, 2)],
)
def test_marker_voxel_appears_at_its_display_row_and_column(
    orientation: str, index: int, row: int, col: int
) -> None:
    k, j, i = 1, 2, 3
    shown = rendering.extract_slice(_marker_volume(k, j, i), orientation, index)
    assert list(zip(*np.nonzero(shown), strict=True)) == [(row, col)]
    # The display pixel's plane position is the marker's LPS position projected.
    mapping = rendering.plane_mapping(GRID, orientation)
    assert mapping.shape == shown.shape
    lps = rendering.voxel_to_lps(GRID, (k, j, i))
    assert lps == (-10.0 + 3 * 0.5, 20.0 + 2 * 2.0, 100.0 + 1 * 3.0)
    u, v = mapping.pixel_to_plane(row, col)
    assert (float(u), float(v)) == tuple(rendering.lps_to_plane(lps, orientation)[0])
    assert rendering.slice_position_mm(GRID, orientation, index) == pytest.approx(
        lps[2 - rendering.NORMAL_AXIS[orientation]]
    )


@pytest.mark.parametrize(
    ("orientation", "index", "towards_top", "towards_left"),
    # (voxel displaced towards the label on top, voxel displaced towards the label on the left)
    [
        ("axial", 2, (2, 1, 3), (2, 3, 2)),  # A: smaller y; R: smaller x
        ("coronal", 3, (3, 3, 3), (1, 3, 2)),  # S: larger z; R: smaller x
        ("sagittal", 3, (3, 3, 3), (1, 2, 3)),  # S: larger z; A: smaller y
    ],
)
def test_edge_labels_match_the_patient_directions(
    orientation: str, index: int, towards_top: tuple, towards_left: tuple
) -> None:
    centre = (1, 3, 3) if orientation != "axial" else (2, 3, 3)
    rows_cols = {}
    for name, voxel in (("centre", centre), ("top", towards_top), ("left", towards_left)):
        shown = rendering.extract_slice(_marker_volume(*voxel), orientation, index)
        (rc,) = zip(*np.nonzero(shown), strict=True)
        rows_cols[name] = rc
    labels = rendering.EDGE_LABELS[orientation]
    assert rows_cols["top"][0] < rows_cols["centre"][0]
    assert rows_cols["left"][1] < rows_cols["centre"][1]
    expected = {"axial": ("A", "R"), "coronal": ("S", "R"), "sagittal": ("S", "A")}
    assert (labels["top"], labels["left"]) == expected[orientation]
    opposite = {"A": "P", "S": "I", "R": "L"}
    assert labels["bottom"] == opposite[labels["top"]]
    assert labels["right"] == opposite[labels["left"]]


def test_anisotropic_spacing_gives_pixel_sizes_and_extent_in_mm() -> None:
    axial = rendering.plane_mapping(GRID, "axial")
    coronal = rendering.plane_mapping(GRID, "coronal")
    sagittal = rendering.plane_mapping(GRID, "sagittal")
    assert (axial.du_mm, axial.dv_mm) == (0.5, 2.0)
    assert (coronal.du_mm, coronal.dv_mm) == (0.5, 3.0)
    assert (sagittal.du_mm, sagittal.dv_mm) == (2.0, 3.0)
    # Coronal: x from -10 - 0.25 over 7 x 0.5 mm; z from 100 - 1.5 over 5 x 3 mm.
    assert coronal.extent_mm == pytest.approx((-10.25, 98.5, -6.75, 113.5))
    # Axial v = -y: rows run posterior downwards.
    assert axial.extent_mm == pytest.approx((-10.25, -31.0, -6.75, -19.0))
    rows, cols = coronal.plane_to_pixel(*coronal.pixel_to_plane(2.5, 4.25))
    assert (float(rows), float(cols)) == pytest.approx((2.5, 4.25))


@pytest.mark.parametrize("orientation", rendering.ORIENTATIONS)
def test_plane_and_voxel_round_trips(orientation: str) -> None:
    point = (-8.3, 27.1, 106.4)
    (u, v), = rendering.lps_to_plane(point, orientation)
    normal = point[2 - rendering.NORMAL_AXIS[orientation]]
    assert rendering.plane_to_lps(u, v, orientation, normal) == pytest.approx(point)
    index = rendering.lps_to_voxel(GRID, point)
    assert rendering.voxel_to_lps(GRID, index) == pytest.approx(point)
    assert rendering.nearest_voxel(GRID, point) == (2, 4, 3)
    assert rendering.nearest_voxel(GRID, (-30.0, 27.1, 106.4)) is None


def test_bad_orientation_and_slice_index_are_input_errors() -> None:
    with pytest.raises(InputError, match="oblique"):
        rendering.plane_mapping(GRID, "oblique")
    with pytest.raises(InputError, match=r"outside 0\.\.4"):
        rendering.extract_slice(np.zeros(GRID.shape), "axial", 5)


def test_interpolated_slice_is_linear_between_neighbours_and_none_outside() -> None:
    grid = Grid((4, 3, 2), (2.0, 1.0, 1.0), (0.0, 0.0, 10.0))
    z = 10.0 + 2.0 * np.arange(4)
    volume = np.broadcast_to((3.0 * z)[:, None, None], grid.shape).astype(np.float32)
    mid = rendering.interpolated_slice(volume, grid, "axial", 13.0)
    assert mid is not None and np.allclose(mid, 39.0)
    edge = rendering.interpolated_slice(volume, grid, "axial", 9.2)  # within half a voxel
    assert edge is not None and np.allclose(edge, 30.0)
    assert rendering.interpolated_slice(volume, grid, "axial", 8.9) is None
    assert rendering.interpolated_slice(volume, grid, "axial", 17.1) is None
    coronal = rendering.interpolated_slice(volume, grid, "coronal", 0.5)
    assert coronal is not None and coronal.shape == (4, 2)
    assert np.allclose(coronal[:, 0], 3.0 * z[::-1])  # superior row first


def test_trilinear_sample_reproduces_a_linear_function() -> None:
    grid = Grid((4, 5, 6), (2.0, 1.5, 1.0), (-3.0, 5.0, 7.0))
    zz, yy, xx = np.meshgrid(*(grid.origin_mm[2 - a] + grid.spacing_mm[a] * np.arange(n)
                               for a, n in enumerate(grid.shape)), indexing="ij")
    volume = (1.0 + 2.0 * xx - 0.5 * yy + 0.25 * zz).astype(np.float32)
    point = (-0.6, 8.2, 10.3)
    expected = 1.0 + 2.0 * point[0] - 0.5 * point[1] + 0.25 * point[2]
    assert rendering.sample_trilinear(volume, grid, point) == pytest.approx(expected, rel=1e-5)
    assert rendering.sample_trilinear(volume, grid, (-4.0, 8.2, 10.3)) is None


# ---------------------------------------------------------------------------------------------
# Dose colour maps and legend


def test_dose_colour_map_hue_falls_monotonically_from_blue_to_red() -> None:
    rgb = rendering.colormap_rgb("dose").astype(float) / 255
    hues = np.array([colorsys.rgb_to_hsv(*c)[0] * 360 for c in rgb])
    assert hues[0] == pytest.approx(240.0) and hues[-1] == pytest.approx(0.0)
    assert np.all(np.diff(hues) <= 1e-9)
    values = np.linspace(-5.0, 70.0, 400)
    index = rendering.colour_index(values, 0.0, 60.0)
    assert np.all(np.diff(index) >= 0) and index[0] == 0 and index[-1] == len(rgb) - 1


def test_dose_wash_threshold_and_opacity() -> None:
    dose = np.array([[0.0, 5.9, 6.0, 30.0, 60.0, 80.0]], np.float32)
    rgba = rendering.dose_to_rgba(dose, colormap="dose", vmin=0.0, vmax=60.0, threshold=6.0,
                                  opacity=0.4)
    assert list(rgba[0, :, 3]) == [0, 0, 102, 102, 102, 102]
    assert tuple(rgba[0, 4, :3]) == (255, 0, 0)  # vmax: red
    assert np.array_equal(rgba[0, 4, :3], rgba[0, 5, :3])  # clipped above vmax
    # Middle of blue-cyan-green-yellow-red: pure green.
    assert tuple(rgba[0, 3, :3]) == (0, 255, 0)
    # Transparent texels carry the threshold's colour (no dark fringe when filtered).
    assert np.array_equal(rgba[0, 0, :3], rgba[0, 2, :3])
    with pytest.raises(InputError, match="opacity"):
        rendering.dose_to_rgba(dose, colormap="dose", vmin=0, vmax=60, threshold=0, opacity=1.5)


def test_diverging_map_is_white_at_zero_and_mirror_symmetric() -> None:
    values = np.array([[-10.0, -4.0, 0.0, 4.0, 10.0, 0.5, -0.5]], np.float32)
    rgba = rendering.dose_to_rgba(values, colormap="diverging", vmin=-10.0, vmax=10.0,
                                  threshold=1.0, opacity=1.0)
    rgb = rgba[0, :, :3].astype(int)
    assert list(rgb[2]) == [255, 255, 255]  # white at zero
    assert np.array_equal(rgb[0], rgb[4][::-1]) and np.array_equal(rgb[1], rgb[3][::-1])
    assert rgb[4][0] > rgb[4][2]  # positive: red
    assert list(rgba[0, :, 3]) == [255, 255, 0, 255, 255, 0, 0]  # |value| below 1 hidden


def test_legend_ticks_are_nice_and_inside_the_range() -> None:
    assert list(rendering.legend_ticks(0.0, 60.0)) == [0.0, 20.0, 40.0, 60.0]
    assert list(rendering.legend_ticks(-5.0, 5.0)) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    ticks = rendering.legend_ticks(0.93, 1.71)
    assert ticks[0] >= 0.93 and ticks[-1] <= 1.71 and len(ticks) >= 3
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0]) and steps[0] == pytest.approx(0.2)


def test_tick_texts_fit_their_step_and_have_no_negative_zero() -> None:
    """The difference legend of two equal doses read "-0.0000" (a rounding-level tick with
    four fixed decimals)."""
    assert rendering.tick_texts(rendering.legend_ticks(0.0, 60.0)) == ["0", "20", "40", "60"]
    assert rendering.tick_texts([-5.0, -2.5, 0.0, 2.5, 5.0]) == [
        "-5.0", "-2.5", "0.0", "2.5", "5.0"]
    assert rendering.tick_texts([0.94, 1.0, 1.06]) == ["0.94", "1.00", "1.06"]
    # A step of 2e-6 (the old four decimals: "-0.0000", "0.0000", "0.0000").
    assert rendering.tick_texts(rendering.legend_ticks(-3.1e-6, 3.1e-6)) == [
        "-2e-06", "0", "2e-06"]
    assert rendering.tick_texts([-2.5e-5, 0.0, 2.5e-5]) == ["-2.5e-05", "0", "2.5e-05"]
    # A near-zero value beside a coarse step is 0, not -0.
    assert rendering.tick_texts([-1e-12, 0.25, 0.5]) == ["0.00", "0.25", "0.50"]
    assert rendering.tick_texts([-0.2, -1e-9, 0.2]) == ["-0.2", "0.0", "0.2"]


def test_default_isodose_colours_put_red_on_the_highest_level() -> None:
    from planning.isodose import isodose_colours

    colours = isodose_colours([30.0, 57.0, 54.0])
    assert colours[1] == (255, 0, 0) and colours[2] == (255, 128, 0)


# ---------------------------------------------------------------------------------------------
# Isodose lines


@pytest.mark.parametrize("orientation", ["axial", "coronal"])
def test_isodose_of_a_radial_dose_is_a_circle_of_the_analytic_radius(orientation: str) -> None:
    grid = DoseGrid(shape=(41, 61, 51), spacing_mm=(2.0, 1.5, 2.5), origin_mm=(-60.0, -45.0, -40.0))
    centre = (2.5, 0.0, 0.0)  # on grid: x column 25, y row 30, z slice 20
    sigma = 15.0
    zz, yy, xx = np.meshgrid(*(grid.origin_mm[2 - a] + grid.spacing_mm[a] * np.arange(n)
                               for a, n in enumerate(grid.shape)), indexing="ij")
    r2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (zz - centre[2]) ** 2
    dose = (100.0 * np.exp(-0.5 * r2 / sigma**2)).astype(np.float32)
    index = 20 if orientation == "axial" else 30
    shown = rendering.extract_slice(dose, orientation, index)
    mapping = rendering.plane_mapping(grid, orientation)
    levels = (90.0, 50.0, 20.0)
    lines = rendering.isodose_lines(shown, mapping, levels)
    (cu, cv), = rendering.lps_to_plane(centre, orientation)
    for level, polylines in zip(levels, lines, strict=True):
        radius = sigma * math.sqrt(2.0 * math.log(100.0 / level))
        assert len(polylines) == 1
        poly = polylines[0]
        assert np.allclose(poly[0], poly[-1])  # closed
        r = np.hypot(poly[:, 0] - cu, poly[:, 1] - cv)
        # Linear interpolation between samples 1.5 - 2.5 mm apart: within 0.35 mm.
        assert np.all(np.abs(r - radius) < 0.35), (level, radius, r.min(), r.max())
    assert rendering.isodose_lines(shown, mapping, [150.0]) == [[]]


# ---------------------------------------------------------------------------------------------
# Structure outlines


def _box_mask() -> RoiMask:
    dense = np.zeros(GRID.shape, bool)
    dense[1:4, 2:5, 1:6] = True  # z 1..3, y 2..4, x 1..5
    return RoiMask.from_dense(dense)


@pytest.mark.parametrize(
    ("orientation", "index", "u_range", "v_range"),
    [
        # x voxels 1..5 -> -10 + (0.5 .. 5.5) * 0.5 ; y 2..4 -> v = -(20 + (1.5 .. 4.5) * 2)
        ("axial", 2, (-9.75, -7.25), (-29.0, -23.0)),
        # z voxels 1..3 -> 100 + (0.5 .. 3.5) * 3
        ("coronal", 3, (-9.75, -7.25), (101.5, 110.5)),
        ("sagittal", 4, (23.0, 29.0), (101.5, 110.5)),
    ],
)
def test_mask_outline_runs_half_way_between_inside_and_outside_voxels(
    orientation: str, index: int, u_range: tuple, v_range: tuple
) -> None:
    mapping = rendering.plane_mapping(GRID, orientation)
    lines = rendering.mask_outlines(_box_mask(), mapping, index)
    assert len(lines) == 1
    poly = lines[0]
    assert np.allclose(poly[0], poly[-1])
    assert (poly[:, 0].min(), poly[:, 0].max()) == pytest.approx(u_range)
    assert (poly[:, 1].min(), poly[:, 1].max()) == pytest.approx(v_range)


def test_mask_outline_is_empty_off_the_structure() -> None:
    mapping = rendering.plane_mapping(GRID, "axial")
    assert rendering.mask_outlines(_box_mask(), mapping, 0) == []
    assert rendering.mask_outlines(RoiMask.empty(GRID.shape), mapping, 2) == []


def test_outline_cache_computes_each_slice_once_and_evicts_the_oldest() -> None:
    cache = rendering.OutlineCache(max_entries=2)
    mask = _box_mask()
    axial = rendering.plane_mapping(GRID, "axial")
    coronal = rendering.plane_mapping(GRID, "coronal")
    first = cache.outlines(mask, axial, 2)
    assert cache.outlines(mask, axial, 2) is first
    assert (cache.misses, cache.hits) == (1, 1)
    cache.outlines(mask, coronal, 2)  # same index, other orientation: another entry
    assert cache.misses == 2 and len(cache) == 2
    assert cache.outlines(mask, axial, 2) is first  # now the most recently used
    cache.outlines(mask, axial, 3)  # evicts the least recently used: coronal 2
    assert len(cache) == 2 and cache.misses == 3
    assert cache.outlines(mask, axial, 2) is first
    cache.outlines(mask, coronal, 2)
    assert cache.misses == 4
    cache.clear()
    assert len(cache) == 0


# ---------------------------------------------------------------------------------------------
# Beams


def test_beam_segment_projects_onto_each_plane_and_skips_end_on_views() -> None:
    iso = (10.0, 20.0, 30.0)
    # Gantry 270 for HFS: from the patient's right, travelling towards the left (+x).
    axial = rendering.beam_segment(iso, (1.0, 0.0, 0.0), 200.0, "axial")
    assert axial is not None
    assert axial.tolist() == [[-190.0, -20.0], [10.0, -20.0]]
    assert rendering.beam_segment(iso, (1.0, 0.0, 0.0), 200.0, "sagittal") is None
    oblique = rendering.beam_segment(iso, (0.0, 0.6, 0.8), 100.0, "sagittal")
    assert oblique is not None
    np.testing.assert_allclose(oblique, [[-40.0, -50.0], [20.0, 30.0]])
    with pytest.raises(InputError, match="direction"):
        rendering.beam_segment(iso, (0.0, 0.0, 0.0), 100.0, "axial")
