"""Robust evaluation of the TG-119-sized plan (bench_plan.py) and a batch of recalculations.

Run: ``python bench/bench_robust.py robust --scenarios 9|13|17|21 [--device cpu|gpu]`` (plans the
phantom, then times :func:`planning.robust.evaluate_robustness`) or ``python
bench/bench_robust.py batch --jobs 8 --workers 1|2 --ct CT_DIR --plan RTPLAN.dcm`` (times
``ionplan batch`` of N recalculations). Results go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Scenario count -> (setup directions, combined, combined only).
SETTINGS = {9: (6, False, False), 13: (6, True, True), 17: (14, False, False),
            21: (6, True, False)}


def bench_robust(n_scenarios: int, device: str) -> dict[str, object]:
    from bench.bench_plan import tg119_patient
    from planning.planner import PlanRequest, make_plan
    from planning.robust import RobustSettings, evaluate_robustness

    patient = tg119_patient()
    plan = make_plan(PlanRequest(target="PTV", total_dose_gy_rbe=57.6, n_fractions=16,
                                 gantry_deg=(90.0, 270.0), patient=patient,
                                 spot_spacing_mm=5.0, dose_grid_mm=3.0, device=device))
    directions, combined, combined_only = SETTINGS[n_scenarios]
    t0 = time.perf_counter()
    result = evaluate_robustness(patient, plan.plan, model=plan.model,
                                 settings=RobustSettings(3.5, 3.0, directions, combined,
                                                         combined_only),
                                 grid_mm=plan.dose_grid, device=device)
    seconds = time.perf_counter() - t0
    rep = result.report
    per = [s["seconds"] for s in rep["scenarios"]]
    w = rep["worst_case"]["structures"]["PTV"]
    return {"scenarios": len(per), "device": rep["device"], "spots": rep["spots"],
            "total_s": round(seconds, 1), "per_scenario_s": round(sum(per) / len(per), 2),
            "ptv_d95_min_pct": round(100 * w["d95_gy_rbe_min"] / 57.6, 1)}


def bench_batch(n_jobs: int, workers: int, ct: str, plan: str, grid: float) -> dict[str, object]:
    from planning.batch import run_batch

    with tempfile.TemporaryDirectory() as tmp:
        jobs = Path(tmp) / "jobs.toml"
        jobs.write_text("".join(
            f'[[job]]\nname = "r{i}"\nkind = "recalc"\nct = "{ct}"\nplan = "{plan}"\n'
            f'grid = {grid}\ndevice = "cpu"\n\n' for i in range(n_jobs)))
        t0 = time.perf_counter()
        result = run_batch(jobs, Path(tmp) / "out", workers=workers)
        seconds = time.perf_counter() - t0
    return {"jobs": n_jobs, "workers": workers, "total_s": round(seconds, 1),
            "job_s": [round(o.seconds, 1) for o in result.outcomes], **result.counts()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("robust")
    r.add_argument("--scenarios", type=int, choices=sorted(SETTINGS), default=9)
    r.add_argument("--device", default="cpu", choices=["auto", "cpu", "gpu"])
    b = sub.add_parser("batch")
    b.add_argument("--jobs", type=int, default=8)
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--ct", required=True)
    b.add_argument("--plan", required=True)
    b.add_argument("--grid", type=float, default=4.0)
    args = ap.parse_args()
    if args.what == "robust":
        out = bench_robust(args.scenarios, args.device)
    else:
        out = bench_batch(args.jobs, args.workers, args.ct, args.plan, args.grid)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
