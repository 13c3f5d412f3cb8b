"""Inverse planning from a CT with structures to an optimized, exported carbon-ion plan.

:func:`make_plan` runs the whole pipeline of one :class:`PlanRequest`: load the patient, HU to
RSP through the default HLUT, isocentre at the target centroid, spots per beam
(:func:`planning.engine.dose_engine.place_spots`), the RBE model's depth tables, the optimizer's
influence matrices (dose and the model sums, rows of the structures with objectives) from a
:class:`planning.engine.PlanningEngine` on the dose grid inside the body, spot-weight optimization
on RBE-weighted dose per fraction (:mod:`planning.optimization`), the forward dose cubes and the
metrics per structure (:mod:`planning.evaluation`). :func:`write_plan_outputs` exports
``RTPLAN.dcm``, ``RTDOSE_PHYSICAL.dcm``, ``RTDOSE_RBE.dcm`` (total plan doses) and
``report.json``.

The objectives, optimizer settings and LEM I tissues come from a plan configuration
(:mod:`planning.plan_config`, with its defaults); the final cubes from a forward pass
(:mod:`planning.engine.forward_dose`); the per-structure metrics and DVHs of the report from
:func:`planning.plan_report.structure_report`. Which dose-grid voxels belong to a structure,
and the body, come from :mod:`planning.structure_dose`.

``PlanConfig``, ``load_plan_config``, ``default_objectives``, ``forward_cubes``, ``grid_of``
and ``structure_rows`` are re-exported here for callers of the pipeline.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from kernels.sparse_device import ActiveRows, RowStack, total_nbytes
from planning.atomic import atomic_write_text, atomic_write_with
from planning.beams import PRIMARIES_PER_WEIGHT_UNIT, Beam, SpotMap
from planning.dose_grid import DoseGrid
from planning.dose_interpolation import VoxelLabels
from planning.dose_specification import beam_doses_at, dose_specification_voxel
from planning.engine import PlanningEngine
from planning.engine.dose_correction import (
    SETTLE_TOLERANCE_PCT,
    CorrectionChange,
    RowForward,
    Settled,
    correction_change,
    row_forward,
    settle_correction,
    with_dose_correction,
)
from planning.engine.dose_engine import DoseEngineSettings, cpu_threads, place_spots
from planning.engine.engine import sorted_contains
from planning.engine.forward_dose import forward_cubes
from planning.engine.memory import check_host_memory, engine_bytes
from planning.engine.problem import (
    concatenated_tables,
    optimization_problem,
    surrounding_tissue_ratio,
    tissue_labels,
    tissue_models,
    voxel_groups,
)
from planning.engine.refinement import TARGET_WINDOW, WATCH_LEVEL, refine_target
from planning.engine.wepl_cubes import WeplCubes
from planning.errors import InputError, PlanningError, os_error_reason
from planning.exchange import (
    ExchangeView,
    exchange_report,
    exchange_view,
    paired_models,
    write_exchange_doses,
)
from planning.hlut import HlutUse, ct_stopping_power, load_hlut
from planning.machine import Machine, load_machine, spot_sigma_air_at
from planning.optimization import (
    ONE_SIDED_KINDS,
    Objective,
    OptimizationResult,
    OptimizerSettings,
    RbeGroup,
    initial_weights,
    objective_terms,
    optimize_weights,
)
from planning.optimization_grid import (
    max_point_rows,
    max_points_name,
    optimization_grid,
    optimization_region,
    rows_on_check_grid,
    sample_rows,
    structure_of_max_points,
    target_check_grid,
)
from planning.patient import CtVolume, Patient
from planning.plan import DEFAULT_PLAN_LABEL, BeamPlan, Plan, Prescription
from planning.plan_checks import (
    coverage_warning,
    fractionation_warning,
    physical_fractionation_warning,
)
from planning.plan_config import (
    DEFAULT_RINGS,
    PlanConfig,
    check_config_structures,
    config_key,
    default_objectives,
    load_plan_config,
    merge_objectives,
)
from planning.plan_notes import report_optimizer_note
from planning.plan_report import structure_report
from planning.progress import CancelToken, ProgressCallback, report, stage_progress
from planning.rbe import (
    DepthTables,
    LemModel,
    PhysicalDose,
    RbeModel,
    Tissue,
    depth_tables,
    dose_unit_of,
)
from planning.rbe.record import model_label, short_model_name
from planning.regions import is_generated, region_name, ring_name
from planning.report_json import report_json_text
from planning.resolution import grid_warning, spot_spacing_warning
from planning.structure_dose import body_mask, body_structures, grid_of, structure_rows

__all__ = [
    "PlanConfig",
    "PlanRequest",
    "PlanResult",
    "default_objectives",
    "forward_cubes",
    "grid_of",
    "load_plan_config",
    "make_plan",
    "structure_rows",
    "target_isocenter_mm",
    "write_plan_outputs",
]

log = logging.getLogger(__name__)
#: Part of a new plan's progress that its set-up takes (spots, WEPL, engine; see make_plan).
PREPARE_SHARE = 0.45
#: Share of the first pass's iterations a re-optimization gets: it continues from the last
#: plan's weights (see optimize_prepared; measured in docs/benchmarks.md).
CONTINUED_SHARE = 1 / 3


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
        RBE model (see :func:`planning.rbe.by_name.rbe_model_by_name`).
    rbe_value : float or None
        The RBE of ``"const"``.
    tissue : str or None
        LEM I tissue (name or ``alpha_x,beta_x,D_t``).
    spot_spacing_mm, dose_grid_mm, layer_spacing_mm : float
        Lateral spot lattice, dose grid spacing and Bragg peak spacing of the layers, mm.
    optimization_grid_mm : float or None
        Spacing of the grid the optimizer samples the dose on, mm (see
        :mod:`planning.optimization_grid`); None: half the dose grid's.
    config_path : str or None
        Objectives configuration file (TOML or JSON; see the module docstring).
    device : {"auto", "cpu", "gpu"}
        Compute device of the dose engine.
    output_dir : str or None
        Where :func:`write_plan_outputs` writes; None writes nothing.
    cutoff_fraction : float
        :attr:`planning.engine.dose_engine.DoseEngineSettings.lateral_cutoff_fraction`.
    matrix_cutoff_fraction : float
        :attr:`planning.engine.dose_engine.DoseEngineSettings.matrix_cutoff_fraction` (the
        optimizer's matrices; the rest of the dose is its correction).
    hlut_path : str or None
        HU to relative stopping power CSV (``hu,rsp``); None uses the generic default curve.
    label : str
        The plan's name (:func:`planning.plan.checked_plan_name`): RT Plan Name, the first 16
        characters RT Plan Label.
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
    dose_grid_mm: float = 2.5
    layer_spacing_mm: float = 2.0
    optimization_grid_mm: float | None = None
    config_path: str | None = None
    device: str = "auto"
    output_dir: str | None = None
    cutoff_fraction: float = 0.99
    matrix_cutoff_fraction: float = 0.8
    label: str = DEFAULT_PLAN_LABEL
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
        directions = [(float(g) % 360.0, float(c) % 360.0) for g, c in zip(
            self.gantry_deg, self.couch_deg or (0.0,) * len(self.gantry_deg), strict=True)]
        twice = next((d for d in directions if directions.count(d) > 1), None)
        if twice is not None:  # a typing slip ("90,90"): two beams of one name and direction
            raise InputError(f"two beams at gantry {twice[0]:g} and couch {twice[1]:g} deg: "
                             "give each direction once")
        for what, value in (("spot spacing", self.spot_spacing_mm),
                            ("dose grid spacing", self.dose_grid_mm)):
            if not (math.isfinite(value) and 0.5 <= value <= 20):
                raise InputError(f"the {what} must lie in [0.5, 20] mm, got {value:g} mm")
        opt = self.optimization_grid_mm
        if opt is not None and not (math.isfinite(opt) and 0.5 <= opt <= self.dose_grid_mm):
            raise InputError(f"the optimization grid spacing must lie in [0.5 mm, the dose "
                             f"grid's {self.dose_grid_mm:g} mm], got {opt:g} mm")
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
    model : RbeModel
        The RBE model that computed ``rbe_dose_gy_rbe`` (a recalculation's may differ from
        the one the plan was optimized with); the exported RT Dose is labelled with it.
    report : dict
        The content of ``report.json``.
    exchange : ExchangeView or None
        The mMKM / LEM I exchange view when ``PlanRequest.exchange`` was set.
    beam_physical_dose_gy : tuple of (nz, ny, nx) float32 arrays
        Total physical dose of each beam, in the order of ``plan.beams``.
    prepared : PreparedPlan or None
        The prepared plan it was optimized from (engine and kept matrices), for
        :func:`reoptimize`; None for recalculated plans.
    tissue_labels : VoxelLabels or None
        With a LEM I tissue per structure: the tissue of every voxel and listed structure, so
        that DVHs read each structure's RBE-weighted dose (and RBE) within its own tissue
        (:class:`planning.dose_interpolation.VoxelLabels`); None otherwise.
    structure_tissues : tuple of (str, Tissue)
        The LEM I tissues per structure the RBE-weighted dose was computed with (``model``
        for the other voxels); empty when ``model`` holds everywhere. The exported doses'
        labels and records name them.
    """

    plan: Plan
    patient: Patient
    dose_grid: DoseGrid
    physical_dose_gy: NDArray[np.float32]
    rbe_dose_gy_rbe: NDArray[np.float32]
    letd_kev_um: NDArray[np.float32]
    rbe: NDArray[np.float32]
    model: RbeModel
    report: dict[str, Any] = field(default_factory=dict)
    exchange: ExchangeView | None = None
    beam_physical_dose_gy: tuple[NDArray[np.float32], ...] = ()
    prepared: PreparedPlan | None = field(default=None, compare=False, repr=False)
    tissue_labels: VoxelLabels | None = field(default=None, compare=False, repr=False)
    structure_tissues: tuple[tuple[str, Tissue], ...] = ()


