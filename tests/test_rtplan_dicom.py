"""RT Ion Plan export and import: dciodvfy, own consistency checks, round trip, bad input, fuzz.

The plan is built by hand on the demo patient (isocentre at the PTV centre, spots on a 3 mm
lattice), independent of the dose engine's spot placement. Also holds two helpers used by the
RT Dose and RT Structure Set tests: :func:`dciodvfy_report` and :func:`fuzz_cases`.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import random
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from planning.beams import Beam, SpotMap
from planning.dicom import (
    DicomImportError,
    export_rt_ion_plan,
    export_rtstruct,
    load_ct_series,
    load_rt_ion_plan,
)
from planning.dicom._rbe_block import PRIVATE_CREATOR, PRIVATE_GROUP, RECORD_OFFSET
from planning.dicom._spot_lattice import LatticeError, fit_lattice
from planning.errors import InputError, PlanningError
from planning.machine import Machine
from planning.patient import Patient, RoiMask, Structure, StructureSet
from planning.plan import BeamPlan, Plan, Prescription
from planning.rbe import LemModel, MkmModel, RbeModel, Tissue
from planning.rbe.record import model_record
from tests.dicom_factory import ORIENTATIONS, SeriesSpec, write_ct_series

LOG = logging.getLogger(__name__)
SAD_MM = (6500.0, 7200.0)
SIGMA_MM = 3.0
FUZZ_CASES = 100


# --------------------------------------------------------------------------- shared helpers


def dciodvfy_report(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) lines of dciodvfy on ``path``; skips the test if it is not installed."""
    exe = shutil.which("dciodvfy") or "/usr/bin/dciodvfy"
    if not Path(exe).exists():
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    assert not any(line.startswith("Abort") for line in lines), lines[:5]
    errors = [line for line in lines if line.startswith("Error")]
    notes = [line for line in lines if line.startswith("Warning")]
    LOG.info("dciodvfy %s: %d errors, %d warnings", path.name, len(errors), len(notes))
    return errors, notes


def _elements(ds: Dataset) -> Iterator[tuple[Dataset, int]]:
    for elem in list(ds):
        yield ds, int(elem.tag)
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _elements(item)


def _wrong_value(tag: int, rng: random.Random) -> DataElement:
    choice = rng.randrange(6)
    if choice == 0:
        return DataElement(tag, "LO", "garbage", validation_mode=config.IGNORE)
    if choice == 1:
        return DataElement(tag, "DS", "NaN", validation_mode=config.IGNORE)
    if choice == 2:
        return DataElement(tag, "OB", b"\x00\x01\x02\x03", validation_mode=config.IGNORE)
    if choice == 3:
        return DataElement(tag, "SQ", DicomSequence([]), validation_mode=config.IGNORE)
    if choice == 4:
        return DataElement(tag, "IS", "-7", validation_mode=config.IGNORE)
    return DataElement(tag, "FL", [1e30, -1.0], validation_mode=config.IGNORE)


def fuzz_cases(path: Path, n_cases: int, seed: str) -> Iterator[tuple[bytes, str]]:
    """Damaged copies of a DICOM file: truncated, bytes flipped, an element deleted or given a
    value of the wrong type. Seeded; yields ``(file bytes, description)``."""
    data = path.read_bytes()
    base = pydicom.dcmread(path)
    kinds = ("truncate", "flip", "delete", "retype")
    for case in range(n_cases):
        kind = kinds[case % len(kinds)]
        rng = random.Random(f"{seed}-{case}")
        if kind == "truncate":
            at = rng.randrange(len(data))
            yield data[:at], f"truncated at {at}"
        elif kind == "flip":
            out = bytearray(data)
            limit = len(data) if rng.random() < 0.3 else min(len(data), 4000)
            spots = [rng.randrange(limit) for _ in range(rng.randint(1, 8))]
            for at in spots:
                out[at] ^= rng.randint(1, 255)
            yield bytes(out), f"bytes flipped at {spots}"
        else:
            ds = copy.deepcopy(base)
            parent, tag = rng.choice(list(_elements(ds)))
            if kind == "delete":
                del parent[tag]
                what = f"deleted {pydicom.tag.Tag(tag)}"
            else:
                parent.add(_wrong_value(tag, rng))
                what = f"{pydicom.tag.Tag(tag)} retyped to {parent[tag].VR}"
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, ds, enforce_file_format=False)
            yield buf.getvalue(), what


def run_fuzz(source: Path, tmp_path: Path, loader: Callable[[Path], object], seed: str) -> int:
    """Load every fuzz case; only success or DicomImportError may come out. Returns failures."""
    target = tmp_path / "fuzzed.dcm"
    rejected = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data, what in fuzz_cases(source, FUZZ_CASES, seed):
            target.write_bytes(data)
            try:
                loader(target)
            except DicomImportError:
                rejected += 1
            except Exception as exc:  # pragma: no cover - reported as the failure
                pytest.fail(f"{what}: {type(exc).__name__}: {exc}")
    return rejected


# --------------------------------------------------------------------------- fixtures


def _spot_map(energies: list[float], radius_mm: float, spacing_mm: float = 3.0) -> SpotMap:
    e, layer, u, v = [], [], [], []
    n = int(radius_mm // spacing_mm)
    for k, energy in enumerate(energies):
        for i in range(-n, n + 1):
            for j in range(-n, n + 1):
                if np.hypot(i, j) * spacing_mm <= radius_mm - 1.5 * k:
                    e.append(energy)
                    layer.append(k)
                    u.append(i * spacing_mm)
                    v.append(j * spacing_mm)
    return SpotMap(np.array(e), np.array(layer), np.array(u), np.array(v),
                   (spacing_mm, spacing_mm))


def ptv_centre(patient: Patient) -> tuple[float, float, float]:
    """LPS centroid of the demo PTV, mm."""
    assert patient.structure_set is not None
    k, j, i = np.nonzero(patient.structure_set.get("PTV").mask.to_dense())
    z_mm, y_mm, x_mm = patient.ct.axis_positions_mm()
    return (float(x_mm[i].mean()), float(y_mm[j].mean()), float(z_mm[k].mean()))


def build_plan(patient: Patient) -> Plan:
    """Three beams (G90 C0, G270 C0 with a 20 mm range shifter, G270 C10) on the PTV."""
    iso = ptv_centre(patient)
    rng = np.random.default_rng(7)
    beams = []
    for gantry, couch, wet in ((90.0, 0.0, 0.0), (270.0, 0.0, 20.0), (270.0, 10.0, 0.0)):
        spots = _spot_map([180.5, 170.25, 160.0], radius_mm=12.0)
        weights = rng.uniform(0.5, 5.0, spots.n_spots)
        weights[3] = 0.0  # a zero-weight spot inside a delivered layer: not exported
        beams.append(BeamPlan(Beam(iso, gantry, couch, name=f"G{gantry:g} C{couch:g}"), spots,
                              weights, range_shifter_wet_mm=wet))
    return Plan(label="Demo plan", machine_name="GenericC12", beams=tuple(beams),
                prescription=Prescription("PTV", 60.0, 20), rbe_model="mMKM HSG Fclin=2.41")


@pytest.fixture(scope="module")
def plan(patient: Patient) -> Plan:
    return build_plan(patient)


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory: pytest.TempPathFactory, plan: Plan, patient: Patient) -> Path:
    path = tmp_path_factory.mktemp("rtplan") / "RP_demo.dcm"
    export_rt_ion_plan(plan, patient, path, sad_mm=SAD_MM, machine_spot_sigma_mm=SIGMA_MM,
                       isocenter_to_range_shifter_mm=300.0)
    return path


