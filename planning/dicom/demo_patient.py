"""The demo patient: the head phantom of :mod:`planning.dicom.demo_phantom` as DICOM or in memory.

:func:`write_demo_patient` writes it as a CT Image Storage series (88 slices of 256 x 256,
uncompressed, about 11.5 MB) and an RT Structure Set; :func:`load_demo_patient` builds the same
data in memory without touching the disk (the application's default patient). Everything is
deterministic: UIDs derive from fixed strings, dates are fixed, the noise is seeded, so two runs
write byte-identical files (with the same pydicom version, which names itself in the file meta).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom import config, dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from planning.dicom._export_common import write_dataset
from planning.dicom._values import PathLike
from planning.dicom.demo_phantom import (
    DEMO_ROIS,
    ORIGIN_MM,
    SHAPE_ZYX,
    SPACING_MM,
    DemoPhantom,
    axis_positions_mm,
    build_phantom,
    mask_contours_mm,
)
from planning.dicom.scan import CT_IMAGE_STORAGE, RT_STRUCTURE_SET_STORAGE
from planning.errors import InputError
from planning.output_folder import earlier_outputs
from planning.patient import (
    Contour,
    CtVolume,
    Patient,
    PatientStudy,
    RoiMask,
    Structure,
    StructureSet,
)

logger = logging.getLogger(__name__)

_DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"  # referenced study SOP class (retired)
_CONTOUR_DATA = 0x30060050
_HFS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_INTERCEPT = -1024
_DATE = "20240101"
_TIME = "090000"

DEMO_STUDY = PatientStudy(
    patient_name="IonPlan^Demo Head",
    patient_id="IONPLAN-DEMO-001",
    patient_birth_date="19600101",
    patient_sex="O",
    study_instance_uid=str(generate_uid(entropy_srcs=["ionplan-demo", "study"])),
    study_id="DEMO1",
    study_date=_DATE,
    study_time=_TIME,
    accession_number="",
    referring_physician_name="",
    study_description="IonPlan demo head phantom",
)


def _uid(*parts: object) -> str:
    return str(generate_uid(entropy_srcs=["ionplan-demo", *[str(p) for p in parts]]))


CT_SERIES_UID = _uid("ct-series")
FRAME_OF_REFERENCE_UID = _uid("frame-of-reference")
RTSTRUCT_SERIES_UID = _uid("rtstruct-series")
RTSTRUCT_SOP_UID = _uid("rtstruct")
CT_SOP_UIDS: tuple[str, ...] = tuple(_uid("ct", k) for k in range(SHAPE_ZYX[0]))


def _file_dataset(sop_class: str, sop_instance: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.InstanceCreationDate = _DATE
    ds.InstanceCreationTime = _TIME
    study = DEMO_STUDY
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyID = study.study_id
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.StudyDescription = study.study_description
    ds.AccessionNumber = study.accession_number
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.Manufacturer = "IonPlan"
    ds.ManufacturerModelName = "demo head phantom"
    return ds


def _ct_slice(k: int, stored: NDArray[np.uint16], z_mm: float) -> Dataset:
    ds = _file_dataset(CT_IMAGE_STORAGE, CT_SOP_UIDS[k])
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.Modality = "CT"
    ds.SeriesInstanceUID = CT_SERIES_UID
    ds.SeriesNumber = 1
    ds.SeriesDate = _DATE
    ds.SeriesTime = _TIME
    ds.SeriesDescription = "Demo head phantom CT"
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE_UID
    ds.PositionReferenceIndicator = ""
    ds.ContentDate = _DATE
    ds.ContentTime = _TIME
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = k + 1
    ds.KVP = 120
    ds.SliceThickness = SPACING_MM[0]
    ds.ImagePositionPatient = [ORIGIN_MM[0], ORIGIN_MM[1], z_mm]
    ds.ImageOrientationPatient = list(_HFS)
    ds.SliceLocation = z_mm
    ds.PixelSpacing = [SPACING_MM[1], SPACING_MM[2]]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = SHAPE_ZYX[1]
    ds.Columns = SHAPE_ZYX[2]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = _INTERCEPT
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.PixelData = stored.astype("<u2").tobytes()
    return ds


def _image_refs(sop_uids: Sequence[str]) -> DicomSequence:
    items = []
    for sop in sop_uids:
        item = Dataset()
        item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        item.ReferencedSOPInstanceUID = sop
        items.append(item)
    return DicomSequence(items)


def _rtstruct(contours: dict[str, list[NDArray[np.float64]]]) -> Dataset:
    ds = _file_dataset(RT_STRUCTURE_SET_STORAGE, RTSTRUCT_SOP_UID)
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = RTSTRUCT_SERIES_UID
    ds.SeriesNumber = 2
    ds.SeriesDescription = "Demo head phantom structures"
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE_UID
    ds.PositionReferenceIndicator = ""
    ds.StructureSetLabel = "DEMO"
    ds.StructureSetName = "Demo head phantom"
    ds.StructureSetDate = _DATE
    ds.StructureSetTime = _TIME
    series = Dataset()
    series.SeriesInstanceUID = CT_SERIES_UID
    series.ContourImageSequence = _image_refs(CT_SOP_UIDS)
    study = Dataset()
    study.ReferencedSOPClassUID = _DETACHED_STUDY_MANAGEMENT
    study.ReferencedSOPInstanceUID = DEMO_STUDY.study_instance_uid
    study.RTReferencedSeriesSequence = DicomSequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = FRAME_OF_REFERENCE_UID
    frame.RTReferencedStudySequence = DicomSequence([study])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])
    z_mm, _, _ = axis_positions_mm()
    roi_items, contour_items, observation_items = [], [], []
    for number, roi in enumerate(DEMO_ROIS, start=1):
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = FRAME_OF_REFERENCE_UID
        item.ROIName = roi.name
        item.ROIGenerationAlgorithm = "AUTOMATIC"
        roi_items.append(item)
        contour_item = Dataset()
        contour_item.ROIDisplayColor = list(roi.colour_rgb)
        sequence = []
        for points in contours[roi.name]:
            k = int(np.argmin(np.abs(z_mm - points[0, 2])))
            c = Dataset()
            c.ContourImageSequence = _image_refs([CT_SOP_UIDS[k]])
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = int(points.shape[0])
            # the values are formatted here, so pydicom's per-value validation is skipped
            c.add(
                DataElement(
                    _CONTOUR_DATA,
                    "DS",
                    [format(float(v), ".6g") for v in points.ravel()],
                    validation_mode=config.IGNORE,
                )
            )
            sequence.append(c)
        contour_item.ContourSequence = DicomSequence(sequence)
        contour_item.ReferencedROINumber = number
        contour_items.append(contour_item)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = roi.interpreted_type
        observation.ROIInterpreter = ""
        observation_items.append(observation)
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.RTROIObservationsSequence = DicomSequence(observation_items)
    return ds


def _write(ds: Dataset, path: Path) -> Path:
    write_dataset(ds, path)
    return path


def demo_file_names() -> list[str]:
    """The names of the files :func:`write_demo_patient` writes, in its order."""
    return [f"CT_{k:03d}.dcm" for k in range(SHAPE_ZYX[0])] + ["RS_demo.dcm"]


def write_demo_patient(out_dir: PathLike, *, overwrite: bool = False) -> list[Path]:
    """Write the demo head phantom as a CT series and an RT Structure Set.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output folder; created if missing. Files ``CT_000.dcm`` ... ``CT_087.dcm`` and
        ``RS_demo.dcm`` are written atomically, nothing else is touched.
    overwrite : bool
        Write them again where the folder already holds them.

    Returns
    -------
    list of Path
        The files written: the CT slices in slice order (inferior to superior), then the
        structure set.

    Raises
    ------
    InputError
        Before writing anything: the folder holds other DICOM files than the demo's and
        IonPlan's outputs (the demo patient would share a folder with another patient's
        files, or replace them), or already holds the demo's files and ``overwrite`` is not
        set.
    """
    folder = Path(out_dir)
    check_demo_folder(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    phantom = build_phantom()
    z_mm, _, _ = axis_positions_mm()
    stored = (phantom.hu.astype(np.int32) - _INTERCEPT).astype(np.uint16)
    *slice_names, structure_set_name = demo_file_names()
    written = [
        _write(_ct_slice(k, stored[k], float(z_mm[k])), folder / name)
        for k, name in enumerate(slice_names)
    ]
    contours = {roi.name: mask_contours_mm(phantom.masks[roi.name]) for roi in DEMO_ROIS}
    written.append(_write(_rtstruct(contours), folder / structure_set_name))
    logger.info("wrote the demo patient (%d files) to %s", len(written), folder)
    return written


def check_demo_folder(folder: Path, overwrite: bool = False) -> None:
    """The checks of :func:`write_demo_patient`'s ``Raises`` (callers that compute first
    make them before)."""
    if not folder.is_dir():
        if folder.exists():
            raise InputError(f"{folder}: not a folder")
        return
    ours = set(demo_file_names())
    dicom = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".dcm"]
    outputs = {p.name for p in earlier_outputs(folder)}
    foreign = sorted(p.name for p in dicom if p.name not in ours and p.name not in outputs)
    if foreign:
        raise InputError(f"{folder} holds other DICOM files ({', '.join(foreign[:3])}"
                         f"{', ...' if len(foreign) > 3 else ''}): the demo patient would "
                         "share the folder with them; choose an empty folder")
    again = sorted(p.name for p in dicom if p.name in ours)
    others = [name for name in again if _patient_id(folder / name) != DEMO_STUDY.patient_id]
    if others:
        raise InputError(f"{folder / others[0]} is a file of another patient "
                         f"({len(others)} of the demo's file names hold other patients' "
                         "files): choose an empty folder")
    if again and not overwrite:
        raise InputError(f"{folder} already holds the demo patient's files ({again[0]}, ...): "
                         "give --overwrite to write them again")


def _patient_id(path: Path) -> str | None:
    """The Patient ID of a DICOM file (None when it cannot be read as one)."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
    except (OSError, ValueError, InvalidDicomError):  # not readable: not the demo's
        return None
    return str(getattr(ds, "PatientID", ""))


