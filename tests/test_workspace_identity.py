"""A workspace reopened on a patient that is not quite the one its plans were made on: another
structure set, part of the CT series, a moved or re-exported CT. Plans that do not fit are
reported and kept; the others come back."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from app.session import Session
from app.workspace_keeper import WorkspaceKeeper
from planning.patient import Patient
from planning.planner import PlanResult
from planning.rbe import tissue_by_name
from planning.workspace import (
    StoredPlan,
    Workspace,
    WorkspaceStore,
    new_plan_id,
    patient_key,
)
from planning.workspace import store as store_module
from planning.workspace.plan_arrays import PlanRecordError, plan_from_record, plan_to_record
from tests.workspace_factory import synthetic_plan_result


def _per_structure(patient: Patient, seed: int) -> PlanResult:
    """A plan with a LEM I tissue of its own on the PTV (its dose depends on that contour)."""
    tissues = (("PTV", tissue_by_name("hsg")),)
    made = synthetic_plan_result(patient, seed)
    return replace(made, plan=replace(made.plan, rbe_tissues=tissues), structure_tissues=tissues)


def _saved(root: Path, patient: Patient) -> tuple[WorkspaceStore, Workspace]:
    """A workspace of ``patient`` with a plain plan and a plan with a tissue on the PTV."""
    ws = Workspace(patient_key(patient), "demo patient", (
        StoredPlan(new_plan_id(), "Plain", synthetic_plan_result(patient, 1)),
        StoredPlan(new_plan_id(), "Tissue on PTV", _per_structure(patient, 2))), {})
    store = WorkspaceStore(root)
    store.save(ws)
    return store, ws


def _renamed(patient: Patient, old: str, new: str) -> Patient:
    ss = patient.structure_set
    assert ss is not None
    return replace(patient, structure_set=replace(ss, structures=tuple(
        replace(s, name=new) if s.name == old else s for s in ss.structures)))


def _ct_changed(patient: Patient, **changes) -> Patient:
    return replace(patient, ct=replace(patient.ct, **changes))


def test_plan_files_keep_the_ct_geometry_and_the_structures_they_need(tmp_path, patient):
    store, ws = _saved(tmp_path, patient)
    plans = store.folder(ws.key) / "plans"
    plain = json.loads((plans / ws.plans[0].plan_id / "plan.json").read_text())
    tissue = json.loads((plans / ws.plans[1].plan_id / "plan.json").read_text())
    ct = patient.ct
    assert plain["ct"]["shape"] == list(ct.hu.shape) == [88, 256, 256]
    assert plain["ct"]["spacing_mm"] == list(ct.spacing_mm)
    assert plain["ct"]["origin_mm"] == list(ct.origin_mm)
    assert len(plain["ct"]["sop_instance_uids_sha256"]) == 64
    assert (plain["structures"], tissue["structures"]) == ([], ["PTV"])


@pytest.mark.parametrize("change", ["PTV renamed", "no structure set"])
def test_a_plan_needing_a_missing_structure_is_skipped_and_kept(tmp_path, patient, change):
    _store, ws = _saved(tmp_path, patient)
    opened = (_renamed(patient, "PTV", "PTV_v2") if change == "PTV renamed"
              else replace(patient, structure_set=None))
    back = WorkspaceStore(tmp_path).load(ws.key, opened)
    assert back is not None
    assert [p.name for p in back.plans] == ["Plain"]
    (skipped,) = back.unrestored
    assert (skipped.plan_id, skipped.name) == (ws.plans[1].plan_id, "Tissue on PTV")
    assert "structure 'PTV'" in skipped.reason and "plan.json" in skipped.reason
    assert ("PTV_v2" in skipped.reason if change == "PTV renamed"
            else "no structure set" in skipped.reason)


def test_structure_names_are_found_as_planning_finds_them(tmp_path, patient):
    _store, ws = _saved(tmp_path, patient)
    back = WorkspaceStore(tmp_path).load(ws.key, _renamed(patient, "PTV", "ptv"))
    assert back is not None and len(back.plans) == 2 and not back.unrestored


@pytest.mark.parametrize("change", ["40 of 88 slices", "origin moved", "spacing", "other images"])
def test_a_plan_made_on_another_ct_geometry_is_skipped(tmp_path, patient, change):
    _store, ws = _saved(tmp_path, patient)
    ct = patient.ct
    if change == "40 of 88 slices":
        opened = _ct_changed(patient, hu=ct.hu[:40], sop_instance_uids=ct.sop_instance_uids[:40])
        expected = "CT of 88 x 256 x 256 voxels (z, y, x), this CT has 40 x 256 x 256"
    elif change == "origin moved":
        x, y, z = ct.origin_mm
        opened = _ct_changed(patient, origin_mm=(x, y, z + 2.5))
        expected = f"origin (LPS) was ({x:g}, {y:g}, {z:g}) mm, it is ({x:g}, {y:g}, {z + 2.5:g})"
    elif change == "spacing":
        opened = _ct_changed(patient, spacing_mm=(3.0, *ct.spacing_mm[1:]))
        expected = "voxel spacing (z, y, x) was (2.5, 1, 1) mm, it is (3, 1, 1) mm"
    else:
        uids = (*ct.sop_instance_uids[:-1], ct.sop_instance_uids[-1] + ".1")
        opened = _ct_changed(patient, sop_instance_uids=uids)
        expected = "other SOP Instance UIDs"
    back = WorkspaceStore(tmp_path).load(ws.key, opened)
    assert back is not None and back.plans == ()
    assert [u.name for u in back.unrestored] == ["Plain", "Tissue on PTV"]
    assert all(expected in u.reason for u in back.unrestored), back.unrestored[0].reason


def test_unrestored_plans_stay_on_disk_and_come_back_on_the_right_patient(tmp_path, patient):
    _saved(tmp_path, patient)
    session = Session()
    opened = replace(patient, structure_set=None)  # e.g. the RTSTRUCT was left out
    session.set_patient(opened, "demo patient")
    keeper = WorkspaceKeeper(WorkspaceStore(tmp_path), session, lambda: {"display": {}},
                             lambda e: False)
    restored = keeper.restore(opened, "demo patient")  # no AssertionError
    assert [p.name for p in restored.plans] == ["Plain"]
    assert "Plan 'Tissue on PTV' was not restored" in restored.problem
    assert "kept, untouched" in restored.problem
    assert "moved to" not in restored.problem and not list(tmp_path.glob("*.unreadable-*"))
    session.set_patient(opened, "demo patient", restored.plans)
    keeper.mark_saved()
    # New work on this patient (a plan named like the one not restored) is saved with it.
    session.add_plan(synthetic_plan_result(opened, 3), "new")
    session.rename_plan(session.plans[-1], "Tissue on PTV")
    assert keeper.save_if_changed() is not None
    keeper.close()
    back = WorkspaceStore(tmp_path).load(patient_key(patient), patient)
    assert back is not None and not back.unrestored
    assert [p.name for p in back.plans] == ["Plain", "Tissue on PTV", "Tissue on PTV (2)"]


def test_old_plan_files_without_the_new_fields_load_as_before(tmp_path, patient):
    store, ws = _saved(tmp_path, patient)
    for stored in ws.plans:
        path = store.folder(ws.key) / "plans" / stored.plan_id / "plan.json"
        meta = json.loads(path.read_text())
        del meta["ct"], meta["structures"]
        path.write_text(json.dumps(meta))
    back = WorkspaceStore(tmp_path).load(ws.key, patient)
    assert back is not None and [p.name for p in back.plans] == ["Plain", "Tissue on PTV"]
    # Unknown geometry: restored as before; a missing tissue structure is still caught.
    back = WorkspaceStore(tmp_path).load(ws.key, replace(patient, structure_set=None))
    assert back is not None and [p.name for p in back.plans] == ["Plain"]
    assert "structure 'PTV'" in back.unrestored[0].reason


def test_an_unexpected_error_in_one_plan_skips_only_that_plan(tmp_path, patient, monkeypatch):
    _store, ws = _saved(tmp_path, patient)
    real = store_module.plan_from_record

    def broken(meta, arrays, on):
        if meta["structures"]:
            raise AssertionError("a case nobody foresaw")
        return real(meta, arrays, on)

    monkeypatch.setattr(store_module, "plan_from_record", broken)
    back = WorkspaceStore(tmp_path).load(ws.key, patient)
    assert back is not None and [p.name for p in back.plans] == ["Plain"]
    (skipped,) = back.unrestored
    assert "could not be read (AssertionError: a case nobody foresaw)" in skipped.reason
    assert ws.plans[1].plan_id in skipped.reason  # names the plan's file


def test_a_damaged_plan_is_skipped_with_its_file_named(tmp_path, patient):
    store, ws = _saved(tmp_path, patient)
    cube = store.folder(ws.key) / "plans" / ws.plans[0].plan_id / "rbe_dose_gy_rbe.npy"
    data = bytearray(cube.read_bytes())
    data[-3] ^= 0xFF
    cube.write_bytes(bytes(data))
    back = WorkspaceStore(tmp_path).load(ws.key, patient)
    assert back is not None and [p.name for p in back.plans] == ["Tissue on PTV"]
    assert str(cube) in back.unrestored[0].reason
    assert "checksum mismatch" in back.unrestored[0].reason


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinity_in_an_integer_field_is_a_clear_error(tmp_path, patient, value):
    meta, arrays = plan_to_record(synthetic_plan_result(patient, 1))
    meta["plan"]["prescription"]["n_fractions"] = value
    meta = json.loads(json.dumps(meta))  # written as Infinity, read back as float
    with pytest.raises(PlanRecordError, match="out of range"):
        plan_from_record(meta, arrays, patient)
    # Through the store: that plan is reported, not an OverflowError.
    store, ws = _saved(tmp_path, patient)
    path = store.folder(ws.key) / "plans" / ws.plans[0].plan_id / "plan.json"
    on_disk = json.loads(path.read_text())
    on_disk["plan"]["prescription"]["n_fractions"] = value
    path.write_text(json.dumps(on_disk))
    back = WorkspaceStore(tmp_path).load(ws.key, patient)
    assert back is not None and [p.name for p in back.plans] == ["Tissue on PTV"]
    assert "damaged plan 'Plain'" in back.unrestored[0].reason
    assert "out of range" in back.unrestored[0].reason
