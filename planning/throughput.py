"""How fast the CPU engine works through each kind of plan work: the constants of the
pre-flight time estimate (:mod:`planning.plan_estimate`), in one place.

Each :class:`Rate` is the seconds one unit of work takes on one thread of the development
machine (2 cores, the compiled kernels) and the share of each further thread that the work
uses. The rates come from two kinds of measurement (docs/benchmarks.md, "Pre-flight
estimate", 2026-12-07):

- the compiled kernels' and the set-ups' rates from the CPU time of each step (a profile on
  the process's CPU clock, one engine thread: ``python bench/bench_estimate.py --profile``)
  of the TG-119 and demo plans of ``bench/bench_estimate.py``, so that other processes' load
  does not count;
- the optimizer's products from the microbenchmarks of the tenth and twelfth sessions
  (docs/benchmarks.md) and their scaling from 1 to 2 threads (``bench/bench_threads.py``):
  the profile's CPU clock counts the waits of the linear-algebra library's threads on a busy
  machine, which inflated the objectives' small products several times.

Parallel efficiencies: the kernels' from ``bench/bench_threads.py`` (influence 1.98x, forward
1.89x, products 1.51x from 1 to 2 threads); the NumPy and Python steps are taken as one
thread. More threads than 2 are an extrapolation, another processor another speed: the
estimate states a range (:mod:`planning.plan_estimate`).
"""

from __future__ import annotations

from dataclasses import dataclass

from planning.plan_work import PlanWork


@dataclass(frozen=True)
class Rate:
    """Seconds per unit of one kind of work on one thread, and the share of each further
    thread that the work uses (1: it scales with the threads, 0: it runs on one)."""

    seconds: float
    parallel_efficiency: float

    def at(self, threads: int) -> float:
        """Seconds per unit on ``threads`` threads."""
        return self.seconds / (1.0 + self.parallel_efficiency * (max(threads, 1) - 1))


#: A WEPL cube's sample (the RSP resampled along a ray and summed, the compiled loop):
#: 1.3e-8 s on both cases, 1.5-1.7e-8 s in a busier hour.
WEPL_CUBE_S_PER_SAMPLE = Rate(1.4e-8, 0.9)

#: An engine's set-up per point and beam (WEPL from the cube, beam's-eye coordinates, the
#: points sorted by depth): 5.0e-7 s (demo) and 6.0e-7 s (TG-119).
ENGINE_S_PER_POINT_BEAM = Rate(5.5e-7, 0.0)

#: The optimization region's sampling per point of the optimizer's engine (structures and
#: rings on the optimization grid): demo 0.6 s for 280,000 points.
REGION_S_PER_POINT = Rate(2.0e-6, 0.0)

#: The optimizer's matrices per entry (count and fill passes) and per row (the rows' split
#: and layout): fitted to TG-119 (0.76-0.93 s, 10.6 M entries, 30,000 rows) and the demo
#: (0.83-1.20 s, 4.8 M entries, 280,000 rows).
BUILD_S_PER_ENTRY = Rate(7.8e-8, 0.9)
BUILD_S_PER_ROW = Rate(3.0e-6, 0.0)

#: One evaluation of the objective: the joint products of the dose and model-sum matrices,
#: forward and transposed, per entry (twelfth session: 7.3 + 5.3 ms on 2 threads for 9.58 M
#: entries, 1.51x from 1 to 2 threads; thirteenth: 13.8 ms an evaluation with L-BFGS-B's
#: step for 10.8 M entries); each objective's penalty per point it reads (NumPy gathers, a
#: dot product, a scatter) and L-BFGS-B's own step. The profile gives 3.5-4.1e-9 s an
#: entry, 2.5-10e-8 s a point and 6-7 ms a step on a busy machine: the products share its
#: memory bandwidth, the others wait for the linear-algebra library's threads.
PRODUCTS_S_PER_ENTRY = Rate(2.0e-9, 0.5)
PENALTY_S_PER_POINT = Rate(1.5e-8, 0.0)
EVALUATION_S = Rate(1.0e-3, 0.0)

#: Evaluations per iteration of L-BFGS-B: 211 and 214 for the 199 iterations of the TG-119 and
#: demo plans.
EVALUATIONS_PER_ITERATION = 1.07

