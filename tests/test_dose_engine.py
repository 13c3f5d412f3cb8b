"""Dose engine: spot placement, influence matrices and forward dose on small phantoms."""

import numpy as np
import pytest

from planning.beams import Beam, SpotMap
from planning.dose_grid import DoseGrid
from planning.engine import build_influence
from planning.engine.dose_engine import (
    DoseEngineSettings,
    compute_wepl,
    forward_dose,
    place_spots,
    resolve_device,
)
from planning.errors import DeviceError, PlanningError
from planning.progress import CancelToken, OperationCancelled
from tests.synthetic_machine import make_synthetic_machine

CPU = DoseEngineSettings(device="cpu", n_threads=2)


@pytest.fixture(scope="module")
def synth():
    """A small analytic machine (independent of the shipped generator's output)."""
    return make_synthetic_machine(min_range_mm=20.0, max_range_mm=160.0, peak_spacing_mm=4.0)


def _grid(shape, spacing):
    """Grid centred on the LPS origin."""
    nz, ny, nx = shape
    sz, sy, sx = spacing
    return DoseGrid(shape, spacing, (-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, -(nz - 1) / 2 * sz))


def _single_spot(synth, energy_index, u=0.0, v=0.0):
    e = synth.energies_mev_u[energy_index]
    return SpotMap(np.array([e]), np.array([0]), np.array([u]), np.array([v]), (5.0, 5.0))


def _central_axis_peak(dose, axis_profile_index):
    """Depth index of the maximum of a profile, refined by a parabola through 3 points."""
    prof = dose[axis_profile_index]
    i = int(np.argmax(prof))
    a, b, c = prof[i - 1], prof[i], prof[i + 1]
    return i + 0.5 * (a - c) / (a - 2 * b + c)


def test_bone_slab_shifts_bragg_peak_by_its_water_equivalent_thickness(synth):
    # Beam at gantry 0 travels +y. Dose grid 1 mm along the beam, 2 mm across.
    grid = _grid((11, 200, 11), (2.0, 1.0, 2.0))
    y = grid.origin_mm[1] + np.arange(200) * 1.0
    iso_y = 0.0
    beam = Beam((0.0, iso_y, 0.0), 0.0, 0.0)
    water = np.ones(grid.shape, np.float32)
    bone = water.copy()
    bone[:, (y > -80) & (y < -60), :] = 1.6  # 20 mm of RSP 1.6 upstream of the peak
    k = int(np.argmin(np.abs(synth.peak_depth_mm - 110.0)))
    spots = _single_spot(synth, k)
    peaks = []
    for rsp in (water, bone):
        inf = build_influence(synth, rsp, grid, grid, [beam], [spots], CPU)
        dose, _ = forward_dose(inf, [1.0])
        peaks.append(_central_axis_peak(dose[5, :, :].T, 5) * 1.0)
    assert peaks[0] - peaks[1] == pytest.approx(12.0, abs=0.5)
    # In water the peak sits at the machine's peak depth; voxel i is at depth i + 0.5 mm.
    assert peaks[0] + 0.5 == pytest.approx(synth.peak_depth_mm[k], abs=0.5)


def test_dose_is_finite_nonnegative_and_mirror_symmetric(synth):
    grid = _grid((21, 60, 21), (3.0, 3.0, 3.0))
    rsp = np.ones(grid.shape, np.float32)
    x = grid.origin_mm[0] + np.arange(21) * 3.0
    rsp[:, 30:35, np.abs(x) <= 10] = 1.5  # symmetric insert
    beam = Beam((0.0, 0.0, 0.0), 0.0, 0.0)
    target = np.zeros(grid.shape, bool)
    target[8:13, 25:40, 7:14] = True
    spots = place_spots(synth, rsp, grid, beam, target, spot_spacing_mm=5.0)
    np.testing.assert_allclose(np.sort(spots.u_mm), np.sort(-spots.u_mm))
    inf = build_influence(synth, rsp, grid, grid, [beam], [spots], CPU)
    dose, letd = forward_dose(inf, np.ones(spots.n_spots))
    assert np.all(np.isfinite(dose)) and np.all(dose >= 0) and dose.max() > 0
    assert np.all(np.isfinite(letd)) and np.all(letd >= 0)
    # gantry 0: u = +x; symmetric spots in u and a phantom symmetric in x
    np.testing.assert_allclose(dose, dose[:, :, ::-1], rtol=1e-4, atol=1e-6 * dose.max())
    lo, hi = synth.letd_kev_um.min(), synth.letd_kev_um.max()
    assert letd[dose > 0].min() >= lo - 1e-3 and letd.max() <= hi + 1e-3


