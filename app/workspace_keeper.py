"""The open patient's workspace: restored when the patient opens, saved as the user works.

Plain Python (no Kivy): the application calls :meth:`WorkspaceKeeper.save_if_changed` on a
timer (every :data:`SAVE_CHECK_S` seconds) and on quit. A save happens only when something the
workspace keeps differs from what was last written: a new, renamed or exported plan, a plan's
new robust evaluation, an edit of the plan form, a display setting, the window/level or the
slices. Edits closer together than the timer's period are written together.

One IonPlan writes a patient's workspace at a time: the keeper takes the workspace's lock when
the patient is opened (or first saved) and releases it when another patient is opened,
on :meth:`WorkspaceKeeper.close` and at process exit. A second IonPlan on the same patient
shows the saved plans read-only and saves nothing for that patient.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.session import PlanEntry, Session
from planning.errors import IonPlanError
from planning.patient import Patient
from planning.workspace import (
    LockHolder,
    PatientKey,
    StoredPlan,
    UnrestoredPlan,
    Workspace,
    WorkspaceError,
    WorkspaceStore,
    patient_key,
)

log = logging.getLogger(__name__)

#: Seconds between the checks for something to save.
SAVE_CHECK_S = 1.0


@dataclass
class Restored:
    """What a patient's workspace gave back.

    Attributes
    ----------
    plans : list of PlanEntry
        Its plans, oldest first.
    exported : list of PlanEntry
        Those of them the user exported.
    settings : dict
        The plan form and display settings (empty: a patient seen the first time).
    problem : str
        What the user must know ("" when all was fine): why the workspace could not be read
        and where it was moved, plans that were not restored and why, or that another
        IonPlan holds the workspace and this one does not save it, or plans restored
        without their damaged robust evaluation.
    """

    plans: list[PlanEntry] = field(default_factory=list)
    exported: list[PlanEntry] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


class WorkspaceKeeper:
    """Reads and writes the session's patient workspace in ``store``.

    Parameters
    ----------
    store : WorkspaceStore
        Where workspaces live.
    session : Session
        The patient and plans.
    settings : callable
        ``settings() -> dict``: the plan form and display settings now (JSON-serialisable).
    exported : callable
        ``exported(entry) -> bool``: whether the user exported a plan.
    """

    def __init__(self, store: WorkspaceStore, session: Session,
                 settings: Callable[[], dict[str, Any]],
                 exported: Callable[[PlanEntry], bool]) -> None:
        self.store = store
        self.session = session
        self._settings = settings
        self._exported = exported
        self._saved: str | None = None  # the snapshot last written (or restored)
        self.last_error = ""
        self._key: PatientKey | None = None  # the patient whose workspace this keeper keeps
        self._unrestored: tuple[UnrestoredPlan, ...] = ()  # written back with each save
        self._blocked = ""  # why nothing is saved for this patient ("" : saves go ahead)

    def _start(self, key: PatientKey) -> None:
        """Keep ``key``'s workspace from now on (the previous patient's lock is released)."""
        if self._key is not None and self._key != key:
            self.store.unlock(self._key)
        self._key = key
        self._unrestored = ()
        self._blocked = ""

    def close(self) -> None:
        """Release the open patient's workspace (its lock); call after the last save."""
        if self._key is not None:
            self.store.unlock(self._key)
        self._key = None

    def _take_lock(self, key: PatientKey) -> LockHolder | None:
        """Take ``key``'s lock; the other IonPlan holding it, if any (this keeper then saves
        nothing for the patient).

        Raises
        ------
        OSError
            The lock file cannot be written.
        """
        holder = self.store.lock(key)
        if holder is not None:
            self._blocked = (f"the patient's workspace is in use by {holder.describe()}; "
                             "this window does not save it")
        return holder

    def restore(self, patient: Patient, source: str) -> Restored:
        """The workspace of ``patient`` (read from ``source``), remembered as the patient to
        reopen at the next start.

        A workspace that cannot be read is moved aside (kept); when that fails nothing is
        saved for the patient until it is reopened. Plans that do not fit the patient as
        opened are left out and kept. When another IonPlan holds the workspace the plans
        are shown and nothing is saved. :attr:`Restored.problem` says which.
        """
        key = patient_key(patient)
        self._start(key)
        self._saved = None
        try:
            self.store.save_last_patient(source, key)
        except OSError as exc:
            log.warning("cannot remember the last patient: %s", exc)
        try:
            holder = self._take_lock(key)
        except OSError as exc:  # tried again at the first save
            log.warning("cannot lock the workspace: %s", exc)
            holder = None
        read_only = "" if holder is None else (
            f"This patient's workspace is in use by {holder.describe()}. This window shows "
            "the plans saved there but saves nothing for this patient: work done here is not "
            "kept. To work here, close the patient in the other IonPlan and open it again "
            f"here (if no IonPlan is running there, remove {holder.path}).")
        try:
            workspace = self.store.load(key, patient)
        except WorkspaceError as exc:
            return Restored(problem=self._damaged(key, exc, read_only))
        if workspace is None:
            return Restored(problem=read_only)
        self._unrestored = workspace.unrestored
        plans = [PlanEntry(p.name, p.result, p.summary, dict(p.setup), p.plan_id, p.robust,
                           p.robust_id) for p in workspace.plans]
        exported = [e for e, p in zip(plans, workspace.plans, strict=True) if p.exported]
        notes = [f"Plan {u.name!r} was not restored: {u.reason}." for u in workspace.unrestored]
        if notes:
            notes.append(f"{'It is' if len(notes) == 1 else 'They are'} kept, untouched, in "
                         f"{self.store.folder(key)}; a plan made on another CT or structure "
                         "set comes back when the patient is opened with those.")
        notes += [f"{problem}." for problem in workspace.problems]
        if read_only:
            notes.insert(0, read_only)
        return Restored(plans, exported, dict(workspace.settings), "\n".join(notes))

    def _damaged(self, key: PatientKey, exc: WorkspaceError, read_only: str) -> str:
        """Move the unreadable workspace aside (only when this keeper holds it); what to tell
        the user."""
        if read_only:
            return f"{exc}. It was left as it is.\n{read_only}"
        try:
            aside = self.store.move_aside(key)
        except OSError as move_exc:
            folder = self.store.folder(key)
            self._blocked = (f"the damaged workspace {folder} could not be moved aside; "
                             "nothing is saved for this patient until it is moved or removed "
                             "and the patient opened again")
            return (f"{exc}. It could not be moved aside ({move_exc}). Nothing is saved for "
                    "this patient, so that it is not written over: move or remove "
                    f"{folder}, then open the patient again.")
        return (f"{exc}. The workspace was moved to {aside} (nothing was deleted); the patient "
                "opens without its saved plans.")

    def mark_saved(self) -> None:
        """What the session shows now is what is on disk (just restored)."""
        self._saved = self._snapshot()

    def _snapshot(self) -> str:
        plans = [(p.plan_id, p.name, p.summary, self._exported(p), p.robust_id)
                 for p in self.session.plans]
        return json.dumps([self._settings(), plans], sort_keys=True)

    def save_if_changed(self) -> Path | None:
        """Write the workspace when it differs from the last one written; return its folder
        (None: nothing to write, or no patient). A failed write is logged and kept in
        :attr:`last_error`; it is tried again at the next call."""
        patient = self.session.patient
        if patient is None:
            return None
        key = patient_key(patient)
        if key != self._key:  # a patient shown without restore()
            self._start(key)
        snapshot = self._snapshot()
        if snapshot == self._saved:
            return None
        if not self._blocked and not self.store.holds_lock(key):
            try:
                self._take_lock(key)
            except OSError as exc:
                self._failed(patient, exc)
                return None
        if self._blocked:
            if self._blocked != self.last_error:
                log.warning("not saving the workspace of %s: %s", patient.ct.study.patient_id,
                            self._blocked)
            self.last_error = self._blocked
            return None
        workspace = Workspace(
            patient_key(patient), self.session.source,
            tuple(StoredPlan(p.plan_id, p.name, p.result, p.summary, self._exported(p),
                             p.setup, p.robust, p.robust_id) for p in self.session.plans),
            self._settings(), self._unrestored)
        try:
            folder = self.store.save(workspace)
        except (OSError, IonPlanError, ValueError, TypeError) as exc:
            self._failed(patient, exc)
            return None
        self._saved = snapshot
        self.last_error = ""
        return folder

    def _failed(self, patient: Patient, exc: Exception) -> None:
        """Log a failed save (once per distinct error) and keep it in :attr:`last_error`."""
        if str(exc) != self.last_error:
            log.error("cannot save the workspace of %s: %s", patient.ct.study.patient_id, exc)
        self.last_error = str(exc)