def _edited(plan_file: Path, tmp_path: Path, edit: Callable[[Dataset], None]) -> Path:
    ds = pydicom.dcmread(plan_file)
    edit(ds)
    out = tmp_path / "edited.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


# --------------------------------------------------------------------------- export


def test_dciodvfy_finds_no_error(plan_file: Path) -> None:
    errors, notes = dciodvfy_report(plan_file)
    assert errors == []
    assert notes == []


def test_exported_attributes(plan_file: Path, plan: Plan, patient: Patient) -> None:
    ds = pydicom.dcmread(plan_file)
    ct = patient.ct
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.8"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.StudyInstanceUID == ct.study.study_instance_uid
    assert ds.FrameOfReferenceUID == ct.frame_of_reference_uid
    assert ds.SeriesInstanceUID != ct.series_instance_uid
    assert ds.RTPlanLabel == "Demo plan" and ds.RTPlanGeometry == "PATIENT"
    assert ds.RTPlanDescription.endswith("RBE model: mMKM HSG Fclin=2.41")
    assert patient.structure_set is not None
    assert (ds.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID
            == patient.structure_set.sop_instance_uid)
    assert ds.PatientSetupSequence[0].PatientPosition == "HFS"
    ref = ds.DoseReferenceSequence[0]
    assert ref.DoseReferenceType == "TARGET" and float(ref.TargetPrescriptionDose) == 60.0
    assert ref.ReferencedROINumber == patient.structure_set.get("PTV").roi_number
    group = ds.FractionGroupSequence[0]
    assert group.NumberOfFractionsPlanned == 20 and group.NumberOfBeams == 3
    for beam, bp, ref_beam in zip(ds.IonBeamSequence, plan.beams, group.ReferencedBeamSequence,
                                  strict=True):
        assert (beam.RadiationType, beam.RadiationMassNumber, beam.RadiationAtomicNumber,
                beam.RadiationChargeState) == ("ION", 12, 6, 6)
        assert beam.ScanMode == "MODULATED" and beam.PrimaryDosimeterUnit == "NP"
        assert list(beam.VirtualSourceAxisDistances) == list(SAD_MM)
        points = beam.IonControlPointSequence
        n_layers = np.unique(bp.spots.layer).size
        assert beam.NumberOfControlPoints == len(points) == 2 * n_layers
        first = points[0]
        # what dciodvfy does not check: angles present, spot counts matching the maps
        for keyword in ("GantryAngle", "PatientSupportAngle", "IsocenterPosition",
                        "NominalBeamEnergy"):
            assert keyword in first and first[keyword].value not in (None, "")
        assert float(first.GantryAngle) == bp.beam.gantry_deg
        assert float(first.PatientSupportAngle) == bp.beam.couch_deg
        cumulative = 0.0
        for index, cp in enumerate(points):
            assert cp.ControlPointIndex == index
            n = int(cp.NumberOfScanSpotPositions)
            assert len(cp.ScanSpotPositionMap) == 2 * n
            weights = np.atleast_1d(np.asarray(cp.ScanSpotMetersetWeights, dtype=np.float64))
            assert weights.size == n
            assert float(cp.CumulativeMetersetWeight) == pytest.approx(cumulative, rel=1e-9)
            if index % 2:
                assert np.all(weights == 0)
                assert float(cp.NominalBeamEnergy) == float(points[index - 1].NominalBeamEnergy)
            cumulative += float(weights.sum())
            assert list(cp.ScanningSpotSize) == pytest.approx([2.3548 * SIGMA_MM] * 2, rel=1e-4)
        assert float(beam.FinalCumulativeMetersetWeight) == pytest.approx(cumulative, rel=1e-9)
        assert float(ref_beam.BeamMeterset) == pytest.approx(bp.weights.sum() * 1e6, rel=1e-6)
        if bp.range_shifter_wet_mm:
            assert beam.NumberOfRangeShifters == 1
            setting = first.RangeShifterSettingsSequence[0]
            assert setting.RangeShifterWaterEquivalentThickness == bp.range_shifter_wet_mm
            assert setting.IsocenterToRangeShifterDistance == 300.0
        else:
            assert beam.NumberOfRangeShifters == 0


def test_positions_are_iec_gantry_xy(plan_file: Path, plan: Plan) -> None:
    ds = pydicom.dcmread(plan_file)
    bp = plan.beams[0]
    first_layer = (bp.spots.layer == bp.spots.layer[0]) & (bp.weights > 0)
    xy = np.asarray(ds.IonBeamSequence[0].IonControlPointSequence[0].ScanSpotPositionMap)
    np.testing.assert_allclose(xy[0::2], bp.spots.u_mm[first_layer])
    np.testing.assert_allclose(xy[1::2], bp.spots.v_mm[first_layer])


def test_uids_deterministic_with_seed(tmp_path: Path, plan: Plan, patient: Patient) -> None:
    a = export_rt_ion_plan(plan, patient, tmp_path / "a.dcm", sad_mm=SAD_MM, uid_seed="x")
    b = export_rt_ion_plan(plan, patient, tmp_path / "b.dcm", sad_mm=SAD_MM, uid_seed="x")
    c = export_rt_ion_plan(plan, patient, tmp_path / "c.dcm", sad_mm=SAD_MM)
    assert a == b != c
    assert "ScanningSpotSize" not in pydicom.dcmread(tmp_path / "c.dcm").IonBeamSequence[0] \
        .IonControlPointSequence[0]


