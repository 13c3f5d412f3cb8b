"""A plan at the default settings holds between its grid points (issue 14, item 0).

The plan is optimized at the defaults (2.5 mm dose grid, the optimizer's points at 1.25 mm
spacing in and around the target, 3 mm spots, the default objectives with their fall-off
rings), then its RT Ion Plan is recalculated on a 2 mm grid, whose points mostly lie between the
plan's: the target keeps D95 >= 97 % and D98 >= 95 % of the prescription and the maximum
anywhere stays <= 108 % (the issue's goals; target voxels are the 2 mm voxels whose centres lie
in the PTV). A plan optimized on a 4 mm grid fails the same check (the test can fail): the
issue measured D98 81.6 %, D95 92.1 %, maximum 112 % for the demo plan so made.

Measured (2026-12-05, generator 1.3.0, with the refinement of planning.engine.refinement): the
demo D98 95.9 %, D95 97.3 %, maximum 105.3 %; the TG-119-sized phantom D98 97.3 %, D95 98.1 %,
maximum 105.9 % (107.1 % without the refinement). On the plans' own 2.5 mm grids (issue 14
item 4): demo D95 97.7 %, D5 102.0 %, maximum 105.3 %; phantom D95 97.3 %, D5 102.1 %,
maximum 106.2 % (110.6 % without). 2026-12-07 (generator 1.4.0, the refinement's objective on
its hot points): demo D98 95.9 %, D95 97.2 %, maximum 104.9 %; phantom D98 97.1 %, D95 97.9 %,
maximum 104.8 % on the 2 mm recalculation.
"""

from __future__ import annotations

import numpy as np
import pytest

from planning.compare.recalc import recalculate
from planning.planner import PlanRequest, make_plan
from planning.structure_dose import grid_of, structure_rows

pytestmark = pytest.mark.slow


def _percent_metrics(result, patient, target: str, prescription: float) -> dict[str, float]:
    mask = patient.structure_set.get(target).mask.to_dense()
    rows = structure_rows(mask, grid_of(patient.ct), result.dose_grid)
    d = result.rbe_dose_gy_rbe.reshape(-1)[rows].astype(np.float64)
    d98, d95 = np.percentile(d, [2.0, 5.0])
    return {"d98": 100 * d98 / prescription, "d95": 100 * d95 / prescription,
            "max_anywhere": 100 * float(result.rbe_dose_gy_rbe.max()) / prescription}


def _plan_and_recalc(patient, dose: float, fractions: int, **request):
    plan = make_plan(PlanRequest(target="PTV", total_dose_gy_rbe=dose, n_fractions=fractions,
                                 gantry_deg=(90.0, 270.0), patient=patient, device="cpu",
                                 **request), keep_influence=False)
    fine = recalculate(patient, plan.plan, model=plan.model, grid_mm=2.0, device="cpu")
    return plan, _percent_metrics(fine, patient, "PTV", dose)


@pytest.fixture(scope="module")
def demo_patient():
    from planning.dicom import load_demo_patient

    return load_demo_patient()


@pytest.fixture(scope="module")
def default_demo(demo_patient):
    return _plan_and_recalc(demo_patient, 57.6, 16)


def test_default_demo_plan_holds_on_a_2_mm_grid(default_demo):
    plan, m = default_demo
    assert plan.dose_grid.spacing_mm == (2.5, 2.5, 2.5) and not plan.report["warnings"]
    assert m["d98"] >= 95.0, m
    assert m["max_anywhere"] <= 108.0, m


def test_default_demo_plan_keeps_d95_on_a_2_mm_grid(default_demo):
    _, m = default_demo
    assert m["d95"] >= 97.0, m


@pytest.fixture(scope="module")
def default_tg119():
    from bench.bench_plan import tg119_patient

    return _plan_and_recalc(tg119_patient(), 60.0, 20)


def test_default_tg119_sized_plan_holds_on_a_2_mm_grid(default_tg119):
    _, m = default_tg119
    assert m["d95"] >= 97.0 and m["d98"] >= 95.0, m


def test_default_tg119_sized_plan_keeps_its_maximum_on_a_2_mm_grid(default_tg119):
    _, m = default_tg119
    assert m["max_anywhere"] <= 108.0, m


def _own_grid_goals(plan, prescription: float) -> dict[str, float]:
    ptv = plan.report["structures"]["PTV"]
    return {"d95": 100 * ptv["d95_gy_rbe"] / prescription,
            "d5": 100 * ptv["d5_gy_rbe"] / prescription,
            "max_anywhere": 100 * float(plan.rbe_dose_gy_rbe.max()) / prescription}


