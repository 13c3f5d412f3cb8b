"""Clinical DVHs (contours sampled with partial volumes, dose interpolated) against independent
references: analytic volumes and dose-volume relations of a sphere and a cube, and a TG-119
C-shape whose D95 is recomputed here by brute force (a 0.2 mm point-in-polygon test written in
this file, the dose interpolated with SciPy's RegularGridInterpolator)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter

from planning.dicom.rtstruct_import import contours_to_mask
from planning.dose_grid import DoseGrid
from planning.dose_interpolation import VoxelLabels, trilinear_stencil
from planning.evaluation import doses_at_volumes
from planning.patient import (
    Contour,
    CtVolume,
    Patient,
    PatientStudy,
    RoiMask,
    Structure,
    StructureSet,
)
from planning.structure_dose import sampled_structures, structure_dose_statistics
from planning.structure_sampling import SamplingSettings, sample_structure

STUDY = PatientStudy("DVH^Test", "DVH", "", "O", "1.2.3.4", "1", "", "", "", "")


def make_ct(shape_zyx: tuple[int, int, int], spacing_mm: tuple[float, float, float]
            ) -> CtVolume:
    """A water CT centred on the LPS origin."""
    nz, ny, nx = shape_zyx
    sz, sy, sx = spacing_mm
    origin = (-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, -(nz - 1) / 2 * sz)
    return CtVolume(np.zeros(shape_zyx, np.int16), spacing_mm, origin, "HFS",
                    (1, 0, 0, 0, 1, 0), "1.2.3.5", "1.2.3.6",
                    tuple(f"1.2.3.7.{k}" for k in range(nz)), STUDY)


def slice_z(ct: CtVolume) -> np.ndarray:
    return ct.origin_mm[2] + ct.spacing_mm[0] * np.arange(ct.shape[0])


def structure(name: str, polygons_by_z: dict[float, list[np.ndarray]], ct: CtVolume
              ) -> Structure:
    """A structure from (N, 2) xy polygons (mm) on the slices at the given z."""
    contours = tuple(Contour(np.column_stack((p, np.full(len(p), z))), "CLOSED_PLANAR")
                     for z, polys in polygons_by_z.items() for p in polys)
    mask, warnings = contours_to_mask(contours, ct, name)
    assert not warnings
    return Structure(name, 1, "ORGAN", None, mask, contours)


def patient_of(ct: CtVolume, *structures: Structure) -> Patient:
    return Patient(ct, StructureSet(tuple(structures), "1.2.3.5", "1.2.3.8", "1.2.3.9"))


def circle(radius_mm: float, centre_xy: tuple[float, float] = (0.0, 0.0), n: int = 720
           ) -> np.ndarray:
    t = 2 * np.pi * np.arange(n) / n
    return np.column_stack((centre_xy[0] + radius_mm * np.cos(t),
                            centre_xy[1] + radius_mm * np.sin(t)))


def shoelace_mm2(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.sum(x * np.roll(y, -1) - y * np.roll(x, -1))))


def sphere(ct: CtVolume, radius_mm: float, centre_xy: tuple[float, float] = (0.0, 0.0)
           ) -> Structure:
    return structure("Sphere", {float(z): [circle(math.sqrt(radius_mm**2 - z**2), centre_xy)]
                                for z in slice_z(ct) if abs(z) < radius_mm}, ct)


def test_sphere_volume_within_1_percent_of_analytic_and_contours() -> None:
    ct = make_ct((31, 60, 60), (2.0, 1.2, 1.2))
    s = sphere(ct, 20.0, (0.31, -0.47))
    samples = sample_structure(s, ct)
    assert samples is not None
    contour_mm3 = sum(shoelace_mm2(c.points_mm[:, :2]) for c in s.contours) * 2.0
    analytic_mm3 = 4 / 3 * math.pi * 20.0**3
    assert samples.volume_cm3 * 1000 == pytest.approx(contour_mm3, rel=2e-3)
    assert samples.volume_cm3 * 1000 == pytest.approx(analytic_mm3, rel=0.01)
    assert max(samples.cell_mm) <= 1.0


def rotated_square(side_mm: float, angle_deg: float, centre_xy: tuple[float, float]
                   ) -> np.ndarray:
    h = side_mm / 2
    corners = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return corners @ rot.T + np.asarray(centre_xy)


def cube(ct: CtVolume, side_mm: float, angle_deg: float = 0.0,
         centre_xy: tuple[float, float] = (0.37, -0.61)) -> Structure:
    """A cube whose z faces are slab faces (contours on the slices whose slabs it fills)."""
    z = slice_z(ct)
    on = z[np.abs(z) < side_mm / 2]  # slab faces at multiples of the slice spacing, and 0
    return structure("Cube", {float(zk): [rotated_square(side_mm, angle_deg, centre_xy)]
                              for zk in on}, ct)


@pytest.mark.parametrize("angle_deg", [0.0, 27.0])
def test_cube_volume_within_1_percent(angle_deg: float) -> None:
    ct = make_ct((40, 50, 50), (2.5, 1.3, 1.3))
    s = cube(ct, 30.0, angle_deg)
    samples = sample_structure(s, ct)
    assert samples is not None
    assert len(s.contours) == 12  # 12 slabs of 2.5 mm: 30 mm
    assert samples.volume_cm3 == pytest.approx(27.0, rel=0.01)


def linear_dose(grid: DoseGrid, gradient_gy_per_mm: tuple[float, float, float],
                offset_gy: float) -> np.ndarray:
    c = grid.voxel_centers_lps()
    return (offset_gy + c @ np.asarray(gradient_gy_per_mm)).reshape(grid.shape)


@pytest.mark.parametrize("axis", [0, 2])
def test_linear_gradient_across_a_cube_gives_the_analytic_dvh(axis: int) -> None:
    """Dose linear along x (in-plane) or z (across the slabs) over a 30 mm cube: the dose is
    uniformly distributed over [a - 15 b, a + 15 b], so D_x = a + b (15 - 0.3 x)."""
    ct = make_ct((40, 50, 50), (2.5, 1.3, 1.3))
    s = cube(ct, 30.0, 0.0, (0.0, 0.0))
    centre = (0.0, 0.0, 0.0)  # the cube's centre, LPS
    grid = DoseGrid.covering(DoseGrid(ct.shape, ct.spacing_mm, ct.origin_mm), 3.0)
    gradient = [0.0, 0.0, 0.0]
    gradient[axis] = 1.0  # Gy/mm
    a = 50.0
    dose = linear_dose(grid, (gradient[0], gradient[1], gradient[2]), a - centre[axis])
    (st,) = structure_dose_statistics(patient_of(ct, s), dose, grid, 50.0)
    m = st.metrics
    for x, got in ((98, m.d98), (95, m.d95), (50, m.d50), (5, m.d5), (2, m.d2)):
        assert got == pytest.approx(a + 15.0 - 0.3 * x, abs=0.1), x
    assert m.mean == pytest.approx(a, abs=0.05)
    assert m.min >= a - 15.0 - 1e-6 and m.max <= a + 15.0 + 1e-6
    assert m.v95 == pytest.approx((a + 15.0 - 0.95 * 50.0) / 30.0, abs=0.01)
    # the DVH curve, V(D) = (a + 15 - D) / 30 in between: a staircase with a step per sample
    # plane or column (1/36 or about 1/46 of the volume), so within half a step
    dvh = st.dvh
    inside = (dvh.dose_gy > a - 14.0) & (dvh.dose_gy < a + 14.0)
    np.testing.assert_allclose(dvh.volume_fraction[inside],
                               (a + 15.0 - dvh.dose_gy[inside]) / 30.0, atol=0.5 / 36)
    assert dvh.volume_cm3 == pytest.approx(27.0, rel=0.01)


def test_sphere_in_a_radial_field_gives_the_analytic_dvh() -> None:
    """D(r) = 60 exp(-r^2 / (2 s^2)) about the centre of a 20 mm sphere: V(>= D) is
    (r(D) / R)^3, so D_x = 60 exp(-R^2 (x / 100)^(2/3) / (2 s^2))."""
    radius, s_mm = 20.0, 25.0
    ct = make_ct((31, 60, 60), (2.0, 1.2, 1.2))
    sp = sphere(ct, radius)
    grid = DoseGrid.covering(DoseGrid(ct.shape, ct.spacing_mm, ct.origin_mm), 2.0)
    r2 = np.sum(grid.voxel_centers_lps() ** 2, axis=1)
    dose = (60.0 * np.exp(-r2 / (2 * s_mm**2))).reshape(grid.shape)
    (st,) = structure_dose_statistics(patient_of(ct, sp), dose, grid, 60.0)

    def d_at(x: float) -> float:
        return 60.0 * math.exp(-(radius**2) * (x / 100.0) ** (2 / 3) / (2 * s_mm**2))

    m = st.metrics
    for x, got in ((98, m.d98), (95, m.d95), (50, m.d50), (2, m.d2)):
        assert got == pytest.approx(d_at(x), rel=0.01), x
    mean = quad(lambda r: 60.0 * math.exp(-r * r / (2 * s_mm**2)) * 3 * r * r / radius**3,
                0.0, radius)[0]
    assert m.mean == pytest.approx(mean, rel=0.01)
    # The whole curve at its bin edges (where a cumulative DVH is exact, not binned), against
    # the structure as contoured: each slice's disc (radius rho_k) over its 2 mm slab, whose
    # rims reach beyond the sphere. V(>= D) = sum over slabs of the integral over the slab of
    # pi min(rho_k^2, r(D)^2 - z^2) dz, over the stack's volume.
    keep = (st.dvh.dose_gy > 1.0) & (st.dvh.dose_gy < 60.0)
    r_at = s_mm * np.sqrt(2 * np.log(60.0 / st.dvh.dose_gy[keep]))
    slabs = [(float(z), radius**2 - float(z) ** 2) for z in slice_z(ct) if abs(z) < radius]

    def stack_mm3(r_mm: float) -> float:
        return sum(quad(lambda z, rho2=rho2: math.pi * min(rho2, max(r_mm**2 - z * z, 0.0)),
                        zk - 1.0, zk + 1.0, points=[-r_mm, r_mm])[0] for zk, rho2 in slabs)

    # trilinear interpolation on the 2 mm grid runs under the concave peak by about
    # h^2 / 8 |D''| per axis (0.15 Gy), 0.8 % of the volume where the DVH is steepest
    v_stack = np.array([stack_mm3(r) for r in r_at]) / stack_mm3(1e3)
    np.testing.assert_allclose(st.dvh.volume_fraction[keep], v_stack, atol=0.01)


def test_trilinear_stencil_matches_scipy_and_clamps_at_the_border() -> None:
    rng = np.random.default_rng(7)
    grid = DoseGrid((7, 9, 11), (2.5, 3.0, 2.0), (-10.0, 4.0, 30.0))
    cube_ = rng.normal(size=grid.shape)
    axes = [grid.origin_mm[2 - a] + grid.spacing_mm[a] * np.arange(grid.shape[a])
            for a in range(3)]
    lo = np.array([axes[2][0], axes[1][0], axes[0][0]])
    hi = np.array([axes[2][-1], axes[1][-1], axes[0][-1]])
    inner = lo + (hi - lo) * rng.random((500, 3))
    stencil, on = trilinear_stencil(inner, grid)
    assert on.all()
    reference = RegularGridInterpolator(axes, cube_, method="linear")(inner[:, ::-1])
    np.testing.assert_allclose(stencil.values(cube_), reference, atol=1e-5)
    # within half a voxel beyond the outer centres: the value at the nearest face point;
    # further out: off the grid
    spacing_xyz = np.array(grid.spacing_mm[::-1])
    edge = np.array([lo - 0.4 * spacing_xyz, hi + 0.4 * spacing_xyz, hi + 0.6 * spacing_xyz])
    stencil, on = trilinear_stencil(edge, grid)
    assert on.tolist() == [True, True, False]
    assert stencil.values(cube_) == pytest.approx([cube_[0, 0, 0], cube_[-1, -1, -1]])


def test_reading_within_a_region_keeps_the_next_region_out() -> None:
    """A cube that jumps between regions (a tissue per structure): 10 in the voxels x < 4,
    30 beyond. Read within region 0, a point between the two gets 10 wherever a region-0
    voxel is among its corners (plain interpolation would mix in 30), and the plain value
    where none is; structures not listed are read plainly."""
    grid = DoseGrid((3, 3, 8), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    labels = np.zeros(grid.shape, dtype=np.int8)
    labels[:, :, 4:] = 1
    cube_ = np.where(labels == 0, 10.0, 30.0).astype(np.float32)
    x_mm = np.array([1.0, 6.5, 7.0, 7.9, 9.0, 12.0])  # voxel centres at 0, 2, ..., 14 mm
    points = np.stack([x_mm, np.full_like(x_mm, 1.3), np.full_like(x_mm, 2.2)], axis=1)
    stencil, on = trilinear_stencil(points, grid)
    assert on.all()
    plain = stencil.values(cube_)
    assert plain[3] == pytest.approx(10 + 20 * 0.95)  # 7.9 mm: 95 % of the way to x = 8
    regions = VoxelLabels(labels, {"PTV": 0})
    inside = stencil.values(cube_, regions.within("PTV"))
    np.testing.assert_allclose(inside[:4], 10.0, rtol=1e-6)
    np.testing.assert_allclose(inside[4:], plain[4:], rtol=1e-6)  # no region-0 corner
    assert regions.within("Body") is None


def test_a_contour_inside_another_is_a_hole() -> None:
    # a tube: radius 20 mm with a 12 mm hole, 10 slices of 2 mm
    ct = make_ct((16, 60, 60), (2.0, 1.1, 1.1))
    z = [float(zk) for zk in slice_z(ct)[3:13]]
    tube = structure("Tube", {zk: [circle(20.0), circle(12.0, (0.4, -0.3))] for zk in z}, ct)
    samples = sample_structure(tube, ct)
    assert samples is not None
    area = shoelace_mm2(circle(20.0)) - shoelace_mm2(circle(12.0))
    assert samples.volume_cm3 == pytest.approx(area * 2.0 * 10 / 1000, rel=0.01)
    r = np.hypot(samples.points_mm[:, 0] - 0.4, samples.points_mm[:, 1] + 0.3)
    assert r.min() > 12.0 - 1.0  # no sample deeper than a cell into the hole


def test_mask_only_structure_is_its_voxels_supersampled() -> None:
    ct = make_ct((10, 12, 12), (2.5, 3.0, 3.0))
    mask = np.zeros(ct.shape, bool)
    mask[2:7, 3:9, 4:8] = True
    s = Structure("Box", 1, "ORGAN", None, RoiMask.from_dense(mask))
    samples = sample_structure(s, ct, SamplingSettings(min_samples=0))
    assert samples is not None
    assert samples.volume_cm3 == pytest.approx(5 * 6 * 4 * 2.5 * 9 / 1000)
    assert samples.cell_mm == pytest.approx((2.5 / 3, 1.0, 1.0))
    # a structure this small (3240 samples) is sampled three times finer by default
    finer = sample_structure(s, ct)
    assert finer is not None and finer.cell_mm == pytest.approx((2.5 / 9, 1 / 3, 1 / 3))
    assert finer.volume_cm3 == pytest.approx(samples.volume_cm3)
    # the samples fill the voxels' boxes: their extent in x is the box minus half a cell
    x = samples.points_mm[:, 0]
    x_lo = ct.origin_mm[0] + (4 - 0.5) * 3.0
    assert x.min() == pytest.approx(x_lo + 0.5) and x.max() == pytest.approx(x_lo + 12 - 0.5)


def test_large_structures_are_capped_and_keep_their_volume() -> None:
    ct = make_ct((60, 200, 200), (2.0, 1.0, 1.0))
    body = structure("Body", {float(z): [circle(90.0, n=1440)] for z in slice_z(ct)}, ct)
    settings = SamplingSettings(max_samples=100_000)
    samples = sample_structure(body, ct, settings)
    assert samples is not None
    contour_cm3 = sum(shoelace_mm2(c.points_mm[:, :2]) for c in body.contours) * 2.0 / 1000
    assert samples.volume_mm3.size <= 1.1 * settings.max_samples
    assert samples.volume_cm3 == pytest.approx(contour_cm3, rel=0.01)
    assert samples.cell_mm[1] > 1.0 and samples.cell_mm[0] == 2.0


def test_samples_are_computed_once_per_structure_and_grid() -> None:
    ct = make_ct((20, 40, 40), (2.0, 1.0, 1.0))
    patient = patient_of(ct, sphere(ct, 12.0))
    grid = DoseGrid.covering(DoseGrid(ct.shape, ct.spacing_mm, ct.origin_mm), 3.0)
    (_, first), = sampled_structures(patient, grid)
    (_, again), = sampled_structures(patient, grid)
    assert again is first
    other = DoseGrid.covering(DoseGrid(ct.shape, ct.spacing_mm, ct.origin_mm), 4.0)
    (_, on_other), = sampled_structures(patient, other)
    assert on_other is not first and on_other.stencil.grid == other


def test_a_body_s_maximum_is_never_below_that_of_a_structure_inside_it() -> None:
    """A body larger than the sample cap is sampled once per slice and in coarser cells, so
    the samples' maximum can miss a hot voxel that a finely sampled target inside it reads
    (demo head: External 59.30 against Brain 59.71 Gy(RBE), 2026-12-07). The maximum also
    reads the dose-grid voxels whose centres lie in the structure."""
    ct = make_ct((60, 200, 200), (2.0, 1.0, 1.0))
    body = structure("Body", {float(z): [circle(90.0, n=1440)] for z in slice_z(ct)}, ct)
    target = sphere(ct, 10.0, (3.0, 3.0))
    target = Structure("Target", 2, "PTV", None, target.mask, target.contours)
    patient = patient_of(ct, body, target)
    grid = DoseGrid.covering(DoseGrid(ct.shape, ct.spacing_mm, ct.origin_mm), 2.5)
    cube = np.zeros(grid.shape, np.float32)
    # the voxel nearest the target's centre (x = y = 3 mm, z = 0)
    k, j, i = (round((c - grid.origin_mm[2 - a]) / grid.spacing_mm[a])
               for a, c in enumerate((0.0, 3.0, 3.0)))
    cube[k, j, i] = 10.0  # a hot voxel inside the target
    stats = {s.name: s for s in structure_dose_statistics(patient, cube, grid, 1.0)}
    assert stats["Body"].samples < stats["Target"].samples * 50  # the body is capped
    assert stats["Target"].metrics.max == pytest.approx(10.0)
    assert stats["Body"].metrics.max >= stats["Target"].metrics.max
    (_, body_samples), = sampled_structures(patient, grid, names=["Body"])
    assert float(body_samples.dose(cube).max()) < 10.0  # the samples alone miss it
    # read within a region: voxels of other regions do not count
    labels = np.zeros(grid.n_voxels, np.int32)
    labels[np.ravel_multi_index((k, j, i), grid.shape)] = 1
    assert body_samples.maximum(cube, body_samples.dose(cube), (labels, 0)) < 10.0
    assert body_samples.maximum(cube, body_samples.dose(cube), (labels, 1)) == 10.0


# --- TG-119 C-shape ------------------------------------------------------------------------


def c_shape(n_arc: int = 360) -> np.ndarray:
    """TG-119 OuterTarget in one plane: radii 15 and 37 mm, open where |x| < 15 mm, y < 0."""
    y_out = -math.sqrt(37.0**2 - 15.0**2)
    a0 = math.atan2(y_out, 15.0)
    outer = np.linspace(a0, math.pi - a0, n_arc)  # counter-clockwise over +y
    inner = np.linspace(math.pi, 0.0, n_arc // 2)
    return np.concatenate([np.column_stack((37 * np.cos(outer), 37 * np.sin(outer))),
                           np.column_stack((15 * np.cos(inner), 15 * np.sin(inner)))])


def inside_polygon(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Crossing-number test (a ray towards +x), written for this test."""
    inside = np.zeros(x.shape, bool)
    px, py = poly[:, 0], poly[:, 1]
    qx, qy = np.roll(px, -1), np.roll(py, -1)
    for x0, y0, x1, y1 in zip(px, py, qx, qy, strict=True):
        if y0 == y1:
            continue
        crosses = (y0 > y) != (y1 > y)
        x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < x_cross)
    return inside


