"""The pre-flight estimate against the plan it estimates (not a timed test).

Each case runs in its own subprocess: the estimate (:func:`planning.plan_estimate.
estimate_plan`, timed), then the plan itself (:func:`planning.planner.make_plan`, the CPU
engine), and prints what the estimate said beside what the plan did: spots, optimizer points,
matrix entries, the likely time and its range against the plan's wall time, and the likely
seconds of each part against the plan's stages (``set-up``: spots, tables and the engines;
``matrices``; ``optimization``: the first pass, the refinement and the settling; ``dose``:
the final dose and the report; the estimate's fixed part is in its total only) and the peak
RSS against the estimated memory.

Cases (``--case``, repeatable): ``demo`` (the demo head at the GUI's defaults: 2.5 mm grid,
3 mm spots), ``demo5`` (5 mm grid, 6 mm spots), ``tg119`` (the TG-119-sized phantom of
bench/bench_plan.py: 3 mm grid, 5 mm spots). All: mMKM 57.6 Gy(RBE) / 16, gantry 90 / 270.

``--profile`` measures the rates of :mod:`planning.throughput` instead: each case's plan on
one engine thread under cProfile on the process's CPU clock (other processes' load does not
count), printing the CPU seconds of each step with the work it is divided by.

Run: ``python bench/bench_estimate.py [--case demo --case tg119] [--profile]
[--json OUT.json]``; ``nice`` it on a shared machine (and say so with the numbers: the rates
are a quiet machine's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from planning.plan_work import PlanWork

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: (patient, dose grid mm, spot spacing mm) of each case.
CASES = {"demo": ("demo", 2.5, 3.0), "demo5": ("demo", 5.0, 6.0), "tg119": ("tg119", 3.0, 5.0)}


def run_one(case: str) -> dict[str, object]:
    from bench.bench_plan import tg119_patient
    from planning.dicom import load_demo_patient
    from planning.plan_estimate import estimate_plan
    from planning.planner import PlanRequest, make_plan

    which, grid_mm, spots_mm = CASES[case]
    patient = load_demo_patient() if which == "demo" else tg119_patient()
    request = PlanRequest(target="PTV", total_dose_gy_rbe=57.6, n_fractions=16,
                          gantry_deg=(90.0, 270.0), patient=patient, spot_spacing_mm=spots_mm,
                          dose_grid_mm=grid_mm, device="cpu")
    t0 = time.perf_counter()
    estimate = estimate_plan(request)
    estimate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = make_plan(request)
    plan_s = time.perf_counter() - t0
    assert result.prepared is not None
    timings = result.report["timings_s"]
    stages = ("spots_and_tables", "engine_setup", "dose_influence", "optimization",
              "refinement", "dose_engine_setup", "forward_dose")
    measured = {
        "set-up": (timings["spots_and_tables"] + timings["engine_setup"]
                   + timings["dose_engine_setup"]),
        "matrices": timings["dose_influence"],
        "optimization": timings["optimization"] + timings["refinement"],
        "dose": plan_s - sum(timings[k] for k in stages) + timings["forward_dose"]}
    work = estimate.work
    return {"case": case, "load_1min": os.getloadavg()[0], "threads": estimate.threads,
            "estimate_s": estimate_s,
            "spots": [work.n_spots, result.report["spots"]],
            "points": [work.opt_points, int(result.prepared.rows.size)],
            "entries": [work.entries, result.report["influence_nnz"]],
            "entries_error": work.entries_error,
            "likely_s": estimate.likely_s, "low_s": estimate.low_s, "high_s": estimate.high_s,
            "plan_s": plan_s, "iterations": result.report["iterations"],
            "parts_s": {k: [v, measured.get(k, 0.0)] for k, v in estimate.seconds_by_part},
            "memory_mb": estimate.memory_bytes / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _passes() -> int:
    from planning.throughput import CORRECTION_PASSES

    return CORRECTION_PASSES


def _evaluations(work: PlanWork) -> float:
    from planning.throughput import EVALUATIONS_PER_ITERATION, ITERATIONS_PER_MAIN

    return EVALUATIONS_PER_ITERATION * ITERATIONS_PER_MAIN * work.max_iterations


#: Steps of a plan whose CPU seconds ``--profile`` reports: (label, the profiled functions'
#: file and names, the work they are divided by: a PlanWork attribute or a function of it).
PROFILED = (
    ("WEPL cubes per sample", ("kernels/wepl.py", ("wepl_cube",)), "cube_samples"),
    ("engine set-ups per point and beam", ("planning/engine/setup.py", ("beam_geometry",)),
     lambda w: w.n_beams * (w.opt_engine_points + w.check_points + w.dose_voxels)),
    ("optimizer's matrices per entry", ("planning/planner.py", ("ensure_matrices",)),
     "entries"),
    ("products per entry and evaluation", ("kernels/spot_products.py",
                                           ("forward", "backward")),
     lambda w: w.entries * _evaluations(w)),
    ("penalties per objective point and evaluation",
     ("planning/optimization.py", ("objective_value_and_gradient",)),
     lambda w: w.objective_points * _evaluations(w)),
    ("L-BFGS-B steps per evaluation",
     ("~", ("<built-in method scipy.optimize._lbfgsb.setulb>",)), _evaluations),
    ("dose corrections per pair and pass", ("planning/engine/dose_correction.py",
                                            ("row_forward",)),
     lambda w: w.row_pairs * _passes()),
    ("final dose per body pair", ("planning/engine/forward_dose.py", ("forward_cubes",)),
     "body_pairs"),
    ("report per structure voxel", ("planning/plan_report.py", ("structure_report",)),
     "structure_voxels"),
)


def profile_one(case: str) -> dict[str, object]:
    """CPU seconds of :data:`PROFILED`'s steps of ``case``'s plan on one engine thread."""
    import cProfile
    import pstats

    os.environ["IONPLAN_THREADS"] = "1"
    from bench.bench_plan import tg119_patient
    from planning.dicom import load_demo_patient
    from planning.plan_work import count_plan_work
    from planning.planner import PlanRequest, make_plan, plan_basis

    which, grid_mm, spots_mm = CASES[case]
    patient = load_demo_patient() if which == "demo" else tg119_patient()
    request = PlanRequest(target="PTV", total_dose_gy_rbe=57.6, n_fractions=16,
                          gantry_deg=(90.0, 270.0), patient=patient, spot_spacing_mm=spots_mm,
                          dose_grid_mm=grid_mm, device="cpu")
    work = count_plan_work(request, plan_basis(request))
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    result = make_plan(request)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    steps = {}
    for label, (file, names), per in PROFILED:
        seconds = sum(v[3] for (f, _line, n), v in stats.items()
                      if f.endswith(file) and n in names)
        steps[label] = [seconds, per(work) if callable(per) else float(getattr(work, per))]
    return {"case": case, "load_1min": os.getloadavg()[0],
            "iterations": result.report["iterations"], "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", choices=sorted(CASES))
    ap.add_argument("--profile", action="store_true",
                    help="measure the rates (CPU seconds of each step, one thread)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(profile_one(args.child) if args.profile else run_one(args.child)))
        return
    results = []
    for case in args.case or ["demo", "demo5", "tg119"]:
        out = subprocess.run([sys.executable, __file__, "--child", case,
                              *(["--profile"] if args.profile else [])],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{case}: failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        if args.profile:
            print(f"{case} (load {r['load_1min']:.1f}, {r['iterations']} iterations), CPU "
                  "seconds on one thread:")
            for label, (seconds, count) in r["steps"].items():
                rate = f" = {seconds / count:.2e} s" if count else ""
                print(f"  {label}: {seconds:.2f} s / {count:,.0f}{rate}", flush=True)
            continue
        print(f"{case} (load {r['load_1min']:.1f}, {r['threads']} threads): estimate "
              f"{r['estimate_s']:.1f} s; spots {r['spots'][0]} / {r['spots'][1]}, optimizer "
              f"points {r['points'][0]:,.0f} / {r['points'][1]:,}, entries "
              f"{r['entries'][0] / 1e6:.2f} M (sampling error {100 * r['entries_error']:.0f} %)"
              f" / {r['entries'][1] / 1e6:.2f} M (estimated / planned)")
        print(f"  time: likely {r['likely_s']:.1f} s, range {r['low_s']:.1f}-{r['high_s']:.1f}"
              f" s; plan {r['plan_s']:.1f} s ({r['iterations']} iterations); memory "
              f"{r['memory_mb']:.0f} MiB estimated, peak RSS {r['peak_rss_mb']:.0f} MB")
        print("  parts (estimated / measured s): " + ", ".join(
            f"{k} {v[0]:.1f} / {v[1]:.1f}" for k, v in r["parts_s"].items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
