"""CT series import: grouping, sorting, reorientation to +x/+y/+z LPS, rescale, codecs, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    RLELossless,
)

from planning.dicom import DicomImportError, SeriesSelectionError, load_ct_series, scan_folder
from planning.geometry import index_to_lps
from planning.progress import CancelToken, OperationCancelled
from tests.dicom_factory import (
    ORIENTATIONS,
    SeriesSpec,
    ct_slice,
    file_dataset,
    save,
    uid,
    write_ct_series,
)


def linear_hu(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """A field whose value tells the LPS position: x + 10 y + 100 z (integers on our grids)."""
    return points[..., 0] + 10 * points[..., 1] + 100 * points[..., 2]


def all_voxels_lps(shape: tuple[int, int, int], spacing, origin) -> NDArray[np.float64]:
    k, j, i = np.indices(shape).reshape(3, -1)
    return index_to_lps(np.stack([k, j, i], axis=1), spacing, origin).reshape(*shape, 3)


@pytest.mark.parametrize("position", list(ORIENTATIONS))
def test_every_voxel_lands_at_its_lps_position(tmp_path: Path, position: str) -> None:
    spec = SeriesSpec(
        rows=6,
        columns=5,
        n_slices=4,
        pixel_spacing=(2.0, 1.0),
        slice_spacing=3.0,
        orientation=ORIENTATIONS[position],
        patient_position=position,
        first_position=(3.0, -4.0, 12.0),
        tag=position,
    )
    write_ct_series(tmp_path, spec, linear_hu)
    ct = load_ct_series(tmp_path)
    lps = all_voxels_lps(ct.shape, ct.spacing_mm, ct.origin_mm)
    np.testing.assert_array_equal(ct.hu, linear_hu(lps))
    assert ct.hu.dtype == np.int16
    assert ct.patient_position == position
    assert ct.image_orientation_patient == tuple(float(v) for v in ORIENTATIONS[position])
    # in-plane spacing follows the axis each image direction ran along
    rows_along_x = abs(ORIENTATIONS[position][0]) == 1
    expected_yx = (2.0, 1.0) if rows_along_x else (1.0, 2.0)
    assert ct.spacing_mm == (3.0, *expected_yx)
    # the image of hu[k] is the file whose ImagePositionPatient z equals slice k's z
    z_mm, _, _ = ct.axis_positions_mm()
    for k, (sop, path) in enumerate(zip(ct.sop_instance_uids, ct.source_paths, strict=True)):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.SOPInstanceUID == sop
        assert float(ds.ImagePositionPatient[2]) == pytest.approx(z_mm[k])


@pytest.mark.parametrize("position", list(ORIENTATIONS))
def test_bright_voxel_at_known_lps_point(tmp_path: Path, position: str) -> None:
    spec = SeriesSpec(
        rows=9,
        columns=7,
        n_slices=5,
        pixel_spacing=(1.5, 2.0),
        slice_spacing=2.5,
        orientation=ORIENTATIONS[position],
        patient_position=position,
        first_position=(-10.0, 20.0, -30.0),
        tag=f"bright{position}",
    )
    target = spec.pixel_points(3)[6, 2]  # slice 3, row 6, column 2 of the written series

    def bright(points: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.where(np.linalg.norm(points - target, axis=-1) < 1e-6, 2000.0, 0.0)

    write_ct_series(tmp_path, spec, bright)
    ct = load_ct_series(tmp_path)
    found = np.argwhere(ct.hu == 2000)
    assert found.shape == (1, 3)
    np.testing.assert_allclose(index_to_lps(found, ct.spacing_mm, ct.origin_mm)[0], target)


def test_recursive_scan_any_names_and_skipped_files(tmp_path: Path) -> None:
    spec = SeriesSpec(n_slices=5)
    write_ct_series(tmp_path, spec, linear_hu, names="random")
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "a" / "empty").write_bytes(b"")
    mr = file_dataset("1.2.840.10008.5.1.4.1.1.4", uid("mr"), ExplicitVRLittleEndian)
    mr.Modality = "MR"
    save(mr, tmp_path / "deep" / "er" / "mr_image")
    scan = scan_folder(tmp_path)
    reasons = sorted(s.reason for s in scan.skipped)
    assert len(scan.skipped) == 3
    assert sum("no 'DICM'" in r for r in reasons) == 2
    assert any("MR" in r for r in reasons)
    assert scan.damaged == ()
    ct = load_ct_series(scan)
    assert ct.shape == (5, 6, 5)


def test_several_series_are_listed_and_the_caller_picks(tmp_path: Path) -> None:
    a = SeriesSpec(tag="first")
    b = SeriesSpec(tag="second", first_position=(0.0, 0.0, 100.0), n_slices=3)
    write_ct_series(tmp_path, a, linear_hu)
    write_ct_series(tmp_path, b, linear_hu)
    with pytest.raises(SeriesSelectionError) as info:
        load_ct_series(tmp_path)
    assert set(info.value.choices) == {a.series_uid, b.series_uid}
    assert a.series_uid in str(info.value) and "factory second" in str(info.value)
    ct = load_ct_series(tmp_path, series_uid=b.series_uid)
    assert ct.shape[0] == 3 and ct.series_instance_uid == b.series_uid
    with pytest.raises(DicomImportError, match=r"no CT series 1\.2\.3"):
        load_ct_series(tmp_path, series_uid="1.2.3")


@pytest.mark.parametrize(
    ("slope", "intercept", "representation", "dtype"),
    [
        (1.0, -1024.0, 0, np.int16),
        (2.0, -1000.0, 0, np.int16),
        (1.0, 0.0, 1, np.int16),
        (0.5, -1024.25, 0, np.float32),
    ],
)
def test_rescale_slope_and_intercept(tmp_path: Path, slope, intercept, representation, dtype):
    spec = SeriesSpec(slope=slope, intercept=intercept, pixel_representation=representation)
    grid = np.arange(spec.rows * spec.columns, dtype=np.float64).reshape(spec.rows, spec.columns)

    def hu_at(points: NDArray[np.float64]) -> NDArray[np.float64]:
        return grid * 8.0 * slope - 300.0 + intercept - round(intercept)

    write_ct_series(tmp_path, spec, hu_at, names="ordered")
    ct = load_ct_series(tmp_path)
    assert ct.hu.dtype == dtype
    np.testing.assert_array_equal(ct.hu[0], hu_at(np.zeros((1, 1, 3))).astype(dtype))


def test_values_outside_int16_are_kept_as_float32(tmp_path: Path) -> None:
    spec = SeriesSpec(intercept=0.0)
    write_ct_series(tmp_path, spec, lambda p: np.full(p.shape[:2], 40000.0))
    ct = load_ct_series(tmp_path)
    assert ct.hu.dtype == np.float32 and float(ct.hu.max()) == 40000.0


_CODECS = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLosslessSV1,
    JPEG2000Lossless,
]


@pytest.mark.parametrize("syntax", _CODECS, ids=[s.name for s in _CODECS])
@pytest.mark.parametrize("representation", [0, 1])
def test_transfer_syntaxes(tmp_path: Path, syntax, representation: int) -> None:
    from pydicom.pixels import get_decoder, get_encoder

    if syntax.is_compressed and not get_decoder(syntax).is_available:
        pytest.skip(f"no decoder plugin for {syntax.name} (install pylibjpeg-libjpeg/-openjpeg)")
    if syntax in (RLELossless, JPEG2000Lossless) and not get_encoder(syntax).is_available:
        pytest.skip(f"no encoder plugin for {syntax.name} to write the test series")
    rng = np.random.default_rng(7)
    spec = SeriesSpec(
        rows=64,
        columns=48,
        n_slices=3,
        transfer_syntax=syntax,
        pixel_representation=representation,
        intercept=-1024.0 if representation == 0 else 0.0,
        tag=f"codec{syntax}{representation}",
    )
    values = rng.integers(-1024, 3000, size=(3, 64, 48)).astype(np.float64)
    write_ct_series(tmp_path, spec, lambda p: values[round((p[0, 0, 2] - 10.0) / 3.0)])
    if syntax != ExplicitVRLittleEndian:
        first = next(p for p in tmp_path.rglob("*") if p.is_file())
        assert pydicom.dcmread(first, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    ct = load_ct_series(tmp_path)
    np.testing.assert_array_equal(ct.hu, values)


def test_volume_is_one_read_only_contiguous_array(tmp_path: Path) -> None:
    write_ct_series(tmp_path, SeriesSpec(orientation=ORIENTATIONS["FFP"]), linear_hu)
    ct = load_ct_series(tmp_path)
    assert ct.hu.flags.c_contiguous and ct.hu.base is None
    assert not ct.hu.flags.writeable
    with pytest.raises(ValueError):
        ct.hu[0, 0, 0] = 1


def test_patient_and_study_attributes(tmp_path: Path) -> None:
    spec = SeriesSpec()
    write_ct_series(tmp_path, spec, linear_hu)
    ct = load_ct_series(tmp_path)
    assert ct.study.patient_name == "Test^Factory" and ct.study.patient_id == "F001"
    assert ct.study.patient_birth_date == "19700101" and ct.study.patient_sex == "O"
    assert ct.study.study_instance_uid == spec.study_uid and ct.study.study_id == "1"
    assert (ct.study.study_date, ct.study.study_time) == ("20240102", "101500")
    assert ct.study.accession_number == "A1" and ct.study.referring_physician_name == "Ref^Doc"
    assert ct.frame_of_reference_uid == spec.frame_uid
    assert ct.series_instance_uid == spec.series_uid and ct.series_number == 3
    assert ct.sop_instance_uids == tuple(spec.sop_uid(k) for k in range(spec.n_slices))


def test_progress_and_cancel(tmp_path: Path) -> None:
    write_ct_series(tmp_path, SeriesSpec(n_slices=6), linear_hu)
    seen: list[float] = []
    load_ct_series(tmp_path, progress=lambda f, _stage: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen)
    token = CancelToken()
    token.cancel()
    with pytest.raises(OperationCancelled):
        load_ct_series(tmp_path, cancel=token)


# --- bad input -------------------------------------------------------------------------------


def _edit_slice(index: int, **changes: object):
    def edit(k: int, ds: pydicom.Dataset) -> None:
        if k == index:
            for keyword, value in changes.items():
                if value is None:
                    delattr(ds, keyword)
                else:
                    setattr(ds, keyword, value)

    return edit


def test_missing_slice_names_the_gap(tmp_path: Path) -> None:
    write_ct_series(tmp_path, SeriesSpec(n_slices=6), linear_hu, names="ordered", skip=[2])
    with pytest.raises(DicomImportError) as info:
        load_ct_series(tmp_path)
    message = str(info.value)
    assert "1 slice(s) missing" in message and "expected spacing 3.000 mm" in message
    assert "z = 13.000 mm" in message and "z = 19.000 mm" in message
    assert "s1_0001.dcm" in message
    assert "could not be read as DICOM" not in message
    # The missing slice is there but not readable as DICOM: the message names that file.
    (tmp_path / "garbled.dcm").write_bytes(b"\x07" * 500)
    with pytest.raises(DicomImportError, match=r"1 file\(s\) of the folder could not be read "
                       r"as DICOM \(e\.g\. .*garbled\.dcm: not a DICOM file"):
        load_ct_series(tmp_path)


def test_two_missing_slices(tmp_path: Path) -> None:
    write_ct_series(tmp_path, SeriesSpec(n_slices=8), linear_hu, skip=[3, 4])
    with pytest.raises(DicomImportError, match=r"2 slice\(s\) missing"):
        load_ct_series(tmp_path)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (_edit_slice(2, ImagePositionPatient=[-2.0, -5.0, 13.0]), "duplicate slice position"),
        (_edit_slice(2, ImagePositionPatient=[-2.0, -5.0, 16.5]), "non-uniform slice spacing"),
        (_edit_slice(3, ImagePositionPatient=[-2.0, -4.0, 19.0]), "gantry tilt"),
        (_edit_slice(1, PixelSpacing=[2.0, 1.1]), "PixelSpacing .* differs"),
        (_edit_slice(1, FrameOfReferenceUID="1.2.3.4"), "Frame of Reference UID .* differs"),
        (_edit_slice(1, Modality="MR"), "wrong modality MR"),
        (_edit_slice(0, RescaleIntercept=None), "RescaleIntercept is missing"),
        (_edit_slice(0, ImagePositionPatient=None), "ImagePositionPatient is missing"),
        (_edit_slice(2, PixelSpacing=[0.0, 1.0]), "must be positive"),
        (_edit_slice(2, ImageOrientationPatient=[1, 0, 0, 0, 1, 0.001]), "differs"),
        (_edit_slice(1, PixelData=None), "no Pixel Data"),
        (_edit_slice(1, PixelData=b"\0" * 10), "cannot decode the pixel data"),
        (_edit_slice(1, NumberOfFrames=2), "2 frames"),
        (_edit_slice(1, SOPClassUID="1.2.840.10008.5.1.4.1.1.2.1"), "not CT Image Storage"),
    ],
)
def test_inconsistent_series_is_rejected(tmp_path: Path, edit, pattern: str) -> None:
    write_ct_series(tmp_path, SeriesSpec(n_slices=4), linear_hu, edit=edit)
    with pytest.raises(DicomImportError, match=pattern):
        load_ct_series(tmp_path)


def test_inconsistent_image_size(tmp_path: Path) -> None:
    spec = SeriesSpec(n_slices=3)
    write_ct_series(tmp_path, spec, linear_hu)
    other = SeriesSpec(n_slices=4, rows=7)
    ds = ct_slice(other, 3, np.zeros((7, 5)))
    save(ds, tmp_path / "odd_size")
    with pytest.raises(DicomImportError, match=r"image size 7 x 5 .* differs from 6 x 5"):
        load_ct_series(tmp_path)


def test_same_image_twice(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, SeriesSpec(n_slices=3), linear_hu, names="ordered")
    shutil.copy(paths[1], tmp_path / "copy_of_slice")
    with pytest.raises(DicomImportError, match="the image is there twice"):
        load_ct_series(tmp_path)


@pytest.mark.parametrize(
    ("orientation", "pattern"),
    [
        ((np.cos(0.1), np.sin(0.1), 0, -np.sin(0.1), np.cos(0.1), 0), "oblique"),
        ((1, 0, 0, 0, np.cos(0.2), -np.sin(0.2)), "oblique .*tilt"),
        ((0, 1, 0, 0, 0, -1), "not axial"),
        ((1, 0, 0, 0, 0, -1), "not axial"),
    ],
)
def test_oblique_tilted_or_non_axial_rejected(tmp_path: Path, orientation, pattern) -> None:
    write_ct_series(tmp_path, SeriesSpec(orientation=tuple(orientation)), linear_hu)
    with pytest.raises(DicomImportError, match=pattern):
        load_ct_series(tmp_path)


def test_single_slice_rejected(tmp_path: Path) -> None:
    write_ct_series(tmp_path, SeriesSpec(n_slices=1), linear_hu)
    with pytest.raises(DicomImportError, match="single slice"):
        load_ct_series(tmp_path)


def test_no_ct_in_folder(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DicomImportError, match=r"no CT image series found .*1 files skipped"):
        load_ct_series(tmp_path)
    with pytest.raises(DicomImportError, match="not a folder"):
        load_ct_series(tmp_path / "x.txt")


def test_damaged_file_stops_import_unless_allowed(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, SeriesSpec(n_slices=4), linear_hu, names="ordered")
    raw = paths[3].read_bytes()
    paths[3].write_bytes(raw[:300])  # end slice cut inside its header
    with pytest.raises(DicomImportError, match="repair or remove damaged files") as info:
        load_ct_series(tmp_path)
    assert info.value.path == str(paths[3])
    ct = load_ct_series(tmp_path, allow_damaged=True)
    assert ct.shape[0] == 3


def test_info_reports_bad_series_and_unmatched_structure_sets(tmp_path: Path) -> None:
    from planning.dicom import describe_folder
    from tests.dicom_factory import RoiSpec, rectangle, rtstruct

    good = SeriesSpec(tag="good")
    bad = SeriesSpec(tag="bad", n_slices=5, frame_tag="other")
    write_ct_series(tmp_path / "good", good, linear_hu)
    write_ct_series(tmp_path / "bad", bad, linear_hu, skip=[2])
    elsewhere = SeriesSpec(tag="elsewhere", frame_tag="elsewhere")
    rois = [RoiSpec("Lost", 4, [rectangle(0, 2, 0, 2, 10.0)], "ORGAN", (1, 2, 3))]
    save(rtstruct(elsewhere, rois, tag="lost"), tmp_path / "rs_lost.dcm")
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    text = describe_folder(tmp_path)
    assert "CT series: 2" in text
    assert good.series_uid in text and bad.series_uid in text
    assert "NOT LOADABLE" in text and "1 slice(s) missing" in text
    assert "HU range" in text and "5 x 6 x 4 voxels (x, y, z)" in text
    assert "no CT series in the folder matches it" in text
    assert "Lost" in text and "1,2,3" in text
    assert "Damaged DICOM files: 1" in text and "broken.dcm" in text
    # A structure set drawn on the series that cannot be loaded says so (it said that no
    # series matched it).
    save(rtstruct(bad, rois, tag="on_bad"), tmp_path / "rs_on_bad.dcm")
    text = describe_folder(tmp_path)
    assert f"its CT series {bad.series_uid} is in the folder but could not be loaded" in text


def test_a_series_without_patient_position_warns_in_the_volume_and_in_info(tmp_path: Path
                                                                           ) -> None:
    """No Patient Position: the CT loads (geometry comes from the images) and says so in its
    warnings, naming a slice file and the series; ``ionplan info`` lists the warning under
    the series (it was only logged)."""
    from planning.dicom import describe_folder

    spec = SeriesSpec(tag="nopos", patient_position="")
    write_ct_series(tmp_path, spec, linear_hu)
    ct = load_ct_series(tmp_path)
    assert ct.patient_position == ""
    (warning,) = ct.warnings
    ending = (f" (CT series {spec.series_uid}): Patient Position missing; geometry is taken "
              "from the images")
    assert warning.endswith(ending)
    assert Path(warning[: -len(ending)]).parent == tmp_path
    assert f"      warning: {warning}" in describe_folder(tmp_path).splitlines()
    write_ct_series(tmp_path / "with", SeriesSpec(tag="withpos"), linear_hu)
    assert load_ct_series(tmp_path / "with").warnings == ()


@pytest.mark.parametrize(("edits", "message"), [
    ({"RescaleType": "Z_EFF", "MultienergyCTAcquisition": "YES"}, "Rescale Type is 'Z_EFF'"),
    ({"RescaleType": "ED"}, "not Hounsfield units"),
    ({"MultienergyCTAcquisition": "YES"}, "multi-energy CT image without Rescale Type"),
])
def test_images_that_do_not_hold_hounsfield_units_are_refused(tmp_path: Path, edits, message):
    """A multi-energy map in CT Image Storage (effective atomic number, electron density) was
    read as HU and turned into water-like stopping powers (DICOM Supplement 188)."""
    def edit(k: int, ds: pydicom.Dataset) -> None:
        for keyword, value in edits.items():
            setattr(ds, keyword, value)

    write_ct_series(tmp_path, SeriesSpec(), lambda p: np.full(p.shape[:2], 7.4), edit=edit)
    with pytest.raises(DicomImportError, match=message):
        load_ct_series(tmp_path)


def test_rescale_type_hu_is_read(tmp_path: Path) -> None:
    def edit(k: int, ds: pydicom.Dataset) -> None:
        ds.RescaleType = "HU"
        ds.MultienergyCTAcquisition = "YES"  # a virtual monoenergetic image, in HU

    write_ct_series(tmp_path, SeriesSpec(), lambda p: np.full(p.shape[:2], 40.0), edit=edit)
    assert float(load_ct_series(tmp_path).hu.max()) == 40.0


def test_a_localizer_beside_the_ct_is_not_a_choice(tmp_path: Path) -> None:
    """A scout/topogram exported with the CT (Image Type value 3 LOCALIZER) made every load
    ask which series to plan on; the localizer is never the planning CT."""
    ct = SeriesSpec(tag="axial")
    scout = SeriesSpec(tag="scout", first_position=(0.0, 0.0, 100.0), n_slices=2)

    def localizer(k: int, ds: pydicom.Dataset) -> None:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]

    write_ct_series(tmp_path, ct, linear_hu)
    write_ct_series(tmp_path, scout, linear_hu, edit=localizer)
    assert load_ct_series(tmp_path).series_instance_uid == ct.series_uid
    other = SeriesSpec(tag="second", first_position=(0.0, 0.0, 200.0), n_slices=3)
    write_ct_series(tmp_path, other, linear_hu)
    with pytest.raises(SeriesSelectionError) as info:  # two CTs: still the user's choice
        load_ct_series(tmp_path)
    assert set(info.value.choices) == {ct.series_uid, other.series_uid}


def test_the_app_is_offered_no_localizer(tmp_path: Path) -> None:
    from planning import api

    ct = SeriesSpec(tag="axial")
    scout = SeriesSpec(tag="scout", first_position=(0.0, 0.0, 100.0), n_slices=2)

    def localizer(k: int, ds: pydicom.Dataset) -> None:
        ds.ImageType = "ORIGINAL\\PRIMARY\\LOCALIZER"

    write_ct_series(tmp_path, ct, linear_hu)
    write_ct_series(tmp_path, scout, linear_hu, edit=localizer)
    assert [c.series_uid for c in api.list_ct_series(tmp_path)] == [ct.series_uid]


def test_a_damaged_file_allowed_is_one_of_the_patients_warnings_and_not_logged_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With damaged files allowed, the scan logged each at WARNING and the patient's warnings
    held it too: the terminal and a batch job's warnings (and count) had it twice."""
    import logging

    from planning.dicom import load_patient

    paths = write_ct_series(tmp_path, SeriesSpec(n_slices=4), linear_hu, names="ordered")
    paths[3].write_bytes(paths[3].read_bytes()[:300])
    with caplog.at_level(logging.WARNING):
        patient = load_patient(tmp_path, allow_damaged=True)
    assert [w for w in patient.warnings if str(paths[3]) in w] == [
        next(w for w in patient.warnings if w.startswith("damaged file ignored: "))]
    assert not [r for r in caplog.records if str(paths[3]) in r.getMessage()]
