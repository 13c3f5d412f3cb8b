"""Benchmark of the dose-influence build (not a timed test).

Case: a CT of 167 x 167 x 129 voxels at 3 x 3 x 2.5 mm (x, y, z), a 300 mm water cylinder
along z with a bone insert (RSP 1.6) and an air insert (RSP 0.001), a TG-119-like C-shaped target
(outer radius 37 mm, inner 15 mm, open anteriorly over 30 mm, 40 mm long) around a 10 mm core,
two opposed lateral beams (gantry 90 and 270), 5 mm spots, a 3 mm dose grid covering the CT,
dose computed inside the body cylinder.

Each device runs in a fresh subprocess so that its peak resident memory is its own; the table
lists the build time, entries per second, the peak RSS increase over the state just before the
build, the peak traced by tracemalloc (NumPy reports its buffers to it; a second build), and the
bytes stored per entry per quantity (dose and LET x dose share the CSR index arrays). It also
lists the CPU time of the build and the 1-minute load average before it: on a shared machine a
wall time is only meaningful next to these.

Run: ``python bench/bench_influence.py [--device cpu|gpu|all] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from planning.beams import Beam  # noqa: E402
from planning.dose_grid import DoseGrid  # noqa: E402
from planning.engine import build_influence  # noqa: E402
from planning.engine.dose_engine import DoseEngineSettings, place_spots  # noqa: E402

CT_SHAPE = (129, 167, 167)
CT_SPACING = (2.5, 3.0, 3.0)


def load_bench_machine():  # type: ignore[no-untyped-def]
    """The shipped generic carbon machine, or the synthetic test machine with a warning."""
    from planning.machine import load_machine

    if (REPO / "assets" / "machines" / "generic_carbon.npz").is_file():
        return load_machine(), "generic_carbon.npz"
    print("WARNING: assets/machines/generic_carbon.npz not found; using the synthetic test "
          "machine of tests/synthetic_machine.py", file=sys.stderr)
    from tests.synthetic_machine import make_synthetic_machine

    return make_synthetic_machine(), "synthetic (tests/synthetic_machine.py)"


def phantom() -> tuple[DoseGrid, np.ndarray, np.ndarray]:
    """CT grid, RSP volume and target mask of the benchmark case."""
    nz, ny, nx = CT_SHAPE
    sz, sy, sx = CT_SPACING
    origin = (-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, -(nz - 1) / 2 * sz)
    grid = DoseGrid(CT_SHAPE, CT_SPACING, origin)
    z = origin[2] + np.arange(nz) * sz
    y = origin[1] + np.arange(ny) * sy
    x = origin[0] + np.arange(nx) * sx
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    r = np.hypot(xx, yy)
    rsp = np.where(r <= 150.0, 1.0, 0.001).astype(np.float32)
    rsp[np.hypot(xx - 70.0, yy) <= 15.0] = 1.6  # bone rod, in the path of gantry 90
    rsp[np.hypot(xx + 70.0, yy - 10.0) <= 15.0] = 0.001  # air rod, in the path of gantry 270
    opening = (yy < 0) & (np.abs(xx) < 15.0)
    target = (r >= 15.0) & (r <= 37.0) & (np.abs(zz) <= 20.0) & ~opening
    return grid, rsp, target


def run_one(device: str, threads: int | None, trace: bool) -> dict[str, float | int | str]:
    machine, machine_name = load_bench_machine()
    grid, rsp, target = phantom()
    beams = [Beam((0.0, 0.0, 0.0), 90.0, 0.0, "G90"), Beam((0.0, 0.0, 0.0), 270.0, 0.0, "G270")]
    settings = DoseEngineSettings(device=device, n_threads=threads)
    spot_maps = [place_spots(machine, rsp, grid, b, target, spot_spacing_mm=5.0,
                             settings=settings) for b in beams]
    dose_grid = DoseGrid.covering(grid, 3.0)
    centres = dose_grid.voxel_centers_lps()
    body = (np.hypot(centres[:, 0], centres[:, 1]) <= 150.0).reshape(dose_grid.shape)
    if trace:
        tracemalloc.start()
    load = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    inf = build_influence(machine, rsp, grid, dose_grid, beams, spot_maps, settings,
                          calc_mask=body)
    seconds = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    traced = tracemalloc.get_traced_memory()[1] if trace else 0
    nnz = inf.nnz
    return {
        "machine": machine_name,
        "device": inf.device,
        "threads": threads or os.cpu_count() or 1,
        "spots": inf.spots.n_spots,
        "nnz": nnz,
        "seconds": seconds,
        "cpu_seconds": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "load_before": load,
        "rss_before_mb": ru0.ru_maxrss / 1024,
        "peak_rss_delta_mb": (ru1.ru_maxrss - ru0.ru_maxrss) / 1024,
        "traced_peak_mb": traced / 2**20,
        "result_mb": inf.nbytes / 2**20,
        "bytes_per_nnz_per_quantity": inf.nbytes / nnz / 2,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="all", choices=["all", "cpu", "gpu"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.device, args.threads, args.trace)))
        return

    from planning.engine.dose_engine import resolve_device
    from planning.errors import DeviceError

    devices = ["cpu", "gpu"] if args.device == "all" else [args.device]
    if "gpu" in devices:
        try:
            resolve_device("gpu")
        except DeviceError as exc:
            print(f"skipping gpu: {exc}")
            devices.remove("gpu")
    rows = []
    for dev in devices:
        results = []
        for trace in (False, True):
            cmd = [sys.executable, __file__, "--child", "--device", dev]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if trace:
                cmd.append("--trace")
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            sys.stderr.write(out.stderr)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        res = results[0]
        res["traced_peak_mb"] = results[1]["traced_peak_mb"]
        rows.append(res)

    print(f"machine: {rows[0]['machine'] if rows else '-'}")
    head = (f"{'device':6} {'thr':>3} {'spots':>6} {'nonzeros':>11} {'seconds':>8} "
            f"{'cpu s':>6} {'load':>4} {'Mnnz/s':>7} {'peakRSS+MB':>10} {'traced MB':>9} "
            f"{'result MB':>9} {'B/nnz/qty':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['device']:6} {r['threads']:>3} {r['spots']:>6} {r['nnz']:>11,} "
              f"{r['seconds']:>8.2f} {r['cpu_seconds']:>6.1f} {r['load_before']:>4.1f} "
              f"{r['nnz'] / r['seconds'] / 1e6:>7.1f} "
              f"{r['peak_rss_delta_mb']:>10.0f} {r['traced_peak_mb']:>9.0f} "
              f"{r['result_mb']:>9.0f} {r['bytes_per_nnz_per_quantity']:>9.2f}")


if __name__ == "__main__":
    main()
