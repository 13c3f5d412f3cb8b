"""Pencil-beam influence kernel against analytic double-Gaussian answers."""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from kernels.backend import DeviceUnavailableError, resolve_device, to_numpy
from kernels.influence import (
    PencilBeamTables,
    beam_voxels,
    chunk_dose,
    chunk_pairs,
    count_pairs,
    cutoff_radius_mm,
    layer_csr,
    layer_weights_by_rank,
    pencil_beam_cutoff_radius_mm,
    plan_layer,
    prepare_layer,
    subset_layer,
    weighted_layers,
)

DOSE_SCALE = 1.0  # the kernel is unit-agnostic: dose = scale * idd * density [1/mm^2]


def _tables(halo=0.2, sigma_air=3.0):
    """Smooth analytic tables on 0..200 mm: IDD rises linearly, sigmas grow with depth."""
    d = np.linspace(0.0, 200.0, 201)
    return PencilBeamTables(
        depth_mm=d,
        idd=100.0 + 0.5 * d,
        sigma_core_mm=0.01 * d,
        sigma_halo_mm=4.0 + 0.05 * d,
        halo_weight=np.full_like(d, halo),
        letd_kev_um=10.0 + 0.1 * d,
        sigma_air_mm=sigma_air,
    )


def _plan(vox, iu, iv, tab, *, cutoff_fraction, dose_scale, chunk_candidates=1 << 20, xp=np):
    layer = prepare_layer(iu, iv, tab, cutoff_fraction=cutoff_fraction, dose_scale=dose_scale,
                          xp=xp)
    return plan_layer(vox, layer, chunk_candidates=chunk_candidates)


def _kept_fraction(r, sc, sh, h):
    return 1 - (1 - h) * math.exp(-r * r / (2 * sc * sc)) - h * math.exp(-r * r / (2 * sh * sh))


def test_cutoff_radius_single_gaussian_is_analytic():
    s = np.array([1.0, 2.5, 7.0])
    for f in (0.9, 0.99, 0.999):
        expect = s * math.sqrt(-2 * math.log(1 - f))
        np.testing.assert_allclose(cutoff_radius_mm(s, s, 0.3, f), expect, rtol=1e-10)
        np.testing.assert_allclose(cutoff_radius_mm(s, 3 * s, 0.0, f), expect, rtol=1e-10)


@pytest.mark.parametrize("f", [0.9, 0.99, 0.999])
def test_cutoff_radius_double_gaussian_keeps_fraction(f):
    sc = np.array([2.0, 3.0, 1.0, 4.0])
    sh = np.array([6.0, 3.5, 20.0, 40.0])
    h = np.array([0.1, 0.5, 0.02, 0.999])
    r = cutoff_radius_mm(sc, sh, h, f)
    for i in range(r.size):
        ref = brentq(lambda x, i=i: _kept_fraction(x, sc[i], sh[i], h[i]) - f, 0.0, 1e4,
                     xtol=1e-12)
        assert r[i] == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("f", [0.9, 0.99, 0.999])
def test_pencil_beam_cutoff_equals_per_depth_cutoff_for_uniform_beam(f):
    d = np.linspace(0.0, 100.0, 11)
    ones = np.ones_like(d)
    r = pencil_beam_cutoff_radius_mm(d, 5 * ones, 2 * ones, 9 * ones, 0.2 * ones, f)
    np.testing.assert_allclose(r, cutoff_radius_mm(2.0, 9.0, 0.2, f) * ones, rtol=1e-6)


