"""Fuzzing the importers with damaged copies of the demo patient's files.

Each case copies six CT slices of the demo patient (around the target) and its RT Structure Set
(trimmed to the contours on those slices, so a case loads quickly), damages one file, and imports
the folder. The only acceptable outcomes are a successful import or a DicomImportError; any other
exception fails the test with the case's description. ``folder_info`` must never raise at all.
"""

from __future__ import annotations

import random
import shutil
import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.tag import Tag

from planning.dicom import DicomImportError, folder_info, load_patient, write_demo_patient

SLICES = range(40, 46)
CASES_PER_KIND = 40


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    demo = tmp_path_factory.mktemp("demo")
    write_demo_patient(demo)
    folder = tmp_path_factory.mktemp("fuzz_base")
    z_kept = set()
    for k in SLICES:
        shutil.copy(demo / f"CT_{k:03d}.dcm", folder / f"CT_{k:03d}.dcm")
        z_kept.add(round(float(pydicom.dcmread(demo / f"CT_{k:03d}.dcm").SliceLocation), 3))
    rs = pydicom.dcmread(demo / "RS_demo.dcm")
    for item in rs.ROIContourSequence:
        item.ContourSequence = [
            c for c in item.ContourSequence if round(float(c.ContourData[2]), 3) in z_kept
        ]
    rs.save_as(folder / "RS_demo.dcm")
    patient = load_patient(folder)  # the undamaged base loads
    assert patient.ct.shape[0] == len(SLICES)
    assert patient.structure_set is not None
    assert patient.structure_set.get("GTV").mask.voxel_count > 0
    return folder


def _elements(ds: Dataset) -> Iterator[tuple[Dataset, int]]:
    for elem in list(ds):
        yield ds, int(elem.tag)
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _elements(item)


def _truncate(data: bytes, rng: random.Random, _: Path) -> tuple[bytes, str]:
    at = rng.randrange(len(data))
    return data[:at], f"truncated at {at}"


def _flip(data: bytes, rng: random.Random, _: Path) -> tuple[bytes, str]:
    out = bytearray(data)
    n = rng.randint(1, 8)
    limit = len(data) if rng.random() < 0.3 else min(len(data), 3000)
    spots = [rng.randrange(limit) for _ in range(n)]
    for at in spots:
        out[at] ^= rng.randint(1, 255)
    return bytes(out), f"bytes flipped at {spots}"


def _zero_span(data: bytes, rng: random.Random, _: Path) -> tuple[bytes, str]:
    at = rng.randrange(len(data))
    n = rng.randint(16, 256)
    return data[:at] + bytes(min(n, len(data) - at)) + data[at + n :], f"{n} zeros at {at}"


def _delete_tag(data: bytes, rng: random.Random, path: Path) -> tuple[bytes, str]:
    ds = pydicom.dcmread(path)
    parent, tag = rng.choice(list(_elements(ds)))
    del parent[tag]
    ds.save_as(path)
    return path.read_bytes(), f"deleted {Tag(tag)}"


_BAD_VALUES: list[tuple[str, str, bytes]] = [
    ("PixelSpacing", "DS", b"abc\\def "),
    ("PixelSpacing", "DS", b"1 "),
    ("PixelSpacing", "DS", b"nan\\1 "),
    ("PixelSpacing", "DS", b"-1\\-1 "),
    ("ImagePositionPatient", "DS", b"x\\y\\z "),
    ("ImagePositionPatient", "DS", b"1\\2 "),
    ("ImagePositionPatient", "DS", b"1e400\\0\\0 "),
    ("ImageOrientationPatient", "DS", b"1\\0\\0\\0\\0\\0 "),
    ("ImageOrientationPatient", "DS", b"0.7\\0.7\\0\\0\\0\\1 "),
    ("Rows", "US", struct.pack("<H", 0)),
    ("Rows", "US", struct.pack("<H", 65535)),
    ("Columns", "US", struct.pack("<H", 0)),
    ("BitsAllocated", "US", struct.pack("<H", 7)),
    ("BitsStored", "US", struct.pack("<H", 20)),
    ("PixelRepresentation", "US", struct.pack("<H", 7)),
    ("SamplesPerPixel", "US", struct.pack("<H", 3)),
    ("RescaleSlope", "DS", b"abc "),
    ("RescaleSlope", "DS", b"0 "),
    ("RescaleSlope", "DS", b"1e308 "),
    ("RescaleIntercept", "DS", b"-inf"),
    ("NumberOfFrames", "IS", b"2 "),
    ("SOPClassUID", "UI", b"1.2.3\0"),
    ("Modality", "CS", b"MR"),
    ("SeriesInstanceUID", "UI", b""),
    ("FrameOfReferenceUID", "UI", b"9.9\0"),
    ("PhotometricInterpretation", "CS", b"RGB "),
    ("ROINumber", "IS", b"abc "),
    ("ROINumber", "IS", b"1 "),
    ("ReferencedROINumber", "IS", b"999 "),
    ("ContourData", "DS", b"1\\2 "),
    ("ContourData", "DS", b"a\\b\\c "),
    ("ROIDisplayColor", "IS", b"red "),
    ("ContourGeometricType", "CS", b"SPIRAL"),
    ("ReferencedFrameOfReferenceUID", "UI", b"1.2\0"),
    ("NumberOfContourPoints", "IS", b"-5"),
    ("StructureSetROISequence", "SQ", b""),
    ("ROIContourSequence", "SQ", b""),
]