#: Iterations of a plan per main-pass iteration of its settings
#: (:attr:`planning.optimization.OptimizerSettings.max_iterations`, 100 by default): 199 on
#: every case of bench/bench_plan.py, each pass to its limit (main 100 and minimum-weight 33,
#: the refinement's 33 + 11, one settling pass 16 + 6); three settling passes make 2.43.
ITERATIONS_PER_MAIN = 1.99

#: A forward pass (the dose corrections, the refinement's check, the final dose) per
#: (point, spot) pair at the plan's cut-off and per point and beam (the points without dose
#: cost too): fitted to the TG-119 and demo plans' four corrections (2.28 s and 2.10 s).
FORWARD_S_PER_PAIR = Rate(5.9e-9, 0.9)
FORWARD_S_PER_POINT_BEAM = Rate(4.4e-7, 0.9)

#: Forward passes over the optimizer's points (its dose corrections: at the start, after the
#: first pass and the refinement's, one settling pass) and over the target's check grid.
CORRECTION_PASSES = 4
CHECK_PASSES = 1

#: Share of the spots with weight after optimization, which the check and final passes
#: evaluate (docs/benchmarks.md: 77 % on TG-119, 63 % on the demo head).
WEIGHTED_SPOT_SHARE = 0.7

#: The final cubes per dose-grid voxel (physical, RBE-weighted, LETd, RBE, each beam's):
#: TG-119 0.76 s beyond its forward pass for 847,000 voxels.
CUBES_S_PER_VOXEL = Rate(9.0e-7, 0.0)

#: The report's DVHs and metrics per CT voxel of the structures (their samples): TG-119
#: 0.54 s for 1.05 M voxels, demo 1.14 s for 1.88 M.
REPORT_S_PER_STRUCTURE_VOXEL = Rate(6.0e-7, 0.0)

#: What every plan takes besides (the RBE model's depth tables, 0.3 s, the spots' placement
#: beyond the cubes, the optimizer's set-up), seconds.
FIXED_S = 0.8


def plan_seconds(work: PlanWork, threads: int, *, final_passes: int = 1) -> dict[str, float]:
    """Likely seconds of each part of a plan of ``work`` on the CPU engine with ``threads``
    threads on a quiet machine; ``final_passes`` forward passes over the dose grid (3 with the
    exchange view's two models).

    Returns
    -------
    dict
        ``set-up`` (WEPL cubes, the optimization region, the engines), ``matrices``,
        ``optimization`` (evaluations and dose corrections), ``dose`` (the refinement's check,
        the final dose, cubes and report) and ``fixed``.
    """
    def at(rate: Rate) -> float:
        return rate.at(threads)

    engine_points = (work.dose_voxels + work.check_points
                     + (0.0 if work.grids_shared else work.opt_engine_points))
    evaluations = EVALUATIONS_PER_ITERATION * ITERATIONS_PER_MAIN * work.max_iterations
    weighted = WEIGHTED_SPOT_SHARE * (CHECK_PASSES * work.check_pairs
                                      + final_passes * work.body_pairs)
    return {
        "set-up": (work.cube_samples * at(WEPL_CUBE_S_PER_SAMPLE)
                   + work.opt_engine_points * at(REGION_S_PER_POINT)
                   + engine_points * work.n_beams * at(ENGINE_S_PER_POINT_BEAM)),
        "matrices": (work.entries * at(BUILD_S_PER_ENTRY)
                     + work.opt_points * at(BUILD_S_PER_ROW)),
        "optimization": (evaluations * (work.entries * at(PRODUCTS_S_PER_ENTRY)
                                        + work.objective_points * at(PENALTY_S_PER_POINT)
                                        + at(EVALUATION_S))
                         + CORRECTION_PASSES * (work.row_pairs * at(FORWARD_S_PER_PAIR)
                                                + work.opt_points * work.n_beams
                                                * at(FORWARD_S_PER_POINT_BEAM))),
        "dose": (weighted * at(FORWARD_S_PER_PAIR)
                 + (CHECK_PASSES * work.check_points + final_passes * work.dose_voxels)
                 * work.n_beams * at(FORWARD_S_PER_POINT_BEAM)
                 + work.dose_voxels * at(CUBES_S_PER_VOXEL)
                 + work.structure_voxels * at(REPORT_S_PER_STRUCTURE_VOXEL)),
        "fixed": FIXED_S,
    }
