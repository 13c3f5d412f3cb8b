"""What a stored plan needs of the patient it is restored on: the CT it was computed on and the
structures its dose depends on.

A workspace is found by Patient ID, Study and CT Series Instance UIDs, which do not tell apart
a folder holding part of a series, a re-exported CT or an edited structure set. Each
``plan.json`` therefore keeps ``ct`` (:func:`ct_record`) and ``structures``
(:func:`needed_structures`), and :func:`fit_problems` says what no longer matches. A plan.json
written before these fields existed has them unknown: nothing is checked.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from planning.patient import CtVolume, Patient
from planning.planner import PlanResult
from planning.rbe.record import structure_tissues_from_record

#: Largest difference (mm) between a stored and a present spacing or origin taken as the same.
GEOMETRY_TOLERANCE_MM = 1e-3


def _sop_hash(ct: CtVolume) -> str:
    text = "\0".join(ct.sop_instance_uids)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ct_record(ct: CtVolume) -> dict[str, Any]:
    """The CT geometry a plan was computed on, as JSON: ``shape`` (z, y, x), ``spacing_mm``
    (z, y, x), ``origin_mm`` (x, y, z) LPS, ``sop_instance_uids_sha256`` (SHA-256 of the
    slices' SOP Instance UIDs in slice order, joined by NUL)."""
    return {"shape": [int(n) for n in ct.hu.shape],
            "spacing_mm": [float(v) for v in ct.spacing_mm],
            "origin_mm": [float(v) for v in ct.origin_mm],
            "sop_instance_uids_sha256": _sop_hash(ct)}


def needed_structures(result: PlanResult) -> list[str]:
    """Names of the structures ``result``'s dose depends on (its LEM I tissues per
    structure), sorted."""
    names = {name for name, _ in result.structure_tissues}
    names.update(name for name, _ in result.plan.rbe_tissues)
    return sorted(names)


def _recorded_structures(meta: Mapping[str, Any]) -> set[str]:
    """The structures a plan.json names as needed: its ``structures`` field, and the
    structures of its recorded tissues (so that older plan files are checked too)."""
    names: set[str] = set()
    listed = meta.get("structures")
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
            raise ValueError(f"structures must be a list of names, got {listed!r}")
        names.update(listed)
    plan = meta.get("plan")
    for record in (meta.get("model"), plan.get("rbe") if isinstance(plan, Mapping) else None):
        if isinstance(record, Mapping):
            names.update(name for name, _ in structure_tissues_from_record(record))
    return names


def _mm(values: Any) -> str:
    return f"({', '.join(f'{float(v):g}' for v in values)}) mm"


def _ct_problems(stored: Any, ct: CtVolume) -> list[str]:
    if not isinstance(stored, Mapping):
        raise ValueError(f"ct must be an object, got {stored!r}")
    now = ct_record(ct)
    problems = []
    shape = [int(n) for n in stored["shape"]]
    if shape != now["shape"]:
        problems.append(f"it was computed on a CT of {' x '.join(map(str, shape))} voxels "
                        f"(z, y, x), this CT has {' x '.join(map(str, now['shape']))}")
    for key, what in (("spacing_mm", "voxel spacing (z, y, x)"), ("origin_mm", "origin (LPS)")):
        old = [float(v) for v in stored[key]]
        if len(old) != 3 or not all(math.isfinite(v) for v in old):
            raise ValueError(f"ct {key} must be 3 numbers, got {stored[key]!r}")
        if any(abs(a - b) > GEOMETRY_TOLERANCE_MM for a, b in zip(old, now[key], strict=True)):
            problems.append(f"the CT's {what} was {_mm(old)}, it is {_mm(now[key])}")
    sop = stored.get("sop_instance_uids_sha256")
    if sop is not None and sop != now["sop_instance_uids_sha256"] and not problems:
        problems.append("the CT's images are not the same (other SOP Instance UIDs)")
    return problems


def _has_structure(patient: Patient, name: str) -> bool:
    """Whether ``patient`` has the structure ``name`` as planning finds it (exact name first,
    then ignoring case)."""
    if patient.structure_set is None:
        return False
    try:
        patient.structure_set.get(name)
    except KeyError:
        return False
    return True


def fit_problems(meta: Mapping[str, Any], patient: Patient) -> list[str]:
    """Why the plan described by ``meta`` (a plan.json) cannot be shown on ``patient``: its CT
    differs, or structures it needs are missing; empty when it fits or when plan.json does
    not say (written before these checks).

    Raises
    ------
    KeyError, TypeError, ValueError, IonPlanError
        ``ct``, ``structures`` or a recorded tissue is malformed.
    """
    problems = []
    stored_ct = meta.get("ct")
    if stored_ct is not None:
        problems += _ct_problems(stored_ct, patient.ct)
    needed = _recorded_structures(meta)
    structures = patient.structure_set
    missing = sorted(n for n in needed if not _has_structure(patient, n))
    if missing:
        listed = (f"structure{'s' if len(missing) > 1 else ''} "
                  f"{', '.join(repr(n) for n in missing)}")
        where = (f"missing from this patient's structure set ({', '.join(structures.names)})"
                 if structures is not None else "and this patient has no structure set")
        problems.append(f"its dose depends on {listed} (LEM I tissues per structure), {where}")
    return problems
