"""The fused CUDA pencil-beam kernel against its NumPy twin (kernels.influence).

The kernel's source runs here three times: compiled as C++ for the CPU (tests/cuda_twin.py, needs
g++) to check its index arithmetic on any machine, as the extension setup.py builds for the CPU
engine (kernels.pencil_beam_cpu; skipped where it was not built), and on a CUDA device through
CuPy (skipped without one); its GPU branch is also parsed as C++ with CUDA's keywords stubbed,
so that a CPU-only edit cannot break it unseen. The reference is the NumPy kernel: per layer,
:func:`plan_layer` and :func:`layer_csr`, entries of a voxel in layer order.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kernels import pencil_beam_cpu
from kernels.backend import DeviceUnavailableError, resolve_device, to_numpy
from kernels.influence import (
    BeamVoxels,
    LayerSetup,
    PencilBeamTables,
    beam_voxels,
    layer_csr,
    plan_layer,
    prepare_layer,
)
from kernels.pencil_beam_gpu import pack_layers, pack_weighted
from kernels.pencil_beam_source import CUDA_SOURCE, MAX_MODEL_QUANTITIES
from tests import cuda_twin

N_MODEL = 2


def _tables(peak_mm: float, sigma_air: float) -> PencilBeamTables:
    d = np.linspace(0.0, peak_mm + 40.0, 300)
    idd = np.where(d < peak_mm, 1.0 + 3.0 * np.exp(-((d - peak_mm) / 4.0) ** 2), 0.05)
    return PencilBeamTables(
        depth_mm=d, idd=idd, sigma_core_mm=0.5 + 0.02 * d,
        sigma_halo_mm=4.0 + 0.06 * d, halo_weight=np.clip(0.002 * d, 0.0, 0.6),
        letd_kev_um=10.0 + 0.3 * d, sigma_air_mm=sigma_air,
        model_quantities=(0.1 + 0.001 * d, 0.3 + 0.0005 * d))


def _beam(seed: int = 3) -> tuple[BeamVoxels, list[LayerSetup], int]:
    """Random voxels in a 3-D box and five layers of irregular spot sets (holes, offsets)."""
    rng = np.random.default_rng(seed)
    n = 4000
    u = rng.uniform(-45, 45, n)
    v = rng.uniform(-45, 45, n)
    t = rng.uniform(-60, 60, n)
    wepl = np.clip(t + 80 + rng.normal(0, 3, n), 0, None)
    vox = beam_voxels(np.arange(n) * 3 + 1, u, v, t, wepl, lattice_spacing_mm=(4.0, 5.0),
                      lattice_origin_mm=(1.0, -2.0), sad_mm=(6500.0, 7200.0))
    layers = []
    first = 0
    for k, peak in enumerate((150.0, 130.0, 110.0, 90.0, 60.0)):
        gi, gj = np.meshgrid(np.arange(-9, 10), np.arange(-8, 9), indexing="ij")
        keep = rng.random(gi.shape) < 0.7 - 0.1 * k
        iu, iv = gi[keep].ravel(), gj[keep].ravel()
        ids = first + rng.permutation(iu.size)  # identifiers not in lattice order
        layers.append(prepare_layer(iu, iv, _tables(peak, 3.0 + k), cutoff_fraction=0.99,
                                    dose_scale=2.0, spot_ids=ids))
        first += iu.size
    return vox, layers, first


def _reference(vox: BeamVoxels, layers: list[LayerSetup]):  # type: ignore[no-untyped-def]
    """Per voxel (BeamVoxels order): list of (spot, dose, let, model...) rows in layer order."""
    rows: list[list[np.ndarray]] = [[] for _ in range(vox.n)]
    for lay in layers:
        plan = plan_layer(vox, lay)
        if plan is None:
            continue
        csr = layer_csr(plan)
        ptr = to_numpy(csr.indptr)
        cols = np.stack([to_numpy(csr.spot).astype(np.float64), to_numpy(csr.dose),
                         to_numpy(csr.let_dose), *(to_numpy(m) for m in csr.model_dose)], axis=1)
        for j, p in enumerate(to_numpy(csr.voxel)):
            rows[int(p)].append(cols[ptr[j]:ptr[j + 1]])
    return [np.concatenate(r) if r else np.zeros((0, 3 + N_MODEL)) for r in rows]


@pytest.fixture(scope="module")
def beam():  # type: ignore[no-untyped-def]
    vox, layers, n_spots = _beam()
    return vox, layers, n_spots, _reference(vox, layers)


def _twin() -> None:
    if cuda_twin.library() is None:
        pytest.skip("no C++ compiler (g++) for the CPU twin of the CUDA kernel")


def _csr_from_counts(counts: np.ndarray) -> tuple[np.ndarray, int]:
    start = np.concatenate([[0], np.cumsum(counts.astype(np.int64))])
    return start[:-1].copy(), int(start[-1])


def _check_entries(ref, counts, start, dose, let, model, col) -> None:  # type: ignore[no-untyped-def]
    assert sum(r.shape[0] for r in ref) > 10_000  # the case is not trivial
    np.testing.assert_array_equal(counts, [r.shape[0] for r in ref])
    for v, r in enumerate(ref):
        sl = slice(int(start[v]), int(start[v]) + r.shape[0])
        np.testing.assert_array_equal(col[sl], r[:, 0].astype(np.int32))
        np.testing.assert_allclose(dose[sl], r[:, 1], rtol=2e-5, atol=1e-12)
        np.testing.assert_allclose(let[sl], r[:, 2], rtol=2e-5, atol=1e-12)
        for k in range(N_MODEL):
            np.testing.assert_allclose(model[k, sl], r[:, 3 + k], rtol=2e-5, atol=1e-12)


def test_twin_counts_and_fill_equal_numpy_kernel(beam) -> None:  # type: ignore[no-untyped-def]
    _twin()
    vox, layers, _, ref = beam
    packed = pack_layers(layers, np)
    counts = np.zeros(vox.n, np.int32)
    cuda_twin.run(0, vox, packed, counts=counts)
    start, nnz = _csr_from_counts(counts)
    dose, let, col = np.empty(nnz, np.float32), np.empty(nnz, np.float32), np.empty(nnz, np.int32)
    model = np.empty((N_MODEL, nnz), np.float32)
    cuda_twin.run(1, vox, packed, start=start, out_dose=dose, out_let=let, out_model=model,
                  out_col=col)
    _check_entries(ref, counts, start, dose, let, model, col)


def test_twin_accumulate_equals_matrix_times_weights(beam) -> None:  # type: ignore[no-untyped-def]
    _twin()
    vox, layers, n_spots, ref = beam
    packed = pack_layers(layers, np)
    w = np.random.default_rng(1).uniform(0.0, 2.0, n_spots)
    n_rows = int(to_numpy(vox.index).max()) + 1
    acc = np.zeros(n_rows)
    acc_let = np.zeros(n_rows)
    acc_model = np.zeros((N_MODEL, n_rows))
    cuda_twin.run(2, vox, packed, weights=w, acc_dose=acc, acc_let=acc_let, acc_model=acc_model)
    rows = to_numpy(vox.index)
    expect = np.zeros((3 + N_MODEL - 1, n_rows))
    for v, r in enumerate(ref):
        ww = w[r[:, 0].astype(np.int64)]
        expect[:, rows[v]] = (ww[:, None] * r[:, 1:]).sum(axis=0)
    got = np.vstack([acc, acc_let, acc_model])
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-9 * expect.max())
    assert np.all(acc[np.setdiff1d(np.arange(n_rows), rows)] == 0)


def test_twin_accumulate_of_the_weighted_spots_equals_all_spots(beam) -> None:  # type: ignore[no-untyped-def]
    """What the forward passes launch (kernels.pencil_beam_gpu.pack_weighted): the layers
    packed with their spots of non-zero weight only, a whole layer without weight left out;
    the sums equal those of every spot packed (zero terms dropped, the others in the same
    order), and a beam without weight packs to None."""
    _twin()
    vox, layers, n_spots, _ = beam
    rng = np.random.default_rng(4)
    w = np.where(rng.random(n_spots) < 0.3, 0.0, rng.uniform(0.5, 2.0, n_spots))
    w[to_numpy(layers[2].rank_to_spot)] = 0.0
    n_rows = int(to_numpy(vox.index).max()) + 1
    sums = []
    for packed in (pack_layers(layers, np), pack_weighted(layers, w, np)):
        assert packed is not None
        out = (np.zeros(n_rows), np.zeros(n_rows), np.zeros((N_MODEL, n_rows)))
        cuda_twin.run(2, vox, packed, weights=w, acc_dose=out[0], acc_let=out[1],
                      acc_model=out[2])
        sums.append(np.vstack([out[0], out[1], out[2]]))
    assert pack_weighted(layers, w, np).n_layers == len(layers) - 1
    assert sums[0][0].max() > 0
    np.testing.assert_allclose(sums[1], sums[0], rtol=1e-12, atol=0.0)
    assert pack_weighted(layers, np.zeros(n_spots), np) is None


def _compiled() -> None:
    if not pencil_beam_cpu.available():
        pytest.skip("the compiled CPU kernel was not built with this installation")


def test_compiled_kernel_counts_fills_and_accumulates_as_numpy(beam) -> None:  # type: ignore[no-untyped-def]
    """The extension built by setup.py (column factors cached per voxel and layer), in two
    blocks of voxels, against the NumPy kernel."""
    _compiled()
    vox, layers, n_spots, ref = beam
    packed = pack_layers(layers, np)
    half = vox.n // 2
    counts = np.zeros(vox.n, np.int32)
    for a, b in ((0, half), (half, vox.n)):
        pencil_beam_cpu.count_entries(vox, packed, a, b, counts)
    start, nnz = _csr_from_counts(counts)
    dose, let, col = np.empty(nnz, np.float32), np.empty(nnz, np.float32), np.empty(nnz, np.int32)
    model = np.empty((N_MODEL, nnz), np.float32)
    for a, b in ((half, vox.n), (0, half)):
        pencil_beam_cpu.fill_entries(vox, packed, a, b, start, dose=dose, col=col, let_dose=let,
                                     model=model)
    _check_entries(ref, counts, start, dose, let, model, col)
    w = np.random.default_rng(2).uniform(0.0, 2.0, n_spots)
    n_rows = int(to_numpy(vox.index).max()) + 1
    acc, acc_let, acc_model = np.zeros(n_rows), np.zeros(n_rows), np.zeros((N_MODEL, n_rows))
    for a, b in ((0, half), (half, vox.n)):
        pencil_beam_cpu.accumulate(vox, packed, a, b, w, dose=acc, let_dose=acc_let,
                                   model=acc_model)
    rows = to_numpy(vox.index)
    expect = np.zeros((2 + N_MODEL, n_rows))
    for v, r in enumerate(ref):
        expect[:, rows[v]] = (w[r[:, 0].astype(np.int64)][:, None] * r[:, 1:]).sum(axis=0)
    np.testing.assert_allclose(np.vstack([acc, acc_let, acc_model]), expect, rtol=1e-5,
                               atol=1e-9 * expect.max())


def test_compiled_kernel_refuses_outputs_that_do_not_fit(beam) -> None:  # type: ignore[no-untyped-def]
    _compiled()
    vox, layers, n_spots, _ = beam
    packed = pack_layers(layers, np)
    w = np.ones(n_spots)
    n_rows = int(to_numpy(vox.index).max()) + 1
    with pytest.raises(ValueError, match="model quantities"):
        pencil_beam_cpu.accumulate(vox, packed, 0, vox.n, w, dose=np.zeros(n_rows))
    with pytest.raises(ValueError, match="beyond"):
        pencil_beam_cpu.accumulate(vox, packed, 0, vox.n, w, dose=np.zeros(n_rows - 1),
                                   model=np.zeros((N_MODEL, n_rows - 1)))
    with pytest.raises(ValueError, match="model must be float64"):
        pencil_beam_cpu.accumulate(vox, packed, 0, vox.n, w, dose=np.zeros(n_rows),
                                   model=np.zeros((N_MODEL, n_rows), np.float32))
    with pytest.raises(ValueError, match="outside"):
        pencil_beam_cpu.count_entries(vox, packed, 0, vox.n + 1, np.zeros(vox.n, np.int32))


def test_compiled_kernel_leaves_many_model_quantities_to_numpy() -> None:
    assert not pencil_beam_cpu.usable(MAX_MODEL_QUANTITIES + 1)
    assert pencil_beam_cpu.usable(MAX_MODEL_QUANTITIES) == pencil_beam_cpu.available()


#: CUDA's keywords and built-ins as C++, so that g++ parses the source's GPU branch.
_CUDA_AS_CPP = r"""
#define __device__
#define __forceinline__ inline
#define __global__
struct pb_dim3 { unsigned x, y, z; };
static pb_dim3 blockIdx, blockDim, threadIdx;
#include <math.h>
"""


def test_gpu_branch_of_the_kernel_source_compiles(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The source's GPU branch (no ``PB_CPU_TWIN``: what CuPy gives NVRTC) is valid C++ with
    CUDA's keywords stubbed, so that an edit of the CPU-only parts cannot break the GPU build
    unseen on machines without CUDA (the CuPy tests below compile it for real)."""
    import shutil
    import subprocess

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++)")
    src = tmp_path / "gpu_branch.cpp"
    src.write_text(_CUDA_AS_CPP + CUDA_SOURCE)
    out = subprocess.run([cxx, "-fsyntax-only", "-Wall", "-Werror", "-x", "c++", str(src)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_pack_layers_refuses_mixed_model_quantities() -> None:
    _, layers, _ = _beam()
    plain = prepare_layer([0, 1], [0, 0], dataclasses.replace(_tables(100.0, 3.0),
                                                              model_quantities=()),
                          cutoff_fraction=0.99, dose_scale=1.0)
    with pytest.raises(ValueError, match="same model quantities"):
        pack_layers([layers[0], plain], np)


def _cupy():  # type: ignore[no-untyped-def]
    try:
        resolve_device("gpu")
    except DeviceUnavailableError as exc:
        pytest.skip(f"no CUDA device: {exc}")
    import cupy

    return cupy


def _to_device(cp, vox: BeamVoxels, layers: list[LayerSetup]):  # type: ignore[no-untyped-def]
    dv = dataclasses.replace(vox, **{f: cp.asarray(getattr(vox, f)) for f in (
        "index", "cu", "cv", "step_u_mm", "step_v_mm", "wepl_mm", "wepl_index", "wepl_frac")})
    dl = [dataclasses.replace(lay, radius_mm=cp.asarray(lay.radius_mm),
                              dose_tables=cp.asarray(lay.dose_tables),
                              rank_table=cp.asarray(lay.rank_table),
                              spot_iu=cp.asarray(lay.spot_iu),
                              rank_to_spot=None if lay.rank_to_spot is None
                              else cp.asarray(lay.rank_to_spot)) for lay in layers]
    return dv, dl


def test_cuda_kernel_matches_numpy(beam) -> None:  # type: ignore[no-untyped-def]
    cp = _cupy()
    from kernels import pencil_beam_gpu as gpu

    vox, layers, n_spots, ref = beam
    dv, dl = _to_device(cp, vox, layers)
    packed = pack_layers(dl, cp)
    counts = gpu.count_entries(dv, packed)
    start_h, nnz = _csr_from_counts(cp.asnumpy(counts))
    start = cp.asarray(start_h)
    dose, let = cp.empty(nnz, cp.float32), cp.empty(nnz, cp.float32)
    col, model = cp.empty(nnz, cp.int32), cp.empty((N_MODEL, nnz), cp.float32)
    gpu.fill_entries(dv, packed, start, dose=dose, col=col, let_dose=let, model=model)
    _check_entries(ref, cp.asnumpy(counts), start_h, cp.asnumpy(dose), cp.asnumpy(let),
                   cp.asnumpy(model), cp.asnumpy(col))
    w = np.random.default_rng(1).uniform(0.0, 2.0, n_spots)
    n_rows = int(to_numpy(vox.index).max()) + 1
    acc = cp.zeros(n_rows)
    gpu.accumulate(dv, packed, cp.asarray(w), dose=acc)
    expect = np.zeros(n_rows)
    for v, r in enumerate(ref):
        expect[int(to_numpy(vox.index)[v])] = (w[r[:, 0].astype(np.int64)] * r[:, 1]).sum()
    np.testing.assert_allclose(cp.asnumpy(acc), expect, rtol=1e-5, atol=1e-9 * expect.max())