@pytest.mark.parametrize("f", [0.95, 0.99, 0.999])
def test_pencil_beam_cutoff_keeps_fraction_and_drops_faint_depths(f):
    """A peaked IDD with a faint, wide tail: the kept dose over all depths is ``f`` and the
    tail nodes lose more than the peak."""
    d = np.linspace(0.0, 300.0, 301)
    idd = np.where(d < 150, 1 + 3 * np.exp(-((d - 145) / 3) ** 2), 0.08)
    sc = 1 + 0.01 * d
    sh = np.where(d < 150, 5 + 0.03 * d, 40.0)
    h = np.where(d < 150, 0.05, 0.999)
    r = pencil_beam_cutoff_radius_mm(d, idd, sc, sh, h, f)
    outside = (1 - h) * np.exp(-r * r / (2 * sc * sc)) + h * np.exp(-r * r / (2 * sh * sh))
    kept = np.trapezoid(idd * (1 - outside), d) / np.trapezoid(idd, d)
    assert kept == pytest.approx(f, abs=2e-4)
    per_depth_kept = 1 - outside
    assert per_depth_kept[d > 200].max() < per_depth_kept[140:150].min()


@pytest.mark.parametrize("f", [0.8, 0.99, 0.999])
def test_pencil_beam_cutoffs_solved_together_keep_their_fraction_from_above(f):
    """Several pencil beams in one call (one without dose): each keeps ``f`` of its dose to
    1e-9 and never less (the threshold is approached from the side that drops too little);
    the one without dose gets no radius."""
    d = np.linspace(0.0, 300.0, 151)
    rows = []
    for peak, tail, halo in ((145.0, 0.08, 0.999), (60.0, 0.01, 0.9), (250.0, 0.2, 0.99)):
        idd = np.where(d < peak + 5, 1 + 3 * np.exp(-((d - peak) / 3) ** 2), tail)
        rows.append((idd, 1 + 0.01 * d, np.where(d < peak + 5, 5 + 0.03 * d, 40.0),
                     np.where(d < peak + 5, 0.05, halo)))
    rows.append((np.zeros_like(d), 1 + 0.01 * d, 5 + 0.03 * d, np.full_like(d, 0.05)))
    idd, sc, sh, h = (np.stack(x) for x in zip(*rows, strict=True))
    r = pencil_beam_cutoff_radius_mm(np.broadcast_to(d, idd.shape), idd, sc, sh, h, f)
    outside = (1 - h) * np.exp(-r * r / (2 * sc * sc)) + h * np.exp(-r * r / (2 * sh * sh))
    for i in range(3):
        kept = np.trapezoid(idd[i] * (1 - outside[i]), d) / np.trapezoid(idd[i], d)
        assert kept == pytest.approx(f, abs=1e-9)
        assert kept >= f - 1e-12
    assert np.all(r[3] == 0.0)


def test_cutoff_radius_rejects_bad_fraction():
    with pytest.raises(ValueError):
        cutoff_radius_mm(1.0, 2.0, 0.1, 1.0)


def _xp(name):
    if name == "numpy":
        return np
    return pytest.importorskip("array_api_strict")


def _plane(xp, wepl, half=60.0, step=0.5, t=0.0, sad=(1e9, 1e9)):
    """Voxels on a lateral plane of constant WEPL and geometric depth."""
    g = np.arange(-half, half + step / 2, step)
    uu, vv = np.meshgrid(g, g, indexing="ij")
    n = uu.size
    vox = beam_voxels(xp.asarray(np.arange(n)), xp.asarray(uu.ravel()), xp.asarray(vv.ravel()),
                      xp.asarray(np.full(n, t)), xp.asarray(np.full(n, wepl)),
                      lattice_spacing_mm=(5.0, 5.0), sad_mm=sad)
    return vox, uu.ravel(), vv.ravel()