def test_machine_spot_size(tmp_path: Path, plan: Plan, patient: Patient, machine: Machine) -> None:
    def sigma(energy_mev_u: float) -> float:
        return float(np.interp(energy_mev_u, machine.energies_mev_u, machine.spot_sigma_air_mm))

    path = tmp_path / "p.dcm"
    export_rt_ion_plan(plan, patient, path, sad_mm=machine.sad_mm, machine_spot_sigma_mm=sigma)
    beam = pydicom.dcmread(path).IonBeamSequence[0]
    assert list(beam.VirtualSourceAxisDistances) == pytest.approx(list(machine.sad_mm))
    for cp in beam.IonControlPointSequence:
        fwhm = 2.0 * np.sqrt(2.0 * np.log(2.0)) * sigma(float(cp.NominalBeamEnergy))
        assert list(cp.ScanningSpotSize) == pytest.approx([fwhm, fwhm], rel=1e-6)


def test_export_refuses_bad_input(tmp_path: Path, plan: Plan, patient: Patient) -> None:
    bare = Patient(ct=patient.ct)
    with pytest.raises(InputError, match="Structure Set"):
        export_rt_ion_plan(plan, bare, tmp_path / "p.dcm", sad_mm=SAD_MM)
    export_rt_ion_plan(plan, bare, tmp_path / "p.dcm", sad_mm=SAD_MM, structure_set_uid="1.2.3")
    with pytest.raises(InputError, match="sad_mm"):
        export_rt_ion_plan(plan, patient, tmp_path / "q.dcm", sad_mm=(-1.0, 5.0))
    with pytest.raises(InputError, match="sigma"):
        export_rt_ion_plan(plan, patient, tmp_path / "q.dcm", sad_mm=SAD_MM,
                           machine_spot_sigma_mm=lambda e: float("nan"))
    assert not (tmp_path / "q.dcm").exists()


# --------------------------------------------------------------------------- round trip


NAME_V2 = "Head C12 boost plan v2 long name"


@pytest.mark.parametrize(("name", "label", "named", "source"), [
    (NAME_V2, "Head C12 boost p", NAME_V2, "RT Plan Name"),  # IonPlan's: the label is cut
    ("Sacrum boost", None, "Sacrum boost", "RT Plan Name"),  # no label (DICOM requires it)
    ("", "HN_C12_v2", "HN_C12_v2", "RT Plan Label"),  # many systems fill only the label
    (None, "HN_C12_v2", "HN_C12_v2", "RT Plan Label"),
])
def test_a_plan_is_named_by_its_plan_name_else_its_label(
        plan_file: Path, patient: Patient, tmp_path: Path, name: str | None,
        label: str | None, named: str, source: str) -> None:
    """A plan was named by its RT Plan Label (16 characters): "Head C12 boost plan v1" and
    "... v2" were both "Head C12 boost p" in recalc's and compare's outputs (review). Its RT
    Plan Name (64) names it; the label, where the name is absent or empty."""
    def edit(ds: Dataset) -> None:
        for keyword, value in (("RTPlanName", name), ("RTPlanLabel", label)):
            if value is None:
                del ds[keyword]
            else:
                setattr(ds, keyword, value)

    imported = load_rt_ion_plan(_edited(plan_file, tmp_path, edit),
                                structure_set=patient.structure_set)
    assert imported.plan.label == named
    assert (imported.name_source, imported.rt_plan_label) == (source, label or "")
    assert not any("RT Plan" in w for w in imported.warnings)


def test_a_plan_without_a_name_or_label_is_named_by_its_file(
        plan_file: Path, patient: Patient, tmp_path: Path) -> None:
    """Every plan with neither an RT Plan Name nor an RT Plan Label (Type 1) was "imported":
    two such plans in one comparison or GUI session could not be told apart, and nothing
    said why."""
    def nothing(ds: Dataset) -> None:
        del ds.RTPlanLabel
        if "RTPlanName" in ds:
            del ds.RTPlanName

    imported = load_rt_ion_plan(_edited(plan_file, tmp_path, nothing),
                                structure_set=patient.structure_set)
    assert (imported.plan.label, imported.name_source) == ("edited", "file name")
    assert ("the plan has neither an RT Plan Name (300A,0003) nor the RT Plan Label "
            "(300A,0002) DICOM requires: it is named 'edited' (file name)") in imported.warnings


@pytest.mark.parametrize("values", [[0.0, 0.0], [2000.0], [-6.5e3, 6.5e3]])
def test_virtual_source_axis_distances_that_are_no_distances_are_named(
        plan_file: Path, patient: Patient, tmp_path: Path, values: list[float]) -> None:
    """A Virtual Source-Axis Distances of one value or of zeros was dropped without a word,
    and the plan's SAD went unchecked against the beam model."""
    def edit(ds: Dataset) -> None:
        ds.IonBeamSequence[0].VirtualSourceAxisDistances = values

    imported = load_rt_ion_plan(_edited(plan_file, tmp_path, edit),
                                structure_set=patient.structure_set)
    name = imported.plan.beams[0].beam.label
    shown = " / ".join(f"{v:g}" for v in values)
    assert (f"beam {name!r}: Virtual Source-Axis Distances {shown} mm are not two positive "
            "distances (x, y): not compared with the beam model's") in imported.warnings
    assert imported.sad_mm[0] is None and imported.sad_mm[1] == SAD_MM


