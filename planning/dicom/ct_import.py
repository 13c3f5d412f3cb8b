"""Import a CT series into a :class:`planning.patient.CtVolume`.

Steps: the folder scan (:mod:`planning.dicom.scan`) groups headers by series; here the series'
headers are checked for consistency, the slices sorted along the slice normal, the geometry
checked (axis-aligned axial images, no gantry tilt, uniform spacing, no missing or duplicate
slices), and then each file's pixel data is decoded (any transfer syntax pydicom has a decoder
for: native, RLE, and with pylibjpeg-libjpeg / pylibjpeg-openjpeg the JPEG lossless, JPEG-LS and
JPEG 2000 syntaxes), rescaled to HU and written straight into one preallocated volume, flipped or
transposed so that the stored axes point along +x, +y, +z LPS (see :mod:`planning.patient`).
Geometry comes from Image Orientation and Image Position (Patient) only; Patient Position is
kept as metadata.
"""

from __future__ import annotations

import logging
from typing import cast

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from planning.dicom._values import (
    PathLike,
    describe_exception,
    get_int,
    get_str,
    reading,
)
from planning.dicom.ct_geometry import SeriesGeometry, SliceRecord, series_geometry
from planning.dicom.errors import DicomImportError, SeriesSelectionError
from planning.dicom.file_context import reading_file
from planning.dicom.scan import (
    CtFileHeader,
    CtSeriesFiles,
    FolderScan,
    scan_folder,
)
from planning.patient import CtVolume, HuArray, PatientStudy
from planning.progress import CancelToken, ProgressCallback, report

logger = logging.getLogger(__name__)

_FLOAT32_LIMIT = 1e30
#: Rescale parameters up to these magnitudes are applied in integer arithmetic.
_INT_SLOPE_LIMIT = 1 << 15
_INT_INTERCEPT_LIMIT = 1 << 31


def _select_series(scan: FolderScan, series_uid: str | None) -> CtSeriesFiles:
    if not scan.ct_series:
        detail = ""
        if scan.skipped or scan.damaged:
            first = (scan.damaged + scan.skipped)[0]
            detail = (
                f" ({len(scan.skipped)} files skipped, {len(scan.damaged)} damaged; "
                f"e.g. {first.path}: {first.reason})"
            )
        raise DicomImportError(scan.folder, f"no CT image series found{detail}")
    if series_uid is None:
        candidates = scan.planning_ct_candidates()
        if len(candidates) == 1:
            return candidates[0]
        listing = "; ".join(s.describe() for s in candidates)
        raise SeriesSelectionError(
            scan.folder,
            f"{len(candidates)} CT series found: {listing}",
            [s.series_instance_uid for s in candidates],
            kind="CT series",
        )
    series = scan.find_series(series_uid)
    if series is None:
        listing = ", ".join(s.series_instance_uid for s in scan.ct_series)
        raise DicomImportError(scan.folder, f"no CT series {series_uid}; found: {listing}")
    return series


class _NeedsFloat(Exception):
    """Rescaled values do not fit int16: decode again into float32."""


