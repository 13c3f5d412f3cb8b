"""A plan's robust evaluation in the workspace: kept, replaced by a new one, checked like the
plan's arrays; a damaged evaluation never costs the plan."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from planning.robust_tables import ROBUST_REPORT_KEYS
from planning.workspace import (
    StoredPlan,
    Workspace,
    WorkspaceStore,
    new_plan_id,
    patient_key,
)
from planning.workspace.robust_arrays import ROBUST_CUBES
from tests.workspace_factory import synthetic_plan_result, synthetic_robust


@pytest.fixture(scope="module")
def evaluated(patient):
    """A plan and a robust evaluation of it (3 range scenarios)."""
    result = synthetic_plan_result(patient, 7)
    return result, synthetic_robust(result)


def _workspace(patient, result, robust, robust_id: str | None = None,
               plan_id: str = "00112233aabbccdd") -> Workspace:
    plan = StoredPlan(plan_id, "Plan 1", result, "robust test", robust=robust,
                      robust_id=robust_id or new_plan_id())
    return Workspace(patient_key(patient), "demo patient", (plan,), {})


def test_round_trip_keeps_the_envelopes_scenarios_bands_and_settings(tmp_path, patient,
                                                                     evaluated):
    result, robust = evaluated
    store = WorkspaceStore(tmp_path)
    ws = _workspace(patient, result, robust)
    folder = store.save(ws) / "plans" / ws.plans[0].plan_id
    # The plan's own file holds the plan; the evaluation is kept apart.
    plan_json = json.loads((folder / "plan.json").read_text())
    assert not set(ROBUST_REPORT_KEYS) & set(plan_json["report"])
    assert json.loads((folder / "robust.json").read_text())["id"] == ws.plans[0].robust_id

    back = WorkspaceStore(tmp_path).load(ws.key, patient)
    assert back is not None and back.problems == ()
    (plan,) = back.plans
    assert plan.robust is not None and plan.robust_id == ws.plans[0].robust_id
    assert plan.robust.nominal is plan.result
    for name in ROBUST_CUBES:
        got = getattr(plan.robust, name)
        assert got.dtype == np.float32 and got.shape == result.dose_grid.shape
        np.testing.assert_array_equal(got, getattr(robust, name))
    assert plan.robust.scenarios == robust.scenarios
    assert [s.name for s in plan.robust.scenarios] == [
        "nominal", "SPR +3.5% (short)", "SPR -3.5% (long)"]
    # The plan's report has the evaluation's entries again, as after the evaluation.
    for key in ROBUST_REPORT_KEYS:
        assert plan.result.report[key] == json.loads(json.dumps(result.report[key]))
    np.testing.assert_array_equal(plan.result.rbe_dose_gy_rbe, result.rbe_dose_gy_rbe)


def test_a_new_evaluation_replaces_the_old_and_an_unchanged_one_is_not_rewritten(
        tmp_path, patient, evaluated):
    result, robust = evaluated
    store = WorkspaceStore(tmp_path)
    ws = _workspace(patient, result, robust, "aaaaaaaaaaaaaaaa")
    folder = store.save(ws) / "plans" / ws.plans[0].plan_id
    plan_stamp = (folder / "plan.json").stat().st_mtime_ns
    robust_stamp = (folder / "robust.json").stat().st_mtime_ns
    store.save(ws)  # the same evaluation: nothing rewritten
    WorkspaceStore(tmp_path).save(ws)  # nor by another store, which reads robust.json's id
    assert (folder / "robust.json").stat().st_mtime_ns == robust_stamp

    again = replace(robust, rbe_min_gy_rbe=robust.rbe_min_gy_rbe * np.float32(0.5))
    store.save(replace(ws, plans=(replace(ws.plans[0], robust=again,
                                          robust_id="bbbbbbbbbbbbbbbb"),)))
    assert (folder / "plan.json").stat().st_mtime_ns == plan_stamp  # the plan: written once
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["robust-bbbbbbbbbbbbbbbb"]
    back = store.load(ws.key, patient)
    assert back is not None and back.plans[0].robust_id == "bbbbbbbbbbbbbbbb"
    np.testing.assert_array_equal(back.plans[0].robust.rbe_min_gy_rbe, again.rbe_min_gy_rbe)

    # A plan given without its evaluation (not restored) leaves the evaluation on disk.
    store.save(replace(ws, plans=(replace(ws.plans[0], robust=None, robust_id=""),)))
    back = store.load(ws.key, patient)
    assert back is not None and back.plans[0].robust_id == "bbbbbbbbbbbbbbbb"


def test_leftovers_of_a_killed_robust_save_are_ignored_then_cleaned(tmp_path, patient,
                                                                    evaluated):
    result, robust = evaluated
    store = WorkspaceStore(tmp_path)
    ws = _workspace(patient, result, robust, "aaaaaaaaaaaaaaaa")
    folder = store.save(ws) / "plans" / ws.plans[0].plan_id
    # Killed while writing a second evaluation: a partial folder, and a complete one that
    # robust.json does not name yet.
    (folder / ".robust-bbbbbbbbbbbbbbbb.partial-1-abcdef").mkdir()
    (folder / "robust-cccccccccccccccc").mkdir()
    back = WorkspaceStore(tmp_path).load(ws.key, patient)
    assert back is not None and back.plans[0].robust_id == "aaaaaaaaaaaaaaaa"
    store.save(replace(ws, plans=(replace(ws.plans[0], robust_id="dddddddddddddddd"),)))
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["robust-dddddddddddddddd"]


ROBUST_DAMAGE = ("flipped byte in an envelope", "missing cube folder", "truncated robust.json",
                 "newer robust format", "scenario count differs", "envelope of another grid")


@pytest.mark.parametrize("damage", ROBUST_DAMAGE)
def test_a_damaged_evaluation_is_dropped_and_reported_the_plan_restored(
        tmp_path, patient, evaluated, damage, caplog):
    result, robust = evaluated
    store = WorkspaceStore(tmp_path)
    ws = _workspace(patient, result, robust, "aaaaaaaaaaaaaaaa")
    folder = store.save(ws) / "plans" / ws.plans[0].plan_id
    cubes = folder / "robust-aaaaaaaaaaaaaaaa"
    path = folder / "robust.json"
    meta = json.loads(path.read_text())
    if damage == "flipped byte in an envelope":
        cube = cubes / "rbe_min_gy_rbe.npy"
        data = bytearray(cube.read_bytes())
        data[-5] ^= 0xFF
        cube.write_bytes(bytes(data))
    elif damage == "missing cube folder":
        for f in cubes.iterdir():
            f.unlink()
        cubes.rmdir()
    elif damage == "truncated robust.json":
        path.write_text(path.read_text()[:200])
    elif damage == "newer robust format":
        path.write_text(json.dumps({**meta, "format_version": 99}))
    elif damage == "scenario count differs":
        meta["report"]["scenarios"] = meta["report"]["scenarios"][:2]
        path.write_text(json.dumps(meta))
    else:  # a cube of another shape, its checksum made to match
        small = np.zeros((2, 2, 2), np.float32)
        np.save(cubes / "rbe_max_gy_rbe.npy", small)
        import hashlib

        meta["arrays"]["rbe_max_gy_rbe"] = {
            "dtype": small.dtype.str, "shape": [2, 2, 2],
            "sha256": hashlib.sha256((cubes / "rbe_max_gy_rbe.npy").read_bytes()).hexdigest()}
        path.write_text(json.dumps(meta))
    with caplog.at_level("WARNING"):
        back = WorkspaceStore(tmp_path).load(ws.key, patient)
    assert back is not None and back.unrestored == ()
    (plan,) = back.plans
    assert plan.robust is None and plan.robust_id == ""
    assert not set(ROBUST_REPORT_KEYS) & set(plan.result.report)  # no orphaned numbers
    np.testing.assert_array_equal(plan.result.rbe_dose_gy_rbe, result.rbe_dose_gy_rbe)
    (problem,) = back.problems
    assert "Plan 1" in problem and "robust evaluation" in problem and str(folder) in problem
    assert "robust evaluation not restored" in caplog.text
    # A new evaluation replaces the damaged one.
    store.save(replace(ws, plans=(replace(ws.plans[0], robust_id="bbbbbbbbbbbbbbbb"),)))
    again = WorkspaceStore(tmp_path).load(ws.key, patient)
    assert again is not None and again.problems == ()
    assert again.plans[0].robust_id == "bbbbbbbbbbbbbbbb"


def test_a_plan_file_with_robust_entries_but_no_evaluation_drops_them(tmp_path, patient,
                                                                      evaluated):
    """A plan folder written before evaluations were kept (its report saved after an
    evaluation) shows no robustness numbers without the evaluation's cubes."""
    result, _ = evaluated
    store = WorkspaceStore(tmp_path)
    ws = _workspace(patient, result, None)
    ws = replace(ws, plans=(replace(ws.plans[0], robust=None, robust_id=""),))
    folder = store.save(ws) / "plans" / ws.plans[0].plan_id
    meta = json.loads((folder / "plan.json").read_text())
    meta["report"]["scenarios"] = result.report["scenarios"]
    (folder / "plan.json").write_text(json.dumps(meta))
    back = WorkspaceStore(tmp_path).load(ws.key, patient)
    assert back is not None and back.plans[0].robust is None
    assert "scenarios" not in back.plans[0].result.report


def test_an_evaluation_that_cannot_be_recorded_never_blocks_the_plans_save(
        tmp_path, patient, evaluated, caplog):
    _, robust = evaluated
    bare = synthetic_plan_result(patient, 8)  # its report has no robust entries
    ws = _workspace(patient, bare, replace(robust, nominal=bare))
    with caplog.at_level("WARNING"):
        folder = WorkspaceStore(tmp_path).save(ws) / "plans" / ws.plans[0].plan_id
    assert "robust evaluation of plan 'Plan 1' not saved" in caplog.text
    assert (folder / "plan.json").is_file() and not (folder / "robust.json").exists()
    back = WorkspaceStore(tmp_path).load(ws.key, patient)
    assert back is not None and [p.name for p in back.plans] == ["Plan 1"]


def test_a_bad_robust_id_is_refused(tmp_path, patient, evaluated):
    result, robust = evaluated
    with pytest.raises(ValueError, match="robust evaluation id"):
        WorkspaceStore(tmp_path).save(_workspace(patient, result, robust, "../x"))
