"""The pre-flight estimate of a plan: its work, memory and time, before any long step.

A physicist who types a fine dose grid or spot spacing learns before the plan runs what it
will cost: :func:`estimate_plan` counts the plan's work (:mod:`planning.plan_work`, a second
or two), turns it into seconds with the measured rates of :mod:`planning.throughput` and into
bytes as the engine's memory checks do (:mod:`planning.engine.memory`), and says whether the
plan is long (:data:`LONG_PLAN_S`) or will not fit in memory. The command line asks for
``--accept-long`` and the GUI for a confirmation before such a plan (README, "Long plans").
A re-optimization's memory beside the kept plan is checked before it runs
(:func:`check_reoptimization_memory`; before the plan for ``ionplan plan --reoptimize``:
:func:`check_reoptimization_memory_after_plan`).

The time is a range: the likely time on a quiet machine of the measured kind (the CPU engine),
from :data:`LOW_FACTOR` to :data:`HIGH_FACTOR` times it, or to :data:`BUSY_MARGIN` times
the machine's load now (:func:`load_factor`: the processes waiting for a core, per core)
where that is more. The bounds cover what the estimate cannot know: the optimizer stopping
early or running more settling passes, the counts' error (within 1.5x, see
:mod:`planning.plan_work`), the rates' spread between runs (up to 1.5x within an hour,
docs/benchmarks.md) and other work on the machine (docs/benchmarks.md, "Pre-flight
estimate": at 3.5-4.7 processes per core the bench plans took 3.7-4.2 times the likely time,
and a short one whose optimizer waited for OpenBLAS's threads 7.9 times).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from planning.dose_grid import DoseGrid
from planning.engine.dose_engine import cpu_threads, resolve_device
from planning.engine.memory import (
    HOST_MEMORY_FRACTION,
    available_host_bytes,
    check_host_memory,
    engine_bytes,
    size_text,
)
from planning.engine.wepl_cubes import WeplCubes
from planning.machine import Machine
from planning.optimization_grid import target_check_grid
from planning.plan_work import PlanWork, count_plan_work
from planning.planner import PlanBasis, PlanRequest, PreparedPlan, plan_basis
from planning.progress import CancelToken, ProgressCallback, report
from planning.structure_dose import grid_of
from planning.throughput import plan_seconds

#: A plan whose likely time exceeds this (seconds) is long: it needs a confirmation.
LONG_PLAN_S = 600.0

#: The time range: these factors times the likely time.
LOW_FACTOR = 0.6
HIGH_FACTOR = 2.5

#: On a busy machine the upper end is this times the :func:`load_factor` times the likely
#: time where that is more (the bench plans took 3.7-4.2 times the likely time at load
#: factors of 3.5-4.7, docs/benchmarks.md).
BUSY_MARGIN = 1.25

#: A :func:`load_factor` from which the estimate says that the machine is busy.
BUSY_FACTOR = 1.5

#: Bytes of the process besides the plan's arrays (Python, NumPy, SciPy, the patient's CT,
#: stopping power and masks, the kernels' chunks): bench/bench_estimate.py's peaks less the
#: arrays counted (docs/benchmarks.md, "Pre-flight estimate").
PROCESS_BYTES = 0.45 * 2**30

#: Whole-plan float32 cubes of a plan on the dose grid besides one per beam: physical and
#: RBE-weighted dose, LETd and RBE (:class:`planning.planner.PlanResult`).
RESULT_CUBES = 4

#: float32 cubes of the mMKM / LEM I exchange view (:class:`planning.exchange.ExchangeView`).
EXCHANGE_CUBES = 4

#: float64 working cubes of a forward pass on the whole dose grid besides one per beam and
#: per model sum (:func:`planning.engine.forward_dose.cubes_from_sums`: the dose,
#: LET-weighted dose, RBE-weighted dose, LETd and RBE).
FORWARD_CUBES = 5

#: Bytes per entry of the optimizer's host matrices besides its model sums: the dose
#: (float32) and the column index (int32); each model sum adds 4.
MATRIX_BYTES_PER_ENTRY = 8


@dataclass(frozen=True)
class PlanEstimate:
    """A plan's estimated work, memory and time (see the module docstring).

    Attributes
    ----------
    work : PlanWork
        The counts.
    seconds_by_part : tuple of (str, float)
        Likely seconds of each part of the plan (:func:`planning.throughput.plan_seconds`).
    threads : int
        CPU threads the engine uses (the time is scaled to them).
    device : {"cpu", "gpu"}
        Where the plan would run; the time is the CPU engine's either way.
    memory_bytes : float
        Estimated peak memory of the plan's process.
    available_bytes : int or None
        Memory available now (None where it cannot be read).
    dose_grid_mm, spot_spacing_mm : float
        The plan's dose grid and spot spacing (what the estimate is of).
    dose_grid : DoseGrid
        The dose grid of that spacing (for the checks of what follows the plan:
        :func:`planning.robust_estimate.check_robust_memory_after_plan`,
        :func:`check_reoptimization_memory_after_plan`).
    load_factor : float
        The machine's :func:`load_factor` when the estimate was made (1: idle).
    """

    work: PlanWork
    seconds_by_part: tuple[tuple[str, float], ...]
    threads: int
    device: str
    memory_bytes: float
    available_bytes: int | None
    dose_grid_mm: float
    spot_spacing_mm: float
    dose_grid: DoseGrid
    load_factor: float = 1.0

    @property
    def likely_s(self) -> float:
        return sum(s for _, s in self.seconds_by_part)

    @property
    def low_s(self) -> float:
        return LOW_FACTOR * self.likely_s

    @property
    def high_s(self) -> float:
        return max(HIGH_FACTOR, BUSY_MARGIN * self.load_factor) * self.likely_s

    @property
    def is_long(self) -> bool:
        """Whether the likely time exceeds :data:`LONG_PLAN_S`."""
        return self.likely_s > LONG_PLAN_S

    @property
    def exceeds_memory(self) -> bool:
        """Whether the estimated memory exceeds what the engine's checks allow (the plan
        would stop with a memory error at its largest step)."""
        return (self.available_bytes is not None
                and self.memory_bytes > HOST_MEMORY_FRACTION * self.available_bytes)

    @property
    def needs_confirmation(self) -> bool:
        return self.is_long or self.exceeds_memory

    def time_text(self) -> str:
        """``"about 1-3 min (CPU, 2 threads)"``."""
        where = f"CPU, {self.threads} thread{'s' if self.threads > 1 else ''}"
        if self.load_factor >= BUSY_FACTOR:
            where += f"; the machine is busy: {self.load_factor:.1f} processes per core"
        if self.device == "gpu":
            where += "; the GPU engine is faster"
        return f"about {duration_range(self.low_s, self.high_s)} ({where})"

    def memory_text(self) -> str:
        """``"memory about 340 MiB (21.3 GiB available)"``, in the units of the engine's
        memory refusals (:func:`planning.engine.memory.size_text`)."""
        text = f"memory about {size_text(self.memory_bytes)}"
        if self.available_bytes is not None:
            text += f" ({size_text(self.available_bytes)} available)"
        return text

    def work_text(self) -> str:
        """Spots, optimizer points and matrix entries (two significant figures: the layers
        are counted exactly)."""
        w = self.work
        return (f"{_count(w.n_spots)} spots in {w.n_layers} layers, {_count(w.opt_points)} "
                f"optimizer points, {_count(w.entries)} matrix entries "
                f"(\u00b1{max(1, round(100 * w.entries_error))} % sampling error)")

    def summary(self) -> str:
        """One line: what the estimate is of, the work, memory and time."""
        return (f"Estimate for a {self.dose_grid_mm:g} mm dose grid and {self.spot_spacing_mm:g} "
                f"mm spots: {self.work_text()}; {self.memory_text()}; {self.time_text()}")

    def concern(self) -> str | None:
        """Why the plan needs a confirmation, or None."""
        reasons = []
        if self.is_long:
            reasons.append(f"it would take {duration_range(self.low_s, self.high_s)} "
                           f"(likely {_duration(self.likely_s)}; long means over "
                           f"{_duration(LONG_PLAN_S)})")
        if self.exceeds_memory:
            assert self.available_bytes is not None
            reasons.append(f"it would need about {size_text(self.memory_bytes)} of memory, "
                           f"more than the {HOST_MEMORY_FRACTION:.0%} of the "
                           f"{size_text(self.available_bytes)} available that a plan may "
                           "use, so it would likely stop with a memory error")
        if not reasons:
            return None
        return ("This plan is large: " + "; and ".join(reasons) + ". A coarser dose grid or "
                "spot spacing makes it faster and smaller.")


def estimate_plan(request: PlanRequest, *, machine: Machine | None = None,
                  progress: ProgressCallback | None = None,
                  cancel: CancelToken | None = None) -> PlanEstimate:
    """Estimate the plan of ``request`` (see the module docstring); a second or two.

    Raises
    ------
    InputError, PlanningError, DicomImportError, DeviceError
        Where the plan itself would refuse early (bad request, unreachable target).
    OperationCancelled
        When ``cancel`` is set.
    """
    report(progress, 0.0, "estimating the plan")
    basis = plan_basis(request, machine=machine, cancel=cancel)
    device = resolve_device(request.device)
    work = count_plan_work(request, basis, cancel=cancel)
    threads = cpu_threads(basis.settings.n_threads)
    final_passes = 3 if request.exchange else 1
    parts = plan_seconds(work, threads, final_passes=final_passes)
    report(progress, 1.0, "estimated")
    return PlanEstimate(work, tuple(parts.items()), threads, device, memory_bytes(work, basis),
                        available_host_bytes(), request.dose_grid_mm, request.spot_spacing_mm,
                        basis.dose_grid, load_factor())


def memory_bytes(work: PlanWork, basis: PlanBasis) -> float:
    """The plan's peak memory: the process's base, the kept WEPL cubes, the optimizer's
    matrices and engine, and the final dose's engine (the dose grid's and the refinement's
    points, a forward pass's sums: as ``planner._check_grid_memory`` counts them) and cubes.
    A plan the GUI makes keeps its matrices (for a re-optimization) while its final dose is
    computed, so the parts add up."""
    cubes = WeplCubes(basis.rsp, basis.ct_grid, basis.settings.wepl_step_mm,
                      lateral_step_mm=basis.settings.wepl_lateral_step_mm)
    matrices = matrix_bytes(work)
    opt_engine = 0 if work.grids_shared else engine_bytes(math.ceil(work.opt_engine_points),
                                                           work.n_beams, 0)
    dose_engine = engine_bytes(math.ceil(work.dose_voxels + work.check_points), work.n_beams,
                               2 * work.n_model)
    result_cubes = 4.0 * basis.dose_grid.n_voxels * (RESULT_CUBES + work.n_beams)
    return (PROCESS_BYTES + cubes.kept_bytes([b.frame for b in basis.beams]) + matrices
            + opt_engine + dose_engine + result_cubes)


def matrix_bytes(work: PlanWork) -> float:
    """The optimizer's host matrices: :data:`MATRIX_BYTES_PER_ENTRY` per entry and 4 more per
    model sum."""
    return work.entries * (MATRIX_BYTES_PER_ENTRY + 4 * work.n_model)


def forward_pass_bytes(n_voxels: int, n_beams: int, n_model: int) -> float:
    """One forward pass's float64 working cubes on the ``n_voxels`` of the dose grid:
    :data:`FORWARD_CUBES` and one per beam and per model sum."""
    return 8.0 * n_voxels * (FORWARD_CUBES + n_beams + n_model)


def reoptimization_bytes(n_voxels: int, n_beams: int, n_model: int, n_check: int, *,
                         exchange: bool, dose_rows: int = 0) -> float:
    """Bytes a re-optimization allocates beside what the plan keeps (its matrices, engines and
    WEPL cubes).

    The new plan's cubes (:data:`RESULT_CUBES` and one per beam on the ``n_voxels`` of the
    dose grid, and the exchange view's with ``exchange``), one forward pass's float64 working
    cubes, the refinement's engine over ``n_check`` target points on its check grid (made
    anew each time; 0 where the check grid is the dose grid) and, where the plan no longer
    keeps it, the dose grid's engine over ``dose_rows``. Matrices rebuilt for points they
    lack are checked where they are made (:mod:`planning.engine.cpu_influence`)."""
    cubes = RESULT_CUBES + n_beams + (EXCHANGE_CUBES if exchange else 0)
    return (4.0 * n_voxels * cubes + forward_pass_bytes(n_voxels, n_beams, n_model)
            + engine_bytes(n_check + dose_rows, n_beams, 2 * n_model))


def check_reoptimization_memory(prepared: PreparedPlan, *, exchange: bool | None = None
                                ) -> None:
    """Refuse a re-optimization of ``prepared`` whose new plan would not fit in the memory
    available now, beside the kept plan (:func:`reoptimization_bytes`; ``exchange`` None: as
    the plan was made; the target's points on the check grid counted by volume).

    Raises
    ------
    PlanningError
        Naming the dose grid, what the new plan would need and what is available
        (:func:`planning.engine.memory.check_host_memory`).
    """
    view = prepared.request.exchange if exchange is None else exchange
    grid = prepared.dose_grid
    check = target_check_grid(grid)
    n_check = 0
    if check != grid:
        assert prepared.patient.structure_set is not None
        target = prepared.patient.structure_set.get(prepared.target).mask.to_dense()
        ct_voxel_mm3 = math.prod(grid_of(prepared.patient.ct).spacing_mm)
        n_check = math.ceil(np.count_nonzero(target) * ct_voxel_mm3
                            / math.prod(check.spacing_mm))
    dose_rows = 0
    if prepared.engine is None:
        region = prepared.engine_region
        dose_rows = grid.n_voxels if region is None else int(np.count_nonzero(region))
    n_beams, n_model = len(prepared.beams), len(prepared.model.quantity_names)
    check_host_memory(reoptimization_bytes(grid.n_voxels, n_beams, n_model, n_check,
                                           exchange=view, dose_rows=dose_rows),
                      _reoptimizing(grid, n_beams, view, "beside the kept plan"),
                      "close other programs, or make a new plan on a coarser dose grid")


def check_reoptimization_memory_after_plan(estimate: PlanEstimate, *, exchange: bool) -> None:
    """Refuse the re-optimizations of the plan of ``estimate`` before that plan is made
    (``ionplan plan --reoptimize``): each needs :func:`reoptimization_bytes` beside the plan,
    which keeps its matrices for them (its estimated peak, ``estimate.memory_bytes``).

    Raises
    ------
    PlanningError
        As :func:`check_reoptimization_memory`.
    """
    work, grid = estimate.work, estimate.dose_grid
    n_check = 0 if target_check_grid(grid) == grid else math.ceil(work.check_points)
    check_host_memory(estimate.memory_bytes + reoptimization_bytes(
                          grid.n_voxels, work.n_beams, work.n_model, n_check, exchange=exchange),
                      _reoptimizing(grid, work.n_beams, exchange, "beside the plan itself and "
                                    f"its kept influence (about "
                                    f"{size_text(estimate.memory_bytes)})"),
                      "make the plan on a coarser dose grid or spot spacing, or leave out "
                      "--reoptimize and plan each configuration on its own")


def _reoptimizing(grid: DoseGrid, n_beams: int, exchange: bool, beside: str) -> str:
    """What a re-optimization's refusal is of, e.g. ``"re-optimizing the plan on its dose grid
    of 2, 2, 2 mm (1,234,567 voxels, 2 beams) beside the kept plan"``."""
    spacing = ", ".join(f"{v:g}" for v in grid.spacing_mm)
    return (f"re-optimizing the plan on its dose grid of {spacing} mm ({grid.n_voxels:,} "
            f"voxels, {n_beams} beam{'s' if n_beams != 1 else ''}"
            f"{', with the exchange view' if exchange else ''}) {beside}")


def load_factor() -> float:
    """How many times longer work takes now than on an idle machine, at most: the processes
    waiting for a core per core (the 1-minute load average over the cores), at least 1; 1
    where the load cannot be read (Windows)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 1.0
    return max(1.0, load / (os.cpu_count() or 1))


def duration_range(low_s: float, high_s: float) -> str:
    """``"1-3 min"``, ``"40 s to 2 min"``, ``"2.5-8 h"``: a span of seconds in the unit of
    each end (written once where both share it)."""
    lo, hi = _duration(low_s), _duration(high_s)
    lo_value, lo_unit = lo.rsplit(" ", 1)
    hi_value, hi_unit = hi.rsplit(" ", 1)
    if lo_unit == hi_unit:
        return f"{lo_value}-{hi_value} {hi_unit}" if lo_value != hi_value else hi
    return f"{lo} to {hi}"


def _duration(seconds: float) -> str:
    """Seconds in the unit a person reads them in: s below a minute, min below 90 min, else h
    (two significant figures at most)."""
    if seconds < 59.5:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 10 else f"{round(hours)} h"


def _count(n: float) -> str:
    """An estimated count to two significant figures: ``"950"``, ``"2,500"``,
    ``"280,000"``, ``"4.8 M"``, ``"14 M"``, ``"6.4 G"``."""
    if n <= 0:
        return "0"
    rounded = round(n, 1 - math.floor(math.log10(n)))
    for scale, unit in ((1e9, "G"), (1e6, "M")):
        if rounded >= scale:
            return f"{rounded / scale:.2g} {unit}"
    return f"{rounded:,.0f}"
