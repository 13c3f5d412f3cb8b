"""Plan workspaces on disk: one folder per patient, a versioned JSON manifest, .npy arrays.

Layout (docs/workspace.md)::

    ROOT/last_patient.json           the patient open when the application last saved
    ROOT/locks/<patient folder>.lock        the IonPlan process that writes that workspace
    ROOT/<patient folder>/workspace.json    manifest: format, version, patient, settings, plans
    ROOT/<patient folder>/plans/<plan id>/plan.json    one plan's description, array checksums
    ROOT/<patient folder>/plans/<plan id>/<array>.npy  its spot arrays and dose cubes
    ROOT/<patient folder>/plans/<plan id>/robust.json  its robust evaluation, if any
    ROOT/<patient folder>/plans/<plan id>/robust-<robust id>/<array>.npy  its envelope cubes

Saving is crash-safe: a plan folder is written once, under a temporary name, and renamed into
place when complete; the manifest, which names the plan folders, is replaced atomically after
them. A process killed at any moment leaves the previous manifest or the new one, each with
all its plan folders. A robust evaluation, made later than its plan, is added to the plan's
folder the same way: its cubes' folder is renamed into place when complete, then
``robust.json``, which names it, is replaced atomically; the folder of an evaluation it
replaced is removed after that.

One process writes a workspace at a time: :meth:`WorkspaceStore.lock` takes its lock file
(:mod:`planning.workspace.lock`); a save never removes a plan folder that the manifest on disk
lists but this store did not load or write (another IonPlan's plan is kept, and listed), and
never writes over a manifest it cannot read.
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning import __version__
from planning.atomic import atomic_binary_file, atomic_write_text
from planning.errors import DataFileError, IonPlanError
from planning.patient import Patient
from planning.planner import PlanResult
from planning.robust import RobustResult
from planning.workspace.identity import ct_record, fit_problems, needed_structures
from planning.workspace.lock import LockHolder, WorkspaceLock, read_holder
from planning.workspace.plan_arrays import PlanRecordError, plan_from_record, plan_to_record
from planning.workspace.robust_arrays import robust_from_record, robust_to_record

log = logging.getLogger(__name__)

FORMAT = "ionplan-workspace"
#: The manifest version this IonPlan writes and the newest it reads.
FORMAT_VERSION = 1
MANIFEST = "workspace.json"
PLAN_FILE = "plan.json"
#: A plan folder's robust evaluation: its report entries, cube checksums and cube folder.
ROBUST_FILE = "robust.json"
LAST_PATIENT = "last_patient.json"
LOCKS = "locks"
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
    robust : RobustResult or None
        Its robust evaluation (``robust.nominal`` is ``result``), if it has one.
    robust_id : str
        Names that evaluation (8-32 lowercase hex digits, a new one for each evaluation): a
        save writes the evaluation when the plan's folder holds another one, or none.
    """

    plan_id: str
    name: str
    result: PlanResult
    summary: str = ""
    exported: bool = False
    setup: Mapping[str, Any] = field(default_factory=dict)
    robust: RobustResult | None = None
    robust_id: str = ""