def target_isocenter_mm(ct: CtVolume, target_mask: NDArray[np.bool_]
                        ) -> tuple[float, float, float]:
    """The isocentre the planner uses: the mean LPS position (mm) of the target's CT voxels."""
    iso = grid_of(ct).voxel_centers_lps(np.flatnonzero(target_mask)).mean(axis=0)
    return float(iso[0]), float(iso[1]), float(iso[2])


def _model(request: PlanRequest) -> RbeModel:
    from planning.rbe.by_name import rbe_model_by_name as rbe_model

    return rbe_model(request.rbe_model, request.tissue, request.rbe_value)


@dataclass(eq=False)
class PreparedPlan:
    """What a plan keeps between optimizations: patient, beams, spots, RBE tables, the
    planning engines and the optimizer's matrices (on the engines' device).

    The engine on the dose grid (whole-body forward dose, exchange view) is made on first use
    (:meth:`dose_engine`), after the optimization: while the optimizer's matrices are built
    and used, which is a plan's memory peak, it does not exist (0.24 GB for the 2 mm TG-119
    plan). The refinement checks the target's dose with an engine on the target's points of
    its check grid only (:meth:`target_engine`).

    Made by :func:`prepare_plan`; :func:`optimize_prepared` optimizes it, as often as wanted:
    a changed objective, objective weight or prescription re-optimizes from the kept matrices
    (only objectives on structures whose voxels are not yet rows of the matrices add rows).
    A change of beams, grid, spots or RBE model needs a new :func:`prepare_plan`.
    """

    request: PlanRequest
    model: RbeModel
    config: PlanConfig
    patient: Patient
    machine: Machine
    target: str
    beams: tuple[Beam, ...]
    spot_maps: tuple[SpotMap, ...]
    tables: DepthTables | None
    voxel_groups: tuple[RbeGroup, ...]
    dose_grid: DoseGrid
    body: NDArray[np.bool_] | None
    rsp: NDArray[np.float32]
    wepl_cubes: WeplCubes  # of ``rsp``, one per beam, shared by the engines
    settings: DoseEngineSettings
    engine_region: NDArray[np.bool_] | None
    timings_s: dict[str, float]
    opt_engine: PlanningEngine
    opt_groups: tuple[RbeGroup, ...]
    engine: PlanningEngine | None = None
    rows: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    # Dose and model-sum matrices: SpotMatrix, or a RowStack of two (ensure_matrices).
    matrices: tuple[Any, tuple[Any, ...]] | None = None
    matrix_nnz: int = 0
    region_rows: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    # The spot weights per fraction of the last optimization: the next one starts from them.
    weights: NDArray[np.float64] | None = None
    # The forward pass over ``rows`` of the last weights its dose correction measured: the
    # next optimization's first correction (those weights scaled) is made from it.
    row_forward: RowForward | None = None
    # The calibration curve that made ``rsp`` (the report's ``hlut`` entry and its warning).
    hlut: HlutUse | None = None

    def dose_engine(self, *, progress: ProgressCallback | None = None,
                    cancel: CancelToken | None = None) -> PlanningEngine:
        """The planning engine on the dose grid over ``engine_region`` (the body and every
        structure), made on the first call and kept in ``engine``."""
        if self.engine is None:
            self.engine = self._engine_on(self.engine_region, progress=progress,
                                          cancel=cancel)
        return self.engine

    def target_engine(self, grid: DoseGrid, target_rows: NDArray[np.int64], *,
                      progress: ProgressCallback | None = None,
                      cancel: CancelToken | None = None) -> PlanningEngine:
        """An engine over ``target_rows`` (flat indices on ``grid``, the refinement's check
        grid): the dose-grid engine where ``grid`` is the dose grid and that engine exists,
        else a new one on ``target_rows`` only.

        The new one is not kept: kept, it raised the TG-119 plan's peak by about 75 MB (it
        would stay beside the optimizer's matrices and the cubes) to save 1-2 s per
        re-optimization."""
        if target_rows.size == 0 or (grid == self.dose_grid and self.engine is not None):
            # An engine needs voxels; the refinement then adds none.
            return self.dose_engine(progress=progress, cancel=cancel)
        mask = np.zeros(grid.n_voxels, dtype=bool)
        mask[target_rows] = True
        return self._engine_on(mask.reshape(grid.shape), grid=grid, progress=progress,
                               cancel=cancel)

    def _engine_on(self, region: NDArray[np.bool_] | None, *, grid: DoseGrid | None = None,
                   progress: ProgressCallback | None = None,
                   cancel: CancelToken | None = None) -> PlanningEngine:
        return PlanningEngine(self.machine, self.rsp, grid_of(self.patient.ct),
                              grid or self.dose_grid, self.beams, self.spot_maps, self.settings,
                              calc_mask=region, wepl_cubes=self.wepl_cubes,
                              layers_of=self.opt_engine, progress=progress, cancel=cancel)

    def groups_on(self, grid: DoseGrid) -> tuple[RbeGroup, ...]:
        """The RBE groups (LEM I tissue per structure) on ``grid``; the dose grid's are kept."""
        if grid == self.dose_grid or not self.voxel_groups:
            return self.voxel_groups
        return voxel_groups(self.patient, self.config, tissue_models(self.model, self.config),
                            grid_of(self.patient.ct), grid)

    def structure_rows(self, names: Sequence[str], cancel: CancelToken | None = None
                       ) -> dict[str, NDArray[np.int64]]:
        """The optimizer's sample points (flat indices on the optimization grid, see
        :mod:`planning.optimization_grid`) of each named structure, generated region
        (:mod:`planning.regions`) or structure's maximum-dose points
        (:func:`planning.optimization_grid.max_points_name`) and of the target; kept for
        later optimizations. ``cancel`` is checked before each structure."""
        ct_grid = grid_of(self.patient.ct)
        opt_grid = self.opt_engine.dose_grid
        out: dict[str, NDArray[np.int64]] = {}
        for name in sorted({*names, self.target}):
            if cancel is not None:
                cancel.raise_if_cancelled("sampling the structures")
            base = structure_of_max_points(name)
            key = (region_name(self.patient, name) if base is None
                   else max_points_name(region_name(self.patient, base)))
            if key not in self.region_rows:
                if base is None:
                    rows = sample_rows(self.patient, key, self.target, ct_grid, opt_grid,
                                       self.dose_grid)
                else:  # the points outside it only where the engine computes (the body)
                    rows = np.unique(max_point_rows(
                        self.patient, region_name(self.patient, base), self.target, ct_grid,
                        opt_grid, self.dose_grid))
                    rows = rows[sorted_contains(self.opt_engine.rows, rows)]
                outside = (0 if self.opt_engine is self.engine  # it computes everywhere
                           else int(np.count_nonzero(~sorted_contains(self.opt_engine.rows,
                                                                      rows))))
                if outside:
                    raise PlanningError(
                        f"objective on {key!r}: {outside} of its points lie outside the "
                        "optimization region this plan was prepared with; compute a new "
                        "plan with this objective")
                self.region_rows[key] = rows
            out[key] = self.region_rows[key]
        return out

    def ensure_matrices(self, rows_by_name: dict[str, NDArray[np.int64]], *,
                        one_sided: Sequence[str] = (),
                        progress: ProgressCallback | None = None,
                        cancel: CancelToken | None = None) -> bool:
        """Build the optimizer's matrices unless the kept ones cover every row asked for.

        The rows that only the structures ``one_sided`` (whose objectives are all one-sided:
        a maximum or minimum, met at most points) ask for, and kept rows no structure asks
        for, get a matrix of their own below the others, whose transposed product reads only
        the rows with a non-zero gradient (:class:`kernels.sparse_device.ActiveRows`, on the
        host); ``rows`` is then the two parts' rows one after the other.

        Returns True when they were (re)built.
        """
        def check() -> None:  # between the steps over all rows (seconds on a fine grid)
            if cancel is not None:
                cancel.raise_if_cancelled("the optimizer's matrices")

        want = np.unique(np.concatenate(list(rows_by_name.values())))
        want = want[sorted_contains(self.opt_engine.rows, want)]  # the region's points
        check()
        if self.matrices is not None and np.all(np.isin(want, self.rows)):
            return False
        rows = np.union1d(want, self.rows)
        skip = set(one_sided)
        asked = [r for name, r in rows_by_name.items() if name not in skip]
        is_two_sided = (sorted_contains(np.unique(np.concatenate(asked)), rows) if asked
                        else np.zeros(rows.size, dtype=bool))
        check()
        parts = [(part, sided) for part, sided in ((rows[is_two_sided], False),
                                                   (rows[~is_two_sided], True))
                 if part.size]
        progress_at = np.cumsum([0, *(part.size for part, _ in parts)]) / rows.size
        host = self.opt_engine.device == "cpu"
        doses: list[Any] = []
        sums: list[tuple[Any, ...]] = []
        nnz = 0
        for i, (part, sided) in enumerate(parts):
            dose, part_sums, part_nnz = self.opt_engine.optimization_matrices(
                part, model_tables=self.tables,
                cutoff_fraction=self.settings.optimizer_cutoff_fraction,
                progress=stage_progress(progress, float(progress_at[i]),
                                        float(progress_at[i + 1])), cancel=cancel)
            active = sided and host
            doses.append(ActiveRows(dose) if active else dose)
            sums.append(tuple(ActiveRows(m) if active else m for m in part_sums))
            nnz += part_nnz
        dose_m: Any = doses[0] if len(parts) == 1 else RowStack(tuple(doses))
        sums_m = sums[0] if len(parts) == 1 else tuple(RowStack(m) for m in zip(*sums, strict=True))
        rows = np.concatenate([part for part, _ in parts])
        self.rows, self.matrices, self.matrix_nnz = rows, (dose_m, sums_m), nnz
        self.row_forward = None  # of other rows
        return True

    @property
    def corrects_dose(self) -> bool:
        """Whether the optimizer's matrices keep less of each pencil beam than the plan's dose
        (the rest is its dose correction, :mod:`planning.engine.dose_correction`)."""
        return self.settings.optimizer_cutoff_fraction < self.settings.lateral_cutoff_fraction

    def release(self) -> None:
        """Drop the optimizer's matrices (they come back on the next optimization)."""
        self.rows, self.matrices, self.matrix_nnz = np.zeros(0, np.int64), None, 0
        self.row_forward = None


