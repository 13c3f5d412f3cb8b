"""Exchange view of a LEM I plan with LEM I tissues per structure (a plan configuration's
``[tissues]``): its LEM I side is the plan's own LEM I model, tissues included.

It was the plan's ``--tissue`` class in every voxel: on the demo patient (PTV chordoma,
Brainstem a user tissue, hsg elsewhere) the exchange's PTV D50 read 30.5 Gy(RBE) against the
plan's own 66.3 Gy(RBE), both called "LEM I". The expectation here is the plan's own
RBE-weighted dose, computed by the plan's forward pass (planning.engine.forward_dose), not by
the exchange view.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from planning import api
from planning.cli import main
from planning.dicom import load_patient, load_rt_dose, write_demo_patient
from planning.rbe import LemModel, Tissue, tissue_by_name
from planning.workspace.plan_arrays import plan_from_record, plan_to_record

TISSUES = (("PTV", tissue_by_name("chordoma")),
           ("Brainstem", Tissue("user(0.313,0.0615,8)", 0.313, 0.0615, 8.0)))
LABEL_START = ("LEM I PTV=chordoma:averaged Brainstem=user(0.313,0.0615,8):averaged elsewhere "
               "hsg rapid=averaged")


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    base = tmp_path_factory.mktemp("exchange_tissues")
    write_demo_patient(base / "ct")
    config = base / "tissues.toml"
    config.write_text('[tissues]\nPTV = "chordoma"\nBrainstem = "0.313,0.0615,8"\n')
    out = base / "out"
    rc = main(["plan", str(base / "ct"), "--target", "PTV", "--dose", "66", "--fractions", "22",
               "--gantry", "90,270", "--rbe", "lem1", "--tissue", "hsg", "--config",
               str(config), "--spot-spacing", "6", "--grid", "6", "--exchange",
               "--out", str(out)])
    assert rc == 0
    return base / "ct", out, json.loads((out / "report.json").read_text())


def test_the_plans_exchange_lem_side_is_the_plans_own_lem_dose(planned):
    _, out, report = planned
    assert report["rbe_model"].startswith(LABEL_START)
    ex = report["exchange"]
    assert ex["lem_model"] == report["rbe_model"]
    for name in ("PTV", "Brainstem", "Brain"):
        own, side = report["structures"][name], ex["structures"][name]
        for k in ("d95", "d50", "mean"):
            assert side[f"lem_{k}_gy_rbe"] == pytest.approx(own[f"{k}_gy_rbe"], rel=1e-6,
                                                            abs=1e-6)
    # The plan reaches its prescription under its own model: 66 Gy(RBE) at the PTV's median.
    assert ex["structures"]["PTV"]["lem_d50_gy_rbe"] == pytest.approx(66.0, rel=0.05)
    lem = load_rt_dose(out / "RTDOSE_RBE_LEM1.dcm")
    own = load_rt_dose(out / "RTDOSE_RBE.dcm")
    np.testing.assert_allclose(lem.dose_gy, own.dose_gy, rtol=0,
                               atol=1e-5 * float(own.dose_gy.max()))
    assert lem.rbe == LemModel(tissue_by_name("hsg")) and lem.rbe_tissues == TISSUES
    # 64 characters: the Brainstem's long custom tissue with its scheme does not fit after
    # the PTV's; cut by whole items, and marked.
    assert lem.comment == "LEM I PTV=chordoma:averaged ..."


def test_recalc_and_cross_model_views_take_the_plans_tissues(planned):
    ct, out, _ = planned
    patient = load_patient(ct)
    own = api.recalculate_plan(patient, out / "RTPLAN.dcm", grid_mm=6.0, exchange=True)
    x = own.exchange
    assert x is not None and x.lem_structure_tissues == TISSUES
    assert x.lem_model == own.report["rbe_model"] and x.lem_model.startswith(LABEL_START)
    np.testing.assert_allclose(x.lem_dose_gy_rbe, own.rbe_dose_gy_rbe, rtol=0,
                               atol=1e-5 * float(own.rbe_dose_gy_rbe.max()))
    # Recalculated under mMKM: the exchange's LEM I is still the plan's own.
    mkm = api.recalculate_plan(patient, out / "RTPLAN.dcm", rbe="mkm", grid_mm=6.0,
                               exchange=True)
    assert mkm.exchange is not None and mkm.exchange.lem_model == x.lem_model
    np.testing.assert_allclose(mkm.exchange.lem_dose_gy_rbe, own.rbe_dose_gy_rbe, rtol=0,
                               atol=1e-5 * float(own.rbe_dose_gy_rbe.max()))
    view = api.cross_model_view(patient, out / "RTPLAN.dcm", grid_mm=6.0)
    assert view.view.lem_model == x.lem_model
    ptv = own.report["structures"]["PTV"]
    assert view.structures["PTV"]["lem_d50_gy_rbe"] == pytest.approx(ptv["d50_gy_rbe"],
                                                                      rel=1e-6)
    # A workspace keeps the LEM I side's tissues (and reads each structure within its own).
    meta, arrays = plan_to_record(own)
    back = plan_from_record(json.loads(json.dumps(meta)), arrays, patient).exchange
    assert back is not None and back.lem_structure_tissues == TISSUES
    assert back.lem_labels is not None and back.lem_model == x.lem_model


def test_a_plan_saved_with_the_older_label_lists_its_exchange_lem_side_once(planned):
    """A workspace saved before the labels of LEM I tissues per structure named each
    structure's rapid scheme keeps the plan's older label in its report; its exchange view's
    LEM I label is made anew. The Dose tab compared the two labels and listed the plan's own
    LEM I dose a second time, as the exchange's LEM I side."""
    from app.session import PlanEntry

    ct, out, _ = planned
    patient = load_patient(ct)
    own = api.recalculate_plan(patient, out / "RTPLAN.dcm", grid_mm=6.0, exchange=True)
    meta, arrays = plan_to_record(own)
    saved = json.loads(json.dumps(meta))
    older = "LEM I PTV=chordoma Brainstem=user(0.313,0.0615,8) elsewhere hsg rapid=averaged"
    assert saved["report"]["rbe_model"].startswith(LABEL_START)
    saved["report"]["rbe_model"] = older + saved["report"]["rbe_model"][len(LABEL_START):]
    restored = PlanEntry("Plan 1", plan_from_record(saved, arrays, patient), "")
    assert restored.result.exchange is not None
    assert restored.result.exchange.lem_model.startswith(LABEL_START)  # today's label
    assert restored.own_exchange_key == "lem1"
    keys = [layer.key for layer in restored.layers()]
    assert "lem1" not in keys and {"rbe", "mkm", "ratio"} <= set(keys)
    assert restored.layer("lem1").cube is restored.result.rbe_dose_gy_rbe