def test_opposed_lateral_beams_give_mirrored_dose(synth):
    grid = _grid((15, 21, 61), (3.0, 3.0, 3.0))
    rsp = np.ones(grid.shape, np.float32)
    rsp[:, :, :5] = 0.001  # symmetric air margins
    rsp[:, :, -5:] = 0.001
    x = grid.origin_mm[0] + np.arange(61) * 3.0
    rsp[:, 8:13, np.abs(np.abs(x) - 40) < 6] = 1.6  # bone on both sides
    e = synth.energies_mev_u[int(np.argmin(np.abs(synth.peak_depth_mm - 90)))]
    u, v = np.meshgrid([-5.0, 0.0, 5.0], [-5.0, 0.0, 5.0])
    sm = SpotMap(np.full(9, e), np.zeros(9, int), u.ravel(), v.ravel(), (5.0, 5.0))
    doses = []
    for gantry in (90.0, 270.0):
        inf = build_influence(synth, rsp, grid, grid, [Beam((0.0, 0.0, 0.0), gantry)], [sm],
                              CPU)
        doses.append(forward_dose(inf, np.linspace(1, 2, 9))[0])
    assert doses[0].max() > 0
    # weights differ per spot: the mirror must map spot (u, v) of G90 onto (-u, v) of G270
    w = np.linspace(1, 2, 9).reshape(3, 3)
    inf = build_influence(synth, rsp, grid, grid, [Beam((0.0, 0.0, 0.0), 270.0)], [sm], CPU)
    mirrored = forward_dose(inf, w[:, ::-1].ravel())[0]
    np.testing.assert_allclose(mirrored, doses[0][:, :, ::-1], rtol=1e-4,
                               atol=1e-6 * doses[0].max())


def test_place_spots_covers_target_with_peaks_in_its_depth_range(synth):
    grid = _grid((15, 60, 15), (2.0, 2.0, 2.0))
    rsp = np.ones(grid.shape, np.float32)
    target = np.zeros(grid.shape, bool)
    target[5:10, 30:40, 4:11] = True  # y in [0, 20) mm relative to... depth 61..81 mm
    beam = Beam((0.0, 0.0, 0.0), 0.0, 0.0)
    sm = place_spots(synth, rsp, grid, beam, target, spot_spacing_mm=4.0,
                     lateral_margin_mm=2.0, energy_margin_mm=3.0)
    wepl = compute_wepl(rsp, grid, beam, grid.voxel_centers_lps(np.flatnonzero(target)))
    peak = synth.peak_depth_mm[np.searchsorted(synth.energies_mev_u, sm.energy_mev_u)]
    assert peak.min() >= wepl.min() - 3.0 - 1e-6 and peak.max() <= wepl.max() + 3.0 + 1e-6
    # Layers by decreasing energy, spots on the lattice, lateral extent = target + margin.
    e_layer = np.array([sm.energy_mev_u[sm.layer == k][0] for k in range(sm.layer.max() + 1)])
    assert np.all(np.diff(e_layer) < 0)
    np.testing.assert_allclose(np.mod(sm.u_mm, 4.0), 0.0, atol=1e-9)
    x_extent = 7 * 2.0 / 2 + 2.0  # half width of the target + margin
    assert np.abs(sm.u_mm).max() <= x_extent + 2.0 + 1e-9
    assert np.abs(sm.u_mm).max() >= 4.0


def test_influence_layout_and_shared_structure(synth):
    grid = _grid((9, 40, 9), (3.0, 3.0, 3.0))
    rsp = np.ones(grid.shape, np.float32)
    calc = np.zeros(grid.shape, bool)
    calc[:, :30, :] = True
    k = int(np.argmin(np.abs(synth.peak_depth_mm - 60)))
    sm = SpotMap(np.full(3, synth.energies_mev_u[k]), np.zeros(3, int),
                 np.array([-5.0, 0.0, 5.0]), np.zeros(3), (5.0, 5.0))
    inf = build_influence(synth, rsp, grid, grid, [Beam((0.0, 0.0, 0.0))] * 2, [sm, sm], CPU,
                          calc_mask=calc)
    assert inf.dose.shape == (grid.n_voxels, 6)
    assert np.shares_memory(inf.let_dose.indices, inf.dose.indices)
    assert np.shares_memory(inf.let_dose.indptr, inf.dose.indptr)
    assert not inf.dose.indices.flags.writeable
    assert inf.dose.dtype == np.float32 and inf.dose.indices.dtype == np.int32
    assert inf.dose.has_sorted_indices
    rows = np.repeat(np.arange(grid.n_voxels), np.diff(inf.dose.indptr))
    assert calc.reshape(-1)[rows].all()
    np.testing.assert_array_equal(inf.spots.beam, [0, 0, 0, 1, 1, 1])
    # The two identical beams give identical columns.
    d = inf.dose.toarray()
    np.testing.assert_array_equal(d[:, :3], d[:, 3:])
    assert inf.nbytes / inf.nnz / 2 <= 6.0 + 4 * (grid.n_voxels + 1) / inf.nnz


