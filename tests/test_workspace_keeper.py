"""The GUI's workspace keeper and plan renaming, without a window."""

from __future__ import annotations

import json

import pytest

from app.session import Session
from app.workspace_keeper import WorkspaceKeeper
from planning.errors import InputError
from planning.workspace import WorkspaceStore
from tests.workspace_factory import synthetic_plan_result


class Settings:
    """Stands in for the planning screen's settings."""

    def __init__(self) -> None:
        self.values = {"form": {"fractions": "16"}, "display": {"window_hu": 400.0}}

    def __call__(self) -> dict:
        return json.loads(json.dumps(self.values))


def _keeper(tmp_path, patient, exported=()):
    session = Session()
    session.set_patient(patient, "demo patient")
    settings = Settings()
    keeper = WorkspaceKeeper(WorkspaceStore(tmp_path), session, settings,
                             lambda entry: entry.name in exported)
    return session, settings, keeper


def test_saves_only_what_changed_and_restores_it(tmp_path, patient):
    session, settings, keeper = _keeper(tmp_path, patient, exported=("Plan 1",))
    folder = keeper.save_if_changed()
    assert folder is not None
    assert keeper.save_if_changed() is None  # nothing changed since
    entry = session.add_plan(synthetic_plan_result(patient, 1), "first", {"dose": "57.6"})
    assert keeper.save_if_changed() == folder
    settings.values["display"]["window_hu"] = 1800.0
    assert keeper.save_if_changed() == folder
    session.rename_plan(entry, "Boost")
    assert keeper.save_if_changed() == folder
    assert keeper.save_if_changed() is None
    keeper.close()  # the window is closed: its lock is released

    _, _, keeper2 = _keeper(tmp_path, patient)
    restored = keeper2.restore(patient, "demo patient")
    assert restored.problem == ""
    assert [(p.name, p.plan_id, p.summary, dict(p.setup)) for p in restored.plans] == [
        ("Boost", entry.plan_id, "first", {"dose": "57.6"})]
    assert restored.exported == []  # "Plan 1" was exported, "Boost" is another name
    assert restored.settings["display"]["window_hu"] == 1800.0
    assert WorkspaceStore(tmp_path).last_patient() == ("demo patient",
                                                       patient.ct.series_instance_uid)


def test_a_damaged_workspace_is_moved_aside_with_the_reason(tmp_path, patient):
    session, _, keeper = _keeper(tmp_path, patient)
    session.add_plan(synthetic_plan_result(patient, 2), "p")
    folder = keeper.save_if_changed()
    (folder / "workspace.json").write_text("{")
    restored = keeper.restore(patient, "demo patient")
    assert restored.plans == [] and "damaged workspace manifest" in restored.problem
    assert "moved to" in restored.problem and not folder.exists()
    assert len(list(tmp_path.glob("*.unreadable-*"))) == 1


def test_a_failed_save_is_reported_and_retried(tmp_path, patient):
    _, _, keeper = _keeper(tmp_path / "ws", patient)
    (tmp_path / "ws").write_text("a file where the folder should be")
    assert keeper.save_if_changed() is None and keeper.last_error
    (tmp_path / "ws").unlink()
    assert keeper.save_if_changed() is not None and keeper.last_error == ""


def test_rename_checks_the_name(patient):
    session = Session()
    session.set_patient(patient, "demo patient")
    a = session.add_plan(synthetic_plan_result(patient, 1), "a")
    b = session.add_plan(synthetic_plan_result(patient, 2), "b")
    told = []
    session.subscribe(told.append)
    session.rename_plan(a, "  Boost \t phase 2 ")
    assert a.name == "Boost phase 2" and told == ["plans"]
    for bad, message in (("   ", "give a name"), ("Boost phase 2", "already called"),
                         ("x" * 65, "at most 64")):
        with pytest.raises(InputError, match=message):
            session.rename_plan(b, bad)
    assert b.name == "Plan 2"
    session.rename_plan(a, "Boost phase 2")  # its own name again is fine