def test_round_trip(plan_file: Path, plan: Plan, patient: Patient) -> None:
    imported = load_rt_ion_plan(plan_file, structure_set=patient.structure_set)
    assert imported.prescription_found
    assert imported.warnings == ()
    back = imported.plan
    assert back.prescription == plan.prescription
    assert (back.label, back.machine_name, back.rbe_model) == (
        plan.label, plan.machine_name, plan.rbe_model)
    assert (back.ion_z, back.ion_a) == (6, 12)
    assert imported.sad_mm == (SAD_MM,) * 3
    assert imported.frame_of_reference_uid == patient.ct.frame_of_reference_uid
    assert imported.patient_position == "HFS"
    for a, b in zip(plan.beams, back.beams, strict=True):
        assert b.beam == a.beam
        assert b.range_shifter_wet_mm == a.range_shifter_wet_mm
        assert b.spots.spacing_mm == a.spots.spacing_mm
        assert b.spots.lattice_origin_mm == a.spots.lattice_origin_mm
        kept = a.weights > 0  # the zero-weight spot is not exported
        assert b.spots.n_spots == a.spots.n_spots - 1
        np.testing.assert_array_equal(b.spots.layer, a.spots.layer[kept])
        np.testing.assert_array_equal(b.spots.energy_mev_u, a.spots.energy_mev_u[kept])
        np.testing.assert_array_equal(b.spots.u_mm, a.spots.u_mm[kept])
        np.testing.assert_array_equal(b.spots.v_mm, a.spots.v_mm[kept])
        # float32 meterset weights: 6e-8 relative
        np.testing.assert_allclose(b.weights, a.weights[kept], rtol=2e-7, atol=0)
        assert np.all(b.weights > 0)


def test_negative_angles_normalised(tmp_path: Path, plan: Plan, patient: Patient) -> None:
    bp = plan.beams[2]
    turned = replace(bp, beam=replace(bp.beam, gantry_deg=-90.0, couch_deg=-10.0))
    path = tmp_path / "p.dcm"
    export_rt_ion_plan(replace(plan, beams=(turned,)), patient, path, sad_mm=SAD_MM)
    first = pydicom.dcmread(path).IonBeamSequence[0].IonControlPointSequence[0]
    assert (float(first.GantryAngle), float(first.PatientSupportAngle)) == (270.0, 350.0)
    beam = load_rt_ion_plan(path).plan.beams[0].beam
    assert (beam.gantry_deg, beam.couch_deg) == (270.0, -10.0)


def test_plan_on_feet_first_ct(tmp_path: Path, plan: Plan) -> None:
    spec = SeriesSpec(rows=8, columns=8, n_slices=3, orientation=ORIENTATIONS["FFS"],
                      patient_position="", tag="plan-ffs")  # position from the orientation
    write_ct_series(tmp_path / "ct", spec, lambda p: np.zeros(p.shape[:-1]))
    ct = load_ct_series(tmp_path / "ct")
    target = np.zeros(ct.shape, dtype=bool)
    target[1, 2:5, 2:5] = True
    structures = StructureSet((Structure("PTV", 1, "PTV", None, RoiMask.from_dense(target)),),
                              ct.frame_of_reference_uid, "", "")
    rs_uid = export_rtstruct(structures, ct, tmp_path / "rs.dcm", label="FFS")
    path = tmp_path / "plan.dcm"
    export_rt_ion_plan(plan, Patient(ct=ct), path, sad_mm=SAD_MM, structure_set_uid=rs_uid)
    errors, notes = dciodvfy_report(path)
    assert errors == [] and notes == []
    ds = pydicom.dcmread(path)
    assert ds.PatientSetupSequence[0].PatientPosition == "FFS"
    assert ds.FrameOfReferenceUID == spec.frame_uid
    assert ds.DoseReferenceSequence[0].DoseReferenceStructureType == "SITE"  # no ROI known
    imported = load_rt_ion_plan(path)
    assert imported.referenced_structure_set_uid == rs_uid
    assert imported.patient_position == "FFS"
    assert all(b.beam.patient_position == "FFS" for b in imported.plan.beams)
    assert not any("patient position" in w for w in imported.warnings)


def test_a_ct_without_patient_position_sets_the_beams_up_as_its_orientation_says(
        tmp_path: Path, plan: Plan) -> None:
    """Patient Position may be empty (Type 2C): the orientation's FFS then holds for the
    planner, the recalculation and the check of a received plan (they assumed HFS, reversing
    lateral beams, and let an HFS plan pass)."""
    from dataclasses import replace as _replace

    from planning.compare.recalc import check_plan_on_ct, prepare_recalc

    spec = SeriesSpec(rows=8, columns=8, n_slices=3, orientation=ORIENTATIONS["FFS"],
                      patient_position="", tag="empty-ffs")
    write_ct_series(tmp_path / "ct", spec, lambda p: np.zeros(p.shape[:-1]))
    ct = load_ct_series(tmp_path / "ct")
    assert ct.patient_position == "" and ct.setup_position() == "FFS"
    patient = Patient(ct=ct)
    with pytest.raises(PlanningError, match=r"HFS but the CT was scanned FFS .implied"):
        check_plan_on_ct(patient, ct.frame_of_reference_uid, "HFS", "plan.dcm")
    assert check_plan_on_ct(patient, ct.frame_of_reference_uid, "FFS") == []
    no_shifter = _replace(plan, beams=tuple(_replace(b, range_shifter_wet_mm=0.0)
                                            for b in plan.beams))
    setup = prepare_recalc(patient, no_shifter, grid_mm=5.0, device="cpu")
    assert {b.patient_position for b in setup.beams} == {"FFS"}
    decubitus = _replace(ct, patient_position="HFDL")
    with pytest.raises(InputError, match="scanned HFDL; IonPlan plans in HFS, HFP, FFS, FFP"):
        decubitus.setup_position()


# --------------------------------------------------------------------------- import rules


def _beam(ds: Dataset, n: int = 0) -> Dataset:
    return ds.IonBeamSequence[n]


def _set_proton(ds: Dataset) -> None:
    _beam(ds).RadiationType = "PROTON"


def _set_helium(ds: Dataset) -> None:
    _beam(ds).RadiationAtomicNumber = 2
    _beam(ds).RadiationMassNumber = 4


def _set_uniform(ds: Dataset) -> None:
    _beam(ds).ScanMode = "UNIFORM"


def _add_modulator(ds: Dataset) -> None:
    _beam(ds).NumberOfRangeModulators = 1


def _add_compensator(ds: Dataset) -> None:
    _beam(ds).NumberOfCompensators = 1


def _add_bolus(ds: Dataset) -> None:
    _beam(ds).NumberOfBoli = 1


def _drop_wet(ds: Dataset) -> None:
    del _beam(ds, 1).IonControlPointSequence[0].RangeShifterSettingsSequence[0] \
        .RangeShifterWaterEquivalentThickness


def _drop_shifter_settings(ds: Dataset) -> None:
    del _beam(ds, 1).IonControlPointSequence[0].RangeShifterSettingsSequence


