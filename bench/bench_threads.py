"""Benchmark of the CPU engine's scaling with threads (not a timed test).

Case: the TG-119-sized phantom of bench/bench_plan.py (gantry 90/270, 5 mm spots, 3 mm dose
grid, mMKM tables), set up once with ``prepare_plan`` on the CPU. For each thread count
(``IONPLAN_THREADS``, read by the engine at every build) it times, best of ``--repeat``:

- the optimizer's matrices: dose and model sum of the optimization grid's points (the
  influence build of a plan);
- the forward pass of the whole-body dose engine with uniform spot weights (dose, LET x dose
  and the model sum of every voxel; its cost does not depend on the weights' values);
- the optimizer's four products (dose and model sum, each ``A @ w`` and ``A.T @ g``).

Prints one table with the speed-up over one thread, per CPU kernel (``--kernels``: the compiled
one of ``kernels.pencil_beam_cpu`` and the joint products of ``kernels.spot_products`` where
they are built, and the NumPy kernels with SciPy's products). The GPU-engine issue asks for at
least 6x on 8 cores for the influence build and the forward pass.

Run: ``python bench/bench_threads.py [--threads 1,2,4,8,16] [--repeat 2]
[--kernels compiled,numpy]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default=",".join(
        str(n) for n in (1, 2, 4, 8, 16) if n <= (os.cpu_count() or 1)))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--kernels", default="compiled,numpy")
    args = ap.parse_args()
    counts = [int(n) for n in args.threads.split(",")]
    from kernels import pencil_beam_cpu

    kernels = [k for k in args.kernels.split(",")
               if k == "numpy" or (k == "compiled" and pencil_beam_cpu.available())]

    from bench.bench_plan import tg119_patient
    from planning.plan_config import default_objectives
    from planning.planner import PlanRequest, prepare_plan

    prepared = prepare_plan(PlanRequest(
        target="PTV", total_dose_gy_rbe=57.6, n_fractions=16, gantry_deg=(90.0, 270.0),
        patient=tg119_patient(), rbe_model="mkm", spot_spacing_mm=5.0, dose_grid_mm=3.0,
        device="cpu"))
    names = [o.structure for o in default_objectives(prepared.patient, "PTV", 57.6)]
    rows = np.unique(np.concatenate(list(prepared.structure_rows(names).values())))
    rows = np.intersect1d(rows, prepared.opt_engine.rows)
    engine = prepared.dose_engine()
    weights = np.ones(engine.n_spots)
    head = (f"{'kernel':>8} {'threads':>7} {'influence s':>11} {'x':>5} {'forward s':>9} "
            f"{'x':>5} {'4 products s':>12} {'x':>5}")
    print(f"{os.cpu_count()} cores; optimizer rows {rows.size:,}, whole-body voxels "
          f"{engine.rows.size:,}, spots {engine.n_spots:,}")
    print(head)
    print("-" * len(head))
    for kernel in kernels:
        for e in (prepared.opt_engine, engine):
            e.settings = dataclasses.replace(e.settings, compiled_kernels=kernel == "compiled")
        # Once untimed: the engines' layer tables are made and kept on first use.
        _measure(prepared, engine, rows, weights, 1, kernel == "compiled")
        first: tuple[float, float, float] | None = None
        for n in counts:
            os.environ["IONPLAN_THREADS"] = str(n)
            now = _measure(prepared, engine, rows, weights, args.repeat, kernel == "compiled")
            first = first or now
            print(f"{kernel:>8} {n:>7} {now[0]:>11.2f} {first[0] / now[0]:>5.2f} "
                  f"{now[1]:>9.2f} {first[1] / now[1]:>5.2f} "
                  f"{now[2]:>12.3f} {first[2] / now[2]:>5.2f}", flush=True)


def _measure(prepared, engine, rows, weights, repeat: int,  # type: ignore[no-untyped-def]
             compiled: bool) -> tuple[float, float, float]:
    """Seconds of the optimizer's matrices, the whole-body forward pass and the optimizer's
    four products (the compiled joint products, or SciPy's matrix by matrix), on the thread
    count of the environment."""
    from kernels.sparse_device import SeparateProducts, joint_products

    influence_s = _best(lambda: prepared.opt_engine.optimization_matrices(
        rows, model_tables=prepared.tables), repeat)
    forward_s = _best(lambda: engine.forward(weights, model_tables=prepared.tables), repeat)
    # The optimizer's products run on the engine's thread count too.
    dose, sums, _ = prepared.opt_engine.optimization_matrices(rows, model_tables=prepared.tables)
    g = np.ones(dose.shape[0])
    joint = joint_products(dose, sums) if compiled else SeparateProducts(dose, sums)
    products_s = _best(lambda: (joint.forward(weights), joint.backward(g, [g] * len(sums))),
                       repeat)
    return influence_s, forward_s, products_s


if __name__ == "__main__":
    main()
