"""Does a default plan hold between its grid points? (issue 14, items 0 and 4)

Run: ``python bench/bench_fine_grid.py [--case demo|tg119 ...] [--device cpu|gpu]``.

Each case is planned at the defaults (2.5 mm dose grid, the optimizer's fine points in and
around the target, the default objectives, gantry 90/270), its plan recalculated on a 2 mm grid
(:func:`planning.compare.recalc.recalculate`), and one row printed: planning time, peak RSS,
the plan's own clinical-DVH PTV D98/D95/D5 and largest voxel, and on the 2 mm recalculation the
PTV D98/D95/D5 of the 2 mm voxels whose centres lie in the PTV (as tests/test_fine_grid.py) and
the largest voxel anywhere, all in % of the prescription. Results: docs/physics.md and
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Case -> (prescription Gy(RBE), fractions).
CASES = {"demo": (57.6, 16), "tg119": (60.0, 20)}


def _patient(case: str) -> Any:  # a Patient (imported lazily)
    if case == "demo":
        from planning.dicom import load_demo_patient

        return load_demo_patient()
    from bench.bench_plan import tg119_patient

    return tg119_patient()


def bench_case(case: str, device: str) -> dict[str, object]:
    """Plan ``case`` at the defaults, recalculate at 2 mm; the row of the module docstring."""
    from planning.compare.recalc import recalculate
    from planning.planner import PlanRequest, make_plan
    from planning.structure_dose import grid_of, structure_rows

    dose, fractions = CASES[case]
    patient = _patient(case)
    t0 = time.perf_counter()
    plan = make_plan(PlanRequest(target="PTV", total_dose_gy_rbe=dose, n_fractions=fractions,
                                 gantry_deg=(90.0, 270.0), patient=patient, device=device),
                     keep_influence=False)
    plan_s = time.perf_counter() - t0
    fine = recalculate(patient, plan.plan, model=plan.model, grid_mm=2.0, device=device)
    rows = structure_rows(patient.structure_set.get("PTV").mask.to_dense(),
                          grid_of(patient.ct), fine.dose_grid)
    d = fine.rbe_dose_gy_rbe.reshape(-1)[rows].astype(np.float64)
    d98, d95, d5 = np.percentile(d, [2.0, 5.0, 95.0])
    ptv = plan.report["structures"]["PTV"]

    def pct(x: float) -> float:
        return round(100.0 * float(x) / dose, 2)

    return {"case": case, "plan_s": round(plan_s, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "plan_d98": pct(ptv["d98_gy_rbe"]), "plan_d95": pct(ptv["d95_gy_rbe"]),
            "plan_d5": pct(ptv["d5_gy_rbe"]), "plan_max": pct(plan.rbe_dose_gy_rbe.max()),
            "fine_d98": pct(d98), "fine_d95": pct(d95), "fine_d5": pct(d5),
            "fine_max": pct(fine.rbe_dose_gy_rbe.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", choices=sorted(CASES), default=["demo", "tg119"])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = [bench_case(c, args.device) for c in args.case]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))


if __name__ == "__main__":
    main()
