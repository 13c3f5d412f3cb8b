"""RT Structure Set import: ROI attributes, even-odd rasterization, frame checks, warnings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from skimage.draw import polygon as sk_polygon

from planning.dicom import DicomImportError, SeriesSelectionError, load_ct_series, load_patient
from planning.dicom.rasterize import rasterize_even_odd
from planning.dicom.rtstruct_import import contours_to_mask, load_rtstruct
from planning.geometry import voxel_centers_lps
from planning.patient import Contour, CtVolume
from tests.dicom_factory import ORIENTATIONS, RoiSpec, SeriesSpec, rectangle, rtstruct, save
from tests.dicom_factory import write_ct_series as write_series

# CT grid: voxel centres x = 0..23 mm, y = 0..19 mm, z = 0, 2, 4, 6, 8 mm
GRID = SeriesSpec(
    rows=20,
    columns=24,
    n_slices=5,
    pixel_spacing=(1.0, 1.0),
    slice_spacing=2.0,
    first_position=(0.0, 0.0, 0.0),
    tag="grid",
)


def _ct(folder: Path, spec: SeriesSpec = GRID) -> CtVolume:
    write_series(folder / "ct", spec, lambda p: np.zeros(p.shape[:2]))
    return load_ct_series(folder / "ct")


def _write(folder: Path, rois: list[RoiSpec], spec: SeriesSpec = GRID, tag: str = "rs1") -> Path:
    return save(rtstruct(spec, rois, tag=tag), folder / f"{tag}.dcm")


def test_names_types_colours_and_exact_masks(tmp_path: Path) -> None:
    ct = _ct(tmp_path)
    rois = [
        RoiSpec("Box", 3, [rectangle(2.5, 7.5, 3.5, 9.5, 2.0)], "PTV", (10, 20, 30)),
        RoiSpec(
            "Ring",
            7,
            [
                rectangle(0.5, 15.5, 0.5, 15.5, 4.0),  # outer: 15 x 15 voxels
                rectangle(4.5, 10.5, 4.5, 10.5, 4.0),  # hole: 6 x 6
                rectangle(6.5, 8.5, 6.5, 8.5, 4.0),  # island in the hole: 2 x 2
            ],
            "ORGAN",
            None,
        ),
        RoiSpec(
            "Two parts",
            1,
            [rectangle(0.5, 2.5, 0.5, 1.5, 6.0), rectangle(20.5, 22.5, 10.5, 13.5, 6.0)],
            "EXTERNAL",
        ),
    ]
    structure_set = load_rtstruct(_write(tmp_path, rois), ct)
    assert structure_set.names == ("Box", "Ring", "Two parts")
    box, ring, parts = structure_set.structures
    assert (box.roi_number, box.interpreted_type, box.colour_rgb) == (3, "PTV", (10, 20, 30))
    assert ring.colour_rgb is None and parts.interpreted_type == "EXTERNAL"
    expected = np.zeros(ct.shape, dtype=bool)
    expected[1, 4:10, 3:8] = True
    np.testing.assert_array_equal(box.mask.to_dense(), expected)
    assert ring.mask.voxel_count == 225 - 36 + 4
    dense = ring.mask.to_dense()
    assert dense[2, 1, 1] and not dense[2, 5, 5] and dense[2, 7, 7]
    assert parts.mask.voxel_count == 2 * 1 + 2 * 3
    assert structure_set.warnings == ()
    assert structure_set.frame_of_reference_uid == ct.frame_of_reference_uid
    assert structure_set.referenced_ct_series_uid == ct.series_instance_uid
    assert box.volume_cm3(ct.spacing_mm) == pytest.approx(30 * 2.0 / 1000)
    np.testing.assert_allclose(box.contours[0].points_mm, rectangle(2.5, 7.5, 3.5, 9.5, 2.0))


def test_mask_lands_on_the_same_lps_voxels_for_a_feet_first_prone_ct(tmp_path: Path) -> None:
    spec = SeriesSpec(
        rows=20,
        columns=24,
        n_slices=5,
        pixel_spacing=(1.0, 1.0),
        slice_spacing=2.0,
        orientation=ORIENTATIONS["FFP"],
        patient_position="FFP",
        first_position=(0.0, 19.0, 8.0),
        tag="ffp",
    )
    ct = _ct(tmp_path, spec)
    assert ct.origin_mm == (0.0, 0.0, 0.0)
    roi = RoiSpec("Box", 1, [rectangle(2.5, 7.5, 3.5, 9.5, 2.0)])
    box = load_rtstruct(_write(tmp_path, [roi], spec), ct).structures[0]
    centres = voxel_centers_lps(ct.shape, ct.spacing_mm, ct.origin_mm, box.mask.flat_indices())
    assert box.mask.voxel_count == 30
    assert centres[:, 0].min() == 3 and centres[:, 0].max() == 7
    assert centres[:, 1].min() == 4 and centres[:, 1].max() == 9
    assert set(centres[:, 2]) == {2.0}


def test_contours_outside_or_between_slices_are_reported(tmp_path: Path) -> None:
    ct = _ct(tmp_path)
    rois = [
        RoiSpec("Outside", 1, [rectangle(2.5, 7.5, 3.5, 9.5, 40.0)]),
        RoiSpec("Clipped", 2, [rectangle(-10.0, 2.5, -10.0, 1.5, 0.0)]),
        RoiSpec("Between", 3, [rectangle(2.5, 4.5, 2.5, 4.5, 2.9)]),
        RoiSpec("Open", 4, [rectangle(2.5, 4.5, 2.5, 4.5, 2.0)], geometric_type="OPEN_PLANAR"),
        RoiSpec("Iso", 5, [np.array([[5.0, 5.0, 4.0]])], "ISOCENTER", geometric_type="POINT"),
        RoiSpec("Empty", 6, []),
    ]
    structure_set = load_rtstruct(_write(tmp_path, rois), ct)
    text = "\n".join(structure_set.warnings)
    assert "'Outside': 1 contour(s) outside the CT volume" in text
    assert "'Clipped': 1 contour(s) extend beyond the CT" in text
    assert "'Between': 1 contour(s) lie between CT slice planes" in text
    assert "'Open': 1 open contour(s)" in text
    assert "'Empty' has no contours" in text
    assert "Iso" not in text
    by_name = {s.name: s for s in structure_set.structures}
    assert by_name["Outside"].mask.voxel_count == 0
    assert by_name["Clipped"].mask.voxel_count == 3 * 2  # x 0..2, y 0..1 on slice 0
    between = by_name["Between"].mask.to_dense()
    assert between[1].sum() == 4 and between.sum() == 4  # z 2.9 -> nearest slice z = 2
    assert by_name["Iso"].contours[0].geometric_type == "POINT"
    assert by_name["Iso"].mask.voxel_count == 0


def test_frame_of_reference_mismatch_is_an_error(tmp_path: Path) -> None:
    ct = _ct(tmp_path)
    roi = RoiSpec("Box", 1, [rectangle(2.5, 7.5, 3.5, 9.5, 2.0)], frame_uid="1.2.3.999")
    with pytest.raises(DicomImportError, match=r"frame of reference 1\.2\.3\.999.*another scan"):
        load_rtstruct(_write(tmp_path, [roi]), ct)


def test_empty_structure_sets_are_errors(tmp_path: Path) -> None:
    ct = _ct(tmp_path)
    with pytest.raises(DicomImportError, match="defines no ROI"):
        load_rtstruct(_write(tmp_path, [], tag="none"), ct)
    with pytest.raises(DicomImportError, match="no ROI has contours"):
        load_rtstruct(_write(tmp_path, [RoiSpec("A", 1, [])], tag="nocontour"), ct)


@pytest.mark.parametrize(
    ("value", "pattern"),
    [(["1", "2"], "not a positive multiple of 3"), (["1", "2", "abc"], "cannot read ContourData")],
)
def test_malformed_contour_data(tmp_path: Path, value: list[str], pattern: str) -> None:
    from pydicom import config
    from pydicom.dataelem import DataElement

    ct = _ct(tmp_path)
    ds = rtstruct(GRID, [RoiSpec("Box", 1, [rectangle(2.5, 7.5, 3.5, 9.5, 2.0)])])
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    contour.add(DataElement(0x30060050, "LO", "\\".join(value), validation_mode=config.IGNORE))
    with pytest.raises(DicomImportError, match=pattern):
        load_rtstruct(save(ds, tmp_path / "bad.dcm"), ct)


def test_not_an_rtstruct(tmp_path: Path) -> None:
    ct = _ct(tmp_path)
    with pytest.raises(DicomImportError, match="not an RT Structure Set"):
        load_rtstruct(ct.source_paths[0], ct)
    (tmp_path / "junk").write_bytes(b"\0" * 50)
    with pytest.raises(DicomImportError, match="cannot read the RT Structure Set"):
        load_rtstruct(tmp_path / "junk", ct)


def test_load_patient_picks_the_structure_set_of_the_ct(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", GRID, lambda p: np.zeros(p.shape[:2]))
    other = SeriesSpec(tag="other", frame_tag="other-frame")
    _write(tmp_path, [RoiSpec("Other", 1, [rectangle(0.5, 2.5, 0.5, 2.5, 10.0)])], other, "rs0")
    _write(tmp_path, [RoiSpec("Box", 1, [rectangle(2.5, 7.5, 3.5, 9.5, 2.0)])], GRID, "rs1")
    patient = load_patient(tmp_path)
    assert patient.structure_set is not None and patient.structure_set.names == ("Box",)
    assert patient.warnings == ()
    _write(tmp_path, [RoiSpec("Box2", 1, [rectangle(2.5, 7.5, 3.5, 9.5, 2.0)])], GRID, "rs2")
    with pytest.raises(SeriesSelectionError) as info:
        load_patient(tmp_path)
    assert len(info.value.choices) == 2
    chosen = load_patient(tmp_path, structure_set_uid=info.value.choices[1])
    assert chosen.structure_set is not None
    assert chosen.structure_set.sop_instance_uid == info.value.choices[1]


def test_patient_without_structure_set(tmp_path: Path) -> None:
    write_series(tmp_path, GRID, lambda p: np.zeros(p.shape[:2]))
    patient = load_patient(tmp_path)
    assert patient.structure_set is None
    (note,) = patient.warnings
    assert note.startswith("no RT Structure Set refers to this CT (series ")
    assert "ignored" not in note


def test_a_structure_set_of_another_series_is_named_where_the_plan_is_refused(
        tmp_path: Path) -> None:
    """A folder with the CT and another series' structure set said only "the CT has no
    structure set" (CLI review): now it names the file and what it refers to."""
    from planning.errors import PlanningError
    from planning.planner import PlanRequest, make_plan

    ct = _ct(tmp_path)
    box = [rectangle(2.5, 7.5, 3.5, 9.5, 2.0)]
    ds = _write(tmp_path, [RoiSpec("PTV", 1, box)])
    rs = pydicom.dcmread(ds)
    rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0] \
        .RTReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.999"
    rs.save_as(ds)
    patient = load_patient(tmp_path)
    assert patient.structure_set is None and ct is not None
    with pytest.raises(PlanningError, match=r"no structure set.*ignored: .* refers to series "
                       r"1\.2\.3\.999"):
        make_plan(PlanRequest(target="PTV", total_dose_gy_rbe=3.0, n_fractions=1,
                              gantry_deg=(90.0,), patient=patient, device="cpu"))