@dataclass(frozen=True, eq=False)
class PlanBasis:
    """What a plan request fixes before any long work (:func:`plan_basis`).

    Attributes
    ----------
    model : RbeModel
    config : PlanConfig
    patient : Patient
    target : str
        The target ROI's name, in the structure set's spelling.
    target_mask : (nz, ny, nx) bool array on the CT grid
    machine : Machine
    ct_grid, dose_grid : DoseGrid
    rsp : (nz, ny, nx) float32 array
        Relative stopping power on the CT grid.
    hlut : HlutUse
        The calibration curve that made ``rsp``.
    beams : tuple of Beam
        One per gantry angle, isocentre at the target's centroid.
    settings : DoseEngineSettings
    """

    model: RbeModel
    config: PlanConfig
    patient: Patient
    target: str
    target_mask: NDArray[np.bool_]
    machine: Machine
    ct_grid: DoseGrid
    dose_grid: DoseGrid
    rsp: NDArray[np.float32]
    hlut: HlutUse
    beams: tuple[Beam, ...]
    settings: DoseEngineSettings


def plan_basis(request: PlanRequest, *, machine: Machine | None = None,
               progress: ProgressCallback | None = None, cancel: CancelToken | None = None
               ) -> PlanBasis:
    """Check a request and make what it fixes: RBE model, configuration, patient (loaded
    from ``request.ct_dir`` unless given), target, stopping power, beams, engine settings and
    dose grid. Seconds at most (the CT's loading, if any, is most of it).

    Raises
    ------
    InputError, PlanningError, DicomImportError
        Bad request, missing target, unusable data.
    """
    model = _model(request)
    if request.exchange:  # the exchange view's LEM I tissue, checked before the long work
        _model(dataclasses.replace(request, rbe_model="lem1"))
    config = (request.config if request.config is not None
              else load_plan_config(request.config_path) if request.config_path else PlanConfig())
    if request.patient is not None:
        patient = request.patient
    else:
        from planning.dicom import load_patient

        assert request.ct_dir is not None
        patient = load_patient(request.ct_dir, progress=stage_progress(progress, 0.0, 1.0),
                               cancel=cancel)
    if config.tissues and not isinstance(model, LemModel):
        raise PlanningError(f"{config_key(config, 'tissues')}: tissues per structure apply to "
                            f"LEM I only, not to {model.name}; plan with --rbe lem1 or drop the "
                            "tissues table")
    if patient.structure_set is None:
        why = next((w for w in patient.warnings if w.startswith("no RT Structure Set")), "")
        raise PlanningError("the CT has no structure set: the target must be contoured"
                            + (f" ({why})" if why else ""))
    try:
        target = patient.structure_set.get(request.target)
    except KeyError as exc:
        raise PlanningError(str(exc.args[0])) from None
    target_mask = target.mask.to_dense()
    if not target_mask.any():
        raise PlanningError(f"the target {target.name!r} has no voxels on the CT grid"
                            + patient.structure_set.empty_structure_text(target.name))
    machine = machine or load_machine()
    _check_config(config, patient, machine)
    ct = patient.ct
    ct_grid = grid_of(ct)
    rsp, hlut = ct_stopping_power(ct.hu, load_hlut(request.hlut_path or None))
    iso_mm = target_isocenter_mm(ct, target_mask)
    couch = request.couch_deg or (0.0,) * len(request.gantry_deg)
    beams = tuple(Beam(iso_mm, float(g), float(c),  # named by the angle in [0, 360): G270
                       f"G{g % 360:g}C{c % 360:g}" if c % 360 else f"G{g % 360:g}",
                       patient_position=ct.setup_position())
                  for g, c in zip(request.gantry_deg, couch, strict=True))
    settings = DoseEngineSettings(device=request.device,
                                  lateral_cutoff_fraction=request.cutoff_fraction,
                                  matrix_cutoff_fraction=request.matrix_cutoff_fraction)
    return PlanBasis(model, config, patient, target.name, target_mask, machine, ct_grid,
                     DoseGrid.covering(ct_grid, request.dose_grid_mm), rsp, hlut, beams,
                     settings)


