"""Export a dose cube as a DICOM RT Dose (grid-based, one multi-frame image).

The RT Dose holds the dose of the **whole plan** (all fractions): Dose Summation Type PLAN,
Dose Units GY. The caller passes the total dose cube (per-fraction dose x number of fractions).
Dose Type is PHYSICAL (Gy) or EFFECTIVE (RBE-weighted, Gy(RBE)). First-generation RT Dose has no
attribute for the RBE model, so the model that computed the dose is named three times
(docs/dicom.md): its ``describe()`` line in Dose Comment (LO, 64 characters) and after
``"IonPlan dose effective "`` in Series Description (LO, 64 characters), both shortened by whole
``key=value`` items with a trailing ``"..."`` when too long, and its complete record (every
parameter) in IonPlan's private block (:mod:`planning.dicom._rbe_block`). A dose derived from
the model's doses (a robust evaluation's voxel-wise minimum or maximum) says so after the
description in both labels (``label_suffix``, e.g. ``"minimum over 9 scenarios"``), kept whole:
the description is shortened to leave room for it, and the Series Description is then
``"IonPlan dose "`` + description + suffix (the Dose Type is in Dose Type).

Geometry: the cube is on a :class:`planning.dose_grid.DoseGrid`, indexed ``(z, y, x)`` with
axes along +x, +y, +z LPS, so Image Orientation (Patient) is ``1\\0\\0\\0\\1\\0``, Image Position
(Patient) is the centre of voxel ``(0, 0, 0)``, and the Grid Frame Offset Vector is relative
(first value 0) with the slice spacing ``sz`` (a one-plane cube is a single-frame image whose
Slice Thickness is ``sz``). The Frame of Reference is the CT's.

Pixels are unsigned integers, ``dose = pixel x Dose Grid Scaling``: 32 bits by default (relative
precision 2.3e-10 of the maximum), 16 bits on request (1.5e-5 of the maximum). The scaling is
written as a decimal string and the pixels are computed with the value as written, so a reader
gets every voxel within half a scaling step.
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from planning.dicom._export_common import (
    RT_DOSE_STORAGE,
    RT_ION_PLAN_STORAGE,
    ExportIdentity,
    base_dataset,
    check_text,
    format_ds,
    reference,
    sequence,
    set_ds,
    write_dataset,
)
from planning.dicom._rbe_block import write_rbe_block
from planning.dicom._values import PathLike
from planning.dose_grid import DoseGrid
from planning.errors import InputError
from planning.patient import Patient
from planning.rbe import PhysicalDose, RbeModel
from planning.rbe.record import StructureTissues, fit_label, model_label

logger = logging.getLogger(__name__)

DOSE_TYPES = ("PHYSICAL", "EFFECTIVE")
#: Dose Comment is LO: at most 64 characters.
DOSE_COMMENT_CHARS = 64
#: Series Description is LO too.
SERIES_DESCRIPTION_CHARS = 64


def _label(described: str, suffix: str, limit: int) -> str:
    """The model's description shortened by whole items (:func:`fit_label`) so that it and
    ``suffix`` (kept whole) fit ``limit`` characters together."""
    if not suffix:
        return fit_label(described, limit)
    return f"{fit_label(described, limit - len(suffix) - 1)} {suffix}"


def dose_grid_scaling(max_dose_gy: float, bits: int) -> float:
    """The Dose Grid Scaling (Gy per pixel unit) written for a cube of this maximum.

    The value is the one a reader parses back from the 16-character decimal string, rounded
    up so that ``max_dose_gy / scaling`` fits the pixel range.
    """
    if max_dose_gy <= 0:
        return 1.0
    top = float(2**bits - 1)
    scaling = float(format_ds(max_dose_gy / top))
    while max_dose_gy / scaling > top:
        scaling = float(format_ds(scaling * (1.0 + 1e-9)))
    return scaling


def _pixels(dose_gy: NDArray[np.floating], bits: int) -> tuple[NDArray[np.unsignedinteger], float]:
    dose = np.asarray(dose_gy, dtype=np.float64)
    scaling = dose_grid_scaling(float(dose.max()), bits)
    counts = np.clip(np.rint(dose / scaling), 0, 2**bits - 1)
    stored: NDArray[np.unsignedinteger] = (
        counts.astype(np.uint32) if bits == 32 else counts.astype(np.uint16)
    )
    return stored, scaling


def export_rt_dose(
    dose_gy: NDArray[np.floating],
    grid: DoseGrid,
    patient: Patient,
    path: PathLike,
    *,
    dose_type: str,
    model: RbeModel | None = None,
    structure_tissues: StructureTissues = (),
    comment: str | None = None,
    label_suffix: str | None = None,
    referenced_plan_uid: str,
    bits: int = 32,
    uid_seed: str | None = None,
    created: datetime | None = None,
) -> str:
    """Write a total plan dose cube as an RT Dose file (see the module docstring).

    Parameters
    ----------
    dose_gy : (nz, ny, nx) float array
        Dose of the whole plan (all fractions) on ``grid``, Gy (Gy(RBE) when EFFECTIVE),
        finite and >= 0.
    grid : DoseGrid
        The dose grid (axes along +x, +y, +z LPS in the CT's frame of reference).
    patient : Patient
        The patient (its CT gives the study and the frame of reference).
    path : str or os.PathLike
        Output file, written atomically; its folder must exist.
    dose_type : {"PHYSICAL", "EFFECTIVE"}
        Physical dose, or RBE-weighted dose.
    model : RbeModel, optional
        The model that computed the dose (:class:`planning.rbe.PhysicalDose` for physical
        dose): Dose Comment, Series Description and the private record name it.
    structure_tissues : tuple of (str, Tissue), optional
        The LEM I tissues per structure the dose was computed with (``model`` being that LEM I
        model for the other voxels): the labels and the record name them too.
    comment : str, optional
        Dose Comment (at most 64 characters) of a dose without a model, e.g. a demo; not
        together with ``model``.
    label_suffix : str, optional
        With ``model``: what the dose is beyond the model's dose, e.g. ``"maximum over 9
        scenarios"``; it follows the model's description in Dose Comment and Series Description
        (``"IonPlan dose "`` + description + suffix) and is never cut (the description loses
        whole items instead).
    referenced_plan_uid : str
        SOP Instance UID of the RT Ion Plan the dose belongs to.
    bits : {32, 16}
        Bits per pixel. 16-bit files are coarser but accepted by more tools (dciodvfy, for one).
    uid_seed : str, optional
        Derive the new UIDs from this string (deterministic export); random otherwise.
    created : datetime, optional
        Creation date and time written; now by default.

    Returns
    -------
    str
        SOP Instance UID of the RT Dose.

    Raises
    ------
    InputError
        Shape not matching the grid, negative or non-finite dose, unknown dose type or bits,
        comment too long, both or a non-physical model for PHYSICAL dose, no plan UID, a
        label suffix without a model or too long to leave room for the model's name.
    OSError
        If the file cannot be written.
    """
    dose = np.asarray(dose_gy)
    if dose.shape != tuple(grid.shape):
        raise InputError(f"dose cube of shape {dose.shape} does not match the grid {grid.shape}")
    if not np.all(np.isfinite(dose)) or (dose.size and float(dose.min()) < 0):
        raise InputError("the dose cube must be finite and >= 0 to be written as RT Dose")
    kind = dose_type.upper()
    if kind not in DOSE_TYPES:
        raise InputError(f"dose_type must be one of {DOSE_TYPES}, got {dose_type!r}")
    if bits not in (16, 32):
        raise InputError(f"bits must be 16 or 32, got {bits}")
    if not referenced_plan_uid:
        raise InputError("an RT Dose of a plan must reference the plan's SOP Instance UID")
    if model is not None and comment is not None:
        raise InputError("give the RT Dose's model or a comment, not both: the comment of a "
                         "model's dose is the model's description")
    if kind == "PHYSICAL" and model is not None and not isinstance(model, PhysicalDose):
        raise InputError(f"a PHYSICAL dose cannot be labelled with the {model.name} model")
    suffix = check_text(label_suffix or "", DOSE_COMMENT_CHARS, "dose label suffix")
    if suffix and model is None:
        raise InputError("a label suffix follows the model's description: give the model")
    # A suffixed label leaves the dose type to Dose Type (its model says it too), so that
    # the model's name and first parameters fit beside the suffix.
    series_prefix = "IonPlan dose " if suffix else f"IonPlan dose {kind.lower()} "
    if model is not None:
        described = model_label(model, structure_tissues)
        text = _label(described, suffix, DOSE_COMMENT_CHARS)
        series = series_prefix + _label(described, suffix, SERIES_DESCRIPTION_CHARS
                                        - len(series_prefix))
    else:
        text = check_text(comment or "", DOSE_COMMENT_CHARS, "dose comment")
        series = series_prefix + text
    ct = patient.ct
    identity = ExportIdentity.make(uid_seed, created)
    ds = base_dataset(
        sop_class=RT_DOSE_STORAGE,
        modality="RTDOSE",
        study=ct.study,
        identity=identity,
        series_description=series,
        series_number=902,
    )
    ds.FrameOfReferenceUID = ct.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # General Image
    ds.InstanceNumber = 1
    ds.ContentDate = identity.date
    ds.ContentTime = identity.time
    # Image Plane
    sz, sy, sx = grid.spacing_mm
    set_ds(ds, "PixelSpacing", [sy, sx])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    set_ds(ds, "ImagePositionPatient", list(grid.origin_mm))
    set_ds(ds, "SliceThickness", sz)
    # Image Pixel, Multi-frame
    nz, ny, nx = grid.shape
    stored, scaling = _pixels(dose, bits)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ny
    ds.Columns = nx
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if nz > 1:  # a single plane is a single-frame image (Grid Frame Offset Vector needs 2+)
        ds.NumberOfFrames = nz
        ds.FrameIncrementPointer = 0x3004000C
    # RT Dose
    ds.DoseUnits = "GY"
    ds.DoseType = kind
    if text:
        ds.DoseComment = text
    ds.DoseSummationType = "PLAN"
    ds.ReferencedRTPlanSequence = sequence([reference(RT_ION_PLAN_STORAGE, referenced_plan_uid)])
    if nz > 1:
        set_ds(ds, "GridFrameOffsetVector", [k * sz for k in range(nz)])
    set_ds(ds, "DoseGridScaling", scaling)
    ds.TissueHeterogeneityCorrection = "IMAGE"
    if model is not None:
        write_rbe_block(ds, model, structure_tissues)
    ds.PixelData = np.ascontiguousarray(stored).astype(stored.dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OW"
    write_dataset(ds, path)
    logger.info("exported %s dose (%s voxels, max %.4g Gy, %d bits) to %s", kind, grid.shape,
                float(dose.max()) if dose.size else 0.0, bits, path)
    return str(ds.SOPInstanceUID)
