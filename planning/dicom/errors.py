"""The error raised for DICOM input that IonPlan cannot import."""

from __future__ import annotations

import os
from collections.abc import Sequence

from planning.errors import IonPlanError


class DicomImportError(IonPlanError):
    """A DICOM file or folder cannot be imported.

    Raised for unreadable, truncated or corrupt files, missing or inconsistent attributes, series
    geometry IonPlan cannot represent, and mismatched references between objects. It is the only
    exception type the importers let out for bad input.

    Parameters
    ----------
    path : str or os.PathLike
        The file (or folder) concerned.
    reason : str
        What is wrong, and where it helps, what to do about it.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SeriesSelectionError(DicomImportError):
    """A folder holds several candidates (CT series or structure sets) and none was chosen.

    Parameters
    ----------
    path : str or os.PathLike
        The folder.
    reason : str
        The message, listing the candidates.
    choices : sequence of str
        The UIDs the caller may pass to choose one.
    kind : {"CT series", "RT Structure Set"}
        What the choices are: Series Instance UIDs of CT series (the loaders' ``series_uid``)
        or SOP Instance UIDs of structure sets (``structure_set_uid``). The message lists the
        candidates; how to choose is the caller's to say (a command-line option, a dialog).
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, choices: Sequence[str],
                 *, kind: str = "CT series") -> None:
        super().__init__(path, reason)
        self.choices: tuple[str, ...] = tuple(choices)
        self.kind = kind
