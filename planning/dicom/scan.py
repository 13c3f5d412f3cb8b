"""Find the CT series, RT Structure Sets, RT Ion Plans and RT Doses in a folder.

The folder is searched recursively; file names do not matter. Each file's header is read without
its pixel data (``stop_before_pixels``). Files are sorted into

* CT series, grouped by Series Instance UID (the headers are kept, small, for the importer);
* RT Structure Sets (only a summary is kept; the importer reads the file again);
* RT Ion Plans and RT Doses, by SOP Class (only the paths are kept; their importers read them);
* skipped files: not DICOM Part 10 files, or DICOM objects IonPlan does not import (MR, photon
  RT Plan, DICOMDIR, ...), each with the reason;
* damaged files: DICOM files that cannot be parsed at all, and CT images without a Series
  Instance UID. These might be slices of a series, so the CT importer refuses to load while
  they are present unless told otherwise (a silently missing end slice would shrink the volume).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from planning.dicom._export_common import RT_DOSE_STORAGE, RT_ION_PLAN_STORAGE
from planning.dicom._values import PathLike, get_sequence, get_str, reading
from planning.dicom.errors import DicomImportError
from planning.dicom.file_context import reading_file

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
MEDIA_STORAGE_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"
_CT_CLASSES = (CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE, LEGACY_ENHANCED_CT_IMAGE_STORAGE)
_PREAMBLE_BYTES = 132


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not imported, and why."""

    path: str
    reason: str


@dataclass(frozen=True, eq=False)
class CtFileHeader:
    """The header (no pixel data) of one CT image file."""

    path: str
    dataset: Dataset


@dataclass(frozen=True, eq=False)
class CtSeriesFiles:
    """The files of one CT series, in path order (not yet sorted along the slice normal).

    Attributes
    ----------
    series_instance_uid : str
        The series' UID.
    files : tuple of CtFileHeader
        Header of each file.
    """

    series_instance_uid: str
    files: tuple[CtFileHeader, ...]

    def attribute(self, keyword: str) -> str:
        """A string attribute of the first file (``""`` if absent or unreadable)."""
        first = self.files[0]
        try:
            return get_str(first.dataset, keyword, first.path)
        except DicomImportError:
            return ""

    @property
    def is_localizer(self) -> bool:
        """True for a localizer (scout, topogram: Image Type value 3 LOCALIZER, PS3.3
        C.8.2.1.1.1), never a planning CT."""
        try:
            values = self.files[0].dataset.get("ImageType")
        except Exception:  # an unreadable Image Type makes no localizer of a series
            return False
        if values is None:
            return False
        items = [str(v).strip().upper() for v in (values if not isinstance(values, str)
                                                   else values.split("\\"))]
        return len(items) >= 3 and items[2] == "LOCALIZER"

    @property
    def patient(self) -> str:
        """Patient Name and ID of the first file (:func:`patient_label`)."""
        return patient_label(self.attribute("PatientName"), self.attribute("PatientID"))

    def describe(self) -> str:
        """One line: UID, description, slice count (one slice per file), patient position,
        patient (same-named series of two patients differ here)."""
        description = self.attribute("SeriesDescription") or "(no description)"
        position = self.attribute("PatientPosition") or "?"
        return (
            f"{self.series_instance_uid}  {description!r}  {len(self.files)} slices  "
            f"position {position}  patient {self.patient}"
        )


@dataclass(frozen=True)
class RtStructSummary:
    """What a folder scan learns about an RT Structure Set file (cheap, header-level).

    Attributes
    ----------
    path : str
        The file.
    sop_instance_uid : str
        Its SOP Instance UID.
    label : str
        Structure Set Label.
    frame_of_reference_uids : tuple of str
        Frames of reference listed in its Referenced Frame of Reference Sequence.
    referenced_series_uids : tuple of str
        The image series it says its contours were drawn on.
    roi_count : int
        Number of items in its Structure Set ROI Sequence.
    patient : str
        Its Patient Name and ID (:func:`patient_label`).
    """

    path: str
    sop_instance_uid: str
    label: str
    frame_of_reference_uids: tuple[str, ...]
    referenced_series_uids: tuple[str, ...]
    roi_count: int
    patient: str

    def describe(self) -> str:
        """One line: label, UID, ROI count, patient, file."""
        label = self.label or "(no label)"
        return (f"{self.sop_instance_uid}  {label!r}  {self.roi_count} ROIs  patient "
                f"{self.patient}  ({self.path})")