def _dose_on_voxels(plan, vox):
    """Dense dose per voxel (summed over spots) in the caller's voxel order."""
    csr = layer_csr(plan)
    counts = np.diff(to_numpy(csr.indptr))
    rows = np.repeat(to_numpy(vox.index)[to_numpy(csr.voxel)], counts)
    out = np.zeros(vox.n)
    np.add.at(out, rows, to_numpy(csr.dose))
    return out


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("f", [0.9, 0.99])
def test_single_spot_keeps_the_stated_fraction(backend, f):
    """Summed over planes at all depths, one spot keeps ``f`` of its depth-integrated dose."""
    xp = _xp(backend)
    tab = _tables(halo=0.15)
    depths = np.linspace(0.0, 200.0, 21)
    kept = []
    for wepl in depths:
        vox, _, _ = _plane(xp, float(wepl), step=0.25)
        plan = _plan(vox, [0], [0], tab, cutoff_fraction=f, dose_scale=DOSE_SCALE, xp=xp)
        kept.append(_dose_on_voxels(plan, vox).sum() * 0.25 * 0.25)
    idd = 100.0 + 0.5 * depths
    assert np.trapezoid(kept, depths) / np.trapezoid(idd, depths) == pytest.approx(f, abs=3e-3)


def test_lateral_profile_integrates_to_idd():
    tab = _tables(halo=0.3)
    for wepl in (10.0, 87.3, 190.0):
        vox, _, _ = _plane(np, wepl, half=80.0, step=0.5)
        plan = _plan(vox, [0], [0], tab, cutoff_fraction=0.9999, dose_scale=DOSE_SCALE)
        total = _dose_on_voxels(plan, vox).sum() * 0.5 * 0.5
        assert total == pytest.approx(100.0 + 0.5 * wepl, rel=0.01)


def test_entries_match_brute_force_double_gaussian():
    tab = _tables(halo=0.25)
    rng = np.random.default_rng(3)
    n = 3000
    u, v = rng.uniform(-40, 40, n), rng.uniform(-40, 40, n)
    t = rng.uniform(-50, 50, n)
    w = rng.uniform(0, 190, n)
    sad = (2000.0, 2500.0)
    vox = beam_voxels(np.arange(n), u, v, t, w, lattice_spacing_mm=(5.0, 4.0), sad_mm=sad)
    iu, iv = np.meshgrid(np.arange(-4, 5), np.arange(-3, 6), indexing="ij")
    keep = rng.random(iu.size) < 0.7  # holes in the layer
    iu, iv = iu.ravel()[keep], iv.ravel()[keep]
    f = 0.99
    plan = _plan(vox, iu, iv, tab, cutoff_fraction=f, dose_scale=2.0, chunk_candidates=4096)
    assert len(plan.chunks) > 1
    csr = layer_csr(plan)
    counts = np.diff(csr.indptr)
    np.testing.assert_array_equal(counts, count_pairs(plan))
    rows = vox.index[csr.voxel][np.repeat(np.arange(counts.size), counts)]
    got = {(int(r), int(s)): d for r, s, d in zip(rows, csr.spot, csr.dose, strict=True)}
    # Reference: every (voxel, spot) pair in float64.
    sa2 = 9.0
    sc2 = sa2 + (0.01 * w) ** 2
    sh2 = sa2 + (4.0 + 0.05 * w) ** 2
    d = tab.depth_mm
    node_radius = pencil_beam_cutoff_radius_mm(
        d, tab.idd, np.sqrt(sa2 + tab.sigma_core_mm**2), np.sqrt(sa2 + tab.sigma_halo_mm**2),
        tab.halo_weight, f)
    radius = np.interp(w, d, node_radius)
    us = iu * 5.0
    vs = iv * 4.0
    du = u[:, None] - us[None, :] * (sad[0] + t[:, None]) / sad[0]
    dv = v[:, None] - vs[None, :] * (sad[1] + t[:, None]) / sad[1]
    r2 = du * du + dv * dv
    dose = 2.0 * (100 + 0.5 * w)[:, None] * (
        0.75 * np.exp(-r2 / (2 * sc2[:, None])) / (2 * np.pi * sc2[:, None])
        + 0.25 * np.exp(-r2 / (2 * sh2[:, None])) / (2 * np.pi * sh2[:, None]))
    inside = r2 <= radius[:, None] ** 2
    near_edge = np.abs(np.sqrt(r2) - radius[:, None]) < 1e-3 * radius[:, None]
    for i, j in zip(*np.nonzero(inside & ~near_edge), strict=True):
        assert (i, j) in got
        assert got[(i, j)] == pytest.approx(dose[i, j], rel=2e-4)
    for (i, j) in got:
        assert inside[i, j] or near_edge[i, j]
    # Within a row, spots follow row-major lattice order (v, then u).
    key = iv * 100 + iu
    for a, b in zip(csr.indptr[:-1], csr.indptr[1:], strict=True):
        assert np.all(np.diff(key[csr.spot[a:b]]) > 0)
    # LET x dose carries the LETd of the voxel's depth.
    ratio = csr.let_dose / csr.dose
    np.testing.assert_allclose(ratio, 10.0 + 0.1 * w[rows], rtol=1e-4)


