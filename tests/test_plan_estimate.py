"""The pre-flight estimate of a plan (planning/plan_work.py, planning/plan_estimate.py,
planning/throughput.py): its counts against the planner's own, its time and memory arithmetic,
its words; and the command line's refusal of a long plan without --accept-long."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from planning import plan_estimate, plan_work
from planning.dose_grid import DoseGrid
from planning.optimization import ONE_SIDED_KINDS
from planning.plan_estimate import PlanEstimate, duration_range
from planning.plan_work import PlanWork, RowGroup, count_plan_work
from planning.planner import (
    PlanRequest,
    merged_objectives,
    on_max_points,
    plan_basis,
    prepare_plan,
)
from planning.throughput import Rate

#: The factor within which the estimate's counts must meet the planner's (module docstring of
#: planning/plan_work.py).
COUNT_FACTOR = 1.5


def _request(patient, **kwargs) -> PlanRequest:
    values = dict(target="PTV", total_dose_gy_rbe=57.6, n_fractions=16,
                  gantry_deg=(90.0, 270.0), patient=patient, spot_spacing_mm=6.0,
                  dose_grid_mm=5.0, device="cpu")
    values.update(kwargs)
    return PlanRequest(**values)


def _planned_counts(request: PlanRequest) -> dict[str, float]:
    """The planner's own counts: spots, optimizer points and matrix entries (its matrices
    built as a plan builds them), and the (point, spot) pairs of the whole-body forward pass
    and of one over the optimizer's points."""
    prepared = prepare_plan(request)
    patient = prepared.patient
    objectives = on_max_points(merged_objectives(patient, prepared.target,
                                                 request.total_dose_gy_rbe, prepared.config),
                               patient, prepared.target)
    rows = prepared.structure_rows([o.structure for o in objectives])
    kinds: dict[str, set[str]] = {}
    for o in objectives:
        kinds.setdefault(o.structure, set()).add(o.kind)
    prepared.ensure_matrices(rows, one_sided=[n for n in rows
                                              if kinds.get(n, set()) <= set(ONE_SIDED_KINDS)])
    engine = prepared.dose_engine()
    return {"spots": sum(s.n_spots for s in prepared.spot_maps),
            "points": prepared.rows.size, "entries": prepared.matrix_nnz,
            "body_pairs": int(engine.entry_counts(engine.rows).sum()),
            "row_pairs": int(prepared.opt_engine.entry_counts(np.sort(prepared.rows)).sum())}


def _within(estimated: float, planned: float, factor: float = COUNT_FACTOR) -> bool:
    return planned / factor <= estimated <= planned * factor


def test_counts_meet_the_planners_on_the_demo_patient(patient) -> None:
    """5 mm dose grid: the optimization grid (2.5 mm) is sampled as the planner samples it,
    so the points are the planner's; the entries come from a sample of them."""
    request = _request(patient)
    work = count_plan_work(request, plan_basis(request))
    planned = _planned_counts(request)
    assert abs(work.n_spots - planned["spots"]) <= 0.03 * planned["spots"]
    assert work.opt_points == pytest.approx(planned["points"], rel=0.01)
    for name, value in (("entries", work.entries), ("body_pairs", work.body_pairs),
                        ("row_pairs", work.row_pairs)):
        assert _within(value, planned[name]), (name, value, planned[name])
    assert 0 < work.entries_error < 0.5


def test_a_finer_optimization_grid_is_scaled_from_the_model_grid(patient, monkeypatch) -> None:
    """With the model grid at 3 mm, the 2 mm optimization grid's points and entries are
    scaled from it (the path of every grid finer than 1 mm): still within the factor."""
    monkeypatch.setattr(plan_work, "MODEL_GRID_MM", 3.0)
    request = _request(patient, dose_grid_mm=4.0)  # optimization grid 2 mm
    work = count_plan_work(request, plan_basis(request))
    planned = _planned_counts(request)
    assert _within(work.opt_points, planned["points"]), (work.opt_points, planned["points"])
    assert _within(work.entries, planned["entries"]), (work.entries, planned["entries"])