@dataclass(frozen=True, eq=False)
class FolderScan:
    """Everything found in a folder.

    Attributes
    ----------
    folder : str
        The folder searched.
    ct_series : tuple of CtSeriesFiles
        CT series, sorted by Series Instance UID.
    structure_sets : tuple of RtStructSummary
        RT Structure Sets, sorted by path.
    skipped : tuple of SkippedFile
        Files that are not DICOM, or DICOM objects IonPlan does not import.
    damaged : tuple of SkippedFile
        DICOM files that cannot be parsed, or CT images that cannot be assigned to a series.
    rt_ion_plans : tuple of str
        Paths of the RT Ion Plan files, sorted.
    rt_doses : tuple of str
        Paths of the RT Dose files, sorted.
    """

    folder: str
    ct_series: tuple[CtSeriesFiles, ...]
    structure_sets: tuple[RtStructSummary, ...]
    skipped: tuple[SkippedFile, ...]
    damaged: tuple[SkippedFile, ...]
    rt_ion_plans: tuple[str, ...] = ()
    rt_doses: tuple[str, ...] = ()

    def find_series(self, series_uid: str) -> CtSeriesFiles | None:
        """The CT series with that UID, or None."""
        for series in self.ct_series:
            if series.series_instance_uid == series_uid:
                return series
        return None

    def planning_ct_candidates(self) -> tuple[CtSeriesFiles, ...]:
        """The CT series a planning CT can be chosen from: all but localizers (scouts exported
        beside the CT, :attr:`CtSeriesFiles.is_localizer`), or all when every one is."""
        return tuple(s for s in self.ct_series if not s.is_localizer) or self.ct_series


def patient_label(name: str, patient_id: str) -> str:
    """``"Name (ID)"``, or whichever of the two is given; ``"(no patient name or ID)"``."""
    if name and patient_id:
        return f"{name} ({patient_id})"
    return name or (f"({patient_id})" if patient_id else "(no patient name or ID)")