def test_divergent_spot_lands_at_scaled_position():
    tab = _tables(halo=0.0)
    sad = (1000.0, 1000.0)
    for t, expect in ((100.0, 33.0), (-100.0, 27.0), (0.0, 30.0)):
        vox, uu, vv = _plane(np, 60.0, half=60.0, step=0.25, t=t, sad=sad)
        plan = _plan(vox, [6], [0], tab, cutoff_fraction=0.9999, dose_scale=1.0)
        d = _dose_on_voxels(plan, vox)
        assert (d * uu).sum() / d.sum() == pytest.approx(expect, abs=0.02)
        assert (d * vv).sum() / d.sum() == pytest.approx(0.0, abs=0.02)


def test_symmetric_spots_give_mirror_symmetric_dose():
    tab = _tables(halo=0.2)
    vox, _, _ = _plane(np, 100.0, half=40.0, step=1.0, t=20.0, sad=(3000.0, 3000.0))
    iu = np.array([-2, -1, 1, 2, 0])
    iv = np.array([1, 0, 0, 1, -1])
    plan = _plan(vox, iu, iv, tab, cutoff_fraction=0.99, dose_scale=1.0)
    d = _dose_on_voxels(plan, vox).reshape(81, 81)
    assert np.all(np.isfinite(d)) and np.all(d >= 0) and d.max() > 0
    np.testing.assert_allclose(d, d[::-1, :], rtol=1e-5, atol=1e-7 * d.max())


def test_strict_namespace_matches_numpy():
    xps = pytest.importorskip("array_api_strict")
    tab = _tables()
    rng = np.random.default_rng(5)
    n = 500
    args = (np.arange(n), rng.uniform(-30, 30, n), rng.uniform(-30, 30, n),
            rng.uniform(-20, 20, n), rng.uniform(0, 150, n))
    kw = {"lattice_spacing_mm": (5.0, 5.0), "sad_mm": (3000.0, 3000.0)}
    iu, iv = np.array([-3, 0, 2, 2]), np.array([0, 0, 0, 3])
    out = []
    for xp in (np, xps):
        vox = beam_voxels(*(xp.asarray(a) for a in args), **kw)
        plan = _plan(vox, iu, iv, tab, cutoff_fraction=0.99, dose_scale=1.0,
                     chunk_candidates=2048, xp=xp)
        out.append(layer_csr(plan))
    for name in ("indptr", "spot", "dose", "let_dose"):
        np.testing.assert_allclose(to_numpy(getattr(out[1], name)), getattr(out[0], name),
                                   rtol=1e-6)


