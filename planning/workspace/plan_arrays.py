"""A computed plan as plain JSON and named arrays, and back (the plan folders of a workspace).

Everything a :class:`~planning.planner.PlanResult` shows is kept: the plan (beams, spot maps,
spot weights, prescription, RBE model record), its dose grid, its report and every dose cube
(physical, RBE-weighted, LETd, RBE, per-beam physical dose, the exchange view's cubes). A
reopened plan is displayed, compared and exported without recomputing; it has no kept
optimizer matrices (``prepared`` is None), so re-optimization needs a new Compute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.beams import Beam, SpotMap
from planning.dose_grid import DoseGrid
from planning.engine.problem import recorded_tissue_groups
from planning.errors import IonPlanError
from planning.exchange import ExchangeView
from planning.patient import Patient
from planning.plan import BeamDoses, BeamPlan, Plan, Prescription
from planning.planner import PlanResult
from planning.rbe import LemModel, MkmModel
from planning.rbe.record import (
    model_from_record,
    model_record,
    structure_tissues_from_record,
)
from planning.robust_tables import ROBUST_REPORT_KEYS

#: Cubes of a plan, by array name and PlanResult attribute.
CUBES = ("physical_dose_gy", "rbe_dose_gy_rbe", "letd_kev_um", "rbe")
#: Cubes of the exchange view, by ExchangeView attribute (array name ``exchange_<attr>``).
EXCHANGE_CUBES = ("dose_gy", "mkm_dose_gy_rbe", "lem_dose_gy_rbe", "ratio_lem_over_mkm")


class PlanRecordError(IonPlanError):
    """A stored plan's description or arrays do not make a valid plan."""


def _grid_json(grid: DoseGrid) -> dict[str, list[float] | list[int]]:
    return {"shape": list(grid.shape), "spacing_mm": list(grid.spacing_mm),
            "origin_mm": list(grid.origin_mm)}


def _grid(data: Mapping[str, Any]) -> DoseGrid:
    s, sp, o = data["shape"], data["spacing_mm"], data["origin_mm"]
    return DoseGrid((int(s[0]), int(s[1]), int(s[2])),
                    (float(sp[0]), float(sp[1]), float(sp[2])),
                    (float(o[0]), float(o[1]), float(o[2])))


def _xyz(values: Any) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])


def _named_model(stored: Any) -> str | None:
    """A stored ``Plan.rbe_model``: None (null) for a plan that names no RBE model, as do the
    ``"unknown"`` of workspaces saved before a received plan's unnamed model was None."""
    return None if stored is None or stored == "unknown" else str(stored)


