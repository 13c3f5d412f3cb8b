"""The two sides of a comparison: an RT Dose file, a plan output folder, or a dose in memory.

A plan output folder is what ``ionplan plan`` and ``ionplan recalc`` write: ``RTPLAN.dcm``,
``RTDOSE_PHYSICAL.dcm``, ``RTDOSE_RBE.dcm`` (``RTDOSE_RBE_MKM.dcm``, ``RTDOSE_RBE_LEM1.dcm``
with ``--exchange``) and ``report.json``; the quantity chooses the dose file. An RT Dose file
next to the RT Ion Plan it references (``RTPLAN.dcm`` with that SOP Instance UID) also counts as
a plan. A folder that holds a CT series (e.g. ``ionplan demo --out``) provides the patient.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from planning.dose_grid import DoseGrid
from planning.errors import InputError, IonPlanError
from planning.monitor_calibration import MonitorCalibration
from planning.plan import Plan, Prescription
from planning.rbe import PhysicalDose, Tissue, prescription_unit_of
from planning.rbe.record import model_label, same_prescription_model, short_model_name

if TYPE_CHECKING:
    from planning.dicom import DoseVolume
    from planning.patient import Patient
    from planning.planner import PlanResult

#: Dose file of each quantity in a plan output folder, and its DICOM Dose Type.
QUANTITY_FILES = {"rbe": ("RTDOSE_RBE.dcm", "EFFECTIVE"),
                  "physical": ("RTDOSE_PHYSICAL.dcm", "PHYSICAL"),
                  "mkm": ("RTDOSE_RBE_MKM.dcm", "EFFECTIVE"),
                  "lem1": ("RTDOSE_RBE_LEM1.dcm", "EFFECTIVE")}
PLAN_FILE = "RTPLAN.dcm"
REPORT_FILE = "report.json"


@dataclass(frozen=True, eq=False)
class DoseSide:
    """One side of a comparison.

    Attributes
    ----------
    label : str
        Short name for tables and plots (``"A"``, ``"B"`` or what the caller gave).
    source : str
        Where the dose came from (file path, or a description of an in-memory dose).
    dose_gy : (nz, ny, nx) float32 array
        Total dose of the whole plan, Gy (PHYSICAL) or Gy(RBE) (EFFECTIVE), on ``grid`` (an RT
        Dose of Summation Type FRACTION times its plan's fraction count).
    grid : DoseGrid
        Its grid (LPS, axes along +x, +y, +z).
    dose_type : str
        ``"PHYSICAL"`` or ``"EFFECTIVE"``.
    description : str
        The dose's RBE model in full: the model record of IonPlan's private block (with its LEM
        I tissues per structure), else the Dose Comment (limited to 64 characters, where
        IonPlan writes the model's description as far as it fits).
    frame_of_reference_uid : str
        Frame of Reference of the grid (``""`` when unknown, for doses built in memory).
    plan : Plan or None
        The plan the dose belongs to, when known (needed for the cross-model view).
    plan_frame_of_reference_uid : str
        The plan file's Frame of Reference (``""`` when unknown).
    plan_patient_position : str
        The plan file's patient position (``""`` when unknown).
    prescription : Prescription or None
        From the folder's report.json or the plan.
    prescription_unit : str
        The unit of ``prescription``: ``"Gy(RBE)"``, or ``"Gy"`` for a plan made under the
        physical-dose model; ``""`` is read as ``"Gy(RBE)"`` (carbon plans are prescribed
        RBE-weighted). :meth:`dose_prescription` uses it.
    prescription_model : str
        The RBE model of ``prescription`` (its plan's, as labels name it: full, or the short
        name of a report.json); ``""`` when unknown. A prescription in Gy(RBE) is of its own
        model's doses only (:meth:`dose_prescription`).
    patient : Patient or None
        A CT (with structures) that came with the side (folder CT, or a PlanResult's patient).
    structure_tissues : tuple of (str, Tissue)
        The LEM I tissues per structure an RBE-weighted dose was computed with (its RBE model
        record; empty for one model everywhere or unknown).
    plan_problem : str
        Why the RT Ion Plan beside the dose was not read (``plan`` None), e.g. its metersets
        are in MU; ``""`` otherwise.
    plan_uid : str
        SOP Instance UID of the RT Ion Plan file of ``plan`` (``""``: a plan in memory, or
        none): two sides are doses of one plan when these agree.
    patient_id, patient_name : str
        The patient the dose's file (or plan) names; ``""`` when unknown.
    """

    label: str
    source: str
    dose_gy: NDArray[np.float32]
    grid: DoseGrid
    dose_type: str
    description: str = ""
    frame_of_reference_uid: str = ""
    plan: Plan | None = None
    plan_frame_of_reference_uid: str = ""
    plan_patient_position: str = ""
    prescription: Prescription | None = None
    prescription_unit: str = ""
    prescription_model: str = ""
    patient: Patient | None = None
    structure_tissues: tuple[tuple[str, Tissue], ...] = ()
    plan_problem: str = ""
    plan_uid: str = ""
    patient_id: str = ""
    patient_name: str = ""

    def __post_init__(self) -> None:
        if np.shape(self.dose_gy) != tuple(self.grid.shape):
            raise InputError(f"{self.source}: dose shape {np.shape(self.dose_gy)} is not its "
                             f"grid's {self.grid.shape}")

    @property
    def unit(self) -> str:
        """The unit of the dose: ``"Gy(RBE)"`` (EFFECTIVE) or ``"Gy"`` (PHYSICAL)."""
        return "Gy(RBE)" if self.dose_type == "EFFECTIVE" else "Gy"

    def dose_prescription(self) -> Prescription | None:
        """``prescription`` when it is a prescription of this side's dose, i.e. of its unit
        and RBE model; else None: a plan prescribed 57.6 Gy(RBE) says nothing of its physical
        dose, nor a physical-dose plan's 20 Gy of its recalculation under an RBE model
        (:func:`planning.rbe.prescription_unit_of`), nor an mMKM plan's 57.6 Gy(RBE) of its
        dose under LEM I (the same Gy(RBE) number is another physical dose under another
        model; :func:`planning.rbe.record.same_prescription_model`)."""
        if self.prescription is None or (self.prescription_unit or "Gy(RBE)") != self.unit:
            return None
        if not self.of_prescription_model(self):
            return None
        return self.prescription

    def of_prescription_model(self, other: DoseSide) -> bool:
        """Whether this side's dose is under the RBE model of ``other``'s prescription
        (True where either model is unknown)."""
        return same_prescription_model(other.prescription_model, self.description)

    def summary(self) -> str:
        """Everything known of the dose in one line, for the reports: its kind and model,
        the label of its plan, and where it came from, e.g. ``"RBE-weighted dose, mMKM HSG
        a0=0.172 ...; plan 'IonPlan'; /plans/p1/RTDOSE_RBE.dcm"``."""
        if self.dose_type == "EFFECTIVE":
            kind = f"RBE-weighted dose, {self.description or 'model not named'}"
        elif self.description and self.description != "physical dose":
            kind = f"physical dose, {self.description}"
        else:
            kind = "physical dose"
        if self.plan is None:
            plan = "plan unknown"
        elif self.dose_type == "PHYSICAL" and self.plan.rbe_label:
            plan = f"plan {self.plan.label!r} (its RBE model: {self.plan.rbe_label})"
        else:
            plan = f"plan {self.plan.label!r}"
        return f"{kind}; {plan}; {self.source}"


def load_side(spec: Any, *, label: str, quantity: str = "rbe") -> DoseSide:
    """A comparison side from a path or an in-memory dose.

    Parameters
    ----------
    spec : path, DoseSide, DoseVolume or PlanResult
        RT Dose file, plan output folder, or a dose already loaded. A PlanResult gives its
        RBE-weighted or physical cube (``quantity`` ``"rbe"`` or ``"physical"``).
    label : str
        Name of the side in the report.
    quantity : {"rbe", "physical", "mkm", "lem1"}
        Which dose of a folder or PlanResult (ignored for a single RT Dose file).

    Raises
    ------
    InputError
        Missing path, folder without the dose file, unknown quantity.
    DicomImportError
        An unreadable or wrong DICOM file.
    """
    from planning.dicom import DoseVolume
    from planning.planner import PlanResult

    if quantity not in QUANTITY_FILES:
        raise InputError(f"unknown dose quantity {quantity!r}; choose "
                         f"{', '.join(QUANTITY_FILES)}")
    if isinstance(spec, DoseSide):
        return spec
    if isinstance(spec, DoseVolume):
        return _side_of_volume(spec, label)
    if isinstance(spec, PlanResult):
        return _side_of_result(spec, label, quantity)
    if not isinstance(spec, (str, os.PathLike)):
        raise InputError(f"cannot compare a {type(spec).__name__}: give an RT Dose file, a plan "
                         "output folder, a DoseVolume or a PlanResult")
    path = Path(spec)
    if path.is_dir():
        return _side_of_folder(path, label, quantity)
    if path.is_file():
        return _side_of_file(path, label)
    raise InputError(f"{path}: no such file or folder; give an RT Dose file or a plan output "
                     "folder")


def _side_of_volume(volume: DoseVolume, label: str, **extra: Any) -> DoseSide:
    where = volume.source_path or label
    if volume.dose_type not in ("PHYSICAL", "EFFECTIVE"):
        raise InputError(f"{where}: Dose Type {volume.dose_type}; only "
                         "PHYSICAL and EFFECTIVE doses can be compared")
    if volume.units.upper() != "GY":
        raise InputError(f"{where}: Dose Units {volume.units}; only "
                         "absolute doses (GY) can be compared")
    model = model_label(volume.rbe, volume.rbe_tissues) if volume.rbe is not None else None
    dose, description = _whole_plan_dose(volume, where, extra.get("prescription"), model)
    return DoseSide(label=label, source=volume.source_path or "RT Dose in memory",
                    dose_gy=dose, grid=volume.grid,
                    dose_type=volume.dose_type, description=description,
                    frame_of_reference_uid=volume.frame_of_reference_uid,
                    structure_tissues=volume.rbe_tissues, patient_id=volume.patient_id,
                    patient_name=volume.patient_name, **extra)


#: Dose Summation Types that hold the dose of a whole plan (or of several plans summed).
WHOLE_PLAN_SUMMATIONS = ("PLAN", "MULTI_PLAN")


def _whole_plan_dose(volume: DoseVolume, where: str, prescription: Prescription | None,
                     model: str | None) -> tuple[NDArray[np.float32], str]:
    """The volume's dose as the whole plan's (every side of a comparison is a total dose) and
    its description: ``model`` (the full description of the RBE model it records), else its
    Dose Comment. A FRACTION dose is scaled by the fraction count of the plan that comes with
    it (and says so); a dose of one beam, one session or a record cannot stand for a plan.
    """
    dose = np.asarray(volume.dose_gy, dtype=np.float32)
    kind = volume.summation_type
    text = volume.comment if model is None else model
    if kind in WHOLE_PLAN_SUMMATIONS:
        return dose, text
    if kind == "FRACTION":
        if prescription is None:
            raise InputError(f"{where}: Dose Summation Type FRACTION (the dose of one fraction) "
                             "and no plan beside it gives the number of fractions; put the RT "
                             "Ion Plan it references next to it, or give a whole-plan dose "
                             "(Dose Summation Type PLAN)")
        n = prescription.n_fractions
        return dose * np.float32(n), f"{text} (one fraction's dose x {n} fractions)"
    raise InputError(f"{where}: Dose Summation Type {kind}: only whole-plan doses (PLAN, "
                     "MULTI_PLAN, or FRACTION with its plan) can be compared")


def _side_of_result(result: PlanResult, label: str, quantity: str) -> DoseSide:
    tissues: tuple[tuple[str, Tissue], ...] = ()  # LEM I tissues per structure of the dose
    if quantity == "physical":
        dose, dose_type, text = result.physical_dose_gy, "PHYSICAL", "physical dose"
    elif quantity == "rbe":
        # Under the physical model the plan's dose is a physical dose (Gy), never RBE-weighted.
        dose, text = (result.rbe_dose_gy_rbe,
                      str(result.report.get("rbe_model", result.plan.rbe_model)))
        dose_type = "PHYSICAL" if isinstance(result.model, PhysicalDose) else "EFFECTIVE"
        tissues = result.structure_tissues
    elif result.exchange is None:
        raise InputError(f"{label}: the {quantity} dose needs a plan computed with the exchange "
                         "view")
    elif quantity == "mkm":
        dose, dose_type, text = (result.exchange.mkm_dose_gy_rbe, "EFFECTIVE",
                                 result.exchange.mkm_model)
    else:
        dose, dose_type, text = (result.exchange.lem_dose_gy_rbe, "EFFECTIVE",
                                 result.exchange.lem_model)
        tissues = result.exchange.lem_structure_tissues
    ct = result.patient.ct
    return DoseSide(label=label, source=f"plan {result.plan.label!r} in memory", dose_gy=dose,
                    grid=result.dose_grid, dose_type=dose_type, description=text,
                    frame_of_reference_uid=ct.frame_of_reference_uid, plan=result.plan,
                    plan_frame_of_reference_uid=ct.frame_of_reference_uid,
                    plan_patient_position=ct.patient_position,
                    prescription=result.plan.prescription,
                    prescription_unit=prescription_unit_of(result.plan.rbe_model),
                    prescription_model=result.plan.rbe_label or "",
                    patient=result.patient,
                    structure_tissues=tissues,
                    patient_id=ct.study.patient_id if ct.study else "",
                    patient_name=ct.study.patient_name if ct.study else "")


def _side_of_file(path: Path, label: str) -> DoseSide:
    from planning.dicom import load_rt_dose

    volume = load_rt_dose(path)
    plan_path = path.parent / PLAN_FILE
    extra = (_plan_facts(plan_path, volume.referenced_plan_uid,
                         _report_calibration(path.parent / REPORT_FILE))
             if plan_path.is_file() else {})
    if "plan" in extra and "prescription" not in extra:  # not when the plan could not be read
        extra["prescription"] = extra["plan"].prescription
        extra["prescription_unit"] = prescription_unit_of(extra["plan"].rbe_model)
    if "plan" in extra:
        extra["prescription_model"] = extra["plan"].rbe_label or ""
    return _side_of_volume(volume, label, **extra)


def _side_of_folder(folder: Path, label: str, quantity: str) -> DoseSide:
    from planning.dicom import load_rt_dose

    name, expected_type = QUANTITY_FILES[quantity]
    dose_path = folder / name
    if not dose_path.is_file():
        present = sorted(p.name for p in folder.glob("RTDOSE*.dcm"))
        raise InputError(f"{folder}: no {name} for --quantity {quantity}; the folder holds "
                         f"{', '.join(present) if present else 'no RTDOSE*.dcm file'} "
                         f"({_missing_dose_hint(folder, quantity, present)})")
    volume = load_rt_dose(dose_path)
    if volume.dose_type != expected_type:
        raise InputError(f"{dose_path}: Dose Type {volume.dose_type}, expected {expected_type} "
                         f"for --quantity {quantity}")
    extra: dict[str, Any] = {}
    plan_path = folder / PLAN_FILE
    if plan_path.is_file():
        extra = _plan_facts(plan_path, volume.referenced_plan_uid,
                            _report_calibration(folder / REPORT_FILE))
    plan_unit = prescription_unit_of(extra["plan"].rbe_model) if "plan" in extra else ""
    prescription, unit, model = _report_prescription(folder / REPORT_FILE)
    if prescription is not None:
        extra["prescription"] = prescription
        extra["prescription_unit"] = unit or plan_unit  # reports before 2026-12-08: the plan's
        extra["prescription_model"] = model
    elif "plan" in extra:  # not when the plan could not be read (``plan_problem``)
        extra["prescription"] = extra["plan"].prescription
        extra["prescription_unit"] = plan_unit
    if "plan" in extra:  # its recorded model: report.json's named the default tissue alone
        # for a plan with LEM I tissues per structure before 2026-12-08
        extra["prescription_model"] = extra["plan"].rbe_label or extra.get(
            "prescription_model", "")
    patient = _folder_patient(folder)
    if patient is not None:
        extra["patient"] = patient
    return _side_of_volume(volume, label, **extra)


#: The model family (the start of its description) of each exchange-view quantity.
_EXCHANGE_FAMILIES = {"mkm": "mMKM", "lem1": "LEM I"}


def _missing_dose_hint(folder: Path, quantity: str, present: list[str]) -> str:
    """What to ask for instead when a plan folder has no dose file of ``quantity``. A folder
    of ``ionplan recalc --rbe lem1`` holds its LEM I dose as RTDOSE_RBE.dcm, not as the
    exchange view's RTDOSE_RBE_LEM1.dcm (the same for mMKM)."""
    if quantity == "rbe" and "RTDOSE_PHYSICAL.dcm" in present:
        return ("a plan computed under the physical model has no RBE-weighted dose: use "
                "--quantity physical")
    family = _EXCHANGE_FAMILIES.get(quantity)
    model = _dose_model(folder / QUANTITY_FILES["rbe"][0]) if family else None
    if family is None or model is None:
        return "give an RT Dose file or an ionplan plan/recalc output folder"
    name = short_model_name(model)
    if model.startswith(family):
        named = "" if name == family else f" ({name})"
        return f"its RTDOSE_RBE.dcm is already the {family} dose{named}: use --quantity rbe"
    return (f"its RTDOSE_RBE.dcm is the {name} dose (--quantity rbe); the mMKM and LEM I "
            "doses side by side are written by 'ionplan recalc --exchange' or "
            "'ionplan plan --exchange'")


def _dose_model(path: Path) -> str | None:
    """The description of the RBE model an RT Dose file records (its Dose Comment without
    IonPlan's record); None when there is no readable RBE-weighted dose there."""
    from planning.dicom import load_rt_dose

    if not path.is_file():
        return None
    try:
        volume = load_rt_dose(path)
    except (IonPlanError, OSError):
        return None
    if volume.dose_type != "EFFECTIVE":
        return None
    return (model_label(volume.rbe, volume.rbe_tissues) if volume.rbe else volume.comment) or None


def _plan_facts(plan_path: Path, referenced_plan_uid: str,
                calibration: MonitorCalibration | None = None) -> dict[str, Any]:
    """The plan of a dose, when ``plan_path`` is the RT Ion Plan the dose references (or the
    dose references none); empty otherwise. A plan in MU is read with ``calibration`` (the
    one its recalculation used, :func:`_report_calibration`); without one the side records
    why it has no plan (``plan_problem``), as it does for a file that is no DICOM file."""
    from planning.dicom import (
        DicomImportError,
        load_rt_ion_plan,
        metersets_in_mu,
        plan_sop_instance_uid,
    )

    try:
        uid = plan_sop_instance_uid(plan_path)
    except DicomImportError as exc:
        return {"plan_problem": str(exc)}
    if referenced_plan_uid and uid != referenced_plan_uid:
        return {}
    if calibration is None and metersets_in_mu(plan_path):  # the doses compare; the plan
        # needs the machine's monitor calibration
        return {"plan_problem": f"{plan_path.name} gives its metersets in MU (recalculate it "
                                "with 'ionplan recalc --particles-per-mu' to see it under "
                                "both models)"}
    imported = load_rt_ion_plan(plan_path, monitor_calibration=calibration)
    return {"plan": imported.plan, "plan_uid": imported.sop_instance_uid,
            "plan_frame_of_reference_uid": imported.frame_of_reference_uid,
            "plan_patient_position": imported.patient_position}


def _report_calibration(path: Path) -> MonitorCalibration | None:
    """The monitor calibration an ``ionplan recalc``/``robust`` report.json says its plan in MU
    was read with, if any and readable."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))["source_plan"][
            "monitor_calibration"]
        return None if record is None else MonitorCalibration.from_record(record)
    except (OSError, ValueError, KeyError, TypeError, IonPlanError):
        return None


def _report_prescription(path: Path) -> tuple[Prescription | None, str, str]:
    """The prescription of an ``ionplan plan``/``recalc`` report.json, its unit and the short
    name of its model (each ``""`` in reports written before it was recorded);
    ``(None, "", "")`` if unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        p = data["prescription"]
        return (Prescription(str(p["target"]), float(p["total_dose_gy_rbe"]),
                             int(p["n_fractions"])), str(p.get("unit") or ""),
                str(p.get("model") or ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IonPlanError):
        return None, "", ""


def _folder_patient(folder: Path) -> Patient | None:
    """The CT (and structure set) of a folder, when it holds a CT series."""
    from planning.dicom import load_patient, scan_folder

    if not scan_folder(folder).ct_series:
        return None
    return load_patient(folder)
