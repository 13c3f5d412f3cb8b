"""One writer per workspace: the lock, a second IonPlan on the same patient, and saves that never
remove what they did not load or write over what they cannot read."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.session import Session
from app.workspace_keeper import WorkspaceKeeper
from planning.patient import Patient
from planning.workspace import (
    StoredPlan,
    Workspace,
    WorkspaceError,
    WorkspaceStore,
    new_plan_id,
    patient_key,
)
from tests.workspace_factory import synthetic_plan_result

REPO = Path(__file__).resolve().parents[1]


def _window(root: Path, patient: Patient) -> tuple[Session, WorkspaceKeeper, dict, str]:
    """An IonPlan window opening ``patient``: its session, keeper, settings and what it told
    the user."""
    settings = {"form": {}, "display": {"window_hu": 400.0}}
    session = Session()
    session.set_patient(patient, "demo patient")
    keeper = WorkspaceKeeper(WorkspaceStore(root), session,
                             lambda: json.loads(json.dumps(settings)), lambda entry: False)
    restored = keeper.restore(patient, "demo patient")
    session.set_patient(patient, "demo patient", restored.plans)
    keeper.mark_saved()
    return session, keeper, settings, restored.problem


def _lock_file(root: Path, pid: int, host: str | None = None) -> Path:
    """A lock written by process ``pid`` (on this host unless ``host`` is given)."""
    path = root / "locks" / "x.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                "since_utc": "2026-12-01T08:00:00Z", "token": "0" * 16}))
    return path


def test_a_second_window_is_read_only_and_deletes_no_plan(tmp_path, patient):
    a_session, a, _, _ = _window(tmp_path, patient)
    b_session, b, b_settings, told = _window(tmp_path, patient)
    assert f"in use by IonPlan process {os.getpid()}" in told
    assert "saves nothing for this patient" in told
    plan = a_session.add_plan(synthetic_plan_result(patient, 1), "computed in A")
    folder = a.save_if_changed()
    assert folder is not None
    manifest = (folder / "workspace.json").read_bytes()
    # In B the user drags window/level and computes: nothing is written, and it says why.
    b_settings["display"]["window_hu"] = 800.0
    b_session.add_plan(synthetic_plan_result(patient, 2), "computed in B")
    assert b.save_if_changed() is None
    assert "in use by IonPlan process" in b.last_error
    assert (folder / "workspace.json").read_bytes() == manifest
    assert (folder / "plans" / plan.plan_id / "plan.json").is_file()
    # A quits (its lock is released); the next window restores A's plan and may save.
    assert a.save_if_changed() is None
    a.close()
    c_session, c, c_settings, told = _window(tmp_path, patient)
    assert told == ""
    assert [(p.plan_id, p.summary) for p in c_session.plans] == [(plan.plan_id, "computed in A")]
    c_settings["display"]["window_hu"] = 900.0
    assert c.save_if_changed() == folder
    b.close()  # B, closed after C took the lock, leaves C's lock alone
    assert c.store.holds_lock(patient_key(patient))


def test_opening_another_patient_releases_the_lock(tmp_path, patient):
    from dataclasses import replace

    _, keeper, _, _ = _window(tmp_path, patient)
    store = keeper.store
    lock = store.lock_path(patient_key(patient))
    info = json.loads(lock.read_text())
    assert (info["pid"], info["host"]) == (os.getpid(), socket.gethostname())
    other = replace(patient, ct=replace(patient.ct, series_instance_uid="1.2.3.4"))
    keeper.restore(other, "elsewhere")
    assert not lock.exists() and store.lock_path(patient_key(other)).exists()
    keeper.close()
    assert not store.lock_path(patient_key(other)).exists()


def test_stale_lock_is_taken_over_a_live_or_remote_one_is_not(tmp_path, patient):
    from planning.workspace.lock import WorkspaceLock

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    path = _lock_file(tmp_path, finished.pid)
    lock = WorkspaceLock(path)
    assert lock.acquire() is None and lock.held
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock_file(tmp_path, sleeper.pid)
        holder = WorkspaceLock(path).acquire()
        assert holder is not None and holder.pid == sleeper.pid
        assert f"IonPlan process {sleeper.pid} on host" in holder.describe()
    finally:
        sleeper.kill()
        sleeper.wait()
    # Another host's process cannot be checked: its lock is respected.
    _lock_file(tmp_path, finished.pid, host="another-workstation")
    holder = WorkspaceLock(path).acquire()
    assert holder is not None and holder.host == "another-workstation"


def test_lock_of_a_killed_process_is_taken_over_and_released_at_exit(tmp_path, patient):
    store = WorkspaceStore(tmp_path)
    key = patient_key(patient)
    script = textwrap.dedent(f"""
        import sys, time
        from planning.workspace import PatientKey, WorkspaceStore
        store = WorkspaceStore({str(tmp_path)!r})
        assert store.lock(PatientKey(*{tuple(key.as_json().values())!r})) is None
        print("locked", flush=True)
        if sys.argv[1] == "wait":
            time.sleep(60)
        """)

    def child(mode: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", script, mode], cwd=REPO,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        return proc

    proc = child("wait")
    assert store.lock(key) is not None  # held by a live process
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.lock_path(key).exists()  # a killed process leaves its lock behind ...
    assert store.lock(key) is None  # ... which is taken over
    store.unlock(key)
    proc = child("exit")
    assert proc.wait(timeout=60) == 0
    assert not store.lock_path(key).exists()  # a process that ends releases its lock


def test_save_keeps_plans_it_did_not_load(tmp_path, patient):
    key = patient_key(patient)
    theirs = StoredPlan(new_plan_id(), "Theirs", synthetic_plan_result(patient, 1))
    WorkspaceStore(tmp_path).save(Workspace(key, "demo patient", (theirs,), {}))
    mine = StoredPlan(new_plan_id(), "Mine", synthetic_plan_result(patient, 2))
    store = WorkspaceStore(tmp_path)  # never loaded the workspace
    folder = store.save(Workspace(key, "demo patient", (mine,), {}))
    assert (folder / "plans" / theirs.plan_id / "plan.json").is_file()
    back = WorkspaceStore(tmp_path).load(key, patient)
    assert back is not None and [p.name for p in back.plans] == ["Mine", "Theirs"]
    # A plan this store loaded and then dropped is removed.
    store.load(key, patient)
    store.save(Workspace(key, "demo patient", (mine,), {}))
    assert not (folder / "plans" / theirs.plan_id).exists()


def test_save_refuses_while_another_process_holds_the_lock(tmp_path, patient):
    key = patient_key(patient)
    store = WorkspaceStore(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = _lock_file(tmp_path, sleeper.pid).rename(store.lock_path(key))
        with pytest.raises(WorkspaceError, match=f"in use by IonPlan process {sleeper.pid}"):
            store.save(Workspace(key, "demo patient", (), {}))
        assert not store.folder(key).exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    store.save(Workspace(key, "demo patient", (), {}))  # a lock of a process gone is no bar
    assert path.exists()  # save() reads the lock, lock() takes it


def test_save_never_writes_over_a_manifest_it_cannot_read(tmp_path, patient):
    key = patient_key(patient)
    store = WorkspaceStore(tmp_path)
    old = StoredPlan(new_plan_id(), "Week-1 plan", synthetic_plan_result(patient, 1))
    folder = store.save(Workspace(key, "demo patient", (old,), {}))
    manifest = folder / "workspace.json"
    for damaged in (manifest.read_text()[:300],
                    json.dumps({**json.loads(manifest.read_text()), "format_version": 9})):
        manifest.write_text(damaged)
        with pytest.raises(WorkspaceError, match="not written over"):
            WorkspaceStore(tmp_path).save(Workspace(key, "demo patient", (), {}))
        assert manifest.read_text() == damaged
        assert (folder / "plans" / old.plan_id / "plan.json").is_file()


def test_damaged_workspace_that_cannot_be_moved_aside_stops_saving(tmp_path, patient,
                                                                    monkeypatch):
    key = patient_key(patient)
    store = WorkspaceStore(tmp_path)
    old = StoredPlan(new_plan_id(), "Week-1 plan", synthetic_plan_result(patient, 1))
    folder = store.save(Workspace(key, "demo patient", (old,), {}))
    manifest = folder / "workspace.json"
    manifest.write_text(manifest.read_text()[:300])
    damaged = manifest.read_bytes()

    def busy(_key):
        raise OSError(16, "Device or resource busy")

    session = Session()
    session.set_patient(patient, "demo patient")
    keeper = WorkspaceKeeper(WorkspaceStore(tmp_path), session, lambda: {"display": {}},
                             lambda e: False)
    monkeypatch.setattr(keeper.store, "move_aside", busy)
    restored = keeper.restore(patient, "demo patient")
    assert "could not be moved aside" in restored.problem
    assert "Nothing is saved for this patient" in restored.problem
    assert str(folder) in restored.problem
    session.add_plan(synthetic_plan_result(patient, 2), "new work")
    assert keeper.save_if_changed() is None
    assert "could not be moved aside" in keeper.last_error
    assert manifest.read_bytes() == damaged
    assert sorted(p.name for p in (folder / "plans").iterdir()) == [old.plan_id]
    # Once the user moved it away and reopens the patient, saving goes on.
    folder.rename(tmp_path / "kept by hand")
    keeper.restore(patient, "demo patient")
    assert keeper.save_if_changed() is not None and keeper.last_error == ""