def _drop_gantry(ds: Dataset) -> None:
    del _beam(ds).IonControlPointSequence[0].GantryAngle


def _drop_isocentre(ds: Dataset) -> None:
    _beam(ds).IonControlPointSequence[0].IsocenterPosition = None


def _arc(ds: Dataset) -> None:
    _beam(ds).IonControlPointSequence[2].GantryAngle = 95


def _miscount(ds: Dataset) -> None:
    cp = _beam(ds).IonControlPointSequence[0]
    cp.NumberOfScanSpotPositions = int(cp.NumberOfScanSpotPositions) + 1


def _off_lattice(ds: Dataset) -> None:
    cp = _beam(ds).IonControlPointSequence[0]
    xy = list(cp.ScanSpotPositionMap)
    xy[0] += 0.4
    cp.ScanSpotPositionMap = xy


def _duplicate_spot(ds: Dataset) -> None:
    cp = _beam(ds).IonControlPointSequence[0]
    xy = list(cp.ScanSpotPositionMap)
    xy[2:4] = xy[0:2]
    cp.ScanSpotPositionMap = xy


def _meterset_mismatch(ds: Dataset) -> None:
    _beam(ds).FinalCumulativeMetersetWeight = "1"


def _unit_minute(ds: Dataset) -> None:
    _beam(ds).PrimaryDosimeterUnit = "MINUTE"


def _two_groups(ds: Dataset) -> None:
    ds.FractionGroupSequence.append(copy.deepcopy(ds.FractionGroupSequence[0]))


def _no_group(ds: Dataset) -> None:
    del ds.FractionGroupSequence


def _not_ion(ds: Dataset) -> None:
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"


def _eccentric(ds: Dataset) -> None:
    _beam(ds).IonControlPointSequence[0].TableTopEccentricAngle = 15


def _two_positions(ds: Dataset) -> None:
    second = copy.deepcopy(ds.PatientSetupSequence[0])
    second.PatientSetupNumber = 2
    second.PatientPosition = "FFS" if ds.PatientSetupSequence[0].PatientPosition != "FFS" else "HFS"
    ds.PatientSetupSequence.append(second)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set_proton, "radiation type PROTON"),
        (_set_helium, "atomic number 2"),
        (_set_uniform, "Scan Mode UNIFORM"),
        (_add_modulator, "ridge filter"),
        (_add_compensator, "compensator"),
        (_add_bolus, "bolus"),
        (_drop_wet, "G270 C0.*Water Equivalent Thickness"),
        (_drop_shifter_settings, "G270 C0.*range shifters"),
        (_drop_gantry, "G90 C0.*GantryAngle missing"),
        (_drop_isocentre, "IsocenterPosition missing"),
        (_arc, "GantryAngle changes"),
        (_miscount, "Number of Scan Spot Positions"),
        (_off_lattice, "G90 C0.*not on a regular lattice"),
        (_duplicate_spot, "G90 C0.*same position"),
        (_meterset_mismatch, "Final Cumulative Meterset Weight"),
        (_unit_minute, "Primary Dosimeter Unit MINUTE"),
        (_two_groups, "2 fraction groups"),
        (_no_group, "Fraction Group"),
        (_not_ion, "not an RT Ion Plan"),
        (_two_positions, "patient setups differ in position"),
        (_eccentric, "TableTopEccentricAngle 15.0 deg; only 0"),
    ],
)
def test_import_refuses(
    plan_file: Path, tmp_path: Path, edit: Callable[[Dataset], None], message: str
) -> None:
    path = _edited(plan_file, tmp_path, edit)
    with pytest.raises(DicomImportError, match=message) as info:
        load_rt_ion_plan(path)
    assert str(path) in str(info.value)