def plan_to_record(result: PlanResult) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """The JSON description and the named arrays of ``result`` (the patient is not included:
    the workspace belongs to it).

    Returns
    -------
    meta : dict
        JSON-serialisable: ``plan``, ``dose_grid``, ``model``, ``report`` (without the
        entries of a robust evaluation, which are kept with it:
        :mod:`planning.workspace.robust_arrays`), ``exchange``.
    arrays : dict of str to ndarray
        Spot arrays ``beam<i>_<energy_mev_u|layer|u_mm|v_mm|weights>`` (n_spots,), cubes
        (nz, ny, nx) float32 on ``dose_grid``: ``physical_dose_gy``, ``rbe_dose_gy_rbe``,
        ``letd_kev_um``, ``rbe``, ``beam<i>_physical_dose_gy`` and with the exchange view
        ``exchange_<dose_gy|mkm_dose_gy_rbe|lem_dose_gy_rbe|ratio_lem_over_mkm>``.
    """
    plan = result.plan
    arrays: dict[str, NDArray[Any]] = {}
    beams = []
    for i, bp in enumerate(plan.beams):
        b = bp.beam
        beams.append({"isocenter_mm": list(b.isocenter_mm), "gantry_deg": b.gantry_deg,
                      "couch_deg": b.couch_deg, "name": b.name,
                      "patient_position": b.patient_position,
                      "spacing_mm": list(bp.spots.spacing_mm),
                      "lattice_origin_mm": list(bp.spots.lattice_origin_mm),
                      "range_shifter_wet_mm": bp.range_shifter_wet_mm})
        arrays[f"beam{i}_energy_mev_u"] = np.asarray(bp.spots.energy_mev_u, np.float64)
        arrays[f"beam{i}_layer"] = np.asarray(bp.spots.layer, np.int64)
        arrays[f"beam{i}_u_mm"] = np.asarray(bp.spots.u_mm, np.float64)
        arrays[f"beam{i}_v_mm"] = np.asarray(bp.spots.v_mm, np.float64)
        arrays[f"beam{i}_weights"] = np.asarray(bp.weights, np.float64)
    bd = plan.beam_doses
    plan_json = {
        "label": plan.label, "machine_name": plan.machine_name, "beams": beams,
        "prescription": {"target": plan.prescription.target,
                         "total_dose_gy_rbe": plan.prescription.total_dose_gy_rbe,
                         "n_fractions": plan.prescription.n_fractions},
        "rbe_model": plan.rbe_model, "ion_z": plan.ion_z, "ion_a": plan.ion_a,
        "notes": list(plan.notes),
        "rbe": None if plan.rbe is None else model_record(plan.rbe, plan.rbe_tissues),
        "beam_doses": None if bd is None else {
            "point_mm": list(bd.point_mm), "physical_gy": list(bd.physical_gy),
            "rbe_weighted_gy_rbe": list(bd.rbe_weighted_gy_rbe)}}
    for name in CUBES:
        arrays[name] = np.asarray(getattr(result, name), np.float32)
    for i, cube in enumerate(result.beam_physical_dose_gy):
        arrays[f"beam{i}_physical_dose_gy"] = np.asarray(cube, np.float32)
    x = result.exchange
    exchange = None
    if x is not None:
        exchange = {"dose_grid": _grid_json(x.dose_grid), "mkm": model_record(x.mkm),
                    "lem": model_record(x.lem, x.lem_structure_tissues),
                    "n_fractions": x.n_fractions}
        for name in EXCHANGE_CUBES:
            arrays[f"exchange_{name}"] = np.asarray(getattr(x, name), np.float32)
    meta = {"plan": plan_json, "dose_grid": _grid_json(result.dose_grid),
            "model": model_record(result.model, result.structure_tissues),
            # A robust evaluation's entries are kept with the evaluation (robust_arrays).
            "report": {k: v for k, v in result.report.items() if k not in ROBUST_REPORT_KEYS},
            "exchange": exchange, "n_beam_cubes": len(result.beam_physical_dose_gy)}
    return meta, arrays


def _cube(arrays: Mapping[str, NDArray[Any]], name: str, grid: DoseGrid) -> NDArray[np.float32]:
    cube = arrays[name]
    if cube.shape != grid.shape:
        raise PlanRecordError(f"cube {name} has shape {cube.shape}, its grid {grid.shape}")
    return np.asarray(cube, np.float32)


def plan_from_record(meta: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]],
                     patient: Patient) -> PlanResult:
    """Rebuild the plan of :func:`plan_to_record` on ``patient``.

    Raises
    ------
    PlanRecordError
        A field or array is missing, of the wrong type or shape, or makes an invalid plan.
    """
    try:
        return _rebuild(meta, arrays, patient)
    except PlanRecordError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise PlanRecordError(f"missing or malformed {exc!s}") from None
    except OverflowError as exc:  # Infinity (valid JSON to Python) where an integer belongs
        raise PlanRecordError(f"a number out of range ({exc})") from None
    except IonPlanError as exc:  # the plan's own checks (weights, spots, models)
        raise PlanRecordError(str(exc)) from None


