"""Import RT plan of a plan in MU: the window asks for the machine's monitor calibration,
asks again with the reason when it does not parse, and recalculates with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
import pytest

pytestmark = pytest.mark.gui


def test_a_plan_in_mu_asks_for_the_monitor_calibration(gui, tmp_path):
    from app.ionplan_app import IonPlanApp
    from planning.dicom import export_rt_ion_plan
    from planning.machine import load_machine
    from planning.monitor_calibration import parse_monitor_calibration
    from tests.test_recalc import _to_mu
    from tests.workspace_factory import synthetic_plan_result

    app = gui.start(IonPlanApp(user_data_dir_override=str(tmp_path / "data")))
    gui.wait_until(lambda: app.session.patient is not None or app.last_error, 120,
                   "the demo patient")
    patient = app.session.patient
    made = synthetic_plan_result(patient, 5).plan
    made = dataclasses.replace(made, beams=tuple(dataclasses.replace(b, range_shifter_wet_mm=0.0)
                                                 for b in made.beams))  # none modelled
    path = tmp_path / "RTPLAN_MU.dcm"
    export_rt_ion_plan(made, patient, path, sad_mm=load_machine().sad_mm)
    ds = pydicom.dcmread(path)
    _to_mu(ds, parse_monitor_calibration("3.1e5@300").at)
    ds.save_as(path)
    app.planning.plan_panel.grid_mm.text = "8"

    def dialog():
        return gui.find(lambda w: getattr(w, "name", "") == "monitor_calibration_dialog")

    app.import_plan_file(str(path))
    gui.frames(3)
    assert app.session.plans == []  # nothing computed before the calibration is given
    dialog().text_input.text = "3.1e5@abc"
    gui.click(dialog().submit_button)
    gui.advance(0.5)
    asked = dialog()
    assert "not a number" in " ".join(getattr(w, "text", "") for w in asked.walk())
    assert asked.text_input.text == ""  # not kept: it did not parse
    asked.text_input.text = "3.1e5@300"
    gui.screenshot("monitor_calibration_dialog")
    gui.click(asked.submit_button)
    gui.wait_until(lambda: app.session.plans or app.last_error, 300, "the recalculated plan")
    assert not app.last_error, app.last_error
    notes = gui.find(lambda w: getattr(w, "name", "") == "import_notes_dialog")
    assert "metersets in MU converted with 310000 particles/MU at 300 MeV/u" in " ".join(
        getattr(w, "text", "") for w in notes.walk())
    plan = app.session.plans[0].result.plan
    for a, b in zip(made.beams, plan.beams, strict=True):
        np.testing.assert_allclose(b.weights, a.weights[a.weights > 0], rtol=1e-6)
    assert app.monitor_calibration_text == "3.1e5@300"  # offered again for the next plan
