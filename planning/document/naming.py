"""File and folder names that never replace an earlier one.

Names are ``<patientID>_<plan>_<YYYYmmdd-HHMMSS>`` (and a kind, ``_report.pdf``); a second
file of the same plan within the same second gets ``-2``, ``-3``, ... before the suffix. A
file is published only if its name is free (:func:`planning.atomic.atomic_create_with`), so
two writers at once cannot replace each other's file either.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from planning.atomic import atomic_create_with
from planning.document.identity import Identification
from planning.errors import InputError

#: Most characters kept of the patient ID and of the plan name in a file name.
PART_CHARACTERS = 40
#: Most numbered variants tried before giving up.
MAX_VARIANTS = 999


def safe_part(text: str) -> str:
    """``text`` as a portable file-name part: letters, digits, ``.`` and ``-`` kept, every
    other run of characters one ``_``; at most :data:`PART_CHARACTERS`; "unnamed" if empty."""
    part = re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_.")[:PART_CHARACTERS].strip("_.")
    return part or "unnamed"


def file_stem(ident: Identification) -> str:
    """``<patientID>_<plan>_<YYYYmmdd-HHMMSS>`` of an identification."""
    return (f"{safe_part(ident.patient_id or 'no-id')}_{safe_part(ident.plan_name)}_"
            f"{ident.created:%Y%m%d-%H%M%S}")


def _variants(folder: Path, stem: str, suffix: str) -> list[Path]:
    return [folder / (f"{stem}{suffix}" if k == 1 else f"{stem}-{k}{suffix}")
            for k in range(1, MAX_VARIANTS + 1)]


def write_new_file(folder: str | Path, stem: str, suffix: str,
                   writer: Callable[[BinaryIO], None]) -> Path:
    """Write a new file ``folder/<stem><suffix>`` (or ``<stem>-<k><suffix>``) atomically with
    ``writer(fh)``; an existing file is never replaced.

    Raises
    ------
    InputError
        The folder does not exist, or every variant of the name is taken.
    """
    where = Path(folder)
    if not where.is_dir():
        raise InputError(f"{where}: the folder does not exist")
    for path in _variants(where, stem, suffix):
        try:
            atomic_create_with(path, writer)
        except FileExistsError:
            continue
        return path
    raise InputError(f"{where}: {MAX_VARIANTS} files named {stem}{suffix} exist already")


def new_folder(parent: str | Path, stem: str) -> Path:
    """Make and return a new, empty folder ``parent/<stem>`` (or ``<stem>-<k>``).

    Raises
    ------
    InputError
        ``parent`` does not exist, or every variant of the name is taken.
    """
    where = Path(parent)
    if not where.is_dir():
        raise InputError(f"{where}: the folder does not exist")
    for path in _variants(where, stem, ""):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise InputError(f"{where}: {MAX_VARIANTS} folders named {stem} exist already")