def _random_voxels(xp, rng, n, half_mm):
    """``n`` voxels at random lateral positions within +-``half_mm``, WEPL 0-190 mm, diverging
    beam, lattice 5 x 4 mm."""
    u, v = rng.uniform(-half_mm, half_mm, n), rng.uniform(-half_mm, half_mm, n)
    wepl = rng.uniform(0, 190, n)
    return beam_voxels(xp.asarray(np.arange(n)), xp.asarray(u), xp.asarray(v),
                       xp.asarray(rng.uniform(-40, 40, n)), xp.asarray(wepl),
                       lattice_spacing_mm=(5.0, 4.0), sad_mm=(2000.0, 2500.0))


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_weighted_chunk_dose_equals_the_entries_times_the_weights(backend):
    """The forward pass's per-voxel sum equals sum_s w_s entry_s from the explicit pairs."""
    xp = _xp(backend)
    tab = _tables(halo=0.2)
    rng = np.random.default_rng(11)
    vox = _random_voxels(xp, rng, 2000, 30.0)
    iu, iv = np.meshgrid(np.arange(-4, 5), np.arange(-3, 6), indexing="ij")
    keep = rng.random(iu.size) < 0.7  # holes in the layer
    iu, iv = iu.ravel()[keep], iv.ravel()[keep]
    ids = rng.permutation(iu.size) + 7  # identifiers other than the ranks
    layer = prepare_layer(iu, iv, tab, cutoff_fraction=0.99, dose_scale=2.0, spot_ids=ids,
                          xp=xp)
    plan = plan_layer(vox, layer, chunk_candidates=4096)
    assert len(plan.chunks) > 1
    weights = rng.uniform(0.0, 3.0, int(ids.max()) + 1)
    w_rank = layer_weights_by_rank(layer, xp.asarray(weights))
    for chunk in plan.chunks:
        pairs = chunk_pairs(plan, chunk)
        owner = np.repeat(np.arange(chunk.stop - chunk.start), to_numpy(pairs.counts))
        expected = np.bincount(owner, weights=weights[to_numpy(pairs.spot)]
                               * to_numpy(pairs.dose), minlength=chunk.stop - chunk.start)
        np.testing.assert_allclose(to_numpy(chunk_dose(plan, chunk, w_rank)), expected,
                                   rtol=1e-5, atol=1e-9 * expected.max())


