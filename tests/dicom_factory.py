"""Builders of small synthetic DICOM CT series and RT Structure Sets for the import tests.

Pixel values are computed from the DICOM image-plane equation itself: the pixel in row ``j`` and
column ``i`` of a slice lies at ``IPP + i * dc * row_dir + j * dr * col_dir`` (LPS mm), and its
value is ``hu_at`` of that point. The importer's reorientation is thus checked against the
standard's definition, not against a second copy of its own logic.

Also here: a minimal JPEG lossless (process 14, selection value 1) encoder written from ITU-T T.81
(Annex H), because pydicom has no encoder for that transfer syntax and real scanners use it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    RTStructureSetStorage,
    generate_uid,
)

#: Image Orientation (Patient) of the common patient positions.
ORIENTATIONS: dict[str, tuple[float, ...]] = {
    "HFS": (1, 0, 0, 0, 1, 0),
    "HFP": (-1, 0, 0, 0, -1, 0),
    "FFS": (-1, 0, 0, 0, 1, 0),
    "FFP": (1, 0, 0, 0, -1, 0),
    "HFDL": (0, -1, 0, 1, 0, 0),
    "HFDR": (0, 1, 0, -1, 0, 0),
    "FFDL": (0, 1, 0, 1, 0, 0),
    "FFDR": (0, -1, 0, -1, 0, 0),
}


def uid(*parts: object) -> str:
    """A deterministic UID from the given parts."""
    return str(generate_uid(entropy_srcs=["ionplan-tests", *[str(p) for p in parts]]))


def file_dataset(sop_class: str, sop_instance: str, transfer_syntax: str) -> Dataset:
    """An empty dataset with Part 10 file meta for the given SOP class and instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    return ds