def _wrong_value(data: bytes, rng: random.Random, path: Path) -> tuple[bytes, str]:
    ds = pydicom.dcmread(path)
    keyword, vr, value = rng.choice(_BAD_VALUES)
    tag = Tag(keyword)
    found = [parent for parent, t in _elements(ds) if t == tag]
    if not found:
        return data, f"{keyword} not in file (unchanged)"
    parent = rng.choice(found)
    if len(value) % 2:
        value += b" "
    parent[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    ds.save_as(path)
    return path.read_bytes(), f"{keyword} = {value!r}"


def _wrong_syntax(data: bytes, rng: random.Random, path: Path) -> tuple[bytes, str]:
    """Declare another transfer syntax in the file meta; the dataset bytes stay as they were."""
    syntax = rng.choice(
        [
            "1.2.840.10008.1.2",
            "1.2.840.10008.1.2.2",
            "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.1.99",
            "1.2.3.4",
        ]
    )
    meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
    group_length = struct.unpack("<I", data[140:144])[0]
    dataset_bytes = data[144 + group_length :]
    meta.TransferSyntaxUID = syntax
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return data[:132] + buffer.getvalue() + dataset_bytes, f"TransferSyntaxUID -> {syntax}"


MUTATIONS: dict[str, Callable[[bytes, random.Random, Path], tuple[bytes, str]]] = {
    "truncate": _truncate,
    "flip": _flip,
    "zero_span": _zero_span,
    "delete_tag": _delete_tag,
    "wrong_value": _wrong_value,
    "wrong_syntax": _wrong_syntax,
}


@pytest.mark.parametrize("kind", list(MUTATIONS))
def test_damaged_files_raise_only_the_domain_error(base: Path, tmp_path: Path, kind: str) -> None:
    outcomes = {"loaded": 0, "error": 0}
    names = sorted(p.name for p in base.iterdir())
    for case in range(CASES_PER_KIND):
        rng = random.Random(f"{kind}-{case}")
        folder = tmp_path / f"case{case}"
        shutil.copytree(base, folder)
        # the structure set is the target one time in three
        name = "RS_demo.dcm" if rng.random() < 1 / 3 else rng.choice(names[:-1])
        path = folder / name
        data, what = MUTATIONS[kind](path.read_bytes(), rng, path)
        path.write_bytes(data)
        label = f"case {kind}-{case}: {name} {what}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                patient = load_patient(folder)
            except DicomImportError as exc:
                outcomes["error"] += 1
                assert exc.reason and exc.path, label
            except Exception as exc:
                pytest.fail(f"{label}: {type(exc).__name__}: {exc}")
            else:
                outcomes["loaded"] += 1
                assert patient.ct.hu.ndim == 3, label
            if case % 4 == 0:
                try:
                    folder_info(folder)
                except Exception as exc:
                    pytest.fail(f"{label}: folder_info raised {type(exc).__name__}: {exc}")
        shutil.rmtree(folder)
    assert outcomes["error"] > 0, outcomes


@pytest.mark.parametrize("content", [b"RT plan notes\n", bytes(range(256)) * 12],
                         ids=["text", "binary"])
def test_a_file_that_is_no_dicom_file_is_called_so(tmp_path: Path, content: bytes) -> None:
    """Importing another file as an RT plan (GUI review) gave pydicom's "... Use force=True to
    force reading.", which speaks to a developer; every importer of single files says what the
    file is not."""
    from planning.dicom import load_rt_dose, load_rt_ion_plan
    from planning.dicom.rtstruct_import import read_rtstruct_file

    path = tmp_path / "notes.dcm"
    path.write_bytes(content)
    for load, what in ((load_rt_ion_plan, "RT Ion Plan"), (load_rt_dose, "RT Dose"),
                       (read_rtstruct_file, "RT Structure Set")):
        with pytest.raises(DicomImportError) as info:
            load(path)
        assert str(info.value) == (f"{path}: cannot read the {what}: not a DICOM file (no "
                                   "DICOM preamble and 'DICM' header)")


@pytest.mark.parametrize(("kind", "reason"), [("missing", "no such file"),
                                              ("folder", "a folder, not a file")])
def test_a_missing_file_is_named_once(tmp_path: Path, kind: str, reason: str) -> None:
    """A missing file read as an RT object said "/x/p.dcm: cannot read the RT Ion Plan:
    [Errno 2] No such file or directory: '/x/p.dcm'" (the OS's text repeats the path)."""
    from planning.dicom import load_rt_dose, load_rt_ion_plan
    from planning.dicom.rtstruct_import import read_rtstruct_file

    path = tmp_path / "p.dcm"
    if kind == "folder":
        path.mkdir()
    for load, what in ((load_rt_ion_plan, "RT Ion Plan"), (load_rt_dose, "RT Dose"),
                       (read_rtstruct_file, "RT Structure Set")):
        with pytest.raises(DicomImportError) as info:
            load(path)
        assert str(info.value) == f"{path}: cannot read the {what}: {reason}"

