"""Plan workspaces on disk: one folder per patient, a versioned JSON manifest, .npy arrays.

Layout (docs/workspace.md)::

    ROOT/last_patient.json           the patient open when the application last saved
    ROOT/<patient folder>/workspace.json    manifest: format, version, patient, settings, plans
    ROOT/<patient folder>/plans/<plan id>/plan.json    one plan's description, array checksums
    ROOT/<patient folder>/plans/<plan id>/<array>.npy  its spot arrays and dose cubes

Saving is crash-safe: a plan folder is written once, under a temporary name, and renamed into
place when complete; the manifest, which names the plan folders, is replaced atomically after
them. A process killed at any moment leaves the previous manifest or the new one, each with
all its plan folders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning import __version__
from planning.atomic import atomic_binary_file, atomic_write_text
from planning.errors import DataFileError
from planning.patient import Patient
from planning.planner import PlanResult
from planning.workspace.plan_arrays import PlanRecordError, plan_from_record, plan_to_record

log = logging.getLogger(__name__)

FORMAT = "ionplan-workspace"
#: The manifest version this IonPlan writes and the newest it reads.
FORMAT_VERSION = 1
MANIFEST = "workspace.json"
PLAN_FILE = "plan.json"
LAST_PATIENT = "last_patient.json"
_PLAN_ID = re.compile(r"^[0-9a-f]{8,32}$")


class WorkspaceError(DataFileError):
    """A workspace cannot be read: damaged, of a newer or unknown format."""


@dataclass(frozen=True)
class PatientKey:
    """What identifies the patient (and CT) a workspace belongs to.

    Attributes
    ----------
    patient_id : str
        DICOM Patient ID.
    study_instance_uid, series_instance_uid : str
        The CT's study and series.
    """

    patient_id: str
    study_instance_uid: str
    series_instance_uid: str

    def folder_name(self) -> str:
        """``<patient id, file-safe>-<16 hex digits of a SHA-256 of all three>``."""
        text = "\0".join((self.patient_id, self.study_instance_uid, self.series_instance_uid))
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.patient_id).strip("._")[:32]
        return f"{safe or 'patient'}-{digest}"

    def as_json(self) -> dict[str, str]:
        return {"patient_id": self.patient_id, "study_instance_uid": self.study_instance_uid,
                "series_instance_uid": self.series_instance_uid}


def patient_key(patient: Patient) -> PatientKey:
    """The key of ``patient``'s workspace: Patient ID, Study and CT Series Instance UIDs."""
    ct = patient.ct
    return PatientKey(ct.study.patient_id, ct.study.study_instance_uid, ct.series_instance_uid)


@dataclass(frozen=True, eq=False)
class StoredPlan:
    """A plan of a workspace.

    Attributes
    ----------
    plan_id : str
        Name of its folder under ``plans/`` (8-32 lowercase hex digits), fixed for its life.
    name : str
        The name the user sees (renamable).
    result : PlanResult
        The plan and its cubes.
    summary : str
        One line on how it was made.
    exported : bool
        Whether the user exported it (DICOM).
    setup : dict
        The plan-setup form it was computed with (JSON object, the application's own keys).
    """

    plan_id: str
    name: str
    result: PlanResult
    summary: str = ""
    exported: bool = False
    setup: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Workspace:
    """Everything kept for one patient.

    Attributes
    ----------
    key : PatientKey
        The patient.
    source : str
        Where the patient was read from (a DICOM folder, or ``"demo patient"``).
    plans : tuple of StoredPlan
        Oldest first.
    settings : dict
        The application's form and display settings (JSON object; docs/workspace.md).
    """

    key: PatientKey
    source: str
    plans: tuple[StoredPlan, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)