#: How the plan's own report names its model in short (report.json ``prescription.model``):
#: each structure's tissue and scheme, then the tissue elsewhere (not the default tissue alone).
SHORT_NAME = "LEM I PTV=chordoma:averaged Brainstem=user(0.313,0.0615,8):averaged, elsewhere hsg"


def test_an_imported_plan_with_tissues_is_named_with_them(planned, tmp_path, capsys):
    """The plan's RTPLAN holds its tissues per structure; imported, it was named by its
    default tissue only ("LEM I hsg, averaged") in recalc's terminal line, report.json,
    PDF and warning, and in ``ionplan info`` (review)."""
    from planning.dicom.info import folder_info, format_folder_info
    from planning.document.from_plan import plan_document, prescription_model

    ct, out, report = planned
    full = report["rbe_model"]
    assert report["prescription"]["model"] == f"{SHORT_NAME}, averaged"
    capsys.readouterr()
    same = tmp_path / "same"
    assert main(["recalc", str(ct), str(out / "RTPLAN.dcm"), "--grid", "6", "--out",
                 str(same)]) == 0
    line = capsys.readouterr().out
    rep = json.loads((same / "report.json").read_text())
    assert rep["prescription"]["model"] == f"{SHORT_NAME}, averaged"
    assert rep["plan_rbe_model"] == full == rep["rbe_model"]
    # Its own model: the % are of its own prescription, no model to tell apart.
    assert "% of 66 Gy(RBE)" in line and "prescription" not in line.split("PTV", 1)[1]
    assert not any("optimized with" in w for w in rep["warnings"])

    mkm = tmp_path / "mkm"
    assert main(["recalc", str(ct), str(out / "RTPLAN.dcm"), "--grid", "6", "--rbe", "mkm",
                 "--out", str(mkm)]) == 0
    line = capsys.readouterr().out
    rep = json.loads((mkm / "report.json").read_text())
    assert rep["prescription"]["model"] == f"{SHORT_NAME}, averaged"
    assert rep["plan_rbe_model"] == full
    assert f"of the {SHORT_NAME}, averaged prescription of 66 Gy(RBE)" in line
    assert any(w.endswith(f"the plan was optimized with {full}.") for w in rep["warnings"])
    result = api.recalculate_plan(load_patient(ct), out / "RTPLAN.dcm", rbe="mkm",
                                  grid_mm=6.0)
    assert prescription_model(result) == f"{SHORT_NAME}, averaged"
    facts = dict(plan_document(result, "Plan 1").plan_facts.rows)
    assert facts["Prescribed dose"].endswith(f"({SHORT_NAME}, averaged)")

    (listed,) = folder_info(out).plans
    assert listed.rbe_model == full
    assert f"RBE model: {full}" in format_folder_info(folder_info(out))
