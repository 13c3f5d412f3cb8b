"""The workspace format: round trip, version refusal, damaged files, crash-safe saving."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from planning import __version__
from planning.patient import Patient
from planning.planner import PlanResult
from planning.workspace import (
    FORMAT_VERSION,
    PatientKey,
    StoredPlan,
    Workspace,
    WorkspaceError,
    WorkspaceStore,
    new_plan_id,
    patient_key,
)
from planning.workspace import store as store_module
from tests.workspace_factory import synthetic_plan_result as _result


def _workspace(patient: Patient, n_plans: int = 2) -> Workspace:
    plans = tuple(StoredPlan(new_plan_id(), f"Plan {i + 1}", _result(patient, i),
                             summary=f"summary {i}", exported=i == 0,
                             setup={"dose": "57.6", "objectives": [["PTV", "min_dose"]]})
                  for i in range(n_plans))
    return Workspace(patient_key(patient), "demo patient", plans,
                     {"display": {"window_hu": 350.0, "isodose_percent": [95, 50]}})


def _assert_same_result(a: PlanResult, b: PlanResult) -> None:
    for name in ("physical_dose_gy", "rbe_dose_gy_rbe", "letd_kev_um", "rbe"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for ca, cb in zip(a.beam_physical_dose_gy, b.beam_physical_dose_gy, strict=True):
        np.testing.assert_array_equal(ca, cb)
    assert a.dose_grid == b.dose_grid and a.model == b.model and a.report == b.report
    pa, pb = a.plan, b.plan
    assert (pa.label, pa.machine_name, pa.prescription, pa.rbe_model, pa.notes, pa.rbe,
            pa.beam_doses) == (pb.label, pb.machine_name, pb.prescription, pb.rbe_model,
                               pb.notes, pb.rbe, pb.beam_doses)
    for ba, bb in zip(pa.beams, pb.beams, strict=True):
        assert ba.beam == bb.beam and ba.range_shifter_wet_mm == bb.range_shifter_wet_mm
        np.testing.assert_array_equal(ba.weights, bb.weights)
        for f in ("energy_mev_u", "layer", "u_mm", "v_mm"):
            np.testing.assert_array_equal(getattr(ba.spots, f), getattr(bb.spots, f))
        assert ba.spots.spacing_mm == bb.spots.spacing_mm
    assert a.exchange is not None and b.exchange is not None
    assert (a.exchange.mkm, a.exchange.lem, a.exchange.n_fractions) == (
        b.exchange.mkm, b.exchange.lem, b.exchange.n_fractions)
    np.testing.assert_array_equal(a.exchange.ratio_lem_over_mkm, b.exchange.ratio_lem_over_mkm)


def test_round_trip_keeps_plans_cubes_names_and_settings(tmp_path, patient):
    store = WorkspaceStore(tmp_path)
    ws = _workspace(patient)
    folder = store.save(ws)
    manifest = json.loads((folder / "workspace.json").read_text())
    assert manifest["format"] == "ionplan-workspace"
    assert manifest["format_version"] == FORMAT_VERSION == 1
    assert manifest["ionplan_version"] == __version__
    back = store.load(ws.key, patient)
    assert back is not None and back.source == "demo patient"
    assert back.settings == ws.settings
    assert [(p.plan_id, p.name, p.summary, p.exported, p.setup) for p in back.plans] == [
        (p.plan_id, p.name, p.summary, p.exported, p.setup) for p in ws.plans]
    for a, b in zip(ws.plans, back.plans, strict=True):
        _assert_same_result(a.result, b.result)
        assert b.result.patient is patient and b.result.prepared is None


def test_no_workspace_yet_is_none(tmp_path, patient):
    assert WorkspaceStore(tmp_path).load(patient_key(patient), patient) is None


def test_patient_key_tells_series_apart_and_makes_safe_folder_names():
    a = PatientKey("ID/1 ..", "1.2.3", "1.2.3.4")
    b = PatientKey("ID/1 ..", "1.2.3", "1.2.3.5")
    assert a.folder_name() != b.folder_name()
    assert a.folder_name().startswith("ID_1-") and "/" not in a.folder_name()
    assert PatientKey("", "1", "2").folder_name().startswith("patient-")


def test_resave_keeps_plan_folders_and_drops_removed_plans(tmp_path, patient):
    store = WorkspaceStore(tmp_path)
    ws = _workspace(patient)
    folder = store.save(ws)
    first = folder / "plans" / ws.plans[0].plan_id / "plan.json"
    second = folder / "plans" / ws.plans[1].plan_id
    stamp = first.stat().st_mtime_ns
    renamed = replace(ws.plans[0], name="Boost", exported=False)
    store.save(replace(ws, plans=(renamed,)))
    assert first.stat().st_mtime_ns == stamp  # arrays are written once
    assert not second.exists()
    back = store.load(ws.key, patient)
    assert back is not None and [(p.name, p.exported) for p in back.plans] == [("Boost", False)]


def test_newer_version_and_unknown_format_are_refused(tmp_path, patient):
    store = WorkspaceStore(tmp_path)
    ws = _workspace(patient, 1)
    path = store.save(ws) / "workspace.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1,
                                "ionplan_version": "9.0"}))
    with pytest.raises(WorkspaceError, match=r"IonPlan 9.0 in workspace format 2.*newer"):
        store.load(ws.key, patient)
    path.write_text(json.dumps({**manifest, "format": "something-else"}))
    with pytest.raises(WorkspaceError, match="not an IonPlan workspace"):
        store.load(ws.key, patient)
    path.write_text(json.dumps({**manifest, "format_version": "1"}))
    with pytest.raises(WorkspaceError, match="format_version"):
        store.load(ws.key, patient)


#: Damage to one plan's folder: that plan is not restored, the rest of the workspace is.
PLAN_DAMAGE = ("flipped byte in a cube", "missing plan folder", "truncated plan.json",
               "missing array")


@pytest.mark.parametrize("damage", ["truncated manifest", "manifest of another patient",
                                    "plans not a list", "flipped byte in a cube",
                                    "missing plan folder", "truncated plan.json",
                                    "missing array"])
def test_damage_is_reported_with_the_file_named(tmp_path, patient, damage):
    store = WorkspaceStore(tmp_path)
    ws = _workspace(patient, 1)
    folder = store.save(ws)
    manifest_path = folder / "workspace.json"
    manifest = json.loads(manifest_path.read_text())
    plan_dir = folder / "plans" / ws.plans[0].plan_id
    if damage == "truncated manifest":
        text = manifest_path.read_text()
        manifest_path.write_text(text[: len(text) // 2])
    elif damage == "manifest of another patient":
        manifest["patient"]["series_instance_uid"] = "9.9"
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "plans not a list":
        manifest["plans"] = {"a": 1}
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "flipped byte in a cube":
        cube = plan_dir / "rbe_dose_gy_rbe.npy"
        data = bytearray(cube.read_bytes())
        data[-3] ^= 0xFF
        cube.write_bytes(bytes(data))
    elif damage == "missing plan folder":
        for f in plan_dir.iterdir():
            f.unlink()
        plan_dir.rmdir()
    elif damage == "truncated plan.json":
        (plan_dir / "plan.json").write_text("{\"format\": ")
    else:
        (plan_dir / "beam0_weights.npy").unlink()
    if damage in PLAN_DAMAGE:  # that plan is left out and reported; the workspace opens
        back = store.load(ws.key, patient)
        assert back is not None and back.plans == ()
        (skipped,) = back.unrestored
        assert skipped.plan_id == ws.plans[0].plan_id and str(plan_dir) in skipped.reason
        return
    with pytest.raises(WorkspaceError) as err:
        store.load(ws.key, patient)
    assert str(folder) in str(err.value)
    # Moved aside, never deleted: every file is still there under the new name.
    files = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    aside = store.move_aside(ws.key)
    assert not folder.exists() and ".unreadable-" in aside.name
    assert sorted(p.relative_to(aside) for p in aside.rglob("*")) == files
    assert store.load(ws.key, patient) is None  # the next start is a fresh workspace


def test_failed_save_leaves_the_previous_workspace(tmp_path, patient, monkeypatch):
    store = WorkspaceStore(tmp_path)
    ws = _workspace(patient, 1)
    folder = store.save(ws)
    before = (folder / "workspace.json").read_bytes()
    calls = {"n": 0}
    real_save = np.save

    def failing_save(fh, array, allow_pickle):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real_save(fh, array, allow_pickle=allow_pickle)

    monkeypatch.setattr(store_module.np, "save", failing_save)
    bigger = replace(ws, plans=(*ws.plans, StoredPlan(new_plan_id(), "Plan 2",
                                                      _result(patient, 5))))
    with pytest.raises(OSError, match="disk full"):
        store.save(bigger)
    assert (folder / "workspace.json").read_bytes() == before
    assert sorted(p.name for p in (folder / "plans").iterdir()) == [ws.plans[0].plan_id]
    back = store.load(ws.key, patient)
    assert back is not None and [p.name for p in back.plans] == ["Plan 1"]


def test_leftovers_of_a_killed_save_are_ignored_then_cleaned(tmp_path, patient):
    store = WorkspaceStore(tmp_path)
    ws = _workspace(patient, 1)
    folder = store.save(ws)
    # What a process killed mid-save leaves: a partial plan folder, a manifest temp file.
    partial = folder / "plans" / ".0123456789abcdef.partial-1-abcdef"
    partial.mkdir()
    (partial / "physical_dose_gy.npy").write_bytes(b"\x93NUMPY half")
    (folder / ".workspace.json.x1.tmp").write_text("{\"format\"")
    back = store.load(ws.key, patient)
    assert back is not None and [p.name for p in back.plans] == ["Plan 1"]
    store.save(ws)
    assert not partial.exists()


def test_last_patient_round_trip_and_damaged_file(tmp_path, patient):
    store = WorkspaceStore(tmp_path / "config")
    assert store.last_patient() is None
    store.save_last_patient("/data/patient 1", patient_key(patient))
    assert store.last_patient() == ("/data/patient 1",
                                    patient.ct.series_instance_uid)
    (tmp_path / "config" / "last_patient.json").write_text("[1, 2")
    assert store.last_patient() is None


def test_bad_plan_id_is_refused(tmp_path, patient):
    ws = _workspace(patient, 1)
    bad = replace(ws, plans=(replace(ws.plans[0], plan_id="../x"),))
    with pytest.raises(ValueError, match="plan id"):
        WorkspaceStore(tmp_path).save(bad)
    assert not Path(tmp_path / "x").exists()


def test_lem_tissues_per_structure_are_kept_with_the_plan(patient):
    from planning.rbe import tissue_by_name
    from planning.workspace.plan_arrays import plan_from_record, plan_to_record

    made = _result(patient, 3)
    tissues = (("PTV", tissue_by_name("hsg")),)
    made = replace(made, plan=replace(made.plan, rbe_tissues=tissues), structure_tissues=tissues)
    meta, arrays = plan_to_record(made)
    back = plan_from_record(json.loads(json.dumps(meta)), arrays, patient)
    assert back.plan.rbe_tissues == tissues and back.structure_tissues == tissues
    # The DVHs read the PTV's dose within its own tissue again (as the plan had them).
    assert back.tissue_labels is not None and back.tissue_labels.within("PTV") is not None
    assert _result(patient, 3).tissue_labels is None