def _layer_dose(vox, layer, w_rank, n):
    """Per-voxel forward dose of one layer (caller's voxel order), via chunk_dose."""
    out = np.zeros(n)
    plan = plan_layer(vox, layer, chunk_candidates=4096)
    if plan is None:
        return out
    for chunk in plan.chunks:
        rows = to_numpy(vox.index)[to_numpy(plan.voxel[chunk.start:chunk.stop])]
        out[rows] += to_numpy(chunk_dose(plan, chunk, w_rank))
    return out


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_layer_of_the_weighted_spots_gives_the_forward_dose_of_all(backend):
    """Spots of zero weight dropped from a layer: same dose in every voxel, fewer voxels."""
    xp = _xp(backend)
    tab = _tables(halo=0.2)
    rng = np.random.default_rng(5)
    n = 3000
    vox = _random_voxels(xp, rng, n, 45.0)
    iu, iv = np.meshgrid(np.arange(-6, 7), np.arange(-5, 8), indexing="ij")
    holes = rng.random(iu.size) < 0.8
    iu, iv = iu.ravel()[holes], iv.ravel()[holes]
    ids = rng.permutation(iu.size) + 3
    layer = prepare_layer(iu, iv, tab, cutoff_fraction=0.99, dose_scale=2.0, spot_ids=ids,
                          xp=xp)
    weights = rng.uniform(0.5, 3.0, int(ids.max()) + 1)
    weights[ids[(iu < -2) | (rng.random(iu.size) < 0.3)]] = 0.0  # a zero corner and holes
    w_rank = layer_weights_by_rank(layer, xp.asarray(weights))
    keep = to_numpy(w_rank) != 0
    sub = subset_layer(layer, keep)
    assert sub is not None and int(sub.spot_iu.shape[0]) == int(keep.sum())
    assert sub.iu_min > layer.iu_min  # the zero corner is gone from the bounding box
    # The subset keeps the spots' identifiers: its weights come from the same vector.
    np.testing.assert_array_equal(to_numpy(layer_weights_by_rank(sub, xp.asarray(weights))),
                                  to_numpy(w_rank)[keep])
    full = _layer_dose(vox, layer, w_rank, n)
    part = _layer_dose(vox, sub, layer_weights_by_rank(sub, xp.asarray(weights)), n)
    assert np.count_nonzero(full) > 100
    # Sums of the same non-zero terms in the same order (NumPy's bincount: to the last digits;
    # the array API's segment sums are differences of running sums, which round differently
    # when the terms sit elsewhere in the running sum: ~1e-11 relative).
    np.testing.assert_allclose(part, full, rtol=1e-12 if xp is np else 1e-9, atol=0.0)
    assert plan_layer(vox, sub).n_voxels < plan_layer(vox, layer).n_voxels
    assert subset_layer(layer, np.ones_like(keep)) is layer
    assert subset_layer(layer, np.zeros_like(keep)) is None
    with pytest.raises(ValueError, match="one entry per spot"):
        subset_layer(layer, keep[:-1])


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_weighted_layers_keep_only_spots_with_weight(backend):
    """What the CPU and GPU forward passes run: each layer's spots of non-zero weight with
    their weights (in the layers' namespace), a layer without weight left out, a layer with
    weight everywhere kept as it is."""
    xp = _xp(backend)
    tab = _tables()
    iu, iv = np.meshgrid(np.arange(-3, 4), np.arange(-2, 3))
    iu, iv = iu.ravel(), iv.ravel()
    n = iu.size
    layers = [prepare_layer(iu, iv, tab, cutoff_fraction=0.99, dose_scale=1.0,
                            spot_ids=np.arange(n) + k * n, xp=xp) for k in range(3)]
    w = np.linspace(1.0, 2.0, 3 * n)
    w[1:n:3] = 0.0  # some of the first layer
    w[n:2 * n] = 0.0  # all of the second
    out = weighted_layers(layers, xp.asarray(w))
    assert [int(sub.spot_iu.shape[0]) for sub, _ in out] == [n - len(range(1, n, 3)), n]
    assert out[1][0] is layers[2]
    for sub, w_rank in out:
        np.testing.assert_array_equal(to_numpy(w_rank),
                                      to_numpy(layer_weights_by_rank(sub, xp.asarray(w))))
        assert np.all(to_numpy(w_rank) != 0)
    assert weighted_layers(layers, xp.asarray(np.zeros(3 * n))) == []


def test_subset_of_a_layer_with_rank_identifiers():
    """A layer whose identifiers are its ranks (no ``spot_ids``): the subset maps its ranks
    to the original ones."""
    tab = _tables()
    vox, _, _ = _plane(np, 50.0, half=30.0, step=2.0)
    iu, iv = np.meshgrid(np.arange(-3, 4), np.arange(-2, 3))  # row-major: v, then u
    layer = prepare_layer(iu.ravel(), iv.ravel(), tab, cutoff_fraction=0.99, dose_scale=1.0)
    assert layer.rank_to_spot is None
    n_spots = int(layer.spot_iu.shape[0])
    w = np.linspace(1.0, 2.0, n_spots)
    w[::3] = 0.0
    sub = subset_layer(layer, w != 0)
    np.testing.assert_array_equal(layer_weights_by_rank(sub, w), w[w != 0])
    np.testing.assert_allclose(_layer_dose(vox, sub, layer_weights_by_rank(sub, w), vox.n),
                               _layer_dose(vox, layer, w, vox.n), rtol=1e-12, atol=0.0)


def test_chunk_destinations_follow_row_start():
    tab = _tables()
    vox, _, _ = _plane(np, 50.0, half=20.0, step=2.0)
    plan = _plan(vox, [0, 1, 2], [0, 0, 0], tab, cutoff_fraction=0.99, dose_scale=1.0)
    chunk = plan.chunks[0]
    n = chunk.stop - chunk.start
    start = np.arange(n) * 1000
    pairs = chunk_pairs(plan, chunk, row_start=start)
    rel = chunk_pairs(plan, chunk)
    owner = np.repeat(np.arange(n), rel.counts)
    np.testing.assert_array_equal(pairs.dest, rel.dest + start[owner])
    np.testing.assert_array_equal(rel.dest, np.arange(rel.dest.size) - np.repeat(
        np.cumsum(rel.counts) - rel.counts, rel.counts))


