"""Import a grid-based DICOM RT Dose as a :class:`DoseVolume`.

The dose is ``stored pixel x Dose Grid Scaling`` (16- or 32-bit, unsigned or signed). Geometry
follows the image-plane equation: pixel (row ``j``, column ``i``) of frame ``f`` lies at
``IPP + i dc r + j dr c + o_f n`` with ``r, c`` the row and column direction cosines, ``dr, dc``
the Pixel Spacing, ``n = r x c`` and ``o_f`` the Grid Frame Offset Vector, which is either
relative (first value 0: offsets along ``n`` from IPP) or, for orientation ``1\\0\\0\\0\\1\\0``
only, absolute z coordinates (first value = IPP z). Axial axis-aligned grids in any patient position
are reoriented (flipped, and transposed for decubitus) so that the stored axes point along +x,
+y, +z LPS like the CT (:mod:`planning.patient`); oblique, sagittal or coronal grids and
unevenly spaced frames are refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import UID

from planning.dicom._export_common import RT_DOSE_STORAGE
from planning.dicom._rbe_block import read_rbe_block
from planning.dicom._rt_values import get_float_list, get_optional_float, is_present
from planning.dicom._values import (
    PathLike,
    describe_exception,
    get_floats,
    get_int,
    get_sequence,
    get_str,
    read_dicom_file,
    reading,
)
from planning.dicom.errors import DicomImportError
from planning.dicom.file_context import reading_file
from planning.dose_grid import DoseGrid
from planning.rbe import RbeModel, Tissue

logger = logging.getLogger(__name__)

#: Largest deviation of a direction cosine from 0 or +-1 still taken as axis-aligned.
ORIENTATION_TOLERANCE = 1e-4
#: Frame spacings may differ by this (mm) before the grid counts as uneven.
SPACING_TOLERANCE_MM = 0.01
#: Refuse dose grids larger than this many voxels (corrupt sizes).
MAX_VOXELS = 1 << 28
DOSE_TYPES = ("PHYSICAL", "EFFECTIVE", "ERROR")
DOSE_UNITS = ("GY", "RELATIVE")


@dataclass(frozen=True, eq=False)
class DoseVolume:
    """A dose distribution read from an RT Dose file.

    Attributes
    ----------
    dose_gy : (nz, ny, nx) float32 array, read-only
        Dose in ``units`` (Gy, or Gy(RBE) when ``dose_type`` is EFFECTIVE), axes along +x, +y,
        +z LPS.
    grid : DoseGrid
        Its grid (spacing ``(sz, sy, sx)`` mm, origin = LPS centre of voxel ``(0, 0, 0)``).
    dose_type : str
        PHYSICAL, EFFECTIVE or ERROR.
    units : str
        GY or RELATIVE.
    comment : str
        Dose Comment (IonPlan writes the RBE model there), ``""`` if absent.
    rbe : RbeModel or None
        The model of IonPlan's private RBE model record (:mod:`planning.dicom._rbe_block`):
        the model that computed the dose, with all its parameters; None without the record.
    rbe_tissues : tuple of (str, Tissue)
        The LEM I tissues per structure that record names (empty for one model everywhere).
    summation_type : str
        Dose Summation Type (PLAN: the whole plan, all fractions; FRACTION, BEAM, ...).
    frame_of_reference_uid : str
        The frame of reference of the grid.
    referenced_plan_uid : str
        SOP Instance UID of the referenced RT (Ion) Plan, ``""`` if none.
    sop_instance_uid : str
        The RT Dose's own UID.
    source_path : str
        The file read.
    patient_id, patient_name : str
        The patient the file names (Patient ID, Patient's Name; ``""`` when empty).
    """

    dose_gy: NDArray[np.float32]
    grid: DoseGrid
    dose_type: str
    units: str
    comment: str
    summation_type: str
    frame_of_reference_uid: str
    referenced_plan_uid: str
    sop_instance_uid: str = ""
    source_path: str = ""
    rbe: RbeModel | None = None
    rbe_tissues: tuple[tuple[str, Tissue], ...] = ()
    patient_id: str = ""
    patient_name: str = ""

    def __post_init__(self) -> None:
        if self.dose_gy.shape != tuple(self.grid.shape):
            raise ValueError(f"dose shape {self.dose_gy.shape} != grid shape {self.grid.shape}")
        if self.dose_gy.flags.writeable:
            self.dose_gy.flags.writeable = False


def _axis(cosines: NDArray[np.float64], path: str, name: str) -> tuple[int, int]:
    axis = int(np.argmax(np.abs(cosines)))
    off = np.delete(cosines, axis)
    if abs(abs(cosines[axis]) - 1) > ORIENTATION_TOLERANCE or np.any(
        np.abs(off) > ORIENTATION_TOLERANCE
    ):
        raise DicomImportError(path, f"the dose grid's {name} direction {cosines.tolist()} is "
                                     "oblique; only axis-aligned dose grids are supported")
    return axis, 1 if cosines[axis] > 0 else -1


def _frame_offsets(ds: Dataset, path: str, frames: int, ipp_z: float, identity: bool) -> (
        NDArray[np.float64]):
    """Offsets (mm) of the frames along the normal, relative to IPP."""
    if not is_present(ds, "GridFrameOffsetVector", path):
        if frames == 1:
            return np.zeros(1)
        raise DicomImportError(path, "Grid Frame Offset Vector missing in a multi-frame dose")
    offsets = get_float_list(ds, "GridFrameOffsetVector", path, "RT Dose")
    if offsets.size != frames:
        raise DicomImportError(path, f"Grid Frame Offset Vector has {offsets.size} values for "
                                     f"{frames} frames")
    if offsets[0] == 0.0:
        return offsets
    if identity and abs(offsets[0] - ipp_z) <= SPACING_TOLERANCE_MM:
        return offsets - offsets[0]
    raise DicomImportError(path, f"Grid Frame Offset Vector starts at {offsets[0]}: neither "
                                 "relative (0) nor absolute (the z of Image Position Patient)")


def _frame_spacing(offsets: NDArray[np.float64], ds: Dataset, path: str) -> tuple[float, int]:
    """(|spacing| mm, sign of the frame direction along the normal)."""
    if offsets.size == 1:
        thickness = get_optional_float(ds, "SliceThickness", path)
        return (thickness if thickness and thickness > 0 else 1.0), 1
    steps = np.diff(offsets)
    step = float(np.mean(steps))
    if step == 0 or np.any(np.abs(steps - step) > SPACING_TOLERANCE_MM):
        raise DicomImportError(path, "the dose frames are not evenly spaced (Grid Frame Offset "
                                     f"Vector steps {np.unique(np.round(steps, 3)).tolist()})")
    return abs(step), 1 if step > 0 else -1


def _pixels(ds: Dataset, path: str, frames: int, rows: int, cols: int) -> NDArray[np.float64]:
    bits = get_int(ds, "BitsAllocated", path)
    if bits not in (16, 32):
        raise DicomImportError(path, f"Bits Allocated {bits}: RT Dose needs 16 or 32")
    if get_int(ds, "SamplesPerPixel", path, default=1) != 1:
        raise DicomImportError(path, "RT Dose must have one sample per pixel")
    if frames * rows * cols > MAX_VOXELS:
        raise DicomImportError(path, f"{frames} x {rows} x {cols} voxels is too large a dose grid")
    with reading(path, "cannot read the Pixel Data"):
        meta = getattr(ds, "file_meta", None)
        syntax = UID(str(meta.get("TransferSyntaxUID", "")) if meta is not None else "")
        compressed = syntax.is_transfer_syntax and syntax.is_compressed
        available = len(ds.PixelData)
    # native pixel data must hold every pixel; checked before decoding allocates the volume
    if not compressed and available < frames * rows * cols * bits // 8:
        raise DicomImportError(path, f"the Pixel Data holds {available} bytes, fewer than the "
                                     f"{frames} x {rows} x {cols} pixels of {bits} bits declared")
    try:
        stored = ds.pixel_array
    except MemoryError as exc:
        raise DicomImportError(path, "the pixel data declares a size too large to decode") from exc
    except Exception as exc:
        raise DicomImportError(path, f"cannot decode the dose pixel data: "
                                     f"{describe_exception(exc)}") from exc
    if not np.issubdtype(stored.dtype, np.integer):
        raise DicomImportError(path, f"dose pixels of type {stored.dtype}; expected integers")
    if stored.size != frames * rows * cols:
        raise DicomImportError(path, f"decoded {stored.size} pixels, expected {frames} x {rows} "
                                     f"x {cols}")
    return stored.reshape(frames, rows, cols).astype(np.float64)


def read_rt_dose(ds: Dataset, *, path: PathLike = "") -> DoseVolume:
    """Build a :class:`DoseVolume` from an RT Dose dataset; see :func:`load_rt_dose`."""
    where = str(path) or "RT Dose"
    sop_class = get_str(ds, "SOPClassUID", where)
    if sop_class != RT_DOSE_STORAGE:
        modality = get_str(ds, "Modality", where) or "?"
        raise DicomImportError(where, f"not an RT Dose (SOP Class {sop_class or '?'}, "
                                      f"Modality {modality})")
    if not is_present(ds, "PixelData", where):
        raise DicomImportError(where, "no Pixel Data: a truncated file, or an RT Dose without "
                                      "a dose grid (DVH or point doses only), which IonPlan "
                                      "cannot import")
    dose_type = get_str(ds, "DoseType", where, required=True).upper()
    units = get_str(ds, "DoseUnits", where, required=True).upper()
    if dose_type not in DOSE_TYPES or units not in DOSE_UNITS:
        raise DicomImportError(where, f"Dose Type {dose_type!r} or Dose Units {units!r} unknown "
                                      f"(expected one of {DOSE_TYPES} in {DOSE_UNITS})")
    rows = get_int(ds, "Rows", where, minimum=1)
    cols = get_int(ds, "Columns", where, minimum=1)
    frames = get_int(ds, "NumberOfFrames", where, default=1, minimum=1)
    iop = np.array(get_floats(ds, "ImageOrientationPatient", where, 6))
    ipp = np.array(get_floats(ds, "ImagePositionPatient", where, 3))
    dr, dc = get_floats(ds, "PixelSpacing", where, 2)
    if dr <= 0 or dc <= 0:
        raise DicomImportError(where, f"Pixel Spacing {(dr, dc)} must be positive")
    scaling = get_optional_float(ds, "DoseGridScaling", where)
    if scaling is None or scaling <= 0:
        raise DicomImportError(where, f"Dose Grid Scaling {scaling} must be given and positive")
    r_axis, r_sign = _axis(iop[:3], where, "row")
    c_axis, c_sign = _axis(iop[3:], where, "column")
    if {r_axis, c_axis} != {0, 1}:
        raise DicomImportError(where, f"the dose planes (orientation {iop.tolist()}) are not "
                                      "axial; only axial dose grids are supported")
    identity = r_axis == 0 and c_axis == 1 and r_sign > 0 and c_sign > 0
    offsets = _frame_offsets(ds, where, frames, float(ipp[2]), identity)
    dz, f_dir = _frame_spacing(offsets, ds, where)
    normal_z = float(np.sign(np.cross(iop[:3], iop[3:])[2]))  # +1 or -1: n along +z or -z
    n_sign = int(normal_z) * f_dir
    raw = _pixels(ds, where, frames, rows, cols) * scaling
    # raw axes (frame, row, column) step along z, the column direction c and the row direction r
    spacing_xyz = [0.0, 0.0, dz]
    spacing_xyz[c_axis], spacing_xyz[r_axis] = dr, dc
    signs = (n_sign, c_sign, r_sign)
    corner = ipp.copy()  # LPS of the voxel with the smallest x, y and z
    corner[2] += float(np.min(offsets * normal_z))
    if c_sign < 0:
        corner[c_axis] -= (rows - 1) * dr
    if r_sign < 0:
        corner[r_axis] -= (cols - 1) * dc
    view = raw
    for axis, sign in enumerate(signs):
        if sign < 0:
            view = np.flip(view, axis=axis)
    # (frame, row, column) -> (z, y, x): rows run along y unless the image is transposed
    if c_axis == 0:
        view = view.transpose(0, 2, 1)
    dose = np.ascontiguousarray(view, dtype=np.float32)
    nz, ny, nx = dose.shape
    grid = DoseGrid(shape=(nz, ny, nx), spacing_mm=(dz, spacing_xyz[1], spacing_xyz[0]),
                    origin_mm=(float(corner[0]), float(corner[1]), float(corner[2])))
    plans = get_sequence(ds, "ReferencedRTPlanSequence", where)
    recorded = read_rbe_block(ds, where)
    return DoseVolume(
        dose_gy=dose,
        grid=grid,
        dose_type=dose_type,
        units=units,
        comment=get_str(ds, "DoseComment", where),
        summation_type=get_str(ds, "DoseSummationType", where, required=True).upper(),
        frame_of_reference_uid=get_str(ds, "FrameOfReferenceUID", where, required=True),
        referenced_plan_uid=(get_str(plans[0], "ReferencedSOPInstanceUID", where)
                             if plans else ""),
        sop_instance_uid=get_str(ds, "SOPInstanceUID", where),
        source_path=str(path),
        rbe=None if recorded is None else recorded[0],
        rbe_tissues=() if recorded is None else recorded[1],
        patient_id=get_str(ds, "PatientID", where).strip(),
        patient_name=get_str(ds, "PatientName", where).strip(),
    )


def load_rt_dose(path: PathLike) -> DoseVolume:
    """Read a grid-based RT Dose file.

    Parameters
    ----------
    path : str or os.PathLike
        The RT Dose file.

    Returns
    -------
    DoseVolume
        Dose ``(z, y, x)`` float32 on +x, +y, +z LPS axes, with its grid, type, units, comment,
        summation type, frame of reference, referenced plan and recorded RBE model.

    Raises
    ------
    DicomImportError
        Unreadable or not an RT Dose; no pixel data; missing or unknown Dose Type, Dose Units,
        Dose Summation Type or Frame of Reference UID; oblique or non-axial grid; unevenly
        spaced frames; missing or non-positive Dose Grid Scaling; undecodable pixels; an
        invalid IonPlan RBE model record.
    """
    with reading_file(path):  # pydicom reads values when they are used: all of them here
        volume = read_rt_dose(read_dicom_file(path, "cannot read the RT Dose"), path=path)
    logger.info("loaded %s dose %s from %s", volume.dose_type, volume.grid.shape, path)
    return volume
