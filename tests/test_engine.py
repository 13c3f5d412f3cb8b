"""The planning engine: forward sums without a matrix, optimization matrices, CPU vs GPU.

The forward pass (no matrix) must equal the influence matrices times the weights, with the
NumPy kernels and with the compiled CPU kernel (kernels.pencil_beam_cpu, skipped where it was
not built, required under CI); the optimization matrices must equal the influence rows; a GPU
engine must give the CPU engine's matrices, forward sums and optimized plan (on a CUDA device,
skipped without one, and on the stand-in of tests/twin_device.py everywhere).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from kernels import pencil_beam_cpu
from planning.beams import Beam, SpotMap
from planning.dose_grid import DoseGrid
from planning.engine import PlanningEngine
from planning.engine.dose_engine import DoseEngineSettings
from planning.errors import PlanningError
from planning.optimization import Objective, OptimizationProblem, optimize_weights
from planning.rbe import DepthTables, LemModel
from tests.synthetic_machine import make_synthetic_machine

CPU = DoseEngineSettings(device="cpu", n_threads=2, block_voxels=2048)


@pytest.fixture(scope="module")
def case():  # type: ignore[no-untyped-def]
    """Two beams on a water box with a denser slab, several layers, 2 LEM I model sums."""
    machine = make_synthetic_machine(min_range_mm=20.0, max_range_mm=160.0,
                                     peak_spacing_mm=4.0)
    shape, spacing = (16, 40, 40), (3.0, 3.0, 3.0)
    grid = DoseGrid(shape, spacing, (-58.5, -58.5, -22.5))
    rsp = np.ones(shape, np.float32)
    rsp[:, 10:14, :] = 1.5
    rng = np.random.default_rng(0)
    maps = []
    for _ in range(2):
        sel = [k for k in range(machine.n_energies) if 60 < machine.peak_depth_mm[k] < 90][::2]
        g = np.arange(-15.0, 15.1, 5.0)
        uu, vv = np.meshgrid(g, g, indexing="ij")
        e, lay, u, v = [], [], [], []
        for j, k in enumerate(sel):
            keep = rng.random(uu.size) < 0.8
            e += [machine.energies_mev_u[k]] * int(keep.sum())
            lay += [j] * int(keep.sum())
            u += list(uu.ravel()[keep])
            v += list(vv.ravel()[keep])
        maps.append(SpotMap(np.array(e), np.array(lay), np.array(u), np.array(v), (5.0, 5.0)))
    beams = [Beam((0.0, 0.0, 0.0), 0.0), Beam((0.0, 0.0, 0.0), 90.0)]
    # LEM I-like dose-averaged quantities from the LETd table (any smooth tables will do).
    tables = DepthTables("LEM I test", LemModel.quantity_names,
                         (0.1 + 0.004 * machine.letd_kev_um,
                          np.full(machine.depth_mm.shape, 0.05**0.5)), (), None)
    return machine, rsp, grid, beams, maps, tables


def _engine(case, device: str = "cpu", *, compiled: bool = True):  # type: ignore[no-untyped-def]
    machine, rsp, grid, beams, maps, _ = case
    settings = DoseEngineSettings(device=device, n_threads=2, block_voxels=2048,
                                  compiled_kernels=compiled)
    return PlanningEngine(machine, rsp, grid, grid, beams, maps, settings)


def test_the_compiled_kernel_is_built_under_ci() -> None:
    """CI installs with a C++ compiler: a build that silently fell back to NumPy would make
    the compiled kernel's tests skip there."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        pytest.skip("not under CI")
    assert pencil_beam_cpu.available()


