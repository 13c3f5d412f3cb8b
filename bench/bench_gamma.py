"""Benchmark of the 3D gamma index (not a timed test).

Case: a clinical-like dose of two opposed lateral carbon fields (along x) on a box target, on
grids of 100 x 100 x 75 and 200 x 200 x 150 voxels (x, y, z; 4 mm and 2 mm spacing, the same
40 x 40 x 30 cm volume). Each field has an entrance plateau at 35 % of its SOBP dose, a spread-out
Bragg peak over the target depth, a distal fall-off (sigma 1.5 mm) and a fragment tail at 8 %,
and lateral penumbrae (sigma 3 mm); the target is 200 x 160 x 120 mm. The evaluated dose is the
same plan recomputed with realistic differences: shifted by (1.0, -0.8, 1.2) mm (x, y, z), the
SOBP of one field 2.5 % higher and its range 2 mm longer, and uncorrelated noise of 1.5 % (one
sigma) of the local dose (Monte Carlo-like; fixed seed).

Each case runs in a fresh subprocess so that its peak memory is its own; the table lists the
grid, criteria, evaluated voxels, pass rate, mean and 95th percentile gamma, wall seconds, CPU
seconds, the peak traced by tracemalloc (NumPy reports its buffers to it) during the gamma call,
and the 1-minute load average before it: on a shared machine a wall time is only meaningful next
to these.

Run: ``python bench/bench_gamma.py [--sizes small,large] [--step-fraction 0.2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy.special import erf

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from planning.compare.gamma import GammaCriteria, gamma_index  # noqa: E402

SIZES = {
    "small": ((75, 100, 100), (4.0, 4.0, 4.0)),
    "large": ((150, 200, 200), (2.0, 2.0, 2.0)),
}
CRITERIA = [GammaCriteria(3.0, 3.0), GammaCriteria(2.0, 2.0)]


def _box(u: np.ndarray, lo: float, hi: float, sigma: float) -> np.ndarray:
    """Erf-edged box profile, 1 inside [lo, hi], penumbra sigma (mm)."""
    s = np.sqrt(2.0) * sigma
    return 0.5 * (erf((u - lo) / s) - erf((u - hi) / s))


def _field(depth: np.ndarray, prox: float, dist: float, sobp: float) -> np.ndarray:
    """Depth-dose of one carbon field: plateau, SOBP from prox to dist, fall-off, tail."""
    plateau = 0.35 * sobp
    rise = plateau + (sobp - plateau) * _box(depth, prox, 1.0e9, 2.0)
    fall = 0.5 * (1.0 - erf((depth - dist) / (np.sqrt(2.0) * 1.5)))
    tail = 0.08 * sobp * 0.5 * (1.0 + erf((depth - dist) / (np.sqrt(2.0) * 1.5)))
    return rise * fall + tail * np.exp(-np.maximum(depth - dist, 0.0) / 80.0)


def clinical_dose(shape: tuple[int, int, int], spacing: tuple[float, float, float], *,
                  shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
                  sobp_scale: float = 1.0, range_shift_mm: float = 0.0,
                  noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Two opposed lateral fields on a box target, Gy; ``shift_mm`` is (x, y, z)."""
    nz, ny, nx = shape
    sz, sy, sx = spacing
    x = (np.arange(nx) - (nx - 1) / 2) * sx - shift_mm[0]
    y = (np.arange(ny) - (ny - 1) / 2) * sy - shift_mm[1]
    z = (np.arange(nz) - (nz - 1) / 2) * sz - shift_mm[2]
    half = (100.0, 80.0, 60.0)  # target half sizes x, y, z, mm
    lateral = (_box(z, -half[2], half[2], 3.0)[:, None, None]
               * _box(y, -half[1], half[1], 3.0)[None, :, None]).astype(np.float32)
    edge = x[-1] + 0.5 * sx + shift_mm[0]  # patient surface at the grid edge
    d_left = x + edge  # depth of the field entering from -x
    d_right = edge - x
    prox, dist = edge - half[0], edge + half[0]
    f1 = _field(d_left, prox, dist + range_shift_mm, 1.0 * sobp_scale)
    f2 = _field(d_right, prox, dist, 1.0)
    depth = (0.5 * (f1 + f2)).astype(np.float32)
    dose = 2.0 * lateral * depth[None, None, :]  # 2 Gy in the target
    if noise > 0:
        rng = np.random.default_rng(seed)
        dose *= 1.0 + noise * rng.standard_normal(dose.shape, dtype=np.float32)
        np.maximum(dose, 0.0, out=dose)
    return dose


def run_case(size: str, criteria_index: int, step_fraction: float) -> dict[str, object]:
    shape, spacing = SIZES[size]
    crit = CRITERIA[criteria_index]
    ref = clinical_dose(shape, spacing)
    ev = clinical_dose(shape, spacing, shift_mm=(1.0, -0.8, 1.2), sobp_scale=1.025,
                       range_shift_mm=2.0, noise=0.015, seed=1)
    load = os.getloadavg()[0]
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    res = gamma_index(ref, ev, spacing, crit, search_step_mm=step_fraction * crit.dta_mm)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "grid": "x".join(str(n) for n in shape[::-1]),
        "spacing": f"{spacing[2]:g} mm",
        "criteria": crit.label,
        "evaluated": res.evaluated_voxels,
        "pass": res.pass_rate_percent,
        "mean": res.mean_gamma,
        "p95": res.gamma_p95,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_mib": peak / 2**20,
        "grid_mib": ref.nbytes / 2**20,
        "load": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,large")
    parser.add_argument("--step-fraction", type=float, default=0.2,
                        help="search step as a fraction of the DTA (default 0.2)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        size, ci = args.case.split(":")
        print(json.dumps(run_case(size, int(ci), args.step_fraction)))
        return
    print("| grid (x y z) | spacing | criteria | evaluated voxels | pass % | mean | p95 | "
          "wall s | CPU s | peak MiB (grid MiB) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        for ci in range(len(CRITERIA)):
            out = subprocess.run(
                [sys.executable, __file__, "--case", f"{size}:{ci}",
                 "--step-fraction", str(args.step_fraction)],
                check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {r['grid']} | {r['spacing']} | {r['criteria']} | {r['evaluated']:,} | "
                  f"{r['pass']:.2f} | {r['mean']:.3f} | {r['p95']:.3f} | {r['wall_s']:.1f} | "
                  f"{r['cpu_s']:.1f} | {r['peak_mib']:.0f} ({r['grid_mib']:.0f}) | "
                  f"{r['load']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
