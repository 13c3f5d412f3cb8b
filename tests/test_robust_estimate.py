"""The robust evaluation's memory, checked before its long work (planning/robust_estimate.py):
the count by hand, and the refusals of ``ionplan robust``, ``ionplan plan --robust`` and the
evaluation of a plan in memory (the GUI's Robustness view) when the memory available, injected
as the engine's checks read it (planning.engine.memory.available_host_bytes), is too small."""

from __future__ import annotations

import pytest

from planning import api, robust
from planning.dose_grid import DoseGrid
from planning.engine import memory
from planning.errors import PlanningError
from planning.robust import RobustSettings, make_scenarios
from planning.robust_estimate import check_robust_memory, robust_memory_bytes
from tests.test_recalc import demo_plan_dirs

#: A memory figure no robust evaluation of the demo patient fits in.
TINY_BYTES = 2**20


def test_memory_counts_cubes_engine_and_scaled_geometry_by_hand() -> None:
    """1000 voxels, 500 of them in the body, 2 beams, 1 model sum.

    Default scenarios (range +/-, six setup shifts): the two range scenarios share the nominal
    position, so two scenario doses are held at once and the WEPL is scaled. float32 cubes:
    4 nominal + 2 beams + 4 envelopes + 2 x 2 scenario doses = 14; float64 working cubes of a
    forward pass: 5 + 2 beams + 1 sum = 8; the engine 500 x (40 x 2 + 8 x (2 + 1 + 2)) =
    60,000 bytes and its scaled geometry 500 x 40 x 2 = 40,000."""
    default = make_scenarios(RobustSettings())
    assert robust_memory_bytes(1000, 500, 2, 1, default) == 4 * 1000 * 14 + 8 * 1000 * 8 + 100_000
    # Combined: a shifted position holds its shift alone and with each range error (3 doses).
    combined = make_scenarios(RobustSettings(combined=True))
    assert robust_memory_bytes(1000, 500, 2, 1, combined) == 4 * 1000 * 16 + 64_000 + 100_000
    # Setup only: one dose at a time and no scaled geometry; 45 scenarios no more than 9.
    setup = make_scenarios(RobustSettings(range_error_pct=0.0))
    assert robust_memory_bytes(1000, 500, 2, 1, setup) == 4 * 1000 * 12 + 64_000 + 60_000
    many = make_scenarios(RobustSettings(setup_directions=14, combined=True))
    assert len(many) == 45
    assert robust_memory_bytes(1000, 500, 2, 1, many) == robust_memory_bytes(
        1000, 500, 2, 1, combined)


