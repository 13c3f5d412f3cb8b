"""Truncated and incomplete DICOM files are refused with a message naming the file.

pydicom reads a file cut short without complaint: the sequence the file ends in keeps the items
that are complete, so an RT Structure Set whose last bytes are missing loaded with its last ROI's
type lost. These tests cut files of the demo patient (and of a hand-built plan and dose) and check
that every importer refuses them, and that the RT Structure Set importer refuses a file whose ROI
types or contour point counts are incomplete however it was cut.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from planning.dicom import (
    DicomImportError,
    describe_folder,
    export_rt_dose,
    export_rt_ion_plan,
    load_ct_series,
    load_patient,
    load_rt_dose,
    load_rt_ion_plan,
    load_rtstruct,
    write_demo_patient,
)
from planning.dicom.rtstruct_import import parse_structure_set
from planning.dose_grid import DoseGrid
from planning.patient import CtVolume
from tests.test_rtplan_dicom import SAD_MM, SIGMA_MM, build_plan

RS_NAME = "RS_demo.dcm"
SLICES = range(40, 46)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six CT slices of the demo patient and its structure set (contours on those slices)."""
    full = tmp_path_factory.mktemp("demo_full")
    write_demo_patient(full)
    folder = tmp_path_factory.mktemp("demo")
    z_kept = set()
    for k in SLICES:
        shutil.copy(full / f"CT_{k:03d}.dcm", folder)
        z_kept.add(round(float(pydicom.dcmread(full / f"CT_{k:03d}.dcm").SliceLocation), 3))
    rs = pydicom.dcmread(full / RS_NAME)
    for item in rs.ROIContourSequence:
        item.ContourSequence = [
            c for c in item.ContourSequence if round(float(c.ContourData[2]), 3) in z_kept
        ]
    rs.save_as(folder / RS_NAME)
    return folder


@pytest.fixture(scope="module")
def ct(demo: Path) -> CtVolume:
    return load_ct_series(demo)


def _cut(path: Path, n_bytes: int) -> None:
    path.write_bytes(path.read_bytes()[:-n_bytes])


def _copy(demo: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo, tmp_path / "copy"))


def test_the_uncut_demo_loads_with_every_roi_typed(demo: Path, ct: CtVolume) -> None:
    structures = load_rtstruct(demo / RS_NAME, ct).structures
    assert len(structures) == 9 and all(s.interpreted_type for s in structures)


@pytest.mark.parametrize("n_bytes", [50, 2, 300, 5000])
def test_a_structure_set_cut_short_is_refused_naming_the_file(
    demo: Path, ct: CtVolume, tmp_path: Path, n_bytes: int
) -> None:
    """The last 50 bytes cut lost Eye_R's type before; every cut inside a sequence is refused."""
    copy = _copy(demo, tmp_path)
    _cut(copy / RS_NAME, n_bytes)
    with pytest.raises(DicomImportError, match="the file is truncated: it ends inside ") as caught:
        load_rtstruct(copy / RS_NAME, ct)
    assert caught.value.path == str(copy / RS_NAME)
    with pytest.raises(DicomImportError, match="truncated") as caught:
        load_patient(copy)
    assert str(copy / RS_NAME) in str(caught.value)
    assert (f"{copy / RS_NAME}\n      patient IonPlan^Demo Head (IONPLAN-DEMO-001)\n"
            "      NOT LOADABLE: the file is truncated") in describe_folder(copy)


def test_a_structure_set_with_undefined_length_sequences_cut_short_is_refused(
    demo: Path, ct: CtVolume, tmp_path: Path
) -> None:
    """Sequences closed by a delimiter: pydicom raises at the end of the file, named here."""
    ds = pydicom.dcmread(demo / RS_NAME)
    for keyword in ("StructureSetROISequence", "ROIContourSequence", "RTROIObservationsSequence"):
        ds[keyword].is_undefined_length = True
        for item in ds[keyword].value:
            item.is_undefined_length_sequence_item = True
    buffer = io.BytesIO()
    ds.save_as(buffer)
    path = tmp_path / "undefined.dcm"
    path.write_bytes(buffer.getvalue()[:-50])
    with pytest.raises(DicomImportError, match="cannot read the RT Structure Set") as caught:
        load_rtstruct(path, ct)
    assert caught.value.path == str(path)