def new_plan_id() -> str:
    """A fresh plan folder name (16 hex digits)."""
    return os.urandom(8).hex()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class WorkspaceStore:
    """The workspaces under ``root`` (created when first written)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def folder(self, key: PatientKey) -> Path:
        return self.root / key.folder_name()

    # --- writing -------------------------------------------------------------------------
    def save(self, workspace: Workspace) -> Path:
        """Write ``workspace`` (new plan folders, then the manifest); return its folder.

        Plan folders already on disk are not rewritten (a plan's arrays never change); plan
        folders the manifest no longer names are removed afterwards.
        """
        folder = self.folder(workspace.key)
        plans_dir = folder / "plans"
        plans_dir.mkdir(parents=True, exist_ok=True)
        for stored in workspace.plans:
            if not _PLAN_ID.match(stored.plan_id):
                raise ValueError(f"plan id {stored.plan_id!r} is not 8-32 lowercase hex digits")
            if not (plans_dir / stored.plan_id / PLAN_FILE).is_file():
                _write_plan_folder(plans_dir, stored.plan_id, stored.result)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "ionplan_version": __version__,
            "saved_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "patient": workspace.key.as_json(), "source": workspace.source,
            "settings": dict(workspace.settings),
            "plans": [{"id": p.plan_id, "name": p.name, "summary": p.summary,
                       "exported": p.exported, "setup": dict(p.setup)}
                      for p in workspace.plans]}
        atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        kept = {p.plan_id for p in workspace.plans}
        for child in plans_dir.iterdir():
            if child.name not in kept:  # a dropped plan, or a partial folder of a crash
                shutil.rmtree(child, ignore_errors=True)
        return folder

    def save_last_patient(self, source: str, key: PatientKey) -> None:
        """Remember the open patient, reopened at the next start."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / LAST_PATIENT, json.dumps(
            {"format": FORMAT, "source": source, **key.as_json()}, indent=1) + "\n")

    def last_patient(self) -> tuple[str, str] | None:
        """``(source, series_instance_uid)`` of the patient open last, or None (never saved,
        or an unreadable file: logged, the application then starts as the first time)."""
        path = self.root / LAST_PATIENT
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            source, series = data["source"], data["series_instance_uid"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: ignoring the last patient (%s)", path, exc)
            return None
        if not (isinstance(source, str) and isinstance(series, str) and source):
            return None
        return source, series

    # --- reading -------------------------------------------------------------------------
    def load(self, key: PatientKey, patient: Patient) -> Workspace | None:
        """The workspace of ``key`` with its plans on ``patient``; None when there is none.

        Raises
        ------
        WorkspaceError
            The manifest or a plan folder is damaged, or was written by a newer IonPlan
            (format version above :data:`FORMAT_VERSION`) or is not a workspace.
        """
        folder = self.folder(key)
        path = folder / MANIFEST
        if not path.exists():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise WorkspaceError(path, f"damaged workspace manifest ({exc})") from None
        _check_format(path, manifest)
        try:
            if manifest["patient"] != key.as_json():
                raise WorkspaceError(path, "the manifest belongs to another patient or CT")
            settings = manifest["settings"]
            entries = manifest["plans"]
            source = str(manifest["source"])
            if not isinstance(settings, dict) or not isinstance(entries, list):
                raise TypeError("settings must be an object and plans a list")
            plans = tuple(_read_plan(folder / "plans", e, patient) for e in entries)
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkspaceError(path, f"damaged workspace manifest (missing or malformed "
                                       f"{exc!s})") from None
        return Workspace(key, source, plans, settings)

    def move_aside(self, key: PatientKey) -> Path:
        """Rename the workspace of ``key`` out of the way (kept, never deleted): the next save
        starts a fresh one. Returns the new name."""
        folder = self.folder(key)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = folder.with_name(f"{folder.name}.unreadable-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = folder.with_name(f"{folder.name}.unreadable-{stamp}-{n}")
        folder.rename(target)
        return target


def _check_format(path: Path, manifest: Any) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise WorkspaceError(path, f"not an IonPlan workspace (format {got!r}, expected "
                                   f"{FORMAT!r})")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise WorkspaceError(path, f"damaged workspace manifest (format_version {version!r})")
    if version > FORMAT_VERSION:
        made_by = manifest.get("ionplan_version", "a newer version")
        raise WorkspaceError(path, f"written by IonPlan {made_by} in workspace format "
                                   f"{version}; this IonPlan {__version__} reads format "
                                   f"{FORMAT_VERSION} at most: open it with a newer IonPlan")


def _write_plan_folder(plans_dir: Path, plan_id: str, result: PlanResult) -> None:
    """Write the plan into ``plans_dir/.<id>.partial-*`` and rename it to ``<id>``."""
    meta, arrays = plan_to_record(result)
    partial = plans_dir / f".{plan_id}.partial-{os.getpid()}-{os.urandom(3).hex()}"
    partial.mkdir()
    try:
        checksums: dict[str, dict[str, Any]] = {}
        for name, array in arrays.items():
            path = partial / f"{name}.npy"
            with atomic_binary_file(path) as fh:
                np.save(fh, array, allow_pickle=False)
            checksums[name] = {"dtype": array.dtype.str, "shape": list(array.shape),
                               "sha256": _sha256(path)}
        atomic_write_text(partial / PLAN_FILE, json.dumps(
            {"format": FORMAT, "format_version": FORMAT_VERSION, **meta,
             "arrays": checksums}, indent=1) + "\n")
        partial.rename(plans_dir / plan_id)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _read_plan(plans_dir: Path, entry: Mapping[str, Any], patient: Patient) -> StoredPlan:
    plan_id = entry["id"]
    if not isinstance(plan_id, str) or not _PLAN_ID.match(plan_id):
        raise ValueError(f"plan id {plan_id!r}")
    folder = plans_dir / plan_id
    path = folder / PLAN_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WorkspaceError(path, f"damaged plan {entry.get('name')!r} ({exc})") from None
    _check_format(path, meta)
    arrays = _read_arrays(folder, meta.get("arrays"))
    try:
        result = plan_from_record(meta, arrays, patient)
    except PlanRecordError as exc:
        raise WorkspaceError(path, f"damaged plan {entry.get('name')!r} ({exc})") from None
    setup = entry.get("setup", {})
    if not isinstance(setup, dict):
        raise TypeError("a plan's setup must be an object")
    return StoredPlan(plan_id, str(entry["name"]), result, str(entry.get("summary", "")),
                      bool(entry.get("exported", False)), setup)


def _read_arrays(folder: Path, listing: Any) -> dict[str, NDArray[Any]]:
    """The arrays ``listing`` names, each checked against its dtype, shape and SHA-256."""
    if not isinstance(listing, dict):
        raise WorkspaceError(folder / PLAN_FILE, "damaged plan: no array listing")
    arrays: dict[str, NDArray[Any]] = {}
    for name, info in listing.items():
        path = folder / f"{name}.npy"
        try:
            if not re.match(r"^[a-z0-9_]+$", name):
                raise ValueError(f"bad array name {name!r}")
            if _sha256(path) != info["sha256"]:
                raise ValueError("checksum mismatch")
            array = np.load(path, allow_pickle=False)
            if array.dtype.str != info["dtype"] or list(array.shape) != info["shape"]:
                raise ValueError(f"dtype/shape {array.dtype.str} {array.shape}, expected "
                                 f"{info['dtype']} {info['shape']}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WorkspaceError(path, f"damaged plan array ({exc})") from None
        arrays[name] = array
    return arrays