@dataclass(frozen=True)
class UnrestoredPlan:
    """A plan of a workspace that could not be restored on the patient as opened (another
    CT, a missing structure, a damaged file). It stays on disk and in the manifest.

    Attributes
    ----------
    plan_id, name : str
        Its folder and the name the user gave it.
    entry : dict
        Its manifest entry as read (written back unchanged).
    reason : str
        Why it was not restored (the file and what is wrong).
    """

    plan_id: str
    name: str
    entry: Mapping[str, Any]
    reason: str


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
    unrestored : tuple of UnrestoredPlan
        Plans kept on disk that were not restored (:meth:`WorkspaceStore.load`); a save
        keeps them listed.
    problems : tuple of str
        What :meth:`WorkspaceStore.load` left out of restored plans, one sentence each (a
        damaged robust evaluation: the plan is restored without it). Not written.
    """

    key: PatientKey
    source: str
    plans: tuple[StoredPlan, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    unrestored: tuple[UnrestoredPlan, ...] = ()
    problems: tuple[str, ...] = ()


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
    """The workspaces under ``root`` (created when first written).

    A store remembers, per patient, the plans it loaded or wrote and the workspace locks it
    holds: use one store per application.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._locks: dict[PatientKey, WorkspaceLock] = {}
        self._known: dict[PatientKey, set[str]] = {}
        # (patient, plan id) -> id of the robust evaluation its folder holds (loaded or
        # written by this store)
        self._robust_on_disk: dict[tuple[PatientKey, str], str] = {}

    def folder(self, key: PatientKey) -> Path:
        return self.root / key.folder_name()

    # --- the lock ------------------------------------------------------------------------
    def lock_path(self, key: PatientKey) -> Path:
        """``ROOT/locks/<patient folder>.lock``."""
        return self.root / LOCKS / f"{key.folder_name()}.lock"

    def lock(self, key: PatientKey) -> LockHolder | None:
        """Take the lock of ``key``'s workspace for this store (a stale lock, of a process
        that is gone, is taken over). None when this store holds it now, else who does.

        Raises
        ------
        OSError
            The lock file cannot be written.
        """
        lock = self._locks.setdefault(key, WorkspaceLock(self.lock_path(key)))
        return lock.acquire()

    def holds_lock(self, key: PatientKey) -> bool:
        """Whether this store holds the lock of ``key``'s workspace."""
        lock = self._locks.get(key)
        return lock is not None and lock.held

    def unlock(self, key: PatientKey) -> None:
        """Release the lock of ``key``'s workspace if this store holds it."""
        lock = self._locks.pop(key, None)
        if lock is not None:
            lock.release()

    def other_holder(self, key: PatientKey) -> LockHolder | None:
        """The live process other than this store holding ``key``'s lock, if any."""
        if self.holds_lock(key):
            return None
        try:
            holder = read_holder(self.lock_path(key))
        except (OSError, ValueError):
            return None  # a damaged lock names no one; the next lock() takes it over
        return None if holder is None or holder.is_stale() else holder

    # --- writing -------------------------------------------------------------------------
    def save(self, workspace: Workspace) -> Path:
        """Write ``workspace`` (new plan folders and robust evaluations, then the manifest);
        return its folder.

        Plan folders already on disk are not rewritten (a plan's arrays never change); a
        plan's robust evaluation is written when its folder does not hold that evaluation
        (:attr:`StoredPlan.robust_id`) and then replaces the one held, if any (a plan given
        without an evaluation leaves the one on disk alone). A plan
        folder is removed afterwards only when the new manifest does not name it and it is
        not a plan the manifest on disk lists that this store never loaded nor wrote (such a
        plan, saved by another IonPlan, is kept and stays listed). Unrestored plans stay
        listed.

        Raises
        ------
        WorkspaceError
            Another running IonPlan holds the workspace's lock, or the manifest on disk
            cannot be read (it is not written over: move it aside or remove it first).
        OSError
            Writing failed (the previous manifest and its plans are left as they were).
        """
        key = workspace.key
        folder = self.folder(key)
        holder = self.other_holder(key)
        if holder is not None:
            raise WorkspaceError(folder, f"in use by {holder.describe()} (lock file "
                                         f"{holder.path}): not saved from here")
        path = folder / MANIFEST
        on_disk: list[dict[str, Any]] = []
        if path.exists():
            try:
                on_disk = _read_manifest(path, key)[1]
            except WorkspaceError as exc:
                raise WorkspaceError(path, f"{exc.reason}; it was not written over: move or "
                                           "remove the workspace folder to save again") from None
        entries: list[dict[str, Any]] = [
            {"id": p.plan_id, "name": p.name, "summary": p.summary, "exported": p.exported,
             "setup": dict(p.setup)} for p in workspace.plans]
        entries += [dict(u.entry) for u in workspace.unrestored]
        ids = {e["id"] for e in entries}
        known = self._known.get(key, set())
        foreign = [e for e in on_disk if e["id"] not in ids and e["id"] not in known]
        for e in foreign:
            log.warning("%s: keeping plan %r, saved by another IonPlan", folder, e.get("name"))
        plans_dir = folder / "plans"
        plans_dir.mkdir(parents=True, exist_ok=True)
        for stored in workspace.plans:
            if not _PLAN_ID.match(stored.plan_id):
                raise ValueError(f"plan id {stored.plan_id!r} is not 8-32 lowercase hex digits")
            if not (plans_dir / stored.plan_id / PLAN_FILE).is_file():
                _write_plan_folder(plans_dir, stored.plan_id, stored.result)
            if stored.robust is not None:
                self._keep_robust(key, plans_dir / stored.plan_id, stored)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "ionplan_version": __version__,
            "saved_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "patient": key.as_json(), "source": workspace.source,
            "settings": dict(workspace.settings), "plans": entries + foreign}
        atomic_write_text(path, json.dumps(manifest, indent=1) + "\n")
        self._known.setdefault(key, set()).update(ids)
        kept = ids | {e["id"] for e in foreign}
        for child in plans_dir.iterdir():
            if child.name not in kept:  # a dropped plan, or a partial folder of a crash
                shutil.rmtree(child, ignore_errors=True)
        return folder

    def _keep_robust(self, key: PatientKey, folder: Path, stored: StoredPlan) -> None:
        """Write ``stored``'s robust evaluation into its plan ``folder`` unless it is there
        (one that cannot be recorded is logged and left out, once)."""
        assert stored.robust is not None
        rid = stored.robust_id
        if not _PLAN_ID.match(rid):
            raise ValueError(f"robust evaluation id {rid!r} of plan {stored.name!r} is not "
                             "8-32 lowercase hex digits")
        memo = (key, stored.plan_id)
        if self._robust_on_disk.get(memo) != rid and _robust_id_on_disk(folder) != rid:
            try:
                _write_robust(folder, rid, stored.robust)
            except PlanRecordError as exc:  # the plan and the manifest are saved regardless
                log.warning("%s: robust evaluation of plan %r not saved: %s", folder,
                            stored.name, exc)
        self._robust_on_disk[memo] = rid

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

        A plan that cannot be restored on ``patient`` (computed on another CT geometry or
        images, a structure it needs is missing, its folder is damaged) is left out of
        :attr:`Workspace.plans` and listed in :attr:`Workspace.unrestored` with the reason.
        A plan whose robust evaluation is damaged is restored without it (said in
        :attr:`Workspace.problems`; the files stay until a new evaluation replaces them).
        Restored plans keep unique names (a clash gets `` (2)``).

        Raises
        ------
        WorkspaceError
            The manifest is damaged, was written by a newer IonPlan (format version above
            :data:`FORMAT_VERSION`), is not a workspace or belongs to another patient.
        """
        path = self.folder(key) / MANIFEST
        if not path.exists():
            return None
        manifest, entries = _read_manifest(path, key)
        plans: list[StoredPlan] = []
        unrestored: list[UnrestoredPlan] = []
        problems: list[str] = []
        names: set[str] = set()
        for entry in entries:
            name = str(entry["name"])
            try:
                stored = _read_plan_or_error(path.parent / "plans", entry, patient)
            except WorkspaceError as exc:
                log.warning("not restored: %s", exc)
                unrestored.append(UnrestoredPlan(entry["id"], name, entry, str(exc)))
                continue
            try:
                stored = _with_robust(path.parent / "plans" / stored.plan_id, stored)
            except WorkspaceError as exc:
                log.warning("robust evaluation not restored: %s", exc)
                problems.append(f"The robust evaluation of plan {name!r} was not restored: "
                                f"{exc}; the plan is restored without it")
            if stored.robust is not None:
                self._robust_on_disk[(key, stored.plan_id)] = stored.robust_id
            unique, n = stored.name, 2
            while unique in names:
                unique, n = f"{stored.name[:58]} ({n})", n + 1
            names.add(unique)
            plans.append(replace(stored, name=unique))
        self._known[key] = {e["id"] for e in entries}
        return Workspace(key, str(manifest["source"]), tuple(plans), manifest["settings"],
                         tuple(unrestored), tuple(problems))

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
    meta["ct"] = ct_record(result.patient.ct)
    meta["structures"] = needed_structures(result)
    partial = plans_dir / f".{plan_id}.partial-{os.getpid()}-{os.urandom(3).hex()}"
    partial.mkdir()
    try:
        checksums = _write_arrays(partial, arrays)
        atomic_write_text(partial / PLAN_FILE, json.dumps(
            {"format": FORMAT, "format_version": FORMAT_VERSION, **meta,
             "arrays": checksums}, indent=1) + "\n")
        partial.rename(plans_dir / plan_id)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _write_arrays(folder: Path, arrays: Mapping[str, NDArray[Any]]) -> dict[str, Any]:
    """Write each array as ``folder/<name>.npy`` (atomically); their dtype, shape and
    SHA-256 (the ``arrays`` listing of a plan or robust file)."""
    checksums: dict[str, dict[str, Any]] = {}
    for name, array in arrays.items():
        path = folder / f"{name}.npy"
        with atomic_binary_file(path) as fh:
            np.save(fh, array, allow_pickle=False)
        checksums[name] = {"dtype": array.dtype.str, "shape": list(array.shape),
                           "sha256": _sha256(path)}
    return checksums


_ROBUST_PREFIX = "robust-"


def _write_robust(folder: Path, robust_id: str, robust: RobustResult) -> None:
    """Write ``robust`` into the plan ``folder``: its cubes into ``robust-<robust_id>/``
    (under a temporary name, renamed when complete), then ``robust.json`` (atomically),
    then remove the folders of any other evaluation and leftovers of interrupted writes."""
    meta, arrays = robust_to_record(robust)
    target = folder / f"{_ROBUST_PREFIX}{robust_id}"
    if target.exists():  # written by a save that was killed before robust.json named it
        shutil.rmtree(target)
    partial = folder / f".{target.name}.partial-{os.getpid()}-{os.urandom(3).hex()}"
    partial.mkdir()
    try:
        checksums = _write_arrays(partial, arrays)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    atomic_write_text(folder / ROBUST_FILE, json.dumps(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "id": robust_id, **meta,
         "arrays": checksums}, indent=1) + "\n")
    for child in folder.iterdir():
        if (child.is_dir() and child.name != target.name
                and child.name.startswith((_ROBUST_PREFIX, f".{_ROBUST_PREFIX}"))):
            shutil.rmtree(child, ignore_errors=True)


def _robust_id_on_disk(folder: Path) -> str | None:
    """The id of the robust evaluation ``folder/robust.json`` names (None: none, or not
    readable)."""
    try:
        rid = json.loads((folder / ROBUST_FILE).read_text(encoding="utf-8")).get("id")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return rid if isinstance(rid, str) else None


def _with_robust(folder: Path, stored: StoredPlan) -> StoredPlan:
    """``stored`` with the robust evaluation its plan ``folder`` holds (unchanged when there
    is none); the evaluation's entries are added to the plan's report.

    Raises
    ------
    WorkspaceError
        ``robust.json`` or the cubes it names are damaged (named), of a newer format, or do
        not fit the plan; any failure while reading them becomes one.
    """
    path = folder / ROBUST_FILE
    if not path.exists():
        return stored
    try:
        meta = _json_of(path, f"robust evaluation of plan {stored.name!r}")
        rid = meta.get("id")
        if not isinstance(rid, str) or not _PLAN_ID.match(rid):
            raise WorkspaceError(path, f"damaged robust evaluation (id {rid!r})")
        arrays = _read_arrays(folder / f"{_ROBUST_PREFIX}{rid}", meta.get("arrays"), path)
        robust, entries = robust_from_record(meta, arrays, stored.result)
    except WorkspaceError:
        raise
    except PlanRecordError as exc:
        raise WorkspaceError(path, f"damaged robust evaluation ({exc})") from None
    except Exception as exc:  # as for a plan: never stop the patient opening
        log.exception("%s: reading the robust evaluation of plan %r failed", path, stored.name)
        raise WorkspaceError(path, f"robust evaluation of plan {stored.name!r} could not be "
                                   f"read ({type(exc).__name__}: {exc})") from None
    stored.result.report.update(entries)
    return replace(stored, robust=robust, robust_id=rid)


def _json_of(path: Path, what: str) -> Any:
    """The JSON of a workspace file (manifest or plan) in a format this IonPlan reads.

    Raises
    ------
    WorkspaceError
        Unreadable or not JSON ("damaged <what>"), or not of this format
        (:func:`_check_format`).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WorkspaceError(path, f"damaged {what} ({exc})") from None
    _check_format(path, data)
    return data