def prepare_plan(request: PlanRequest, *, machine: Machine | None = None,
                 progress: ProgressCallback | None = None, cancel: CancelToken | None = None
                 ) -> PreparedPlan:
    """Load the patient, place the spots, make the RBE tables and the planning engine.

    Raises
    ------
    InputError, PlanningError, DicomImportError, DeviceError
        Bad request, missing target, unreachable target, unusable data.
    """
    timings: dict[str, float] = {}
    basis = plan_basis(request, machine=machine, progress=stage_progress(progress, 0.0, 0.05),
                       cancel=cancel)
    model, config, patient, machine = basis.model, basis.config, basis.patient, basis.machine
    target_mask, ct_grid, dose_grid = basis.target_mask, basis.ct_grid, basis.dose_grid
    rsp, beams, settings = basis.rsp, basis.beams, basis.settings
    assert patient.structure_set is not None
    target = patient.structure_set.get(basis.target)
    cubes = WeplCubes(rsp, ct_grid, settings.wepl_step_mm,
                      lateral_step_mm=settings.wepl_lateral_step_mm,
                      threads=cpu_threads(settings.n_threads))
    _check_grid_memory(patient, ct_grid, dose_grid, len(beams), model, target_mask,
                       cubes.kept_bytes([b.frame for b in beams]))
    report(progress, 0.05, "placing spots")
    t0 = time.perf_counter()
    # Most of the set-up is each beam's WEPL cube, made here for the spots and kept for the
    # engines (WeplCubes): the progress runs through them beam by beam.
    n = len(beams)
    spot_maps = tuple(place_spots(machine, rsp, ct_grid, b, target_mask,
                                  spot_spacing_mm=request.spot_spacing_mm,
                                  layer_spacing_mm=request.layer_spacing_mm, settings=settings,
                                  cubes=cubes,
                                  progress=stage_progress(progress, 0.05 + 0.45 * i / n,
                                                          0.05 + 0.45 * (i + 1) / n),
                                  cancel=cancel)
                      for i, b in enumerate(beams))
    report(progress, 0.5, "RBE tables")
    if cancel is not None:  # each step between the long ones takes up to a second or two
        cancel.raise_if_cancelled("the plan set-up")
    models = tissue_models(model, config)
    tables = (concatenated_tables([depth_tables(machine, m) for m in models])
              if model.quantity_names else None)
    timings["spots_and_tables"] = time.perf_counter() - t0
    if cancel is not None:
        cancel.raise_if_cancelled("the plan set-up")
    body = body_mask(patient, ct_grid, dose_grid)
    # One engine (WEPL, spot lattices and layers on the device) serves the forward pass of the
    # whole-body cubes and the exchange view; its region is the body plus every contoured
    # structure (PreparedPlan.dose_engine, made after the optimization). A second one on the
    # optimization grid (planning.optimization_grid) serves the optimizer's matrices, unless
    # that grid is the dose grid.
    t0 = time.perf_counter()
    region: NDArray[np.bool_] | None = None
    if body is not None:
        flat = body.copy().reshape(-1)
        for s in patient.structure_set.structures:
            flat[structure_rows(s.mask.to_dense(), ct_grid, dose_grid)] = True
        region = flat.reshape(dose_grid.shape)
    groups = voxel_groups(patient, config, models, ct_grid, dose_grid)
    opt_grid = optimization_grid(ct_grid, dose_grid, request.optimization_grid_mm)
    sampled: dict[str, NDArray[np.int64]] = {}
    engine: PlanningEngine | None = None
    if opt_grid is dose_grid:
        engine = PlanningEngine(machine, rsp, ct_grid, dose_grid, beams, spot_maps, settings,
                                calc_mask=region, wepl_cubes=cubes,
                                progress=stage_progress(progress, 0.52, 0.98),
                                cancel=cancel)
        opt_engine, opt_groups = engine, groups
    else:
        opt_region, sampled = optimization_region(patient, target.name,
                                                  generated_regions(target.name, config),
                                                  ct_grid, opt_grid, dose_grid)
        check_host_memory(engine_bytes(int(opt_region.sum()), len(beams), 0),
                          f"the optimization grid of {max(opt_grid.spacing_mm):g} mm around "
                          f"the structures ({int(opt_region.sum()):,} points)",
                          "choose a coarser optimization grid")
        opt_engine = PlanningEngine(machine, rsp, ct_grid, opt_grid, beams, spot_maps,
                                    settings, calc_mask=opt_region, wepl_cubes=cubes,
                                    progress=stage_progress(progress, 0.52, 0.98),
                                    cancel=cancel)
        opt_groups = voxel_groups(patient, config, models, ct_grid, opt_grid)
    timings["engine_setup"] = time.perf_counter() - t0
    return PreparedPlan(request, model, config, patient, machine, target.name, beams, spot_maps,
                        tables, groups, dose_grid, body, rsp, cubes, settings, region, timings,
                        opt_engine, opt_groups, engine, region_rows=sampled, hlut=basis.hlut)


def generated_regions(target: str, config: PlanConfig) -> list[str]:
    """The generated regions (:mod:`planning.regions`) a plan's optimization region covers:
    the default rings around ``target`` and those ``config``'s objectives name."""
    regions = [ring_name(target, a, b) for a, b, _, _ in DEFAULT_RINGS]
    return regions + [o.structure for o in config.objectives if is_generated(o.structure)]


def _check_grid_memory(patient: Patient, ct_grid: DoseGrid, dose_grid: DoseGrid, n_beams: int,
                       model: RbeModel, target_mask: NDArray[np.bool_],
                       cube_bytes: int) -> None:
    """Refuse a dose grid whose engines would not fit in memory, before any long work.

    The body's voxels (:func:`body_voxels`); the refinement's engine adds the target's points
    on its check grid (:func:`planning.optimization_grid.target_check_grid`), counted as if
    both engines existed at once. The estimate covers the engines' per-beam voxel arrays and
    one forward pass's sums (:func:`planning.engine.memory.engine_bytes`), and the WEPL cubes
    the plan keeps (``cube_bytes``, :meth:`planning.engine.wepl_cubes.WeplCubes.kept_bytes`).
    """
    n_rows = body_voxels(patient, ct_grid, dose_grid)
    check = target_check_grid(dose_grid)
    n_check = 0 if check == dose_grid else structure_rows(target_mask, ct_grid, check).size
    spacing = ", ".join(f"{v:g}" for v in dose_grid.spacing_mm)
    checked = f" and {n_check:,} target points between them" if n_check else ""
    check_host_memory(engine_bytes(n_rows + n_check, n_beams, 2 * len(model.quantity_names))
                      + cube_bytes,
                      f"a dose grid of {spacing} mm ({dose_grid.n_voxels:,} voxels, about "
                      f"{n_rows:,} in the body{checked}) for {n_beams} beams",
                      "choose a coarser dose grid")


def body_voxels(patient: Patient, ct_grid: DoseGrid, dose_grid: DoseGrid) -> int:
    """About how many voxels of ``dose_grid`` lie in the body, before any engine is made: the
    body's share of the CT (the EXTERNAL structure, else the whole CT) of its voxels."""
    share = 1.0
    if patient.structure_set is not None:
        for s in patient.structure_set.structures:
            if s.interpreted_type.upper() == "EXTERNAL":
                share = float(np.count_nonzero(s.mask.to_dense())) / max(ct_grid.n_voxels, 1)
                break
    return int(share * dose_grid.n_voxels)


def merged_objectives(patient: Patient, target: str, total_dose_gy_rbe: float,
                      config: PlanConfig, ring_scale: float = 1.0) -> list[Objective]:
    """A plan's objectives: the defaults (their rings' maxima raised by ``ring_scale``)
    merged with ``config``'s, under their structures' own names."""
    merged = merge_objectives(default_objectives(patient, target, total_dose_gy_rbe, ring_scale),
                              config)
    return [Objective(region_name(patient, o.structure), o.kind, o.dose_gy_rbe, o.weight,
                      o.volume_fraction) for o in merged]