def _work(**kwargs) -> PlanWork:
    values = dict(n_beams=2, n_spots=1000, n_layers=20,
                  groups=(RowGroup("PTV", 1000.0, 300.0, 2000.0, 3.0),
                          RowGroup("Brain", 9000.0, 10.0, 100.0, 1.0)),
                  opt_engine_points=20000.0, dose_voxels=1e5, body_pairs=1e7,
                  check_points=2000.0, check_pairs=4e6, objective_points=30000.0,
                  n_objectives=8, structure_voxels=10**6, cube_samples=10**7, n_model=1,
                  max_iterations=200, grids_shared=False)
    values.update(kwargs)
    return PlanWork(**values)


def test_work_sums_its_groups() -> None:
    work = _work()
    assert work.opt_points == 10000.0
    assert work.entries == 1000 * 300 + 9000 * 10  # 390,000
    assert work.row_pairs == 1000 * 2000 + 9000 * 100
    # Independent groups: the root of the summed squares of points x standard error.
    assert work.entries_error == pytest.approx(np.hypot(1000 * 3.0, 9000 * 1.0) / 390000)


def test_rates_scale_with_the_threads_by_their_efficiency() -> None:
    rate = Rate(1.5, 0.5)  # one thread 1.5 s; each further thread adds half a thread's speed
    assert rate.at(1) == pytest.approx(1.5)
    assert rate.at(2) == pytest.approx(1.0)
    assert rate.at(4) == pytest.approx(1.5 / 2.5)
    assert Rate(2.0, 0.0).at(16) == pytest.approx(2.0)
    assert Rate(2.0, 1.0).at(16) == pytest.approx(2.0 / 16)


def test_plan_seconds_grow_with_each_kind_of_work() -> None:
    """Twice the entries cost more in the matrices and the optimization and nothing else;
    twice the threads less; the exchange view's two models add two final passes."""
    from planning.throughput import plan_seconds

    base = plan_seconds(_work(), 2)
    more = plan_seconds(_work(groups=tuple(dataclasses.replace(g, entries_per_point=2
                                                               * g.entries_per_point)
                                           for g in _work().groups)), 2)
    for part in ("matrices", "optimization"):
        assert more[part] > base[part]
    for part in ("set-up", "dose", "fixed"):
        assert more[part] == base[part]
    assert sum(plan_seconds(_work(), 4).values()) < sum(base.values())
    assert plan_seconds(_work(), 2, final_passes=3)["dose"] > base["dose"]


def _estimate(seconds: float, *, memory: float = 1e9, available: int | None = 16 * 2**30,
              device: str = "cpu", load: float = 1.0) -> PlanEstimate:
    return PlanEstimate(_work(), (("optimization", seconds),), 2, device, memory, available,
                        2.5, 3.0, DoseGrid((40, 80, 80), (2.5, 2.5, 2.5), (0.0, 0.0, 0.0)),
                        load)


def test_a_plan_is_long_beyond_ten_minutes_and_large_beyond_the_memory() -> None:
    assert plan_estimate.LONG_PLAN_S == 600.0
    short, long = _estimate(599.0), _estimate(601.0)
    assert not short.is_long and short.concern() is None
    assert long.is_long and long.needs_confirmation
    assert (long.low_s, long.high_s) == (pytest.approx(0.6 * 601), pytest.approx(2.5 * 601))
    assert "it would take 6-25 min (likely 10 min" in long.concern()
    # 80 % of the available memory may be used (planning.engine.memory).
    fits = _estimate(10.0, memory=0.79 * 10 * 2**30, available=10 * 2**30)
    big = _estimate(10.0, memory=0.81 * 10 * 2**30, available=10 * 2**30)
    assert not fits.exceeds_memory and big.exceeds_memory and big.needs_confirmation
    assert "memory error" in big.concern()
    assert not _estimate(10.0, memory=1e15, available=None).exceeds_memory