def test_rasterizer_matches_skimage_polygon_on_random_polygons() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(3, 12))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(2, 15, n)
        centre = rng.uniform(-5, 35, 2)
        i = centre[0] + radii * np.cos(angles)
        j = centre[1] + radii * np.sin(angles)
        ours = rasterize_even_odd([np.column_stack((i, j))], (30, 25))
        rr, cc = sk_polygon(j, i, shape=(30, 25))
        theirs = np.zeros((30, 25), dtype=bool)
        theirs[rr, cc] = True
        assert np.array_equal(ours, theirs)


def test_rasterizer_even_odd_exact_counts() -> None:
    square = np.array([[0.5, 0.5], [10.5, 0.5], [10.5, 10.5], [0.5, 10.5]])
    hole = np.array([[2.5, 2.5], [4.5, 2.5], [4.5, 4.5], [2.5, 4.5]])
    overlapping = square + 5.0
    assert rasterize_even_odd([square], (20, 20)).sum() == 100
    assert rasterize_even_odd([square, hole], (20, 20)).sum() == 96
    # two overlapping squares: the 5 x 5 overlap is even, so outside
    assert rasterize_even_odd([square, overlapping], (20, 20)).sum() == 100 + 100 - 2 * 25
    # reversed winding changes nothing
    assert rasterize_even_odd([square[::-1], hole], (20, 20)).sum() == 96


