"""Robust evaluation: scenario sets, physics of range and setup scenarios, ionplan robust.

The physics checks use a water phantom and one mono-energetic field of the synthetic machine
(tests/synthetic_machine.py), with expectations derived by hand:

- stopping power scaled by s moves a point at water-equivalent depth w to geometric depth
  w / s, so the distal 80 % point at depth z80 moves by z80 (1 - 1/s) (3.38 % of its depth
  for s = 1.035);
- an isocentre shift across the beam moves the dose by the shift; one along the beam, in
  water, moves nothing (the depth dose is set by the water-equivalent depth from the surface).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pydicom
import pytest
from pypdf import PdfReader

from planning.beams import Beam, SpotMap
from planning.cli import main
from planning.compare.recalc import RecalcSetup
from planning.dicom import load_rt_dose
from planning.dose_grid import DoseGrid
from planning.engine.dose_engine import DoseEngineSettings
from planning.errors import InputError
from planning.patient import CtVolume, Patient, PatientStudy
from planning.plan import BeamPlan, Plan, Prescription
from planning.rbe import PhysicalDose
from planning.robust import (
    RobustSettings,
    Scenario,
    ScenarioInputs,
    make_scenarios,
    position_doses,
    scenario_dose,
    worst_case,
)
from tests.synthetic_machine import make_synthetic_machine
from tests.test_recalc import demo_plan_dirs

SHAPE = (15, 200, 31)        # (z, y, x); the beam (gantry 0) travels +y
SPACING = (2.0, 1.0, 2.0)


@pytest.fixture(scope="module")
def water_field():
    """ScenarioInputs of one mono-energetic 25-spot field (peak near 110 mm) in water."""
    synth = make_synthetic_machine(min_range_mm=20.0, max_range_mm=160.0, peak_spacing_mm=4.0)
    nz, ny, nx = SHAPE
    sz, sy, sx = SPACING
    grid = DoseGrid(SHAPE, SPACING, (-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, -(nz - 1) / 2 * sz))
    study = PatientStudy("Water", "W", "", "O", "1.2.3", "1", "", "", "", "")
    ct = CtVolume(np.zeros(SHAPE, np.int16), SPACING, grid.origin_mm, "HFS", (1, 0, 0, 0, 1, 0),
                  "1.2.4", "1.2.5", tuple(f"1.2.6.{k}" for k in range(nz)), study)
    k = int(np.argmin(np.abs(synth.peak_depth_mm - 110.0)))
    u, v = np.meshgrid(np.arange(-10.0, 11.0, 5.0), np.arange(-10.0, 11.0, 5.0))
    spots = SpotMap(np.full(u.size, synth.energies_mev_u[k]), np.zeros(u.size, int),
                    u.ravel(), v.ravel(), (5.0, 5.0), (-10.0, -10.0))
    beam = Beam((0.0, 0.0, 0.0), 0.0, 0.0, "G0")
    weights = np.ones(u.size)
    plan = Plan("water", synth.name, (BeamPlan(beam, spots, weights),),
                Prescription("none", 1.0, 1), "physical dose")
    setup = RecalcSetup(Patient(ct, None), plan, synth, np.ones(SHAPE, np.float32), grid, grid,
                        (beam,), (spots,), weights, None,
                        DoseEngineSettings(device="cpu", n_threads=2))
    return ScenarioInputs(setup, PhysicalDose(), None, 1), grid


def _distal_80_mm(dose: np.ndarray, grid: DoseGrid) -> float:
    """Depth (mm from the phantom's entrance face) of the distal 80 % point of the central
    axis, linearly interpolated."""
    prof = dose[SHAPE[0] // 2, :, SHAPE[2] // 2].astype(np.float64)
    i = int(np.argmax(prof))
    level = 0.8 * prof[i]
    j = i + int(np.argmax(prof[i:] < level))
    a, b = prof[j - 1], prof[j]
    return (j - 1 + (a - level) / (a - b) + 0.5) * grid.spacing_mm[1]


@pytest.fixture(scope="module")
def nominal_dose(water_field):
    inputs, _ = water_field
    return scenario_dose(inputs, Scenario("nominal")).physical_dose_gy


@pytest.mark.parametrize("error_pct", [3.5, -3.5])
def test_range_scenario_moves_the_distal_falloff_by_the_water_equivalent_change(
        water_field, nominal_dose, error_pct):
    inputs, grid = water_field
    z80 = _distal_80_mm(nominal_dose, grid)
    assert 95.0 < z80 < 125.0  # the field's peak was chosen near 110 mm
    scaled = scenario_dose(inputs, Scenario("r", error_pct)).physical_dose_gy
    expected = z80 * (1.0 - 1.0 / (1.0 + error_pct / 100.0))   # +3.72 mm / -4.00 mm here
    # 1 mm depth voxels, linear interpolation on the falloff: 0.25 mm.
    assert z80 - _distal_80_mm(scaled, grid) == pytest.approx(expected, abs=0.25)


def test_lateral_setup_shift_moves_the_dose_by_the_shift(water_field, nominal_dose):
    inputs, _ = water_field
    shifted = scenario_dose(inputs, Scenario("s", 0.0, (4.0, 0.0, 0.0))).physical_dose_gy
    top = float(nominal_dose.max())
    # +4 mm in x = 2 voxels of 2 mm: the shifted dose at x is the nominal one at x - 4 mm.
    np.testing.assert_allclose(shifted[:, :, 4:29], nominal_dose[:, :, 2:27], atol=0.01 * top)
    # ... and it is not the unshifted dose (the check can fail).
    assert np.abs(shifted - nominal_dose).max() > 0.1 * top
    centre_x = lambda d: float((d.sum(axis=(0, 1)) * np.arange(SHAPE[2])).sum() / d.sum())  # noqa: E731
    assert (centre_x(shifted) - centre_x(nominal_dose)) * SPACING[2] == pytest.approx(4.0,
                                                                                       abs=0.1)


def test_setup_shift_along_the_beam_in_water_keeps_the_depth_dose(water_field, nominal_dose):
    inputs, grid = water_field
    along = scenario_dose(inputs, Scenario("s", 0.0, (0.0, 3.0, 0.0))).physical_dose_gy
    assert _distal_80_mm(along, grid) == pytest.approx(_distal_80_mm(nominal_dose, grid),
                                                       abs=0.25)


def test_range_scenario_by_scaled_wepl_equals_a_trace_through_the_scaled_stopping_power(
        water_field):
    """The engine scales the WEPL for a range error; tracing RSP x 1.035 gives the same dose."""
    inputs, _ = water_field
    by_wepl = scenario_dose(inputs, Scenario("r", 3.5)).physical_dose_gy
    traced_setup = dataclasses.replace(inputs.setup,
                                       rsp=(inputs.setup.rsp * np.float32(1.035)))
    traced = scenario_dose(dataclasses.replace(inputs, setup=traced_setup),
                           Scenario("nominal")).physical_dose_gy
    top = float(traced.max())
    # The float32 running sum of the trace differs from the scaled WEPL by ~1e-5 relative
    # (~0.001 mm at 110 mm): up to ~2e-4 of the maximum on the distal fall-off.
    np.testing.assert_allclose(by_wepl, traced, atol=1e-3 * top)
    # ... and differs from the unscaled dose (the comparison can fail).
    assert np.abs(by_wepl - scenario_dose(inputs, Scenario("nominal")).physical_dose_gy
                  ).max() > 0.1 * top


def test_scenarios_of_one_position_share_the_traced_beams_and_equal_separate_runs(water_field):
    inputs, _ = water_field
    shift = (0.0, 0.0, 4.0)
    group = [Scenario("s", 0.0, shift), Scenario("s r+", 3.5, shift),
             Scenario("s r-", -3.5, shift)]
    together = position_doses(inputs, group)
    assert [d.scenario for d in together] == group
    for d in together:
        alone = scenario_dose(inputs, d.scenario)
        np.testing.assert_array_equal(d.physical_dose_gy, alone.physical_dose_gy)
    with pytest.raises(InputError, match="share one setup shift"):
        position_doses(inputs, [Scenario("a", 0.0, shift), Scenario("b")])


def test_combined_only_set_is_the_nominal_and_the_corners():
    scenarios = make_scenarios(RobustSettings(3.5, 3.0, 6, combined=True, combined_only=True))
    assert len(scenarios) == 13 and scenarios[0].is_nominal
    assert all(s.range_error_pct in (3.5, -3.5) and float(np.linalg.norm(s.shift_mm))
               == pytest.approx(3.0) for s in scenarios[1:])
    assert len({(s.range_error_pct, s.shift_mm) for s in scenarios}) == 13
    assert len(make_scenarios(RobustSettings(3.5, 3.0, 14, combined=True,
                                             combined_only=True))) == 29
    with pytest.raises(InputError, match="combined"):
        RobustSettings(combined_only=True)
    with pytest.raises(InputError, match="both"):
        RobustSettings(0.0, 3.0, combined=True, combined_only=True)
    for range_pct, setup_mm in ((0.0, 3.0), (3.5, 0.0)):  # no combination to add (review)
        with pytest.raises(InputError, match="combined scenarios need both"):
            RobustSettings(range_pct, setup_mm, combined=True)


def test_scenario_sets():
    assert len(make_scenarios(RobustSettings())) == 9
    assert len(make_scenarios(RobustSettings(setup_directions=14))) == 17
    assert len(make_scenarios(RobustSettings(combined=True))) == 21
    assert len(make_scenarios(RobustSettings(setup_error_mm=0.0))) == 3
    with pytest.raises(InputError, match="nothing to evaluate"):  # only the nominal one
        RobustSettings(range_error_pct=0.0, setup_error_mm=0.0)
    scenarios = make_scenarios(RobustSettings(2.0, 5.0, 14, combined=True))
    assert len(scenarios) == 45 and len({s.name for s in scenarios}) == 45
    assert scenarios[0].is_nominal
    for s in scenarios[1:]:
        length = float(np.linalg.norm(s.shift_mm))
        assert length in (0.0, pytest.approx(5.0))
        assert s.range_error_pct in (0.0, 2.0, -2.0)
        assert not s.is_nominal
    for bad in ({"range_error_pct": -1.0}, {"setup_error_mm": float("nan")},
                {"setup_directions": 8}):
        with pytest.raises(InputError):
            RobustSettings(**bad)  # type: ignore[arg-type]


def test_worst_case_takes_low_target_coverage_and_high_organ_dose():
    def sc(d95, mean):
        m = {"d98_gy_rbe": d95 - 1, "d95_gy_rbe": d95, "d50_gy_rbe": d95 + 1,
             "d2_gy_rbe": d95 + 2, "mean_gy_rbe": mean, "max_gy_rbe": mean + 5}
        return {"structures": {"PTV": m}}

    w = worst_case([sc(60.0, 10.0), sc(55.0, 12.0), sc(61.0, 9.0)])["PTV"]
    assert w["d95_gy_rbe_min"] == 55.0 and w["d95_gy_rbe_max"] == 61.0
    assert w["mean_gy_rbe_max"] == 12.0 and w["max_gy_rbe_max"] == 17.0


def test_robust_cli_nominal_equals_recalc_and_writes_the_envelope(tmp_path_factory):
    ct, plan_dir = demo_plan_dirs(tmp_path_factory)
    out, rec = tmp_path_factory.mktemp("robust"), tmp_path_factory.mktemp("recalc8")
    common = ["--grid", "8", "--device", "cpu"]
    assert main(["recalc", str(ct), str(plan_dir / "RTPLAN.dcm"), *common,
                 "--out", str(rec)]) == 0
    assert main(["robust", str(ct), str(plan_dir / "RTPLAN.dcm"), *common, "--setup-error",
                 "0", "--range-error", "3.5", "--out", str(out)]) == 0
    nominal, recalc = load_rt_dose(out / "RTDOSE_RBE.dcm"), load_rt_dose(rec / "RTDOSE_RBE.dcm")
    assert nominal.grid == recalc.grid
    np.testing.assert_array_equal(nominal.dose_gy, recalc.dose_gy)
    lo, hi = load_rt_dose(out / "RTDOSE_RBE_MIN.dcm"), load_rt_dose(out / "RTDOSE_RBE_MAX.dcm")
    tol = 1e-5 * float(hi.dose_gy.max())  # DICOM scaling of three files
    assert np.all(lo.dose_gy <= nominal.dose_gy + tol)
    assert np.all(hi.dose_gy >= nominal.dose_gy - tol)
    assert float((hi.dose_gy - lo.dose_gy).max()) > 0.05 * float(hi.dose_gy.max())
    assert lo.rbe is not None and lo.rbe.describe() == nominal.rbe.describe()
    # The envelopes refer to the RTPLAN.dcm written beside them (the received plan's UID).
    plan_uid = str(pydicom.dcmread(plan_dir / "RTPLAN.dcm").SOPInstanceUID)
    assert pydicom.dcmread(out / "RTPLAN.dcm").SOPInstanceUID == plan_uid
    assert lo.referenced_plan_uid == hi.referenced_plan_uid == plan_uid
    rep = json.loads((out / "report.json").read_text())
    names = [s["name"] for s in rep["scenarios"]]
    assert names == ["nominal", "SPR +3.5% (short)", "SPR -3.5% (long)"]
    ptv = {s["name"]: s["structures"]["PTV"] for s in rep["scenarios"]}
    assert set(ptv["nominal"]) >= {"d98_gy_rbe", "d95_gy_rbe", "mean_gy_rbe", "max_gy_rbe"}
    assert rep["scenarios"][1]["shift_mm"] == [0.0, 0.0, 0.0]
    assert rep["scenarios"][1]["range_error_pct"] == 3.5
    # Nominal metrics are the recalculation's (the same cube).
    rec_rep = json.loads((rec / "report.json").read_text())
    assert ptv["nominal"]["d95_gy_rbe"] == pytest.approx(rec_rep["structures"]["PTV"]
                                                         ["d95_gy_rbe"], rel=1e-6)
    band = rep["dvh_bands_gy_rbe"]["PTV"]
    assert all(a <= n + 1e-6 <= b + 2e-6 for a, n, b in zip(
        band["dose_min_gy_rbe"], band["dose_nominal_gy_rbe"], band["dose_max_gy_rbe"],
        strict=True))
    assert rep["worst_case"]["structures"]["PTV"]["d95_gy_rbe_min"] <= ptv["nominal"][
        "d95_gy_rbe"]
    html = (out / "report.html").read_text()
    assert "<svg" in html and "SPR -3.5% (long)" in html
    for name in ("RTPLAN.dcm", "RTDOSE_RBE_MIN.dcm", "RTDOSE_RBE_MAX.dcm", "report.html"):
        assert name in rep["files"]
    # The plan document beside report.html, named after the RT Plan Label, with the
    # robustness section: settings, and the PTV's scenario rows as report.json has them.
    (pdf,) = out.glob("*_report.pdf")
    assert pdf.name in rep["files"]
    assert pdf.name.startswith(f"{rep['patient']['patient_id']}_{rep['plan']['label']}_")
    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    section = text[text.index("Robustness"):]
    assert "Stopping-power error" in section and "+/-3.5 %" in section
    ptv_rows = section[section.index("PTV (target)"):].splitlines()
    at = ptv_rows.index("SPR -3.5% (long)")
    assert ptv_rows[at + 2] == f"{rep['scenarios'][2]['structures']['PTV']['d95_gy_rbe']:.2f}"
    assert not list(out.glob(".*.tmp"))


def test_robust_under_the_physical_model_writes_physical_envelopes(tmp_path_factory, capsys):
    """No file calls a physical dose RBE-weighted: the envelopes are PHYSICAL and named so."""
    ct, plan_dir = demo_plan_dirs(tmp_path_factory)
    out = tmp_path_factory.mktemp("robust_physical")
    assert main(["robust", str(ct), str(plan_dir / "RTPLAN.dcm"), "--grid", "8", "--device",
                 "cpu", "--rbe", "physical", "--setup-error", "0", "--range-error", "3.5",
                 "--out", str(out)]) == 0
    line = capsys.readouterr().out.splitlines()[-1]  # (after the demo plan's, the first time)
    assert not list(out.glob("RTDOSE_RBE*.dcm"))
    nominal = load_rt_dose(out / "RTDOSE_PHYSICAL.dcm")
    lo, hi = (load_rt_dose(out / "RTDOSE_PHYSICAL_MIN.dcm"),
              load_rt_dose(out / "RTDOSE_PHYSICAL_MAX.dcm"))
    assert lo.dose_type == hi.dose_type == "PHYSICAL"
    tol = 1e-5 * float(hi.dose_gy.max())
    assert np.all(lo.dose_gy <= nominal.dose_gy + tol)
    assert np.all(hi.dose_gy >= nominal.dose_gy - tol)
    rep = json.loads((out / "report.json").read_text())
    assert {"RTDOSE_PHYSICAL_MIN.dcm", "RTDOSE_PHYSICAL_MAX.dcm"} <= set(rep["files"])
    # The line names every file written, the plan and the nominal dose too (it named only
    # the envelopes, the plan document and the reports: review).
    assert {"RTPLAN.dcm", "RTDOSE_PHYSICAL.dcm"} <= set(rep["files"])
    assert set(rep["files"]) == {f.name for f in out.iterdir()}
    assert line.startswith(f"wrote {', '.join(rep['files'][:-1])} and report.json to {out}; "
                           "3 scenarios; PTV D95 ")


def test_robust_cli_refuses_bad_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["robust", str(tmp_path), "x.dcm", "--setup-directions", "8",
              "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert main(["robust", str(tmp_path / "none"), "x.dcm", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ionplan: error: ") and "not a folder" in err[-1]


def test_report_html_worst_case_of_an_organ_is_its_highest_dose():
    """report.html's "Worst case per structure" gave every structure a target's extremes: an
    organ's lowest D98/D95/D50 (its best case) under that heading (review). An organ's worst
    case is its highest dose by every metric, a target's its lowest D98/D95/D50 and highest
    D2/Dmean/Dmax, and the table says which."""
    import re

    from planning.robust import worst_case
    from planning.robust_report import _worst_table

    keys = ("d98_gy_rbe", "d95_gy_rbe", "d50_gy_rbe", "d2_gy_rbe", "mean_gy_rbe", "max_gy_rbe")

    def scenario(name, ptv, organ):
        return {"name": name, "structures": {"PTV": dict(zip(keys, ptv, strict=True)),
                                             "Brainstem": dict(zip(keys, organ, strict=True))}}

    scenarios = [scenario("nominal", (53, 54, 57, 59, 57, 60), (0.25, 0.75, 13.5, 28, 12.5, 42)),
                 scenario("range -", (46, 48, 54, 60, 56, 61), (0.125, 0.5, 11.5, 27, 11, 40)),
                 scenario("shift", (52, 53, 58, 64, 59, 67), (0.375, 1.0, 14.5, 31, 13.5, 46))]
    rep = {"prescription": {"target": "PTV"},
           "structures": {"PTV": {"interpreted_type": "PTV"},
                          "Brainstem": {"interpreted_type": "ORGAN"}},
           "scenarios": scenarios, "worst_case": {"structures": worst_case(scenarios)}}
    html = _worst_table(rep)
    rows = {cells[0]: cells[1:] for cells in
            (re.findall(r"<td[^>]*>([^<]*)</td>", r) for r in html.split("<tr>")[2:])}
    assert [float(v) for v in rows["Brainstem"][:6]] == [0.375, 1.0, 14.5, 31, 13.5, 46]
    assert rows["Brainstem"][6] == "max of each"
    assert [float(v) for v in rows["PTV"][:6]] == [46, 48, 54, 64, 59, 67]
    assert rows["PTV"][6] == "min D98, D95, D50; max D2, Dmean, Dmax"


def test_report_html_gives_the_prescription_in_its_own_unit_and_model():
    """robust --rbe physical of a 66 Gy(RBE) LEM I plan: report.html said "Prescription 66 Gy
    to PTV" (the dose's unit) and "setup error 0 mm in 6 directions" without setup scenarios
    (user review)."""
    from planning.robust_report import render_robust_html

    lem = "LEM I chordoma rapid=averaged ax=0.1 bx=0.05 Dt=30Gy Rn=5um"
    rep = {"prescription": {"target": "PTV", "total_dose_gy_rbe": 66.0, "n_fractions": 22,
                            "unit": "Gy(RBE)", "model": "LEM I chordoma, averaged"},
           "dose_unit": "Gy", "rbe_model": "physical dose", "plan_rbe_model": lem,
           "robust": {"n_scenarios": 3, "range_error_pct": 3.5, "setup_error_mm": 0.0,
                      "setup_directions": 6, "combined": False, "combined_only": False},
           "dvh_bands_gy_rbe": {}, "worst_case": {"structures": {}}, "scenarios": [],
           "structures": {}}
    html = render_robust_html(rep)
    assert ("3 scenarios: stopping power error &plusmn;3.5 % (+: ranges shorter), no setup "
            "scenarios. RBE model: physical dose. Prescription 66 Gy(RBE) (LEM I chordoma, "
            "averaged) to PTV in 22 fractions.") in html
    assert "Doses in Gy (physical dose), whole plan." in html
    own = render_robust_html({**rep, "rbe_model": lem, "dose_unit": "Gy(RBE)",
                              "robust": {**rep["robust"], "range_error_pct": 0.0,
                                         "setup_error_mm": 3.0, "setup_directions": 14}})
    assert ("no range scenarios, setup error 3 mm in 14 directions. RBE model: "
            f"{lem}. Prescription 66 Gy(RBE) to PTV") in own