def test_duplicate_spots_are_rejected():
    vox, _, _ = _plane(np, 50.0, half=10.0, step=2.0)
    with pytest.raises(ValueError, match="same lattice position"):
        _plan(vox, [1, 1], [0, 0], _tables(), cutoff_fraction=0.99, dose_scale=1.0)


def test_voxels_beyond_the_tables_get_nothing():
    vox, _, _ = _plane(np, 250.0, half=10.0, step=2.0)  # tables end at 200 mm
    assert _plan(vox, [0], [0], _tables(), cutoff_fraction=0.99, dose_scale=1.0) is None


def _gpu_available():
    try:
        return resolve_device("gpu") == "gpu"
    except DeviceUnavailableError:
        return False


def test_cupy_matches_numpy():
    if not _gpu_available():
        pytest.skip("no CUDA device with CuPy: CuPy-vs-NumPy influence comparison not run")
    import cupy

    tab = _tables()
    rng = np.random.default_rng(7)
    n = 20000
    args = (np.arange(n), rng.uniform(-40, 40, n), rng.uniform(-40, 40, n),
            rng.uniform(-20, 20, n), rng.uniform(0, 190, n))
    kw = {"lattice_spacing_mm": (5.0, 5.0), "sad_mm": (3000.0, 3000.0)}
    iu, iv = np.meshgrid(np.arange(-5, 6), np.arange(-5, 6), indexing="ij")
    out = []
    for xp in (np, cupy):
        vox = beam_voxels(*(xp.asarray(a) for a in args), **kw)
        plan = _plan(vox, iu.ravel(), iv.ravel(), tab, cutoff_fraction=0.99,
                     dose_scale=1.0, chunk_candidates=1 << 16, xp=xp)
        out.append(layer_csr(plan))
    for name in ("indptr", "spot", "dose", "let_dose"):
        np.testing.assert_allclose(to_numpy(getattr(out[1], name)), getattr(out[0], name),
                                   rtol=1e-5)


def test_standard_name_shim_matches_numpy():
    import types

    from kernels.backend import with_standard_names

    names = {k: getattr(np, k) for k in dir(np) if not k.startswith("_")}
    for k in ("astype", "concat", "permute_dims", "cumulative_sum"):
        names.pop(k)
    old_style = types.SimpleNamespace(__name__="oldnumpy", **names)
    xp = with_standard_names(old_style)
    assert with_standard_names(np) is np
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    np.testing.assert_array_equal(xp.cumulative_sum(a, axis=2, include_initial=True),
                                  np.cumulative_sum(a, axis=2, include_initial=True))
    np.testing.assert_array_equal(xp.cumulative_sum(a[0, 0], include_initial=True),
                                  np.cumulative_sum(a[0, 0], include_initial=True))
    np.testing.assert_array_equal(xp.permute_dims(a, (2, 0, 1)), np.permute_dims(a, (2, 0, 1)))
    np.testing.assert_array_equal(xp.concat([a, a], axis=1), np.concat([a, a], axis=1))
    assert xp.astype(a, np.float32).dtype == np.float32
    assert xp.take is np.take


def test_device_resolution_and_namespaces():
    from kernels.backend import array_namespace, namespace_for

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "gpu")
    assert namespace_for("cpu") is np
    with pytest.raises(ValueError):
        resolve_device("tpu")
    assert array_namespace(np.zeros(2), 1.0, None) is np
    xps = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="mixed"):
        array_namespace(np.zeros(2), xps.zeros(2))
    np.testing.assert_array_equal(to_numpy(xps.asarray([1.0, 2.0])), [1.0, 2.0])