def on_max_points(objectives: Sequence[Objective], patient: Patient, target: str
                  ) -> list[Objective]:
    """``objectives`` as the optimizer evaluates them: a maximum-dose objective on a contoured
    structure other than ``target`` and the body goes to the structure's maximum-dose points
    (its sample and its surface, :func:`planning.optimization_grid.max_points_name`); the
    others as they are."""
    assert patient.structure_set is not None
    contoured = {s.name for s in patient.structure_set.structures}
    contoured -= {s.name for s in body_structures(patient)} | {target}
    return [dataclasses.replace(o, structure=max_points_name(o.structure))
            if o.kind == "max_dose" and o.structure in contoured else o for o in objectives]


def make_plan(request: PlanRequest, *, machine: Machine | None = None,
              progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
              keep_influence: bool = True) -> PlanResult:
    """Run the planning pipeline of the module docstring (no files written): prepare the plan
    and optimize it with the request's objectives. The result keeps the prepared plan
    (``PlanResult.prepared``) for :func:`reoptimize`; with ``keep_influence=False`` its
    optimizer matrices are freed before the forward dose (less memory at the peak; a later
    re-optimization rebuilds them).

    Raises
    ------
    InputError, PlanningError, DicomImportError, DeviceError
        Bad request, missing target, unreachable target, unusable data.
    OperationCancelled
        When ``cancel`` is set.
    """
    t_start = time.perf_counter()
    # Stage shares from the demo head on a CPU (2 beams, 5 mm spots, 4 mm grid: set-up 19 s
    # of 34 s, optimization 9 s): the bar moves at about the same pace through the plan.
    prepared = prepare_plan(request, machine=machine,
                            progress=stage_progress(progress, 0.0, PREPARE_SHARE), cancel=cancel)
    result = optimize_prepared(prepared, progress=stage_progress(progress, PREPARE_SHARE, 1.0),
                               cancel=cancel, keep_influence=keep_influence)
    result.report["timings_s"]["total"] = time.perf_counter() - t_start
    return result


def reoptimize(prepared: PreparedPlan, *, total_dose_gy_rbe: float | None = None,
               n_fractions: int | None = None, config: PlanConfig | None = None,
               exchange: bool | None = None, exchange_tissue: str | None = None,
               progress: ProgressCallback | None = None, cancel: CancelToken | None = None
               ) -> PlanResult:
    """Optimize a prepared plan again with a new prescription and/or objectives (a new plan
    configuration), from its kept influence matrices, starting from the spot weights of its
    last optimization scaled to the prescription (see :func:`optimize_prepared`).

    ``exchange`` turns the mMKM / LEM I exchange view on or off (None: as before);
    ``exchange_tissue`` is the LEM I tissue of that view's LEM I side for a plan under another
    model (the view is computed after the optimization, so neither touches the matrices).

    Raises
    ------
    InputError, PlanningError
        A bad prescription, objectives on unknown structures, or a configuration that changes
        what the matrices are made of (LEM I tissues, or the tissue of a LEM I plan: prepare a
        new plan).
    """
    request = prepared.request
    if config is not None:
        if config.tissues != prepared.config.tissues:
            raise PlanningError(f"{config_key(config, 'tissues')}: the LEM I tissues changed: "
                                "they change the influence matrices, so make a new plan")
        _check_config(config, prepared.patient, prepared.machine)
    changes: dict[str, Any] = {}
    if exchange is not None:
        changes["exchange"] = bool(exchange)
    if exchange_tissue is not None and exchange_tissue != request.tissue:
        if request.rbe_model == "lem1":
            raise PlanningError("the LEM I tissue of a LEM I plan changes its influence "
                                "matrices, so make a new plan")
        changes["tissue"] = exchange_tissue
    if total_dose_gy_rbe is not None:
        changes["total_dose_gy_rbe"] = float(total_dose_gy_rbe)
    if n_fractions is not None:
        changes["n_fractions"] = int(n_fractions)
    if config is not None:
        changes.update(config=config, config_path=None)
    prepared.request = dataclasses.replace(request, **changes)
    if config is not None:
        prepared.config = config
    try:
        return optimize_prepared(prepared, progress=progress, cancel=cancel)
    except BaseException:
        prepared.request = request
        raise