def test_progress_and_cancel(synth):
    grid = _grid((9, 30, 9), (3.0, 3.0, 3.0))
    rsp = np.ones(grid.shape, np.float32)
    sm = _single_spot(synth, 3)
    seen = []
    build_influence(synth, rsp, grid, grid, [Beam((0.0, 0.0, 0.0))], [sm], CPU,
                    progress=lambda f, s: seen.append((f, s)))
    fr = [f for f, _ in seen]
    assert fr == sorted(fr) and fr[-1] == 1.0 and all(isinstance(s, str) for _, s in seen)
    token = CancelToken()
    token.cancel()
    with pytest.raises(OperationCancelled):
        build_influence(synth, rsp, grid, grid, [Beam((0.0, 0.0, 0.0))], [sm], CPU,
                        cancel=token)


def test_bad_input_is_reported(synth):
    grid = _grid((9, 30, 9), (3.0, 3.0, 3.0))
    rsp = np.ones(grid.shape, np.float32)
    beam = Beam((0.0, 0.0, 0.0))
    sm = _single_spot(synth, 3)
    with pytest.raises(PlanningError, match="one spot map per beam"):
        build_influence(synth, rsp, grid, grid, [beam, beam], [sm], CPU)
    bad = rsp.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(PlanningError, match="finite"):
        build_influence(synth, bad, grid, grid, [beam], [sm], CPU)
    with pytest.raises(PlanningError, match="shape"):
        build_influence(synth, rsp[:-1], grid, grid, [beam], [sm], CPU)
    off = SpotMap(sm.energy_mev_u, sm.layer, np.array([1.3]), np.array([0.0]), (5.0, 5.0))
    with pytest.raises(PlanningError, match="lattice"):
        build_influence(synth, rsp, grid, grid, [beam], [off], CPU)
    hot = SpotMap(np.array([1000.0]), sm.layer, sm.u_mm, sm.v_mm, (5.0, 5.0))
    with pytest.raises(PlanningError, match="outside the range"):
        build_influence(synth, rsp, grid, grid, [beam], [hot], CPU)
    with pytest.raises(PlanningError, match="different energies"):
        SpotMap(np.array([100.0, 120.0]), np.array([0, 0]), np.zeros(2), np.zeros(2), (5.0, 5.0))
    with pytest.raises(PlanningError, match="empty"):
        place_spots(synth, rsp, grid, beam, np.zeros(grid.shape, bool))
    deep = _grid((9, 200, 9), (3.0, 3.0, 3.0))
    target = np.zeros(deep.shape, bool)
    target[4, 150:160, 4] = True  # about 450 mm deep: beyond the synth
    with pytest.raises(PlanningError, match="highest energy"):
        place_spots(synth, np.ones(deep.shape, np.float32), deep, beam, target)
    inf = build_influence(synth, rsp, grid, grid, [beam], [sm], CPU)
    with pytest.raises(PlanningError, match="weights"):
        forward_dose(inf, [1.0, 2.0])
    with pytest.raises(PlanningError, match="cutoff"):
        DoseEngineSettings(lateral_cutoff_fraction=1.5)


def test_gpu_request_without_gpu_raises_device_error():
    try:
        resolve_device("gpu")
    except DeviceError as exc:
        assert "GPU" in str(exc)
    else:
        pytest.skip("a CUDA device is present: nothing to refuse")


def test_dose_grid_covering_ct_extent():
    ct = DoseGrid((129, 167, 167), (2.5, 3.0, 3.0), (-249.0, -249.0, -160.0))
    dg = DoseGrid.covering(ct, 3.0)
    assert dg.shape == (108, 167, 167)
    c_ct = np.array(ct.origin_mm) + 0.5 * (np.array(ct.shape[::-1]) - 1) * np.array(
        ct.spacing_mm[::-1])
    c_dg = np.array(dg.origin_mm) + 0.5 * (np.array(dg.shape[::-1]) - 1) * 3.0
    np.testing.assert_allclose(c_dg, c_ct)