def _is_part10(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(_PREAMBLE_BYTES)
    return len(head) == _PREAMBLE_BYTES and head[128:132] == b"DICM"


def _summarize_rtstruct(ds: Dataset, path: str) -> RtStructSummary:
    frames: list[str] = []
    series: list[str] = []
    for ref in get_sequence(ds, "ReferencedFrameOfReferenceSequence", path):
        frames.append(get_str(ref, "FrameOfReferenceUID", path))
        for study in get_sequence(ref, "RTReferencedStudySequence", path):
            for ser in get_sequence(study, "RTReferencedSeriesSequence", path):
                series.append(get_str(ser, "SeriesInstanceUID", path))
    rois = get_sequence(ds, "StructureSetROISequence", path)
    # Each ROI's Referenced Frame of Reference UID is Type 1; the structure set's Referenced
    # Frame of Reference Sequence is Type 3 and may be absent.
    frames += [get_str(roi, "ReferencedFrameOfReferenceUID", path) for roi in rois]
    return RtStructSummary(
        path=path,
        sop_instance_uid=get_str(ds, "SOPInstanceUID", path),
        label=get_str(ds, "StructureSetLabel", path),
        frame_of_reference_uids=tuple(dict.fromkeys(f for f in frames if f)),
        referenced_series_uids=tuple(s for s in series if s),
        roi_count=len(rois),
        patient=patient_label(get_str(ds, "PatientName", path), get_str(ds, "PatientID", path)),
    )


def iter_files(folder: PathLike) -> list[Path]:
    """All regular files under ``folder`` (recursively), sorted by path.

    Raises
    ------
    DicomImportError
        If ``folder`` is not a readable folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DicomImportError(root, "not a folder (give the folder that holds the DICOM files)")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        found.extend(Path(dirpath) / name for name in filenames)
    return sorted(p for p in found if p.is_file())


@dataclass
class _Found:
    """What :func:`scan_folder` has collected so far."""

    by_series: dict[str, list[CtFileHeader]] = field(default_factory=dict)
    structure_sets: list[RtStructSummary] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)
    doses: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    damaged: list[SkippedFile] = field(default_factory=list)


def _add_ct(ds: Dataset, path: str, found: _Found) -> None:
    series_uid = get_str(ds, "SeriesInstanceUID", path)
    if not series_uid:
        found.damaged.append(SkippedFile(path, "CT image without Series Instance UID"))
    else:
        found.by_series.setdefault(series_uid, []).append(CtFileHeader(path, ds))


def _classify(ds: Dataset, path: str, found: _Found) -> None:
    """File the parsed header ``ds`` of ``path`` under its kind.

    Raises
    ------
    DicomImportError
        If an attribute needed to classify it cannot be read.
    """
    sop_class = get_str(ds, "SOPClassUID", path)
    modality = get_str(ds, "Modality", path)
    if not sop_class and not modality:
        found.damaged.append(
            SkippedFile(path, "no SOP Class UID and no Modality: truncated or corrupt")
        )
    elif sop_class == RT_STRUCTURE_SET_STORAGE or (not sop_class and modality == "RTSTRUCT"):
        found.structure_sets.append(_summarize_rtstruct(ds, path))
    elif sop_class in _CT_CLASSES or (not sop_class and modality == "CT"):
        _add_ct(ds, path, found)
    elif sop_class == RT_ION_PLAN_STORAGE:
        found.plans.append(path)
    elif sop_class == RT_DOSE_STORAGE:
        found.doses.append(path)
    elif sop_class == MEDIA_STORAGE_DIRECTORY_STORAGE:
        found.skipped.append(SkippedFile(path, "DICOMDIR (index file)"))
    else:
        kind = modality or "no modality"
        found.skipped.append(SkippedFile(
            path, f"not a CT image, RT Structure Set, RT Ion Plan or RT Dose ({kind}, {sop_class})"
        ))


def _scan_file(file: Path, found: _Found) -> None:
    path = str(file)
    try:
        if not _is_part10(file):
            found.skipped.append(SkippedFile(path, "not a DICOM file (no 'DICM' marker)"))
            return
    except OSError as exc:
        found.skipped.append(SkippedFile(path, f"cannot be read: {exc.strerror or exc}"))
        return
    try:
        with reading(path, "cannot parse the DICOM header"):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        _classify(ds, path, found)
    except DicomImportError as exc:
        found.damaged.append(SkippedFile(path, exc.reason))


def scan_folder(folder: PathLike) -> FolderScan:
    """Classify every file under ``folder`` (see the module docstring).

    Parameters
    ----------
    folder : str or os.PathLike
        Folder to search recursively.

    Returns
    -------
    FolderScan

    Raises
    ------
    DicomImportError
        If ``folder`` is not a folder. Bad files never raise here; they are listed.
    """
    found = _Found()
    for file in iter_files(folder):
        with reading_file(file):  # what pydicom warns of names the file
            _scan_file(file, found)
    for item in found.skipped:
        logger.info("skipped %s: %s", item.path, item.reason)
    # Damaged files are not warned of here: the CT import refuses them unless allowed, and
    # then the patient's warnings (report.json, terminal) hold them; `ionplan info` lists them.
    for item in found.damaged:
        logger.info("damaged DICOM file %s: %s", item.path, item.reason)
    series = tuple(
        CtSeriesFiles(uid, tuple(files)) for uid, files in sorted(found.by_series.items())
    )
    return FolderScan(
        folder=str(folder),
        ct_series=series,
        structure_sets=tuple(sorted(found.structure_sets, key=lambda s: s.path)),
        skipped=tuple(found.skipped),
        damaged=tuple(found.damaged),
        rt_ion_plans=tuple(sorted(found.plans)),
        rt_doses=tuple(sorted(found.doses)),
    )