@pytest.mark.parametrize("kernel", ["numpy", "compiled"])
@pytest.mark.parametrize("zeros", [False, True])
def test_forward_without_matrix_equals_matrix_times_weights(case, zeros, kernel) -> None:  # type: ignore[no-untyped-def]
    """Also with spots of zero weight, which the forward pass drops from their layers (one
    layer of the first beam left with none). The matrix comes from the NumPy kernels either
    way."""
    if kernel == "compiled" and not pencil_beam_cpu.available():
        pytest.skip("the compiled CPU kernel was not built with this installation")
    tables = case[5]
    engine = _engine(case, compiled=kernel == "compiled")
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 1.5, engine.n_spots)
    if zeros:
        w[rng.random(engine.n_spots) < 0.4] = 0.0
        w[(engine.spots.beam == 0) & (engine.spots.layer == 0)] = 0.0
    inf = _engine(case, compiled=False).influence(model_tables=tables)
    sums = engine.forward(w, model_tables=tables)
    assert inf.let_dose is not None and sums.let_dose is not None
    d = inf.dose @ w
    assert d.max() > 0
    np.testing.assert_allclose(sums.dose_gy, d, rtol=1e-6, atol=1e-9 * d.max())
    np.testing.assert_allclose(sums.let_dose, inf.let_dose @ w, rtol=1e-6,
                               atol=1e-9 * float((inf.let_dose @ w).max()))
    for s, m in zip(sums.model_sums, inf.model_sums, strict=True):
        np.testing.assert_allclose(s, m @ w, rtol=1e-6, atol=1e-9 * float(np.abs(m @ w).max()))
    # Per beam: the columns of that beam only.
    first = np.zeros(engine.n_spots)
    first[engine.spots.beam == 0] = w[engine.spots.beam == 0]
    np.testing.assert_allclose(sums.beam_dose_gy[0], inf.dose @ first, rtol=1e-6,
                               atol=1e-9 * d.max())


def test_compiled_influence_is_the_numpy_influence(case) -> None:  # type: ignore[no-untyped-def]
    """The compiled kernel's count and fill passes give the NumPy kernels' matrices: the same
    rows, columns and order, the same values to float32 rounding."""
    if not pencil_beam_cpu.available():
        pytest.skip("the compiled CPU kernel was not built with this installation")
    tables = case[5]
    a = _engine(case, compiled=False).influence(model_tables=tables)
    b = _engine(case).influence(model_tables=tables)
    assert a.dose.nnz == b.dose.nnz > 10_000
    np.testing.assert_array_equal(a.dose.indptr, b.dose.indptr)
    np.testing.assert_array_equal(a.dose.indices, b.dose.indices)
    assert a.let_dose is not None and b.let_dose is not None
    for x, y in zip((a.dose, a.let_dose, *a.model_sums), (b.dose, b.let_dose, *b.model_sums),
                    strict=True):
        np.testing.assert_allclose(y.data, x.data, rtol=2e-5, atol=1e-7 * np.abs(x.data).max())


def test_optimization_matrices_are_the_influence_rows(case) -> None:  # type: ignore[no-untyped-def]
    tables = case[5]
    engine = _engine(case)
    rows = np.sort(np.random.default_rng(2).choice(engine.rows, 3000, replace=False))
    dose, sums, nnz = engine.optimization_matrices(rows, model_tables=tables)
    inf = engine.influence(model_tables=tables, store_let=False)
    assert nnz == inf.dose[rows].nnz > 0
    w = np.random.default_rng(3).uniform(0.0, 1.0, engine.n_spots)
    np.testing.assert_allclose(dose @ w, inf.dose[rows] @ w, rtol=1e-6)
    g = np.random.default_rng(4).uniform(-1.0, 1.0, rows.size)
    np.testing.assert_allclose(sums[1].T @ g, inf.model_sums[1][rows].T @ g, rtol=1e-5,
                               atol=1e-9)
    with pytest.raises(PlanningError, match="sorted"):
        engine.optimization_matrices(rows[::-1])


