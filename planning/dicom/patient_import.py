"""Import a patient (planning CT plus its structure set) from a folder."""

from __future__ import annotations

import logging

from planning.dicom._values import PathLike
from planning.dicom.ct_import import load_ct_series
from planning.dicom.errors import DicomImportError, SeriesSelectionError
from planning.dicom.rtstruct_import import load_rtstruct
from planning.dicom.scan import FolderScan, RtStructSummary, scan_folder
from planning.patient import CtVolume, Patient
from planning.progress import CancelToken, ProgressCallback, report

logger = logging.getLogger(__name__)


def structure_sets_for(scan: FolderScan, ct: CtVolume) -> list[RtStructSummary]:
    """The structure sets of a scan that belong to ``ct``.

    One belongs when it names the CT's series, or names no series but lists the CT's frame of
    reference.
    """
    found = []
    for summary in scan.structure_sets:
        if summary.referenced_series_uids:
            if ct.series_instance_uid in summary.referenced_series_uids:
                found.append(summary)
        elif ct.frame_of_reference_uid in summary.frame_of_reference_uids:
            found.append(summary)
    return found


def _skipped_note(scan: FolderScan) -> list[str]:
    notes = []
    if scan.skipped:
        first = scan.skipped[0]
        notes.append(f"{len(scan.skipped)} file(s) skipped (e.g. {first.path}: {first.reason})")
    for item in scan.damaged:
        notes.append(f"damaged file ignored: {item.path}: {item.reason}")
    return notes


def load_patient(
    folder: PathLike,
    *,
    series_uid: str | None = None,
    structure_set_uid: str | None = None,
    allow_damaged: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Patient:
    """Load the planning CT of a folder and the RT Structure Set drawn on it.

    Parameters
    ----------
    folder : str or os.PathLike
        Searched recursively; file names do not matter.
    series_uid : str, optional
        The CT series to load, when the folder holds several.
    structure_set_uid : str, optional
        SOP Instance UID of the structure set to load, when several belong to the CT.
        Without it, the one structure set that references the CT series (or its frame of
        reference) is loaded; with none the patient has no structures.
    allow_damaged : bool
        See :func:`planning.dicom.ct_import.load_ct_series`.
    progress : callable, optional
        ``progress(fraction, stage)``.
    cancel : CancelToken, optional
        Checked between slices.

    Returns
    -------
    Patient
        The CT, the structure set or None, and notes on skipped files and structure warnings.

    Raises
    ------
    SeriesSelectionError
        Several CT series (or several structure sets for the CT) and no choice given.
    DicomImportError
        Any bad input (see :func:`load_ct_series` and :func:`load_rtstruct`).
    """
    scan = scan_folder(folder)

    def ct_progress(fraction: float, stage: str) -> None:
        report(progress, 0.8 * fraction, stage)

    ct = load_ct_series(
        scan,
        series_uid=series_uid,
        allow_damaged=allow_damaged,
        progress=ct_progress if progress is not None else None,
        cancel=cancel,
    )
    notes = [*ct.warnings, *_skipped_note(scan)]
    if structure_set_uid is not None:
        chosen = [s for s in scan.structure_sets if s.sop_instance_uid == structure_set_uid]
        if not chosen:
            listing = ", ".join(s.sop_instance_uid for s in scan.structure_sets) or "none"
            raise DicomImportError(
                folder, f"no RT Structure Set {structure_set_uid}; found: {listing}"
            )
    else:
        chosen = structure_sets_for(scan, ct)
        if len(chosen) > 1:
            listing = "; ".join(s.describe() for s in chosen)
            raise SeriesSelectionError(
                folder,
                f"{len(chosen)} RT Structure Sets belong to CT {ct.series_instance_uid}: "
                f"{listing}",
                [s.sop_instance_uid for s in chosen],
                kind="RT Structure Set",
            )
    if not chosen:
        ignored = [
            f"{s.path} refers to "
            + (f"series {s.referenced_series_uids[0]}" if s.referenced_series_uids
               else f"frame of reference {', '.join(s.frame_of_reference_uids) or 'none'}")
            for s in scan.structure_sets[:3]
        ]
        notes.append(
            f"no RT Structure Set refers to this CT (series {ct.series_instance_uid})"
            + (f"; ignored: {'; '.join(ignored)}" if ignored else "")
        )
        report(progress, 1.0, "patient loaded")
        return Patient(ct=ct, structure_set=None, warnings=tuple(notes))
    if cancel is not None:
        cancel.raise_if_cancelled("patient import")
    report(progress, 0.8, "rasterizing structures")
    structure_set = load_rtstruct(chosen[0].path, ct)
    notes.extend(structure_set.warnings)
    report(progress, 1.0, "patient loaded")
    return Patient(ct=ct, structure_set=structure_set, warnings=tuple(notes))