def _rebuild(meta: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]],
             patient: Patient) -> PlanResult:
    p = meta["plan"]
    beams = []
    for i, b in enumerate(p["beams"]):
        spots = SpotMap(arrays[f"beam{i}_energy_mev_u"], arrays[f"beam{i}_layer"],
                        arrays[f"beam{i}_u_mm"], arrays[f"beam{i}_v_mm"],
                        (float(b["spacing_mm"][0]), float(b["spacing_mm"][1])),
                        (float(b["lattice_origin_mm"][0]), float(b["lattice_origin_mm"][1])))
        beam = Beam(_xyz(b["isocenter_mm"]), float(b["gantry_deg"]), float(b["couch_deg"]),
                    str(b["name"]), str(b["patient_position"]))
        beams.append(BeamPlan(beam, spots, arrays[f"beam{i}_weights"],
                              float(b["range_shifter_wet_mm"])))
    rx = p["prescription"]
    bd = p["beam_doses"]
    plan = Plan(
        label=str(p["label"]), machine_name=str(p["machine_name"]), beams=tuple(beams),
        prescription=Prescription(str(rx["target"]), float(rx["total_dose_gy_rbe"]),
                                  int(rx["n_fractions"])),
        rbe_model=_named_model(p["rbe_model"]), ion_z=int(p["ion_z"]), ion_a=int(p["ion_a"]),
        notes=tuple(str(n) for n in p["notes"]),
        rbe=None if p["rbe"] is None else model_from_record(p["rbe"]),
        rbe_tissues=() if p["rbe"] is None else structure_tissues_from_record(p["rbe"]),
        beam_doses=None if bd is None else BeamDoses(
            _xyz(bd["point_mm"]), tuple(float(v) for v in bd["physical_gy"]),
            tuple(float(v) for v in bd["rbe_weighted_gy_rbe"])))
    grid = _grid(meta["dose_grid"])
    exchange = None
    x = meta["exchange"]
    if x is not None:
        x_grid = _grid(x["dose_grid"])
        mkm, lem = model_from_record(x["mkm"]), model_from_record(x["lem"])
        if not (isinstance(mkm, MkmModel) and isinstance(lem, LemModel)):
            raise PlanRecordError("the exchange view needs an mMKM and a LEM I model")
        x_cubes = {name: _cube(arrays, f"exchange_{name}", x_grid) for name in EXCHANGE_CUBES}
        lem_tissues = structure_tissues_from_record(x["lem"])
        exchange = ExchangeView(
            dose_grid=x_grid, mkm=mkm, lem=lem, n_fractions=int(x["n_fractions"]), **x_cubes,
            lem_structure_tissues=lem_tissues,
            lem_labels=recorded_tissue_groups(patient, lem, lem_tissues, x_grid)[2])
    report = meta["report"]
    if not isinstance(report, dict):
        raise PlanRecordError("the report must be an object")
    # Robust entries come only with a restored evaluation (a plan file written before they
    # were kept apart may hold those of an evaluation whose cubes were never stored).
    report = {k: v for k, v in report.items() if k not in ROBUST_REPORT_KEYS}
    model = model_from_record(meta["model"])
    structure_tissues = structure_tissues_from_record(meta["model"])
    n_beam_cubes = int(meta["n_beam_cubes"])
    return PlanResult(
        plan=plan, patient=patient, dose_grid=grid, model=model, report=report,
        exchange=exchange,
        beam_physical_dose_gy=tuple(_cube(arrays, f"beam{i}_physical_dose_gy", grid)
                                    for i in range(n_beam_cubes)),
        physical_dose_gy=_cube(arrays, "physical_dose_gy", grid),
        rbe_dose_gy_rbe=_cube(arrays, "rbe_dose_gy_rbe", grid),
        letd_kev_um=_cube(arrays, "letd_kev_um", grid), rbe=_cube(arrays, "rbe", grid),
        tissue_labels=recorded_tissue_groups(patient, model, structure_tissues, grid)[2],
        structure_tissues=structure_tissues)
