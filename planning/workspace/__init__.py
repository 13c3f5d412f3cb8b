"""Plan workspaces: what a user made on a patient, kept on disk between runs (docs/workspace.md)."""

from planning.workspace.lock import LockHolder
from planning.workspace.store import (
    FORMAT,
    FORMAT_VERSION,
    PatientKey,
    StoredPlan,
    UnrestoredPlan,
    Workspace,
    WorkspaceError,
    WorkspaceStore,
    new_plan_id,
    patient_key,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LockHolder",
    "PatientKey",
    "StoredPlan",
    "UnrestoredPlan",
    "Workspace",
    "WorkspaceError",
    "WorkspaceStore",
    "new_plan_id",
    "patient_key",
]
