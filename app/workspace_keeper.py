"""The open patient's workspace: restored when the patient opens, saved as the user works.

Plain Python (no Kivy): the application calls :meth:`WorkspaceKeeper.save_if_changed` on a
timer (every :data:`SAVE_CHECK_S` seconds) and on quit. A save happens only when something the
workspace keeps differs from what was last written: a new, renamed or exported plan, an edit
of the plan form, a display setting, the window/level or the slices. Edits closer together
than the timer's period are written together.
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
from planning.workspace import StoredPlan, Workspace, WorkspaceError, WorkspaceStore, patient_key

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
        Why the workspace could not be read and where it was moved ("" when it was fine).
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

    def restore(self, patient: Patient, source: str) -> Restored:
        """The workspace of ``patient`` (read from ``source``), remembered as the patient to
        reopen at the next start. A workspace that cannot be read is moved aside (kept) and
        :attr:`Restored.problem` says why and where."""
        key = patient_key(patient)
        self._saved = None
        try:
            self.store.save_last_patient(source, key)
        except OSError as exc:
            log.warning("cannot remember the last patient: %s", exc)
        try:
            workspace = self.store.load(key, patient)
        except WorkspaceError as exc:
            try:
                aside = self.store.move_aside(key)
            except OSError as move_exc:
                return Restored(problem=f"{exc}. It could not be moved aside ({move_exc}); "
                                        "new work on this patient is not saved until it is "
                                        "moved or removed.")
            return Restored(problem=f"{exc}. The workspace was moved to {aside} (nothing was "
                                    "deleted); the patient opens without its saved plans.")
        if workspace is None:
            return Restored()
        plans = [PlanEntry(p.name, p.result, p.summary, dict(p.setup), p.plan_id)
                 for p in workspace.plans]
        exported = [e for e, p in zip(plans, workspace.plans, strict=True) if p.exported]
        return Restored(plans, exported, dict(workspace.settings))

    def mark_saved(self) -> None:
        """What the session shows now is what is on disk (just restored)."""
        self._saved = self._snapshot()

    def _snapshot(self) -> str:
        plans = [(p.plan_id, p.name, p.summary, self._exported(p)) for p in self.session.plans]
        return json.dumps([self._settings(), plans], sort_keys=True)

    def save_if_changed(self) -> Path | None:
        """Write the workspace when it differs from the last one written; return its folder
        (None: nothing to write, or no patient). A failed write is logged and kept in
        :attr:`last_error`; it is tried again at the next call."""
        patient = self.session.patient
        if patient is None:
            return None
        snapshot = self._snapshot()
        if snapshot == self._saved:
            return None
        workspace = Workspace(
            patient_key(patient), self.session.source,
            tuple(StoredPlan(p.plan_id, p.name, p.result, p.summary, self._exported(p),
                             p.setup) for p in self.session.plans),
            self._settings())
        try:
            folder = self.store.save(workspace)
        except (OSError, IonPlanError, ValueError, TypeError) as exc:
            if str(exc) != self.last_error:
                log.error("cannot save the workspace of %s: %s", patient.ct.study.patient_id,
                          exc)
            self.last_error = str(exc)
            return None
        self._saved = snapshot
        self.last_error = ""
        return folder