def test_a_robust_evaluation_is_saved_when_it_finishes_and_restored(tmp_path, patient):
    from tests.workspace_factory import synthetic_robust

    session, _, keeper = _keeper(tmp_path, patient)
    entry = session.add_plan(synthetic_plan_result(patient, 4), "robust")
    folder = keeper.save_if_changed()
    assert folder is not None and keeper.save_if_changed() is None
    robust = synthetic_robust(entry.result)
    kept = session.set_robust(entry.name, robust)
    assert kept.robust_id and kept.plan_id == entry.plan_id
    assert keeper.save_if_changed() == folder  # the evaluation is something to save
    assert (folder / "plans" / entry.plan_id / f"robust-{kept.robust_id}").is_dir()
    keeper.close()

    _, _, keeper2 = _keeper(tmp_path, patient)
    restored = keeper2.restore(patient, "demo patient")
    assert restored.problem == ""
    (back,) = restored.plans
    assert back.robust is not None and back.robust_id == kept.robust_id
    assert back.robust.report["scenarios"] == json.loads(
        json.dumps(robust.report["scenarios"]))
    # The worst-case cubes are quantities of the plan again.
    layer = back.layer("rbe_min")
    assert "minimum of 3 scenarios" in layer.label
    assert (layer.cube == robust.rbe_min_gy_rbe).all()
    keeper2.close()

    # Its cubes damaged: the plan comes back without it, and the user is told.
    cube = folder / "plans" / entry.plan_id / f"robust-{kept.robust_id}" / "rbe_max_gy_rbe.npy"
    cube.write_bytes(cube.read_bytes()[:-4])
    _, _, keeper3 = _keeper(tmp_path, patient)
    restored = keeper3.restore(patient, "demo patient")
    (back,) = restored.plans
    assert back.robust is None and "rbe_max" not in [la.key for la in back.layers()]
    assert "robust evaluation of plan 'Plan 1' was not restored" in restored.problem
    assert str(cube) in restored.problem


def test_a_received_plan_keeps_its_rt_plan_name_or_label_as_its_name(tmp_path, patient):
    """An imported plan was 'Plan 2' in the GUI, the export folder and report.json while its
    PDF and RTPLAN called it by its name (review): it keeps its RT Plan Name, else its RT Plan
    Label, made unique by ' (2)', and keeps it through the workspace; the import dialog says
    both, and which attribute named it."""
    import dataclasses

    from app.session import PlanEntry, received_plan_note

    session, _, keeper = _keeper(tmp_path, patient)
    made = synthetic_plan_result(patient, 1)
    # Another system's plan: only an RT Plan Label, and no RBE model named.
    received = dataclasses.replace(made, plan=dataclasses.replace(
        made.plan, label="HN_C12_v2", rbe=None, rbe_model=None, rbe_tissues=()), report={
        **made.report, "source_plan": {"path": "RP_otherTPS.dcm", "sop_instance_uid": "1.2",
                                       "rt_plan_label": "HN_C12_v2",
                                       "name_source": "RT Plan Label"}})
    first = session.add_plan(made, "planned here")
    one = session.add_plan(received, "recalculated", name=received.plan.label)
    two = session.add_plan(received, "recalculated again", name=received.plan.label)
    assert (first.name, one.name, two.name) == ("Plan 1", "HN_C12_v2", "HN_C12_v2 (2)")
    assert received_plan_note(one, "RP_otherTPS.dcm") == (
        "RP_otherTPS.dcm: RT Plan Label 'HN_C12_v2', kept as plan 'HN_C12_v2'")
    assert received_plan_note(two, "RP_otherTPS.dcm") == (
        "RP_otherTPS.dcm: RT Plan Label 'HN_C12_v2', kept as plan 'HN_C12_v2 (2)' (another "
        "plan of this patient is called 'HN_C12_v2')")
    named = dataclasses.replace(received, plan=dataclasses.replace(
        received.plan, label="Head C12 boost plan v2"), report={**received.report, "source_plan": {
            **received.report["source_plan"], "name_source": "RT Plan Name"}})
    assert received_plan_note(PlanEntry("Head C12 boost plan v2", named, ""), "RP.dcm") == (
        "RP.dcm: RT Plan Name 'Head C12 boost plan v2', kept as plan 'Head C12 boost plan v2'")
    assert session.add_plan(made, "next").name == "Plan 4"
    assert keeper.save_if_changed() is not None
    keeper.close()
    _, _, keeper2 = _keeper(tmp_path, patient)
    restored = keeper2.restore(patient, "demo patient")
    assert [p.name for p in restored.plans] == ["Plan 1", "HN_C12_v2", "HN_C12_v2 (2)", "Plan 4"]
    assert [p.result.plan.label for p in restored.plans][1:3] == ["HN_C12_v2"] * 2
    assert [p.result.plan.rbe_model for p in restored.plans][1:3] == [None, None]
