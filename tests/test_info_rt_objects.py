"""``ionplan info`` lists RT Ion Plans and RT Doses next to the CT series and structure sets.

The folder holds the demo patient, the hand-built three-beam plan of ``test_rtplan_dicom`` and an
RT Dose of a small Gaussian blob. Bad plan and dose files are listed as unreadable with the
importer's reason; the rest of the folder is still described.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray

from planning.cli import main
from planning.dicom import (
    DicomImportError,
    SeriesSelectionError,
    describe_folder,
    export_rt_dose,
    export_rt_ion_plan,
    folder_info,
    load_patient,
    load_rt_dose,
    load_rt_ion_plan,
    scan_folder,
    write_demo_patient,
)
from planning.dose_grid import DoseGrid
from planning.patient import Patient
from planning.plan import Plan
from tests.dicom_factory import RoiSpec, SeriesSpec, rectangle, rtstruct, save, write_ct_series
from tests.test_rtplan_dicom import SAD_MM, SIGMA_MM, build_plan

PLAN_NAME = "RP_demo.dcm"
DOSE_NAME = "RD_demo.dcm"
RBE_COMMENT = "mMKM HSG Fclin=2.41"
#: (nz, ny, nx) voxels, (sz, sy, sx) mm, LPS (x, y, z) of voxel (0, 0, 0) mm.
GRID = DoseGrid(shape=(6, 9, 8), spacing_mm=(3.0, 2.5, 2.0), origin_mm=(10.0, -4.0, 2.0))


def _blob(grid: DoseGrid) -> NDArray[np.float64]:
    """A Gaussian dose (max 2 Gy) that is exactly zero away from its centre."""
    k, j, i = np.indices(grid.shape, dtype=np.float64)
    r2 = (k - 2.5) ** 2 + (j - 4.0) ** 2 + (i - 3.5) ** 2
    return np.where(r2 < 9.0, 2.0 * np.exp(-r2 / 6.0), 0.0)


@pytest.fixture(scope="module")
def plan(patient: Patient) -> Plan:
    return build_plan(patient)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, patient: Patient, plan: Plan) -> Path:
    """Demo patient + RT Ion Plan + RT Dose (EFFECTIVE) in one folder."""
    out = tmp_path_factory.mktemp("info_rt")
    write_demo_patient(out)
    plan_uid = export_rt_ion_plan(plan, patient, out / PLAN_NAME, sad_mm=SAD_MM,
                                  machine_spot_sigma_mm=SIGMA_MM,
                                  isocenter_to_range_shifter_mm=300.0, uid_seed="info-plan")
    export_rt_dose(_blob(GRID), GRID, patient, out / DOSE_NAME, dose_type="EFFECTIVE",
                   comment=RBE_COMMENT, referenced_plan_uid=plan_uid, uid_seed="info-dose")
    return out


@pytest.fixture(scope="module")
def text(folder: Path) -> str:
    return describe_folder(folder)


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def test_scanner_classifies_plans_and_doses(folder: Path, tmp_path: Path) -> None:
    scan = scan_folder(folder)
    assert scan.rt_ion_plans == (str(folder / PLAN_NAME),)
    assert scan.rt_doses == (str(folder / DOSE_NAME),)
    assert scan.skipped == () and scan.damaged == ()
    assert len(scan.ct_series) == 1 and len(scan.structure_sets) == 1
    photon = pydicom.dcmread(folder / PLAN_NAME)
    photon.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"  # RT Plan (photon): not imported
    photon.save_as(tmp_path / "photon.dcm")
    other = scan_folder(tmp_path)
    assert other.rt_ion_plans == () and len(other.skipped) == 1
    assert "RTPLAN" in other.skipped[0].reason


def test_plan_is_listed(text: str, folder: Path, plan: Plan) -> None:
    imported = load_rt_ion_plan(folder / PLAN_NAME)
    assert "RT Ion Plans: 1" in text
    assert f"[1] Demo plan  {imported.sop_instance_uid}  {folder / PLAN_NAME}" in text
    assert "20 fractions, prescription 60 Gy(RBE) to 'PTV'" in text
    assert f"RBE model: {RBE_COMMENT}" in text
    for gantry, couch in ((90, 0), (270, 0), (270, 10)):
        assert f"gantry {gantry} deg, couch {couch} deg" in text
    assert text.count("3 energy layers 160.00 .. 180.50 MeV/u") == 3
    for beam in plan.beams:
        particles = float(np.sum(beam.weights)) * 1e6
        delivered = int(np.count_nonzero(beam.weights))  # zero-weight spots are not exported
        assert f"{delivered} spots, {particles:.4g} particles per fraction" in text
    assert text.count("range shifter 20.0 mm WET") == 1
    assert text.count("no range shifter") == 2
    iso = plan.beams[0].beam.isocenter_mm
    assert f"isocentre ({iso[0]:.2f}, {iso[1]:.2f}, {iso[2]:.2f}) mm LPS" in text
    assert "unreadable" not in text and "Skipped files" not in text


def test_plan_fields(folder: Path, plan: Plan) -> None:
    (info,) = folder_info(folder).plans
    assert (info.label, info.n_fractions, info.prescription_found) == ("Demo plan", 20, True)
    assert (info.target, info.total_dose_gy_rbe, info.rbe_model) == ("PTV", 60.0, RBE_COMMENT)
    assert info.warnings == () and info.error == ""
    for got, beam in zip(info.beams, plan.beams, strict=True):
        assert got.name == beam.beam.name
        assert (got.gantry_deg, got.couch_deg) == (beam.beam.gantry_deg, beam.beam.couch_deg)
        assert got.isocenter_mm == pytest.approx(beam.beam.isocenter_mm)
        assert got.n_layers == 3 and got.energy_range_mev_u == (160.0, 180.5)
        assert got.n_spots == int(np.count_nonzero(beam.weights))  # zero spots not exported
        assert got.particles_per_fraction == pytest.approx(float(np.sum(beam.weights)) * 1e6,
                                                           rel=1e-6)
        assert got.range_shifter_wet_mm == beam.range_shifter_wet_mm


def test_dose_is_listed(text: str, folder: Path) -> None:
    (info,) = folder_info(folder).doses
    dose = _blob(GRID)
    assert info.max_dose == pytest.approx(float(dose.max()), rel=1e-6)
    assert info.mean_dose == pytest.approx(float(dose[dose > 0].mean()), rel=1e-6)
    assert info.voxels_with_dose == int(np.count_nonzero(dose))
    assert info.shape_xyz == (8, 9, 6) and info.spacing_mm == (2.0, 2.5, 3.0)
    assert "RT Doses: 1" in text
    assert f"dose type EFFECTIVE, units GY, summation PLAN, comment '{RBE_COMMENT}'" in text
    assert ("grid 8 x 9 x 6 voxels (x, y, z), spacing 2.000, 2.500, 3.000 mm, "
            "origin (10.00, -4.00, 2.00) mm LPS") in text
    assert (f"max {info.max_dose:.4g} Gy(RBE), mean {info.mean_dose:.4g} Gy(RBE) over the "
            f"{info.voxels_with_dose} voxels > 0") in text
    plan_uid = load_rt_dose(folder / DOSE_NAME).referenced_plan_uid
    assert f"referenced plan {plan_uid} (plan 'Demo plan' in this folder)" in text


def test_truncated_plan_is_unreadable_and_the_rest_listed(folder: Path, tmp_path: Path) -> None:
    copy = _copy(folder, tmp_path)
    _truncate(copy / PLAN_NAME, 0.5)
    with pytest.raises(DicomImportError) as caught:
        load_rt_ion_plan(copy / PLAN_NAME)
    text = describe_folder(copy)
    assert f"[1] {copy / PLAN_NAME}\n      unreadable: {caught.value.reason}" in text
    assert "RT Ion Plans: 1" in text and "Demo plan" not in text
    assert "CT series: 1" in text and "PTV" in text and "Brainstem" in text
    assert "RT Doses: 1" in text and "grid 8 x 9 x 6 voxels" in text
    assert "(not in this folder)" in text


def test_truncated_dose_is_unreadable(folder: Path, tmp_path: Path) -> None:
    copy = _copy(folder, tmp_path)
    _truncate(copy / DOSE_NAME, 0.7)
    with pytest.raises(DicomImportError) as caught:
        load_rt_dose(copy / DOSE_NAME)
    text = describe_folder(copy)
    assert f"[1] {copy / DOSE_NAME}\n      unreadable: {caught.value.reason}" in text
    assert "[1] Demo plan" in text and "gantry 270 deg, couch 10 deg" in text


def test_plan_without_prescription_is_still_listed(folder: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(folder / PLAN_NAME)
    del ds.DoseReferenceSequence
    ds.save_as(tmp_path / "no_rx.dcm")
    text = describe_folder(tmp_path)
    assert "20 fractions, prescription not found" in text
    assert "warning" not in text
    (info,) = folder_info(tmp_path).plans
    assert not info.prescription_found and info.total_dose_gy_rbe is None and info.target == ""


def test_cli_info(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "RT Ion Plans: 1" in out and "RT Doses: 1" in out and "Demo plan" in out


def test_every_listed_object_names_its_patient(text: str) -> None:
    """The CT series, structure set, plan and dose each carry a patient line."""
    assert text.count("patient IonPlan^Demo Head (IONPLAN-DEMO-001)") == 4
    assert text.count("\n      patient IonPlan^Demo Head (IONPLAN-DEMO-001)\n") == 3


def test_same_named_series_of_two_patients_are_told_apart(tmp_path: Path) -> None:
    """Two patients' series with one description: info and the selection error name each."""
    for tag, pid, name in (("a", "PAT-A", "Alpha^Ann"), ("b", "PAT-B", "Beta^Bob")):
        spec = SeriesSpec(tag=tag, frame_tag=f"for-{tag}", study_tag=f"study-{tag}",
                          extra={"PatientID": pid, "PatientName": name,
                                 "SeriesDescription": "Planning CT"})
        write_ct_series(tmp_path / tag, spec, lambda p: np.zeros(p.shape[:2]))
        rs = rtstruct(spec, [RoiSpec("Box", 1, [rectangle(-1.5, 1.5, -4.5, -1.5, 13.0)])],
                      tag=tag)
        rs.PatientID, rs.PatientName = pid, name
        save(rs, tmp_path / tag / "rs.dcm")
    text = describe_folder(tmp_path)
    for tag, pid, name in (("a", "PAT-A", "Alpha^Ann"), ("b", "PAT-B", "Beta^Bob")):
        assert f"patient {name} ({pid}), study" in text
        assert f"{tmp_path / tag / 'rs.dcm'}\n      patient {name} ({pid})\n" in text
    with pytest.raises(SeriesSelectionError) as caught:
        load_patient(tmp_path)
    assert "'Planning CT'" in caught.value.reason
    assert "patient Alpha^Ann (PAT-A)" in caught.value.reason
    assert "patient Beta^Bob (PAT-B)" in caught.value.reason