def _read_manifest(path: Path, key: PatientKey) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest at ``path`` of ``key``'s workspace and its plan entries (objects with a
    valid ``id``, a ``name`` and an object ``setup``).

    Raises
    ------
    WorkspaceError
        Not valid JSON, not a workspace, a newer format, another patient, or malformed.
    """
    manifest = _json_of(path, "workspace manifest")
    try:
        if manifest["patient"] != key.as_json():
            raise WorkspaceError(path, "the manifest belongs to another patient or CT")
        settings, entries = manifest["settings"], manifest["plans"]
        str(manifest["source"])
        if not isinstance(settings, dict) or not isinstance(entries, list):
            raise TypeError("settings must be an object and plans a list")
        seen: set[str] = set()
        for entry in entries:
            if not isinstance(entry, dict):
                raise TypeError(f"a plan entry must be an object, got {entry!r}")
            plan_id = entry["id"]
            if not isinstance(plan_id, str) or not _PLAN_ID.match(plan_id) or plan_id in seen:
                raise ValueError(f"plan id {plan_id!r}")
            seen.add(plan_id)
            str(entry["name"])
            if not isinstance(entry.get("setup", {}), dict):
                raise TypeError("a plan's setup must be an object")
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkspaceError(path, f"damaged workspace manifest (missing or malformed "
                                   f"{exc!s})") from None
    return manifest, entries


def _read_plan_or_error(plans_dir: Path, entry: Mapping[str, Any],
                        patient: Patient) -> StoredPlan:
    """:func:`_read_plan`, any failure being a WorkspaceError that names the plan's file."""
    path = plans_dir / entry["id"] / PLAN_FILE
    try:
        return _read_plan(plans_dir, entry, patient)
    except WorkspaceError:
        raise
    except Exception as exc:  # a bug or a case not foreseen must not stop the patient opening
        log.exception("%s: reading plan %r failed", path, entry.get("name"))
        raise WorkspaceError(path, f"plan {entry.get('name')!r} could not be read "
                                   f"({type(exc).__name__}: {exc})") from None


