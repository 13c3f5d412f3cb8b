"""Inverse planning from a CT with structures to an optimized, exported carbon-ion plan.

:func:`make_plan` runs the whole pipeline of one :class:`PlanRequest`: load the patient, HU to
RSP through the default HLUT, isocentre at the target centroid, spots per beam
(:func:`planning.dose_engine.place_spots`), the RBE model's depth tables, the influence matrices
(dose, LET x dose and the model sums) on the dose grid inside the body, spot-weight optimization
on RBE-weighted dose per fraction (:mod:`planning.optimization`), the forward dose cubes and the
metrics per structure (:mod:`planning.evaluation`). :func:`write_plan_outputs` exports
``RTPLAN.dcm``, ``RTDOSE_PHYSICAL.dcm``, ``RTDOSE_RBE.dcm`` (total plan doses) and
``report.json``.

Objectives
----------
Without a configuration file the objectives are, with ``p`` the prescription:

- target: ``squared_deviation`` to ``p`` (weight 100), ``min_dose`` at 0.97 ``p`` and
  ``max_dose`` at 1.03 ``p`` (weight 100 each; a little inside the 95-105 % goals so that D95
  and D5 land inside them);
- every ROI of interpreted type ORGAN or AVOIDANCE: ``max_dose`` at ``p`` (weight 1), a mild
  guard against hot spots that does not compete with target coverage (give real organ limits in
  a configuration file).

A configuration file (TOML or JSON) holds ``objectives``, a list of tables with ``structure``,
``type``, ``dose_gy_rbe`` (total plan dose), ``weight`` and, for DVH types,
``volume_fraction``; an objective on the same structure and type as a default replaces it, the
others are added. ``replace_defaults = true`` drops all defaults. An optional ``[optimizer]``
table sets :class:`planning.optimization.OptimizerSettings` fields (``max_iterations``,
``min_spot_weight``, ``tolerance``); the planner's default is 100 iterations.

Tissues (LEM I only)
--------------------
An optional ``tissues`` table maps structure names to LEM I tissues, each a class name
(``chordoma``, ``hsg``, ``v79``) or ``"alpha_x,beta_x,D_t"`` (1/Gy, 1/Gy^2, Gy). The dose-grid
voxels of a listed structure are evaluated (in the optimization and in the dose cubes) with
LEM I for its tissue; voxels in no listed structure use the plan's tissue (``--tissue`` or the
default class). Where listed structures overlap, the first listed wins. With any other RBE
model a ``tissues`` table is an error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.atomic import atomic_write_text
from planning.dose_engine import (
    Beam,
    DoseEngineSettings,
    DoseGrid,
    DoseInfluence,
    SpotMap,
    build_influence,
    place_spots,
    resolve_device,
)
from planning.errors import InputError, PlanningError
from planning.evaluation import conformity_index, cumulative_dvh, dose_metrics
from planning.exchange import (
    ExchangeView,
    exchange_report,
    exchange_view,
    paired_models,
    write_exchange_doses,
)
from planning.hlut import default_hlut, load_hlut_csv
from planning.machine import Machine, load_machine
from planning.optimization import (
    Objective,
    OptimizationProblem,
    OptimizerSettings,
    RbeGroup,
    optimize_weights,
)
from planning.patient import CtVolume, Patient
from planning.plan import BeamPlan, Plan, Prescription
from planning.progress import CancelToken, ProgressCallback, report
from planning.rbe import DepthTables, LemModel, RbeModel, Tissue, depth_tables, parse_tissue

log = logging.getLogger(__name__)

#: Spots whose influence the forward pass of the final cubes builds at a time (whole layers):
#: about 10-30 thousand nonzeros per spot, so a few hundred MB per pass.
FORWARD_SPOTS_PER_PASS = 1000

OAR_TYPES = ("ORGAN", "AVOIDANCE")
#: Optimizer settings without an ``[optimizer]`` table: 100 iterations reach D95/D5 within
#: 1 % of the prescription on the demo patient; more mostly polish the objective value.
PLANNER_OPTIMIZER = OptimizerSettings(max_iterations=100)
BODY_NAMES = ("external", "body", "skin")


@dataclass(frozen=True)
class PlanRequest:
    """What to plan.

    Attributes
    ----------
    target : str
        Target ROI name.
    total_dose_gy_rbe : float
        Prescribed dose of the whole plan, Gy(RBE) (Gy for ``rbe_model="physical"``).
    n_fractions : int
        Number of fractions.
    gantry_deg : tuple of float
        One gantry angle per beam, degrees (IEC 61217).
    couch_deg : tuple of float
        Couch angle of each beam; empty means 0 for every beam.
    ct_dir : str or None
        DICOM folder with the CT and its structure set (unless ``patient`` is given).
    patient : Patient or None
        An already loaded patient.
    rbe_model : {"mkm", "lem1", "const", "physical"}
        RBE model (see :func:`planning.api.rbe_model`).
    rbe_value : float or None
        The RBE of ``"const"``.
    tissue : str or None
        LEM I tissue (name or ``alpha_x,beta_x,D_t``).
    spot_spacing_mm, dose_grid_mm, layer_spacing_mm : float
        Lateral spot lattice, dose grid spacing and Bragg peak spacing of the layers, mm.
    config_path : str or None
        Objectives configuration file (TOML or JSON; see the module docstring).
    device : {"auto", "cpu", "gpu"}
        Compute device of the dose engine.
    output_dir : str or None
        Where :func:`write_plan_outputs` writes; None writes nothing.
    cutoff_fraction : float
        :attr:`planning.dose_engine.DoseEngineSettings.lateral_cutoff_fraction`.
    hlut_path : str or None
        HU to relative stopping power CSV (``hu,rsp``); None uses the generic default curve.
    label : str
        RT Plan Label (at most 16 characters).
    exchange : bool
        Also evaluate the optimized plan under mMKM and LEM I (:mod:`planning.exchange`):
        ``report["exchange"]`` and, from :func:`write_plan_outputs`, ``RTDOSE_RBE_MKM.dcm``
        and ``RTDOSE_RBE_LEM1.dcm``.
    config : PlanConfig or None
        Objectives, optimizer settings and tissues given in memory (the GUI's plan setup);
        exclusive with ``config_path``.
    """

    target: str
    total_dose_gy_rbe: float
    n_fractions: int
    gantry_deg: tuple[float, ...]
    couch_deg: tuple[float, ...] = ()
    ct_dir: str | None = None
    patient: Patient | None = None
    rbe_model: str = "mkm"
    rbe_value: float | None = None
    tissue: str | None = None
    spot_spacing_mm: float = 3.0
    dose_grid_mm: float = 3.0
    layer_spacing_mm: float = 2.0
    config_path: str | None = None
    device: str = "auto"
    output_dir: str | None = None
    cutoff_fraction: float = 0.99
    label: str = "IonPlan"
    hlut_path: str | None = None
    exchange: bool = False
    config: PlanConfig | None = None

    def __post_init__(self) -> None:
        if (self.ct_dir is None) == (self.patient is None):
            raise InputError("give either a CT folder or a loaded patient")
        if self.config is not None and self.config_path is not None:
            raise InputError("give the plan configuration either as a file or in memory, "
                             "not both")
        if not self.gantry_deg:
            raise InputError("give at least one gantry angle")
        if self.couch_deg and len(self.couch_deg) != len(self.gantry_deg):
            raise InputError(f"{len(self.couch_deg)} couch angles for {len(self.gantry_deg)} "
                             "gantry angles: give one per beam")
        for name in ("spot_spacing_mm", "dose_grid_mm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.5 <= value <= 20):
                raise InputError(f"{name} must lie in [0.5, 20] mm, got {value}")
        if not all(math.isfinite(a) for a in (*self.gantry_deg, *self.couch_deg)):
            raise InputError("beam angles must be finite numbers of degrees")


@dataclass(frozen=True, eq=False)
class PlanResult:
    """An optimized plan, its dose cubes (whole plan, all fractions) and its report.

    Attributes
    ----------
    plan : Plan
        Beams with spot weights per fraction (10^6 primaries).
    patient : Patient
        The patient planned on.
    dose_grid : DoseGrid
        Grid of the cubes.
    physical_dose_gy, rbe_dose_gy_rbe : (nz, ny, nx) float32 arrays
        Total physical and RBE-weighted dose.
    letd_kev_um, rbe : (nz, ny, nx) float32 arrays
        Dose-averaged LET (0 without dose, or when LET was not kept) and RBE (0 without dose).
    report : dict
        The content of ``report.json``.
    exchange : ExchangeView or None
        The mMKM / LEM I exchange view when ``PlanRequest.exchange`` was set.
    beam_physical_dose_gy : tuple of (nz, ny, nx) float32 arrays
        Total physical dose of each beam, in the order of ``plan.beams``.
    """

    plan: Plan
    patient: Patient
    dose_grid: DoseGrid
    physical_dose_gy: NDArray[np.float32]
    rbe_dose_gy_rbe: NDArray[np.float32]
    letd_kev_um: NDArray[np.float32]
    rbe: NDArray[np.float32]
    report: dict[str, Any] = field(default_factory=dict)
    exchange: ExchangeView | None = None
    beam_physical_dose_gy: tuple[NDArray[np.float32], ...] = ()


@dataclass(frozen=True, eq=False)
class DoseCubes:
    """Whole-plan cubes (nz, ny, nx) float32 of a forward pass (see :func:`forward_cubes`)."""

    physical_dose_gy: NDArray[np.float32]
    rbe_dose_gy_rbe: NDArray[np.float32]
    letd_kev_um: NDArray[np.float32]
    rbe: NDArray[np.float32]
    beam_physical_dose_gy: tuple[NDArray[np.float32], ...]


@dataclass(frozen=True)
class PlanConfig:
    """Objectives, optimizer settings and LEM I tissues per structure (in the file's order)
    read from a configuration file."""

    objectives: tuple[Objective, ...] = ()
    replace_defaults: bool = False
    optimizer: OptimizerSettings = field(default_factory=lambda: PLANNER_OPTIMIZER)
    tissues: tuple[tuple[str, Tissue], ...] = ()


def load_plan_config(path: str | os.PathLike[str]) -> PlanConfig:
    """Read a TOML (``.toml``) or JSON objectives file (see the module docstring).

    Raises
    ------
    InputError
        Unreadable or malformed file, unknown keys, bad values.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except OSError as exc:
        raise InputError(f"{p}: cannot read the plan configuration ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'JSON'} "
                         f"({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: the configuration must be a table/object")
    unknown = set(data) - {"objectives", "optimizer", "replace_defaults", "tissues"}
    if unknown:
        raise InputError(f"{p}: unknown keys {sorted(unknown)}; expected objectives, "
                         "optimizer, replace_defaults, tissues")
    objectives = []
    for i, item in enumerate(data.get("objectives", [])):
        if not isinstance(item, dict):
            raise InputError(f"{p}: objective {i + 1} must be a table/object")
        try:
            vf = item.get("volume_fraction")
            objectives.append(Objective(
                structure=str(item["structure"]), kind=str(item["type"]),
                dose_gy_rbe=float(item["dose_gy_rbe"]), weight=float(item.get("weight", 1.0)),
                volume_fraction=None if vf is None else float(vf)))
        except KeyError as exc:
            raise InputError(f"{p}: objective {i + 1} lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"{p}: objective {i + 1}: {exc}") from None
        except PlanningError as exc:
            raise InputError(f"{p}: {exc}") from None
    opt = data.get("optimizer", {})
    allowed = {f.name for f in fields(OptimizerSettings)}
    if not isinstance(opt, dict) or set(opt) - allowed:
        raise InputError(f"{p}: [optimizer] may hold only {', '.join(sorted(allowed))}")
    try:
        settings = OptimizerSettings(**{"max_iterations": PLANNER_OPTIMIZER.max_iterations,
                                        **opt})
    except (TypeError, PlanningError) as exc:
        raise InputError(f"{p}: [optimizer]: {exc}") from None
    tissue_table = data.get("tissues", {})
    if not isinstance(tissue_table, dict) or not all(
            isinstance(v, str) for v in tissue_table.values()):
        raise InputError(f"{p}: tissues must map structure names to a tissue class name or "
                         "\"alpha_x,beta_x,D_t\"")
    try:
        tissues = tuple((str(k), parse_tissue(v)) for k, v in tissue_table.items())
    except InputError as exc:
        raise InputError(f"{p}: tissues: {exc}") from None
    return PlanConfig(tuple(objectives), bool(data.get("replace_defaults", False)), settings,
                      tissues)


def default_objectives(patient: Patient, target: str, total_dose_gy_rbe: float
                       ) -> list[Objective]:
    """The default objectives of the module docstring."""
    p = total_dose_gy_rbe
    out = [Objective(target, "squared_deviation", p, 100.0),
           Objective(target, "min_dose", 0.97 * p, 100.0),
           Objective(target, "max_dose", 1.03 * p, 100.0)]
    assert patient.structure_set is not None
    for s in patient.structure_set.structures:
        if s.interpreted_type.upper() in OAR_TYPES and s.name != target:
            out.append(Objective(s.name, "max_dose", p, 1.0))
    return out


def merge_objectives(defaults: Sequence[Objective], config: PlanConfig) -> list[Objective]:
    """Defaults, with those of the same (structure, type) as a configured one replaced."""
    if config.replace_defaults:
        return list(config.objectives)
    given = {(o.structure, o.kind) for o in config.objectives}
    return [o for o in defaults if (o.structure, o.kind) not in given] + list(config.objectives)


def _stage(progress: ProgressCallback | None, lo: float, hi: float) -> ProgressCallback | None:
    if progress is None:
        return None
    cb = progress

    def sub(fraction: float, stage: str) -> None:
        cb(lo + (hi - lo) * fraction, stage)

    return sub


def grid_of(ct: CtVolume) -> DoseGrid:
    """The dose-engine grid of a CT volume."""
    return DoseGrid(shape=ct.shape, spacing_mm=ct.spacing_mm, origin_mm=ct.origin_mm)


def target_isocenter_mm(ct: CtVolume, target_mask: NDArray[np.bool_]
                        ) -> tuple[float, float, float]:
    """The isocentre the planner uses: the mean LPS position (mm) of the target's CT voxels."""
    iso = grid_of(ct).voxel_centers_lps(np.flatnonzero(target_mask)).mean(axis=0)
    return float(iso[0]), float(iso[1]), float(iso[2])


def structure_rows(mask: NDArray[np.bool_], ct_grid: DoseGrid, dose_grid: DoseGrid
                   ) -> NDArray[np.int64]:
    """Flat dose-grid indices whose centres fall in ``mask`` (nearest CT voxel).

    Parameters
    ----------
    mask : (nz, ny, nx) bool array on ``ct_grid``
    ct_grid, dose_grid : DoseGrid

    Returns
    -------
    (n,) int64 array, increasing.
    """
    centres = dose_grid.voxel_centers_lps()
    idx = np.rint((centres[:, ::-1] - np.asarray(ct_grid.origin_mm)[::-1])
                  / np.asarray(ct_grid.spacing_mm)).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(ct_grid.shape)), axis=1)
    rows = np.flatnonzero(inside)
    k = idx[rows]
    return rows[mask[k[:, 0], k[:, 1], k[:, 2]]].astype(np.int64)


def _model(request: PlanRequest) -> RbeModel:
    from planning.api import rbe_model  # the facade owns the CLI names of the models

    return rbe_model(request.rbe_model, request.tissue, request.rbe_value)


def _body_mask(patient: Patient, ct_grid: DoseGrid, dose_grid: DoseGrid
               ) -> NDArray[np.bool_] | None:
    assert patient.structure_set is not None
    for s in patient.structure_set.structures:
        if s.interpreted_type.upper() == "EXTERNAL" or s.name.casefold() in BODY_NAMES:
            mask = np.zeros(dose_grid.n_voxels, dtype=bool)
            mask[structure_rows(s.mask.to_dense(), ct_grid, dose_grid)] = True
            if mask.any():
                return mask.reshape(dose_grid.shape)
    return None  # the dose engine falls back to an RSP threshold


def make_plan(request: PlanRequest, *, machine: Machine | None = None,
              progress: ProgressCallback | None = None, cancel: CancelToken | None = None
              ) -> PlanResult:
    """Run the planning pipeline of the module docstring (no files written).

    Raises
    ------
    InputError, PlanningError, DicomImportError, DeviceError
        Bad request, missing target, unreachable target, unusable data.
    OperationCancelled
        When ``cancel`` is set.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    model = _model(request)
    prescription = Prescription(request.target, request.total_dose_gy_rbe, request.n_fractions)
    config = (request.config if request.config is not None
              else load_plan_config(request.config_path) if request.config_path else PlanConfig())
    if request.patient is not None:
        patient = request.patient
    else:
        from planning.dicom import load_patient

        assert request.ct_dir is not None
        patient = load_patient(request.ct_dir, progress=_stage(progress, 0.0, 0.05),
                               cancel=cancel)
    if config.tissues and not isinstance(model, LemModel):
        raise PlanningError(f"the configuration's tissues apply to LEM I only, not to "
                            f"{model.name}; plan with --rbe lem1 or drop the tissues table")
    if patient.structure_set is None:
        raise PlanningError("the CT has no structure set: the target must be contoured")
    try:
        target = patient.structure_set.get(request.target)
    except KeyError as exc:
        raise PlanningError(str(exc.args[0])) from None
    target_mask = target.mask.to_dense()
    if not target_mask.any():
        raise PlanningError(f"the target {target.name!r} has no voxels on the CT grid")
    machine = machine or load_machine()
    ct = patient.ct
    ct_grid = grid_of(ct)
    hlut = load_hlut_csv(request.hlut_path) if request.hlut_path else default_hlut()
    rsp = hlut.hu_to_rsp(np.asarray(ct.hu, dtype=np.float32))
    iso_mm = target_isocenter_mm(ct, target_mask)
    couch = request.couch_deg or (0.0,) * len(request.gantry_deg)
    beams = [Beam(iso_mm, float(g), float(c), f"G{g:g}C{c:g}" if c else f"G{g:g}",
                  patient_position=ct.patient_position or "HFS")
             for g, c in zip(request.gantry_deg, couch, strict=True)]
    settings = DoseEngineSettings(device=request.device,
                                  lateral_cutoff_fraction=request.cutoff_fraction)
    report(progress, 0.05, "placing spots")
    t0 = time.perf_counter()
    spot_maps = [place_spots(machine, rsp, ct_grid, b, target_mask,
                             spot_spacing_mm=request.spot_spacing_mm,
                             layer_spacing_mm=request.layer_spacing_mm, settings=settings)
                 for b in beams]
    tissue_models = _tissue_models(model, config)
    tables = (_concatenated_tables([depth_tables(machine, m) for m in tissue_models])
              if model.quantity_names else None)
    timings["spots_and_tables"] = time.perf_counter() - t0
    dose_grid = DoseGrid.covering(ct_grid, request.dose_grid_mm)
    body = _body_mask(patient, ct_grid, dose_grid)

    objectives = merge_objectives(
        default_objectives(patient, target.name, prescription.total_dose_gy_rbe), config)
    names = {o.structure for o in objectives}
    rows_by_name: dict[str, NDArray[np.int64]] = {}
    for name in sorted(names | {target.name}):
        try:
            s = patient.structure_set.get(name)
        except KeyError as exc:
            raise PlanningError(f"objective: {exc.args[0]}") from None
        rows_by_name[name] = structure_rows(s.mask.to_dense(), ct_grid, dose_grid)
    objectives = [Objective(patient.structure_set.get(o.structure).name, o.kind, o.dose_gy_rbe,
                            o.weight, o.volume_fraction) for o in objectives]
    # The optimizer only needs the rows of structures with objectives: the matrices are built
    # there (without LET), and the whole-body cubes come from a forward pass afterwards.
    objective_mask = np.zeros(dose_grid.n_voxels, dtype=bool)
    for objective_rows in rows_by_name.values():
        objective_mask[objective_rows] = True
    t0 = time.perf_counter()
    influence = build_influence(
        machine, rsp, ct_grid, dose_grid, beams, spot_maps,
        dataclasses.replace(settings, store_let_dose=False),
        calc_mask=objective_mask.reshape(dose_grid.shape), model_tables=tables,
        progress=_stage(progress, 0.1, 0.45), cancel=cancel)
    timings["dose_influence"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    voxel_groups = _voxel_groups(patient, config, tissue_models, ct_grid, dose_grid)
    problem = _problem(influence, rows_by_name, model, prescription.n_fractions, voxel_groups)
    result = optimize_weights(problem, objectives, prescription.dose_per_fraction_gy_rbe,
                              target.name, config.optimizer,
                              progress=_stage(progress, 0.45, 0.85), cancel=cancel)
    timings["optimization"] = time.perf_counter() - t0

    influence_nnz, influence_mib = influence.nnz, influence.nbytes / 2**20
    del problem, influence
    t0 = time.perf_counter()
    cubes = forward_cubes(machine, rsp, ct_grid, dose_grid, beams, spot_maps, result.weights,
                          model, tables, prescription.n_fractions, settings, calc_mask=body,
                          groups=voxel_groups,
                          progress=_stage(progress, 0.85, 0.98), cancel=cancel)
    timings["forward_dose"] = time.perf_counter() - t0
    offsets = np.cumsum([0] + [s.n_spots for s in spot_maps])
    plan = Plan(label=request.label[:16], machine_name=machine.name,
                beams=tuple(BeamPlan(b, s, result.weights[offsets[i]:offsets[i + 1]])
                            for i, (b, s) in enumerate(zip(beams, spot_maps, strict=True))),
                prescription=prescription, rbe_model=model.describe())
    structures, exchange_rows = {}, {}
    phys_flat = cubes.physical_dose_gy.reshape(-1)
    rbe_flat = cubes.rbe_dose_gy_rbe.reshape(-1)
    for s in patient.structure_set.structures:
        rows = rows_by_name.get(s.name)
        if rows is None:
            rows = structure_rows(s.mask.to_dense(), ct_grid, dose_grid)
        if rows.size == 0:
            continue
        exchange_rows[s.name] = rows
        m = dose_metrics(rbe_flat[rows], prescription.total_dose_gy_rbe)
        structures[s.name] = {
            "interpreted_type": s.interpreted_type, "voxels": int(rows.size),
            "d98_gy_rbe": m.d98, "d95_gy_rbe": m.d95, "d50_gy_rbe": m.d50, "d5_gy_rbe": m.d5,
            "d2_gy_rbe": m.d2, "dmax_gy_rbe": m.max, "mean_gy_rbe": m.mean,
            "mean_gy": float(phys_flat[rows].mean()), "v95": m.v95, "v107": m.v107,
            "homogeneity_index": m.homogeneity_index}
    target_rows = rows_by_name[target.name]
    target_on_grid = np.zeros(dose_grid.n_voxels, dtype=bool)
    target_on_grid[target_rows] = True
    structures[target.name]["conformity_index"] = conformity_index(
        rbe_flat, target_on_grid, prescription.total_dose_gy_rbe)
    dvh_top = 1.1 * float(rbe_flat.max()) if rbe_flat.size else 1.0
    dvhs = {name: cumulative_dvh(name, rbe_flat[rows], 1.0, max_dose=dvh_top, n_bins=100)
            for name, rows in exchange_rows.items()}
    timings["total"] = time.perf_counter() - t_start
    rep: dict[str, Any] = {
        "prescription": {"target": target.name,
                         "total_dose_gy_rbe": prescription.total_dose_gy_rbe,
                         "n_fractions": prescription.n_fractions,
                         "dose_per_fraction_gy_rbe": prescription.dose_per_fraction_gy_rbe},
        "rbe_model": model.describe(),
        "machine": machine.name,
        "beams": [{"name": b.label, "gantry_deg": b.gantry_deg, "couch_deg": b.couch_deg,
                   "isocenter_mm": list(b.isocenter_mm), "spots": s.n_spots,
                   "layers": int(np.unique(s.layer).size),
                   "target_mean_gy": float(bd.reshape(-1)[target_rows].mean())}
                  for b, s, bd in zip(beams, spot_maps, cubes.beam_physical_dose_gy,
                                      strict=True)],
        "spots": int(sum(sm.n_spots for sm in spot_maps)),
        "influence_nnz": influence_nnz,
        "influence_mib": influence_mib,
        "device": resolve_device(request.device),
        "dose_grid": {"shape": list(dose_grid.shape), "spacing_mm": list(dose_grid.spacing_mm),
                      "origin_mm": list(dose_grid.origin_mm)},
        "objectives": [{"structure": o.structure, "type": o.kind, "dose_gy_rbe": o.dose_gy_rbe,
                        "weight": o.weight, "volume_fraction": o.volume_fraction}
                       for o in objectives],
        "iterations": result.iterations,
        "objective_value": result.objective,
        "optimizer_message": result.message,
        "structures": structures,
        "dvh_gy_rbe": {name: {"dose_gy_rbe": [round(float(x), 4) for x in h.dose_gy],
                              "volume_fraction": [round(float(x), 5) for x in h.volume_fraction]}
                       for name, h in dvhs.items()},
        "timings_s": timings,
    }
    if config.tissues:
        rep["tissues"] = {patient.structure_set.get(name).name: LemModel(t).describe()
                          for name, t in config.tissues}
    view = None
    if request.exchange:
        t0 = time.perf_counter()
        lem = _model(dataclasses.replace(request, rbe_model="lem1"))  # the request's tissue
        mkm_model, lem_model = paired_models(model, lem if isinstance(lem, LemModel) else None)
        view = exchange_view(machine, rsp, ct_grid, dose_grid, beams, spot_maps, result.weights,
                             prescription.n_fractions, calc_mask=body, mkm=mkm_model,
                             lem=lem_model, settings=settings,
                             progress=_stage(progress, 0.95, 1.0), cancel=cancel)
        rep["exchange"] = exchange_report(view, exchange_rows)
        timings["exchange"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
    report(progress, 1.0, "plan done")
    return PlanResult(plan, patient, dose_grid, cubes.physical_dose_gy, cubes.rbe_dose_gy_rbe,
                      cubes.letd_kev_um, cubes.rbe, report=rep, exchange=view,
                      beam_physical_dose_gy=cubes.beam_physical_dose_gy)


def _tissue_models(model: RbeModel, config: PlanConfig) -> list[RbeModel]:
    """The plan's model first, then LEM I for each further distinct tissue of the config."""
    models: list[RbeModel] = [model]
    if isinstance(model, LemModel):
        seen = [model.tissue]
        for _, tissue in config.tissues:
            if tissue not in seen:
                seen.append(tissue)
                models.append(LemModel(tissue))
    return models


def _concatenated_tables(tables: Sequence[DepthTables]) -> DepthTables:
    """One DepthTables whose values are those of ``tables`` in order (the influence then has
    the model sums of every table, concatenated)."""
    if len(tables) == 1:
        return tables[0]
    return DepthTables(
        " + ".join(t.model_description for t in tables),
        tuple(q for t in tables for q in t.quantity_names),
        tuple(v for t in tables for v in t.values),
        tuple(v for t in tables for v in t.spectrum_values),
        tables[0].particles)


def _voxel_groups(patient: Patient, config: PlanConfig, models: Sequence[RbeModel],
                  ct_grid: DoseGrid, dose_grid: DoseGrid) -> tuple[RbeGroup, ...]:
    """Dose-grid voxels of each tissue model (rows: flat dose-grid indices); empty when the
    configuration lists no tissues. The first listed structure wins where structures overlap."""
    if not config.tissues:
        return ()
    assert patient.structure_set is not None
    label = np.full(dose_grid.n_voxels, -1, dtype=np.int64)
    tissues = [m.tissue if isinstance(m, LemModel) else None for m in models]
    for name, tissue in config.tissues:
        try:
            s = patient.structure_set.get(name)
        except KeyError as exc:
            raise PlanningError(f"tissues: {exc.args[0]}") from None
        rows = structure_rows(s.mask.to_dense(), ct_grid, dose_grid)
        rows = rows[label[rows] < 0]
        label[rows] = tissues.index(tissue)
    label[label < 0] = 0
    n_q = len(models[0].quantity_names)
    return tuple(RbeGroup(m, np.flatnonzero(label == i).astype(np.int64),
                          tuple(range(n_q * i, n_q * (i + 1))))
                 for i, m in enumerate(models))


def _problem(influence: DoseInfluence, rows_by_name: dict[str, NDArray[np.int64]],
             model: RbeModel, n_fractions: int, voxel_groups: Sequence[RbeGroup] = ()
             ) -> OptimizationProblem:
    """The rows of the structures with objectives, as float64 matrices (the optimizer's
    products then need no per-call conversion of the float32 data); ``voxel_groups`` (rows on
    the dose grid) become groups of the problem's rows."""
    union = np.unique(np.concatenate(list(rows_by_name.values())))
    groups = []
    for g in voxel_groups:
        in_union = np.isin(union, g.rows)
        if in_union.any():
            groups.append(RbeGroup(g.model, np.flatnonzero(in_union).astype(np.int64),
                                   g.sum_indices))

    def rows_of(m: Any) -> Any:
        return m[union].astype(np.float64)

    return OptimizationProblem(
        dose=rows_of(influence.dose),
        model_sums=tuple(rows_of(m) for m in influence.model_sums),
        structure_rows=tuple((name, np.searchsorted(union, rows).astype(np.int64))
                             for name, rows in rows_by_name.items()),
        model=model, n_fractions=n_fractions, groups=tuple(groups))


def forward_cubes(
    machine: Machine, rsp: NDArray[np.float32], ct_grid: DoseGrid, dose_grid: DoseGrid,
    beams: Sequence[Beam], spot_maps: Sequence[SpotMap], weights: NDArray[np.float64],
    model: RbeModel, tables: DepthTables | None, n_fractions: int,
    settings: DoseEngineSettings, *, calc_mask: NDArray[np.bool_] | None = None,
    spots_per_pass: int = FORWARD_SPOTS_PER_PASS,
    progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
    groups: Sequence[RbeGroup] = (),
) -> DoseCubes:
    """Whole-plan cubes of spot weights per fraction, by a forward pass.

    The influence of at most ``spots_per_pass`` spots (whole energy layers of one beam) is built
    at a time, multiplied by their weights and dropped, so memory stays that of one pass.

    With ``groups`` (rows: flat dose-grid indices; ``tables`` holding the sums of every group's
    model, concatenated) each group's voxels get the RBE-weighted dose of its own model and
    sums; voxels in no group get 0.

    Returns
    -------
    DoseCubes
        Total physical and RBE-weighted dose (per-fraction dose x ``n_fractions``; the
        RBE-weighted dose is computed per fraction, where the model applies), LETd, RBE and the
        total physical dose of each beam.
    """
    w_all = np.asarray(weights, dtype=np.float64)
    n_q = len(tables.values) if tables is not None else len(model.quantity_names)
    d_beam = [np.zeros(dose_grid.n_voxels) for _ in spot_maps]
    let_d = np.zeros(dose_grid.n_voxels)
    sums = [np.zeros(dose_grid.n_voxels) for _ in range(n_q)]
    passes = [(b, sel) for b, sm in enumerate(spot_maps) for sel in _layer_groups(sm,
                                                                                  spots_per_pass)]
    offsets = np.cumsum([0] + [sm.n_spots for sm in spot_maps])
    with_let = dataclasses.replace(settings, store_let_dose=True)
    for k, (b, sel) in enumerate(passes):
        sm = spot_maps[b]
        sub = SpotMap(sm.energy_mev_u[sel], sm.layer[sel], sm.u_mm[sel], sm.v_mm[sel],
                      sm.spacing_mm, sm.lattice_origin_mm)
        w = w_all[offsets[b]:offsets[b + 1]][sel]
        if not np.any(w > 0):
            continue
        part = build_influence(machine, rsp, ct_grid, dose_grid, [beams[b]], [sub], with_let,
                               calc_mask=calc_mask, model_tables=tables, cancel=cancel)
        d_beam[b] += part.dose @ w
        assert part.let_dose is not None
        let_d += part.let_dose @ w
        for acc, m in zip(sums, part.model_sums, strict=True):
            acc += m @ w
        del part
        report(progress, (k + 1) / len(passes), "dose cubes")
    d = np.sum(d_beam, axis=0) if d_beam else np.zeros(dose_grid.n_voxels)
    if groups:
        rbe_d = np.zeros_like(d)
        for g in groups:
            rbe_d[g.rows] = g.model.rbe_weighted_dose_from_sums(
                d[g.rows], tuple(sums[k][g.rows] for k in g.sum_indices))
    else:
        rbe_d = np.asarray(model.rbe_weighted_dose_from_sums(d, tuple(sums)))
    positive = d > 0
    letd = np.divide(let_d, d, out=np.zeros_like(d), where=positive)
    rbe = np.divide(rbe_d, d, out=np.zeros_like(d), where=positive)

    def cube(a: NDArray[np.float64]) -> NDArray[np.float32]:
        return a.reshape(dose_grid.shape).astype(np.float32)

    return DoseCubes(cube(d * n_fractions), cube(rbe_d * n_fractions), cube(letd), cube(rbe),
                     tuple(cube(db * n_fractions) for db in d_beam))


def _layer_groups(spot_map: SpotMap, max_spots: int) -> list[NDArray[np.int64]]:
    """Spot indices of ``spot_map`` in groups of whole energy layers, each of at most
    ``max_spots`` spots (or one layer, if a layer alone is larger)."""
    groups: list[NDArray[np.int64]] = []
    current: list[NDArray[np.int64]] = []
    count = 0
    for layer in np.unique(spot_map.layer):
        idx = np.flatnonzero(spot_map.layer == layer)
        if current and count + idx.size > max_spots:
            groups.append(np.concatenate(current))
            current, count = [], 0
        current.append(idx)
        count += idx.size
    if current:
        groups.append(np.concatenate(current))
    return groups


def write_plan_outputs(result: PlanResult, out_dir: str | os.PathLike[str], *,
                       machine: Machine | None = None) -> list[Path]:
    """Write RTPLAN.dcm, RTDOSE_PHYSICAL.dcm, RTDOSE_RBE.dcm and report.json into ``out_dir``
    (and RTDOSE_RBE_MKM.dcm, RTDOSE_RBE_LEM1.dcm with an exchange view).

    The report gets ``files`` and ``timings_s["export"]``; it is written last, atomically.
    """
    from planning.dicom import export_rt_dose, export_rt_ion_plan

    t0 = time.perf_counter()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    machine = machine or load_machine()
    sigma_e, sigma_mm = machine.energies_mev_u, machine.spot_sigma_air_mm
    plan_uid = export_rt_ion_plan(
        result.plan, result.patient, out / "RTPLAN.dcm", sad_mm=machine.sad_mm,
        machine_spot_sigma_mm=lambda e: float(np.interp(e, sigma_e, sigma_mm)))
    export_rt_dose(result.physical_dose_gy, result.dose_grid, result.patient,
                   out / "RTDOSE_PHYSICAL.dcm", dose_type="PHYSICAL", comment="physical dose",
                   referenced_plan_uid=plan_uid)
    export_rt_dose(result.rbe_dose_gy_rbe, result.dose_grid, result.patient,
                   out / "RTDOSE_RBE.dcm", dose_type="EFFECTIVE",
                   comment=result.plan.rbe_model[:64], referenced_plan_uid=plan_uid)
    names = ["RTPLAN.dcm", "RTDOSE_PHYSICAL.dcm", "RTDOSE_RBE.dcm"]
    if result.exchange is not None:
        names += write_exchange_doses(result.exchange, result.patient, out, plan_uid)
    files = [out / n for n in (*names, "report.json")]
    result.report["files"] = [f.name for f in files]
    result.report["timings_s"]["export"] = time.perf_counter() - t0
    atomic_write_text(out / "report.json", json.dumps(result.report, indent=1) + "\n")
    return files