def save(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a Part 10 file, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclass
class SeriesSpec:
    """Geometry and encoding of a synthetic CT series (all lengths mm, positions LPS)."""

    rows: int = 6
    columns: int = 5
    n_slices: int = 4
    pixel_spacing: tuple[float, float] = (2.0, 1.0)  # (between rows, between columns)
    slice_spacing: float = 3.0
    orientation: tuple[float, ...] = ORIENTATIONS["HFS"]
    first_position: tuple[float, float, float] = (-2.0, -5.0, 10.0)
    patient_position: str = "HFS"
    slope: float = 1.0
    intercept: float = -1024.0
    pixel_representation: int = 0
    transfer_syntax: str = ExplicitVRLittleEndian
    tag: str = "s1"
    study_tag: str = "study1"
    frame_tag: str = "for1"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def series_uid(self) -> str:
        return uid("series", self.tag)

    @property
    def frame_uid(self) -> str:
        return uid("frame", self.frame_tag)

    @property
    def study_uid(self) -> str:
        return uid("study", self.study_tag)

    def sop_uid(self, k: int) -> str:
        return uid("sop", self.tag, k)

    def directions(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Row direction, column direction and slice normal (unit vectors, LPS)."""
        o = np.asarray(self.orientation, dtype=np.float64)
        r, c = o[:3], o[3:]
        return r, c, np.cross(r, c)

    def slice_position(self, k: int) -> NDArray[np.float64]:
        """Image Position (Patient) of slice ``k`` (stacked along the normal)."""
        _, _, n = self.directions()
        return np.asarray(self.first_position, dtype=np.float64) + k * self.slice_spacing * n

    def pixel_points(self, k: int) -> NDArray[np.float64]:
        """``(rows, columns, 3)`` LPS centres of the pixels of slice ``k``."""
        r, c, _ = self.directions()
        dr, dc = self.pixel_spacing
        j, i = np.meshgrid(np.arange(self.rows), np.arange(self.columns), indexing="ij")
        return self.slice_position(k) + i[..., None] * dc * r + j[..., None] * dr * c


def ct_slice(spec: SeriesSpec, k: int, hu: NDArray[np.float64]) -> Dataset:
    """The CT image dataset of slice ``k`` with CT numbers ``hu`` (rows, columns)."""
    ds = file_dataset(CTImageStorage, spec.sop_uid(k), spec.transfer_syntax)
    ds.PatientName = "Test^Factory"
    ds.PatientID = "F001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = spec.study_uid
    ds.StudyID = "1"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "A1"
    ds.ReferringPhysicianName = "Ref^Doc"
    ds.Modality = "CT"
    ds.SeriesInstanceUID = spec.series_uid
    ds.SeriesNumber = 3
    ds.SeriesDescription = f"factory {spec.tag}"
    ds.PatientPosition = spec.patient_position
    ds.FrameOfReferenceUID = spec.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "IonPlan tests"
    ds.InstanceNumber = k + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [float(v) for v in spec.slice_position(k)]
    ds.ImageOrientationPatient = [float(v) for v in spec.orientation]
    ds.PixelSpacing = [float(v) for v in spec.pixel_spacing]
    ds.SliceThickness = spec.slice_spacing
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = spec.pixel_representation
    ds.RescaleIntercept = spec.intercept
    ds.RescaleSlope = spec.slope
    ds.KVP = 120
    ds.AcquisitionNumber = 1
    for keyword, value in spec.extra.items():
        setattr(ds, keyword, value)
    stored = np.rint((hu - spec.intercept) / spec.slope)
    dtype = np.int16 if spec.pixel_representation else np.uint16
    info = np.iinfo(dtype)
    pixels = np.clip(stored, info.min, info.max).astype(dtype)
    encode_pixels(ds, pixels, spec.transfer_syntax)
    return ds


def encode_pixels(ds: Dataset, pixels: NDArray[np.integer], transfer_syntax: str) -> None:
    """Store ``pixels`` (rows, columns) in ``ds`` in the given transfer syntax."""
    ts = UID(transfer_syntax)
    if not ts.is_compressed:
        if ts.is_implicit_VR or not ts.is_little_endian:
            ds.file_meta.TransferSyntaxUID = ts
        ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
        return
    if ts == JPEGLosslessSV1:
        ds.file_meta.TransferSyntaxUID = ts
        ds.PixelData = encapsulate([encode_jpeg_lossless_sv1(pixels.view(np.uint16))])
        ds["PixelData"].VR = "OB"
        return
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.compress(ts, pixels, generate_instance_uid=False)


def write_ct_series(
    folder: Path,
    spec: SeriesSpec,
    hu_at: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    *,
    names: str = "random",
    edit: Callable[[int, Dataset], None] | None = None,
    skip: Sequence[int] = (),
) -> list[Path]:
    """Write a CT series whose pixel values are ``hu_at(points)`` at the pixel centres.

    Parameters
    ----------
    folder : Path
        Output folder (created).
    spec : SeriesSpec
        Geometry and encoding.
    hu_at : callable
        Maps ``(rows, columns, 3)`` LPS points to ``(rows, columns)`` CT numbers.
    names : {"random", "ordered"}
        "random": shuffled, extension-less names spread over nested subfolders.
    edit : callable, optional
        ``edit(k, ds)`` may change slice ``k`` before it is written.
    skip : sequence of int
        Slices not written.

    Returns
    -------
    list of Path
        The written files, in slice order ``k``.
    """
    rng = random.Random(spec.tag)
    paths: list[Path] = []
    for k in range(spec.n_slices):
        if k in skip:
            continue
        ds = ct_slice(spec, k, np.asarray(hu_at(spec.pixel_points(k)), dtype=np.float64))
        if edit is not None:
            edit(k, ds)
        if names == "random":
            sub = ["", "a", "a/b", "c"][rng.randrange(4)]
            name = f"{rng.getrandbits(48):012x}"
            path = folder / sub / name
        else:
            path = folder / f"{spec.tag}_{k:04d}.dcm"
        paths.append(save(ds, path))
    return paths


@dataclass
class RoiSpec:
    """One ROI of a synthetic structure set: contours as (N, 3) LPS arrays."""

    name: str
    number: int
    contours: list[NDArray[np.float64]]
    interpreted_type: str = "ORGAN"
    colour: tuple[int, int, int] | None = (255, 0, 0)
    geometric_type: str = "CLOSED_PLANAR"
    frame_uid: str | None = None


def rtstruct(spec: SeriesSpec, rois: Sequence[RoiSpec], *, tag: str = "rs1") -> Dataset:
    """An RT Structure Set on the series of ``spec``."""
    ds = file_dataset(RTStructureSetStorage, uid("rtstruct", tag), ExplicitVRLittleEndian)
    ds.PatientName = "Test^Factory"
    ds.PatientID = "F001"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = spec.study_uid
    ds.StudyID = "1"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = uid("rtseries", tag)
    ds.SeriesNumber = 9
    ds.Manufacturer = "IonPlan tests"
    ds.StructureSetLabel = f"label {tag}"
    ds.StructureSetDate = "20240102"
    ds.StructureSetTime = "120000"
    series_item = Dataset()
    series_item.SeriesInstanceUID = spec.series_uid
    series_item.ContourImageSequence = DicomSequence()
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_item.ReferencedSOPInstanceUID = spec.study_uid
    study_item.RTReferencedSeriesSequence = DicomSequence([series_item])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = spec.frame_uid
    frame_item.RTReferencedStudySequence = DicomSequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_item])
    roi_items, contour_items, observations = [], [], []
    for n, roi in enumerate(rois):
        item = Dataset()
        item.ROINumber = roi.number
        item.ReferencedFrameOfReferenceUID = roi.frame_uid or spec.frame_uid
        item.ROIName = roi.name
        item.ROIGenerationAlgorithm = "MANUAL"
        roi_items.append(item)
        contour_item = Dataset()
        contour_item.ReferencedROINumber = roi.number
        if roi.colour is not None:
            contour_item.ROIDisplayColor = list(roi.colour)
        contours = []
        for points in roi.contours:
            c = Dataset()
            c.ContourGeometricType = roi.geometric_type
            c.NumberOfContourPoints = len(points)
            c.ContourData = [f"{v:.4f}" for v in np.asarray(points).ravel()]
            contours.append(c)
        contour_item.ContourSequence = DicomSequence(contours)
        contour_items.append(contour_item)
        obs = Dataset()
        obs.ObservationNumber = n + 1
        obs.ReferencedROINumber = roi.number
        obs.RTROIInterpretedType = roi.interpreted_type
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    return ds


def rectangle(x0: float, x1: float, y0: float, y1: float, z: float) -> NDArray[np.float64]:
    """A closed axial rectangle contour, (4, 3) LPS mm."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=np.float64)


def _category(diff: NDArray[np.int64]) -> NDArray[np.int64]:
    magnitude = np.abs(diff)
    ssss = np.zeros(diff.shape, dtype=np.int64)
    nonzero = magnitude > 0
    ssss[nonzero] = np.floor(np.log2(magnitude[nonzero])).astype(np.int64) + 1
    return ssss


def encode_jpeg_lossless_sv1(image: NDArray[np.uint16]) -> bytes:
    """Encode a 16-bit grayscale image as a JPEG lossless (process 14, SV1) codestream.

    Predictor 1 (left neighbour; first column predicted from above, first sample from
    2**15), one fixed Huffman table with all 17 difference categories coded on 5 bits,
    point transform 0. Written from ITU-T T.81 Annex H.

    Parameters
    ----------
    image : (rows, columns) uint16 array

    Returns
    -------
    bytes
        The codestream, from SOI to EOI.
    """
    img = np.asarray(image, dtype=np.int64)
    rows, cols = img.shape
    pred = np.empty_like(img)
    pred[:, 1:] = img[:, :-1]
    pred[1:, 0] = img[:-1, 0]
    pred[0, 0] = 1 << 15
    diff = (img - pred) % 65536
    diff = np.where(diff >= 32768, diff - 65536, diff).ravel()
    diff[diff == -32768] = 32768
    ssss = _category(diff)
    extra_len = np.where(ssss == 16, 0, ssss)
    extra = np.where(diff >= 0, diff, diff + (1 << ssss) - 1) & ((1 << extra_len) - 1)
    value = (ssss << extra_len) | extra  # 5-bit category code (== ssss) then the extra bits
    length = 5 + extra_len
    max_len = int(length.max())
    shifts = length[:, None] - 1 - np.arange(max_len)[None, :]
    bits = (value[:, None] >> np.maximum(shifts, 0)) & 1
    bits = bits[shifts >= 0]
    pad = (-bits.size) % 8
    bits = np.concatenate([bits, np.ones(pad, dtype=bits.dtype)]).astype(np.uint8)
    data = np.packbits(bits)
    ff = np.flatnonzero(data == 0xFF)
    data = np.insert(data, ff + 1, 0)  # byte stuffing
    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)
    out = bytearray(b"\xff\xd8")
    out += b"\xff\xc3" + (11).to_bytes(2, "big") + bytes([16])
    out += rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    out += b"\xff\xc4" + (2 + 1 + 16 + 17).to_bytes(2, "big") + bytes([0]) + counts
    out += bytes(range(17))
    out += b"\xff\xda" + (8).to_bytes(2, "big") + bytes([1, 1, 0x00, 1, 0, 0])
    out += data.tobytes()
    out += b"\xff\xd9"
    return bytes(out)
