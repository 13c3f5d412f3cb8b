"""Export structures as a DICOM RT Structure Set on the planning CT.

Each structure is written with its ROI number, name, RT ROI Interpreted Type and display colour:
its own ROI Display Color or, without one, the colour IonPlan draws it in
(:meth:`planning.patient.StructureSet.display_colours`), so another system shows the same colours.
Its contours are the structure's own :class:`planning.patient.Contour` list when it has one
(structures imported from DICOM, written back unchanged) and otherwise are extracted from its
mask, slice by slice: the 0.5-level isolines of the binary slice
(:func:`skimage.measure.find_contours` on the slice padded with a background border). The
isolines pass half-way between inside and outside voxel centres, so rasterizing them again with
the even-odd rule at voxel centres (:mod:`planning.dicom.rasterize`) gives the mask back
exactly; a hole is a separate contour inside its outline, as the even-odd rule expects.
Vertices are converted to LPS mm on the CT grid (axes +x, +y, +z LPS, see
:mod:`planning.patient`), so the export is right for every patient position.

Every contour references the CT image of its slice (Contour Image Sequence), and the structure
set references the CT series through Referenced Frame of Reference -> RT Referenced Study ->
RT Referenced Series -> Contour Image Sequence (all CT images).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from skimage.measure import find_contours

from planning.dicom._export_common import (
    ExportIdentity,
    base_dataset,
    check_text,
    clip_text,
    reference,
    sequence,
    set_ds,
    write_dataset,
)
from planning.dicom._values import PathLike
from planning.dicom.rasterize import CLOSED_TYPES
from planning.dicom.scan import CT_IMAGE_STORAGE, RT_STRUCTURE_SET_STORAGE
from planning.errors import InputError
from planning.patient import Contour, CtVolume, Structure, StructureSet

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
#: Referenced SOP Class of the study in RT Referenced Study Sequence (Detached Study
#: Management, retired but still the value the standard's examples and most systems use).
STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
#: Contour z within this fraction of the slice spacing of a CT slice references that image.
SLICE_MATCH_TOLERANCE = 0.01


def _without_collinear(poly: FloatArray) -> FloatArray:
    """Drop vertices on the straight line through their neighbours (exactly, no tolerance)."""
    before = poly - np.roll(poly, 1, axis=0)
    after = np.roll(poly, -1, axis=0) - poly
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return poly[turn != 0]


def slice_isolines(mask_yx: NDArray[np.bool_]) -> Iterator[FloatArray]:
    """Closed 0.5-level isolines of a 2-D mask.

    Parameters
    ----------
    mask_yx : (ny, nx) bool array

    Yields
    ------
    (N, 2) float array
        Vertices ``(i, j)`` (column, row: fractional voxel indices) of one closed contour,
        the first vertex not repeated; collinear vertices removed.
    """
    rows = np.flatnonzero(mask_yx.any(axis=1))
    if rows.size == 0:
        return
    cols = np.flatnonzero(mask_yx.any(axis=0))
    r0, c0 = int(rows[0]), int(cols[0])
    crop = mask_yx[r0 : rows[-1] + 1, c0 : cols[-1] + 1]
    padded = np.pad(crop.astype(np.float64), 1)
    for line in find_contours(padded, 0.5):
        if np.array_equal(line[0], line[-1]):
            line = line[:-1]
        ij = np.column_stack((line[:, 1] - 1 + c0, line[:, 0] - 1 + r0))
        ij = _without_collinear(ij)
        if ij.shape[0] >= 3:
            yield ij


def mask_contours(structure: Structure, ct: CtVolume) -> list[Contour]:
    """Closed planar contours (LPS mm) of a structure's mask, slice by slice."""
    mask = structure.mask
    if mask.voxel_count == 0:
        return []
    z0, y0, x0 = mask.offset_zyx
    ox, oy, oz = ct.origin_mm
    sz, sy, sx = ct.spacing_mm
    out: list[Contour] = []
    for k in range(mask.box.shape[0]):
        z_mm = oz + sz * (z0 + k)
        for ij in slice_isolines(mask.box[k]):
            points = np.empty((ij.shape[0], 3), dtype=np.float64)
            points[:, 0] = ox + sx * (ij[:, 0] + x0)
            points[:, 1] = oy + sy * (ij[:, 1] + y0)
            points[:, 2] = z_mm
            out.append(Contour(points_mm=points, geometric_type="CLOSED_PLANAR"))
    return out


def _slice_index(points: FloatArray, ct: CtVolume) -> int | None:
    """The CT slice a planar contour lies on, or None if it lies on none."""
    sz = ct.spacing_mm[0]
    exact = (float(points[0, 2]) - ct.origin_mm[2]) / sz
    k = round(exact)
    if 0 <= k < ct.shape[0] and abs(exact - k) <= SLICE_MATCH_TOLERANCE:
        return k
    return None


