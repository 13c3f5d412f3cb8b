"""RT Dose export and import: dciodvfy (16-bit copy), round trip, positions, bad input, fuzz.

Geometry checks use the DICOM image-plane equation directly: the dose at pixel (row j, column i)
of frame f lies at ``IPP + i dc r + j dr c + o_f n``; the tests write doses that are a known
function of that position and check the importer's values at its own voxel centres.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from planning.dicom import (
    DicomImportError,
    export_rt_dose,
    load_ct_series,
    load_rt_dose,
)
from planning.dicom._rbe_block import PRIVATE_CREATOR, PRIVATE_GROUP, RECORD_OFFSET
from planning.dicom.rtdose_export import dose_grid_scaling
from planning.dose_grid import DoseGrid
from planning.errors import InputError
from planning.patient import Patient
from planning.rbe import (
    ConstantRbe,
    LemModel,
    MkmModel,
    PhysicalDose,
    RbeModel,
    parse_tissue,
    tissue_by_name,
)
from planning.rbe.record import model_record
from tests.dicom_factory import ORIENTATIONS, SeriesSpec, file_dataset, save, uid, write_ct_series
from tests.test_rtplan_dicom import FUZZ_CASES, dciodvfy_report, run_fuzz

PLAN_UID = "1.2.826.0.1.3680043.8.498.1"
COMMENT = "LEM I ax/bx=2Gy Dt=30Gy"


def dose_at(points_lps: NDArray[np.float64]) -> NDArray[np.float64]:
    """A smooth, asymmetric, positive dose (Gy) of LPS position, for geometry checks."""
    x, y, z = points_lps[..., 0], points_lps[..., 1], points_lps[..., 2]
    return 40.0 + 0.3 * x - 0.2 * y + 0.1 * z + 5.0 * np.exp(-(x**2 + y**2) / 400.0)


def dose_on(grid: DoseGrid) -> NDArray[np.float32]:
    centres = grid.voxel_centers_lps().reshape(*grid.shape, 3)
    return dose_at(centres).astype(np.float32)


@pytest.fixture(scope="module")
def grid() -> DoseGrid:
    return DoseGrid(shape=(12, 20, 24), spacing_mm=(2.5, 3.0, 2.0), origin_mm=(-20.0, -30.0, -5.0))


@pytest.fixture(scope="module")
def dose_files(
    tmp_path_factory: pytest.TempPathFactory, patient: Patient, grid: DoseGrid
) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("rtdose")
    files = {}
    for bits in (16, 32):
        files[bits] = folder / f"RD_{bits}.dcm"
        export_rt_dose(dose_on(grid), grid, patient, files[bits], dose_type="EFFECTIVE",
                       comment=COMMENT, referenced_plan_uid=PLAN_UID, bits=bits)
    return files


def test_dciodvfy_on_16_bit_copy(dose_files: dict[int, Path]) -> None:
    # dciodvfy aborts on 32-bit RT Dose pixel data (a bug of the tool): validate the 16-bit file
    errors, notes = dciodvfy_report(dose_files[16])
    assert errors == []
    assert notes == []


@pytest.mark.parametrize("bits", [16, 32])
def test_round_trip(dose_files: dict[int, Path], grid: DoseGrid, bits: int) -> None:
    original = dose_on(grid)
    volume = load_rt_dose(dose_files[bits])
    assert volume.grid == grid
    scaling = dose_grid_scaling(float(original.max()), bits)
    # half a scaling step, plus float32 rounding of the stored cube
    tolerance = 0.5 * scaling + 1e-6 * float(original.max())
    np.testing.assert_allclose(volume.dose_gy, original, rtol=0, atol=tolerance)
    assert volume.dose_gy.dtype == np.float32
    assert (volume.dose_type, volume.units, volume.summation_type) == ("EFFECTIVE", "GY", "PLAN")
    assert volume.comment == COMMENT
    assert volume.referenced_plan_uid == PLAN_UID


def test_exported_attributes(dose_files: dict[int, Path], patient: Patient,
                             grid: DoseGrid) -> None:
    ds = pydicom.dcmread(dose_files[32])
    ct = patient.ct
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.2" and ds.Modality == "RTDOSE"
    assert ds.StudyInstanceUID == ct.study.study_instance_uid
    assert ds.FrameOfReferenceUID == ct.frame_of_reference_uid
    assert ds.SeriesInstanceUID != ct.series_instance_uid
    assert ds.BitsAllocated == 32 and ds.PixelRepresentation == 0
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in ds.ImagePositionPatient] == list(grid.origin_mm)
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert offsets == pytest.approx([2.5 * k for k in range(grid.shape[0])])
    assert ds.NumberOfFrames == grid.shape[0]
    assert ds.FrameIncrementPointer == 0x3004000C
    assert ds.DoseSummationType == "PLAN" and ds.DoseUnits == "GY"
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.481.8"
    stored = ds.pixel_array
    assert int(stored.max()) <= 2**32 - 1 and int(stored.max()) > 2**31


def test_physical_dose_and_zero_cube(tmp_path: Path, patient: Patient, grid: DoseGrid) -> None:
    path = tmp_path / "zero.dcm"
    export_rt_dose(np.zeros(grid.shape, np.float32), grid, patient, path, dose_type="physical",
                   comment="", referenced_plan_uid=PLAN_UID, bits=16)
    volume = load_rt_dose(path)
    assert volume.dose_type == "PHYSICAL" and volume.comment == ""
    assert not volume.dose_gy.any()


def test_single_plane(tmp_path: Path, patient: Patient) -> None:
    grid = DoseGrid((1, 4, 5), (2.5, 2.0, 3.0), (1.0, 2.0, 3.0))
    path = tmp_path / "plane.dcm"
    export_rt_dose(dose_on(grid), grid, patient, path, dose_type="PHYSICAL", comment="",
                   referenced_plan_uid=PLAN_UID, bits=16)
    errors, notes = dciodvfy_report(path)
    assert errors == [] and notes == []
    volume = load_rt_dose(path)
    assert volume.grid == grid
    np.testing.assert_allclose(volume.dose_gy, dose_on(grid), atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dose_type": "BIOLOGICAL"}, "dose_type"),
        ({"bits": 8}, "bits"),
        ({"comment": "x" * 65}, "64 characters"),
        ({"referenced_plan_uid": ""}, "plan"),
    ],
)
def test_export_refuses_bad_arguments(
    tmp_path: Path, patient: Patient, grid: DoseGrid, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"dose_type": "PHYSICAL", "comment": "", "referenced_plan_uid": "1"}
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        export_rt_dose(dose_on(grid), grid, patient, tmp_path / "d.dcm", **args)  # type: ignore[arg-type]
    assert not (tmp_path / "d.dcm").exists()


def test_export_refuses_bad_cubes(tmp_path: Path, patient: Patient, grid: DoseGrid) -> None:
    bad = dose_on(grid)
    bad[0, 0, 0] = -1.0
    for cube, message in ((bad, ">= 0"), (np.zeros((2, 2, 2)), "does not match")):
        with pytest.raises(InputError, match=message):
            export_rt_dose(cube, grid, patient, tmp_path / "d.dcm", dose_type="PHYSICAL",
                           comment="", referenced_plan_uid="1")


# --------------------------------------------------------------------------- other positions


@pytest.mark.parametrize("position", ["FFS", "HFP"])
def test_dose_on_other_patient_position(tmp_path: Path, position: str) -> None:
    spec = SeriesSpec(rows=7, columns=6, n_slices=5, orientation=ORIENTATIONS[position],
                      patient_position=position, first_position=(12.0, -8.0, 30.0),
                      tag=f"pos-{position}")
    write_ct_series(tmp_path / "ct", spec, lambda p: np.zeros(p.shape[:-1]))
    ct = load_ct_series(tmp_path / "ct")
    grid = DoseGrid(ct.shape, ct.spacing_mm, ct.origin_mm)
    path = tmp_path / "dose.dcm"
    export_rt_dose(dose_on(grid), grid, Patient(ct=ct), path, dose_type="PHYSICAL", comment="",
                   referenced_plan_uid=PLAN_UID)
    ds = pydicom.dcmread(path)
    assert ds.FrameOfReferenceUID == spec.frame_uid
    # the exported file, read with the image-plane equation, gives the dose at the CT's pixels
    stored = ds.pixel_array * float(ds.DoseGridScaling)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    dr, dc = (float(v) for v in ds.PixelSpacing)
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    for k in range(spec.n_slices):
        points = spec.pixel_points(k)  # the CT's own pixel centres, LPS
        f = offsets.index(pytest.approx(points[0, 0, 2] - ipp[2]))
        i = np.rint((points[..., 0] - ipp[0]) / dc).astype(int)
        j = np.rint((points[..., 1] - ipp[1]) / dr).astype(int)
        np.testing.assert_allclose(stored[f][j, i], dose_at(points), atol=1e-6)
    volume = load_rt_dose(path)
    assert volume.grid == grid
    np.testing.assert_allclose(volume.dose_gy, dose_on(grid), atol=1e-6)


def vendor_dose(orientation: tuple[float, ...], *, absolute: bool, descending: bool,
                bits: int = 16) -> Dataset:
    """An RT Dose written as another system might: any axial orientation, offsets either way."""
    r = np.array(orientation[:3], dtype=np.float64)
    c = np.array(orientation[3:], dtype=np.float64)
    n = np.cross(r, c)
    rows, cols, frames, dr, dc, dz = 5, 4, 6, 2.0, 1.5, 3.0
    ipp = np.array([10.0, -20.0, 40.0])
    offsets = np.arange(frames) * dz * (-1.0 if descending else 1.0)
    j, i = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    cube = np.empty((frames, rows, cols))
    for f in range(frames):
        points = ipp + i[..., None] * dc * r + j[..., None] * dr * c + offsets[f] * n
        cube[f] = dose_at(points)
    scaling = 1e-3  # 16-bit pixels up to 65.5 Gy
    ds = file_dataset("1.2.840.10008.5.1.4.1.1.481.2", uid("dose", orientation, absolute),
                      pydicom.uid.ExplicitVRLittleEndian)
    ds.Modality = "RTDOSE"
    ds.FrameOfReferenceUID = uid("frame", "vendor")
    ds.ImageOrientationPatient = list(orientation)
    ds.ImagePositionPatient = ipp.tolist()
    ds.PixelSpacing = [dr, dc]
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "PLAN"
    ds.DoseGridScaling = scaling
    ds.GridFrameOffsetVector = (offsets + (ipp[2] if absolute else 0.0)).tolist()
    dtype = np.uint16 if bits == 16 else np.uint32
    ds.PixelData = np.rint(cube / scaling).astype(dtype).tobytes()
    return ds


READ_CASES = [(position, False, descending) for position in sorted(ORIENTATIONS)
              for descending in (False, True)] + [("HFS", True, False), ("HFS", True, True)]


@pytest.mark.parametrize(("position", "absolute", "descending"), READ_CASES)
def test_import_reorients(tmp_path: Path, position: str, absolute: bool,
                          descending: bool) -> None:
    # absolute offsets (first value = IPP z) are defined for the 1\\0\\0\\0\\1\\0 orientation only
    orientation = ORIENTATIONS[position]
    path = save(vendor_dose(orientation, absolute=absolute, descending=descending),
                tmp_path / "vendor.dcm")
    volume = load_rt_dose(path)
    centres = volume.grid.voxel_centers_lps().reshape(*volume.grid.shape, 3)
    np.testing.assert_allclose(volume.dose_gy, dose_at(centres), atol=5.1e-4)
    rows_along_x = abs(orientation[0]) == 1  # image rows run along x: no transpose
    assert volume.grid.shape == ((6, 5, 4) if rows_along_x else (6, 4, 5))
    assert volume.grid.spacing_mm == ((3.0, 2.0, 1.5) if rows_along_x else (3.0, 1.5, 2.0))


def _edit(ds: Dataset, **values: object) -> Dataset:
    for keyword, value in values.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ds: _edit(ds, ImageOrientationPatient=[0.9998, 0.02, 0, -0.02, 0.9998, 0]),
         "oblique"),
        (lambda ds: _edit(ds, ImageOrientationPatient=[1, 0, 0, 0, 0, -1]), "not axial"),
        (lambda ds: _edit(ds, GridFrameOffsetVector=[0, 3, 6, 9, 13, 15]), "evenly spaced"),
        (lambda ds: _edit(ds, GridFrameOffsetVector=[5, 8, 11, 14, 17, 20]), "neither relative"),
        (lambda ds: _edit(ds, GridFrameOffsetVector=[0, 3, 6]), "3 values for 6 frames"),
        (lambda ds: _edit(ds, DoseGridScaling=None), "Dose Grid Scaling"),
        (lambda ds: _edit(ds, DoseGridScaling=0), "Dose Grid Scaling"),
        (lambda ds: _edit(ds, PixelData=ds.PixelData[:100]), "fewer than"),
        (lambda ds: _edit(ds, PixelData=None), "no Pixel Data"),
        (lambda ds: _edit(ds, DoseType="BIOLOGICAL"), "Dose Type 'BIOLOGICAL'"),
        (lambda ds: _edit(ds, DoseUnits=None), "DoseUnits is missing"),
        (lambda ds: _edit(ds, FrameOfReferenceUID=None), "FrameOfReferenceUID is missing"),
        (lambda ds: _edit(ds, BitsAllocated=8, BitsStored=8, HighBit=7), "16 or 32"),
        (lambda ds: _edit(ds, SOPClassUID="1.2.840.10008.5.1.4.1.1.2"), "not an RT Dose"),
    ],
)
def test_import_refuses(tmp_path: Path, edit: Callable[[Dataset], Dataset], message: str) -> None:
    ds = edit(vendor_dose(ORIENTATIONS["HFS"], absolute=False, descending=False))
    path = save(ds, tmp_path / "bad.dcm")
    with pytest.raises(DicomImportError, match=message) as info:
        load_rt_dose(path)
    assert str(path) in str(info.value)


def test_fuzz_rt_dose(tmp_path: Path, patient: Patient) -> None:
    grid = DoseGrid((4, 6, 5), (3.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    source = tmp_path / "small.dcm"
    export_rt_dose(dose_on(grid), grid, patient, source, dose_type="EFFECTIVE", comment=COMMENT,
                   referenced_plan_uid=PLAN_UID)
    rejected = run_fuzz(source, tmp_path, load_rt_dose, "rtdose")
    assert 0 < rejected < FUZZ_CASES


# --------------------------------------------------------------------------- RBE model labels


@pytest.mark.parametrize("model", [
    MkmModel(), LemModel(parse_tissue("0.1,0.05,30")), ConstantRbe(2.5)], ids=str)
def test_dose_is_labelled_with_its_model(tmp_path: Path, patient: Patient, grid: DoseGrid,
                                         model: RbeModel) -> None:
    path = tmp_path / "RD.dcm"
    export_rt_dose(dose_on(grid), grid, patient, path, dose_type="EFFECTIVE", model=model,
                   referenced_plan_uid=PLAN_UID, bits=16)
    ds = pydicom.dcmread(path)
    full = model.describe()
    for text, prefix in ((ds.DoseComment, ""), (ds.SeriesDescription, "IonPlan dose effective ")):
        assert len(text) <= 64
        if not text.endswith("..."):
            assert text == prefix + full
        else:  # whole items of the full line, none cut mid-value
            kept = text[len(prefix):-len(" ...")].split(" ")
            assert kept == full.split(" ")[:len(kept)]
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    assert json.loads(block[RECORD_OFFSET].value) == model_record(model)
    volume = load_rt_dose(path)
    assert volume.rbe == model and volume.comment == ds.DoseComment
    errors, _ = dciodvfy_report(path)
    assert errors == []


def test_mkm_label_is_shortened_by_whole_items(tmp_path: Path, patient: Patient,
                                               grid: DoseGrid) -> None:
    path = tmp_path / "RD.dcm"
    export_rt_dose(dose_on(grid), grid, patient, path, dose_type="EFFECTIVE", model=MkmModel(),
                   referenced_plan_uid=PLAN_UID)
    ds = pydicom.dcmread(path)
    assert ds.DoseComment == "mMKM HSG a0=0.172 b=0.0615 rd=0.32um Rn=3.9um Fclin=2.41 ..."
    assert ds.SeriesDescription == "IonPlan dose effective mMKM HSG a0=0.172 b=0.0615 rd=0.32um ..."


@pytest.mark.parametrize("scheme", ["averaged", "central"])
def test_lem_dose_comment_holds_the_whole_description_with_its_rapid_scheme(
        tmp_path: Path, patient: Patient, grid: DoseGrid, scheme: str) -> None:
    """Doses of the two rapid schemes never read alike in a 64-character label: the chordoma
    description fits whole, and the scheme comes right after the tissue (a longer user
    tissue loses its last items first)."""
    path = tmp_path / "RD.dcm"
    model = LemModel(tissue_by_name("chordoma", scheme))
    export_rt_dose(dose_on(grid), grid, patient, path, dose_type="EFFECTIVE", model=model,
                   referenced_plan_uid=PLAN_UID)
    ds = pydicom.dcmread(path)
    assert ds.DoseComment == f"LEM I chordoma rapid={scheme} ax=0.1 bx=0.05 Dt=30Gy Rn=5um"
    assert f"rapid={scheme}" in ds.SeriesDescription


def test_model_label_refusals(tmp_path: Path, patient: Patient, grid: DoseGrid) -> None:
    def export(**kwargs: object) -> None:
        export_rt_dose(dose_on(grid), grid, patient, tmp_path / "d.dcm",  # type: ignore[arg-type]
                       referenced_plan_uid=PLAN_UID, **kwargs)

    with pytest.raises(InputError, match="not both"):
        export(dose_type="EFFECTIVE", model=MkmModel(), comment="mMKM")
    with pytest.raises(InputError, match="PHYSICAL dose cannot be labelled with the mMKM"):
        export(dose_type="PHYSICAL", model=MkmModel())
    export(dose_type="PHYSICAL", model=PhysicalDose())
    assert load_rt_dose(tmp_path / "d.dcm").rbe == PhysicalDose()


def test_dose_without_a_record_and_a_corrupt_record(dose_files: dict[int, Path],
                                                    tmp_path: Path) -> None:
    assert load_rt_dose(dose_files[16]).rbe is None  # written with a comment only
    ds = pydicom.dcmread(dose_files[16])
    record = model_record(LemModel())
    record["parameters"]["tissue"]["d_t_gy"] = "30"
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(RECORD_OFFSET, "UT", json.dumps(record))
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(DicomImportError, match=r"RBE model record.*d_t_gy must be a number"):
        load_rt_dose(tmp_path / "bad.dcm")
