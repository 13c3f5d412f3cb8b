"""The demo patient: valid DICOM (dciodvfy), deterministic, realistic, and the same in memory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from planning.dicom import describe_folder, load_demo_patient, load_patient, write_demo_patient
from planning.patient import Patient

MAX_TOTAL_BYTES = 30 * 1024 * 1024


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    write_demo_patient(folder)
    return folder


@pytest.fixture(scope="module")
def demo() -> Patient:
    return load_demo_patient()


def test_files_written(demo_dir: Path) -> None:
    files = sorted(demo_dir.iterdir())
    assert len(files) == 89
    assert sum(f.stat().st_size for f in files) < MAX_TOTAL_BYTES
    assert not [f for f in files if f.name.startswith(".")]  # no temporary files left


def test_deterministic(demo_dir: Path, tmp_path: Path) -> None:
    written = write_demo_patient(tmp_path / "again")
    assert len(written) == 89
    for path in written:
        assert path.read_bytes() == (demo_dir / path.name).read_bytes(), path.name


def test_import_equals_in_memory(demo_dir: Path, demo: Patient) -> None:
    imported = load_patient(demo_dir)
    assert imported.warnings == ()
    a, b = imported.ct, demo.ct
    np.testing.assert_array_equal(a.hu, b.hu)
    assert a.hu.dtype == b.hu.dtype == np.int16
    assert (a.spacing_mm, a.origin_mm) == (b.spacing_mm, b.origin_mm)
    assert a.sop_instance_uids == b.sop_instance_uids
    assert (a.series_instance_uid, a.frame_of_reference_uid) == (
        b.series_instance_uid,
        b.frame_of_reference_uid,
    )
    assert a.study == b.study and a.patient_position == b.patient_position == "HFS"
    assert imported.structure_set is not None and demo.structure_set is not None
    assert imported.structure_set.sop_instance_uid == demo.structure_set.sop_instance_uid
    for s, t in zip(imported.structure_set.structures, demo.structure_set.structures, strict=True):
        assert (s.name, s.roi_number, s.interpreted_type, s.colour_rgb) == (
            t.name,
            t.roi_number,
            t.interpreted_type,
            t.colour_rgb,
        )
        np.testing.assert_array_equal(s.mask.to_dense(), t.mask.to_dense())
        assert len(s.contours) == len(t.contours)
        for c, d in zip(s.contours, t.contours, strict=True):
            np.testing.assert_array_equal(c.points_mm, d.points_mm)


def test_anatomy_is_realistic(demo: Patient) -> None:
    ct, ss = demo.ct, demo.structure_set
    assert ss is not None
    assert ss.names == (
        "External",
        "Skull",
        "Brain",
        "Sinus",
        "GTV",
        "PTV",
        "Brainstem",
        "Eye_L",
        "Eye_R",
    )
    hu = ct.hu.astype(np.float64)
    mask = {s.name: s.mask.to_dense() for s in ss.structures}
    assert 1000 <= hu[mask["Skull"]].mean() <= 1500
    assert 30 <= np.median(hu[mask["Brain"]]) <= 40
    assert hu[mask["Sinus"]].mean() < -950
    assert hu[~mask["External"]].mean() < -950
    assert abs(hu[mask["GTV"]].mean() - np.median(hu[mask["Brain"]])) >= 10
    assert 3 <= hu[mask["Brain"]].std() <= 15  # noisy like a real scan, not flat
    # the target lies next to the brainstem without touching it; the PTV holds the GTV
    assert not (mask["GTV"] & mask["Brainstem"]).any()
    distance_mm = ndimage.distance_transform_edt(~mask["Brainstem"], sampling=ct.spacing_mm)
    assert 1.0 <= distance_mm[mask["GTV"]].min() <= 10.0
    assert not (mask["GTV"] & ~mask["PTV"]).any()
    for name in ss.names[1:]:
        assert not (mask[name] & ~mask["External"]).any(), name
    # patient's left eye is at +x (LPS), both anterior (-y) to the brainstem
    eye_left_x = np.argwhere(mask["Eye_L"])[:, 2].mean() * ct.spacing_mm[2] + ct.origin_mm[0]
    assert eye_left_x > 0
    # volumes against the analytic ellipsoids 4/3 pi a b c (semi-axes in mm)
    voxel_cm3 = ct.voxel_volume_mm3 / 1000
    assert mask["GTV"].sum() * voxel_cm3 == pytest.approx(4 / 3 * np.pi * 12 * 10 * 13 / 1000, 0.03)
    assert mask["Eye_L"].sum() * voxel_cm3 == pytest.approx(4 / 3 * np.pi * 11**3 / 1000, 0.03)


def test_skull_contours_have_holes(demo: Patient) -> None:
    assert demo.structure_set is not None
    skull = demo.structure_set.get("Skull")
    z = [c.points_mm[0, 2] for c in skull.contours]
    slices, counts = np.unique(z, return_counts=True)
    assert counts.max() >= 2  # outer and inner table on one slice: the inner is a hole
    brain = demo.structure_set.get("brain")  # case-insensitive lookup
    assert not (skull.mask.to_dense() & brain.mask.to_dense()).any()
    assert len(slices) > 10


def test_dciodvfy_reports_no_errors(demo_dir: Path) -> None:
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools)")
    for name in ("CT_000.dcm", "CT_044.dcm", "CT_087.dcm", "RS_demo.dcm"):
        result = subprocess.run(
            [tool, str(demo_dir / name)], capture_output=True, text=True, timeout=60, check=False
        )
        output = result.stdout + result.stderr
        errors = [line for line in output.splitlines() if line.startswith("Error")]
        assert errors == [], f"{name}:\n{output}"
        assert ("CTImage" if name.startswith("CT") else "RTStructureSet") in output


def test_info_lists_series_and_rois(demo_dir: Path, demo: Patient) -> None:
    text = describe_folder(demo_dir)
    assert "CT series: 1" in text and "patient position HFS, 88 slices" in text
    assert "256 x 256 x 88 voxels" in text and "spacing 1.000, 1.000, 2.500 mm" in text
    assert "origin (-127.50, -127.50, -100.00) mm LPS" in text and "HU range -1024 .. " in text
    for name in ("External", "Skull", "Brain", "Sinus", "GTV", "PTV", "Brainstem", "Eye_L"):
        assert name in text
    assert demo.structure_set is not None
    gtv = demo.structure_set.get("GTV")
    line = next(row for row in text.splitlines() if " GTV " in row)
    assert line.split()[-2:] == [
        str(gtv.mask.voxel_count),
        f"{gtv.volume_cm3(demo.ct.spacing_mm):.2f}",
    ]
    assert "255,0,0" in line


def test_the_demo_patient_is_never_written_over_other_files(demo_dir: Path, tmp_path: Path
                                                            ) -> None:
    """`ionplan demo-patient` wrote over another patient's files of the same names, and into a
    folder of other files beside them (found by a CLI review)."""
    import pydicom

    from planning.errors import InputError

    again = tmp_path / "again"
    write_demo_patient(again)
    with pytest.raises(InputError, match="already holds the demo patient's files"):
        write_demo_patient(again)
    assert len(write_demo_patient(again, overwrite=True)) == 89
    other = tmp_path / "other"
    other.mkdir()
    (other / "IMG_1.dcm").write_bytes((demo_dir / "CT_000.dcm").read_bytes())
    with pytest.raises(InputError, match=r"holds other DICOM files \(IMG_1\.dcm\)"):
        write_demo_patient(other, overwrite=True)
    named = tmp_path / "named"
    named.mkdir()
    ds = pydicom.dcmread(demo_dir / "CT_010.dcm")
    ds.PatientID = "OTHER-002"
    ds.save_as(named / "CT_010.dcm")
    with pytest.raises(InputError, match=r"CT_010\.dcm is a file of another patient"):
        write_demo_patient(named, overwrite=True)
    assert pydicom.dcmread(named / "CT_010.dcm").PatientID == "OTHER-002"
    assert sorted(p.name for p in named.iterdir()) == ["CT_010.dcm"]