@pytest.mark.parametrize("kernel", ["numpy", "compiled"])
def test_entry_counts_are_the_matrices_row_lengths(case, kernel) -> None:  # type: ignore[no-untyped-def]
    """Counted without building (a work estimate's count): each row's entries of the matrices
    the optimizer would get, at the matrices' cut-off and at the plan's (the influence)."""
    if kernel == "compiled" and not pencil_beam_cpu.available():
        pytest.skip("the compiled CPU kernel was not built with this installation")
    engine = _engine(case, compiled=kernel == "compiled")
    rows = np.sort(np.random.default_rng(5).choice(engine.rows, 2000, replace=False))
    fraction = engine.settings.optimizer_cutoff_fraction
    dose, _sums, nnz = engine.optimization_matrices(rows, cutoff_fraction=fraction)
    counts = engine.entry_counts(rows, cutoff_fraction=fraction)
    assert counts.dtype == np.int64 and counts.sum() == nnz > 0
    np.testing.assert_array_equal(counts, np.diff(dose.matrix.indptr))
    whole = engine.influence(store_let=False).dose[rows]
    np.testing.assert_array_equal(engine.entry_counts(rows), np.diff(whole.indptr))
    with pytest.raises(PlanningError, match="sorted"):
        engine.entry_counts(rows[::-1])


def test_forward_over_some_rows_equals_the_whole_forward_there(case) -> None:  # type: ignore[no-untyped-def]
    tables = case[5]
    engine = _engine(case)
    w = np.random.default_rng(5).uniform(0.5, 1.5, engine.n_spots)
    rows = np.sort(np.random.default_rng(6).choice(engine.rows, 500, replace=False))
    whole = engine.forward(w, model_tables=tables)
    part = engine.forward(w, model_tables=tables, rows=rows)
    assert part.dose_gy.shape == (rows.size,) and whole.dose_gy[rows].max() > 0
    np.testing.assert_allclose(part.dose_gy, whole.dose_gy[rows], rtol=1e-6,
                               atol=1e-9 * whole.dose_gy.max())
    for a, b in zip(part.model_sums, whole.model_sums, strict=True):
        np.testing.assert_allclose(a, b[rows], rtol=1e-6, atol=1e-9 * np.abs(b).max())
    for a, b in zip(part.beam_dose_gy, whole.beam_dose_gy, strict=True):
        np.testing.assert_allclose(a, b[rows], rtol=1e-6, atol=1e-9 * whole.dose_gy.max())
    with pytest.raises(PlanningError, match="sorted"):
        engine.forward(w, rows=rows[::-1])


def test_rows_outside_the_region_are_refused(case) -> None:  # type: ignore[no-untyped-def]
    machine, rsp, grid, beams, maps, _ = case
    mask = np.zeros(grid.shape, bool)
    mask[5:8, 15:25, 15:25] = True
    engine = PlanningEngine(machine, rsp, grid, grid, beams, maps, CPU, calc_mask=mask)
    with pytest.raises(PlanningError, match="outside the engine's calculation region"):
        engine.optimization_matrices(np.array([0, 1]))


def test_gpu_engine_matches_cpu_engine(case, gpu) -> None:  # type: ignore[no-untyped-def]
    tables = case[5]
    cpu, dev = _engine(case, "cpu"), _engine(case, "gpu")
    a = cpu.influence(model_tables=tables)
    b = dev.influence(model_tables=tables)
    for x, y in [(a.dose, b.dose), (a.let_dose, b.let_dose), *zip(a.model_sums, b.model_sums,
                                                                     strict=True)]:
        x, y = x.copy(), y.copy()  # the engine's index arrays are read-only
        x.sort_indices()
        y.sort_indices()
        np.testing.assert_array_equal(x.indptr, y.indptr)
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_allclose(y.data, x.data, rtol=1e-5, atol=1e-6 * np.abs(x.data).max())
    w = np.random.default_rng(1).uniform(0.5, 1.5, cpu.n_spots)
    sa, sb = cpu.forward(w, model_tables=tables), dev.forward(w, model_tables=tables)
    top = sa.dose_gy.max()
    np.testing.assert_allclose(sb.dose_gy, sa.dose_gy, atol=1e-5 * top)
    for x, y in zip(sa.model_sums, sb.model_sums, strict=True):
        np.testing.assert_allclose(y, x, atol=1e-5 * np.abs(x).max())