def _ct_volume(phantom: DemoPhantom) -> CtVolume:
    return CtVolume(
        hu=phantom.hu,
        spacing_mm=SPACING_MM,
        origin_mm=ORIGIN_MM,
        patient_position="HFS",
        image_orientation_patient=_HFS,
        frame_of_reference_uid=FRAME_OF_REFERENCE_UID,
        series_instance_uid=CT_SERIES_UID,
        sop_instance_uids=CT_SOP_UIDS,
        study=DEMO_STUDY,
        series_description="Demo head phantom CT",
        series_number=1,
    )


def load_demo_patient() -> Patient:
    """The demo patient built in memory (no disk access; about 0.5 s).

    Returns
    -------
    Patient
        The same CT numbers, geometry, UIDs and structures (masks and contours) as importing
        the files of :func:`write_demo_patient`.
    """
    phantom = build_phantom()
    ct = _ct_volume(phantom)
    structures = []
    for number, roi in enumerate(DEMO_ROIS, start=1):
        mask = phantom.masks[roi.name]
        contours = tuple(
            Contour(points_mm=p, geometric_type="CLOSED_PLANAR") for p in mask_contours_mm(mask)
        )
        structures.append(
            Structure(
                name=roi.name,
                roi_number=number,
                interpreted_type=roi.interpreted_type,
                colour_rgb=roi.colour_rgb,
                mask=RoiMask.from_dense(mask),
                contours=contours,
            )
        )
    structure_set = StructureSet(
        structures=tuple(structures),
        frame_of_reference_uid=FRAME_OF_REFERENCE_UID,
        sop_instance_uid=RTSTRUCT_SOP_UID,
        series_instance_uid=RTSTRUCT_SERIES_UID,
        label="DEMO",
        referenced_ct_series_uid=CT_SERIES_UID,
    )
    return Patient(ct=ct, structure_set=structure_set)
