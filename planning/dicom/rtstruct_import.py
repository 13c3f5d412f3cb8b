"""Import an RT Structure Set onto a CT grid.

Reads the ROI list (names, numbers, frames of reference), the interpreted types (RT ROI
Observations), the display colours and contours (ROI Contour), checks that every contoured ROI is
in the CT's frame of reference, and rasterizes the closed planar contours of each ROI on the CT
grid (:mod:`planning.dicom.rasterize`, even-odd rule at voxel centres). A file that is cut short
(truncated, or with the types of only some ROIs) is refused. Contours that are outside
the CT, between its slices, open, non-axial or degenerate do not stop the import: they are listed
in :attr:`planning.patient.StructureSet.warnings`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from planning.dicom._values import (
    PathLike,
    get_floats,
    get_int,
    get_sequence,
    get_str,
    read_dicom_file,
    reading,
)
from planning.dicom.errors import DicomImportError
from planning.dicom.file_context import reading_file
from planning.dicom.rasterize import (
    CLOSED_TYPES,
    FloatArray,
    box_bounds,
    rasterize_even_odd,
    slice_polygons,
)
from planning.dicom.scan import RT_STRUCTURE_SET_STORAGE
from planning.patient import Contour, CtVolume, RoiMask, Structure, StructureSet

logger = logging.getLogger(__name__)

_CONTOUR_DATA_TAG = 0x30060050
GEOMETRIC_TYPES = (*CLOSED_TYPES, "OPEN_PLANAR", "OPEN_NONPLANAR", "POINT")


def _contour_points(item: Dataset, path: str, roi: str) -> FloatArray:
    """ContourData of one contour item as ``(N, 3)`` LPS mm (parsed from the raw text)."""
    what = f"ROI {roi}: cannot read ContourData"
    with reading(path, what):
        element = item.get_item(_CONTOUR_DATA_TAG)
        if element is None:
            raise DicomImportError(path, f"ROI {roi}: a contour has no ContourData")
        value = element.value
        if isinstance(value, (bytes, bytearray)):
            fields = bytes(value).decode("ascii").replace("\x00", " ").strip().split("\\")
            data = np.array(fields, dtype=np.float64)
        elif isinstance(value, (str, int, float)):
            data = np.array([float(value)])
        elif value is None:
            data = np.zeros(0)
        else:
            data = np.array([float(v) for v in value], dtype=np.float64)
    if data.size == 0 or data.size % 3:
        raise DicomImportError(
            path, f"ROI {roi}: ContourData has {data.size} values, not a positive multiple of 3"
        )
    if not np.all(np.isfinite(data)):
        raise DicomImportError(path, f"ROI {roi}: ContourData holds non-finite values")
    return data.reshape(-1, 3)


def contours_to_mask(
    contours: Sequence[Contour], ct: CtVolume, roi_name: str = "ROI"
) -> tuple[RoiMask, list[str]]:
    """Rasterize the closed planar contours of one structure on the CT grid.

    Parameters
    ----------
    contours : sequence of Contour
        The structure's contours, LPS mm. Only closed planar ones (``CLOSED_PLANAR``, and
        ``CLOSEDPLANAR_XOR``, PS3.3 C.8.8.6.3: combined by XOR, as the even-odd rule does) fill
        voxels; each is put on the CT slice nearest to its plane, and the contours of one
        plane combine by the even-odd rule (:func:`planning.dicom.rasterize.slice_polygons`).
    ct : CtVolume
        The grid (axes along +x, +y, +z LPS).
    roi_name : str
        Used in the warnings.

    Returns
    -------
    mask : RoiMask
        Voxels whose centres are inside.
    warnings : list of str
        One line per kind of problem (contours outside the CT, between slices, open, ...).
    """
    _, ny, nx = ct.shape
    per_slice, problems = slice_polygons(contours, ct)
    warnings = _describe_problems(roi_name, problems)
    if not per_slice:
        return RoiMask.empty(ct.shape), warnings
    all_ij = np.concatenate([p for polys in per_slice.values() for p in polys])
    i0, i1 = box_bounds(float(all_ij[:, 0].min()), float(all_ij[:, 0].max()), nx)
    j0, j1 = box_bounds(float(all_ij[:, 1].min()), float(all_ij[:, 1].max()), ny)
    k0, k1 = min(per_slice), max(per_slice) + 1
    box = np.zeros((k1 - k0, j1 - j0, i1 - i0), dtype=bool)
    shift = np.array([i0, j0], dtype=np.float64)
    for k, polys in per_slice.items():
        box[k - k0] = rasterize_even_odd([p - shift for p in polys], (j1 - j0, i1 - i0))
    return RoiMask.from_box(ct.shape, (k0, j0, i0), box), warnings


def _same_names(names: dict[int, str]) -> list[str]:
    """Warnings for ROI names that are equal, or equal but for case: structures are found by
    name (exactly, then ignoring case), so the first of equal names is the one used."""
    by_key: dict[str, list[tuple[int, str]]] = {}
    for number, name in names.items():
        by_key.setdefault(name.casefold(), []).append((number, name))
    out = []
    for group in by_key.values():
        if len(group) > 1:
            listed = ", ".join(f"{name!r} (ROI {number})" for number, name in group)
            out.append(f"ROIs {listed} have the same name but for case or exactly: a "
                       "plan, objective or tissue cannot name one of exactly equal names (a "
                       "name differing in case only is found when given exactly); rename them "
                       "to tell them apart")
    return out


def _check_types_complete(names: dict[int, str], types: dict[int, str], path: str) -> None:
    """Refuse a structure set in which some ROIs have an RT ROI Interpreted Type and others
    have none (no RT ROI Observations item, or one without the attribute, which is required
    even when empty): the sign of a file cut short, whose last ROIs would silently lose their
    type (EXTERNAL, PTV, ORGAN, ...) and with it their role in planning.

    Parameters
    ----------
    names : dict of int to str
        ROI number -> name, for every ROI of the Structure Set ROI Sequence.
    types : dict of int to str
        ROI number -> interpreted type (possibly ``""``), for the ROIs that state one.
    path : str
        File name for the message.

    Raises
    ------
    DicomImportError
        If some but not all ROIs state a type.
    """
    untyped = [f"{name!r} (ROI {number})" for number, name in names.items() if number not in types]
    if untyped and len(untyped) < len(names):
        raise DicomImportError(
            path,
            f"{len(untyped)} ROI(s) have no RT ROI Interpreted Type ({', '.join(untyped[:5])}"
            f"{', ...' if len(untyped) > 5 else ''}) while the other {len(names) - len(untyped)} "
            "have one: the RT ROI Observations are incomplete (a truncated file, or an "
            "interrupted export); export the structure set again",
        )


def _describe_problems(roi: str, problems: dict[str, int]) -> list[str]:
    text = {
        "outside": "contour(s) outside the CT volume were ignored",
        "clipped": "contour(s) extend beyond the CT; the mask is clipped to the CT",
        "off_plane": "contour(s) lie between CT slice planes; each was put on the nearest slice",
        "non_axial": "closed contour(s) not in an axial plane were ignored",
        "open": "open contour(s) cannot fill a volume and were not rasterized",
        "degenerate": "closed contour(s) with fewer than 3 points were ignored",
        "other_plane": ("contour(s) were left out: another contour plane lies nearer to the "
                        "CT slice they fall on (the structure was drawn on slices other than "
                        "this CT's; each slice takes its nearest plane)"),
        "gap": ("CT slice(s) between the structure's first and last contour have no contour "
                "and are empty in its mask (drawn on fewer slices than this CT has?)"),
    }
    return [f"ROI {roi!r}: {n} {text[key]}" for key, n in problems.items() if n]


def _colour(item: Dataset, path: str, roi: str, warnings: list[str]) -> tuple[int, int, int] | None:
    if "ROIDisplayColor" not in item:
        return None
    try:
        r, g, b = (
            int(np.clip(round(v), 0, 255)) for v in get_floats(item, "ROIDisplayColor", path, 3)
        )
    except DicomImportError as exc:
        warnings.append(f"ROI {roi!r}: display colour ignored ({exc.reason})")
        return None
    return (r, g, b)


@dataclass(frozen=True, eq=False)
class RoiDefinition:
    """One ROI as read from an RT Structure Set, before rasterization.

    Attributes
    ----------
    number : int
        ROI Number.
    name : str
        ROI Name (``"ROI <number>"`` if empty).
    interpreted_type : str
        RT ROI Interpreted Type, upper case; ``""`` if not given.
    colour_rgb : tuple of 3 int, or None
        ROI Display Color.
    frame_of_reference_uid : str
        The ROI's Referenced Frame of Reference UID (the set's only frame if it gives none).
    contours : tuple of Contour
        Its contours, LPS mm.
    """

    number: int
    name: str
    interpreted_type: str
    colour_rgb: tuple[int, int, int] | None
    frame_of_reference_uid: str
    contours: tuple[Contour, ...]


@dataclass(frozen=True, eq=False)
class ParsedStructureSet:
    """The content of an RT Structure Set file, not yet put on a CT grid.

    Attributes
    ----------
    rois : tuple of RoiDefinition
        In the order of the Structure Set ROI Sequence.
    sop_instance_uid, series_instance_uid, label : str
        Identification of the structure set.
    frame_of_reference_uids : tuple of str
        Frames listed in the Referenced Frame of Reference Sequence.
    referenced_series_uids : tuple of str
        Image series the contours were drawn on, as the file states them.
    warnings : tuple of str
        Problems that did not stop the parse.
    """

    rois: tuple[RoiDefinition, ...]
    sop_instance_uid: str
    series_instance_uid: str
    label: str
    frame_of_reference_uids: tuple[str, ...]
    referenced_series_uids: tuple[str, ...]
    warnings: tuple[str, ...]


def parse_structure_set(ds: Dataset, *, path: PathLike = "") -> ParsedStructureSet:
    """Read the ROIs, types, colours and contours of an RT Structure Set dataset.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The RT Structure Set.
    path : str or os.PathLike
        File name for messages.

    Raises
    ------
    DicomImportError
        Not an RT Structure Set, no ROI or no contour at all (empty), duplicate ROI numbers,
        unknown contour types, unreadable or malformed values, a contour whose point count
        disagrees with its NumberOfContourPoints, and RT ROI Observations that give some ROIs
        a type and others none (an incomplete file).
    """
    where = str(path) or "RT Structure Set"
    sop_class = get_str(ds, "SOPClassUID", where)
    modality = get_str(ds, "Modality", where)
    if sop_class != RT_STRUCTURE_SET_STORAGE and modality != "RTSTRUCT":
        raise DicomImportError(
            where, f"not an RT Structure Set (Modality {modality or '?'}, SOP Class {sop_class})"
        )
    frames: list[str] = []
    referenced_series: list[str] = []
    for ref in get_sequence(ds, "ReferencedFrameOfReferenceSequence", where):
        frames.append(get_str(ref, "FrameOfReferenceUID", where))
        for study in get_sequence(ref, "RTReferencedStudySequence", where):
            for series in get_sequence(study, "RTReferencedSeriesSequence", where):
                referenced_series.append(get_str(series, "SeriesInstanceUID", where))
    frames = [f for f in frames if f]
    roi_items = get_sequence(ds, "StructureSetROISequence", where)
    if not roi_items:
        raise DicomImportError(where, "empty RT Structure Set: it defines no ROI")
    names: dict[int, str] = {}
    roi_frames: dict[int, str] = {}
    for item in roi_items:
        number = get_int(item, "ROINumber", where)
        if number in names:
            raise DicomImportError(where, f"ROI number {number} is used twice")
        names[number] = get_str(item, "ROIName", where) or f"ROI {number}"
        roi_frames[number] = get_str(item, "ReferencedFrameOfReferenceUID", where) or (
            frames[0] if len(frames) == 1 else ""
        )
    types: dict[int, str] = {}
    observations = get_sequence(ds, "RTROIObservationsSequence", where)
    for item in observations:
        number = get_int(item, "ReferencedROINumber", where)
        if "RTROIInterpretedType" in item:
            types.setdefault(number, get_str(item, "RTROIInterpretedType", where).upper())
    warnings: list[str] = _same_names(names)
    _check_types_complete(names, types, where)
    if not observations:
        warnings.append("the structure set has no RT ROI Observations: no ROI has a type "
                        "(EXTERNAL, PTV, ORGAN, ...)")
    colours: dict[int, tuple[int, int, int] | None] = {}
    contours: dict[int, list[Contour]] = {}
    for item in get_sequence(ds, "ROIContourSequence", where):
        number = get_int(item, "ReferencedROINumber", where)
        if number not in names:
            warnings.append(f"contours for undefined ROI number {number} were ignored")
            continue
        roi = names[number]
        colours[number] = _colour(item, where, roi, warnings)
        for c in get_sequence(item, "ContourSequence", where):
            kind = get_str(c, "ContourGeometricType", where).upper()
            if kind not in GEOMETRIC_TYPES:
                raise DicomImportError(where, f"ROI {roi!r}: unknown ContourGeometricType {kind!r}")
            points = _contour_points(c, where, roi)
            stated = get_int(c, "NumberOfContourPoints", where, default=len(points))
            if stated != len(points):
                raise DicomImportError(
                    where,
                    f"ROI {roi!r}: a contour states NumberOfContourPoints {stated} but its "
                    f"ContourData holds {len(points)} points: the contour is incomplete or "
                    "corrupt; export the structure set again",
                )
            contours.setdefault(number, []).append(Contour(points_mm=points, geometric_type=kind))
    if not contours:
        raise DicomImportError(where, "empty RT Structure Set: no ROI has contours")
    rois = tuple(
        RoiDefinition(
            number=number,
            name=name,
            interpreted_type=types.get(number, ""),
            colour_rgb=colours.get(number),
            frame_of_reference_uid=roi_frames[number],
            contours=tuple(contours.get(number, [])),
        )
        for number, name in names.items()
    )
    return ParsedStructureSet(
        rois=rois,
        sop_instance_uid=get_str(ds, "SOPInstanceUID", where, required=True),
        series_instance_uid=get_str(ds, "SeriesInstanceUID", where),
        label=get_str(ds, "StructureSetLabel", where),
        frame_of_reference_uids=tuple(frames),
        referenced_series_uids=tuple(s for s in referenced_series if s),
        warnings=tuple(warnings),
    )


def read_structure_set(ds: Dataset, ct: CtVolume, *, path: PathLike = "") -> StructureSet:
    """Build a :class:`StructureSet` from an RT Structure Set dataset, on the grid of ``ct``.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The RT Structure Set.
    ct : CtVolume
        The CT whose grid the masks are made on; must share the frame of reference.
    path : str or os.PathLike
        File name for messages.

    Raises
    ------
    DicomImportError
        Anything :func:`parse_structure_set` rejects, a structure set of another patient ID
        than the CT's, and a contoured ROI in another frame of reference than the CT (or in
        none stated).
    """
    where = str(path) or "RT Structure Set"
    parsed = parse_structure_set(ds, path=path)
    ss_patient = str(getattr(ds, "PatientID", "") or "").strip()
    if ss_patient and ct.study.patient_id and ss_patient != ct.study.patient_id:
        raise DicomImportError(
            where,
            f"the structure set is of patient ID {ss_patient!r}, the CT of "
            f"{ct.study.patient_id!r}: it belongs to another patient",
        )
    for roi in parsed.rois:
        if not roi.contours:
            continue
        if not roi.frame_of_reference_uid:
            raise DicomImportError(
                where,
                f"ROI {roi.name!r} states no Frame of Reference UID; cannot check "
                "that it belongs to this CT",
            )
        if roi.frame_of_reference_uid != ct.frame_of_reference_uid:
            raise DicomImportError(
                where,
                f"ROI {roi.name!r} is in frame of reference {roi.frame_of_reference_uid}, but "
                f"the CT is in {ct.frame_of_reference_uid}: the structure set belongs to "
                "another scan",
            )
    warnings = list(parsed.warnings)
    series_uids = parsed.referenced_series_uids
    if series_uids and ct.series_instance_uid not in series_uids:
        warnings.append(
            f"the structure set was drawn on series {series_uids[0]}, not on this CT series "
            f"{ct.series_instance_uid} (same frame of reference)"
        )
    structures: list[Structure] = []
    for roi in parsed.rois:
        if not roi.contours:
            warnings.append(f"ROI {roi.name!r} has no contours")
        mask, roi_warnings = contours_to_mask(roi.contours, ct, roi.name)
        warnings.extend(roi_warnings)
        structures.append(
            Structure(
                name=roi.name,
                roi_number=roi.number,
                interpreted_type=roi.interpreted_type,
                colour_rgb=roi.colour_rgb,
                mask=mask,
                contours=roi.contours,
            )
        )
    # At INFO (-v): the outputs say them (report.json's warnings, the terminal after a
    # command, the plan document, the app's patient panel: Patient.import_warnings); at WARNING
    # the terminal read each twice.
    for line in warnings:
        logger.info("%s: %s", where, line)
    return StructureSet(
        structures=tuple(structures),
        frame_of_reference_uid=ct.frame_of_reference_uid,
        sop_instance_uid=parsed.sop_instance_uid,
        series_instance_uid=parsed.series_instance_uid,
        label=parsed.label,
        referenced_ct_series_uid=series_uids[0] if series_uids else "",
        warnings=tuple(warnings),
        source_path=str(path),
    )


def read_rtstruct_file(path: PathLike) -> Dataset:
    """Read an RT Structure Set file; DicomImportError if it cannot be parsed or is truncated."""
    return read_dicom_file(path, "cannot read the RT Structure Set")


def load_rtstruct(path: PathLike, ct: CtVolume) -> StructureSet:
    """Read an RT Structure Set file and rasterize its ROIs on the grid of ``ct``.

    Parameters
    ----------
    path : str or os.PathLike
        The RTSTRUCT file.
    ct : CtVolume
        The CT it was drawn on (same frame of reference).

    Returns
    -------
    StructureSet
        Structures in the file's ROI order, masks on the CT grid, and the warnings.

    Raises
    ------
    DicomImportError
        Unreadable file, or any problem listed in :func:`read_structure_set`.
    """
    with reading_file(path):  # pydicom reads values when they are used: all of them here
        return read_structure_set(read_rtstruct_file(path), ct, path=path)
