"""Exchange view: one LEM I plan of the demo patient under mMKM and LEM I side by side.

Published magnitude (Zhang et al. 2020, Radiat Oncol 15, doi 10.1186/s13014-020-01723-z; 20
nasopharynx patients planned with LEM I, recalculated with MKM): in the target LEM/MKM = 1.37
at 3.00 Gy(RBE) per fraction and 1.46 at 2.70 Gy(RBE), rising at lower doses per fraction.
Zhang's band is reproduced at the centre of a 6 cm SOBP (tests/test_rbe_mixing.py,
tests/test_exchange_ratio.py). The demo patient's PTV is small (12 cm3) and treated with two
opposed fields, so its dose-averaged LET is high (about 85 keV/um against 46 at the 6 cm SOBP
centre) and its ratio lower: about 1.17 at 3 Gy(RBE) per fraction (LEM I). Accepted here: a
PTV mean ratio above 1 and below 1.6, and higher with the spot weights scaled down
(docs/physics.md, "LEM I / mMKM ratio in small targets").
"""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from scipy.ndimage import binary_dilation

from planning.cli import main
from planning.dicom import load_patient, load_rt_dose, load_rt_ion_plan, write_demo_patient
from planning.dose_grid import DoseGrid
from planning.engine import PlanningEngine
from planning.engine.dose_engine import DoseEngineSettings
from planning.exchange import exchange_metrics, exchange_view
from planning.hlut import default_hlut
from planning.machine import load_machine
from planning.planner import structure_rows
from planning.rbe import LemModel, MkmModel
from planning.rbe.record import fit_label
from planning.structure_dose import sampled_structures


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    base = tmp_path_factory.mktemp("exchange")
    write_demo_patient(base / "ct")
    out = base / "out"
    rc = main(["plan", str(base / "ct"), "--target", "PTV", "--dose", "60", "--fractions", "20",
               "--gantry", "90,270", "--rbe", "lem1", "--spot-spacing", "4", "--grid", "4",
               "--exchange", "--out", str(out)])
    assert rc == 0
    return base / "ct", out, json.loads((out / "report.json").read_text())


def test_exchange_files_and_report(planned):
    _, out, report = planned
    ex = report["exchange"]
    assert ex["mkm_model"].startswith("mMKM") and ex["lem_model"].startswith("LEM I")
    assert {"RTDOSE_RBE_MKM.dcm", "RTDOSE_RBE_LEM1.dcm"} <= set(report["files"])
    # Each exchange dose is labelled with the model that computed it, whatever the plan's:
    # the complete record, and labels shortened by whole items only.
    for name, model in (("RTDOSE_RBE_MKM.dcm", MkmModel()),
                        ("RTDOSE_RBE_LEM1.dcm", LemModel())):
        dose = load_rt_dose(out / name)
        assert dose.dose_type == "EFFECTIVE"
        assert dose.rbe == model
        assert dose.comment == fit_label(model.describe(), 64)
        series = pydicom.dcmread(out / name).SeriesDescription
        assert series == fit_label(f"IonPlan dose effective {model.describe()}", 64)
    assert ex["mkm_model"] == MkmModel().describe() and ex["lem_model"] == LemModel().describe()
    assert load_rt_dose(out / "RTDOSE_RBE.dcm").rbe == LemModel()
    assert load_rt_ion_plan(out / "RTPLAN.dcm").plan.rbe == LemModel()
    lem = load_rt_dose(out / "RTDOSE_RBE_LEM1.dcm").dose_gy
    planned_lem = load_rt_dose(out / "RTDOSE_RBE.dcm").dose_gy
    np.testing.assert_allclose(lem, planned_lem, rtol=1e-3, atol=1e-3 * planned_lem.max())
    ptv = ex["structures"]["PTV"]
    assert set(ptv) >= {"mkm_d95_gy_rbe", "lem_d95_gy_rbe", "mkm_mean_gy_rbe",
                        "lem_mean_gy_rbe", "ratio_mean", "ratio_median"}
    # The plan is optimized under LEM I to 3 Gy(RBE) per fraction; mMKM gives less.
    assert ptv["lem_mean_gy_rbe"] == pytest.approx(60.0, rel=0.03)
    assert ptv["mkm_mean_gy_rbe"] < ptv["lem_mean_gy_rbe"]
    assert 1.0 < ptv["ratio_mean"] < 1.6


@pytest.mark.xfail(strict=True, reason="physics, not a bug: the demo PTV (12 cm3, two opposed "
                   "fields) has LETd ~85 keV/um (6 cm SOBP centre: 46), and LEM I / mMKM falls "
                   "with LET; measured 1.17 at 3 Gy(RBE)/fx LEM (generator 1.1.0, averaged LEM "
                   "scheme), where a 2 cm SOBP centre gives 1.16 and the 6 cm centre 1.32 "
                   "(averaged scheme, the default; docs/physics.md, 'LEM I / mMKM ratio in "
                   "small targets'); "
                   "Zhang 2020's 1.37 is for larger nasopharynx targets")
def test_exchange_ptv_ratio_matches_zhang_2020(planned):
    assert 1.2 <= planned[2]["exchange"]["structures"]["PTV"]["ratio_mean"] <= 1.6


def test_exchange_ratio_rises_at_lower_dose_per_fraction(planned):
    ct_dir, out, report = planned
    patient = load_patient(ct_dir)
    assert patient.structure_set is not None
    ct = patient.ct
    ct_grid = DoseGrid(ct.shape, ct.spacing_mm, ct.origin_mm)
    dose_grid = DoseGrid.covering(ct_grid, 4.0)
    ptv = np.zeros(dose_grid.n_voxels, dtype=bool)
    ptv[structure_rows(patient.structure_set.get("PTV").mask.to_dense(), ct_grid,
                       dose_grid)] = True
    # the PTV's DVH samples read the dose up to a voxel beyond its voxels
    around_ptv = binary_dilation(ptv.reshape(dose_grid.shape), np.ones((3, 3, 3)))
    samples = {s.name: d for s, d in sampled_structures(patient, dose_grid, names=["PTV"])}
    plan = load_rt_ion_plan(out / "RTPLAN.dcm").plan
    weights = np.concatenate([b.weights for b in plan.beams])
    rsp = default_hlut().hu_to_rsp(np.asarray(ct.hu, dtype=np.float32))

    engine = PlanningEngine(load_machine(), rsp, ct_grid, dose_grid,
                            [b.beam for b in plan.beams], [b.spots for b in plan.beams],
                            DoseEngineSettings(device="cpu"), calc_mask=around_ptv)  # fast

    def ptv_ratio(scale: float) -> float:
        view = exchange_view(engine, scale * weights, 20)
        ratio = exchange_metrics(view, samples)["PTV"]["ratio_mean"]
        assert ratio is not None
        return ratio

    full, low = ptv_ratio(1.0), ptv_ratio(0.3)
    assert full == pytest.approx(report["exchange"]["structures"]["PTV"]["ratio_mean"],
                                 rel=0.01)
    assert low > full + 0.05
