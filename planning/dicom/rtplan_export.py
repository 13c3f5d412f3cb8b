"""Export a :class:`planning.plan.Plan` as a DICOM RT Ion Plan (spot-scanning carbon ions).

What is written
---------------
* RT General Plan: RT Plan Label (the plan label, at most 16 characters), RT Plan Geometry
  PATIENT, the referenced RT Structure Set, and an RT Plan Description that ends with
  ``"RBE model: <Plan.rbe_model>"`` (first-generation RT objects have no field for the RBE model;
  :mod:`planning.dicom.rtplan_import` reads it back from there; no such item for a received
  plan that names no model, ``Plan.rbe_model`` None). When the plan holds the model
  itself (``Plan.rbe``), its complete record goes in IonPlan's private block
  (:mod:`planning.dicom._rbe_block`, docs/dicom.md), which the import prefers.
* RT Prescription: Dose Reference 1, type TARGET, with the Target Prescription Dose = the
  *total* prescribed dose of the plan (all fractions; RBE-weighted, Gy(RBE), as prescribed;
  physical Gy for a physical-dose plan), its description = the target's name, and the
  target's ROI number when the referenced structure set has a structure of that name. When the
  plan has beam doses (``Plan.beam_doses``), Dose Reference 2 is the dose specification point
  (COORDINATES, type TARGET, Dose Reference Point Coordinates in LPS mm).
* RT Patient Setup: one setup with the CT's Patient Position.
* RT Fraction Scheme: one fraction group with the number of fractions and, per beam, the Beam
  Meterset = primary particles per fraction; with beam doses, Beam Dose Meaning BEAM_LEVEL and
  per beam the Referenced Dose Reference UID of the point, Beam Dose = the beam's share of the
  RBE-weighted dose per fraction at the point (Beam Dose Type EFFECTIVE) and Alternate Beam
  Dose = its physical dose per fraction there (Alternate Beam Dose Type PHYSICAL); a
  physical-dose plan writes the physical dose as Beam Dose (PHYSICAL) and no alternate.
  docs/dicom.md says why.
* RT Ion Beams: per beam Radiation Type ION with mass number, atomic number and charge state of
  the plan's ion (fully stripped), Scan Mode MODULATED, Primary Dosimeter Unit NP (number of
  particles), the machine's virtual source-axis distances, and a range shifter (with its water
  equivalent thickness) when the beam has one. Each energy layer that delivers particles is a
  pair of control points: the first holds the spot positions and weights, the second the same
  positions with zero weights; the Cumulative Meterset Weight runs over the beam, in particles.
  Spots without particles (weight 0, also after the float32 of Scan Spot Meterset Weights) are
  not written, nor are layers left without spots (:func:`delivered_layers`), so every control
  point pair delivers and the meterset bookkeeping (cumulative weights, Final Cumulative
  Meterset Weight, Beam Meterset) counts only delivered spots. With ``particles_per_spot``
  (the machine's limits) a plan with a spot outside them is refused.

Units and frames
----------------
Meterset weights are numbers of primary ions per fraction (the plan's weights x 10^6, see
:data:`planning.beams.PRIMARIES_PER_WEIGHT_UNIT`); the Final Cumulative Meterset Weight and
the Beam Meterset are both the beam's particles per fraction. Scan Spot Position Map holds the
spot positions ``(u, v)`` of :class:`planning.beams.SpotMap` as the IEC GANTRY ``(X, Y)``
at the isocentre plane (``u`` is ``X_g`` and ``v`` is ``Y_g``, see :mod:`planning.geometry`).
Nominal Beam Energy is in MeV per nucleon (the Ion Control Point Sequence defines it so and has
no Nominal Beam Energy Unit attribute; dciodvfy flags that attribute there as non-standard).
Angles are IEC 61217, written in [0, 360). Isocenter Position is in the patient (LPS)
coordinates of the CT's frame of reference. Layers are written in the order of their layer
numbers, spots within a layer in plan order. The plan is written with Approval Status
UNAPPROVED: it must be reviewed and approved in the receiving system.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from planning.beams import PRIMARIES_PER_WEIGHT_UNIT
from planning.dicom._export_common import (
    RBE_MODEL_PREFIX,
    RT_ION_PLAN_STORAGE,
    ST_MAX_CHARS,
    ExportIdentity,
    base_dataset,
    check_text,
    clip_text,
    reference,
    sequence,
    set_ds,
    write_dataset,
)
from planning.dicom._rbe_block import write_rbe_block
from planning.dicom._values import PathLike
from planning.dicom.scan import RT_STRUCTURE_SET_STORAGE
from planning.errors import InputError
from planning.patient import Patient
from planning.plan import BeamPlan, Plan, fractions_text
from planning.rbe import PhysicalDose
from planning.rbe.record import model_label

logger = logging.getLogger(__name__)

#: Full width at half maximum of a Gaussian, in units of its sigma: 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
SpotSigma = float | Callable[[float], float]


def _angle(value_deg: float) -> float:
    angle = float(value_deg) % 360.0
    return 0.0 if angle >= 360.0 - 1e-9 else angle + 0.0


def _sigma_at(sigma: SpotSigma | None, energy_mev_u: float) -> float | None:
    if sigma is None:
        return None
    value = float(sigma(energy_mev_u)) if callable(sigma) else float(sigma)
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"spot sigma {value} mm at {energy_mev_u} MeV/u must be positive")
    return value


def _layers(bp: BeamPlan) -> list[NDArray[np.intp]]:
    """Spot indices of each layer, layers in ascending layer number."""
    layer = np.asarray(bp.spots.layer)
    return [np.flatnonzero(layer == lid) for lid in np.unique(layer)]


def _first_control_point(cp: Dataset, bp: BeamPlan, has_range_shifter: bool) -> None:
    beam = bp.beam
    set_ds(cp, "GantryAngle", _angle(beam.gantry_deg))
    cp.GantryRotationDirection = "NONE"
    cp.GantryPitchAngle = 0.0
    cp.GantryPitchRotationDirection = "NONE"
    set_ds(cp, "BeamLimitingDeviceAngle", 0.0)
    cp.BeamLimitingDeviceRotationDirection = "NONE"
    set_ds(cp, "PatientSupportAngle", _angle(beam.couch_deg))
    cp.PatientSupportRotationDirection = "NONE"
    cp.TableTopPitchAngle = 0.0
    cp.TableTopPitchRotationDirection = "NONE"
    cp.TableTopRollAngle = 0.0
    cp.TableTopRollRotationDirection = "NONE"
    cp.TableTopVerticalPosition = None
    cp.TableTopLongitudinalPosition = None
    cp.TableTopLateralPosition = None
    set_ds(cp, "IsocenterPosition", [float(v) for v in beam.isocenter_mm])
    if has_range_shifter:
        setting = Dataset()
        setting.ReferencedRangeShifterNumber = 1
        setting.RangeShifterSetting = "IN"
        setting.RangeShifterWaterEquivalentThickness = float(bp.range_shifter_wet_mm)
        cp.RangeShifterSettingsSequence = sequence([setting])


def delivered_layers(bp: BeamPlan) -> list[NDArray[np.intp]]:
    """Spot indices of each layer that delivers particles, without the spots that deliver none.

    A spot is delivered when its weight, converted to particles and to the float32 of Scan Spot
    Meterset Weights, is above 0; layers left without spots are dropped (ascending layer
    number, spots in plan order).
    """
    particles = (np.asarray(bp.weights, dtype=np.float64)
                 * PRIMARIES_PER_WEIGHT_UNIT).astype(np.float32)
    out = []
    for idx in _layers(bp):
        kept = idx[particles[idx] > 0]
        if kept.size:
            out.append(kept)
    return out


def _check_spot_limits(bp: BeamPlan, limits: tuple[float, float] | None) -> None:
    if limits is None:
        return
    low, top = limits
    particles = np.asarray(bp.weights, dtype=np.float64) * PRIMARIES_PER_WEIGHT_UNIT
    delivered = particles[particles > 0]
    # a relative 1e-6 for the float64 -> float32 -> text round trips of the limits
    small = delivered[delivered < low * (1 - 1e-6)]
    large = delivered[delivered > top * (1 + 1e-6)]
    if small.size or large.size:
        raise InputError(
            f"{bp.beam.label}: {small.size} spot(s) below the machine's minimum of {low:g} "
            f"particles and {large.size} above its maximum of {top:g} (fewest "
            f"{delivered.min():.4g}, most {delivered.max():.4g}); the delivery system would "
            "reject or mis-deliver them: re-optimize the plan with these limits")


def _control_points(
    bp: BeamPlan, sigma: SpotSigma | None, tune_id: str
) -> tuple[list[Dataset], float]:
    """The control-point pairs of a beam's delivered layers and its total meterset
    (particles per fraction)."""
    spots = bp.spots
    particles = np.asarray(bp.weights, dtype=np.float64) * PRIMARIES_PER_WEIGHT_UNIT
    energies = np.asarray(spots.energy_mev_u, dtype=np.float64)
    u = np.asarray(spots.u_mm, dtype=np.float64)
    v = np.asarray(spots.v_mm, dtype=np.float64)
    points: list[Dataset] = []
    cumulative = 0.0
    for idx in delivered_layers(bp):
        energy = float(energies[idx[0]])
        weights32 = particles[idx].astype(np.float32)
        positions = np.column_stack((u[idx], v[idx])).astype(np.float32).ravel()
        sigma_mm = _sigma_at(sigma, energy)
        delivered = float(np.sum(weights32, dtype=np.float64))
        for second in (False, True):
            cp = Dataset()
            cp.ControlPointIndex = len(points)
            set_ds(cp, "NominalBeamEnergy", energy)
            set_ds(cp, "CumulativeMetersetWeight", cumulative)
            cp.ScanSpotTuneID = tune_id
            cp.NumberOfScanSpotPositions = int(idx.size)
            cp.ScanSpotPositionMap = positions.tolist()
            cp.ScanSpotMetersetWeights = (
                np.zeros(idx.size, np.float32) if second else weights32
            ).tolist()
            if sigma_mm is not None:
                fwhm = float(FWHM_PER_SIGMA * sigma_mm)
                cp.ScanningSpotSize = [fwhm, fwhm]
            cp.NumberOfPaintings = 1
            if not points:
                _first_control_point(cp, bp, bp.range_shifter_wet_mm > 0)
            points.append(cp)
            if not second:
                cumulative += delivered
    return points, cumulative


def _beam_item(
    number: int,
    bp: BeamPlan,
    plan: Plan,
    sad_mm: tuple[float, float],
    sigma: SpotSigma | None,
    tune_id: str,
    isocenter_to_range_shifter_mm: float | None,
) -> tuple[Dataset, float]:
    if not delivered_layers(bp):
        raise InputError(f"{bp.beam.label}: the beam has no spot with particles to export")
    beam = Dataset()
    beam.BeamNumber = number
    beam.BeamName = clip_text(bp.beam.label, 64, "beam name")
    beam.BeamType = "STATIC"
    beam.RadiationType = "ION"
    beam.RadiationMassNumber = int(plan.ion_a)
    beam.RadiationAtomicNumber = int(plan.ion_z)
    beam.RadiationChargeState = int(plan.ion_z)
    beam.TreatmentMachineName = clip_text(plan.machine_name, 16, "machine name")
    beam.PrimaryDosimeterUnit = "NP"
    beam.VirtualSourceAxisDistances = [float(sad_mm[0]), float(sad_mm[1])]
    beam.ReferencedPatientSetupNumber = 1
    beam.TreatmentDeliveryType = "TREATMENT"
    beam.NumberOfWedges = 0
    beam.NumberOfCompensators = 0
    beam.NumberOfBoli = 0
    beam.NumberOfBlocks = 0
    has_rs = bp.range_shifter_wet_mm > 0
    beam.NumberOfRangeShifters = 1 if has_rs else 0
    if has_rs:
        shifter = Dataset()
        shifter.RangeShifterNumber = 1
        shifter.RangeShifterID = clip_text(f"RS{bp.range_shifter_wet_mm:g}", 16, "shifter ID")
        shifter.RangeShifterType = "BINARY"
        shifter.RangeShifterDescription = (
            f"water equivalent thickness {bp.range_shifter_wet_mm:g} mm"
        )
        beam.RangeShifterSequence = sequence([shifter])
    beam.NumberOfLateralSpreadingDevices = 0
    beam.NumberOfRangeModulators = 0
    beam.PatientSupportType = "TABLE"
    points, total = _control_points(bp, sigma, tune_id)
    if has_rs and isocenter_to_range_shifter_mm is not None:
        setting = points[0].RangeShifterSettingsSequence[0]
        setting.IsocenterToRangeShifterDistance = float(isocenter_to_range_shifter_mm)
    beam.ScanMode = "MODULATED"
    beam.ModulatedScanModeType = "STATIONARY"
    set_ds(beam, "FinalCumulativeMetersetWeight", total)
    beam.NumberOfControlPoints = len(points)
    beam.IonControlPointSequence = sequence(points)
    return beam, total


def _dose_reference(plan: Plan, patient: Patient, identity: ExportIdentity) -> Dataset:
    rx = plan.prescription
    item = Dataset()
    item.DoseReferenceNumber = 1
    item.DoseReferenceUID = identity.uid("dose-reference")
    roi_number = None
    if patient.structure_set is not None:
        try:
            roi_number = patient.structure_set.get(rx.target).roi_number
        except KeyError:
            logger.warning("target %r is not in the structure set: no ROI reference", rx.target)
    if roi_number is None:
        item.DoseReferenceStructureType = "SITE"
    else:
        item.DoseReferenceStructureType = "VOLUME"
        item.ReferencedROINumber = roi_number
    item.DoseReferenceDescription = clip_text(rx.target, 64, "target name")
    item.DoseReferenceType = "TARGET"
    set_ds(item, "TargetPrescriptionDose", rx.total_dose_gy_rbe)
    return item


def _point_reference(plan: Plan, identity: ExportIdentity) -> Dataset | None:
    """The Dose Reference of the dose specification point (COORDINATES), if the plan has one."""
    if plan.beam_doses is None:
        return None
    item = Dataset()
    item.DoseReferenceNumber = 2
    item.DoseReferenceUID = identity.uid("dose-specification-point")
    item.DoseReferenceStructureType = "COORDINATES"
    item.DoseReferenceDescription = "dose specification point"
    set_ds(item, "DoseReferencePointCoordinates", list(plan.beam_doses.point_mm))
    item.DoseReferenceType = "TARGET"
    return item


def _beam_doses(ref: Dataset, plan: Plan, index: int, point_uid: str) -> None:
    """Beam Dose (and Alternate Beam Dose) of beam ``index`` per fraction at the point."""
    doses = plan.beam_doses
    if doses is None:
        return
    ref.ReferencedDoseReferenceUID = point_uid
    if isinstance(plan.rbe, PhysicalDose):
        set_ds(ref, "BeamDose", doses.physical_gy[index])
        ref.BeamDoseType = "PHYSICAL"
        return
    set_ds(ref, "BeamDose", doses.rbe_weighted_gy_rbe[index])
    ref.BeamDoseType = "EFFECTIVE"
    set_ds(ref, "AlternateBeamDose", doses.physical_gy[index])
    ref.AlternateBeamDoseType = "PHYSICAL"


def _sad(sad_mm: float | Sequence[float]) -> tuple[float, float]:
    values = [float(sad_mm)] * 2 if isinstance(sad_mm, (int, float)) else list(sad_mm)
    if len(values) != 2 or not all(np.isfinite(s) and s > 0 for s in values):
        raise InputError(f"sad_mm must be one or two positive distances in mm, got {sad_mm}")
    return (float(values[0]), float(values[1]))


def _model_text(plan: Plan) -> str | None:
    """The plan's RBE model in words, with its LEM I tissues per structure if any; None when
    the plan names no model (a received plan's)."""
    if plan.rbe is None:
        return plan.rbe_model
    return model_label(plan.rbe, plan.rbe_tissues)


def export_rt_ion_plan(
    plan: Plan,
    patient: Patient,
    path: PathLike,
    *,
    sad_mm: float | Sequence[float],
    machine_spot_sigma_mm: SpotSigma | None = None,
    structure_set_uid: str | None = None,
    spot_tune_id: str = "DEFAULT",
    isocenter_to_range_shifter_mm: float | None = None,
    uid_seed: str | None = None,
    created: datetime | None = None,
    particles_per_spot: tuple[float, float] | None = None,
) -> str:
    """Write ``plan`` as an RT Ion Plan file (see the module docstring for the content).

    Parameters
    ----------
    plan : Plan
        The plan; spot weights in 10^6 primary ions per fraction.
    patient : Patient
        The patient whose CT (study, frame of reference, patient position) the plan is on.
    path : str or os.PathLike
        Output file, written atomically; its folder must exist.
    sad_mm : float or (2,) floats
        Virtual source-axis distances (X, Y) of the machine in mm (``Machine.sad_mm``).
    machine_spot_sigma_mm : float or callable, optional
        In-air spot sigma at the isocentre in mm, constant or a function of the energy in
        MeV/u, e.g. ``lambda e: float(np.interp(e, machine.energies_mev_u,
        machine.spot_sigma_air_mm))``. When given, Scanning Spot Size is written as the FWHM
        (2.355 sigma) in X and Y; otherwise it is left out (it is optional).
    structure_set_uid : str, optional
        SOP Instance UID of the RT Structure Set the plan references; default: that of
        ``patient.structure_set`` (pass the UID returned by
        :func:`planning.dicom.rtstruct_export.export_rtstruct` after exporting new structures).
    spot_tune_id : str
        Scan Spot Tune ID of every control point (machine-specific, at most 16 characters).
    isocenter_to_range_shifter_mm : float, optional
        Isocenter to Range Shifter Distance written for beams with a range shifter.
    uid_seed : str, optional
        Derive the new UIDs from this string (deterministic export); random otherwise.
    created : datetime, optional
        Creation date and time written; now by default.
    particles_per_spot : (min, max), optional
        The machine's fewest and most particles per spot and fraction
        (``Machine.min_particles_per_spot``, ``max_particles_per_spot``): a plan with a spot
        outside them is refused (spots with no particles are never exported). None: no check
        (a received plan written back as received).

    Returns
    -------
    str
        SOP Instance UID of the RT Ion Plan (for the RT Dose's reference).

    Raises
    ------
    InputError
        No structure set to reference, bad SAD, spot sigma or texts too long for DICOM, a beam
        without spots that deliver particles, a spot outside ``particles_per_spot``.
    OSError
        If the file cannot be written.
    """
    sad = _sad(sad_mm)
    ct = patient.ct
    rs_uid = structure_set_uid or (
        patient.structure_set.sop_instance_uid if patient.structure_set is not None else ""
    )
    if not rs_uid:
        raise InputError(
            "the RT Ion Plan must reference an RT Structure Set: export the structures first "
            "and pass structure_set_uid"
        )
    tune_id = check_text(spot_tune_id, 16, "spot tune ID")
    identity = ExportIdentity.make(uid_seed, created)
    ds = base_dataset(
        sop_class=RT_ION_PLAN_STORAGE,
        modality="RTPLAN",
        study=ct.study,
        identity=identity,
        series_description=f"IonPlan plan {plan.label}",
        series_number=901,
    )
    ds.FrameOfReferenceUID = ct.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    rx = plan.prescription
    ds.RTPlanLabel = clip_text(plan.label, 16, "plan label")
    ds.RTPlanName = clip_text(plan.label, 64, "plan name")
    model = _model_text(plan)
    head = (f"IonPlan spot-scanning ion plan (Z={plan.ion_z}, A={plan.ion_a}); "
            f"{rx.total_dose_gy_rbe:g} Gy(RBE) in {fractions_text(rx.n_fractions)} "
            f"to {rx.target}; meterset in particles per fraction")
    if model is None:
        ds.RTPlanDescription = head
    else:
        # ST holds 1024 characters; the model's words are the last item (read back after
        # the prefix when a file has no model record), so they must fit whole.
        head += f"; {RBE_MODEL_PREFIX}"
        ds.RTPlanDescription = head + check_text(model, ST_MAX_CHARS - len(head), "RBE model")
    ds.RTPlanDate = identity.date
    ds.RTPlanTime = identity.time
    ds.PlanIntent = "CURATIVE"
    ds.RTPlanGeometry = "PATIENT"
    ds.ReferencedStructureSetSequence = sequence([reference(RT_STRUCTURE_SET_STORAGE, rs_uid)])
    ds.PrescriptionDescription = clip_text(
        f"{rx.total_dose_gy_rbe:g} Gy(RBE) in {fractions_text(rx.n_fractions)} to {rx.target}"
        + ("" if model is None else f", {RBE_MODEL_PREFIX}{model}"),
        ST_MAX_CHARS,
        "prescription description",
    )
    point = _point_reference(plan, identity)
    ds.DoseReferenceSequence = sequence(
        [_dose_reference(plan, patient, identity), *([point] if point is not None else [])])
    setup = Dataset()
    setup.PatientSetupNumber = 1
    setup.PatientPosition = ct.setup_position()
    setup.SetupTechnique = "ISOCENTRIC"
    ds.PatientSetupSequence = sequence([setup])
    beams: list[Dataset] = []
    refs: list[Dataset] = []
    for number, bp in enumerate(plan.beams, start=1):
        _check_spot_limits(bp, particles_per_spot)
        beam, total = _beam_item(
            number, bp, plan, sad, machine_spot_sigma_mm, tune_id, isocenter_to_range_shifter_mm
        )
        beams.append(beam)
        ref = Dataset()
        ref.ReferencedBeamNumber = number
        set_ds(ref, "BeamMeterset", total)
        if point is not None:
            _beam_doses(ref, plan, number - 1, str(point.DoseReferenceUID))
        refs.append(ref)
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = rx.n_fractions
    if point is not None:
        group.BeamDoseMeaning = "BEAM_LEVEL"
    group.NumberOfBeams = len(beams)
    group.NumberOfBrachyApplicationSetups = 0
    group.ReferencedBeamSequence = sequence(refs)
    ds.FractionGroupSequence = sequence([group])
    ds.IonBeamSequence = sequence(beams)
    ds.ApprovalStatus = "UNAPPROVED"
    if plan.rbe is not None:
        write_rbe_block(ds, plan.rbe, plan.rbe_tissues)
    write_dataset(ds, path)
    logger.info("exported plan %r (%d beams, %d spots) to %s", plan.label, len(beams),
                plan.n_spots, path)
    return str(ds.SOPInstanceUID)
