"""Geometry checks of a CT series and the plan to reorient it to +x, +y, +z LPS.

From the headers alone (no pixel data): consistency of the files (size, pixel spacing,
orientation, frame of reference, study, SOP class, modality, rescale), axis-aligned axial
orientation (no oblique or tilted images), sorting along the slice normal, and uniform slice
spacing with no duplicate or missing slices. The result says how the raw slice stack
``(slice k, row j, column i)`` maps onto the stored ``(z, y, x)`` array (a transpose and flips) and
where voxel ``(0, 0, 0)`` lies in LPS.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from planning.dicom._values import get_float, get_floats, get_int, get_str
from planning.dicom.errors import DicomImportError
from planning.dicom.scan import CT_IMAGE_STORAGE, CtFileHeader, CtSeriesFiles

#: Largest deviation of a direction cosine from 0 or +-1 still taken as axis-aligned
#: (1e-4 is 0.006 degrees: under 0.03 mm across a 500 mm field of view).
ORIENTATION_TOLERANCE = 1e-4
#: Largest in-plane shift (mm) between slice origins before the series counts as tilted.
TILT_TOLERANCE_MM = 0.02
#: Slice-gap tolerance: the larger of this (mm) and SPACING_RELATIVE_TOLERANCE * spacing.
SPACING_TOLERANCE_MM = 0.01
SPACING_RELATIVE_TOLERANCE = 0.01
#: Two slices closer than this (mm) along the normal are duplicates.
DUPLICATE_TOLERANCE_MM = 0.01
#: Refuse volumes larger than this many voxels (a corrupt Rows/Columns would otherwise try to
#: allocate terabytes).
MAX_VOXELS = 1 << 31
_AXES = "xyz"


@dataclass(frozen=True, eq=False)
class SliceRecord:
    """One file of the series: its header and what the geometry needs from it."""

    path: str
    header: CtFileHeader
    position_mm: NDArray[np.float64]
    along_normal_mm: float
    slope: float
    intercept: float
    sop_instance_uid: str


@dataclass(frozen=True, eq=False)
class SeriesGeometry:
    """Sorted slices and the mapping of the raw slice stack onto the stored volume.

    ``raw_to_out_axes`` are the stored-array axes of the raw axes (k, j, i); ``raw_flips`` says
    which raw axes run against +LPS; ``spacing_mm`` is (z, y, x) and ``origin_mm`` (x, y, z).
    """

    slices: tuple[SliceRecord, ...]
    rows: int
    columns: int
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    raw_to_out_axes: tuple[int, int, int]
    raw_flips: tuple[bool, bool, bool]
    out_shape: tuple[int, int, int]
    orientation: tuple[float, float, float, float, float, float]


def _axis_of(cosines: NDArray[np.float64], path: str, name: str) -> tuple[int, int]:
    """(LPS axis index, sign) of an axis-aligned unit vector; DicomImportError otherwise."""
    axis = int(np.argmax(np.abs(cosines)))
    others = np.delete(cosines, axis)
    if abs(abs(cosines[axis]) - 1.0) > ORIENTATION_TOLERANCE or np.any(
        np.abs(others) > ORIENTATION_TOLERANCE
    ):
        angle = float(np.degrees(np.arccos(min(1.0, abs(float(cosines[axis]))))))
        raise DicomImportError(
            path,
            f"the image {name} direction {tuple(round(float(c), 6) for c in cosines)} is "
            f"oblique ({angle:.3f} degrees off the {_AXES[axis]} axis): tilted-gantry or oblique "
            "series are not supported; reconstruct the series axially without tilt",
        )
    return axis, 1 if cosines[axis] > 0 else -1


def _check_consistent(files: tuple[CtFileHeader, ...]) -> list[SliceRecord]:
    first = files[0]
    ref_rows = get_int(first.dataset, "Rows", first.path, minimum=1)
    ref_cols = get_int(first.dataset, "Columns", first.path, minimum=1)
    ref_spacing = get_floats(first.dataset, "PixelSpacing", first.path, 2)
    ref_iop = get_floats(first.dataset, "ImageOrientationPatient", first.path, 6)
    ref_for = get_str(first.dataset, "FrameOfReferenceUID", first.path, required=True)
    ref_study = get_str(first.dataset, "StudyInstanceUID", first.path)
    slices: list[SliceRecord] = []
    seen_uids: dict[str, str] = {}
    for f in files:
        ds, path = f.dataset, f.path
        sop_class = get_str(ds, "SOPClassUID", path)
        if sop_class != CT_IMAGE_STORAGE:
            raise DicomImportError(
                path,
                f"SOP Class {sop_class or '(missing)'} is not CT Image Storage; multi-frame "
                "(Enhanced) CT is not supported, export the series as single-frame CT images",
            )
        modality = get_str(ds, "Modality", path)
        if modality != "CT":
            raise DicomImportError(path, f"wrong modality {modality or '(missing)'}, expected CT")
        rows = get_int(ds, "Rows", path, minimum=1)
        cols = get_int(ds, "Columns", path, minimum=1)
        if (rows, cols) != (ref_rows, ref_cols):
            raise DicomImportError(
                path,
                f"image size {rows} x {cols} (rows x columns) differs from {ref_rows} x "
                f"{ref_cols} in {first.path}",
            )
        spacing = get_floats(ds, "PixelSpacing", path, 2)
        if min(spacing) <= 0:
            raise DicomImportError(path, f"PixelSpacing {spacing} must be positive")
        if max(abs(a - b) for a, b in zip(spacing, ref_spacing, strict=True)) > 1e-4:
            raise DicomImportError(
                path, f"PixelSpacing {spacing} differs from {ref_spacing} in {first.path}"
            )
        iop = get_floats(ds, "ImageOrientationPatient", path, 6)
        if max(abs(a - b) for a, b in zip(iop, ref_iop, strict=True)) > ORIENTATION_TOLERANCE:
            raise DicomImportError(
                path, f"ImageOrientationPatient {iop} differs from {ref_iop} in {first.path}"
            )
        frame = get_str(ds, "FrameOfReferenceUID", path, required=True)
        if frame != ref_for:
            raise DicomImportError(
                path, f"Frame of Reference UID {frame} differs from {ref_for} in {first.path}"
            )
        study = get_str(ds, "StudyInstanceUID", path)
        if study != ref_study:
            raise DicomImportError(
                path, f"Study Instance UID {study} differs from {ref_study} in {first.path}"
            )
        frames = get_int(ds, "NumberOfFrames", path, default=1)
        if frames != 1:
            raise DicomImportError(path, f"{frames} frames in one CT image; expected 1")
        if get_int(ds, "SamplesPerPixel", path, default=1) != 1:
            raise DicomImportError(path, "CT images must have one sample per pixel (grayscale)")
        uid = get_str(ds, "SOPInstanceUID", path, required=True)
        if uid in seen_uids:
            raise DicomImportError(
                path, f"same SOP Instance UID as {seen_uids[uid]}: the image is there twice"
            )
        seen_uids[uid] = path
        _check_hounsfield_units(ds, path)
        slope = get_float(ds, "RescaleSlope", path)
        if slope == 0:
            raise DicomImportError(path, "RescaleSlope is 0")
        slices.append(
            SliceRecord(
                path=path,
                header=f,
                position_mm=np.array(get_floats(ds, "ImagePositionPatient", path, 3)),
                along_normal_mm=0.0,
                slope=slope,
                intercept=get_float(ds, "RescaleIntercept", path),
                sop_instance_uid=uid,
            )
        )
    return slices


def _check_hounsfield_units(ds: Dataset, path: str) -> None:
    """Refuse a CT image whose rescaled values are not Hounsfield units: Rescale Type
    (0028,1054) other than HU, as multi-energy CT maps carry it (electron density, effective
    atomic number, material concentration; PS3.3 C.8.2.1, DICOM Supplement 188), or a
    multi-energy image without it (Type 1C there: the unit cannot be told)."""
    kind = get_str(ds, "RescaleType", path).upper()
    if kind and kind != "HU":
        raise DicomImportError(path, f"Rescale Type is {kind!r}: the image holds {kind} values, "
                                     "not Hounsfield units (a multi-energy map?); the stopping "
                                     "powers come from HU through the HLUT, so give a CT "
                                     "image in HU")
    if not kind and get_str(ds, "MultienergyCTAcquisition", path).upper() == "YES":
        raise DicomImportError(path, "a multi-energy CT image without Rescale Type: whether it "
                                     "holds Hounsfield units cannot be told; give a CT image "
                                     "in HU (Rescale Type HU)")


def _check_positions(slices: list[SliceRecord], normal: NDArray[np.float64]) -> float:
    """Check positions along ``normal`` (slices sorted); return the slice spacing in mm."""
    s = np.array([sl.along_normal_mm for sl in slices])
    if len(slices) < 2:
        raise DicomImportError(
            slices[0].path, "the series has a single slice; a planning CT needs at least two"
        )
    gaps = np.diff(s)
    for n, gap in enumerate(gaps):
        if gap < DUPLICATE_TOLERANCE_MM:
            raise DicomImportError(
                slices[n + 1].path,
                f"duplicate slice position z = {slices[n + 1].position_mm[2]:.3f} mm, same as "
                f"{slices[n].path}",
            )
    first = slices[0].position_mm
    for sl in slices[1:]:
        offset = sl.position_mm - first
        along = float(offset @ normal)
        in_plane = float(np.linalg.norm(offset - along * normal))
        if in_plane > TILT_TOLERANCE_MM:
            angle = float(np.degrees(np.arctan2(in_plane, abs(along))))
            raise DicomImportError(
                sl.path,
                f"slice origin is shifted {in_plane:.3f} mm in the image plane relative to "
                f"{slices[0].path} (a {angle:.2f} degree gantry tilt or sheared series); "
                "tilted series are not supported, reconstruct it without tilt",
            )
    expected = float(np.median(gaps))
    tolerance = max(SPACING_TOLERANCE_MM, SPACING_RELATIVE_TOLERANCE * expected)
    for n, gap in enumerate(gaps):
        if abs(gap - expected) <= tolerance:
            continue
        between = (
            f"between {slices[n].path} at z = {slices[n].position_mm[2]:.3f} mm and "
            f"{slices[n + 1].path} at z = {slices[n + 1].position_mm[2]:.3f} mm"
        )
        missing = round(gap / expected) - 1
        if missing >= 1 and abs(gap - (missing + 1) * expected) <= tolerance * (missing + 1):
            raise DicomImportError(
                slices[n + 1].path,
                f"{missing} slice(s) missing {between}: gap {gap:.3f} mm, expected spacing "
                f"{expected:.3f} mm",
            )
        raise DicomImportError(
            slices[n + 1].path,
            f"non-uniform slice spacing {between}: gap {gap:.3f} mm, expected {expected:.3f} mm",
        )
    return float((s[-1] - s[0]) / (len(s) - 1))


def series_geometry(series: CtSeriesFiles) -> SeriesGeometry:
    """Check the headers of ``series`` and plan its reorientation (DicomImportError if bad)."""
    slices = _check_consistent(series.files)
    first = series.files[0]
    rows = get_int(first.dataset, "Rows", first.path)
    cols = get_int(first.dataset, "Columns", first.path)
    row_mm, col_mm = get_floats(first.dataset, "PixelSpacing", first.path, 2)
    iop = np.array(get_floats(first.dataset, "ImageOrientationPatient", first.path, 6))
    r_axis, r_sign = _axis_of(iop[:3], first.path, "row")
    c_axis, c_sign = _axis_of(iop[3:], first.path, "column")
    if r_axis == c_axis:
        raise DicomImportError(first.path, f"ImageOrientationPatient {tuple(iop)} is degenerate")
    n_axis = 3 - r_axis - c_axis
    if n_axis != 2:
        raise DicomImportError(
            first.path,
            f"the images are not axial (their normal is along {_AXES[n_axis]}): sagittal or "
            "coronal series are not supported as planning CTs",
        )
    r = np.zeros(3)
    r[r_axis] = r_sign
    c = np.zeros(3)
    c[c_axis] = c_sign
    normal = np.cross(r, c)
    n_sign = int(normal[n_axis])
    slices = sorted(
        (replace(sl, along_normal_mm=float(sl.position_mm @ normal)) for sl in slices),
        key=lambda sl: sl.along_normal_mm,
    )
    slice_mm = _check_positions(slices, normal)
    nz = len(slices)
    if nz * rows * cols > MAX_VOXELS:
        raise DicomImportError(
            first.path, f"{nz} x {rows} x {cols} voxels is too large a volume to load"
        )
    # raw array axes (slice k, row j, column i) step along normal, c and r respectively
    raw_axes = (n_axis, c_axis, r_axis)
    raw_signs = (n_sign, c_sign, r_sign)
    raw_steps = (slice_mm, row_mm, col_mm)
    raw_sizes = (nz, rows, cols)
    start = [0 if sign > 0 else size - 1 for sign, size in zip(raw_signs, raw_sizes, strict=True)]
    origin = slices[start[0]].position_mm + start[1] * row_mm * c + start[2] * col_mm * r
    spacing_xyz = [0.0, 0.0, 0.0]
    size_xyz = [0, 0, 0]
    for axis, step, size in zip(raw_axes, raw_steps, raw_sizes, strict=True):
        spacing_xyz[axis] = step
        size_xyz[axis] = size
    ox, oy, oz = (float(v) for v in origin)
    return SeriesGeometry(
        slices=tuple(slices),
        rows=rows,
        columns=cols,
        spacing_mm=(spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]),
        origin_mm=(ox, oy, oz),
        raw_to_out_axes=(2 - raw_axes[0], 2 - raw_axes[1], 2 - raw_axes[2]),
        raw_flips=(raw_signs[0] < 0, raw_signs[1] < 0, raw_signs[2] < 0),
        out_shape=(size_xyz[2], size_xyz[1], size_xyz[0]),
        orientation=(
            float(iop[0]),
            float(iop[1]),
            float(iop[2]),
            float(iop[3]),
            float(iop[4]),
            float(iop[5]),
        ),
    )
