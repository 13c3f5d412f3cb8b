"""Re-optimization from the kept influence, and grids refused before any long work."""

from __future__ import annotations

import time

import numpy as np
import pytest

from planning.dicom import load_demo_patient
from planning.dose_grid import DoseGrid
from planning.engine import memory
from planning.errors import PlanningError
from planning.optimization import Objective
from planning.plan_config import PlanConfig
from planning.planner import PlanRequest, make_plan, reoptimize

#: Target objectives only, so that an organ objective added later needs new matrix rows.
TARGET_ONLY = PlanConfig(objectives=(Objective("PTV", "squared_deviation", 3.0, 100.0),),
                         replace_defaults=True)


def _request(**changes) -> PlanRequest:  # type: ignore[no-untyped-def]
    base = dict(target="PTV", total_dose_gy_rbe=3.0, n_fractions=1, gantry_deg=(90.0,),
                patient=load_demo_patient(), rbe_model="mkm", spot_spacing_mm=6.0,
                dose_grid_mm=5.0, device="cpu", config=TARGET_ONLY)
    base.update(changes)
    return PlanRequest(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def first():  # type: ignore[no-untyped-def]
    return make_plan(_request())


def _ptv_mean(result) -> float:  # type: ignore[no-untyped-def]
    return float(result.report["structures"]["PTV"]["mean_gy_rbe"])


def test_new_prescription_reuses_the_matrices(first) -> None:  # type: ignore[no-untyped-def]
    assert first.prepared is not None and first.report["influence_rebuilt"]
    nnz = first.report["influence_nnz"]
    t0 = time.perf_counter()
    config = PlanConfig(objectives=(Objective("PTV", "squared_deviation", 4.5, 100.0),),
                        replace_defaults=True)
    again = reoptimize(first.prepared, total_dose_gy_rbe=4.5, n_fractions=1, config=config)
    seconds = time.perf_counter() - t0
    assert not again.report["influence_rebuilt"]
    assert again.report["timings_s"]["dose_influence"] == 0.0
    assert again.report["influence_nnz"] == nnz
    assert again.plan.prescription.total_dose_gy_rbe == 4.5
    # The optimizer meets the new prescription as it met the old one (mean within 2 %).
    assert _ptv_mean(again) == pytest.approx(4.5, rel=0.02)
    assert _ptv_mean(first) == pytest.approx(3.0, rel=0.02)
    # It continued from the first plan's weights with fewer iterations, and is about as good
    # as a fresh plan with that prescription (same spots, same problem): its objective value
    # within 15 %, the same target dose within 2 % of the prescription (outside the target,
    # where these objectives ask nothing, the two may differ). Measured: 0.487 vs 0.524 with
    # the matrices at 0.9 of each spot's dose; at 0.8 with the settled correction 0.419 vs
    # 0.405 (NumPy kernels) and 0.443 vs 0.404 (compiled kernel): the fresh plan's objective
    # stays within 0.3 % when the arithmetic changes in its last bits, the re-optimization's
    # (a third of the first pass's iterations, then the refinement's and settling passes)
    # moves by 6 %. A weak point noted in docs/benchmarks.md; the target's D98..D2 agree.
    assert first.report["optimizer_start"] == "uniform"
    assert again.report["optimizer_start"] == "previous plan"
    fresh = make_plan(_request(total_dose_gy_rbe=4.5, config=config))
    assert again.report["iterations"] < fresh.report["iterations"]
    assert again.report["objective_value"] <= 1.15 * fresh.report["objective_value"]
    for key in ("d98_gy_rbe", "d95_gy_rbe", "d50_gy_rbe", "d5_gy_rbe", "d2_gy_rbe"):
        assert again.report["structures"]["PTV"][key] == pytest.approx(
            fresh.report["structures"]["PTV"][key], abs=0.02 * 4.5), key
    assert seconds < fresh.report["timings_s"]["total"]


def test_objective_on_a_new_structure_adds_rows(first) -> None:  # type: ignore[no-untyped-def]
    assert first.prepared is not None
    patient = first.patient
    assert patient.structure_set is not None
    names = {o["structure"] for o in first.report["objectives"]}
    stats = first.report["structures"]
    organ = max((s.name for s in patient.structure_set.structures
                 if s.name not in names and s.interpreted_type.upper() == "ORGAN"
                 and s.name in stats), key=lambda n: stats[n]["dmax_gy_rbe"])
    assert stats[organ]["dmax_gy_rbe"] > 0
    config = PlanConfig(objectives=(*TARGET_ONLY.objectives,
                                    Objective(organ, "max_dose", 0.5, 2.0)),
                        replace_defaults=True)
    again = reoptimize(first.prepared, config=config)
    assert again.report["influence_rebuilt"]
    assert organ in {o["structure"] for o in again.report["objectives"]}
    assert again.report["influence_nnz"] > first.report["influence_nnz"]


def test_first_correction_of_a_new_prescription_needs_no_forward_pass(first) -> None:  # type: ignore[no-untyped-def]
    """The plan keeps the forward pass of its final weights over the optimizer's points; a
    new prescription starts from those weights scaled, so its first dose correction is that
    pass scaled: no forward pass of weights proportional to the kept ones runs."""
    prepared = first.prepared
    assert prepared is not None and prepared.corrects_dose
    kept = prepared.row_forward
    assert kept is not None and np.array_equal(kept.weights, prepared.weights)
    seen: list[np.ndarray] = []
    engine = prepared.opt_engine
    real = engine.forward

    def recorded(weights, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(np.array(weights, dtype=np.float64))
        return real(weights, **kwargs)

    engine.forward = recorded  # type: ignore[method-assign]
    try:
        again = reoptimize(prepared, total_dose_gy_rbe=1.1 * prepared.request.total_dose_gy_rbe)
    finally:
        del engine.forward
    assert seen  # the later corrections are the engine's
    for w in seen:
        factor = float(w @ kept.weights) / float(kept.weights @ kept.weights)
        assert np.abs(w - factor * kept.weights).max() > 1e-6 * w.max()
    assert again.report["dose_correction"]["residual_pct"] <= (
        again.report["dose_correction"]["tolerance_pct"] + 1e-9
        if again.report["dose_correction"]["settling_passes"] < 3 else 1.0)
    assert prepared.row_forward is not None
    assert np.array_equal(prepared.row_forward.weights, prepared.weights)


def test_reoptimize_refuses_a_changed_tissue_set(first) -> None:  # type: ignore[no-untyped-def]
    from planning.rbe import tissue_by_name

    assert first.prepared is not None
    with pytest.raises(PlanningError, match="tissues changed"):
        reoptimize(first.prepared, config=PlanConfig(tissues=(("PTV",
                                                               tissue_by_name("chordoma")),)))


def test_a_grid_that_cannot_fit_is_refused_up_front(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(memory, "available_host_bytes", lambda: 64 * 2**20)
    t0 = time.perf_counter()
    with pytest.raises(PlanningError, match=r"would need .* GiB of memory.*coarser dose grid"):
        make_plan(_request(dose_grid_mm=0.5))
    assert time.perf_counter() - t0 < 20  # before spots, tables and the engine


def test_the_up_front_estimate_counts_the_refinement_s_target_points(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """At 2 mm the refinement checks the target on a 1 mm grid: its engine is in the
    estimate (the message says how many points)."""
    from planning.optimization_grid import target_check_grid
    from planning.structure_dose import grid_of, structure_rows

    patient = load_demo_patient()
    ct_grid = grid_of(patient.ct)
    check = target_check_grid(DoseGrid.covering(ct_grid, 2.0))
    n = structure_rows(patient.structure_set.get("PTV").mask.to_dense(), ct_grid, check).size
    monkeypatch.setattr(memory, "available_host_bytes", lambda: 2**20)
    with pytest.raises(PlanningError, match=rf"and {n:,} target points between them"):
        make_plan(_request(dose_grid_mm=2.0, patient=patient))


def test_cli_reoptimize_writes_a_second_plan_from_the_kept_influence(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from planning.cli import main
    from planning.dicom import write_demo_patient

    demo = tmp_path / "demo"
    write_demo_patient(demo)
    harder = tmp_path / "harder.json"
    harder.write_text(json.dumps({"replace_defaults": True, "objectives": [
        {"structure": "PTV", "type": "squared_deviation", "dose_gy_rbe": 3.0, "weight": 100},
        {"structure": "PTV", "type": "min_dose", "dose_gy_rbe": 2.97, "weight": 300}]}))
    missing = tmp_path / "missing.json"
    out = tmp_path / "out"
    common = ["plan", str(demo), "--target", "PTV", "--dose", "3", "--fractions", "1",
              "--gantry", "90", "--grid", "5", "--spot-spacing", "6", "--device", "cpu",
              "--out", str(out)]
    # A missing configuration, or one naming no structure of the CT, is found before any
    # work (the second was found after the first plan, which was then lost).
    assert main([*common, "--reoptimize", str(missing)]) == 1
    assert "missing.json" in capsys.readouterr().err and not out.exists()
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"objectives": [
        {"structure": "Nope", "type": "max_dose", "dose_gy_rbe": 3.0, "weight": 1}]}))
    assert main([*common, "--reoptimize", str(unknown)]) == 1
    err = capsys.readouterr().err
    assert "unknown.json" in err and "Nope" in err and not out.exists()
    assert main([*common, "--reoptimize", str(harder)]) == 0
    first = json.loads((out / "report.json").read_text())
    second = json.loads((out / "reoptimized_1" / "report.json").read_text())
    assert first["reoptimized"][0]["folder"] == "reoptimized_1"
    assert not second["influence_rebuilt"] and second["influence_nnz"] == first["influence_nnz"]
    assert {(o["type"], o["weight"]) for o in second["objectives"]} == {
        ("squared_deviation", 100.0), ("min_dose", 300.0)}
    assert (out / "reoptimized_1" / "RTPLAN.dcm").exists()
    assert "re-optimized with" in capsys.readouterr().out


def test_dose_engine_is_made_after_the_optimizer_and_the_target_engine_agrees() -> None:
    """The whole-body engine does not exist while the optimizer's matrices are built and
    used (the memory peak); the refinement's engine on the target's points of its check grid
    computes the same dose at the dose grid's voxel centres as the whole-body engine made
    afterwards."""
    from planning.engine.refinement import target_rbe_dose
    from planning.optimization_grid import rows_on_check_grid, target_check_grid
    from planning.planner import optimize_prepared, prepare_plan
    from planning.structure_dose import grid_of, structure_rows

    prepared = prepare_plan(_request())
    assert prepared.opt_engine.dose_grid is not prepared.dose_grid
    assert prepared.engine is None
    mask = prepared.patient.structure_set.get("PTV").mask.to_dense()
    rows = structure_rows(mask, grid_of(prepared.patient.ct), prepared.dose_grid)
    check = target_check_grid(prepared.dose_grid)
    check_rows = structure_rows(mask, grid_of(prepared.patient.ct), check)
    at_voxels = rows_on_check_grid(rows, prepared.dose_grid, check)
    assert check_rows.size > 6 * rows.size and np.isin(at_voxels, check_rows).all()
    target_only = prepared.target_engine(check, check_rows)
    assert target_only.rows.size == check_rows.size and prepared.engine is None
    result = optimize_prepared(prepared)
    assert prepared.engine is not None and prepared.engine.rows.size > 10 * rows.size
    assert prepared.target_engine(check, check_rows) is not prepared.engine  # its own grid
    assert prepared.target_engine(prepared.dose_grid, rows) is prepared.engine
    assert result.report["timings_s"]["dose_engine_setup"] > 0
    w = result.plan.all_weights()
    model, tables = prepared.model, prepared.tables
    np.testing.assert_allclose(
        target_rbe_dose(target_only, w, model, tables, prepared.groups_on(check), at_voxels),
        target_rbe_dose(prepared.engine, w, model, tables, prepared.voxel_groups, rows),
        rtol=1e-6)


def test_freed_heap_goes_back_to_the_system() -> None:
    """glibc's malloc_trim is found where the C library is glibc, and calling it is safe
    anywhere."""
    import platform

    from planning.engine.memory import _malloc_trim, release_free_heap

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert _malloc_trim() is not None
    release_free_heap()


def test_one_sided_rows_in_their_own_matrix_give_the_same_objective_and_gradient() -> None:
    """The points only maximum-dose rings and organs see get a matrix of their own, below the
    others (its transposed product reads only rows with a non-zero gradient): the objective
    and its gradient equal those of one matrix over all points."""
    from kernels.sparse_device import ActiveRows, RowStack
    from planning.engine.problem import optimization_problem
    from planning.optimization import objective_and_weight_gradient
    from planning.plan_config import default_objectives
    from planning.planner import prepare_plan

    prepared = prepare_plan(_request(config=None))
    objectives = default_objectives(prepared.patient, "PTV", 3.0)
    by_name = prepared.structure_rows([o.structure for o in objectives])
    one_sided = [n for n in by_name if n != "PTV" and all(
        o.kind in ("max_dose", "min_dose") for o in objectives if o.structure == n)]
    assert one_sided
    problems = []
    for split in (False, True):
        prepared.release()
        prepared.ensure_matrices(by_name, one_sided=one_sided if split else ())
        dose, sums = prepared.matrices
        assert isinstance(dose, RowStack) == split
        if split:
            assert isinstance(dose.parts[1], ActiveRows)
            assert np.unique(prepared.rows).size == prepared.rows.size
        problems.append(optimization_problem(dose, sums, prepared.rows, by_name,
                                             prepared.model, 1, prepared.opt_groups))
    w = np.random.default_rng(5).uniform(0.0, 0.02, size=problems[0].dose.shape[1])
    plain, split = (objective_and_weight_gradient(objectives, p, w) for p in problems)
    assert plain[0] > 0
    assert split[0] == pytest.approx(plain[0], rel=1e-6)
    np.testing.assert_allclose(split[1], plain[1], rtol=1e-5, atol=1e-9 * np.abs(plain[1]).max())


def test_cancel_reaches_the_refinement_s_engine() -> None:
    """A cancel from the end of the optimization stops the plan before the refinement's
    engine on the check grid is made (its set-up and forward pass take the token); with the
    optimizer's dose correction, its forward pass over the optimizer's points comes first and
    takes the token too."""
    from planning.planner import optimize_prepared, prepare_plan
    from planning.progress import CancelToken, OperationCancelled

    for matrix_cutoff, message in ((0.99, "the dose engine set-up was cancelled"),
                                   (0.9, "dose calculation was cancelled")):
        prepared = prepare_plan(_request(matrix_cutoff_fraction=matrix_cutoff))
        token = CancelToken()

        def progress(fraction: float, stage: str, token: CancelToken = token) -> None:
            if fraction >= 0.75:
                token.cancel()

        with pytest.raises(OperationCancelled, match=message):
            optimize_prepared(prepared, progress=progress, cancel=token)
        assert prepared.engine is None


def test_the_exchange_view_follows_the_re_optimization_request(first) -> None:  # type: ignore[no-untyped-def]
    """Re-optimized with the exchange view turned on (and its LEM I tissue), the result has
    the view; the tissue of the view's LEM I side is the one asked for."""
    assert first.prepared is not None and first.exchange is None
    again = reoptimize(first.prepared, exchange=True, exchange_tissue="hsg")
    assert again.exchange is not None and "exchange" in again.report
    assert "hsg" in again.report["exchange"]["lem_model"].lower()
    off = reoptimize(first.prepared, exchange=False)
    assert off.exchange is None and "exchange" not in off.report


def test_cli_gives_each_re_optimized_plan_s_target_doses_and_own_warnings(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Review finding 4: the re-optimized plans' lines gave no target doses and their
    warnings were never printed, while the first plan's, printed after all the lines, were
    read as the last plan's (its under-dose warning with the first plan's D95)."""
    import json

    from planning.cli import main
    from planning.dicom import write_demo_patient

    demo = tmp_path / "demo"
    write_demo_patient(demo)
    low = tmp_path / "low.json"  # under-doses the target: its own coverage warning
    low.write_text(json.dumps({"replace_defaults": True, "objectives": [
        {"structure": "PTV", "type": "squared_deviation", "dose_gy_rbe": 2.7, "weight": 100}]}))
    out = tmp_path / "out"
    assert main(["plan", str(demo), "--target", "PTV", "--dose", "3", "--fractions", "1",
                 "--gantry", "90", "--grid", "5", "--spot-spacing", "6", "--device", "cpu",
                 "--reoptimize", str(low), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    again = json.loads((out / "reoptimized_1" / "report.json").read_text())
    d95 = 100 * again["structures"]["PTV"]["d95_gy_rbe"] / 3
    assert ("from the kept influence in" in captured.out
            and "reoptimized_1; PTV D98 " in captured.out
            and f", D95 {d95:.1f} %, D2 " in captured.out)
    lines = captured.err.splitlines()
    # The coarse grid is every plan's: said once, with the first plan.
    assert sum("the dose grid of 5 mm" in line for line in lines) == 1
    own = [line for line in lines if line.startswith("ionplan: warning: reoptimized_1: ")]
    assert any(f"D95 is {d95:.1f} % of the prescription" in line for line in own)
    assert not any("the dose grid" in line for line in own)
    assert len(own) == len(again["warnings"]) - 1  # all its warnings but the grid's
