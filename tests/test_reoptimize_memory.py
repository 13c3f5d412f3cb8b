"""A re-optimization's memory beside the kept plan (planning/plan_estimate.py): the count by
hand, against the planner's own target points, and the refusals of the GUI's Re-optimize
(api.reoptimize_plan) and of ``ionplan plan --reoptimize`` when the memory available, injected
as the engine's checks read it (planning.engine.memory.available_host_bytes), is too small."""

from __future__ import annotations

import json

import pytest

from planning import api, plan_estimate, planner
from planning.engine import memory
from planning.engine.memory import engine_bytes
from planning.errors import PlanningError
from planning.optimization_grid import target_check_grid
from planning.plan_estimate import check_reoptimization_memory, reoptimization_bytes
from planning.structure_dose import grid_of, structure_rows
from tests.test_reoptimize import _request

#: A memory figure no re-optimization of the demo patient fits in.
TINY_BYTES = 2**20


@pytest.fixture(scope="module")
def kept():  # type: ignore[no-untyped-def]
    """A plan made here (5 mm dose grid, one beam, mMKM), keeping its influence."""
    return planner.make_plan(_request())


def test_memory_counts_the_new_plan_s_cubes_and_engines_by_hand() -> None:
    """1000 voxels, 2 beams, 1 model sum, 100 target points on the check grid: float32
    cubes 4 + 2 beams = 6, float64 working cubes 5 + 2 beams + 1 sum = 8, the check grid's
    engine 100 x (40 x 2 + 8 x (2 + 1 + 2)) = 12,000 bytes; the exchange view adds 4 float32
    cubes, a dose-grid engine to make again its rows."""
    assert reoptimization_bytes(1000, 2, 1, 100, exchange=False) == 24_000 + 64_000 + 12_000
    assert reoptimization_bytes(1000, 2, 1, 100, exchange=True) == 116_000
    assert reoptimization_bytes(1000, 2, 1, 100, exchange=False, dose_rows=50) == 106_000


def test_the_check_counts_the_planner_s_target_points(kept, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The 5 mm plan's refinement checks the target on its finer check grid: the need is the
    new cubes and that grid's engine over the planner's own target points (the check counts
    them by volume: within a few percent, well inside the 2 % margins below, since the cubes
    dominate)."""
    prepared = kept.prepared
    grid = prepared.dose_grid
    check = target_check_grid(grid)
    assert check != grid
    target = prepared.patient.structure_set.get("PTV").mask.to_dense()
    n_check = structure_rows(target, grid_of(prepared.patient.ct), check).size
    n = grid.n_voxels
    need = 4 * n * (4 + 1) + 8 * n * (5 + 1 + 1) + engine_bytes(n_check, 1, 2)
    monkeypatch.setattr(memory, "available_host_bytes", lambda: int(need / 0.8 * 1.02))
    check_reoptimization_memory(prepared)
    monkeypatch.setattr(memory, "available_host_bytes", lambda: int(need / 0.8 * 0.98))
    with pytest.raises(PlanningError):
        check_reoptimization_memory(prepared)
    # The exchange view's four cubes: refused at the figure that fits without them.
    monkeypatch.setattr(memory, "available_host_bytes", lambda: int(need / 0.8 * 1.02))
    with pytest.raises(PlanningError, match=r", with the exchange view\) beside the kept plan"):
        check_reoptimization_memory(prepared, exchange=True)


def test_the_gui_s_reoptimize_refuses_before_any_work(kept, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def no_work(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the re-optimization ran before its memory check")

    monkeypatch.setattr(planner, "reoptimize", no_work)
    monkeypatch.setattr(memory, "available_host_bytes", lambda: TINY_BYTES)
    n = kept.prepared.dose_grid.n_voxels
    with pytest.raises(PlanningError, match=(
            rf"^re-optimizing the plan on its dose grid of 5, 5, 5 mm \({n:,} voxels, 1 beam\) "
            r"beside the kept plan would need \d+ MiB of memory, but 1 MiB are "
            r"available .*: close other programs, or make a new plan on a coarser dose grid$")):
        api.reoptimize_plan(kept, total_dose_gy_rbe=4.0)


def _cli_plan(tmp_path, *extra: str) -> list[str]:  # type: ignore[no-untyped-def]
    from planning.dicom import write_demo_patient

    demo = tmp_path / "demo"
    write_demo_patient(demo)
    again = tmp_path / "again.json"
    again.write_text(json.dumps({"objectives": [
        {"structure": "PTV", "type": "min_dose", "dose_gy_rbe": 2.97, "weight": 300}]}))
    return ["plan", str(demo), "--target", "PTV", "--dose", "3", "--fractions", "1",
            "--gantry", "90", "--grid", "8", "--spot-spacing", "8", "--device", "cpu",
            "--reoptimize", str(again), "--out", str(tmp_path / "out"), *extra]


def test_plan_reoptimize_refuses_before_the_plan(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from planning.cli import main

    def no_plan(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the plan was computed before the re-optimizations' check")

    monkeypatch.setattr(planner, "make_plan", no_plan)
    monkeypatch.setattr(memory, "available_host_bytes", lambda: TINY_BYTES)
    assert main(_cli_plan(tmp_path)) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("estimate of the plan (without the re-optimizations)")
    (line,) = captured.err.splitlines()
    assert line.startswith("ionplan: error: re-optimizing the plan on its dose grid of 8, 8, "
                           "8 mm (")
    assert "beside the plan itself and its kept influence (about " in line
    assert "leave out --reoptimize and plan each configuration on its own" in line
    assert not (tmp_path / "out").exists()


def test_plan_reoptimize_checks_again_before_each_re_optimization(tmp_path, capsys,
                                                                   monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With the memory the estimate saw gone once the plan is made (here: a re-optimization
    that needs more than any machine has, past the check before the plan), the
    re-optimization is refused, not started."""
    from planning.cli import main

    monkeypatch.setattr(plan_estimate, "check_reoptimization_memory_after_plan",
                        lambda *args, **kwargs: None)
    monkeypatch.setattr(plan_estimate, "reoptimization_bytes", lambda *args, **kwargs: 1e18)

    def no_work(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the re-optimization ran before its memory check")

    monkeypatch.setattr(planner, "reoptimize", no_work)
    assert main(_cli_plan(tmp_path)) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("ionplan: error: re-optimizing the plan on its dose grid of 8, 8, "
                           "8 mm (")
    assert "beside the kept plan would need " in line