def _read_plan(plans_dir: Path, entry: Mapping[str, Any], patient: Patient) -> StoredPlan:
    plan_id = entry["id"]
    name = str(entry["name"])
    folder = plans_dir / plan_id
    path = folder / PLAN_FILE
    meta = _json_of(path, f"plan {name!r}")
    try:
        problems = fit_problems(meta, patient)
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, IonPlanError) as exc:
        raise WorkspaceError(path, f"damaged plan {name!r} (malformed ct or structures: "
                                   f"{exc!s})") from None
    if problems:
        raise WorkspaceError(path, f"plan {name!r} does not fit the patient as opened: "
                                   f"{'; '.join(problems)}")
    arrays = _read_arrays(folder, meta.get("arrays"), path)
    try:
        result = plan_from_record(meta, arrays, patient)
    except PlanRecordError as exc:
        raise WorkspaceError(path, f"damaged plan {name!r} ({exc})") from None
    return StoredPlan(plan_id, name, result, str(entry.get("summary", "")),
                      bool(entry.get("exported", False)), entry.get("setup", {}))


def _read_arrays(folder: Path, listing: Any, listed_in: Path) -> dict[str, NDArray[Any]]:
    """The arrays ``listing`` (of the file ``listed_in``) names in ``folder``, each checked
    against its dtype, shape and SHA-256."""
    if not isinstance(listing, dict):
        raise WorkspaceError(listed_in, "damaged: no array listing")
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
            raise WorkspaceError(path, f"damaged array ({exc})") from None
        arrays[name] = array
    return arrays