def tg119() -> tuple[Patient, DoseGrid, np.ndarray, dict[str, np.ndarray]]:
    """Phantom (3 mm pixels, 2.5 mm slices, as the bench's), structures, a plan-like dose on
    a 3 mm grid (about 62 Gy within 40 mm of the axis and 23 mm of z = 0, blurred; an 8 mm
    ripple of 4 %; a dip to 35 % on the core) and the structures' polygons."""
    ct = make_ct((29, 41, 41), (2.5, 3.0, 3.0))
    z = slice_z(ct)
    planes = [float(zk) for zk in z if abs(zk) <= 20.0]
    polygons = {"OuterTarget": c_shape(), "Core": circle(10.0, n=360)}
    structures = [structure(name, {zk: [p] for zk in planes}, ct)
                  for name, p in polygons.items()]
    grid = DoseGrid.covering(DoseGrid(ct.shape, ct.spacing_mm, ct.origin_mm), 3.0)
    c = grid.voxel_centers_lps()
    in_c = (np.hypot(c[:, 0], c[:, 1]) <= 40.0) & (np.abs(c[:, 2]) <= 23.0)
    blurred = gaussian_filter(in_c.reshape(grid.shape).astype(np.float64), 1.0)
    ripple = 1.0 + 0.04 * np.sin(2 * np.pi * c[:, 0] / 8.0).reshape(grid.shape)
    core = 1.0 - 0.65 * np.exp(-np.hypot(c[:, 0], c[:, 1]) ** 2 / (2 * 8.0**2))
    dose = 62.0 * np.clip(1.2 * blurred, 0, 1) * ripple * core.reshape(grid.shape)
    return patient_of(ct, *structures), grid, dose, polygons