def _contour_item(contour: Contour, number: int, ct: CtVolume) -> Dataset:
    item = Dataset()
    planar = contour.geometric_type in (*CLOSED_TYPES, "OPEN_PLANAR", "POINT")
    k = _slice_index(contour.points_mm, ct) if planar and len(contour.points_mm) else None
    if k is not None:
        item.ContourImageSequence = sequence(
            [reference(CT_IMAGE_STORAGE, ct.sop_instance_uids[k])]
        )
    item.ContourGeometricType = contour.geometric_type
    item.NumberOfContourPoints = int(contour.points_mm.shape[0])
    item.ContourNumber = number
    set_ds(item, "ContourData", contour.points_mm.ravel().tolist())
    return item


def _frame_reference(ct: CtVolume) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = ct.series_instance_uid
    series.ContourImageSequence = sequence(
        [reference(CT_IMAGE_STORAGE, uid) for uid in ct.sop_instance_uids]
    )
    study = reference(STUDY_COMPONENT_SOP_CLASS, ct.study.study_instance_uid)
    study.RTReferencedSeriesSequence = sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = ct.frame_of_reference_uid
    frame.RTReferencedStudySequence = sequence([study])
    return frame


def export_rtstruct(
    structure_set: StructureSet,
    ct: CtVolume,
    path: PathLike,
    *,
    label: str,
    from_masks: bool = False,
    uid_seed: str | None = None,
    created: datetime | None = None,
) -> str:
    """Write structures as an RT Structure Set referencing the CT series.

    Parameters
    ----------
    structure_set : StructureSet
        The structures; their masks must be on the grid of ``ct``.
    ct : CtVolume
        The planning CT (study, frame of reference, series and image UIDs).
    path : str or os.PathLike
        Output file, written atomically; its folder must exist.
    label : str
        Structure Set Label (at most 16 characters).
    from_masks : bool
        Extract the contours of every structure from its mask, even where the structure has
        contours (use after editing masks). By default only structures without contours are
        contoured from their masks.
    uid_seed : str, optional
        Derive the new UIDs from this string (deterministic export); random otherwise.
    created : datetime, optional
        Creation date and time written; now by default.

    Returns
    -------
    str
        SOP Instance UID of the RT Structure Set (for the RT Ion Plan's reference).

    Raises
    ------
    InputError
        Empty structure set, masks on another grid, duplicate ROI numbers, another frame of
        reference than the CT's, label too long.
    OSError
        If the file cannot be written.
    """
    if not structure_set.structures:
        raise InputError("the structure set has no structure to export")
    if structure_set.frame_of_reference_uid not in ("", ct.frame_of_reference_uid):
        raise InputError(f"the structures are in frame of reference "
                         f"{structure_set.frame_of_reference_uid}, the CT in "
                         f"{ct.frame_of_reference_uid}")
    numbers = [s.roi_number for s in structure_set.structures]
    if len(set(numbers)) != len(numbers):
        raise InputError(f"duplicate ROI numbers in the structure set: {numbers}")
    text = check_text(label, 16, "structure set label")
    if not text:
        raise InputError("the structure set label must not be empty")
    identity = ExportIdentity.make(uid_seed, created)
    ds = base_dataset(
        sop_class=RT_STRUCTURE_SET_STORAGE,
        modality="RTSTRUCT",
        study=ct.study,
        identity=identity,
        series_description=f"IonPlan structures {text}",
        series_number=903,
    )
    ds.FrameOfReferenceUID = ct.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.StructureSetLabel = text
    ds.StructureSetDate = identity.date
    ds.StructureSetTime = identity.time
    ds.ReferencedFrameOfReferenceSequence = sequence([_frame_reference(ct)])
    rois, contour_items, observations = [], [], []
    colours = structure_set.display_colours()
    for n, (s, colour) in enumerate(zip(structure_set.structures, colours, strict=True),
                                    start=1):
        if s.mask.grid_shape != ct.shape:
            raise InputError(f"structure {s.name!r} has a mask on a {s.mask.grid_shape} grid, "
                             f"the CT is {ct.shape}")
        roi = Dataset()
        roi.ROINumber = s.roi_number
        roi.ReferencedFrameOfReferenceUID = ct.frame_of_reference_uid
        roi.ROIName = clip_text(s.name, 64, "ROI name")
        roi.ROIGenerationAlgorithm = "MANUAL" if s.contours and not from_masks else "SEMIAUTOMATIC"
        rois.append(roi)
        contours = list(s.contours) if s.contours and not from_masks else mask_contours(s, ct)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = s.roi_number
        roi_contour.ROIDisplayColor = [int(c) for c in colour]
        if contours:
            roi_contour.ContourSequence = sequence(
                [_contour_item(c, k, ct) for k, c in enumerate(contours, start=1)]
            )
        contour_items.append(roi_contour)
        observation = Dataset()
        observation.ObservationNumber = n
        observation.ReferencedROINumber = s.roi_number
        observation.RTROIInterpretedType = s.interpreted_type.upper()
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = sequence(rois)
    ds.ROIContourSequence = sequence(contour_items)
    ds.RTROIObservationsSequence = sequence(observations)
    ds.ApprovalStatus = "UNAPPROVED"
    write_dataset(ds, path)
    logger.info("exported %d structures to %s", len(rois), path)
    return str(ds.SOPInstanceUID)