def _decode_into(
    geometry: SeriesGeometry,
    dtype: type[np.int16] | type[np.float32],
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> HuArray:
    out = cast(HuArray, np.empty(geometry.out_shape, dtype=dtype))
    view = out.transpose(geometry.raw_to_out_axes)
    for axis, flip in enumerate(geometry.raw_flips):
        if flip:
            view = np.flip(view, axis=axis)
    info16 = np.iinfo(np.int16)
    count = len(geometry.slices)
    for k, sl in enumerate(geometry.slices):
        if cancel is not None:
            cancel.raise_if_cancelled("CT import")
        stored = _decode_pixels(
            sl.path, geometry.rows, geometry.columns, _transfer_syntax(sl.header)
        )
        if dtype is np.int16:
            wide = stored.astype(np.int64)
            if sl.slope != 1.0:
                wide *= int(sl.slope)
            if sl.intercept != 0.0:
                wide += int(sl.intercept)
            if wide.size and (wide.min() < info16.min or wide.max() > info16.max):
                raise _NeedsFloat
            view[k] = wide
        else:
            rescaled = stored.astype(np.float64) * sl.slope + sl.intercept
            if not np.all(np.abs(rescaled) < _FLOAT32_LIMIT):
                raise DicomImportError(
                    sl.path,
                    f"RescaleSlope {sl.slope} and RescaleIntercept {sl.intercept} give CT "
                    "numbers out of any physical range",
                )
            view[k] = rescaled
        report(progress, 0.05 + 0.95 * (k + 1) / count, "reading CT slices")
    return out


def _transfer_syntax(header: CtFileHeader) -> str:
    meta = getattr(header.dataset, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


def _decode_pixels(path: str, rows: int, columns: int, syntax: str) -> NDArray[np.integer]:
    try:
        with reading_file(path):  # what pydicom warns of names the slice
            if syntax == DeflatedExplicitVRLittleEndian:
                # pixel_array(path) reads the file without inflating it; parse the whole file
                stored = pixel_array(pydicom.dcmread(path))
            else:
                stored = pixel_array(path)
    except MemoryError as exc:
        raise DicomImportError(path, "the pixel data declares a size too large to decode") from exc
    except Exception as exc:
        detail = describe_exception(exc)
        if "no 'Pixel Data'" in detail:
            raise DicomImportError(path, "the CT image has no Pixel Data") from exc
        raise DicomImportError(
            path, f"cannot decode the pixel data (truncated or corrupt file?): {detail}"
        ) from exc
    if stored.shape != (rows, columns):
        raise DicomImportError(
            path, f"decoded pixel data has shape {stored.shape}, expected ({rows}, {columns})"
        )
    if not np.issubdtype(stored.dtype, np.integer):
        raise DicomImportError(path, f"pixel data of type {stored.dtype}; expected integers")
    return stored


def _check_one_patient(slices: tuple[SliceRecord, ...]) -> None:
    """Refuse a series whose slices name more than one patient (ID or name): the volume would
    carry the first slice's identity over another patient's images.

    Raises
    ------
    DicomImportError
        Naming the first slice that differs from the first slice of the series.
    """
    head = slices[0]
    ident = [get_str(head.header.dataset, key, head.path) for key in ("PatientID", "PatientName")]
    for sl in slices[1:]:
        for key, first in zip(("PatientID", "PatientName"), ident, strict=True):
            value = get_str(sl.header.dataset, key, sl.path)
            if value != first:
                raise DicomImportError(
                    sl.path, f"{key} {value!r} differs from {first!r} of {head.path}: the "
                    "series holds slices of two patients; remove the other patient's files")


def load_ct_series(
    source: PathLike | FolderScan,
    *,
    series_uid: str | None = None,
    allow_damaged: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> CtVolume:
    """Load one CT series from a folder as a :class:`planning.patient.CtVolume`.

    Parameters
    ----------
    source : str, os.PathLike or FolderScan
        The folder (searched recursively), or the result of :func:`scan_folder` on it.
    series_uid : str, optional
        Series Instance UID to load; needed when the folder holds several CT series.
    allow_damaged : bool
        Load even if the folder holds damaged DICOM files that might be slices of the series
        (see :mod:`planning.dicom.scan`). Default False: such files stop the import.
    progress : callable, optional
        ``progress(fraction, stage)``.
    cancel : CancelToken, optional
        Checked between slices; raises :class:`planning.progress.OperationCancelled`.

    Returns
    -------
    CtVolume
        HU volume (z, y, x) with axes along +x, +y, +z LPS.

    Raises
    ------
    SeriesSelectionError
        Several CT series and ``series_uid`` not given (the error lists their UIDs).
    DicomImportError
        For any bad input: no CT series, damaged files, inconsistent or missing attributes,
        oblique or tilted images, missing, duplicate or unevenly spaced slices, undecodable
        pixel data. The message names the file and the problem.
    """
    scan = source if isinstance(source, FolderScan) else scan_folder(source)
    report(progress, 0.0, "checking CT headers")
    series = _select_series(scan, series_uid)
    if scan.damaged and not allow_damaged:
        first = scan.damaged[0]
        raise DicomImportError(
            first.path,
            f"{first.reason}; it may be a slice of the CT series ({len(scan.damaged)} damaged "
            "file(s) in the folder): repair or remove damaged files before importing",
        )
    try:
        geometry = series_geometry(series)
    except DicomImportError as exc:
        unread = [s for s in scan.skipped
                  if s.reason.startswith(("not a DICOM file", "cannot be read"))]
        if "missing" not in exc.reason or not unread:
            raise
        # A slice that is not readable as DICOM was skipped by the scan: say which.
        first = unread[0]
        raise DicomImportError(exc.path, f"{exc.reason}; {len(unread)} file(s) of the "
                               f"folder could not be read as DICOM (e.g. {first.path}: "
                               f"{first.reason}): a missing slice may be among them") from None
    report(progress, 0.05, "reading CT slices")
    integral = all(
        float(sl.slope).is_integer()
        and float(sl.intercept).is_integer()
        and abs(sl.slope) <= _INT_SLOPE_LIMIT
        and abs(sl.intercept) <= _INT_INTERCEPT_LIMIT
        for sl in geometry.slices
    )
    hu: HuArray
    if integral:
        try:
            hu = _decode_into(geometry, np.int16, progress, cancel)
        except _NeedsFloat:
            logger.info("HU values exceed int16: storing %s as float32", series.series_instance_uid)
            hu = _decode_into(geometry, np.float32, progress, cancel)
    else:
        hu = _decode_into(geometry, np.float32, progress, cancel)
    head = geometry.slices[0]
    ds, path = head.header.dataset, head.path
    _check_one_patient(geometry.slices)
    position = get_str(ds, "PatientPosition", path)
    warnings = () if position else (
        f"{path} (CT series {series.series_instance_uid}): Patient Position missing; geometry "
        "is taken from the images",)
    series_number_text = get_str(ds, "SeriesNumber", path)
    series_number = (
        get_int(ds, "SeriesNumber", path) if series_number_text.lstrip("+-").isdigit() else None
    )
    with reading(path, "cannot read the patient and study attributes"):
        study = PatientStudy(
            patient_name=get_str(ds, "PatientName", path),
            patient_id=get_str(ds, "PatientID", path),
            patient_birth_date=get_str(ds, "PatientBirthDate", path),
            patient_sex=get_str(ds, "PatientSex", path),
            study_instance_uid=get_str(ds, "StudyInstanceUID", path, required=True),
            study_id=get_str(ds, "StudyID", path),
            study_date=get_str(ds, "StudyDate", path),
            study_time=get_str(ds, "StudyTime", path),
            accession_number=get_str(ds, "AccessionNumber", path),
            referring_physician_name=get_str(ds, "ReferringPhysicianName", path),
            study_description=get_str(ds, "StudyDescription", path),
        )
    # slice order of hu: the sorted slices, reversed when the normal points towards -z
    ordered = geometry.slices[::-1] if geometry.raw_flips[0] else geometry.slices
    volume = CtVolume(
        hu=hu,
        spacing_mm=geometry.spacing_mm,
        origin_mm=geometry.origin_mm,
        patient_position=position,
        image_orientation_patient=geometry.orientation,
        frame_of_reference_uid=get_str(ds, "FrameOfReferenceUID", path, required=True),
        series_instance_uid=series.series_instance_uid,
        sop_instance_uids=tuple(sl.sop_instance_uid for sl in ordered),
        study=study,
        series_description=get_str(ds, "SeriesDescription", path),
        series_number=series_number,
        source_paths=tuple(sl.path for sl in ordered),
        warnings=warnings,
    )
    logger.info(
        "loaded CT %s: %s voxels, spacing %s mm, origin %s mm",
        series.series_instance_uid,
        volume.shape,
        volume.spacing_mm,
        volume.origin_mm,
    )
    report(progress, 1.0, "CT loaded")
    return volume