def test_gpu_forward_over_some_rows_matches_cpu(case, gpu) -> None:  # type: ignore[no-untyped-def]
    tables = case[5]
    cpu, dev = _engine(case, "cpu"), _engine(case, "gpu")
    w = np.random.default_rng(7).uniform(0.5, 1.5, cpu.n_spots)
    rows = np.sort(np.random.default_rng(8).choice(cpu.rows, 500, replace=False))
    a = cpu.forward(w, model_tables=tables, rows=rows)
    b = dev.forward(w, model_tables=tables, rows=rows)
    np.testing.assert_allclose(b.dose_gy, a.dose_gy, atol=1e-5 * a.dose_gy.max())
    for x, y in zip(a.model_sums, b.model_sums, strict=True):
        np.testing.assert_allclose(y, x, atol=1e-5 * np.abs(x).max())


def test_gpu_forward_of_weights_with_zeros_matches_cpu(case, gpu) -> None:  # type: ignore[no-untyped-def]
    """Weights with zeros (a third of the spots, every spot of the first beam) on the GPU
    engine, which packs only the spots with weight: the CPU's sums, the first beam's dose
    zero. (That spots are left out is checked at the kernel's level,
    tests/test_pencil_beam_kernel.py; zero terms would give these sums too.)"""
    tables = case[5]
    cpu, dev = _engine(case, "cpu"), _engine(case, "gpu")
    rng = np.random.default_rng(9)
    w = np.where(rng.random(cpu.n_spots) < 0.33, 0.0, rng.uniform(0.5, 1.5, cpu.n_spots))
    w[:case[4][0].n_spots] = 0.0
    a, b = cpu.forward(w, model_tables=tables), dev.forward(w, model_tables=tables)
    assert a.dose_gy.max() > 0 and not np.any(b.beam_dose_gy[0])
    np.testing.assert_allclose(b.dose_gy, a.dose_gy, atol=1e-5 * a.dose_gy.max())
    for x, y in zip(a.model_sums, b.model_sums, strict=True):
        np.testing.assert_allclose(y, x, atol=1e-5 * np.abs(x).max())


def test_gpu_optimization_matches_cpu(case, gpu) -> None:  # type: ignore[no-untyped-def]
    tables = case[5]
    results = []
    for device in ("cpu", "gpu"):
        engine = _engine(case, device)
        target = np.flatnonzero(engine.calc_mask.reshape(-1))[::7][:2000]
        rows = np.sort(target)
        dose, sums, _ = engine.optimization_matrices(rows, model_tables=tables)
        problem = OptimizationProblem(dose, sums, (("T", np.arange(rows.size)),), LemModel(),
                                      10, device=engine.device)
        res = optimize_weights(problem, [Objective("T", "squared_deviation", 30.0, 1.0)], 3.0,
                               "T")
        results.append(res)
    np.testing.assert_allclose(results[1].objective, results[0].objective, rtol=1e-3)
    np.testing.assert_allclose(results[1].weights, results[0].weights, rtol=1e-2,
                               atol=1e-3 * results[0].weights.max())


def test_engines_of_one_plan_share_their_layer_set_ups(case) -> None:  # type: ignore[no-untyped-def]
    """An engine on another grid of the same plan reuses the layer set-ups (they do not
    depend on the grid) and gives the dose it gives with its own; another cut-off does not
    share them."""
    machine, rsp, grid, beams, maps, tables = case
    first = PlanningEngine(machine, rsp, grid, grid, beams, maps, CPU)
    coarse = DoseGrid((8, 20, 20), (6.0, 6.0, 6.0), (-57.0, -57.0, -21.0))
    shared = PlanningEngine(machine, rsp, grid, coarse, beams, maps, CPU, layers_of=first)
    alone = PlanningEngine(machine, rsp, grid, coarse, beams, maps, CPU)
    w = np.random.default_rng(5).uniform(0.5, 1.5, first.n_spots)
    got = shared.forward(w, model_tables=tables)
    assert first._layers is shared._layers and len(first._layers) == 1  # made by `shared`
    want = alone.forward(w, model_tables=tables)
    np.testing.assert_array_equal(got.dose_gy, want.dose_gy)
    other = dataclasses.replace(CPU, lateral_cutoff_fraction=0.95)
    wider = PlanningEngine(machine, rsp, grid, coarse, beams, maps, other, layers_of=first)
    assert wider._layers is not first._layers