def test_the_check_refuses_beyond_the_share_of_the_memory_available(monkeypatch) -> None:
    grid = DoseGrid((100, 200, 200), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    settings = RobustSettings()
    need = robust_memory_bytes(grid.n_voxels, 10**6, 3, 1, make_scenarios(settings))
    # 80 % of the available memory may be used (planning.engine.memory).
    monkeypatch.setattr(memory, "available_host_bytes", lambda: int(need / 0.8 * 1.01))
    check_robust_memory(settings, grid, 10**6, 3, 1)
    monkeypatch.setattr(memory, "available_host_bytes", lambda: int(need / 0.8 * 0.99))
    with pytest.raises(PlanningError) as refused:
        check_robust_memory(settings, grid, 10**6, 3, 1)
    text = str(refused.value)
    assert text.startswith("the robust evaluation's 9 scenarios on a dose grid of 2, 2, 2 mm "
                           "(4,000,000 voxels, about 1,000,000 in the body) for 3 beams "
                           f"would need {round(need / 2**20)} MiB of memory, but ")
    assert "MiB are available (80% of it may be used): choose a coarser dose grid" in text
    monkeypatch.setattr(memory, "available_host_bytes", lambda: None)  # unknown: no check
    check_robust_memory(settings, grid, 10**6, 3, 1)
    # GiB from 1 GiB, else MiB (a small step refused on a machine short of memory read
    # "would need 0.0 GiB, but 0.0 GiB are available").
    assert (memory.size_text(2.5 * 2**30), memory.size_text(340 * 2**20),
            memory.size_text(1000.0)) == ("2.5 GiB", "340 MiB", "1 MiB")


def _no_nominal_dose(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the nominal dose was computed before the memory check")

    monkeypatch.setattr(robust, "recalculate", refuse)


def test_ionplan_robust_refuses_before_the_nominal_dose(tmp_path_factory, tmp_path, capsys,
                                                        monkeypatch) -> None:
    from planning.cli import main

    ct, plan_dir = demo_plan_dirs(tmp_path_factory)
    capsys.readouterr()
    _no_nominal_dose(monkeypatch)
    monkeypatch.setattr(memory, "available_host_bytes", lambda: TINY_BYTES)
    out = tmp_path / "robust"
    assert main(["robust", str(ct), str(plan_dir / "RTPLAN.dcm"), "--grid", "8", "--device",
                 "cpu", "--setup-directions", "14", "--out", str(out)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("ionplan: error: the robust evaluation's 17 scenarios on a dose "
                           "grid of 8, 8, 8 mm (")
    assert "would need " in line and "MiB of memory, but 1 MiB are available" in line
    assert not out.exists()


def test_the_evaluation_of_a_plan_in_memory_refuses_before_the_nominal_dose(
        tmp_path_factory, monkeypatch) -> None:
    """The GUI's Robustness view evaluates the plan it shows (api.robust_evaluation_of_result)
    on its own dose grid."""
    ct, plan_dir = demo_plan_dirs(tmp_path_factory)
    result = api.recalculate_plan(ct, plan_dir / "RTPLAN.dcm", grid_mm=8.0, device="cpu")
    _no_nominal_dose(monkeypatch)
    monkeypatch.setattr(memory, "available_host_bytes", lambda: TINY_BYTES)
    with pytest.raises(PlanningError, match=r"^the robust evaluation's 21 scenarios on a dose "
                                            r"grid of 8, 8, 8 mm .* would need \d+ MiB of "
                                            r"memory, but 1 MiB"):
        api.robust_evaluation_of_result(result, combined=True, device="cpu")


@pytest.mark.parametrize("reoptimize", [False, True])
def test_plan_robust_refuses_before_the_plan(tmp_path_factory, tmp_path, capsys, monkeypatch,
                                             reoptimize) -> None:
    """The plan stays in memory while its scenarios run (with --reoptimize its influence
    too): the check adds it, and refuses before the plan is computed."""
    import json

    from planning import planner
    from planning.cli import main

    ct, _ = demo_plan_dirs(tmp_path_factory)
    capsys.readouterr()

    def no_plan(*args, **kwargs):
        raise AssertionError("the plan was computed before the robust evaluation's check")

    monkeypatch.setattr(planner, "make_plan", no_plan)
    monkeypatch.setattr(memory, "available_host_bytes", lambda: TINY_BYTES)
    extra = []
    if reoptimize:
        config = tmp_path / "again.json"
        config.write_text(json.dumps({"objectives": [
            {"structure": "PTV", "type": "min_dose", "dose_gy_rbe": 59.0, "weight": 100}]}))
        extra = ["--reoptimize", str(config)]
    out = tmp_path / "plan"
    assert main(["plan", str(ct), "--target", "PTV", "--dose", "60", "--fractions", "12",
                 "--gantry", "90", "--grid", "8", "--spot-spacing", "8", "--device", "cpu",
                 "--robust", *extra, "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("estimate of the plan (without the robust evaluation")
    (line,) = captured.err.splitlines()
    assert line.startswith("ionplan: error: the robust evaluation's 9 scenarios on a dose grid "
                           "of 8, 8, 8 mm (")
    beside = ", beside the plan itself and its kept influence (about " if reoptimize else \
        ", beside the plan itself (about "
    assert beside in line and "would need " in line
    assert not out.exists()