@pytest.mark.parametrize("which", ["default_demo", "default_tg119"])
def test_default_plans_meet_the_goals_on_their_own_grid(which, request):
    """Issue 14 item 4: D95 >= 97 %, D5 <= 103 % and the maximum anywhere <= 108 % on the
    plan's own cubes (the clinical DVH of the report). The TG-119-sized plan's maximum was
    110.6 % before the refinement of planning.engine.refinement (then 106.2 %)."""
    plan, _ = request.getfixturevalue(which)
    g = _own_grid_goals(plan, plan.plan.prescription.total_dose_gy_rbe)
    if which == "default_tg119":  # the voxels of the spike are among those added
        assert plan.report["refinement"]["target_points_added"] > 0, plan.report["refinement"]
    assert g["d95"] >= 97.0 and g["d5"] <= 103.0 and g["max_anywhere"] <= 108.0, g


def test_a_coarse_grid_plan_fails_the_same_check_and_says_so(demo_patient):
    plan, m = _plan_and_recalc(demo_patient, 57.6, 16, dose_grid_mm=4.0,
                               optimization_grid_mm=4.0, spot_spacing_mm=5.0)
    assert any("coarser than 2.5 mm" in w for w in plan.report["warnings"])
    assert m["d98"] < 95.0 or m["max_anywhere"] > 108.0, m


def test_a_3_mm_plan_has_no_hot_spot_between_its_voxels(demo_patient):
    """The refinement checks the target at the dose grid's voxels and the midpoints between
    them (planning.optimization_grid.target_check_grid): the demo plan on a 3 mm grid
    (3 mm spots), recalculated on a 1.5 mm grid, keeps its target maximum within 108 % and
    D98 >= 95 %. Checking the dose grid's voxels only, it was 114.2 % (D98 96.5 %) there,
    109.2 % on its own grid (2026-12-05); with generator 1.4.0 and the hot points only as
    target points 108.005 %, with their own maximum-dose objective from 103 % 107.1 %
    (2026-12-07, planning.engine.refinement)."""
    plan = make_plan(PlanRequest(target="PTV", total_dose_gy_rbe=60.0, n_fractions=20,
                                 gantry_deg=(90.0, 270.0), patient=demo_patient, device="cpu",
                                 dose_grid_mm=3.0, spot_spacing_mm=3.0), keep_influence=False)
    assert plan.report["refinement"]["check_grid_spacing_mm"] == [1.5, 1.5, 1.5]
    fine = recalculate(demo_patient, plan.plan, model=plan.model, grid_mm=1.5, device="cpu")
    rows = structure_rows(demo_patient.structure_set.get("PTV").mask.to_dense(),
                          grid_of(demo_patient.ct), fine.dose_grid)
    d = 100 * fine.rbe_dose_gy_rbe.reshape(-1)[rows].astype(np.float64) / 60.0
    assert d.max() <= 108.0 and np.percentile(d, 2.0) >= 95.0, (d.max(), np.percentile(d, 2))


def test_an_organ_maximum_holds_at_its_contour(demo_patient):
    """A maximum-dose objective on the brainstem (30.6 Gy(RBE), weight 5000) beside the demo
    PTV: held on the optimizer's lattice alone it was met at every point while the clinical
    DVH (which reads the dose at the contour) gave Dmax 47.2 Gy(RBE), 49.1 on a 2 mm
    recalculation (2026-12-07). Held on both sides of the organ's surface too
    (planning.optimization_grid.boundary_rows): 30.5 and 31.1."""
    from planning.optimization import Objective
    from planning.plan_config import PlanConfig

    config = PlanConfig((Objective("Brainstem", "max_dose", 30.6, 5000.0),))
    plan = make_plan(PlanRequest(target="PTV", total_dose_gy_rbe=57.6, n_fractions=16,
                                 gantry_deg=(90.0, 270.0), patient=demo_patient, device="cpu",
                                 spot_spacing_mm=6.0, config=config), keep_influence=False)
    assert plan.report["structures"]["Brainstem"]["dmax_gy_rbe"] <= 1.03 * 30.6
    fine = recalculate(demo_patient, plan.plan, model=plan.model, grid_mm=2.0, device="cpu")
    assert fine.report["structures"]["Brainstem"]["dmax_gy_rbe"] <= 1.05 * 30.6
    # Not by giving up the target: D95 within 2 % of the prescription on the plan's grid.
    assert plan.report["structures"]["PTV"]["d95_gy_rbe"] >= 0.97 * 57.6