def test_an_roi_without_its_type_is_refused_when_the_others_have_one(
    demo: Path, ct: CtVolume
) -> None:
    """A file cut between items of a rewritten sequence: the last ROI has no observation."""
    ds = pydicom.dcmread(demo / RS_NAME)
    del ds.RTROIObservationsSequence[-1]
    with pytest.raises(DicomImportError, match=r"1 ROI\(s\) have no RT ROI Interpreted Type "
                       r"\('Eye_R' \(ROI 9\)\) while the other 8 have one"):
        parse_structure_set(ds, path="rs.dcm")
    ds = pydicom.dcmread(demo / RS_NAME)
    del ds.RTROIObservationsSequence[2].RTROIInterpretedType
    with pytest.raises(DicomImportError, match=r"'Brain' \(ROI 3\)"):
        parse_structure_set(ds, path="rs.dcm")


def test_empty_types_and_no_observations_at_all_still_load(demo: Path) -> None:
    """An empty type is allowed (the attribute is type 2); no observations at all is warned."""
    ds = pydicom.dcmread(demo / RS_NAME)
    ds.RTROIObservationsSequence[2].RTROIInterpretedType = ""
    assert parse_structure_set(ds, path="rs.dcm").rois[2].interpreted_type == ""
    del ds.RTROIObservationsSequence
    parsed = parse_structure_set(ds, path="rs.dcm")
    assert all(r.interpreted_type == "" for r in parsed.rois)
    assert any("no RT ROI Observations" in w for w in parsed.warnings)


def test_a_contour_with_fewer_points_than_it_states_is_refused(demo: Path) -> None:
    ds = pydicom.dcmread(demo / RS_NAME)
    contour = ds.ROIContourSequence[4].ContourSequence[0]
    n = int(contour.NumberOfContourPoints)
    contour.ContourData = contour.ContourData[:-3]
    with pytest.raises(DicomImportError, match=f"ROI 'GTV': a contour states "
                       f"NumberOfContourPoints {n} but its ContourData holds {n - 1} points"):
        parse_structure_set(ds, path="rs.dcm")


def test_a_ct_slice_cut_short_is_refused_naming_the_slice(demo: Path, tmp_path: Path) -> None:
    copy = _copy(demo, tmp_path)
    _cut(copy / "CT_042.dcm", 50)
    with pytest.raises(DicomImportError, match="cannot decode the pixel data") as caught:
        load_ct_series(copy)
    assert caught.value.path == str(copy / "CT_042.dcm")


def test_a_plan_and_a_dose_cut_short_are_refused(demo: Path, tmp_path: Path) -> None:
    patient = load_patient(demo)
    plan_path, dose_path = tmp_path / "RP.dcm", tmp_path / "RD.dcm"
    plan_uid = export_rt_ion_plan(build_plan(patient), patient, plan_path, sad_mm=SAD_MM,
                                  machine_spot_sigma_mm=SIGMA_MM,
                                  isocenter_to_range_shifter_mm=300.0)
    grid = DoseGrid(shape=(4, 5, 6), spacing_mm=(2.0, 2.0, 2.0), origin_mm=(0.0, 0.0, 0.0))
    export_rt_dose(np.ones(grid.shape), grid, patient, dose_path, dose_type="PHYSICAL",
                   referenced_plan_uid=plan_uid)
    for path, load in ((plan_path, load_rt_ion_plan), (dose_path, load_rt_dose)):
        load(path)
        _cut(path, 50)
        with pytest.raises(DicomImportError, match="the file is truncated") as caught:
            load(path)
        assert caught.value.path == str(path)
