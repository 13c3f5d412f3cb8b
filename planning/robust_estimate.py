"""Memory a robust evaluation will take, checked before its first scenario.

A robust evaluation (:mod:`planning.robust`) computes the nominal dose and then, one setup
position after the other, a forward dose per scenario; what it holds at once does not grow with
the number of scenarios but with the dose grid:

- the nominal scenario's cubes (physical and RBE-weighted dose, LETd, RBE and one physical dose
  per beam, float32) and the four envelope cubes (minimum and maximum of both doses);
- one setup position's engine (:func:`planning.engine.memory.engine_bytes` of the voxels the
  dose is computed in) and, with range scenarios, its geometry once more with the WEPL scaled
  (:meth:`planning.engine.PlanningEngine.with_stopping_power_scaled`);
- the position's scenario doses (physical and RBE-weighted, float32) until they are folded
  into the envelopes, and one forward pass's float64 working cubes (the dose, LET-weighted
  dose, RBE-weighted dose, LETd, RBE, one per beam and one per model sum).

:func:`check_robust_memory` refuses an evaluation that would not fit, naming the dose grid, the
number of scenarios, what it would need and what is available, before the nominal dose;
:func:`check_robust_memory_after_plan` does so for a plan still to be made (``ionplan plan
--robust``), before the plan, with the plan's own memory beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from planning.dose_grid import DoseGrid
from planning.engine.memory import (
    VOXEL_BYTES_PER_BEAM,
    check_host_memory,
    engine_bytes,
    size_text,
)
from planning.plan_estimate import (
    RESULT_CUBES,
    PlanEstimate,
    forward_pass_bytes,
    matrix_bytes,
)
from planning.robust import RobustSettings, Scenario, by_position, make_scenarios

#: float32 envelope cubes: minimum and maximum of the physical and the RBE-weighted dose.
ENVELOPE_CUBES = 4

#: float32 cubes a scenario dose keeps until it is folded into the envelopes.
SCENARIO_CUBES = 2


def robust_memory_bytes(n_voxels: int, n_rows: int, n_beams: int, n_model: int,
                        scenarios: Sequence[Scenario]) -> float:
    """Peak bytes a robust evaluation allocates (see the module docstring).

    Parameters
    ----------
    n_voxels : int
        Voxels of the dose grid (every cube's size).
    n_rows : int
        Dose-grid voxels the dose is computed in (the body).
    n_beams : int
        Beams of the plan.
    n_model : int
        Per-particle model sums of the RBE model (``len(model.quantity_names)``).
    scenarios : sequence of Scenario
        The evaluation's scenarios, nominal included.
    """
    others = [sc for sc in scenarios if not sc.is_nominal]
    per_position = max((len(group) for group in by_position(others)), default=0)
    scaled = any(sc.range_error_pct for sc in others)
    cubes = 4.0 * n_voxels * (RESULT_CUBES + n_beams + ENVELOPE_CUBES
                              + SCENARIO_CUBES * per_position)
    forward = forward_pass_bytes(n_voxels, n_beams, n_model)
    engine = (engine_bytes(n_rows, n_beams, 2 * n_model)
              + (VOXEL_BYTES_PER_BEAM * n_rows * n_beams if scaled else 0))
    return cubes + forward + engine


def check_robust_memory(settings: RobustSettings, dose_grid: DoseGrid, n_rows: int,
                        n_beams: int, n_model: int, *, beside_bytes: float = 0.0,
                        beside: str = "") -> None:
    """Refuse a robust evaluation that would not fit in the memory available now.

    ``beside_bytes`` is memory the evaluation needs on top of its own that is not taken yet
    (the plan it evaluates, where that plan is still to be made); ``beside`` says what it is,
    for the message (e.g. ``" beside the plan"``).

    Raises
    ------
    PlanningError
        Naming the dose grid, the number of scenarios, what they would need and what is
        available (:func:`planning.engine.memory.check_host_memory`).
    """
    scenarios = make_scenarios(settings)
    need = robust_memory_bytes(dose_grid.n_voxels, n_rows, n_beams, n_model, scenarios)
    spacing = ", ".join(f"{v:g}" for v in dose_grid.spacing_mm)
    check_host_memory(
        need + beside_bytes,
        f"the robust evaluation's {len(scenarios)} scenarios on a dose grid of {spacing} mm "
        f"({dose_grid.n_voxels:,} voxels, about {n_rows:,} in the body) for {n_beams} "
        f"beam{'s' if n_beams != 1 else ''}{beside}",
        "choose a coarser dose grid (the scenarios are computed one setup position after "
        "the other, so fewer of them save time, not memory)")


def check_robust_memory_after_plan(estimate: PlanEstimate, settings: RobustSettings, *,
                                   keep_influence: bool) -> None:
    """Refuse the robust evaluation of the plan of ``estimate`` before that plan is made.

    The plan stays in memory while its scenarios run: its estimated peak
    (:attr:`planning.plan_estimate.PlanEstimate.memory_bytes`: the process, its engines, WEPL
    cubes and cubes) less the optimizer's matrices, which it frees before its final dose unless
    ``keep_influence`` (re-optimizations follow). The dose is computed in the plan's final
    dose voxels (body and structures).

    Raises
    ------
    PlanningError
        As :func:`check_robust_memory`.
    """
    work = estimate.work
    plan_bytes = estimate.memory_bytes - (0.0 if keep_influence else matrix_bytes(work))
    kept = " and its kept influence" if keep_influence else ""
    check_robust_memory(settings, estimate.dose_grid, math.ceil(work.dose_voxels),
                        work.n_beams, work.n_model, beside_bytes=plan_bytes,
                        beside=f", beside the plan itself{kept} (about "
                               f"{size_text(plan_bytes)})")
