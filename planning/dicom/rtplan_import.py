"""Import an RT Ion Plan made elsewhere (or by IonPlan) as a :class:`planning.plan.Plan`.

What is read
------------
* Fraction group: one; its Number of Beams (300A,0080) must equal the number of Referenced
  Beam Sequence items, each Referenced Beam Number must name an Ion Beam Sequence item and
  appear once, and a treatment beam's Beam Meterset must be positive.
* Beams: only TREATMENT beams referenced by the (single) fraction group; setup beams are
  skipped with a warning; CONTINUATION beams (the rest of an interrupted beam) are refused:
  they deliver treatment dose that IonPlan cannot recompose. Gantry and patient support
  angles, isocentre and the particle (Radiation Type ION with the expected mass and atomic
  numbers) are checked; arcs, couch motion, gantry pitch and table-top pitch or roll are
  refused.
* Spots: every control point's spots with a non-zero total weight form one energy layer
  (IonPlan writes one control-point pair per layer, the second with zero weights; any vendor
  layout where the weights of control point ``i`` are delivered between ``i`` and ``i + 1`` is
  read the same way). Layers whose spots all have zero weight are dropped. Positions are put on
  a regular lattice (:mod:`planning.dicom._spot_lattice`). As PS3.3 defines Scan Spot Meterset
  Weights, the Nominal Beam Energy must not change between a control point with weights and
  the next, and the last control point's weights must be zero.
* Cumulative Meterset Weights: 0 at the first control point, never decreasing, rising from
  ``i`` to ``i + 1`` by the sum of the spot weights of ``i``, and equal to the Final Cumulative
  Meterset Weight at the last (within METERSET_TOLERANCE of the beam's total). The attribute
  is Type 2: a beam with an empty value is imported unchecked, with a warning.
* Metersets: a spot receives ``weight x Beam Meterset / Final Cumulative Meterset Weight`` of
  the Primary Dosimeter Unit per fraction. NP (particles) is converted to the plan's unit of
  10^6 primaries; MU needs the caller's ``monitor_calibration`` (particles per MU by energy,
  :mod:`planning.monitor_calibration`), applied per energy layer; without it the import is
  refused, and its use is among the warnings.
* Range shifters: their water-equivalent thickness (Range Shifter Water Equivalent Thickness in
  the Range Shifter Settings) is summed into ``BeamPlan.range_shifter_wet_mm``; a shifter
  without it, or one whose setting changes between layers, is refused.
* Devices: wedges, compensators, boli, blocks and range modulators (ridge filters) are refused,
  naming the beam; lateral spreading devices (scatterers, monitor chambers) are ignored with a
  warning: the machine's beam data are assumed to include them.
* Scan Mode must be MODULATED (spot scanning).
* Prescription: the first TARGET Dose Reference with a Target Prescription Dose (read as the
  total dose of the plan) and the fraction group's number of fractions; the target's name is
  the ROI name of its Referenced ROI Number when a structure set is given, else the Dose
  Reference Description. When the plan has none, ``fallback_prescription`` is used and
  :attr:`ImportedPlan.prescription_found` is False; without a fallback the import is refused.
* Beam doses: when every imported beam's Referenced Beam item names the same COORDINATES Dose
  Reference (Referenced Dose Reference UID) and gives its physical dose per fraction (Beam Dose
  or Alternate Beam Dose of type PHYSICAL) and its RBE-weighted dose (type EFFECTIVE; for a
  physical-dose plan the physical one), they become ``Plan.beam_doses``; otherwise None.
* Spots: zero-weight spots inside a delivered layer (as files of older IonPlan versions hold)
  are read as spots of weight 0.
* Name (``Plan.label``): the RT Plan Name (up to 64 characters), else the RT Plan Label (16;
  many systems fill only this one, some only the name), else the file's name, with a warning.
  The RT Plan Label alone named two plans "Head C12 boost plan v1" and "... v2" both
  "Head C12 boost p" in recalc's and compare's outputs.
* RBE model: the model of IonPlan's private RBE model record (:mod:`planning.dicom._rbe_block`)
  as ``Plan.rbe``, with its description; without the record, the text after
  ``"RBE model: "`` in the RT Plan Description (as IonPlan writes it), None when neither is
  there (the plan names no model).

All bad input raises :class:`DicomImportError` naming the file (and the beam and control point
where they apply).
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from planning.dicom._beam_import import BeamReadSettings, read_beam
from planning.dicom._export_common import RBE_MODEL_PREFIX, RT_ION_PLAN_STORAGE
from planning.dicom._rbe_block import read_rbe_block
from planning.dicom._rt_values import get_optional_float
from planning.dicom._values import (
    PathLike,
    get_floats,
    get_int,
    get_sequence,
    get_str,
    read_dicom_file,
    reading,
)
from planning.dicom.errors import DicomImportError
from planning.dicom.file_context import reading_file
from planning.errors import PlanningError
from planning.geometry import PATIENT_POSITIONS
from planning.monitor_calibration import MonitorCalibration
from planning.patient import StructureSet
from planning.plan import BeamDoses, BeamPlan, Plan, Prescription
from planning.rbe import PhysicalDose

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ImportedPlan:
    """An imported RT Ion Plan and what the import learned about it.

    Attributes
    ----------
    plan : Plan
        The plan; spot weights in 10^6 primary ions per fraction.
    prescription_found : bool
        True when the prescription came from the file, False when ``fallback_prescription``
        was used.
    sop_instance_uid : str
        The RT Ion Plan's SOP Instance UID.
    frame_of_reference_uid : str
        Its Frame of Reference UID (``""`` if absent).
    referenced_structure_set_uid : str
        SOP Instance UID of the RT Structure Set it references (``""`` if none).
    patient_position : str
        Patient Position of its first patient setup (``""`` if absent).
    sad_mm : tuple of (float, float) or None
        Virtual source-axis distances of each imported beam, if stated.
    spot_fwhm_mm : tuple of tuples of (float, float, float)
        Of each imported beam: (energy MeV/u, FWHM x mm, FWHM y mm) of each energy layer whose
        Scanning Spot Size is stated (in air at the isocentre); empty where none is.
    warnings : tuple of str
        Things ignored or assumed (skipped beams, lateral spreading devices, ...).
    source_path : str
        The file read.
    patient_id : str
        The plan file's Patient ID (``""`` if absent).
    in_mu : bool
        Whether a beam's metersets are in MU (converted with the caller's monitor
        calibration).
    rt_plan_label : str
        The RT Plan Label as the file holds it (``""`` if absent); the plan is named by
        ``plan.label``.
    name_source : str
        Where ``plan.label`` came from: ``"RT Plan Name"``, ``"RT Plan Label"`` or ``"file
        name"``.
    """

    plan: Plan
    prescription_found: bool
    sop_instance_uid: str
    frame_of_reference_uid: str
    referenced_structure_set_uid: str
    patient_position: str
    sad_mm: tuple[tuple[float, float] | None, ...]
    warnings: tuple[str, ...]
    source_path: str
    patient_id: str = ""
    spot_fwhm_mm: tuple[tuple[tuple[float, float, float], ...], ...] = ()
    in_mu: bool = False
    rt_plan_label: str = ""
    name_source: str = "RT Plan Name"


def _fraction_group(ds: Dataset, path: PathLike
                    ) -> tuple[int, dict[int, float | None], dict[int, Dataset]]:
    """(number of fractions, Beam Meterset by beam number (None where the item has none: it is
    Type 3, and a setup beam needs none), Referenced Beam Sequence item by beam number) of the
    only fraction group."""
    groups = get_sequence(ds, "FractionGroupSequence", path)
    if not groups:
        raise DicomImportError(
            path, "the plan has no Fraction Group Sequence: fractions and beam metersets unknown"
        )
    if len(groups) > 1:
        raise DicomImportError(
            path, f"the plan has {len(groups)} fraction groups; IonPlan imports plans with one"
        )
    group = groups[0]
    n_fractions = get_int(group, "NumberOfFractionsPlanned", path, minimum=1, maximum=100)
    refs = get_sequence(group, "ReferencedBeamSequence", path)
    stated = get_int(group, "NumberOfBeams", path, default=-1, minimum=0)
    if stated < 0:
        raise DicomImportError(path, "fraction group: Number of Beams (300A,0080) is missing "
                                     "(Type 1); it must equal the number of Referenced Beam "
                                     "Sequence items")
    if stated != len(refs):
        raise DicomImportError(path, f"fraction group: Number of Beams is {stated} but the "
                                     f"Referenced Beam Sequence has {len(refs)} items")
    metersets: dict[int, float | None] = {}
    items: dict[int, Dataset] = {}
    for ref in refs:
        number = get_int(ref, "ReferencedBeamNumber", path)
        if number in items:
            raise DicomImportError(path, f"fraction group: Referenced Beam Number {number} is "
                                         "listed twice; its Beam Meterset is ambiguous")
        items[number] = ref
        meterset = get_optional_float(ref, "BeamMeterset", path)
        if meterset is not None and meterset < 0:
            raise DicomImportError(path, f"beam {number}: negative Beam Meterset {meterset}")
        metersets[number] = meterset
    if not metersets:
        raise DicomImportError(path, "the fraction group references no beam")
    return n_fractions, metersets, items


def _typed_doses(ref: Dataset, path: PathLike) -> dict[str, float]:
    """Beam Dose and Alternate Beam Dose of a Referenced Beam item by their types."""
    out: dict[str, float] = {}
    for value_kw, type_kw in (("BeamDose", "BeamDoseType"),
                              ("AlternateBeamDose", "AlternateBeamDoseType")):
        value = get_optional_float(ref, value_kw, path)
        kind = get_str(ref, type_kw, path).upper()
        if value is not None and kind in ("PHYSICAL", "EFFECTIVE") and kind not in out:
            if value < 0:
                raise DicomImportError(path, f"negative {value_kw} {value}")
            out[kind] = value
    return out


def _beam_doses(ds: Dataset, path: PathLike, refs: list[Dataset], physical_plan: bool,
                warnings: list[str]) -> BeamDoses | None:
    """The beams' doses per fraction at their dose specification point (a COORDINATES Dose
    Reference that each Referenced Beam item names by its Referenced Dose Reference UID), or
    None when any beam lacks them, when the beams name different points, or when the
    RBE-weighted (EFFECTIVE) dose is missing in a plan that is not a physical-dose plan."""
    points: dict[str, tuple[float, float, float]] = {}
    for item in get_sequence(ds, "DoseReferenceSequence", path):
        uid = get_str(item, "DoseReferenceUID", path)
        if uid and get_str(item, "DoseReferenceStructureType", path).upper() == "COORDINATES":
            x, y, z = get_floats(item, "DoseReferencePointCoordinates", path, 3)
            points[uid] = (x, y, z)
    uids = {get_str(ref, "ReferencedDoseReferenceUID", path) for ref in refs}
    if not refs or len(uids) != 1 or next(iter(uids)) not in points:
        if any(get_optional_float(ref, "BeamDose", path) is not None for ref in refs):
            warnings.append("Beam Doses without one common dose specification point "
                            "(COORDINATES Dose Reference) are not read")
        return None
    physical, effective = [], []
    for ref in refs:
        doses = _typed_doses(ref, path)
        if "PHYSICAL" not in doses or not ("EFFECTIVE" in doses or physical_plan):
            return None
        physical.append(doses["PHYSICAL"])
        effective.append(doses.get("EFFECTIVE", doses["PHYSICAL"]))
    try:
        return BeamDoses(points[next(iter(uids))], tuple(physical), tuple(effective))
    except PlanningError as exc:
        raise DicomImportError(path, f"beam doses: {exc}") from exc


def _prescription(
    ds: Dataset, path: PathLike, n_fractions: int, structure_set: StructureSet | None
) -> Prescription | None:
    for item in get_sequence(ds, "DoseReferenceSequence", path):
        if get_str(item, "DoseReferenceType", path).upper() != "TARGET":
            continue
        dose_gy = get_optional_float(item, "TargetPrescriptionDose", path)
        if dose_gy is None:
            continue
        name = get_str(item, "DoseReferenceDescription", path)
        roi_text = get_str(item, "ReferencedROINumber", path)
        if structure_set is not None and roi_text:
            number = get_int(item, "ReferencedROINumber", path)
            for s in structure_set.structures:
                if s.roi_number == number:
                    name = s.name
        if not name:
            return None
        try:
            return Prescription(target=name, total_dose_gy_rbe=dose_gy, n_fractions=n_fractions)
        except PlanningError as exc:
            raise DicomImportError(path, f"prescription of the plan: {exc}") from exc
    return None


def _plan_name(ds: Dataset, path: PathLike, where: str, warnings: list[str]
               ) -> tuple[str, str]:
    """(the plan's name, where it came from): its RT Plan Name, else its RT Plan Label, else
    the file's name without its suffix, with a warning (every plan with neither was
    "imported", and the plans of one comparison could not be told apart)."""
    for keyword, source in (("RTPlanName", "RT Plan Name"), ("RTPlanLabel", "RT Plan Label")):
        name = get_str(ds, keyword, where)
        if name:
            return name, source
    stem = Path(os.fspath(path)).stem if os.fspath(path) else ""
    name, source = (stem, "file name") if stem else ("unlabelled plan", "no name found")
    warnings.append(f"the plan has neither an RT Plan Name (300A,0003) nor the RT Plan Label "
                    f"(300A,0002) DICOM requires: it is named {name!r} ({source})")
    return name, source


def _rbe_model(ds: Dataset, path: PathLike) -> str | None:
    """The RBE model the RT Plan Description names after ``"RBE model: "``; None if none."""
    description = get_str(ds, "RTPlanDescription", path)
    at = description.rfind(RBE_MODEL_PREFIX)
    if at < 0:
        return None
    return description[at + len(RBE_MODEL_PREFIX) :].strip() or None


def read_rt_ion_plan(
    ds: Dataset,
    *,
    path: PathLike = "",
    structure_set: StructureSet | None = None,
    fallback_prescription: Prescription | None = None,
    ion_z: int = 6,
    ion_a: int = 12,
    monitor_calibration: MonitorCalibration | None = None,
    lattice_tolerance_mm: float = 0.01,
) -> ImportedPlan:
    """Build a plan from an RT Ion Plan dataset; see :func:`load_rt_ion_plan`."""
    where = str(path) or "RT Ion Plan"
    sop_class = get_str(ds, "SOPClassUID", where)
    if sop_class != RT_ION_PLAN_STORAGE:
        modality = get_str(ds, "Modality", where)
        raise DicomImportError(
            where, f"not an RT Ion Plan (SOP Class {sop_class or '?'}, Modality {modality or '?'})"
        )
    n_fractions, metersets, beam_refs = _fraction_group(ds, where)
    warnings: list[str] = []
    setups = get_sequence(ds, "PatientSetupSequence", where)
    positions = sorted({get_str(item, "PatientPosition", where) for item in setups} - {""})
    if len(positions) > 1:  # beams of one plan in different positions: not one geometry
        raise DicomImportError(where, f"the plan's patient setups differ in position "
                                      f"({', '.join(positions)}); IonPlan imports plans whose "
                                      "beams share one patient position")
    position = positions[0] if positions else ""
    if position and position not in PATIENT_POSITIONS:
        warnings.append(f"patient position {position}: IonPlan computes dose for "
                        f"{', '.join(PATIENT_POSITIONS)} only")
    settings = BeamReadSettings(
        ion_z=ion_z,
        ion_a=ion_a,
        monitor_calibration=monitor_calibration,
        lattice_tolerance_mm=lattice_tolerance_mm,
        patient_position=position or "HFS",
    )
    beams: list[BeamPlan] = []
    read_refs: list[Dataset] = []
    sads: list[tuple[float, float] | None] = []
    spot_sizes: list[tuple[tuple[float, float, float], ...]] = []
    machines: list[str] = []
    beam_items = get_sequence(ds, "IonBeamSequence", where)
    unknown = sorted(set(metersets) - {get_int(item, "BeamNumber", where) for item in beam_items})
    if unknown:
        listed = ", ".join(str(n) for n in unknown)
        raise DicomImportError(where, f"fraction group: Referenced Beam "
                                      f"Number{'' if len(unknown) == 1 else 's'} {listed} "
                                      f"{'has' if len(unknown) == 1 else 'have'} no beam in the "
                                      "Ion Beam Sequence")
    for item in beam_items:
        number = get_int(item, "BeamNumber", where)
        name = get_str(item, "BeamName", where) or f"beam {number}"
        delivery = get_str(item, "TreatmentDeliveryType", where).upper() or "TREATMENT"
        if delivery == "CONTINUATION":
            raise DicomImportError(where, f"beam {name!r}: Treatment Delivery Type CONTINUATION "
                                          "(the rest of an interrupted beam) delivers treatment "
                                          "dose, but IonPlan cannot recompose continuation "
                                          "beams; a recalculation would lack its dose")
        if delivery != "TREATMENT":
            warnings.append(f"beam {name!r}: {delivery} beam skipped")
            continue
        if number not in metersets:
            warnings.append(f"beam {name!r} is not in the fraction group and was skipped")
            continue
        meterset = metersets[number]
        if meterset is None:
            raise DicomImportError(where, f"beam {name!r}: Beam Meterset missing in the "
                                          "fraction group; the spot metersets cannot be scaled")
        read = read_beam(item, where, name, meterset, settings)
        beams.append(read.beam_plan)
        read_refs.append(beam_refs[number])
        sads.append(read.sad_mm)
        spot_sizes.append(read.spot_fwhm_mm)
        machines.append(read.machine_name)
        warnings.extend(read.warnings)
    if not beams:
        raise DicomImportError(where, "the plan has no treatment beam to import")
    if len(set(machines)) > 1:
        warnings.append(f"beams name different machines {sorted(set(machines))}; "
                        f"the plan is assigned to {machines[0]!r}")
    prescription = _prescription(ds, where, n_fractions, structure_set)
    found = prescription is not None
    if prescription is None:
        if fallback_prescription is None:
            raise DicomImportError(
                where, "the plan states no target prescription dose (Dose Reference Sequence); "
                       "pass fallback_prescription to import it"
            )
        prescription = fallback_prescription
        warnings.append("the plan states no target prescription: the given one is used")
    rs_refs = get_sequence(ds, "ReferencedStructureSetSequence", where)
    recorded = read_rbe_block(ds, where)
    model, tissues = recorded if recorded is not None else (None, ())
    rbe_text = model.describe() if model is not None else _rbe_model(ds, where)
    physical_plan = isinstance(model, PhysicalDose) or rbe_text == PhysicalDose().describe()
    beam_doses = _beam_doses(ds, where, read_refs, physical_plan, warnings)
    name, name_source = _plan_name(ds, path, where, warnings)
    try:
        plan = Plan(
            label=name,
            machine_name=machines[0],
            beams=tuple(beams),
            prescription=prescription,
            rbe_model=rbe_text,
            ion_z=ion_z,
            ion_a=ion_a,
            rbe=model,
            beam_doses=beam_doses,
            rbe_tissues=tissues,
        )
    except PlanningError as exc:
        raise DicomImportError(where, str(exc)) from exc
    for line in warnings:
        logger.info("%s: %s", where, line)  # the caller shows ImportedPlan.warnings
    return ImportedPlan(
        plan=plan,
        prescription_found=found,
        sop_instance_uid=get_str(ds, "SOPInstanceUID", where, required=True),
        frame_of_reference_uid=get_str(ds, "FrameOfReferenceUID", where),
        referenced_structure_set_uid=(
            get_str(rs_refs[0], "ReferencedSOPInstanceUID", where) if rs_refs else ""
        ),
        patient_position=position,
        sad_mm=tuple(sads),
        spot_fwhm_mm=tuple(spot_sizes),
        warnings=tuple(warnings),
        source_path=str(path),
        patient_id=get_str(ds, "PatientID", where).strip(),
        in_mu=beams_in_mu(ds),
        rt_plan_label=get_str(ds, "RTPlanLabel", where),
        name_source=name_source,
    )


def load_rt_ion_plan(
    path: PathLike,
    *,
    structure_set: StructureSet | None = None,
    fallback_prescription: Prescription | None = None,
    ion_z: int = 6,
    ion_a: int = 12,
    monitor_calibration: MonitorCalibration | None = None,
    lattice_tolerance_mm: float = 0.01,
) -> ImportedPlan:
    """Read an RT Ion Plan file as a :class:`planning.plan.Plan` (see the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The RT Ion Plan file.
    structure_set : StructureSet, optional
        The structure set the plan was made on; used to name the target from the Dose
        Reference's Referenced ROI Number.
    fallback_prescription : Prescription, optional
        Used when the plan states no target prescription dose.
    ion_z, ion_a : int
        The machine's ion (12C by default); beams of another particle are refused.
    monitor_calibration : MonitorCalibration, optional
        The machine's particles per monitor unit by energy, needed for plans whose Primary
        Dosimeter Unit is MU.
    lattice_tolerance_mm : float
        Largest snap of a spot position onto the inferred lattice.

    Returns
    -------
    ImportedPlan

    Raises
    ------
    DicomImportError
        Unreadable or not an RT Ion Plan; unsupported particle, scan mode or beam modifiers;
        spots off a lattice; missing angles, isocentre, metersets or prescription; any
        inconsistency (metersets, energies, fraction group, continuation beams: see the
        module docstring). The message names the file and, where they apply, the beam and
        control point.
    """
    with reading_file(path):  # pydicom reads values when they are used: all of them here
        return read_rt_ion_plan(
            read_dicom_file(path, "cannot read the RT Ion Plan"),
            path=path,
            structure_set=structure_set,
            fallback_prescription=fallback_prescription,
            ion_z=ion_z,
            ion_a=ion_a,
            monitor_calibration=monitor_calibration,
            lattice_tolerance_mm=lattice_tolerance_mm,
        )


def plan_sop_instance_uid(path: PathLike, data: bytes | None = None, *,
                          what: str = "cannot read the RT Ion Plan") -> str:
    """The SOP Instance UID of the RT Ion Plan file at ``path``, from its header (``""`` when
    it has none): to check that a file is still, or is, the plan a dose refers to.

    Parameters
    ----------
    path : str or os.PathLike
        The file; named in messages.
    data : bytes, optional
        Its bytes, already read (the UID is then the one of what the caller holds); read from
        ``path`` otherwise.
    what : str
        Start of the message if the file cannot be read.

    Raises
    ------
    DicomImportError
        If the file is missing or is no DICOM file (the importers' messages).
    """
    with reading(path, what):
        source = path if data is None else io.BytesIO(data)
        ds = pydicom.dcmread(source, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        return str(ds.get("SOPInstanceUID", ""))


def metersets_in_mu(path: PathLike) -> bool:
    """Whether the RT Ion Plan at ``path`` gives a beam's metersets in MU (so that importing it
    needs a monitor calibration). A file that cannot be read says False: its import reports
    what is wrong."""
    try:
        return beams_in_mu(pydicom.dcmread(path, stop_before_pixels=True))
    except (OSError, ValueError, TypeError, AttributeError, InvalidDicomError):
        return False  # the import itself says what is wrong


def beams_in_mu(ds: Dataset) -> bool:
    """Whether an RT Ion Plan dataset gives a beam's metersets in MU (Primary Dosimeter
    Unit)."""
    beams = ds.get("IonBeamSequence") or ()
    return any(str(b.get("PrimaryDosimeterUnit", "")).strip().upper() == "MU" for b in beams)