def test_the_estimate_says_what_it_is_of_in_rounded_numbers() -> None:
    text = _estimate(100.0).summary()
    assert text.startswith("Estimate for a 2.5 mm dose grid and 3 mm spots: ")
    assert "1,000 spots in 20 layers, 10,000 optimizer points, 390,000 matrix entries" in text
    assert "about 1-4 min (CPU, 2 threads)" in text
    assert "GPU engine is faster" in _estimate(100.0, device="gpu").time_text()
    assert "memory about 954 MiB (16.0 GiB available)" in text  # 1e9 bytes


def test_a_small_plans_memory_is_given_in_mib_not_as_zero_gib() -> None:
    """The estimate line said "memory about 0.0 GiB" of a small plan, while the engine's
    refusals say MiB below 1 GiB."""
    small = _estimate(10.0, memory=40 * 2**20, available=512 * 2**20)
    assert small.memory_text() == "memory about 40 MiB (512 MiB available)"
    big = _estimate(10.0, memory=0.9 * 10 * 2**30, available=10 * 2**30)
    assert "it would need about 9.0 GiB of memory" in big.concern()
    assert "the 10.0 GiB available" in big.concern()


def test_a_busy_machine_widens_the_upper_end_by_its_load(monkeypatch) -> None:
    """3.5 processes waiting per core: the upper end is 1.25 x 3.5 times the likely time
    (more than 2.5), the likely time and so the question stay (the load may change during the
    plan); at 1.6 processes per core 2.5 still covers it."""
    busy = _estimate(100.0, load=3.5)
    assert busy.high_s == pytest.approx(1.25 * 3.5 * 100.0)
    assert _estimate(100.0, load=1.6).high_s == pytest.approx(250.0)
    assert busy.low_s == _estimate(100.0).low_s and not busy.is_long
    assert "busy: 3.5 processes per core" in busy.time_text()
    assert "busy" not in _estimate(100.0, load=1.2).time_text()
    monkeypatch.setattr(plan_estimate.os, "getloadavg", lambda: (7.0, 6.0, 5.0))
    monkeypatch.setattr(plan_estimate.os, "cpu_count", lambda: 2)
    assert plan_estimate.load_factor() == 3.5
    monkeypatch.setattr(plan_estimate.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert plan_estimate.load_factor() == 1.0


@pytest.mark.parametrize(("low", "high", "text"), [
    (30.0, 50.0, "30-50 s"), (40.0, 150.0, "40 s to 2 min"), (60.0, 180.0, "1-3 min"),
    (3000.0, 12600.0, "50 min to 3.5 h"), (9000.0, 36000.0, "2.5-10 h"),
    (0.2, 0.4, "1 s")])
def test_durations_read_in_one_unit_where_they_can(low: float, high: float, text: str) -> None:
    assert duration_range(low, high) == text


def test_memory_counts_the_matrices_and_the_engines(patient) -> None:
    """The matrices' 8 bytes an entry plus 4 per model sum, the optimizer's and the dose
    grid's engines (planning.engine.memory.engine_bytes), beside the process and the cubes."""
    from planning.engine.memory import engine_bytes

    basis = plan_basis(_request(patient))
    work = _work(groups=(RowGroup("PTV", 1e6, 1000.0, 0.0, 0.0),), opt_engine_points=1e6,
                 dose_voxels=10.0, check_points=0.0, n_model=2)
    empty = dataclasses.replace(work, groups=(), opt_engine_points=0.0, dose_voxels=0.0)
    added = plan_estimate.memory_bytes(work, basis) - plan_estimate.memory_bytes(empty, basis)
    assert added == pytest.approx(1e9 * (8 + 4 * 2) + engine_bytes(10**6, 2, 0)
                                  + engine_bytes(10, 2, 4))
    # The optimizer's engine is the dose grid's where the grids are one.
    shared = dataclasses.replace(work, grids_shared=True)
    assert (plan_estimate.memory_bytes(work, basis) - plan_estimate.memory_bytes(shared, basis)
            == pytest.approx(engine_bytes(10**6, 2, 0)))


@pytest.fixture(scope="module")
def demo_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from planning.dicom import write_demo_patient

    folder = tmp_path_factory.mktemp("demo_ct")
    write_demo_patient(folder)
    return folder


PLAN_ARGS = ["--target", "PTV", "--dose", "60", "--fractions", "12", "--gantry", "90",
             "--grid", "8", "--spot-spacing", "8", "--device", "cpu"]


def test_the_command_line_refuses_a_long_plan_without_accept_long(demo_ct, tmp_path, capsys,
                                                                   monkeypatch) -> None:
    from planning.cli import main

    monkeypatch.setattr(plan_estimate, "LONG_PLAN_S", 0.0)  # every plan is long
    out = tmp_path / "refused"
    assert main(["plan", str(demo_ct), *PLAN_ARGS, "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("estimate of the plan: ")
    assert "spots in" in captured.out and "(CPU, " in captured.out
    (line,) = captured.err.splitlines()
    assert line.startswith("ionplan: error: this plan is large: it would take ")
    assert line.endswith("rerun with --accept-long to compute it anyway")
    assert not out.exists()  # nothing computed, no folder left behind
    done = tmp_path / "accepted"
    assert main(["plan", str(demo_ct), *PLAN_ARGS, "--accept-long", "--out", str(done)]) == 0
    captured = capsys.readouterr()
    assert "ionplan: warning: this plan is large" in captured.err
    assert "(--accept-long)" in captured.err
    assert (done / "RTPLAN.dcm").is_file()


def test_the_help_of_accept_long_gives_the_threshold() -> None:
    from planning.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = next(a.help for a in sub.choices["plan"]._actions if a.dest == "accept_long")
    assert f"over {plan_estimate.LONG_PLAN_S / 60:g} minutes" in text


def test_the_estimate_line_names_what_it_leaves_out() -> None:
    from planning.cli import _estimate_line

    line = _estimate_line(_estimate(100.0), ["the robust evaluation", "the re-optimizations"])
    assert line.startswith("estimate of the plan (without the robust evaluation and the "
                           "re-optimizations): 1,000 spots in 20 layers")
    assert _estimate_line(_estimate(100.0), []).startswith("estimate of the plan: 1,000 spots")


def test_the_facade_s_estimate_and_plan_take_one_request(patient) -> None:
    """api.plan_request holds the parameter list once; the estimate and the plan are given
    the same request (the GUI's Compute plan), so they cannot differ in what they are of."""
    import inspect

    from planning import api
    from planning.errors import InputError

    for function in (api.estimate_plan, api.plan_patient):
        assert list(inspect.signature(function).parameters) == ["request", "progress", "cancel"]
    request = api.plan_request(patient, target="PTV", dose_gy_rbe=57.6, fractions=16,
                               gantry_deg=[90, 270], spot_spacing_mm=6.0, grid_mm=5.0,
                               device="cpu")
    assert (request.dose_grid_mm, request.spot_spacing_mm, request.gantry_deg) == (
        5.0, 6.0, (90.0, 270.0))
    estimate = api.estimate_plan(request)
    assert estimate.summary().startswith("Estimate for a 5 mm dose grid and 6 mm spots: ")
    assert estimate.dose_grid.spacing_mm == (5.0, 5.0, 5.0)
    with pytest.raises(InputError, match="give each direction once"):
        api.plan_request(patient, target="PTV", dose_gy_rbe=57.6, fractions=16,
                         gantry_deg=[90, 90])
