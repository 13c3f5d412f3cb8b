"""Forward dose of an imported RT Ion Plan on its CT (``ionplan recalc``).

A plan made here or by another system (:func:`planning.dicom.load_rt_ion_plan`) is checked
against the CT it is recalculated on (Frame of Reference and patient position must agree), its
spots are traced through the CT's relative stopping power (HLUT) and its spot weights (per
fraction) are passed forward through the dose engine
(:func:`planning.engine.forward_dose.forward_cubes`): whole-plan physical and RBE-weighted
dose, LETd and RBE on a dose grid covering the CT, and a report shaped like ``ionplan plan``'s
(metrics and DVHs per structure, beams, timings).

The RBE model is, unless the caller names one, the model the plan file states (IonPlan writes
``RBE model: <description>`` into the RT Plan Description; :func:`model_from_description`
reads it back with its parameters), else mMKM. Plans with range shifters are refused: the dose
engine does not model them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from planning.beams import Beam, SpotMap
from planning.compare.received_beams import beam_model_warnings
from planning.dose_grid import DoseGrid
from planning.dose_interpolation import trilinear_stencil
from planning.engine import PlanningEngine
from planning.engine.dose_engine import DoseEngineSettings, resolve_device
from planning.engine.forward_dose import forward_cubes
from planning.engine.problem import dose_model_setup
from planning.errors import InputError, PlanningError
from planning.exchange import exchange_report, exchange_view, paired_models
from planning.hlut import HlutUse, ct_stopping_power, load_hlut
from planning.machine import Machine, load_machine
from planning.monitor_calibration import MonitorCalibration
from planning.patient import Patient
from planning.plan import Plan
from planning.plan_checks import (
    coverage_warning,
    fractionation_warning,
    gross_dose_warning,
    physical_fractionation_warning,
    reference_point_warning,
)
from planning.plan_notes import model_note
from planning.plan_report import structure_report
from planning.planner import PlanResult, write_plan_outputs
from planning.progress import CancelToken, ProgressCallback, report, stage_progress
from planning.rbe import (
    ConstantRbe,
    LemModel,
    MkmModel,
    PhysicalDose,
    RbeModel,
    Tissue,
    dose_unit_of,
    prescription_unit_of,
)
from planning.rbe.lem import SCHEME_BEFORE_NAMED
from planning.rbe.record import describe_structure_tissues, model_label, short_model_name
from planning.resolution import grid_warning
from planning.structure_dose import body_mask, grid_of

#: The dose grid spacings (mm) a recalculation accepts.
MIN_GRID_MM = 0.5
MAX_GRID_MM = 20.0

_KEY_VALUE = re.compile(r"([A-Za-z][A-Za-z0-9/]*)=([-+0-9.eE]+)(?:um|Gy)?(?=\s|$)")
#: The LEM I rapid scheme of a description (``rapid=central``); absent before 2026-12.
_RAPID = re.compile(r"\brapid=([a-z]+)(?=\s|$)")
_MKM_KEYS = {"a0": "alpha0_gy", "b": "beta_gy2", "rd": "domain_radius_um",
             "Rn": "nucleus_radius_um", "Fclin": "f_clin", "ar": "alpha_ref_gy",
             "br": "beta_ref_gy2"}


@dataclass(frozen=True, eq=False)
class RecalcSetup:
    """Everything the forward dose of one plan on one CT needs.

    Attributes
    ----------
    patient : Patient
        The CT (and structures) the plan is recalculated on.
    plan : Plan
        The plan (spot weights per fraction, 10^6 primaries).
    machine : Machine
        Beam data.
    rsp : (nz, ny, nx) float32 array
        Relative stopping power on ``ct_grid``.
    ct_grid, dose_grid : DoseGrid
        CT grid and the grid of the result.
    beams : tuple of Beam
        The plan's beams, with the CT's patient position.
    spot_maps : tuple of SpotMap
        Spots of each beam.
    weights_per_fraction : (n_spots,) float64 array
        All spot weights, in the order of ``spot_maps``.
    body_mask : (nz, ny, nx) bool array on ``dose_grid``, or None
        Voxels to compute (the EXTERNAL structure); None lets the engine use an RSP threshold.
    settings : DoseEngineSettings
        Dose engine settings.
    warnings : tuple of str
        Things the checks found that do not stop the recalculation (the HLUT's clamping
        included).
    hlut : HlutUse or None
        The calibration curve that made ``rsp`` (the report's ``hlut`` entry).
    """

    patient: Patient
    plan: Plan
    machine: Machine
    rsp: NDArray[np.float32]
    ct_grid: DoseGrid
    dose_grid: DoseGrid
    beams: tuple[Beam, ...]
    spot_maps: tuple[SpotMap, ...]
    weights_per_fraction: NDArray[np.float64]
    body_mask: NDArray[np.bool_] | None
    settings: DoseEngineSettings
    warnings: tuple[str, ...] = ()
    hlut: HlutUse | None = None

    def engine(self, *, cancel: CancelToken | None = None) -> PlanningEngine:
        """The planning engine of this plan on its CT (dose inside the body)."""
        return PlanningEngine(self.machine, self.rsp, self.ct_grid, self.dose_grid, self.beams,
                              self.spot_maps, self.settings, calc_mask=self.body_mask,
                              cancel=cancel)


def model_from_description(text: str) -> RbeModel | None:
    """The RBE model an IonPlan ``RbeModel.describe()`` line names, with its parameters.

    Parameters
    ----------
    text : str
        E.g. ``"mMKM HSG a0=0.172 b=0.0615 rd=0.32um Rn=3.9um Fclin=2.41 ar=0.764
        br=0.0615"``, ``"LEM I chordoma rapid=central ax=0.1 bx=0.05 Dt=30Gy Rn=5um"``,
        ``"constant RBE 3"`` or ``"physical dose"``.

    Returns
    -------
    RbeModel or None
        None when the text names no model IonPlan knows (e.g. another system's description).
    """
    s = text.strip()
    values = {k: float(v) for k, v in _KEY_VALUE.findall(s)}
    try:
        if s.startswith("mMKM"):
            parts = s.split()
            kwargs: dict[str, Any] = {field: values[key] for key, field in _MKM_KEYS.items()
                                      if key in values}
            if len(parts) > 1 and "=" not in parts[1]:
                kwargs["cell_line"] = parts[1]
            return MkmModel(**kwargs)
        if s.startswith("LEM I "):
            name = s.split()[2]
            if not {"ax", "bx", "Dt"} <= set(values):
                return None
            # Descriptions written before the scheme was named were the averaged scheme.
            scheme = _RAPID.search(s)
            return LemModel(Tissue(name, values["ax"], values["bx"], values["Dt"],
                                   values.get("Rn", 5.0),
                                   scheme.group(1) if scheme else SCHEME_BEFORE_NAMED))
        if s.startswith("constant RBE "):
            return ConstantRbe(float(s.split()[2]))
        if s == "physical dose":
            return PhysicalDose()
    except (ValueError, IndexError, InputError, PlanningError):
        return None
    return None


def plan_model(plan: Plan) -> RbeModel | None:
    """The RBE model a plan was made with: its recorded model (``Plan.rbe``, from IonPlan's
    RBE model record), else the model its description names (:func:`model_from_description`,
    for plans written before the record existed), else None (also for a plan that names no
    model)."""
    if plan.rbe is not None:
        return plan.rbe
    return None if plan.rbe_model is None else model_from_description(plan.rbe_model)


def choose_model(plan: Plan, name: str | None, *, tissue: str | None = None,
                 rbe_value: float | None = None) -> tuple[RbeModel, str]:
    """The RBE model of a recalculation and where it came from.

    Parameters
    ----------
    plan : Plan
        The imported plan (its recorded model, or its ``rbe_model`` description).
    name : {"mkm", "lem1", "const", "physical"} or None
        The caller's choice; None takes the plan's model, else mMKM.
    tissue, rbe_value : optional
        LEM I tissue and constant RBE of a named model
        (:func:`planning.rbe.by_name.rbe_model_by_name`).

    Returns
    -------
    (RbeModel, str)
        The model and its source: ``"requested"``, ``"plan"`` or ``"default"``.
    """
    from planning.rbe.by_name import rbe_model_by_name as rbe_model

    if name is not None:
        return rbe_model(name, tissue, rbe_value), "requested"
    if tissue is not None or rbe_value is not None:
        raise InputError("--tissue and --rbe-value need an RBE model named with --rbe")
    model = plan_model(plan)
    if model is not None:
        return model, "plan"
    # Not logged here: the recalculation's report carries unknown_model_warning (printed
    # once by the CLI, shown by the GUI).
    return rbe_model("mkm"), "default"


def unknown_model_warning(plan: Plan) -> str:
    """The warning of a plan that names no RBE model, or one IonPlan does not know (mMKM is
    used instead, :func:`choose_model`); in the recalculation's report."""
    default = "its dose is recalculated under mMKM (the default)"
    if plan.rbe_model is None:
        return f"the plan names no RBE model: {default}"
    return f"the plan names RBE model {plan.rbe_model!r}, which IonPlan does not know: {default}"


def plan_structure_tissues(plan: Plan, model: RbeModel) -> tuple[tuple[str, Tissue], ...]:
    """The plan's LEM I tissues per structure if ``model`` is the plan's own model (they hold
    for it only); empty otherwise."""
    return plan.rbe_tissues if model == plan.rbe else ()


def exchange_lem_side(plan: Plan, model: RbeModel, requested: LemModel | None = None
                      ) -> tuple[LemModel | None, tuple[tuple[str, Tissue], ...]]:
    """The LEM I model and tissues per structure of a recalculation's exchange view: ``model``
    with the plan's tissues where it is the plan's own LEM I model (:func:`plan_structure_tissues`),
    another LEM I ``model`` alone; under another model the ``requested`` LEM I (``--tissue``),
    else the plan's own LEM I model with its tissues (a LEM I plan recalculated under another
    model); (None, ()) for the default LEM I."""
    if isinstance(model, LemModel):
        return model, plan_structure_tissues(plan, model)
    if requested is not None:
        return requested, ()
    if isinstance(plan.rbe, LemModel):
        return plan.rbe, plan.rbe_tissues
    return None, ()


def check_plan_on_ct(patient: Patient, frame_of_reference_uid: str, patient_position: str,
                     plan_path: str = "the plan", patient_id: str = "") -> list[str]:
    """Refuse a plan whose patient, Frame of Reference or patient position is not the CT's.

    Parameters
    ----------
    patient : Patient
        The CT to recalculate on.
    frame_of_reference_uid, patient_position : str
        Those of the plan (``""`` when the file did not state them).
    plan_path : str
        Named in messages.

    Returns
    -------
    list of str
        Warnings (a plan or CT that does not state its frame or position).

    Raises
    ------
    PlanningError
        Different Frames of Reference or patient positions.
    """
    ct = patient.ct
    warnings = []
    ct_id = ct.study.patient_id.strip()
    if patient_id and ct_id and patient_id != ct_id:
        raise PlanningError(f"{plan_path}: a plan of patient {patient_id!r} on the CT of patient "
                            f"{ct_id!r}; its doses would be labelled with the wrong patient")
    if frame_of_reference_uid and ct.frame_of_reference_uid:
        if frame_of_reference_uid != ct.frame_of_reference_uid:
            raise PlanningError(
                f"{plan_path}: Frame of Reference {frame_of_reference_uid} is not the CT's "
                f"({ct.frame_of_reference_uid}); recalculate the plan on the CT it was made on "
                "(or register the CT and re-export the plan)")
    else:
        warnings.append("the plan or the CT states no Frame of Reference UID: it could not be "
                        "checked that the plan belongs to this CT")
    # The CT's position, stated or implied by its orientation (the beams are set up in it).
    ct_position = ct.setup_position()
    stated = "" if ct.patient_position else " (implied by its image orientation)"
    if patient_position:
        if patient_position.upper() != ct_position:
            raise PlanningError(
                f"{plan_path}: patient position {patient_position} but the CT was scanned "
                f"{ct_position}{stated}; the beam geometry would be wrong")
    else:
        warnings.append(f"the plan states no patient position: {ct_position} (the CT's"
                        f"{stated}) is assumed")
    return warnings


def prepare_recalc(patient: Patient, plan: Plan, *, machine: Machine | None = None,
                   grid_mm: float | DoseGrid = 2.5, hlut_path: str | os.PathLike[str] | None = None,
                   device: str = "auto", cutoff_fraction: float = 0.99) -> RecalcSetup:
    """RSP, grids, beams and spots of ``plan`` on ``patient``'s CT.

    Parameters
    ----------
    patient : Patient
        The CT with its structure set (the EXTERNAL contour limits the calculation).
    plan : Plan
        The plan; its beams take the CT's patient position.
    machine : Machine, optional
        Beam data (default: the shipped generic machine). A different machine name than the
        plan's is a warning.
    grid_mm : float or DoseGrid
        Dose grid spacing (a grid covering the CT) in mm, or the dose grid itself.
    hlut_path : path, optional
        HU to RSP curve (``hu,rsp`` CSV); default: the generic curve.
    device : {"auto", "cpu", "gpu"}
        Dose engine device.
    cutoff_fraction : float
        :attr:`DoseEngineSettings.lateral_cutoff_fraction` (0.99 as ``ionplan plan``, so that
        a plan recalculates to its own dose).

    Raises
    ------
    PlanningError
        Range shifters, or a bad grid.
    """
    machine = machine or load_machine()
    warnings = []
    for bp in plan.beams:
        if bp.range_shifter_wet_mm > 0:
            raise PlanningError(
                f"beam {bp.beam.label!r} has a range shifter ({bp.range_shifter_wet_mm:g} mm "
                "water-equivalent), which the dose engine does not model")
    # DICOM's Treatment Machine Name holds 16 characters: compare what fits.
    if plan.machine_name and plan.machine_name.strip() != machine.treatment_machine_name:
        warnings.append(f"the plan names machine {plan.machine_name!r}; its dose is computed "
                        f"with the beam data of {machine.name!r}")
    ct = patient.ct
    ct_grid = grid_of(ct)
    if isinstance(grid_mm, DoseGrid):
        dose_grid = grid_mm
    else:
        if not (np.isfinite(grid_mm) and MIN_GRID_MM <= grid_mm <= MAX_GRID_MM):
            raise InputError(f"dose grid spacing must lie in [{MIN_GRID_MM:g}, "
                             f"{MAX_GRID_MM:g}] mm, got {grid_mm}")
        dose_grid = DoseGrid.covering(ct_grid, float(grid_mm))
    rsp, hlut = ct_stopping_power(ct.hu, load_hlut(hlut_path))
    clamped = hlut.warning()
    if clamped is not None:
        warnings.append(clamped)
    position = ct.setup_position()
    beams = tuple(dataclasses.replace(bp.beam, patient_position=position) for bp in plan.beams)
    settings = DoseEngineSettings(device=device, lateral_cutoff_fraction=cutoff_fraction)
    body = body_mask(patient, ct_grid, dose_grid) if patient.structure_set is not None else None
    return RecalcSetup(patient, plan, machine, rsp, ct_grid, dose_grid, beams,
                       tuple(bp.spots for bp in plan.beams), plan.all_weights(), body, settings,
                       tuple(warnings), hlut)


def plausibility_warnings(plan: Plan, model: RbeModel, model_source: str, target: str | None,
                          structures: Mapping[str, Mapping[str, Any]],
                          physical_dose_gy: NDArray[np.floating], dose_grid: DoseGrid,
                          n_fractions: int) -> list[str]:
    """What a recalculated plan's numbers say is wrong with it (:mod:`planning.plan_checks`):
    a target dose far from the prescription whatever the RBE model (not when one is a physical
    dose and the other RBE-weighted), a physical dose at the plan's dose
    specification point other than its Beam Doses state, and, as for a plan made here, the
    fractionation of its prescription and (under the plan's own model) its target coverage.

    Parameters
    ----------
    plan : Plan
        The recalculated plan (its prescription, model description and Beam Doses).
    model, model_source
        The model of the recalculation and where it came from (:func:`choose_model`).
    target : str or None
        The target's structure name on the CT (None: not there).
    structures : mapping
        The report's per-structure metrics (``d50_gy_rbe``, ``d95_gy_rbe``, ``d2_gy_rbe``).
    physical_dose_gy : (nz, ny, nx) array
        Total physical dose on ``dose_grid``, Gy.
    n_fractions : int
    """
    unit = dose_unit_of(model)
    rx = plan.prescription.total_dose_gy_rbe
    own_model = model_source == "plan" or model.describe() == plan.rbe_model
    # The target's median is held against the prescription only where both are the same kind
    # of dose: a physical dose is a third or so of a Gy(RBE) prescription, and an RBE-weighted
    # one two or three times a physical prescription, with nothing wrong with the plan (the
    # dose specification point below is checked in physical dose whatever the model).
    named = plan.rbe_model or ""  # a plan naming no model: an RBE-weighted prescription
    like_with_like = unit == prescription_unit_of(plan.rbe_model)
    out: list[str | None] = []
    metrics = structures.get(target) if target is not None else None
    if metrics is not None:
        if like_with_like:
            out.append(gross_dose_warning(target or "", float(metrics["d50_gy_rbe"]), rx,
                                          unit))
        if own_model:
            out.append(coverage_warning(target or "", metrics, rx, unit))
    if named.startswith("physical"):
        out.append(physical_fractionation_warning(rx, plan.prescription.n_fractions))
    else:
        out.append(fractionation_warning(rx, plan.prescription.n_fractions,
                                         lem=named.startswith("LEM I")))
    doses = plan.beam_doses
    if doses is not None:
        stencil, inside = trilinear_stencil([doses.point_mm], dose_grid)
        if inside.all():
            here = float(stencil.values(physical_dose_gy)[0]) / n_fractions
            out.append(reference_point_warning(sum(doses.physical_gy), here, doses.point_mm))
    return [w for w in out if w]


def _target_name(patient: Patient, plan: Plan) -> str | None:
    """The structure-set name of the plan's target, or None when it has no such structure."""
    if patient.structure_set is None:
        return None
    try:
        return patient.structure_set.get(plan.prescription.target).name
    except KeyError:
        return None


def recalculate(patient: Patient, plan: Plan, *, model: RbeModel, model_source: str = "requested",
                machine: Machine | None = None, grid_mm: float | DoseGrid = 2.5,
                hlut_path: str | os.PathLike[str] | None = None, device: str = "auto",
                cutoff_fraction: float = 0.99, exchange: bool = False,
                exchange_lem: LemModel | None = None,
                source: Mapping[str, Any] | None = None,
                progress: ProgressCallback | None = None, cancel: CancelToken | None = None
                ) -> PlanResult:
    """Forward dose of ``plan`` on ``patient``'s CT (no files written).

    Parameters
    ----------
    patient : Patient
        The CT and its structures. The caller checks that the plan belongs to it
        (:func:`check_plan_on_ct`).
    plan : Plan
        Spot weights per fraction; ``plan.prescription`` gives the fractions and the dose the
        metrics (V95, V107, conformity) refer to.
    model : RbeModel
        The RBE model of the RBE-weighted dose.
    model_source : str
        Where the model came from (``"requested"``, ``"plan"``, ``"default"``), reported.
    machine, grid_mm, hlut_path, device, cutoff_fraction :
        See :func:`prepare_recalc`.
    exchange : bool
        Also evaluate the plan under mMKM and LEM I (:mod:`planning.exchange`).
    exchange_lem : LemModel, optional
        The exchange view's LEM I side when ``model`` is not LEM I (:func:`exchange_lem_side`).
    source : mapping, optional
        Facts about the imported file for the report (path, SOP Instance UID, warnings).
    progress, cancel : optional
        Progress callback ``(fraction, stage)`` and cancel token.

    Returns
    -------
    PlanResult
        The plan, total cubes on the dose grid (nz, ny, nx) float32 (Gy, Gy(RBE), keV/um),
        per-beam physical dose, the exchange view if asked, and the report (``structures``,
        ``dvh_gy_rbe``, ``beams``, ``timings_s`` like ``ionplan plan``, plus ``source_plan``,
        ``rbe_model_source`` and ``warnings``).
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    report(progress, 0.0, "preparing recalculation")
    setup = prepare_recalc(patient, plan, machine=machine, grid_mm=grid_mm, hlut_path=hlut_path,
                           device=device, cutoff_fraction=cutoff_fraction)
    t0 = time.perf_counter()
    # The plan's LEM I tissues per structure hold for the plan's own model only.
    structure_tissues = plan_structure_tissues(plan, model)
    tissues = dose_model_setup(patient, setup.machine, model, structure_tissues,
                               setup.dose_grid)
    timings["tables"] = time.perf_counter() - t0
    if cancel is not None:
        cancel.raise_if_cancelled("recalculation")
    t0 = time.perf_counter()
    n_fx = plan.prescription.n_fractions
    engine = setup.engine(cancel=cancel)
    cubes = forward_cubes(engine, setup.weights_per_fraction, model, tissues.tables, n_fx,
                          groups=tissues.groups,
                          progress=stage_progress(progress, 0.05, 0.8 if exchange else 0.95),
                          cancel=cancel)
    timings["forward_dose"] = time.perf_counter() - t0
    target = _target_name(patient, plan)
    unit, rx_unit = dose_unit_of(model), prescription_unit_of(plan.rbe_model)
    sections = structure_report(patient, setup.dose_grid, cubes.physical_dose_gy,
                                cubes.rbe_dose_gy_rbe, plan.prescription.total_dose_gy_rbe,
                                target, labels=tissues.labels, relative=unit == rx_unit)
    warnings = [*patient.import_warnings(), *(source or {}).get("warnings", ()),
                *setup.warnings]
    if model_source == "default":  # the plan's model is none or unknown: choose_model took mMKM
        warnings.append(unknown_model_warning(plan))
    if plan.rbe_tissues and not structure_tissues:
        warnings.append(f"the plan's LEM I tissues per structure "
                        f"({describe_structure_tissues(plan.rbe_tissues)}) are not applied: "
                        f"recalculated with {model.describe()} everywhere")
    coarse = grid_warning(setup.dose_grid.spacing_mm, optimized=False)
    if coarse is not None:
        warnings.append(coarse)
    if target is None:
        warnings.append(f"the plan's target {plan.prescription.target!r} is not a structure "
                        "of the CT's structure set")
    if model_source != "default":  # that case has unknown_model_warning
        other = model_note(plan.rbe_label, model_label(model, structure_tissues))
        if other is not None:
            warnings.append(other)
    warnings += plausibility_warnings(plan, model, model_source, target, sections.structures,
                                      cubes.physical_dose_gy, setup.dose_grid, n_fx)

    rep: dict[str, Any] = {
        "source_plan": dict(source or {}),
        "prescription": {"target": target or plan.prescription.target,
                         "total_dose_gy_rbe": plan.prescription.total_dose_gy_rbe,
                         "n_fractions": n_fx,
                         "dose_per_fraction_gy_rbe": plan.prescription.dose_per_fraction_gy_rbe,
                         "unit": rx_unit,
                         # Whose Gy(RBE) (or Gy) the prescription is: a dose under another
                         # model is another number for the same effect.
                         "model": short_model_name(plan.rbe_label) if plan.rbe_label else None},
        "dose_unit": unit,
        "rbe_model": model_label(model, structure_tissues),
        "rbe_model_source": model_source,
        "plan_rbe_model": plan.rbe_label,
        "machine": setup.machine.name,
        "hlut": None if setup.hlut is None else setup.hlut.record(),
        "beams": [{"name": b.label, "gantry_deg": b.gantry_deg, "couch_deg": b.couch_deg,
                   "isocenter_mm": list(b.isocenter_mm), "spots": s.n_spots,
                   "layers": int(np.unique(s.layer).size),
                   "target_mean_gy": sections.mean_of(target, bd)}
                  for b, s, bd in zip(setup.beams, setup.spot_maps, cubes.beam_physical_dose_gy,
                                      strict=True)],
        "spots": int(plan.n_spots),
        "device": resolve_device(device),
        "lateral_cutoff_fraction": cutoff_fraction,
        "dose_grid": {"shape": list(setup.dose_grid.shape),
                      "spacing_mm": list(setup.dose_grid.spacing_mm),
                      "origin_mm": list(setup.dose_grid.origin_mm)},
        "structures": sections.structures,
        "dvh_gy_rbe": sections.dvh_gy_rbe,
        **({} if unit == rx_unit else {"prescription_relative_note": (
            f"no V95, V107 or conformity index (null): the dose is {unit}, the prescription "
            f"{plan.prescription.total_dose_gy_rbe:g} {rx_unit}")}),
        "warnings": warnings,
        "timings_s": timings,
    }
    view = None
    if exchange:
        t0 = time.perf_counter()
        lem, lem_tissues = exchange_lem_side(plan, model, exchange_lem)
        mkm, lem = paired_models(model, lem)
        view = exchange_view(engine, setup.weights_per_fraction, n_fx, mkm=mkm, lem=lem,
                             lem_structure_tissues=lem_tissues, patient=patient,
                             progress=stage_progress(progress, 0.8, 0.99), cancel=cancel)
        rep["exchange"] = exchange_report(view, sections.samples_by_name)
        timings["exchange"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    report(progress, 1.0, "recalculation done")
    return PlanResult(plan, patient, setup.dose_grid, cubes.physical_dose_gy,
                      cubes.rbe_dose_gy_rbe, cubes.letd_kev_um, cubes.rbe, model, report=rep,
                      exchange=view, beam_physical_dose_gy=cubes.beam_physical_dose_gy,
                      tissue_labels=tissues.labels, structure_tissues=structure_tissues)


def load_patient_and_plan(ct: str | os.PathLike[str] | Patient,
                          rtplan: str | os.PathLike[str] | Plan, *,
                          progress: ProgressCallback | None = None,
                          cancel: CancelToken | None = None,
                          ct_series_uid: str | None = None,
                          monitor_calibration: MonitorCalibration | None = None,
                          machine: Machine | None = None
                          ) -> tuple[Patient, Plan, dict[str, Any]]:
    """The patient and the plan (loaded where given as paths, the plan checked against the
    CT's Frame of Reference and patient position) and the source facts for the report
    (path, SOP Instance UID, warnings; the monitor calibration where one is given).
    ``ct_series_uid`` chooses the CT series of a folder that holds several;
    ``monitor_calibration`` converts a plan's metersets in MU to particles; ``machine``, the
    beam model of the dose, is held against the virtual SAD and spot sizes the plan file
    states (:mod:`planning.compare.received_beams`: warnings).

    Raises
    ------
    InputError
        A path that is not a folder (CT) or not a file (plan), ``ct_series_uid`` with a loaded
        patient.
    DicomImportError, PlanningError
        Unreadable files, a CT folder without an RT Structure Set for its CT, a plan of
        another patient frame.
    """
    from planning.dicom import DicomImportError, load_patient, load_rt_ion_plan

    if isinstance(ct, Patient):
        if ct_series_uid is not None:
            raise InputError("a CT series is chosen in a CT folder, not in a loaded patient")
        patient = ct
    else:
        if not Path(ct).is_dir():
            raise InputError(f"{ct}: not a folder; give the folder of the CT series")
        patient = load_patient(ct, series_uid=ct_series_uid,
                               progress=stage_progress(progress, 0.0, 0.03), cancel=cancel)
        if patient.structure_set is None:
            # The report's metrics, the body outline and the RTPLAN written back all need it.
            raise DicomImportError(
                ct, f"the folder holds no RT Structure Set for CT series "
                    f"{patient.ct.series_instance_uid}: add the RTSTRUCT the plan was made on "
                    "(its structures give the body outline, the target and the report's "
                    "metrics, and the RT Ion Plan written back refers to it)")
    source: dict[str, Any] = {}
    if isinstance(rtplan, Plan):
        plan = rtplan
        source["path"] = None
    else:
        if not Path(rtplan).is_file():
            what = "a folder, not a file" if Path(rtplan).is_dir() else "no such file"
            raise InputError(f"{rtplan}: {what}; give the RT Ion Plan file")
        imported = load_rt_ion_plan(rtplan, structure_set=patient.structure_set,
                                    monitor_calibration=monitor_calibration)
        in_mu = imported.in_mu
        plan = imported.plan
        warnings = check_plan_on_ct(patient, imported.frame_of_reference_uid,
                                    imported.patient_position, str(rtplan),
                                    patient_id=imported.patient_id)
        ss = patient.structure_set
        if (imported.referenced_structure_set_uid and ss is not None
                and imported.referenced_structure_set_uid != ss.sop_instance_uid):
            warnings.append("the plan references another RT Structure Set than the CT "
                            "folder's; structure metrics use the folder's")
        # The file is written back unchanged: its RT Plan Label is what the plan document's
        # "Plan label" gives; the plan is named by its RT Plan Name where it has one.
        source = {"path": str(rtplan), "sop_instance_uid": imported.sop_instance_uid,
                  "rt_plan_label": imported.rt_plan_label, "name_source": imported.name_source,
                  "frame_of_reference_uid": imported.frame_of_reference_uid,
                  "prescription_found": imported.prescription_found,
                  "monitor_calibration": (monitor_calibration.record() if in_mu
                                          and monitor_calibration is not None else None),
                  "warnings": [*imported.warnings, *warnings]}
        if monitor_calibration is not None and not in_mu:
            source["warnings"].append("a monitor calibration was given, but the plan's "
                                      "metersets are particles (NP): it was not used")
        if machine is not None:
            source["warnings"] += beam_model_warnings(plan, imported.sad_mm,
                                                      imported.spot_fwhm_mm, machine)
    return patient, plan, source


def recalculate_files(ct: str | os.PathLike[str] | Patient, rtplan: str | os.PathLike[str] | Plan,
                      *, rbe: str | None = None, rbe_value: float | None = None,
                      tissue: str | None = None, machine: Machine | None = None,
                      grid_mm: float | DoseGrid = 2.5,
                      hlut_path: str | os.PathLike[str] | None = None, device: str = "auto",
                      cutoff_fraction: float = 0.99, exchange: bool = False,
                      out_dir: str | os.PathLike[str] | None = None,
                      progress: ProgressCallback | None = None,
                      cancel: CancelToken | None = None,
                      ct_series_uid: str | None = None,
                      monitor_calibration: MonitorCalibration | None = None) -> PlanResult:
    """Load (where given as paths), check and recalculate; write the outputs to ``out_dir``.

    Parameters
    ----------
    ct : path or Patient
        DICOM folder with the CT (and its RT Structure Set), or a loaded patient.
    rtplan : path or Plan
        RT Ion Plan file, or a plan in memory (not checked against the CT's frame: a
        :class:`Plan` carries none).
    rbe : {"mkm", "lem1", "const", "physical"} or None
        RBE model; None uses the plan's (:func:`choose_model`).
    out_dir : path, optional
        Where RTPLAN.dcm (the plan as recalculated), RTDOSE_PHYSICAL.dcm, RTDOSE_RBE.dcm
        (RTDOSE_RBE_MKM.dcm, RTDOSE_RBE_LEM1.dcm with ``exchange``), the plan document (PDF,
        named after the plan's name) and report.json go.
    ct_series_uid : str, optional
        The CT series of a ``ct`` folder that holds several.
    monitor_calibration : MonitorCalibration, optional
        Particles per MU of the machine, for a plan whose metersets are in MU.

    Other parameters are those of :func:`recalculate`.

    Raises
    ------
    DicomImportError
        Unreadable CT, structure set or plan.
    PlanningError
        The plan does not belong to the CT, or cannot be computed.
    """
    machine = machine or load_machine()
    patient, plan, source = load_patient_and_plan(ct, rtplan, progress=progress, cancel=cancel,
                                                  ct_series_uid=ct_series_uid,
                                                  monitor_calibration=monitor_calibration,
                                                  machine=machine)
    # Under another model than LEM I, the tissue of an exchange view is its LEM I side's
    # (it was dropped without a word, and an exchange without --rbe was refused).
    exchange_lem = None
    if exchange and tissue is not None and rbe != "lem1":
        from planning.rbe.by_name import rbe_model_by_name

        exchange_lem = cast(LemModel, rbe_model_by_name("lem1", tissue))
        tissue = None
    model, model_source = choose_model(plan, rbe, tissue=tissue, rbe_value=rbe_value)
    if isinstance(model, LemModel) and exchange_lem is not None:
        raise InputError(f"--tissue {exchange_lem.tissue.name}: the dose is computed under the "
                         f"plan's own LEM I ({short_model_name(model.describe())}), which is "
                         "also the exchange view's LEM I side; give --rbe lem1 with --tissue "
                         "to recalculate under another LEM I tissue")
    result = recalculate(patient, plan, model=model, model_source=model_source, machine=machine,
                         grid_mm=grid_mm, hlut_path=hlut_path, device=device,
                         cutoff_fraction=cutoff_fraction, exchange=exchange,
                         exchange_lem=exchange_lem, source=source,
                         progress=stage_progress(progress, 0.03, 1.0), cancel=cancel)
    if out_dir is not None:  # with the plan document, as a plan's (adds timings_s["export"])
        write_plan_outputs(result, out_dir, machine=machine,
                           plan_name=plan.label or "recalculated plan")
    return result