def optimize_prepared(prepared: PreparedPlan, *, progress: ProgressCallback | None = None,
                      cancel: CancelToken | None = None, keep_influence: bool = True
                      ) -> PlanResult:
    """Optimize a prepared plan with its request's prescription and objectives, then the
    forward dose, the report and (if asked) the exchange view. ``keep_influence=False`` frees
    the optimizer matrices before the forward dose. The optimizer starts from the weights of
    the plan's last optimization (``prepared.weights``, a re-optimization) scaled to the
    prescription, else from uniform weights; the report's ``optimizer_start`` says which."""
    t_start = time.perf_counter()
    request, model, patient = prepared.request, prepared.model, prepared.patient
    if not (math.isfinite(request.total_dose_gy_rbe) and request.total_dose_gy_rbe > 0):
        raise InputError(f"the prescribed dose must be a positive number, got "
                         f"{request.total_dose_gy_rbe}")
    if request.n_fractions < 1:
        raise InputError(f"the number of fractions must be >= 1, got {request.n_fractions}")
    prescription = Prescription(prepared.target, request.total_dose_gy_rbe, request.n_fractions)
    assert patient.structure_set is not None

    def plan_objectives(ring_scale: float = 1.0) -> list[Objective]:
        return merged_objectives(patient, prepared.target, prescription.total_dose_gy_rbe,
                                 prepared.config, ring_scale)

    objectives = plan_objectives()
    solved = on_max_points(objectives, patient, prepared.target)
    rows_by_name = prepared.structure_rows([o.structure for o in solved], cancel)
    timings = dict(prepared.timings_s)
    t0 = time.perf_counter()
    kinds: dict[str, set[str]] = {}
    for o in solved:
        kinds.setdefault(o.structure, set()).add(o.kind)
    one_sided = [name for name in rows_by_name
                 if kinds.get(name, set()) <= set(ONE_SIDED_KINDS)]
    rebuilt = prepared.ensure_matrices(rows_by_name, one_sided=one_sided,
                                       progress=stage_progress(progress, 0.0, 0.3),
                                       cancel=cancel)
    timings["dose_influence"] = time.perf_counter() - t0 if rebuilt else 0.0
    assert prepared.matrices is not None
    dose_m, sums_m = prepared.matrices
    t0 = time.perf_counter()
    problem = optimization_problem(dose_m, sums_m, prepared.rows, rows_by_name, model,
                                   prescription.n_fractions, prepared.opt_groups,
                                   device=prepared.opt_engine.device)
    correcting = prepared.corrects_dose
    dose_per_fraction = prescription.dose_per_fraction_gy_rbe
    if correcting:  # the halo the matrices leave out, for the starting weights
        start = initial_weights(problem, prepared.target, dose_per_fraction, prepared.weights)
        problem = with_dose_correction(
            problem, prepared.opt_engine, start, prepared.tables, prepared.rows,
            forward=row_forward(prepared.opt_engine, start, prepared.tables, prepared.rows,
                                kept=prepared.row_forward, cancel=cancel))
    ring_scale = surrounding_tissue_ratio(problem, prepared.target,
                                          dose_per_fraction)
    if ring_scale > 1.0:  # same structures, so the same rows
        objectives = plan_objectives(ring_scale)
        solved = on_max_points(objectives, patient, prepared.target)
    min_particles, max_particles = delivery_limits(prepared.machine, prepared.config)
    optimizer_settings = _optimizer_settings(prepared.config, min_particles, max_particles)
    # A re-optimization continues from the last plan's weights, scaled to the prescription;
    # its first pass gets CONTINUED_SHARE of the iterations (the refinement's pass all of its
    # own). The objective stays normalised at the uniform start, so its tolerance means what
    # it means for a new plan.
    warm = prepared.weights is not None
    first_settings = (dataclasses.replace(optimizer_settings, max_iterations=max(
        round(CONTINUED_SHARE * optimizer_settings.max_iterations), 1)) if warm
        else optimizer_settings)
    result = optimize_weights(
        problem, solved, dose_per_fraction, prepared.target, first_settings,
        start=(initial_weights(problem, prepared.target, dose_per_fraction, prepared.weights)
               if warm else None),
        reference=(initial_weights(problem, prepared.target, dose_per_fraction)
                   if warm else None),
        progress=stage_progress(progress, 0.3, 0.75), cancel=cancel)
    empty_beams_problem(result.weights, prepared.beams, prepared.spot_maps, min_particles,
                        prepared.config)  # a plan that delivers nothing stops here
    timings["optimization"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    correction: CorrectionChange | None = None
    last_forward: RowForward | None = None
    if correcting:  # again for the weights found; the last pass runs with it
        first = problem
        last_forward = row_forward(prepared.opt_engine, result.weights, prepared.tables,
                                   prepared.rows, cancel=cancel)
        problem = with_dose_correction(problem, prepared.opt_engine, result.weights,
                                       prepared.tables, prepared.rows, forward=last_forward)
        correction = correction_change(first, problem, result.weights, prepared.target,
                                       dose_per_fraction)
        del first
    dose_grid = prepared.dose_grid
    target_mask = patient.structure_set.get(prepared.target).mask.to_dense()
    target_rows = structure_rows(target_mask, grid_of(patient.ct), dose_grid)
    check = target_check_grid(dose_grid)
    check_rows = (target_rows if check == dose_grid
                  else structure_rows(target_mask, grid_of(patient.ct), check))
    refinement = refine_target(
        problem, solved, optimizer_settings, result,
        engine=prepared.target_engine(check, check_rows,
                                      progress=stage_progress(progress, 0.75, 0.77),
                                      cancel=cancel), model=model,
        tables=prepared.tables, voxel_groups=prepared.groups_on(check), target=prepared.target,
        target_rows=check_rows,
        sampled_rows=rows_on_check_grid(prepared.rows, prepared.opt_engine.dose_grid, check),
        cold_rows=rows_on_check_grid(target_rows, dose_grid, check),
        prescription_per_fraction=dose_per_fraction, again=correcting,
        progress=stage_progress(progress, 0.77, 0.83), cancel=cancel)
    iterations = result.iterations
    # How each of the optimizer's passes ended, in order (report.json's optimizer_pass_messages).
    pass_ends = [_pass_end("first", result)]
    refinement_iterations = 0
    if refinement.result is not None:
        result = refinement.result
        iterations += result.iterations
        refinement_iterations = result.iterations
        pass_ends.append(_pass_end("refinement", result))
    settled: Settled | None = None
    if correcting and refinement.problem is not None:  # until the optimizer's dose is the plan's
        settled = settle_correction(
            refinement.problem, result, engine=prepared.opt_engine, tables=prepared.tables,
            rows=prepared.rows, objectives=refinement.objectives, settings=optimizer_settings,
            target=prepared.target, prescription_per_fraction=dose_per_fraction,
            progress=stage_progress(progress, 0.83, 0.85), cancel=cancel)
        result = settled.result
        iterations += settled.iterations
        pass_ends += [_pass_end("settling", r) for r in settled.pass_results]
        last_forward = settled.forward
    added_rows = refinement.rows
    # Each objective's share of the objective at the final weights, on the optimizer's points
    # and with the correction of its last pass (the terms add up to result.objective).
    final_objectives = refinement.objectives or tuple(solved)
    final_problem = (settled.problem if settled is not None else problem
                     if refinement.problem is None else refinement.problem)
    terms = objective_terms(final_objectives, final_problem, result.weights)
    del final_problem
    hot_objectives = [{"dose_gy_rbe": o.dose_gy_rbe,
                       "level_pct": round(100 * o.dose_gy_rbe
                                          / prescription.total_dose_gy_rbe, 6),
                       "weight": o.weight, "points": refinement.hot_points,
                       **term_entry(o, term, sum(terms), prescription.n_fractions)}
                      for o, term in zip(final_objectives[len(solved):], terms[len(solved):],
                                         strict=True)]
    del refinement  # its problem holds the matrices
    timings["refinement"] = time.perf_counter() - t0
    matrix_mib = total_nbytes((dose_m, *sums_m)) / 2**20
    matrix_nnz = prepared.matrix_nnz
    del problem, dose_m, sums_m
    if not keep_influence:
        prepared.release()
    t0 = time.perf_counter()
    made = prepared.engine is None
    engine = prepared.dose_engine(progress=stage_progress(progress, 0.85, 0.87), cancel=cancel)
    timings["dose_engine_setup"] = time.perf_counter() - t0 if made else 0.0
    t0 = time.perf_counter()
    beams, spot_maps = prepared.beams, prepared.spot_maps
    empty_beams = empty_beams_problem(result.weights, beams, spot_maps, min_particles,
                                      prepared.config)
    cubes = forward_cubes(engine, result.weights, model, prepared.tables,
                          prescription.n_fractions, groups=prepared.voxel_groups,
                          progress=stage_progress(progress, 0.87, 0.9 if request.exchange
                                                  else 1.0), cancel=cancel)
    timings["forward_dose"] = time.perf_counter() - t0
    if cancel is not None:  # the report's metrics and DVHs take seconds on a large grid
        cancel.raise_if_cancelled("the plan")
    offsets = np.cumsum([0] + [s.n_spots for s in spot_maps])
    point = dose_specification_voxel(dose_grid, target_rows, cubes.rbe_dose_gy_rbe,
                                     prescription.total_dose_gy_rbe, beams[0].isocenter_mm)
    beam_doses = beam_doses_at(dose_grid, point, cubes.beam_physical_dose_gy,
                               cubes.physical_dose_gy, cubes.rbe_dose_gy_rbe,
                               prescription.n_fractions)
    structure_tissues = tuple((patient.structure_set.get(name).name, tissue)
                              for name, tissue in prepared.config.tissues)
    plan = Plan(label=request.label, machine_name=prepared.machine.treatment_machine_name,
                beams=tuple(BeamPlan(b, s, result.weights[offsets[i]:offsets[i + 1]])
                            for i, (b, s) in enumerate(zip(beams, spot_maps, strict=True))),
                prescription=prescription, rbe_model=model.describe(), rbe=model,
                beam_doses=beam_doses, rbe_tissues=structure_tissues)
    labels = tissue_labels(patient, prepared.config, prepared.voxel_groups, dose_grid)
    sections = structure_report(patient, dose_grid, cubes.physical_dose_gy,
                                cubes.rbe_dose_gy_rbe, prescription.total_dose_gy_rbe,
                                prepared.target, labels=labels)
    if cancel is not None:
        cancel.raise_if_cancelled("the plan")
    physical = isinstance(model, PhysicalDose)
    target_metrics = sections.structures.get(prepared.target)
    rep: dict[str, Any] = {
        "prescription": {"target": prepared.target,
                         "total_dose_gy_rbe": prescription.total_dose_gy_rbe,
                         "n_fractions": prescription.n_fractions,
                         "dose_per_fraction_gy_rbe": prescription.dose_per_fraction_gy_rbe,
                         "unit": dose_unit_of(model),
                         "model": short_model_name(model_label(model, structure_tissues))},
        "dose_unit": dose_unit_of(model),
        "rbe_model": model_label(model, structure_tissues),
        "machine": prepared.machine.treatment_machine_name,
        "hlut": None if prepared.hlut is None else prepared.hlut.record(),
        "beams": [{"name": b.label, "gantry_deg": b.gantry_deg, "couch_deg": b.couch_deg,
                   "isocenter_mm": list(b.isocenter_mm), "spots": s.n_spots,
                   "layers": int(np.unique(s.layer).size),
                   "spots_delivered": int(np.count_nonzero(bp.weights)),
                   "layers_delivered": int(np.unique(s.layer[bp.weights > 0]).size),
                   "target_mean_gy": sections.mean_of(prepared.target, bd),
                   "beam_dose_gy_per_fraction": phys,
                   "beam_dose_gy_rbe_per_fraction": eff}
                  for b, s, bp, bd, phys, eff in zip(
                      beams, spot_maps, plan.beams, cubes.beam_physical_dose_gy,
                      beam_doses.physical_gy, beam_doses.rbe_weighted_gy_rbe, strict=True)],
        "spots": int(sum(sm.n_spots for sm in spot_maps)),
        "delivery": delivery_report(plan, min_particles, max_particles),
        "dose_specification_point": {
            "point_mm": list(beam_doses.point_mm),
            "physical_gy_per_fraction": sum(beam_doses.physical_gy),
            "rbe_weighted_gy_rbe_per_fraction": sum(beam_doses.rbe_weighted_gy_rbe)},
        "influence_nnz": matrix_nnz,
        "influence_mib": matrix_mib,
        "influence_rebuilt": rebuilt,
        "device": engine.device,
        "dose_grid": {"shape": list(dose_grid.shape), "spacing_mm": list(dose_grid.spacing_mm),
                      "origin_mm": list(dose_grid.origin_mm)},
        "objectives": [{"structure": o.structure, "type": o.kind, "dose_gy_rbe": o.dose_gy_rbe,
                        "weight": o.weight, "volume_fraction": o.volume_fraction,
                        **term_entry(o, term, sum(terms), prescription.n_fractions)}
                       for o, term in zip(objectives, terms[:len(objectives)], strict=True)],
        "iterations": iterations,
        "optimizer_start": "previous plan" if warm else "uniform",
        "refinement": {"target_points_added": int(added_rows.size),
                       "check_grid_spacing_mm": list(check.spacing_mm),
                       "target_points_checked": int(check_rows.size),
                       "window": list(TARGET_WINDOW),
                       "watch_level": WATCH_LEVEL,
                       "hot_point_objective": hot_objectives[0] if hot_objectives else None,
                       "iterations": refinement_iterations},
        "lateral_cutoff_fraction": prepared.settings.lateral_cutoff_fraction,
        "dose_correction": None if correction is None else {
            "matrix_cutoff_fraction": prepared.settings.optimizer_cutoff_fraction,
            "target_dose_share": correction.target_share,
            "largest_change_pct": correction.largest_pct,
            **({} if settled is None else {
                "settling_passes": settled.passes,
                "settling_iterations": settled.iterations,
                "residual_pct": settled.residual_pct,
                "tolerance_pct": SETTLE_TOLERANCE_PCT})},
        "objective_value": result.objective,
        "optimizer_message": result.message,
        "optimizer_pass_messages": pass_ends,
        "structures": sections.structures,
        "dvh_gy_rbe": sections.dvh_gy_rbe,
        "timings_s": timings,
        # What reading the patient's files warned of first: the PDF and the app show them,
        # and report.json's readers (exchange staff, batch summaries) see no other output.
        "warnings": [*input_warnings(prepared), *(
                     w for w in (empty_beams,
                                 ring_scale_note(ring_scale),
                                 physical_fractionation_warning(
                                     prescription.total_dose_gy_rbe, prescription.n_fractions)
                                 if physical else fractionation_warning(
                                     prescription.total_dose_gy_rbe, prescription.n_fractions,
                                     lem=isinstance(model, LemModel)),
                                 None if target_metrics is None else coverage_warning(
                                     prepared.target, target_metrics,
                                     prescription.total_dose_gy_rbe,
                                     "Gy" if physical else "Gy(RBE)")) if w)],
    }
    # The note the plan document shows for an optimizer that stopped before its convergence
    # test: in report.json's warnings too, so the terminal and batch say it as well.
    stopped = report_optimizer_note(rep)
    if stopped is not None:
        rep["warnings"].append(stopped)
    if prepared.config.tissues:
        rep["tissues"] = {patient.structure_set.get(name).name: LemModel(t).describe()
                          for name, t in prepared.config.tissues}
    view = None
    if request.exchange:
        t0 = time.perf_counter()
        lem = _model(dataclasses.replace(request, rbe_model="lem1"))  # the request's tissue
        mkm_model, lem_model = paired_models(model, lem if isinstance(lem, LemModel) else None)
        # A LEM I plan's LEM I side is the plan's own dose: its tissues per structure too.
        view = exchange_view(engine, result.weights, prescription.n_fractions, mkm=mkm_model,
                             lem=lem_model, patient=patient,
                             lem_structure_tissues=(structure_tissues if lem_model == model
                                                    else ()),
                             progress=stage_progress(progress, 0.9, 1.0), cancel=cancel)
        rep["exchange"] = exchange_report(view, sections.samples_by_name)
        timings["exchange"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    prepared.weights = result.weights
    prepared.row_forward = last_forward  # its weights are checked where it is used
    report(progress, 1.0, "plan done")
    return PlanResult(plan, patient, dose_grid, cubes.physical_dose_gy, cubes.rbe_dose_gy_rbe,
                      cubes.letd_kev_um, cubes.rbe, model, report=rep, exchange=view,
                      beam_physical_dose_gy=cubes.beam_physical_dose_gy, prepared=prepared,
                      tissue_labels=labels, structure_tissues=structure_tissues)


def input_warnings(prepared: PreparedPlan) -> list[str]:
    """The warnings of ``prepared``'s plans that concern what they all share, the first plan
    and each re-optimization from its kept influence alike: the patient's import warnings, the
    CT conversion's, a coarse dose grid and a wide spot spacing (report.json's ``warnings``
    begin with them; the rest are about one plan's dose, objectives and optimizer)."""
    return [*prepared.patient.import_warnings(), *(
            w for w in (None if prepared.hlut is None else prepared.hlut.warning(),
                        grid_warning(prepared.dose_grid.spacing_mm),
                        spot_spacing_warning(prepared.machine, prepared.spot_maps)) if w)]


def term_entry(objective: Objective, term: float, total: float, n_fractions: int
               ) -> dict[str, float | None]:
    """What report.json says of one objective's term
    (:func:`planning.optimization.objective_terms`): ``term`` ((Gy(RBE) per fraction)^2,
    weighted), ``share_percent`` of the objective's value,
    and ``rms_deviation_gy_rbe``, the root-mean-square deviation of the whole plan's
    RBE-weighted dose from the objective's dose over its points (one-sided for minimum and
    maximum objectives; None for a weight of 0)."""
    rms = (math.sqrt(term / objective.weight) * n_fractions if objective.weight > 0 else None)
    return {"term": term, "share_percent": 100 * term / total if total > 0 else 0.0,
            "rms_deviation_gy_rbe": rms}


def ring_scale_note(ring_scale: float) -> str | None:
    """The report's note when the default fall-off rings' maxima were raised for the tissue
    around the target (:func:`planning.engine.problem.surrounding_tissue_ratio`)."""
    if ring_scale <= 1.0:
        return None
    return (f"the default fall-off rings' maxima were raised by a factor {ring_scale:.3f}: the "
            f"tissue around the target gets {ring_scale:.3f} x the target tissue's "
            f"RBE-weighted dose from the same dose, so a maximum at the prescription next to "
            f"a covered target could not be met")


def _check_config(config: PlanConfig, patient: Patient, machine: Machine) -> None:
    """Check a plan configuration before the work it steers: its structures exist
    (:func:`planning.plan_config.check_config_structures`), and its ``[delivery]`` and
    ``[optimizer]`` spot limits leave room with the machine's (:func:`delivery_limits`,
    :func:`_optimizer_settings`). Every error names the configuration's file, if any.

    Raises
    ------
    PlanningError
    """
    check_config_structures(config, patient)
    try:
        _optimizer_settings(config, *delivery_limits(machine, config))
    except PlanningError as exc:
        if not config.path:
            raise
        raise PlanningError(f"{config.path}: {exc}") from None


def delivery_limits(machine: Machine, config: PlanConfig) -> tuple[float, float]:
    """(min, max) primary ions per spot and fraction: the configuration's ``[delivery]``
    values where given, else the machine's."""
    low = (config.min_particles_per_spot if config.min_particles_per_spot is not None
           else machine.min_particles_per_spot)
    top = (config.max_particles_per_spot if config.max_particles_per_spot is not None
           else machine.max_particles_per_spot)
    if not top > low:
        raise PlanningError(f"the most particles per spot ({top:g}) must exceed the fewest "
                            f"({low:g}); check the machine and the [delivery] table")
    return low, top


def _pass_end(kind: str, result: OptimizationResult) -> dict[str, Any]:
    """How one pass of the optimizer ended, for report.json's ``optimizer_pass_messages``:
    ``kind`` ("first", "refinement" or "settling", :data:`planning.plan_notes.PASS_WORDS`),
    its iterations and scipy's L-BFGS-B message."""
    return {"pass": kind, "iterations": result.iterations, "message": result.message}


def _optimizer_settings(config: PlanConfig, min_particles: float, max_particles: float
                        ) -> OptimizerSettings:
    """The configuration's optimizer settings bounded by the delivery limits (the stricter
    of a limit and an ``[optimizer]`` spot weight wins)."""
    opt = config.optimizer
    low = max(opt.min_spot_weight, min_particles / PRIMARIES_PER_WEIGHT_UNIT)
    top = max_particles / PRIMARIES_PER_WEIGHT_UNIT
    if opt.max_spot_weight is not None:
        top = min(top, opt.max_spot_weight)
    if not top > low:
        raise PlanningError(f"the maximum spot weight {top:g} (10^6 ions) does not exceed the "
                            f"minimum {low:g}; check [optimizer] and [delivery]")
    return dataclasses.replace(opt, min_spot_weight=low, max_spot_weight=top)


def empty_beams_problem(weights: NDArray[np.float64], beams: Sequence[Beam],
                        spot_maps: Sequence[SpotMap], min_particles: float,
                        config: PlanConfig) -> str | None:
    """What to say of optimized weights that leave beams without a spot (such a beam can be
    neither delivered nor exported), None when every beam has one: the beams, and why that
    may be (spots the optimizer drives below half the minimum particles per spot are
    removed, and where that minimum comes from; or beams the objectives do not need).

    Raises
    ------
    PlanningError
        When no beam has a spot left: the plan delivers nothing.
    """
    offsets = np.cumsum([0] + [s.n_spots for s in spot_maps])
    empty = [b.label for i, b in enumerate(beams)
             if not np.any(weights[offsets[i]:offsets[i + 1]] > 0)]
    if not empty:
        return None
    source = (f"[delivery] min_particles_per_spot of {config.path or 'the plan configuration'}"
              if config.min_particles_per_spot is not None else "the machine's minimum")
    text = (f"the optimizer left no spot with particles in beam{'s' if len(empty) > 1 else ''} "
            f"{', '.join(empty)}: spots it drives below half the minimum of "
            f"{min_particles:.3g} particles per spot ({source}) are removed. Lower that "
            "minimum, or remove the beam if the objectives do not need it")
    if len(empty) == len(beams):
        raise PlanningError(text)
    return f"{text} (a beam without spots cannot be exported)"


def delivery_report(plan: Plan, min_particles: float, max_particles: float) -> dict[str, Any]:
    """The report's ``delivery`` section: the limits used and the spots the minimum removed
    (weight 0: neither delivered nor exported) and that remain, with their range."""
    weights = plan.all_weights() * PRIMARIES_PER_WEIGHT_UNIT
    kept = weights[weights > 0]
    return {
        "min_particles_per_spot": min_particles,
        "max_particles_per_spot": max_particles,
        "spots_planned": int(weights.size),
        "spots_removed": int(weights.size - kept.size),
        "spots_delivered": int(kept.size),
        "fewest_particles_in_a_spot": float(kept.min()) if kept.size else 0.0,
        "most_particles_in_a_spot": float(kept.max()) if kept.size else 0.0,
    }


def _received_plan_file(report: dict[str, Any]) -> tuple[Path, str] | None:
    """The RT Ion Plan file a recalculation read and its SOP Instance UID (the report's
    ``source_plan``), or None for a plan that came in memory."""
    source = report.get("source_plan") or {}
    path, uid = source.get("path"), source.get("sop_instance_uid")
    return (Path(path), str(uid)) if path and uid else None


def _copy_received_plan(source: Path, sop_instance_uid: str, target: Path) -> str:
    """Copy the received RT Ion Plan file unchanged to ``target`` (atomically) after checking
    that it still holds the plan that was read; return its SOP Instance UID."""
    from planning.dicom import plan_sop_instance_uid

    what = "the received RT Ion Plan cannot be read again to be written with its doses"
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise InputError(f"{source}: {what} ({os_error_reason(exc)})") from None
    held = plan_sop_instance_uid(source, data, what=what)
    if held != sop_instance_uid:
        raise PlanningError(f"{source}: the file changed since it was read (SOP Instance UID "
                            f"{held or 'missing'}, read {sop_instance_uid}); recalculate again")
    if source.resolve() != target.resolve():
        def write(f: BinaryIO) -> None:
            f.write(data)

        atomic_write_with(target, write)
    return sop_instance_uid


def write_plan_outputs(result: PlanResult, out_dir: str | os.PathLike[str], *,
                       machine: Machine | None = None, plan_name: str | None = None,
                       created: datetime.datetime | None = None) -> list[Path]:
    """Write RTPLAN.dcm, RTDOSE_PHYSICAL.dcm, RTDOSE_RBE.dcm (not under the physical model)
    and report.json into ``out_dir`` (and RTDOSE_RBE_MKM.dcm, RTDOSE_RBE_LEM1.dcm with an
    exchange view).

    With ``plan_name`` the plan document is written too
    (:func:`planning.document.write_plan_document`,
    ``<patientID>_<plan_name>_<YYYYmmdd-HHMMSS>_report.pdf``, never replacing a file), dated
    ``created`` (default now: an export folder named after its time passes that time, so
    that the folder and the document it holds give the same one).

    A planned result (its report has ``delivery``) is exported with its delivery limits
    checked (:func:`planning.dicom.export_rt_ion_plan`, ``particles_per_spot``). A
    recalculation of an RT Ion Plan file writes that file unchanged (its Tune IDs, paintings,
    beam numbers and SOP Instance UID are the received system's, which IonPlan's plan does not
    carry) and the doses refer to it; a recalculated plan given in memory is exported.
    Spots without particles are never written.

    Each RT Dose is labelled with the model that computed it: RTDOSE_RBE.dcm with
    ``result.model``, the exchange doses with the view's mMKM and LEM I models; RTPLAN.dcm
    names the model the plan was optimized with (``result.plan``). Under the physical model
    there is no RBE-weighted dose, so no RTDOSE_RBE.dcm is written (an EFFECTIVE file holding
    Gy would be read as Gy(RBE) by a receiving system); RTDOSE_PHYSICAL.dcm holds the dose.

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
    delivery = result.report.get("delivery")
    limits = (None if delivery is None else
              (float(delivery["min_particles_per_spot"]),
               float(delivery["max_particles_per_spot"])))
    received = None if delivery is not None else _received_plan_file(result.report)
    if received is not None:
        plan_uid = _copy_received_plan(*received, out / "RTPLAN.dcm")
    else:
        plan_uid = export_rt_ion_plan(
            result.plan, result.patient, out / "RTPLAN.dcm", sad_mm=machine.sad_mm,
            machine_spot_sigma_mm=functools.partial(spot_sigma_air_at, machine),
            particles_per_spot=limits)
    export_rt_dose(result.physical_dose_gy, result.dose_grid, result.patient,
                   out / "RTDOSE_PHYSICAL.dcm", dose_type="PHYSICAL", model=PhysicalDose(),
                   referenced_plan_uid=plan_uid)
    names = ["RTPLAN.dcm", "RTDOSE_PHYSICAL.dcm"]
    if not isinstance(result.model, PhysicalDose):
        export_rt_dose(result.rbe_dose_gy_rbe, result.dose_grid, result.patient,
                       out / "RTDOSE_RBE.dcm", dose_type="EFFECTIVE", model=result.model,
                       structure_tissues=result.structure_tissues, referenced_plan_uid=plan_uid)
        names.append("RTDOSE_RBE.dcm")
    if result.exchange is not None:
        names += write_exchange_doses(result.exchange, result.patient, out, plan_uid)
    if plan_name is not None:
        from planning.document import write_plan_document

        names.append(write_plan_document(result, out, plan_name, created=created).name)
    files = [out / n for n in (*names, "report.json")]
    # Whose plan and which: report.json named neither (review, 2026-12-07).
    result.report["patient"] = result.patient.record()
    result.report["plan"] = {"label": result.plan.label,
                             "rt_plan_sop_instance_uid": plan_uid}
    result.report["files"] = [f.name for f in files]
    result.report["timings_s"]["export"] = time.perf_counter() - t0
    atomic_write_text(out / "report.json", report_json_text(result.report))
    return files
