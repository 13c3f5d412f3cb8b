"""A plan's WEPL cubes: one per beam, shared by its spot placement and engines."""

from __future__ import annotations

import numpy as np

from kernels.wepl import wepl_at_points
from planning.beams import Beam, SpotMap
from planning.dicom import load_demo_patient
from planning.dose_grid import DoseGrid
from planning.engine import PlanningEngine, wepl_cubes
from planning.engine.dose_engine import DoseEngineSettings
from planning.engine.wepl_cubes import WeplCubes
from planning.planner import PlanRequest, make_plan, reoptimize
from tests.synthetic_machine import make_synthetic_machine


def _slab_volume() -> tuple[np.ndarray, DoseGrid]:
    """40 x 50 x 60 voxels of 2 mm: water with a bone slab (RSP 1.6) and lung (0.3)."""
    rsp = np.ones((40, 50, 60), dtype=np.float32)
    rsp[:, :, 20:26] = 1.6
    rsp[:, 10:20, :] = 0.3
    return rsp, DoseGrid((40, 50, 60), (2.0, 2.0, 2.0), (-59.0, -49.0, -39.0))


def _points(n: int = 200) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.uniform(-35.0, 35.0, size=(n, 3))


def test_a_beam_s_cube_is_made_once_and_samples_as_the_kernel_does() -> None:
    rsp, grid = _slab_volume()
    cubes = WeplCubes(rsp, grid, None)
    beams = [Beam((0.0, 0.0, 0.0), g, 0.0, f"G{g:g}") for g in (90.0, 270.0)]
    first = cubes.cube(np, beams[0].frame)
    assert cubes.cube(np, beams[0].frame) is first
    second = cubes.cube(np, beams[1].frame)
    assert second is not first
    assert cubes.nbytes == first.wepl_mm.nbytes + second.wepl_mm.nbytes
    pts = _points()
    for beam in beams:
        f = beam.frame
        expected = wepl_at_points(rsp, grid.spacing_mm, grid.origin_mm, f.direction, f.u_axis,
                                  f.v_axis, pts)
        np.testing.assert_array_equal(cubes.at_points(np, f, pts), expected)
    # The two opposed beams see different depths at the same points.
    assert not np.allclose(cubes.at_points(np, beams[0].frame, pts),
                           cubes.at_points(np, beams[1].frame, pts))