def brute_force(grid: DoseGrid, dose: np.ndarray, polygons_by_z: dict[float, list[np.ndarray]],
                slab_mm: float, step_mm: float = 0.2, per_slab: int = 5
                ) -> tuple[float, float]:
    """Volume (cm^3) and D95 of a stack of slabs by brute force: points every ``step_mm``
    in-plane inside an odd number of the plane's (N, 2) xy polygons, ``per_slab`` planes per
    slab of ``slab_mm`` centred on each plane; dose by RegularGridInterpolator (linear)."""
    axes = [grid.origin_mm[2 - a] + grid.spacing_mm[a] * np.arange(grid.shape[a])
            for a in range(3)]
    interpolate = RegularGridInterpolator(axes, dose, method="linear")
    offsets = ((np.arange(per_slab) + 0.5) / per_slab - 0.5) * slab_mm
    doses, n_points = [], 0
    inside: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}  # a prism's planes share one test
    for zk, polys in polygons_by_z.items():
        key = b"".join(p.tobytes() + b"|" for p in polys)
        if key not in inside:
            both = np.concatenate(polys)
            # offset by an odd fraction of a step: no point on a pixel-aligned contour edge
            lo, hi = both.min(axis=0) - step_mm + 0.1234 * step_mm, both.max(axis=0) + step_mm
            xx, yy = np.meshgrid(np.arange(lo[0], hi[0], step_mm),
                                 np.arange(lo[1], hi[1], step_mm))
            keep = np.zeros(xx.size, bool)
            for p in polys:
                keep ^= inside_polygon(xx.ravel(), yy.ravel(), p)
            inside[key] = (xx.ravel()[keep], yy.ravel()[keep])
        px, py = inside[key]
        n_points += px.size
        doses += [interpolate(np.column_stack((np.full(px.size, zk + dz), py, px)))
                  for dz in offsets]
    d = np.concatenate(doses)
    return n_points * step_mm**2 * slab_mm / 1000.0, float(np.sort(d)[int(0.05 * d.size)])


