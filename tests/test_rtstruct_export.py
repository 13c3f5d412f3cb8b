"""RT Structure Set export: dciodvfy, references to the CT, round trip of masks (demo patient and
synthetic CTs in other patient positions), holes, bad input."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from planning.dicom import export_rtstruct, load_ct_series, load_rtstruct, write_demo_patient
from planning.errors import InputError
from planning.patient import CtVolume, Patient, RoiMask, Structure, StructureSet
from tests.dicom_factory import ORIENTATIONS, SeriesSpec, write_ct_series
from tests.test_rtplan_dicom import dciodvfy_report


@pytest.fixture(scope="module")
def structures(patient: Patient) -> StructureSet:
    assert patient.structure_set is not None
    return patient.structure_set


def _mask_only(structure_set: StructureSet) -> StructureSet:
    return replace(structure_set, structures=tuple(
        replace(s, contours=()) for s in structure_set.structures))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("source", ["contours", "masks"])
def test_demo_round_trip(tmp_path: Path, patient: Patient, structures: StructureSet,
                         source: str) -> None:
    given = structures if source == "contours" else _mask_only(structures)
    path = tmp_path / "RS.dcm"
    uid = export_rtstruct(given, patient.ct, path, label="ROUNDTRIP")
    errors, notes = dciodvfy_report(path)
    assert errors == [] and notes == []
    back = load_rtstruct(path, patient.ct)
    assert back.sop_instance_uid == uid
    assert back.warnings == ()
    assert back.label == "ROUNDTRIP"
    assert back.referenced_ct_series_uid == patient.ct.series_instance_uid
    for a, b in zip(structures.structures, back.structures, strict=True):
        assert (b.name, b.roi_number, b.interpreted_type, b.colour_rgb) == (
            a.name, a.roi_number, a.interpreted_type, a.colour_rgb)
        dense_a, dense_b = a.mask.to_dense(), b.mask.to_dense()
        assert dice(dense_a, dense_b) > 0.98
        assert abs(b.mask.voxel_count - a.mask.voxel_count) <= 0.02 * a.mask.voxel_count
        # isolines half-way between voxel centres rasterize back exactly
        np.testing.assert_array_equal(dense_b, dense_a, err_msg=a.name)


def test_structures_without_colours_are_written_in_the_colours_ionplan_draws_them(
        tmp_path: Path, patient: Patient) -> None:
    """An RT Structure Set without ROI Display Colors: IonPlan draws its structures in
    fallback colours (screen, PDF) but exported none, so another system showed other ones."""
    demo = tmp_path / "demo"
    write_demo_patient(demo)
    bare = pydicom.dcmread(demo / "RS_demo.dcm")
    for item in bare.ROIContourSequence:
        del item.ROIDisplayColor
    bare.save_as(demo / "RS_demo.dcm")
    imported = load_rtstruct(demo / "RS_demo.dcm", patient.ct)
    assert all(s.colour_rgb is None for s in imported.structures)
    path = tmp_path / "RS.dcm"
    export_rtstruct(imported, patient.ct, path, label="COLOURS")
    back = load_rtstruct(path, patient.ct)
    colours = tuple(s.colour_rgb for s in back.structures)
    assert colours == imported.display_colours() == back.display_colours()
    # the fallback palette by index: the first two are blue and orange
    assert colours[:2] == ((31, 119, 180), (255, 127, 14))
    assert len(colours) == len(imported.structures) >= 5


def test_references_ct(tmp_path: Path, patient: Patient, structures: StructureSet) -> None:
    path = tmp_path / "RS.dcm"
    export_rtstruct(_mask_only(structures), patient.ct, path, label="REFS")
    ds = pydicom.dcmread(path)
    ct = patient.ct
    assert ds.StudyInstanceUID == ct.study.study_instance_uid
    assert ds.FrameOfReferenceUID == ct.frame_of_reference_uid
    assert ds.SeriesInstanceUID != ct.series_instance_uid
    frame = ds.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == ct.frame_of_reference_uid
    study = frame.RTReferencedStudySequence[0]
    assert study.ReferencedSOPInstanceUID == ct.study.study_instance_uid
    series = study.RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == ct.series_instance_uid
    assert [i.ReferencedSOPInstanceUID for i in series.ContourImageSequence] == list(
        ct.sop_instance_uids)
    z_mm = ct.axis_positions_mm()[0]
    for roi in ds.StructureSetROISequence:
        assert roi.ReferencedFrameOfReferenceUID == ct.frame_of_reference_uid
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            k = int(np.argmin(np.abs(z_mm - float(contour.ContourData[2]))))
            assert (contour.ContourImageSequence[0].ReferencedSOPInstanceUID
                    == ct.sop_instance_uids[k])
            assert len(contour.ContourData) == 3 * contour.NumberOfContourPoints


def _factory_ct(folder: Path, position: str) -> tuple[CtVolume, SeriesSpec]:
    spec = SeriesSpec(rows=14, columns=12, n_slices=4, pixel_spacing=(2.0, 1.5),
                      slice_spacing=2.5, orientation=ORIENTATIONS[position],
                      patient_position=position, first_position=(15.0, -10.0, 20.0),
                      tag=f"rs-{position}")
    write_ct_series(folder, spec, lambda p: np.zeros(p.shape[:-1]))
    return load_ct_series(folder), spec


def _ring_with_island(shape: tuple[int, int, int]) -> np.ndarray:
    """A filled square with a square hole holding a one-voxel island, on slices 1 and 2."""
    mask = np.zeros(shape, dtype=bool)
    mask[1:3, 2:11, 2:10] = True
    mask[1:3, 4:9, 4:8] = False
    mask[1:3, 6, 5] = True
    return mask


@pytest.mark.parametrize("position", ["HFS", "FFS", "HFP", "FFDL"])
def test_other_patient_positions(tmp_path: Path, position: str) -> None:
    ct, spec = _factory_ct(tmp_path / "ct", position)
    box = np.zeros(ct.shape, dtype=bool)
    box[0:2, 1:4, 2:5] = True
    ring = _ring_with_island(ct.shape)
    structure_set = StructureSet(
        structures=(
            Structure("Box", 3, "PTV", (255, 0, 0), RoiMask.from_dense(box)),
            Structure("Ring", 7, "ORGAN", None, RoiMask.from_dense(ring)),
            Structure("Empty", 9, "", (1, 2, 3), RoiMask.empty(ct.shape)),
        ),
        frame_of_reference_uid=ct.frame_of_reference_uid,
        sop_instance_uid="", series_instance_uid="",
    )
    path = tmp_path / "RS.dcm"
    export_rtstruct(structure_set, ct, path, label=position, uid_seed=position)
    if position == "FFS":
        errors, notes = dciodvfy_report(path)
        assert errors == [] and notes == []
    ds = pydicom.dcmread(path)
    # positions in LPS: the box covers the voxel centres of x indices 2..4, y 1..3, z 0..1
    z_mm, y_mm, x_mm = ct.axis_positions_mm()
    _, sy, sx = ct.spacing_mm
    points = np.concatenate([np.reshape(np.asarray(c.ContourData, float), (-1, 3))
                             for c in ds.ROIContourSequence[0].ContourSequence])
    assert points[:, 0].min() == pytest.approx(x_mm[2] - sx / 2)
    assert points[:, 0].max() == pytest.approx(x_mm[4] + sx / 2)
    assert points[:, 1].min() == pytest.approx(y_mm[1] - sy / 2)
    assert points[:, 1].max() == pytest.approx(y_mm[3] + sy / 2)
    assert sorted(set(points[:, 2].round(6))) == pytest.approx(sorted(z_mm[:2]))
    # each contour references the CT image at its z, found through the factory's own UIDs
    z_of_sop = {spec.sop_uid(k): spec.slice_position(k)[2] for k in range(spec.n_slices)}
    for roi in ds.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            sop = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
            assert z_of_sop[sop] == pytest.approx(float(contour.ContourData[2]))
    ring_contours = ds.ROIContourSequence[1].ContourSequence
    assert len(ring_contours) == 6  # outline, hole and island on each of two slices
    assert "ContourSequence" not in ds.ROIContourSequence[2]
    back = load_rtstruct(path, ct)
    np.testing.assert_array_equal(back.get("Box").mask.to_dense(), box)
    np.testing.assert_array_equal(back.get("Ring").mask.to_dense(), ring)
    assert back.get("Empty").mask.voxel_count == 0
    assert back.get("Ring").colour_rgb == (255, 127, 14)  # the second fallback colour
    assert back.get("Box").roi_number == 3


def test_refuses_bad_input(tmp_path: Path, patient: Patient, structures: StructureSet) -> None:
    ct = patient.ct
    path = tmp_path / "RS.dcm"
    first = structures.structures[0]
    cases = [
        (replace(structures, structures=()), "label", "no structure"),
        (replace(structures, structures=(first, first)), "label", "duplicate ROI numbers"),
        (replace(structures, structures=(replace(first, mask=RoiMask.empty((1, 2, 3))),)),
         "label", "grid"),
        (replace(structures, frame_of_reference_uid="1.2.3"), "label", "frame of reference"),
        (structures, "x" * 17, "16 characters"),
        (structures, " ", "must not be empty"),
    ]
    for structure_set, label, message in cases:
        with pytest.raises(InputError, match=message):
            export_rtstruct(structure_set, ct, path, label=label)
    assert not path.exists()