def test_contours_to_mask_keeps_structure_cropped(tmp_path: Path) -> None:
    ct = _ct(tmp_path)
    contour = Contour(rectangle(2.5, 7.5, 3.5, 9.5, 2.0), "CLOSED_PLANAR")
    mask, warnings = contours_to_mask([contour], ct)
    assert warnings == []
    assert mask.box.shape == (1, 6, 5) and mask.offset_zyx == (1, 4, 3)
    assert mask.grid_shape == ct.shape


def test_contours_of_other_planes_never_cancel_on_one_slice(tmp_path: Path) -> None:
    """A structure drawn on another series of the same frame (finer or shifted slices): two
    nearly equal contours of neighbouring planes that fall on one CT slice were combined
    even-odd and cancelled (slices, or the whole ROI, came out empty); now each slice takes the
    plane nearest its centre."""
    ct = _ct(tmp_path)  # slices at z = 0, 2, 4, 6, 8 mm
    square = (2.5, 4.5, 2.5, 4.5)  # 2 x 2 voxels
    two_planes = [Contour(rectangle(*square, z), "CLOSED_PLANAR") for z in (3.6, 4.4)]
    mask, warnings = contours_to_mask(two_planes, ct, roi_name="Fine")
    dense = mask.to_dense()
    assert dense[2].sum() == 4 and dense.sum() == 4
    assert any("'Fine': 1 contour(s) were left out: another contour plane" in w for w in warnings)
    # Planes half a slice off (z = 1, 3, 5, 7): each goes to the slice above it (Python's
    # round() sent 3 and 5 to one slice, by the parity of the index, where they cancelled).
    shifted = [Contour(rectangle(*square, z), "CLOSED_PLANAR") for z in (1.0, 3.0, 5.0, 7.0)]
    dense, warnings = contours_to_mask(shifted, ct, roi_name="Shifted")
    assert [int(dense.to_dense()[k].sum()) for k in range(5)] == [0, 4, 4, 4, 4]
    assert not any("left out" in w for w in warnings)