def test_the_kept_bytes_are_known_before_the_cubes_are_made(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rsp, grid = _slab_volume()
    frames = [Beam((0.0, 0.0, 0.0), g, c, "B").frame
              for g, c in ((90.0, 0.0), (270.0, 0.0), (30.0, 20.0))]
    cubes = WeplCubes(rsp, grid, None)
    expected = cubes.kept_bytes(frames)
    for f in frames:
        cubes.cube(np, f)
    assert expected == cubes.nbytes > 0
    # Within a budget of two of them, the third is neither kept nor counted.
    sizes = [WeplCubes(rsp, grid, None).cube(np, f).wepl_mm.nbytes for f in frames]
    monkeypatch.setattr(wepl_cubes, "KEPT_BYTES", sizes[0] + sizes[1])
    small = WeplCubes(rsp, grid, None)
    assert small.kept_bytes(frames) == sizes[0] + sizes[1]
    for f in frames:
        small.cube(np, f)
    assert small.nbytes == sizes[0] + sizes[1]


def test_cubes_beyond_the_budget_are_made_for_each_use(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rsp, grid = _slab_volume()
    frame = Beam((0.0, 0.0, 0.0), 90.0, 0.0, "G90").frame
    monkeypatch.setattr(wepl_cubes, "KEPT_BYTES", 1000)
    cubes = WeplCubes(rsp, grid, None)
    a = cubes.cube(np, frame)
    assert cubes.nbytes == 0 and cubes.cube(np, frame) is not a
    np.testing.assert_array_equal(cubes.cube(np, frame).wepl_mm, a.wepl_mm)


def test_cubes_not_kept_are_made_for_each_use() -> None:
    rsp, grid = _slab_volume()
    frame = Beam((0.0, 0.0, 0.0), 90.0, 0.0, "G90").frame
    cubes = WeplCubes(rsp, grid, None, keep=False)
    assert cubes.kept_bytes([frame]) == 0
    a = cubes.cube(np, frame)
    assert cubes.nbytes == 0 and cubes.cube(np, frame) is not a


def test_cubes_serve_only_their_own_volume() -> None:
    rsp, grid = _slab_volume()
    cubes = WeplCubes(rsp, grid, None)
    assert cubes.serves(rsp, grid, None)
    assert not cubes.serves(rsp.copy(), grid, None)  # equal values, another array
    assert not cubes.serves(rsp, grid, 0.5)
    other = DoseGrid(grid.shape, (2.0, 2.0, 2.5), grid.origin_mm)
    assert not cubes.serves(rsp, other, None)


def test_a_plan_traces_each_beam_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Spot placement, the optimizer's engine, the refinement's and the dose grid's engines
    of a plan (and its re-optimization) share one cube per beam."""
    made: list[tuple[float, ...]] = []
    real = wepl_cubes.wepl_cube

    def counted(rsp, spacing, origin, direction, *args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(tuple(np.round(direction, 6)))
        return real(rsp, spacing, origin, direction, *args, **kwargs)

    monkeypatch.setattr(wepl_cubes, "wepl_cube", counted)
    result = make_plan(PlanRequest(
        target="PTV", total_dose_gy_rbe=3.0, n_fractions=1, gantry_deg=(90.0, 270.0),
        patient=load_demo_patient(), rbe_model="mkm", spot_spacing_mm=6.0, dose_grid_mm=5.0,
        device="cpu"))
    assert len(made) == 2 and made[0] != made[1]
    assert result.prepared is not None
    reoptimize(result.prepared, total_dose_gy_rbe=3.3)
    assert len(made) == 2



def test_coarser_rays_make_smaller_cubes_that_only_engines_of_those_rays_take() -> None:
    """A work estimate's cubes: rays every 4 mm instead of the CT's 2 mm, sampled as the
    kernel samples such a cube; an engine of the default rays makes its own."""
    rsp, grid = _slab_volume()
    frame = Beam((0.0, 0.0, 0.0), 90.0, 0.0, "G90").frame
    fine, coarse = WeplCubes(rsp, grid, 2.0), WeplCubes(rsp, grid, 2.0, lateral_step_mm=4.0)
    made = coarse.cube(np, frame)
    assert made.lateral_step_mm == 4.0
    assert coarse.kept_bytes([frame]) == made.wepl_mm.nbytes
    assert 3.0 < fine.kept_bytes([frame]) / made.wepl_mm.nbytes < 5.0  # about (4 / 2)^2
    pts = _points()
    expected = wepl_at_points(rsp, grid.spacing_mm, grid.origin_mm, frame.direction,
                              frame.u_axis, frame.v_axis, pts, lateral_step_mm=4.0,
                              depth_step_mm=2.0)
    np.testing.assert_array_equal(coarse.at_points(np, frame, pts), expected)
    assert coarse.serves(rsp, grid, 2.0, lateral_step_mm=4.0)
    assert not coarse.serves(rsp, grid, 2.0)
    assert not fine.serves(rsp, grid, 2.0, lateral_step_mm=4.0)
    machine = make_synthetic_machine(min_range_mm=20.0, max_range_mm=160.0)
    spots = SpotMap(np.array([machine.energies_mev_u[10]]), np.array([0]), np.array([0.0]),
                    np.array([0.0]), (5.0, 5.0))
    beam = Beam((0.0, 0.0, 0.0), 90.0, 0.0, "G90")
    for lateral, expect_kept in ((4.0, True), (None, False)):
        served = WeplCubes(rsp, grid, 2.0, lateral_step_mm=4.0)
        settings = DoseEngineSettings(device="cpu", wepl_step_mm=2.0,
                                      wepl_lateral_step_mm=lateral)
        PlanningEngine(machine, rsp, grid, grid, [beam], [spots], settings, wepl_cubes=served)
        assert (served.nbytes > 0) is expect_kept