def test_import_takes_a_lattice_centred_on_the_isocentre(plan_file: Path, tmp_path: Path
                                                         ) -> None:
    """A vendor's 3 mm grid with an even count per row lies at +-1.5, +-4.5 mm: its lattice
    origin is half a spacing, and rounding u / spacing would put 1.5 and -1.5 on one node."""
    xs = np.array([-4.5, -1.5, 1.5, 4.5])
    xy = np.array([(x, y) for y in xs for x in xs], dtype=np.float32)

    def centred(ds: Dataset) -> None:
        beam = _beam(ds)
        weights = np.full(len(xy), 1e6, np.float32)
        for i, cp in enumerate(beam.IonControlPointSequence):
            cp.NumberOfScanSpotPositions = len(xy)
            cp.ScanSpotPositionMap = xy.ravel().tolist()
            cp.ScanSpotMetersetWeights = (weights if i % 2 == 0 else 0 * weights).tolist()
            cp.CumulativeMetersetWeight = float(weights.sum()) * ((i + 1) // 2)
        total = float(weights.sum()) * (len(beam.IonControlPointSequence) // 2)
        beam.FinalCumulativeMetersetWeight = total
        for ref in ds.FractionGroupSequence[0].ReferencedBeamSequence:
            if ref.ReferencedBeamNumber == beam.BeamNumber:
                ref.BeamMeterset = total

    spots = load_rt_ion_plan(_edited(plan_file, tmp_path, centred)).plan.beams[0].spots
    assert spots.spacing_mm == (3.0, 3.0)
    layer0 = spots.layer == 0
    assert sorted(set(np.round(spots.u_mm[layer0], 3))) == [-4.5, -1.5, 1.5, 4.5]
    assert int(layer0.sum()) == 16


def test_a_line_scanned_beam_is_imported_with_a_warning(plan_file: Path, tmp_path: Path
                                                         ) -> None:
    def online(ds: Dataset) -> None:
        for beam in ds.IonBeamSequence:
            beam.ModulatedScanModeType = "ONLINE"

    imported = load_rt_ion_plan(_edited(plan_file, tmp_path, online))
    assert sum("Modulated Scan Mode Type ONLINE" in w for w in imported.warnings) == 3


def test_a_setup_beam_needs_no_meterset(plan_file: Path, tmp_path: Path) -> None:
    """Beam Meterset is Type 3 in the fraction group: a SETUP beam listed without one is
    skipped with the plan imported (the whole import was refused); a treatment beam without
    one is still refused."""
    def with_setup_beam(ds: Dataset) -> None:
        setup = copy.deepcopy(_beam(ds))
        setup.BeamNumber = 9
        setup.TreatmentDeliveryType = "SETUP"
        ds.IonBeamSequence.append(setup)
        ref = Dataset()
        ref.ReferencedBeamNumber = 9
        ds.FractionGroupSequence[0].ReferencedBeamSequence.append(ref)
        ds.FractionGroupSequence[0].NumberOfBeams = 4  # Number of Beams counts the items

    imported = load_rt_ion_plan(_edited(plan_file, tmp_path, with_setup_beam))
    assert len(imported.plan.beams) == 3
    assert any("SETUP beam skipped" in w for w in imported.warnings)

    def no_meterset(ds: Dataset) -> None:
        del ds.FractionGroupSequence[0].ReferencedBeamSequence[0].BeamMeterset

    with pytest.raises(DicomImportError, match="Beam Meterset missing"):
        load_rt_ion_plan(_edited(plan_file, tmp_path, no_meterset))


def test_mu_needs_the_monitor_calibration_applied_per_energy_layer(
        plan_file: Path, tmp_path: Path, plan: Plan) -> None:
    """A plan in MU is refused without the machine's calibration; with one, each layer's
    particles are its spots' MU times the particles per MU at the layer's energy."""
    from planning.monitor_calibration import parse_monitor_calibration

    def to_mu(ds: Dataset) -> None:
        for beam in ds.IonBeamSequence:
            beam.PrimaryDosimeterUnit = "MU"
        for ref in ds.FractionGroupSequence[0].ReferencedBeamSequence:
            ref.BeamMeterset = f"{float(ref.BeamMeterset) / 2e5:.10g}"

    path = _edited(plan_file, tmp_path, to_mu)
    with pytest.raises(DicomImportError, match="monitor calibration"):
        load_rt_ion_plan(path)
    constant = load_rt_ion_plan(path, monitor_calibration=parse_monitor_calibration("2e5"))
    for a, b in zip(plan.beams, constant.plan.beams, strict=True):
        np.testing.assert_allclose(b.weights, a.weights[a.weights > 0], rtol=1e-6)
    assert any("200000 particles/MU at every energy" in w and "approximation" in w
               for w in constant.warnings), constant.warnings
    # Calibrated at 200 MeV/u: the other layers scale with the stopping power of air.
    scaled = load_rt_ion_plan(path, monitor_calibration=parse_monitor_calibration("2e5@200"))
    for a, b in zip(constant.plan.beams, scaled.plan.beams, strict=True):
        energies = b.spots.energy_mev_u
        ratio = b.weights / a.weights
        low, high = np.argmin(energies), np.argmax(energies)
        assert energies[low] < 200 < energies[high] or energies[high] <= 200
        assert ratio[low] < ratio[high]  # fewer particles per MU at lower energy
        np.testing.assert_allclose(ratio, [parse_monitor_calibration("2e5@200").at(e) / 2e5
                                           for e in energies], rtol=1e-9)
    # A table that does not reach the plan's energies is refused, naming the beam.
    table = tmp_path / "mu.csv"
    table.write_text("energy_MeV_u,particles_per_MU\n300,2.6e5\n430,3.1e5\n")
    with pytest.raises(DicomImportError, match=r"beam .*no value at .* MeV/u"):
        load_rt_ion_plan(path, monitor_calibration=parse_monitor_calibration(table))


def test_missing_prescription_needs_fallback(plan_file: Path, tmp_path: Path) -> None:
    path = _edited(plan_file, tmp_path, lambda ds: delattr(ds, "DoseReferenceSequence"))
    with pytest.raises(DicomImportError, match="fallback_prescription"):
        load_rt_ion_plan(path)
    fallback = Prescription("CTV", 54.0, 18)
    imported = load_rt_ion_plan(path, fallback_prescription=fallback)
    assert not imported.prescription_found
    assert imported.plan.prescription == fallback


def test_target_named_from_roi_number(plan_file: Path, tmp_path: Path, patient: Patient) -> None:
    path = _edited(plan_file, tmp_path,
                   lambda ds: delattr(ds.DoseReferenceSequence[0], "DoseReferenceDescription"))
    assert load_rt_ion_plan(path, structure_set=patient.structure_set).plan.prescription \
        .target == "PTV"
    assert not load_rt_ion_plan(path, fallback_prescription=Prescription("X", 1.0, 1)) \
        .prescription_found


def test_lateral_spreading_device_warns(plan_file: Path, tmp_path: Path) -> None:
    def add(ds: Dataset) -> None:
        _beam(ds).NumberOfLateralSpreadingDevices = 1

    imported = load_rt_ion_plan(_edited(plan_file, tmp_path, add))
    assert any("lateral spreading" in w for w in imported.warnings)


def test_setup_beam_skipped(plan_file: Path, tmp_path: Path) -> None:
    def setup(ds: Dataset) -> None:
        _beam(ds, 2).TreatmentDeliveryType = "SETUP"

    imported = load_rt_ion_plan(_edited(plan_file, tmp_path, setup))
    assert len(imported.plan.beams) == 2
    assert any("SETUP beam skipped" in w for w in imported.warnings)


def test_positions_snapped_within_tolerance(plan_file: Path, tmp_path: Path, plan: Plan) -> None:
    def jitter(ds: Dataset) -> None:
        rng = np.random.default_rng(3)
        for cp in _beam(ds).IonControlPointSequence:
            xy = np.asarray(cp.ScanSpotPositionMap, dtype=np.float64)
            cp.ScanSpotPositionMap = (xy + rng.uniform(-0.004, 0.004, xy.size)).tolist()

    back = load_rt_ion_plan(_edited(plan_file, tmp_path, jitter)).plan.beams[0].spots
    bp = plan.beams[0]
    np.testing.assert_array_equal(back.u_mm, bp.spots.u_mm[bp.weights > 0])
    assert back.spacing_mm == (3.0, 3.0)


# --------------------------------------------------------------------------- lattice


def test_lattice_fits_interleaved_and_offset_patterns() -> None:
    # hexagonal-like: odd rows shifted by half a spacing -> u lattice of 2.5 mm
    u, v = [], []
    for j in range(6):
        for i in range(5):
            u.append(i * 5.0 + (2.5 if j % 2 else 0.0) + 1.0)
            v.append(j * 4.0 - 7.0)
    fit = fit_lattice(np.array(u, np.float32), np.array(v, np.float32))
    assert fit.spacing_mm == (2.5, 4.0)
    assert fit.origin_mm == (1.0, 1.0)  # -7 lies on the 4 mm lattice through 1
    np.testing.assert_allclose(fit.u_mm, u, atol=1e-12)
    single = fit_lattice(np.array([2.0]), np.array([-3.0]))
    assert single.spacing_mm == (1.0, 1.0)
    np.testing.assert_array_equal(single.u_mm, [2.0])
    column = fit_lattice(np.array([4.0, 4.0, 4.0]), np.array([0.0, 3.0, 9.0]))
    assert column.spacing_mm == (3.0, 3.0) and column.origin_mm == (1.0, 0.0)


def test_lattice_refuses_irregular_positions() -> None:
    with pytest.raises(LatticeError, match="not on a regular lattice"):
        fit_lattice(np.array([0.0, 3.0, 6.0, 7.1]), np.zeros(4))


# --------------------------------------------------------------------------- fuzz


def test_fuzz_rt_ion_plan(plan_file: Path, tmp_path: Path) -> None:
    rejected = run_fuzz(plan_file, tmp_path, lambda p: load_rt_ion_plan(p), "rtplan")
    assert 0 < rejected < FUZZ_CASES


# --------------------------------------------------------------------------- RBE model record


def test_rbe_model_record_round_trip(tmp_path: Path, plan: Plan, patient: Patient) -> None:
    model = LemModel(Tissue("brainstem", 0.123456789, 0.0456, 27.5, nucleus_radius_um=4.5))
    with_model = replace(plan, rbe_model=model.describe(), rbe=model)
    path = tmp_path / "RP_lem.dcm"
    export_rt_ion_plan(with_model, patient, path, sad_mm=SAD_MM)
    ds = pydicom.dcmread(path)
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    record = json.loads(block[RECORD_OFFSET].value)
    assert block[RECORD_OFFSET].VR == "UT"
    assert record == model_record(model)
    assert ds.RTPlanDescription.endswith(f"RBE model: {model.describe()}")
    errors, _ = dciodvfy_report(path)
    assert errors == []
    back = load_rt_ion_plan(path).plan
    assert back.rbe == model and back.rbe_model == model.describe()


def test_plan_without_a_model_has_no_record(plan_file: Path, plan: Plan) -> None:
    # build_plan names its model only in words: no record is written, none read back, and
    # the words still come back from the RT Plan Description.
    assert PRIVATE_GROUP not in {e.tag.group for e in pydicom.dcmread(plan_file)}
    back = load_rt_ion_plan(plan_file).plan
    assert back.rbe is None and back.rbe_model == plan.rbe_model


def test_plan_model_text_must_match_its_model(plan: Plan) -> None:
    with pytest.raises(PlanningError, match="not its model's description"):
        replace(plan, rbe=MkmModel())  # the text is a shortened mMKM line


def test_corrupt_rbe_model_record_is_refused(plan_file: Path, tmp_path: Path) -> None:
    def edit(ds: Dataset) -> None:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
        block.add_new(RECORD_OFFSET, "UT", '{"format": "ionplan-rbe-model/1", "model": "LEM I"')

    with pytest.raises(DicomImportError, match="RBE model record"):
        load_rt_ion_plan(_edited(plan_file, tmp_path, edit))


# --------------------------------------------------------------------------- delivered spots


def _sparse_plan(plan: Plan) -> Plan:
    """The first beam with its middle layer all zero, two more zero spots and one whose
    particles underflow float32 (1e-52 x 10^6 ions)."""
    bp = plan.beams[0]
    w = bp.weights.copy()
    w[bp.spots.layer == 1] = 0.0
    first = np.flatnonzero(bp.spots.layer == 0)
    w[first[[0, 5]]] = 0.0
    w[first[7]] = 1e-52
    return replace(plan, beams=(replace(bp, weights=w), *plan.beams[1:]))


def test_export_drops_zero_spots_and_empty_layers(tmp_path: Path, plan: Plan,
                                                  patient: Patient) -> None:
    sparse = _sparse_plan(plan)
    path = tmp_path / "sparse.dcm"
    export_rt_ion_plan(sparse, patient, path, sad_mm=SAD_MM)
    errors, notes = dciodvfy_report(path)
    assert errors == [] and notes == []
    ds = pydicom.dcmread(path)
    beam = ds.IonBeamSequence[0]
    bp = sparse.beams[0]
    points = beam.IonControlPointSequence
    assert beam.NumberOfControlPoints == len(points) == 4  # layers 0 and 2, one pair each
    assert [float(cp.NominalBeamEnergy) for cp in points] == [180.5, 180.5, 160.0, 160.0]
    cumulative = 0.0
    n_written = 0
    for index, cp in enumerate(points):
        weights = np.atleast_1d(np.asarray(cp.ScanSpotMetersetWeights, dtype=np.float64))
        assert float(cp.CumulativeMetersetWeight) == pytest.approx(cumulative, rel=1e-9)
        if index % 2 == 0:
            assert np.all(weights > 0)  # every spot written delivers
            n_written += weights.size
        else:
            assert np.all(weights == 0)
        cumulative += float(weights.sum())
    delivered = bp.weights * 1e6
    delivered = delivered[delivered.astype(np.float32) > 0]
    assert n_written == delivered.size == np.count_nonzero(bp.weights) - 1
    assert float(beam.FinalCumulativeMetersetWeight) == pytest.approx(cumulative, rel=1e-9)
    assert float(beam.FinalCumulativeMetersetWeight) == pytest.approx(delivered.sum(), rel=1e-6)
    ref = ds.FractionGroupSequence[0].ReferencedBeamSequence[0]
    assert float(ref.BeamMeterset) == pytest.approx(float(beam.FinalCumulativeMetersetWeight),
                                                    rel=1e-12)
    back = load_rt_ion_plan(path).plan.beams[0]
    assert back.spots.n_spots == delivered.size and np.all(back.weights > 0)
    assert np.unique(back.spots.layer).size == 2


def test_export_refuses_a_beam_without_particles(tmp_path: Path, plan: Plan,
                                                 patient: Patient) -> None:
    bp = plan.beams[1]
    empty = replace(plan, beams=(plan.beams[0], replace(bp, weights=np.zeros_like(bp.weights))))
    with pytest.raises(InputError, match=r"G270 C0.*no spot with particles"):
        export_rt_ion_plan(empty, patient, tmp_path / "p.dcm", sad_mm=SAD_MM)


def test_export_refuses_spots_outside_the_machine_limits(tmp_path: Path, plan: Plan,
                                                         patient: Patient) -> None:
    weights = plan.all_weights()
    low, top = float(weights[weights > 0].min()) * 1e6, float(weights.max()) * 1e6
    ok = tmp_path / "ok.dcm"
    export_rt_ion_plan(plan, patient, ok, sad_mm=SAD_MM, particles_per_spot=(low, top))
    with pytest.raises(InputError, match=r"G90 C0: 1 spot\(s\) below"):
        export_rt_ion_plan(plan, patient, tmp_path / "low.dcm", sad_mm=SAD_MM,
                           particles_per_spot=(low * 1.0001, top * 2))
    with pytest.raises(InputError, match="above its maximum"):
        export_rt_ion_plan(plan, patient, tmp_path / "top.dcm", sad_mm=SAD_MM,
                           particles_per_spot=(low / 2, top * 0.999))


# --------------------------------------------------------------------------- beam doses


def _with_beam_doses(plan: Plan, patient: Patient, model: RbeModel | None = None) -> Plan:
    from planning.plan import BeamDoses

    model = model or MkmModel()
    doses = BeamDoses(point_mm=ptv_centre(patient), physical_gy=(0.4, 0.35, 0.25),
                      rbe_weighted_gy_rbe=(1.2, 1.05, 0.75))
    return replace(plan, rbe=model, rbe_model=model.describe(), beam_doses=doses)


def test_beam_doses_written_and_read_back(tmp_path: Path, plan: Plan, patient: Patient) -> None:
    dosed = _with_beam_doses(plan, patient)
    path = tmp_path / "dosed.dcm"
    export_rt_ion_plan(dosed, patient, path, sad_mm=SAD_MM)
    errors, notes = dciodvfy_report(path)
    assert errors == [] and notes == []
    ds = pydicom.dcmread(path)
    prescription, point = ds.DoseReferenceSequence
    assert float(prescription.TargetPrescriptionDose) == 60.0  # RBE-weighted, as prescribed
    assert point.DoseReferenceStructureType == "COORDINATES"
    assert [float(v) for v in point.DoseReferencePointCoordinates] == pytest.approx(
        ptv_centre(patient))
    group = ds.FractionGroupSequence[0]
    assert group.BeamDoseMeaning == "BEAM_LEVEL"
    for ref, phys, eff in zip(group.ReferencedBeamSequence, (0.4, 0.35, 0.25),
                              (1.2, 1.05, 0.75), strict=True):
        assert ref.ReferencedDoseReferenceUID == point.DoseReferenceUID
        assert (ref.BeamDoseType, ref.AlternateBeamDoseType) == ("EFFECTIVE", "PHYSICAL")
        assert (float(ref.BeamDose), float(ref.AlternateBeamDose)) == (eff, phys)
    imported = load_rt_ion_plan(path)
    assert imported.plan.beam_doses == dosed.beam_doses
    assert imported.warnings == ()
    # a file of an earlier version (no beam doses) still reads, without them
    old = _edited(path, tmp_path, lambda d: [
        delattr(r, k) for r in d.FractionGroupSequence[0].ReferencedBeamSequence
        for k in ("BeamDose", "BeamDoseType", "AlternateBeamDose", "AlternateBeamDoseType",
                  "ReferencedDoseReferenceUID")])
    assert load_rt_ion_plan(old).plan.beam_doses is None


def test_physical_plan_writes_physical_beam_doses(tmp_path: Path, plan: Plan,
                                                  patient: Patient) -> None:
    from planning.plan import BeamDoses
    from planning.rbe import PhysicalDose

    dosed = _with_beam_doses(plan, patient, PhysicalDose())
    assert dosed.beam_doses is not None
    dosed = replace(dosed, beam_doses=BeamDoses(dosed.beam_doses.point_mm, (0.4, 0.35, 0.25),
                                                (0.4, 0.35, 0.25)))
    path = tmp_path / "physical.dcm"
    export_rt_ion_plan(dosed, patient, path, sad_mm=SAD_MM)
    ref = pydicom.dcmread(path).FractionGroupSequence[0].ReferencedBeamSequence[0]
    assert ref.BeamDoseType == "PHYSICAL" and float(ref.BeamDose) == 0.4
    assert "AlternateBeamDose" not in ref
    assert load_rt_ion_plan(path).plan.beam_doses == dosed.beam_doses


def test_beam_doses_at_different_points_are_not_read(tmp_path: Path, plan: Plan,
                                                     patient: Patient) -> None:
    path = tmp_path / "dosed.dcm"
    export_rt_ion_plan(_with_beam_doses(plan, patient), patient, path, sad_mm=SAD_MM)

    def split(ds: Dataset) -> None:
        ds.FractionGroupSequence[0].ReferencedBeamSequence[1].ReferencedDoseReferenceUID = "1.2.3"

    imported = load_rt_ion_plan(_edited(path, tmp_path, split))
    assert imported.plan.beam_doses is None
    assert any("dose specification point" in w for w in imported.warnings)


def test_plan_description_stays_within_short_text(patient: Patient, tmp_path: Path) -> None:
    """RT Plan Description is ST (1024 characters): a model text that fits after the plan's
    words is written whole; one that does not is refused (was written to 1051 characters)."""
    from planning.rbe.record import model_label

    tissue = Tissue("user", 0.1, 0.05, 30.0)
    model = LemModel(tissue)

    def plan_with(n: int) -> Plan:
        tissues = tuple((f"Structure_{k:03d}_long_name", tissue) for k in range(n))
        plan = build_plan(patient)
        # A long target name: the plan's words before the model take 186 characters.
        rx = replace(plan.prescription, target="PTV_high_dose_boost_region_of_the_left_parotid_bed")
        return replace(plan, prescription=rx, rbe=model, rbe_tissues=tissues,
                       rbe_model=model.describe())

    fits = plan_with(8)
    export_rt_ion_plan(fits, patient, tmp_path / "fits.dcm", sad_mm=SAD_MM)
    text = pydicom.dcmread(tmp_path / "fits.dcm").RTPlanDescription
    assert len(text) <= 1024 and text.endswith(model_label(model, fits.rbe_tissues))
    with pytest.raises(InputError, match=r"RBE model .* longer than the 8.. characters"):
        export_rt_ion_plan(plan_with(28), patient, tmp_path / "long.dcm", sad_mm=SAD_MM)