def test_slices_without_a_contour_inside_a_structure_are_reported(tmp_path: Path) -> None:
    ct = _ct(tmp_path)
    ends = [Contour(rectangle(2.5, 4.5, 2.5, 4.5, z), "CLOSED_PLANAR") for z in (0.0, 8.0)]
    mask, warnings = contours_to_mask(ends, ct, roi_name="Sparse")
    assert [int(mask.to_dense()[k].sum()) for k in range(5)] == [4, 0, 0, 0, 4]
    assert any("'Sparse': 3 CT slice(s) between the structure's first and last contour" in w
               for w in warnings)


def test_closedplanar_xor_contours_fill_like_closed_planar_ones(tmp_path: Path) -> None:
    """CLOSEDPLANAR_XOR (PS3.3 C.8.8.6.3): the contours of a plane combined by XOR, a ring
    here; the whole structure set was refused as of an unknown type."""
    ct = _ct(tmp_path)
    outer, inner = rectangle(2.5, 8.5, 2.5, 8.5, 4.0), rectangle(4.5, 6.5, 4.5, 6.5, 4.0)
    rois = [RoiSpec("Ring", 1, [outer, inner], geometric_type="CLOSEDPLANAR_XOR")]
    ring = load_rtstruct(_write(tmp_path, rois), ct).get("Ring").mask.to_dense()
    assert ring[2].sum() == 36 - 4 and ring.sum() == 32


def test_a_structure_set_without_its_type_3_frame_sequence_is_found_by_its_rois(
        tmp_path: Path) -> None:
    """Referenced Frame of Reference Sequence is Type 3: without it the structure set of the
    CT was not found (the patient loaded without structures); each ROI's Type 1 Referenced
    Frame of Reference UID names the frame."""
    import pydicom

    write_series(tmp_path / "ct", GRID, lambda p: np.zeros(p.shape[:2]))
    path = _write(tmp_path, [RoiSpec("Box", 1, [rectangle(2.5, 7.5, 3.5, 9.5, 2.0)])])
    ds = pydicom.dcmread(path)
    del ds.ReferencedFrameOfReferenceSequence
    ds.save_as(path)
    patient = load_patient(tmp_path)
    assert patient.structure_set is not None and patient.structure_set.names == ("Box",)


def test_equal_roi_names_are_warned_about_and_an_ambiguous_name_is_refused(
        tmp_path: Path) -> None:
    ct = _ct(tmp_path)
    box = [rectangle(2.5, 7.5, 3.5, 9.5, 2.0)]
    rois = [RoiSpec("PTV", 1, box), RoiSpec("ptv", 2, box), RoiSpec("PTV", 3, box)]
    structure_set = load_rtstruct(_write(tmp_path, rois), ct)
    text = "\n".join(structure_set.warnings)
    assert "'PTV' (ROI 1), 'ptv' (ROI 2), 'PTV' (ROI 3) have the same name" in text
    assert structure_set.get("ptv").name == "ptv"  # exact
    with pytest.raises(KeyError, match="several structures are named 'Ptv' but for case"):
        structure_set.get("Ptv")
    # Two exactly equal names: the first was taken (a plan planned on one and reported the
    # other); now neither is.
    with pytest.raises(KeyError, match=r"2 structures are named 'PTV' \(ROI numbers 1, 3\)"):
        structure_set.get("PTV")
