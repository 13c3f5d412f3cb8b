"""Robust evaluation of a plan: its dose under range and setup error scenarios (``ionplan robust``).

A scenario changes what the plan meets, never the plan:

- a *range* scenario scales the relative stopping power of the whole CT by ``1 + e / 100``
  (``e`` = ``range_error_pct``; +3.5 % stopping power shortens every range by 3.4 %, -3.5 %
  lengthens it by 3.6 %);
- a *setup* scenario shifts every beam's isocentre by ``shift_mm`` (LPS, mm): the dose moves
  with it over the fixed patient, as when the patient lies ``-shift_mm`` off;
- a *combined* scenario does both.

Each setup position is one :class:`planning.engine.PlanningEngine` (the beams traced once; a
range error scales the WEPL, which is linear in the stopping power) and each scenario one
forward pass of the plan's spot weights (no influence matrix). The nominal scenario is the
recalculation of the plan (:func:`planning.compare.recalc.recalculate`), so it equals
``ionplan recalc`` by construction.

Scenarios run one after the other in this process (the engine uses every core), or as tasks on
a Dask cluster (:mod:`planning.distributed`) through a :data:`ScenarioRunner`.

Outputs (:func:`write_robust_outputs`): the nominal plan's files as ``ionplan recalc`` writes
them, ``RTDOSE_RBE_MIN.dcm`` and ``RTDOSE_RBE_MAX.dcm`` (voxel-wise minimum and maximum
RBE-weighted dose over the scenarios; ``RTDOSE_PHYSICAL_MIN.dcm`` and ``RTDOSE_PHYSICAL_MAX.dcm``
under the physical model), ``report.json`` (the nominal report plus ``robust``,
``scenarios``, ``worst_case`` and ``dvh_bands_gy_rbe``), ``report.html`` and the plan
document (``<patientID>_<plan>_<YYYYmmdd-HHMMSS>_report.pdf``) with its robustness section.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.compare.recalc import (
    MAX_GRID_MM,
    MIN_GRID_MM,
    RecalcSetup,
    plan_structure_tissues,
    prepare_recalc,
    recalculate,
)
from planning.dose_grid import DoseGrid
from planning.dose_interpolation import VoxelLabels
from planning.engine import PlanningEngine
from planning.engine.forward_dose import forward_cubes
from planning.engine.problem import dose_model_setup
from planning.errors import InputError
from planning.evaluation import doses_at_volumes
from planning.machine import Machine
from planning.monitor_calibration import MonitorCalibration
from planning.optimization import RbeGroup
from planning.patient import Patient
from planning.plan import Plan
from planning.planner import PlanResult
from planning.progress import CancelToken, ProgressCallback, report, stage_progress
from planning.rbe import DepthTables, PhysicalDose, RbeModel
from planning.report_json import report_json_text
from planning.robust_tables import SCENARIO_METRICS
from planning.structure_dose import sampled_structures
from planning.structure_sampling import DoseSamples

log = logging.getLogger(__name__)

#: Volume levels (percent of each structure) of the DVH bands: 0, 1, ..., 100.
BAND_VOLUME_PERCENT = tuple(range(101))


@dataclass(frozen=True)
class Scenario:
    """One error scenario.

    Attributes
    ----------
    name : str
        E.g. ``"nominal"``, ``"SPR +3.5% (short)"`` (stopping power 3.5 % up: the ranges
        shorter), ``"setup +x 3mm"``, ``"SPR -3.5% (long) setup -z 3mm"``.
    range_error_pct : float
        Relative stopping power scaled by ``1 + range_error_pct / 100``.
    shift_mm : (x, y, z)
        Isocentre shift of every beam, LPS, mm.
    """

    name: str
    range_error_pct: float = 0.0
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def is_nominal(self) -> bool:
        return self.range_error_pct == 0 and not any(self.shift_mm)


@dataclass(frozen=True)
class RobustSettings:
    """The scenario set of a robust evaluation (see :func:`make_scenarios`).

    Attributes
    ----------
    range_error_pct : float
        Stopping-power error, percent (0 leaves out the range scenarios).
    setup_error_mm : float
        Length of the isocentre shift, mm (0 leaves out the setup scenarios; not both 0:
        the only scenario would be the nominal one).
    setup_directions : {6, 14}
        The six axis directions, or those and the eight diagonals (each of length
        ``setup_error_mm``).
    combined : bool
        Also every setup shift with each range error (needs both errors).
    combined_only : bool
        With ``combined``: leave out the range-only and setup-only scenarios, keeping the
        nominal one and the combinations, where both errors occur at once (13 with 6
        directions: the nominal plus the 12 corners of the error box).
    """

    range_error_pct: float = 3.5
    setup_error_mm: float = 3.0
    setup_directions: int = 6
    combined: bool = False
    combined_only: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.range_error_pct) and 0 <= self.range_error_pct < 50):
            raise InputError(f"range error must lie in [0, 50) %, got {self.range_error_pct}")
        if not (math.isfinite(self.setup_error_mm) and 0 <= self.setup_error_mm <= 50):
            raise InputError(f"setup error must lie in [0, 50] mm, got {self.setup_error_mm}")
        if self.setup_directions not in (6, 14):
            raise InputError(f"setup directions must be 6 or 14, got {self.setup_directions}")
        if self.combined_only and not self.combined:
            raise InputError("combined_only needs combined scenarios (combined=True)")
        if self.combined and not (self.range_error_pct and self.setup_error_mm):
            # With one error 0 there is no combination: the report said "and combined" of
            # scenarios that were never run (review).
            raise InputError(f"combined{'-only' if self.combined_only else ''} scenarios need "
                             "both a range and a setup error")
        if not (self.range_error_pct or self.setup_error_mm):
            raise InputError("range error and setup error are both 0: there is nothing to "
                             "evaluate beyond the nominal plan")


def _fmt_number(value: float) -> str:
    return f"{value:g}"


def make_scenarios(settings: RobustSettings) -> tuple[Scenario, ...]:
    """The scenarios of ``settings``: nominal, range (+, -), setup shifts, combined ones.

    Counts: 1 + 2 + 6 = 9 (6 directions), 1 + 2 + 14 = 17 (14 directions); ``combined`` adds
    2 x 6 (21 in all: every setup position, nominal included, with every range error) or
    2 x 14 (45); ``combined_only`` keeps the nominal scenario and the combinations:
    1 + 12 = 13 (6 directions) or 1 + 28 = 29 (14).
    """
    e, s = settings.range_error_pct, settings.setup_error_mm
    # Named by the stopping power's change, with the range's direction: "+3.5 %" of a range
    # error read as a longer range, while more stopping power makes it shorter.
    ranges = ([(+e, f"SPR +{_fmt_number(e)}% (short)"), (-e, f"SPR -{_fmt_number(e)}% (long)")]
              if e else [])
    shifts: list[tuple[tuple[float, float, float], str]] = []
    if s:
        for axis, label in enumerate("xyz"):
            for sign in (+1, -1):
                v = [0.0, 0.0, 0.0]
                v[axis] = sign * s
                shifts.append(((v[0], v[1], v[2]), f"setup {'+' if sign > 0 else '-'}{label} "
                                                    f"{_fmt_number(s)}mm"))
        if settings.setup_directions == 14:
            c = s / math.sqrt(3.0)
            for signs in itertools.product((+1, -1), repeat=3):
                label = "".join(f"{'+' if g > 0 else '-'}{a}" for g, a in zip(signs, "xyz",
                                                                               strict=True))
                shifts.append(((signs[0] * c, signs[1] * c, signs[2] * c),
                               f"setup {label} {_fmt_number(s)}mm"))
    out = [Scenario("nominal")]
    if not settings.combined_only:
        out += [Scenario(name, r) for r, name in ranges]
        out += [Scenario(name, 0.0, v) for v, name in shifts]
    if settings.combined:
        out += [Scenario(f"{rn} {sn}", r, v) for r, rn in ranges for v, sn in shifts]
    return tuple(out)


@dataclass(frozen=True, eq=False)
class ScenarioInputs:
    """What every scenario of one plan needs (picklable: Dask sends it to its workers).

    Attributes
    ----------
    setup : RecalcSetup
        The nominal RSP, grids, beams, spots and weights.
    model : RbeModel
        RBE model of the RBE-weighted dose.
    tables : DepthTables or None
        The model's depth tables on ``setup.machine`` (None for a model without sums), and
        those of the plan's further LEM I tissues per structure.
    n_fractions : int
        Fractions of the plan.
    groups : tuple of RbeGroup
        Dose-grid voxels of each tissue with the plan's LEM I tissues per structure (empty:
        the model everywhere).
    """

    setup: RecalcSetup
    model: RbeModel
    tables: DepthTables | None
    n_fractions: int
    groups: tuple[RbeGroup, ...] = ()


@dataclass(frozen=True, eq=False)
class ScenarioDose:
    """Total dose of the plan in one scenario, (nz, ny, nx) float32 on the dose grid."""

    scenario: Scenario
    physical_dose_gy: NDArray[np.float32]
    rbe_dose_gy_rbe: NDArray[np.float32]
    seconds: float


def scenario_inputs(setup: RecalcSetup, model: RbeModel, n_fractions: int) -> ScenarioInputs:
    """Bundle ``setup`` with the model's depth tables (and the plan's LEM I tissues per
    structure where ``model`` is the plan's own, as :func:`planning.compare.recalc.recalculate`
    does)."""
    tissues = dose_model_setup(setup.patient, setup.machine, model,
                               plan_structure_tissues(setup.plan, model), setup.dose_grid)
    return ScenarioInputs(setup, model, tissues.tables, n_fractions, tissues.groups)


def position_doses(inputs: ScenarioInputs, scenarios: Sequence[Scenario], *,
                   progress: ProgressCallback | None = None,
                   cancel: CancelToken | None = None) -> list[ScenarioDose]:
    """Forward doses of the plan in scenarios that share one setup shift.

    One planning engine traces the beams at the shifted position; each range error reuses its
    geometry with the WEPL scaled (:meth:`PlanningEngine.with_stopping_power_scaled`: WEPL is
    linear in the stopping power). The calculation region (the body) stays where the patient
    is; the beams move. Each scenario's ``seconds`` is its forward pass plus an equal share of
    the engine's set-up.
    """
    if not scenarios:
        return []
    shift = scenarios[0].shift_mm
    if any(sc.shift_mm != shift for sc in scenarios):
        raise InputError("position_doses: the scenarios must share one setup shift")
    t0 = time.perf_counter()
    s = inputs.setup
    beams = s.beams
    if any(shift):
        dx, dy, dz = shift
        beams = tuple(dataclasses.replace(
            b, isocenter_mm=(b.isocenter_mm[0] + dx, b.isocenter_mm[1] + dy,
                             b.isocenter_mm[2] + dz))
            for b in s.beams)
    engine = PlanningEngine(s.machine, s.rsp, s.ct_grid, s.dose_grid, beams, s.spot_maps,
                            s.settings, calc_mask=s.body_mask, cancel=cancel)
    setup_share = (time.perf_counter() - t0) / len(scenarios)
    out = []
    n = len(scenarios)
    for i, sc in enumerate(scenarios):
        t1 = time.perf_counter()
        scaled = (engine.with_stopping_power_scaled(1.0 + sc.range_error_pct / 100.0)
                  if sc.range_error_pct else engine)
        cubes = forward_cubes(scaled, s.weights_per_fraction, inputs.model, inputs.tables,
                              inputs.n_fractions, groups=inputs.groups,
                              progress=stage_progress(progress, i / n, (i + 1) / n),
                              cancel=cancel)
        del scaled  # one scaled geometry at a time (planning.robust_estimate)
        out.append(ScenarioDose(sc, cubes.physical_dose_gy, cubes.rbe_dose_gy_rbe,
                                time.perf_counter() - t1 + setup_share))
    return out


def scenario_dose(inputs: ScenarioInputs, scenario: Scenario, *,
                  progress: ProgressCallback | None = None,
                  cancel: CancelToken | None = None) -> ScenarioDose:
    """Forward dose of the plan in one ``scenario`` (see :func:`position_doses`)."""
    return position_doses(inputs, [scenario], progress=progress, cancel=cancel)[0]


def by_position(scenarios: Sequence[Scenario]) -> list[list[Scenario]]:
    """The scenarios grouped by setup shift, in order of first appearance."""
    groups: dict[tuple[float, float, float], list[Scenario]] = {}
    for sc in scenarios:
        groups.setdefault(sc.shift_mm, []).append(sc)
    return list(groups.values())


#: Runs scenarios of one plan: ``runner(inputs_factory, scenarios, progress, cancel)`` yields
#: a :class:`ScenarioDose` per scenario, in any order. ``inputs_factory()`` makes the
#: :class:`ScenarioInputs` (a runner on a cluster calls it on a worker: it must pickle).
ScenarioRunner = Callable[[Callable[[], ScenarioInputs], Sequence[Scenario],
                           ProgressCallback | None, CancelToken | None], Iterator[ScenarioDose]]


def local_runner(factory: Callable[[], ScenarioInputs], scenarios: Sequence[Scenario],
                 progress: ProgressCallback | None, cancel: CancelToken | None
                 ) -> Iterator[ScenarioDose]:
    """Scenarios in this process, one setup position after the other."""
    inputs = factory()
    n = max(len(scenarios), 1)
    done = 0
    for group in by_position(scenarios):
        if cancel is not None:
            cancel.raise_if_cancelled("robust evaluation")
        yield from position_doses(
            inputs, group, progress=stage_progress(progress, done / n, (done + len(group)) / n),
            cancel=cancel)
        done += len(group)


@dataclass(frozen=True, eq=False)
class RobustResult:
    """A robust evaluation.

    Attributes
    ----------
    nominal : PlanResult
        The nominal scenario (the recalculated plan: cubes, report); its report is the
        ``report.json`` of the evaluation (with the robust entries added).
    rbe_min_gy_rbe, rbe_max_gy_rbe : (nz, ny, nx) float32 arrays
        Voxel-wise minimum and maximum RBE-weighted dose over all scenarios, Gy(RBE).
    physical_min_gy, physical_max_gy : (nz, ny, nx) float32 arrays
        The same for the physical dose, Gy.
    scenarios : tuple of Scenario
        In the order of ``report["scenarios"]``.
    """

    nominal: PlanResult
    rbe_min_gy_rbe: NDArray[np.float32]
    rbe_max_gy_rbe: NDArray[np.float32]
    physical_min_gy: NDArray[np.float32]
    physical_max_gy: NDArray[np.float32]
    scenarios: tuple[Scenario, ...]

    @property
    def report(self) -> dict[str, Any]:
        return self.nominal.report


def scenarios_of_report(report: dict[str, Any]) -> tuple[Scenario, ...]:
    """The scenarios a robust evaluation's report lists (``report["scenarios"]``, each with
    ``name``, ``range_error_pct`` and ``shift_mm`` (x, y, z) LPS, mm), in its order.

    Raises
    ------
    KeyError, TypeError, ValueError, IndexError
        An entry lacks a field or has one of the wrong type.
    """
    out = []
    for sc in report["scenarios"]:
        shift = sc["shift_mm"]
        if len(shift) != 3:
            raise ValueError(f"scenario {sc['name']!r}: shift_mm needs 3 values, got {shift!r}")
        out.append(Scenario(str(sc["name"]), float(sc["range_error_pct"]),
                            (float(shift[0]), float(shift[1]), float(shift[2]))))
    return tuple(out)


def structure_metrics(rbe_dose: NDArray[np.floating], physical_dose: NDArray[np.floating],
                      samples_by_name: dict[str, DoseSamples],
                      labels: VoxelLabels | None = None) -> dict[str, dict[str, float]]:
    """Per structure: D98, D95, D50, D2, mean, maximum (Gy(RBE)) and mean physical dose (Gy).

    Parameters
    ----------
    rbe_dose, physical_dose : (nz, ny, nx) arrays on the dose grid
    samples_by_name : dict of str to DoseSamples
        Clinical DVH samples of each structure on that grid
        (:func:`planning.structure_dose.sampled_structures`).
    labels : VoxelLabels, optional
        With LEM I tissues per structure: each structure's RBE-weighted dose is read within
        its own tissue (as the plan's report reads it).
    """
    out = {}
    for name, samples in samples_by_name.items():
        within = None if labels is None else labels.within(name)
        d = samples.dose(rbe_dose, within)
        w = samples.volume_mm3
        d98, d95, d50, d2 = doses_at_volumes(d, (98, 95, 50, 2), w)
        out[name] = {"d98_gy_rbe": float(d98), "d95_gy_rbe": float(d95),
                     "d50_gy_rbe": float(d50), "d2_gy_rbe": float(d2),
                     "mean_gy_rbe": float(np.average(d, weights=w)),
                     "max_gy_rbe": samples.maximum(rbe_dose, d, within),
                     "mean_gy": float(np.average(samples.dose(physical_dose), weights=w))}
    return out


def _dose_at_volumes(rbe_dose: NDArray[np.floating], samples_by_name: dict[str, DoseSamples],
                     labels: VoxelLabels | None) -> dict[str, NDArray[np.float64]]:
    """Per structure, the dose (Gy(RBE)) that ``v`` % of it receives at least, v in 0..100
    (read within the structure's own tissue with ``labels``)."""
    return {name: doses_at_volumes(
                samples.dose(rbe_dose, None if labels is None else labels.within(name)),
                BAND_VOLUME_PERCENT, samples.volume_mm3)
            for name, samples in samples_by_name.items()}


def worst_case(scenarios: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per structure, each metric's minimum and maximum over the scenarios
    (``d95_gy_rbe_min``, ``d95_gy_rbe_max``, ...); which of the two is the worst case:
    :func:`planning.robust_tables.worst_extreme`."""
    names: list[str] = []
    for sc in scenarios:
        names += [n for n in sc["structures"] if n not in names]
    out: dict[str, dict[str, float]] = {}
    for name in names:
        rows = [sc["structures"][name] for sc in scenarios if name in sc["structures"]]
        entry = {}
        for _, key in SCENARIO_METRICS:
            values = [r[key] for r in rows]
            entry[f"{key}_min"] = float(min(values))
            entry[f"{key}_max"] = float(max(values))
        out[name] = entry
    return out


def evaluate_robustness(patient: Patient, plan: Plan, *, model: RbeModel,
                        model_source: str = "requested", settings: RobustSettings | None = None,
                        machine: Machine | None = None, grid_mm: float | DoseGrid = 2.5,
                        hlut_path: str | os.PathLike[str] | None = None, device: str = "auto",
                        cutoff_fraction: float = 0.99, source: dict[str, Any] | None = None,
                        runner: ScenarioRunner | None = None,
                        inputs_factory: Callable[[], ScenarioInputs] | None = None,
                        progress: ProgressCallback | None = None,
                        cancel: CancelToken | None = None) -> RobustResult:
    """The plan's dose in every scenario of ``settings``; metrics, bands, worst-case cubes.

    Parameters
    ----------
    patient, plan, model, model_source, machine, grid_mm, hlut_path, device, cutoff_fraction,
    source :
        As for :func:`planning.compare.recalc.recalculate` (the nominal scenario).
    settings : RobustSettings, optional
        The scenario set (default: 3.5 %, 3 mm, 6 directions, not combined).
    runner : ScenarioRunner, optional
        Where the non-nominal scenarios run (default :func:`local_runner`: here, after a
        check that they fit in the memory available, :func:`planning.robust_estimate.
        check_robust_memory`, before the nominal dose).
    inputs_factory : callable, optional
        Makes the :class:`ScenarioInputs` where the runner runs (a picklable one for a
        cluster, e.g. :func:`inputs_from_files`); default: from ``patient`` and ``plan`` here.
    progress, cancel : optional
        Progress callback ``(fraction, stage)`` and cancel token.

    Returns
    -------
    RobustResult
        ``result.report`` holds ``robust`` (settings, counts), ``scenarios`` (each with
        ``name``, ``range_error_pct``, ``shift_mm``, ``seconds`` and ``structures`` {roi:
        {d98_gy_rbe, d95_gy_rbe, d50_gy_rbe, d2_gy_rbe, mean_gy_rbe, max_gy_rbe, mean_gy}}),
        ``worst_case`` (per-structure minima and maxima over the scenarios, and the metrics of
        the voxel-wise minimum / maximum cubes) and ``dvh_bands_gy_rbe`` ({roi:
        {volume_percent, dose_min_gy_rbe, dose_max_gy_rbe, dose_nominal_gy_rbe}}: the dose
        that each volume percentage receives at least, envelope over the scenarios).
    """
    settings = settings or RobustSettings()
    if runner is None:
        _check_memory(patient, plan, model, settings, grid_mm)
    scenarios = make_scenarios(settings)
    others = [sc for sc in scenarios if not sc.is_nominal]
    n = len(scenarios)
    t_start = time.perf_counter()
    report(progress, 0.0, f"robust evaluation: {n} scenarios")
    dose_grid_spec = grid_mm
    if inputs_factory is None:
        def inputs_factory() -> ScenarioInputs:
            setup = prepare_recalc(patient, plan, machine=machine, grid_mm=dose_grid_spec,
                                   hlut_path=hlut_path, device=device,
                                   cutoff_fraction=cutoff_fraction)
            return scenario_inputs(setup, model, plan.prescription.n_fractions)

    run = runner or local_runner
    # A cluster runner starts its tasks as soon as it is called: the nominal scenario below
    # then runs here while the cluster works on the others.
    stream = run(inputs_factory, others, stage_progress(progress, 1.0 / n, 0.97), cancel)
    nominal = recalculate(patient, plan, model=model, model_source=model_source,
                          machine=machine, grid_mm=grid_mm, hlut_path=hlut_path, device=device,
                          cutoff_fraction=cutoff_fraction, source=source,
                          progress=stage_progress(progress, 0.0, 1.0 / n), cancel=cancel)
    samples_by_name = {s.name: d for s, d in sampled_structures(patient, nominal.dose_grid)}
    labels = nominal.tissue_labels
    rbe_min = nominal.rbe_dose_gy_rbe.copy()
    rbe_max = nominal.rbe_dose_gy_rbe.copy()
    phys_min = nominal.physical_dose_gy.copy()
    phys_max = nominal.physical_dose_gy.copy()
    nominal_seconds = float(nominal.report["timings_s"].get("forward_dose", 0.0))
    entries: dict[Scenario, dict[str, Any]] = {}
    volumes: dict[Scenario, dict[str, NDArray[np.float64]]] = {}

    def record(sc: Scenario, rbe: NDArray[np.float32], phys: NDArray[np.float32],
               seconds: float) -> None:
        entries[sc] = {"name": sc.name, "range_error_pct": sc.range_error_pct,
                       "shift_mm": [round(c, 6) for c in sc.shift_mm],
                       "seconds": round(seconds, 3),
                       "structures": structure_metrics(rbe, phys, samples_by_name, labels)}
        volumes[sc] = _dose_at_volumes(rbe, samples_by_name, labels)

    record(scenarios[0], nominal.rbe_dose_gy_rbe, nominal.physical_dose_gy, nominal_seconds)
    for done in stream:
        np.minimum(rbe_min, done.rbe_dose_gy_rbe, out=rbe_min)
        np.maximum(rbe_max, done.rbe_dose_gy_rbe, out=rbe_max)
        np.minimum(phys_min, done.physical_dose_gy, out=phys_min)
        np.maximum(phys_max, done.physical_dose_gy, out=phys_max)
        record(done.scenario, done.rbe_dose_gy_rbe, done.physical_dose_gy, done.seconds)
        log.info("scenario %s done in %.1f s", done.scenario.name, done.seconds)
    if cancel is not None:
        cancel.raise_if_cancelled("robust evaluation")
    rows = [entries[sc] for sc in scenarios]
    worst: dict[str, Any] = {"structures": worst_case(rows),
                             "voxelwise_min": structure_metrics(
                                 rbe_min, phys_min, samples_by_name, labels),
                             "voxelwise_max": structure_metrics(
                                 rbe_max, phys_max, samples_by_name, labels)}
    bands = {}
    for name in samples_by_name:
        stack = np.stack([volumes[sc][name] for sc in scenarios])
        bands[name] = {"volume_percent": list(BAND_VOLUME_PERCENT),
                       "dose_min_gy_rbe": [round(float(x), 4) for x in stack.min(axis=0)],
                       "dose_max_gy_rbe": [round(float(x), 4) for x in stack.max(axis=0)],
                       "dose_nominal_gy_rbe": [round(float(x), 4) for x in stack[0]]}
    rep = nominal.report
    rep["robust"] = {"range_error_pct": settings.range_error_pct,
                     "setup_error_mm": settings.setup_error_mm,
                     "setup_directions": settings.setup_directions,
                     "combined": settings.combined,
                     "combined_only": settings.combined_only, "n_scenarios": n,
                     "range_convention": "stopping power x (1 + range_error_pct / 100)",
                     "shift_convention": "beam isocentres moved by shift_mm (LPS): the dose "
                                         "moves by shift_mm over the patient"}
    rep["scenarios"] = rows
    rep["worst_case"] = worst
    rep["dvh_bands_gy_rbe"] = bands
    rep["timings_s"]["robust_total"] = time.perf_counter() - t_start
    report(progress, 1.0, "robust evaluation done")
    return RobustResult(nominal, rbe_min, rbe_max, phys_min, phys_max, scenarios)


def _check_memory(patient: Patient, plan: Plan, model: RbeModel, settings: RobustSettings,
                  grid_mm: float | DoseGrid) -> None:
    """Refuse scenarios that would not fit here (:mod:`planning.robust_estimate`); a dose grid
    spacing out of range is left to the nominal dose's refusal."""
    from planning.planner import body_voxels
    from planning.robust_estimate import check_robust_memory
    from planning.structure_dose import grid_of

    ct_grid = grid_of(patient.ct)
    if isinstance(grid_mm, DoseGrid):
        dose_grid = grid_mm
    elif math.isfinite(grid_mm) and MIN_GRID_MM <= grid_mm <= MAX_GRID_MM:
        dose_grid = DoseGrid.covering(ct_grid, float(grid_mm))
    else:
        return
    check_robust_memory(settings, dose_grid, body_voxels(patient, ct_grid, dose_grid),
                        len(plan.beams), len(model.quantity_names))


def inputs_from_files(ct_dir: str, rtplan: str, *, rbe: str | None, rbe_value: float | None,
                      tissue: str | None, machine_path: str | None, grid_mm: float,
                      hlut_path: str | None, device: str, cutoff_fraction: float,
                      ct_series_uid: str | None = None,
                      monitor_calibration: MonitorCalibration | None = None) -> ScenarioInputs:
    """:class:`ScenarioInputs` of an RT Ion Plan file on a CT folder (for a cluster worker:
    the arguments are paths and numbers, so a task made of them pickles small);
    ``ct_series_uid`` chooses the CT series of a folder that holds several,
    ``monitor_calibration`` converts a plan's metersets in MU."""
    from planning.compare.recalc import choose_model
    from planning.dicom import load_patient, load_rt_ion_plan
    from planning.machine import load_machine

    patient = load_patient(ct_dir, series_uid=ct_series_uid)
    plan = load_rt_ion_plan(rtplan, structure_set=patient.structure_set,
                            monitor_calibration=monitor_calibration).plan
    model, _ = choose_model(plan, rbe, tissue=tissue, rbe_value=rbe_value)
    machine = load_machine(machine_path) if machine_path else load_machine()
    setup = prepare_recalc(patient, plan, machine=machine, grid_mm=grid_mm, hlut_path=hlut_path,
                           device=device, cutoff_fraction=cutoff_fraction)
    return scenario_inputs(setup, model, plan.prescription.n_fractions)


def robust_files(ct: str | os.PathLike[str] | Patient, rtplan: str | os.PathLike[str] | Plan,
                 *, settings: RobustSettings | None = None, rbe: str | None = None,
                 rbe_value: float | None = None, tissue: str | None = None,
                 machine_path: str | os.PathLike[str] | None = None, grid_mm: float = 2.5,
                 hlut_path: str | os.PathLike[str] | None = None, device: str = "auto",
                 cutoff_fraction: float = 0.99, out_dir: str | os.PathLike[str] | None = None,
                 runner: ScenarioRunner | None = None,
                 progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None,
                 ct_series_uid: str | None = None,
                 monitor_calibration: MonitorCalibration | None = None) -> RobustResult:
    """Load (where given as paths), check and evaluate a plan; write the outputs to ``out_dir``.

    Like :func:`planning.compare.recalc.recalculate_files` for the nominal scenario. With a
    ``runner`` and paths for both ``ct`` and ``rtplan``, the runner's workers load the plan
    themselves (:func:`inputs_from_files`). ``ct_series_uid`` chooses the CT series of a
    ``ct`` folder that holds several; ``monitor_calibration`` converts a plan's metersets in
    MU to particles. The plan document in ``out_dir`` is named after the plan's RT Plan
    Label.
    """
    from planning.compare.recalc import choose_model, load_patient_and_plan
    from planning.machine import load_machine

    machine = load_machine(machine_path) if machine_path else load_machine()
    patient, plan, source = load_patient_and_plan(
        ct, rtplan, progress=stage_progress(progress, 0.0, 0.67), cancel=cancel,
        ct_series_uid=ct_series_uid, monitor_calibration=monitor_calibration, machine=machine)
    model, model_source = choose_model(plan, rbe, tissue=tissue, rbe_value=rbe_value)
    factory = None
    if runner is not None and not isinstance(ct, Patient) and not isinstance(rtplan, Plan):
        factory = functools.partial(
            inputs_from_files, os.fspath(ct), os.fspath(rtplan), rbe=rbe, rbe_value=rbe_value,
            tissue=tissue, machine_path=None if machine_path is None else os.fspath(machine_path),
            grid_mm=grid_mm, hlut_path=None if hlut_path is None else os.fspath(hlut_path),
            device=device, cutoff_fraction=cutoff_fraction, ct_series_uid=ct_series_uid,
            monitor_calibration=monitor_calibration)
    result = evaluate_robustness(patient, plan, model=model, model_source=model_source,
                                 settings=settings, machine=machine, grid_mm=grid_mm,
                                 hlut_path=hlut_path, device=device,
                                 cutoff_fraction=cutoff_fraction, source=source, runner=runner,
                                 inputs_factory=factory,
                                 progress=stage_progress(progress, 0.02, 1.0), cancel=cancel)
    if out_dir is not None:
        write_robust_outputs(result, out_dir, machine=machine, plan_name=plan.label)
    return result


def write_robust_outputs(result: RobustResult, out_dir: str | os.PathLike[str], *,
                         machine: Machine | None = None,
                         plan_name: str | None = None,
                         created: datetime.datetime | None = None) -> list[Path]:
    """Write the nominal plan's files (RTPLAN.dcm, RTDOSE_PHYSICAL.dcm, RTDOSE_RBE.dcm),
    RTDOSE_RBE_MIN.dcm, RTDOSE_RBE_MAX.dcm, report.html and, last, report.json into
    ``out_dir``; each file atomically. The worst-case doses are labelled with the nominal
    model, and their Dose Comment and Series Description say which envelope they are after
    the model's description (e.g. ``"... minimum over 9 scenarios"``). Under the physical
    model the envelopes are physical doses: RTDOSE_PHYSICAL_MIN.dcm and
    RTDOSE_PHYSICAL_MAX.dcm, Dose Type PHYSICAL, and no RTDOSE_RBE.dcm
    (:func:`planning.planner.write_plan_outputs`). With ``plan_name`` the plan document
    (PDF) is written too, as by :func:`planning.planner.write_plan_outputs`, with its
    robustness section (settings, DVH bands, per-structure scenario tables:
    :mod:`planning.document`)."""

    from planning.atomic import atomic_write_text
    from planning.dicom import export_rt_dose
    from planning.planner import write_plan_outputs
    from planning.robust_report import render_robust_html

    out = Path(out_dir)
    nominal = result.nominal
    rep = nominal.report
    # write_plan_outputs writes report.json; it is rewritten below with every file named.
    files = write_plan_outputs(nominal, out, machine=machine, plan_name=plan_name,
                               created=created)
    plan_uid = str(rep["plan"]["rt_plan_sop_instance_uid"])  # of the RTPLAN.dcm just written
    extra = []
    # Under the physical model the envelopes are physical doses (Gy), and say so.
    kind = "PHYSICAL" if isinstance(nominal.model, PhysicalDose) else "RBE"
    n = len(result.scenarios)
    for cube, name, which in ((result.rbe_min_gy_rbe, f"RTDOSE_{kind}_MIN.dcm", "minimum"),
                              (result.rbe_max_gy_rbe, f"RTDOSE_{kind}_MAX.dcm", "maximum")):
        export_rt_dose(cube, nominal.dose_grid, nominal.patient, out / name,
                       dose_type="PHYSICAL" if kind == "PHYSICAL" else "EFFECTIVE",
                       model=nominal.model, label_suffix=envelope_label(which, n),
                       structure_tissues=nominal.structure_tissues, referenced_plan_uid=plan_uid)
        extra.append(out / name)
    html = out / "report.html"
    atomic_write_text(html, render_robust_html(rep))
    names = [f.name for f in files if f.name != "report.json"]
    rep["files"] = [*names, *(f.name for f in extra), html.name, "report.json"]
    atomic_write_text(out / "report.json", report_json_text(rep))
    return [*files, *extra, html]


def envelope_label(which: str, n_scenarios: int) -> str:
    """What an envelope dose's Dose Comment and Series Description say after the model, e.g.
    ``"minimum over 9 scenarios"`` (``which``: ``"minimum"`` or ``"maximum"``)."""
    return f"{which} over {n_scenarios} scenario{'s' if n_scenarios != 1 else ''}"