@pytest.mark.parametrize("name", ["OuterTarget", "Core"])
def test_tg119_d95_and_volume_against_a_brute_force_reference(name: str) -> None:
    patient, grid, dose, polygons = tg119()
    s = patient.structure_set.get(name)
    planes = sorted({float(c.points_mm[0, 2]) for c in s.contours})
    contour_cm3 = shoelace_mm2(polygons[name]) * 2.5 * len(planes) / 1000.0
    ref_cm3, ref_d95 = brute_force(grid, dose, {z: [polygons[name]] for z in planes}, 2.5)
    assert ref_cm3 == pytest.approx(contour_cm3, rel=5e-3)  # the reference itself
    (st,) = structure_dose_statistics(patient, dose, grid, 60.0, names=[name])
    assert st.dvh.volume_cm3 == pytest.approx(contour_cm3, rel=0.01)
    assert st.metrics.d95 == pytest.approx(ref_d95, rel=0.01)


def test_weighted_quantiles_interpolate_between_volume_middles() -> None:
    # samples of 1, 1, 1, 2 mm^3 at 10, 20, 30, 40 Gy: sorted from the hottest they stand at
    # 20 %, 50 %, 70 % and 90 % of the volume (the middles of 0-40, 40-60, 60-80, 80-100 %)
    d = doses_at_volumes([10.0, 20.0, 30.0, 40.0], [0, 10, 40, 60, 90, 100],
                         [1.0, 1.0, 1.0, 2.0])
    np.testing.assert_allclose(d, [40.0, 40.0, 40.0 - 10.0 * 2 / 3, 25.0, 10.0, 10.0])
