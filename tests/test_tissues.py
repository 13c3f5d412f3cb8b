"""LEM I tissues per structure: parsing, grouped RBE evaluation and the planner."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import scipy.sparse as sp

from planning.cli import main
from planning.dicom import load_rt_dose, load_rt_ion_plan, write_demo_patient
from planning.errors import InputError, PlanningError
from planning.optimization import (
    Objective,
    OptimizationProblem,
    RbeGroup,
    objective_and_weight_gradient,
)
from planning.planner import PlanRequest, load_plan_config, make_plan
from planning.rbe import DEFAULT_TISSUES, LemModel, Tissue, parse_tissue, tissue_by_name


@pytest.mark.parametrize("text, expected", [
    ("hsg", tissue_by_name("hsg")),
    (" Chordoma ", DEFAULT_TISSUES[0]),
    ("0.2, 0.04, 12", Tissue("user(0.2, 0.04, 12)", 0.2, 0.04, 12.0)),
    ("chordoma:averaged", Tissue("chordoma", 0.1, 0.05, 30.0, rapid_scheme="averaged")),
    ("HSG : Central", tissue_by_name("hsg", "central")),
    ("hsg:averaged", tissue_by_name("hsg")),
    ("0.2,0.04,12:averaged", Tissue("user(0.2,0.04,12)", 0.2, 0.04, 12.0,
                                    rapid_scheme="averaged")),
])
def test_parse_tissue(text, expected):
    assert parse_tissue(text) == expected


@pytest.mark.parametrize("text, message", [
    ("bone", "unknown tissue"), ("0.1,0.05", "alpha_x,beta_x,D_t"),
    ("a,b,c", "must be numbers"), ("0.1,-0.05,30", "beta_x_gy2"),
    ("chordoma:full", "rapid scheme"),
])
def test_parse_tissue_rejects(text, message):
    with pytest.raises(InputError, match=message):
        parse_tissue(text)


def test_config_tissues_are_read_in_order(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text('[tissues]\nPTV = "hsg"\nBrainstem = "0.1,0.05,30"\n')
    config = load_plan_config(path)
    assert [name for name, _ in config.tissues] == ["PTV", "Brainstem"]
    assert config.tissues[0][1] == tissue_by_name("hsg")
    path.write_text('[tissues]\nPTV = "bone"\n')
    with pytest.raises(InputError, match="tissues"):
        load_plan_config(path)


def _two_tissue_problem() -> OptimizationProblem:
    rng = np.random.default_rng(3)
    n_rows, n_spots = 50, 20
    a = sp.random(n_rows, n_spots, density=0.4, random_state=rng, format="csr") * 0.1
    a.data += 0.01
    energies = rng.uniform(5.0, 300.0, a.nnz)
    models = (LemModel(tissue_by_name("chordoma")), LemModel(tissue_by_name("hsg")))
    sums = []
    for m in models:
        for q in m.particle_tables([6], energies).quantities:
            sums.append(sp.csr_array((a.data * q[0], a.indices, a.indptr), shape=a.shape))
    rows = np.arange(n_rows)
    groups = (RbeGroup(models[0], rows[::2], (0, 1)), RbeGroup(models[1], rows[1::2], (2, 3)))
    return OptimizationProblem(dose=sp.csr_array(a), model_sums=tuple(sums),
                               structure_rows=(("T", rows[:25]), ("OAR", rows[25:])),
                               model=models[0], n_fractions=10, groups=groups)


def test_grouped_gradient_matches_finite_differences():
    problem = _two_tissue_problem()
    rng = np.random.default_rng(4)
    w = rng.uniform(0.5, 1.5, problem.dose.shape[1])
    w *= 2.0 / float(np.median(problem.rbe_dose(w)))
    # Each group's rows carry the RBE-weighted dose of its own tissue.
    d, sums = problem.dose @ w, [b @ w for b in problem.model_sums]
    for g in problem.groups:
        expected = g.model.rbe_weighted_dose_from_sums(
            d[g.rows], tuple(sums[k][g.rows] for k in g.sum_indices))
        np.testing.assert_allclose(problem.rbe_dose(w)[g.rows], expected)
    objectives = [Objective("T", "squared_deviation", 20.0, 3.0),
                  Objective("OAR", "max_dose", 15.0, 1.0)]
    value, grad = objective_and_weight_gradient(objectives, problem, w)
    assert value > 0
    direction = rng.normal(size=w.size)
    eps = 1e-6
    plus, _ = objective_and_weight_gradient(objectives, problem, w + eps * direction)
    minus, _ = objective_and_weight_gradient(objectives, problem, w - eps * direction)
    np.testing.assert_allclose(grad @ direction, (plus - minus) / (2 * eps), rtol=2e-4)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo_ct")
    write_demo_patient(path)
    return path


ARGS = ["--target", "PTV", "--dose", "60", "--fractions", "20", "--gantry", "90",
        "--spot-spacing", "4", "--grid", "4", "--device", "cpu"]


def _config(tmp_path, tissues):
    path = tmp_path / f"plan_{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps({"tissues": tissues, "optimizer": {"max_iterations": 100}}))
    return path


def _check_coverage(report: dict) -> None:
    """The single-beam 4 mm plan's PTV within 95-105 % (D95, D5) on the clinical DVH, read
    within the PTV's own tissue; the default rings' maxima raised for the stronger tissue
    around it, and the report says so."""
    ptv = report["structures"]["PTV"]
    assert ptv["d95_gy_rbe"] >= 0.95 * 60 and ptv["d5_gy_rbe"] <= 1.05 * 60, ptv
    assert any("fall-off rings' maxima were raised" in w for w in report["warnings"])


def test_plan_with_tissues_per_structure(demo_dir, tmp_path, capsys):
    config = _config(tmp_path, {"PTV": "hsg", "Brainstem": "0.1,0.05,30"})
    out = tmp_path / "out"
    rc = main(["plan", str(demo_dir), *ARGS, "--rbe", "lem1", "--config", str(config),
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    ptv = report["structures"]["PTV"]
    assert set(report["tissues"]) == {"PTV", "Brainstem"}
    assert "hsg" in report["tissues"]["PTV"] and "0.1,0.05,30" in report["tissues"]["Brainstem"]
    # The PTV as chordoma (alpha_x/beta_x 2 Gy, vs 5.1 Gy for HSG: a larger RBE) needs a
    # clearly different physical dose for the same RBE-weighted prescription.
    chordoma = make_plan(PlanRequest(
        target="PTV", total_dose_gy_rbe=60.0, n_fractions=20, gantry_deg=(90.0,),
        ct_dir=str(demo_dir), rbe_model="lem1", spot_spacing_mm=4.0, dose_grid_mm=4.0,
        device="cpu", config_path=str(_config(tmp_path, {"PTV": "chordoma"}))))
    other = chordoma.report["structures"]["PTV"]
    assert abs(other["mean_gy"] - ptv["mean_gy"]) > 0.05 * ptv["mean_gy"]
    _check_coverage(report)
    _check_files_name_the_tissues(demo_dir, out, report, capsys)


def _check_files_name_the_tissues(demo_dir, out, report, capsys) -> None:
    """The exported plan and dose name each structure's tissue (labels and record), and a
    recalculation of the exported plan applies them: the same RBE-weighted dose, not the
    plan's default tissue everywhere."""
    dose = pydicom.dcmread(out / "RTDOSE_RBE.dcm")
    assert dose.DoseComment.startswith("LEM I PTV=hsg:averaged Brainstem=")
    assert "PTV=hsg:averaged" in dose.SeriesDescription
    imported = load_rt_ion_plan(out / "RTPLAN.dcm").plan
    assert [(n, t.name) for n, t in imported.rbe_tissues] == [("PTV", "hsg"),
                                                              ("Brainstem", "user(0.1,0.05,30)")]
    assert load_rt_dose(out / "RTDOSE_RBE.dcm").rbe_tissues == imported.rbe_tissues
    again = out.parent / "recalc"
    assert main(["recalc", str(demo_dir), str(out / "RTPLAN.dcm"), "--grid", "4", "--device",
                 "cpu", "--out", str(again)]) == 0, capsys.readouterr().err
    recalc = json.loads((again / "report.json").read_text())
    for name in ("PTV", "Brainstem"):
        want, got = report["structures"][name], recalc["structures"][name]
        assert got["mean_gy_rbe"] == pytest.approx(want["mean_gy_rbe"], rel=1e-3), name
        assert got["d95_gy_rbe"] == pytest.approx(want["d95_gy_rbe"], rel=1e-3), name
    assert recalc["rbe_model"] == report["rbe_model"]
    assert load_rt_dose(again / "RTDOSE_RBE.dcm").rbe_tissues == imported.rbe_tissues
    # A comparison reads its DVHs plainly and says so for a side with tissues per structure.
    compared = out.parent / "compare"
    assert main(["compare", str(out / "RTDOSE_RBE.dcm"), str(again / "RTDOSE_RBE.dcm"),
                 "--ct", str(demo_dir), "--no-cross-model", "--device", "cpu", "--out",
                 str(compared)]) == 0, capsys.readouterr().err
    warnings = json.loads((compared / "report.json").read_text())["warnings"]
    assert sum("tissues per structure (PTV=hsg" in w for w in warnings) == 2, warnings
    # Robustness scenarios apply them too: a 0.1 % range error barely moves the dose.
    robust = out.parent / "robust"
    assert main(["robust", str(demo_dir), str(out / "RTPLAN.dcm"), "--grid", "4", "--device",
                 "cpu", "--setup-error", "0", "--range-error", "0.1", "--out",
                 str(robust)]) == 0, capsys.readouterr().err
    scenarios = json.loads((robust / "report.json").read_text())["scenarios"]
    assert len(scenarios) == 3
    for sc in scenarios:
        got = sc["structures"]["PTV"]["mean_gy_rbe"]
        assert got == pytest.approx(report["structures"]["PTV"]["mean_gy_rbe"], rel=5e-3)
    # Another model cannot apply them, and says so.
    mkm = out.parent / "recalc_mkm"
    assert main(["recalc", str(demo_dir), str(out / "RTPLAN.dcm"), "--grid", "4", "--device",
                 "cpu", "--rbe", "mkm", "--out", str(mkm)]) == 0
    warnings = json.loads((mkm / "report.json").read_text())["warnings"]
    assert any("tissues per structure (PTV=hsg" in w and "not applied" in w for w in warnings)
    assert load_rt_dose(mkm / "RTDOSE_RBE.dcm").rbe_tissues == ()


def test_tissues_need_lem1(demo_dir, tmp_path):
    request = PlanRequest(target="PTV", total_dose_gy_rbe=60.0, n_fractions=20,
                          gantry_deg=(90.0,), ct_dir=str(demo_dir), rbe_model="mkm",
                          config_path=str(_config(tmp_path, {"PTV": "hsg"})))
    with pytest.raises(PlanningError, match="LEM I only"):
        make_plan(request)
