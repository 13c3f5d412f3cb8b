"""Water-equivalent path length against analytic sums through slabs of known RSP."""

import numpy as np
import pytest

from kernels.backend import DeviceUnavailableError, resolve_device, to_numpy
from kernels.wepl import sample_volume, wepl_at_points
from planning.geometry import beam_frame


def _strict():
    return pytest.importorskip("array_api_strict")


BACKENDS = ["numpy", "array_api_strict"]


def _xp(name):
    return np if name == "numpy" else _strict()


def _box(shape=(40, 120, 40), spacing=(1.0, 1.0, 1.0)):
    """RSP 1 box; origin such that voxel boundaries lie at integers, y from 0 to ny."""
    origin = (-shape[2] / 2 * spacing[2] + 0.5 * spacing[2], 0.5 * spacing[1],
              -shape[0] / 2 * spacing[0] + 0.5 * spacing[0])
    return np.ones(shape, dtype=np.float32), spacing, origin


def _wepl(xp, rsp, spacing, origin, gantry, couch, points, **kw):
    f = beam_frame(gantry, couch)
    out = wepl_at_points(xp.asarray(rsp), spacing, origin, f.direction, f.u_axis, f.v_axis,
                         xp.asarray(np.asarray(points, dtype=np.float64)), **kw)
    return to_numpy(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_water_depth_equals_distance_from_entry_face(backend):
    # Points at least half a voxel inside: the interpolated RSP ramps up over the outer half
    # voxel, with the same integral as a sharp face at the voxel boundary.
    xp = _xp(backend)
    rsp, sp, org = _box()
    depths = np.array([0.7, 5.0, 17.25, 60.0, 119.5])
    pts = np.stack([np.zeros_like(depths), depths, np.zeros_like(depths)], axis=1)
    w = _wepl(xp, rsp, sp, org, 0.0, 0.0, pts)  # gantry 0: travels +y, enters at y = 0
    np.testing.assert_allclose(w, depths, atol=0.02)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bone_slab_adds_its_water_equivalent_thickness(backend):
    xp = _xp(backend)
    rsp, sp, org = _box()
    rsp[:, 30:50, :] = 1.6  # y in [30, 50): 20 mm of RSP 1.6 -> 32 mm water
    depths = np.array([10.0, 29.9, 35.0, 42.5, 49.9, 50.1, 80.0, 110.3])
    pts = np.stack([np.full_like(depths, 1.7), depths, np.full_like(depths, -3.2)], axis=1)
    expect = depths + 0.6 * np.clip(depths - 30.0, 0.0, 20.0)
    w = _wepl(xp, rsp, sp, org, 0.0, 0.0, pts)
    # Trilinear RSP smooths each slab face over one voxel; away from the faces the analytic sum
    # holds to 0.3 mm (the accuracy the dose engine needs for a 12 mm peak shift).
    far = np.abs(depths - 30) > 1.0
    far &= np.abs(depths - 50) > 1.0
    np.testing.assert_allclose(w[far], expect[far], atol=0.3)
    np.testing.assert_allclose(w[-1] - depths[-1], 12.0, atol=0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sub_step_accuracy_with_coarse_steps(backend):
    xp = _xp(backend)
    rsp, sp, org = _box()
    rsp[:, 30:50, :] = 1.6
    depths = np.linspace(55.0, 58.0, 13)  # quarter steps between the 1 mm sampling planes
    pts = np.stack([np.zeros_like(depths), depths, np.zeros_like(depths)], axis=1)
    w = _wepl(xp, rsp, sp, org, 0.0, 0.0, pts, depth_step_mm=1.0)
    np.testing.assert_allclose(w, depths + 12.0, atol=0.05)


@pytest.mark.parametrize("gantry,couch", [(45.0, 0.0), (300.0, 20.0)])
def test_oblique_ray_in_water_box(gantry, couch):
    rsp, sp, org = _box(shape=(60, 60, 60))
    lo = np.array([org[0], org[1], org[2]]) - 0.5
    hi = lo + 60.0
    f = beam_frame(gantry, couch)
    centre = 0.5 * (lo + hi)
    pts = centre + np.array([[3, 1, 0], [5, -3, 2], [-8, 6, -4]], dtype=float)
    # Analytic entry: distance back along -direction to the box surface (slab method).
    with np.errstate(divide="ignore"):
        t_lo = (lo - pts) / -f.direction
        t_hi = (hi - pts) / -f.direction
    dist = np.min(np.where(np.isfinite(np.maximum(t_lo, t_hi)), np.maximum(t_lo, t_hi), np.inf),
                  axis=1)
    w = _wepl(np, rsp, sp, org, gantry, couch, pts)
    np.testing.assert_allclose(w, dist, atol=0.1)


def test_points_before_the_volume_have_zero_wepl():
    rsp, sp, org = _box()
    w = _wepl(np, rsp, sp, org, 0.0, 0.0, [[0.0, -20.0, 0.0], [0.0, -0.6, 0.0]])
    np.testing.assert_allclose(w, 0.0, atol=1e-6)


def test_sample_volume_is_trilinear_and_zero_outside():
    vol = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    pts = np.array([[0.0, 0.0, 0.0], [1.5, 2.0, 1.0], [0.5, 0.5, 0.5], [100.0, 0.0, 0.0]])
    got = to_numpy(sample_volume(vol, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), pts))
    # value = 12 z + 4 y + x inside
    np.testing.assert_allclose(got, [0.0, 12 + 8 + 1.5, 6 + 2 + 0.5, 0.0], atol=1e-5)


def _gpu_available():
    try:
        return resolve_device("gpu") == "gpu"
    except DeviceUnavailableError:
        return False


def test_cupy_matches_numpy():
    if not _gpu_available():
        pytest.skip("no CUDA device with CuPy: CuPy-vs-NumPy WEPL comparison not run")
    import cupy

    rsp, sp, org = _box()
    rsp[:, 30:50, :] = 1.6
    rng = np.random.default_rng(0)
    pts = rng.uniform([-15, 1, -15], [15, 119, 15], size=(500, 3))
    w_np = _wepl(np, rsp, sp, org, 33.0, 10.0, pts)
    w_cp = _wepl(cupy, rsp, sp, org, 33.0, 10.0, pts)
    np.testing.assert_allclose(w_cp, w_np, rtol=1e-5, atol=1e-4)


def test_cube_on_threads_is_the_cube_of_one_thread():
    """Chunks on a thread pool give the same cube; progress comes from the calling thread, in
    order, up to 1."""
    import threading

    from kernels.wepl import wepl_cube

    rng = np.random.default_rng(4)
    rsp = rng.uniform(0.2, 1.8, (30, 40, 35)).astype(np.float32)
    f = beam_frame(60.0, 10.0)
    args = (rsp, (2.0, 1.5, 1.0), (-17.0, -20.0, -29.0), f.direction, f.u_axis, f.v_axis)
    one = wepl_cube(*args, chunk_samples=5000)
    seen = []
    main = threading.get_ident()

    def on_chunk(fraction: float) -> None:
        assert threading.get_ident() == main
        seen.append(fraction)

    three = wepl_cube(*args, chunk_samples=5000, threads=3, on_chunk=on_chunk)
    np.testing.assert_array_equal(three.wepl_mm, one.wepl_mm)
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == 1.0


def test_the_compiled_ray_integration_is_built_under_ci():
    import os

    from kernels import wepl_cpu

    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        pytest.skip("not under CI")
    assert wepl_cpu.available()


@pytest.mark.parametrize("gantry,couch", [(90.0, 0.0), (33.0, 10.0), (200.0, 75.0)])
def test_compiled_cube_is_the_numpy_cube(monkeypatch, gantry, couch):
    """The compiled loops do the NumPy path's operations in its order: the same cube, and the
    same WEPL at points (inside, at the edges and outside the cube), to the last bit, on any
    beam direction, chunking and thread count; rays that leave the volume clamp to its zero
    padding in both."""
    from kernels import wepl_cpu
    from kernels.wepl import sample_wepl, wepl_cube

    if not wepl_cpu.available():
        pytest.skip("the compiled WEPL ray integration was not built with this installation")
    rng = np.random.default_rng(11)
    rsp = rng.uniform(0.0, 2.0, (23, 31, 27)).astype(np.float32)
    f = beam_frame(gantry, couch)
    args = (rsp, (2.5, 1.5, 1.2), (-13.0, -21.0, -30.0), f.direction, f.u_axis, f.v_axis)
    compiled = wepl_cube(*args, chunk_samples=7000, threads=2)
    points = rng.uniform([-45.0, -35.0, -30.0], [20.0, 35.0, 40.0], size=(4000, 3))
    points[:7] = [[-13.0, -21.0, -30.0], [0, 0, 0], [1e3, 0, 0], [0, -1e3, 0], [0, 0, 1e3],
                  [-1e3, -1e3, -1e3], [20.0, 35.0, 40.0]]
    at_points = sample_wepl(compiled, points)
    with monkeypatch.context() as m:
        m.setattr(wepl_cpu, "available", lambda: False)
        numpy_cube = wepl_cube(*args, chunk_samples=7000)
        numpy_points = sample_wepl(numpy_cube, points, chunk_samples=1500)
    assert compiled.wepl_mm.dtype == np.float32 and at_points.dtype == np.float32
    np.testing.assert_array_equal(compiled.wepl_mm, numpy_cube.wepl_mm)
    assert float(compiled.wepl_mm.max()) > 10.0
    np.testing.assert_array_equal(at_points, numpy_points)
    assert np.ptp(at_points) > 10.0


def test_compiled_ray_integration_refuses_a_wrong_output():
    from kernels import wepl_cpu

    if not wepl_cpu.available():
        pytest.skip("the compiled WEPL ray integration was not built with this installation")
    flat = np.zeros(27, dtype=np.float32)
    with pytest.raises(ValueError, match="the output must be"):
        wepl_cpu.integrate_rays(flat, (3, 3, 3), 0, 2, 4, 5, (0.0, 0.0, 0.0), 1.0, 0.5,
                                (1.0, 1.0, 1.0), ((0, 0, 1), (0, 1, 0), (1, 0, 0)),
                                np.zeros((2, 4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="the points must be"):
        wepl_cpu.sample_points(np.zeros((2, 3, 4), dtype=np.float32), np.zeros((5, 2)),
                               np.eye(3), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="padded volume"):
        wepl_cpu.integrate_rays(flat[:20], (3, 3, 3), 0, 2, 4, 5, (0.0, 0.0, 0.0), 1.0, 0.5,
                                (1.0, 1.0, 1.0), ((0, 0, 1), (0, 1, 0), (1, 0, 0)),
                                np.zeros((2, 4, 6), dtype=np.float32))
