"""Benchmark of inverse planning end to end (not a timed test).

Cases: the demo patient (two opposed beams, 3 mm spots, 3 mm grid, 57.6 Gy(RBE) / 16 fx for
mMKM, 60 Gy(RBE) / 20 fx for LEM I) and the TG-119-sized phantom of bench/bench_influence.py
(C-shaped target around a cylindrical core, 167 x 167 x 129 voxels at 3 x 3 x 2.5 mm, gantry
90/270, 5 mm spots, 3 mm grid, dose inside the body cylinder). Each run is a fresh subprocess, so
its peak RSS (``resource.getrusage``) is its own. Prints target D95 and D5 (% of the
prescription), seconds for the optimizer's influence build, the optimization, the forward dose
and the whole plan, then for a re-optimization of the same plan to 105 % of its prescription
from the kept matrices (``reoptimize``: optimization, refinement, forward dose and report;
the whole plan's columns exclude it), the influence entries and MiB, the plan's peak RSS
(before the re-optimization) and, on a GPU, the memory CuPy's pool holds at the end (about the
device peak).

``--matrix-cutoff`` is the cut-off fraction of the optimizer's matrices (default 0.8; the halo
beyond it, up to ``--cutoff``, is the optimizer's dose correction,
:mod:`planning.engine.dose_correction`; equal to ``--cutoff``: matrices of the whole dose, no
correction). Columns ``nonzeros`` and ``MiB`` are the optimizer's matrices.

Run: ``python bench/bench_plan.py [--case demo|tg119|all] [--model mkm|lem1|all]
[--cutoff 0.99] [--matrix-cutoff 0.8] [--layer-spacing 2] [--device cpu] [--json OUT.json]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PRESCRIPTIONS = {"mkm": (57.6, 16), "lem1": (60.0, 20)}

#: The re-optimization after each plan: the same plan at this share of its prescription.
REOPTIMIZE_SCALE = 1.05


def tg119_patient():  # type: ignore[no-untyped-def]
    """The phantom of bench_influence.py as a Patient (HU from the default HLUT inverted)."""
    from bench.bench_influence import phantom
    from planning.hlut import default_hlut
    from planning.patient import CtVolume, Patient, PatientStudy, RoiMask, Structure, StructureSet

    grid, rsp, target = phantom()
    hu_axis = np.arange(-1000.0, 3000.0, 1.0)
    rsp_axis = np.asarray(default_hlut().hu_to_rsp(hu_axis), dtype=np.float64)
    hu = np.interp(rsp, rsp_axis, hu_axis).round().astype(np.int16)
    centres = grid.voxel_centers_lps()
    r = np.hypot(centres[:, 0], centres[:, 1]).reshape(grid.shape)
    zz = centres[:, 2].reshape(grid.shape)
    core = (r <= 10.0) & (np.abs(zz) <= 20.0)
    study = PatientStudy("TG119^Bench", "TG119", "", "O", "1.2.3.4", "1", "", "", "", "")
    ct = CtVolume(hu, grid.spacing_mm, grid.origin_mm, "HFS", (1, 0, 0, 0, 1, 0), "1.2.3.5",
                  "1.2.3.6", tuple(f"1.2.3.7.{k}" for k in range(grid.shape[0])), study)
    structures = tuple(
        Structure(name, i + 1, kind, None, RoiMask.from_dense(mask))
        for i, (name, kind, mask) in enumerate([("Body", "EXTERNAL", r <= 150.0),
                                                ("PTV", "PTV", target),
                                                ("Core", "ORGAN", core)]))
    return Patient(ct, StructureSet(structures, "1.2.3.5", "1.2.3.8", "1.2.3.9"))


def run_one(case: str, model: str, cutoff: float, layer_spacing: float, device: str,
            matrix_cutoff: float) -> dict[str, object]:
    from planning.dicom import load_demo_patient
    from planning.planner import PlanRequest, make_plan, reoptimize

    dose, fractions = PRESCRIPTIONS[model]
    patient = load_demo_patient() if case == "demo" else tg119_patient()
    spots_mm = 3.0 if case == "demo" else 5.0
    t0 = time.perf_counter()
    result = make_plan(PlanRequest(
        target="PTV", total_dose_gy_rbe=dose, n_fractions=fractions, gantry_deg=(90.0, 270.0),
        patient=patient, rbe_model=model, spot_spacing_mm=spots_mm, dose_grid_mm=3.0,
        layer_spacing_mm=layer_spacing, cutoff_fraction=cutoff, device=device,
        matrix_cutoff_fraction=matrix_cutoff))
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # A changed prescription re-optimizes from the kept matrices (planning.planner.reoptimize).
    assert result.prepared is not None
    t0 = time.perf_counter()
    again = reoptimize(result.prepared, total_dose_gy_rbe=REOPTIMIZE_SCALE * dose)
    reoptimize_s = time.perf_counter() - t0
    if again.report["influence_rebuilt"]:
        raise RuntimeError("the re-optimization rebuilt the matrices")
    rep = result.report
    ptv = rep["structures"]["PTV"]
    return {"case": case, "model": model, "cutoff": cutoff, "matrix_cutoff": matrix_cutoff,
            "layer_spacing": layer_spacing,
            "spots": rep["spots"], "nnz": rep["influence_nnz"], "mib": rep["influence_mib"],
            "d95": 100 * ptv["d95_gy_rbe"] / dose, "d5": 100 * ptv["d5_gy_rbe"] / dose,
            "influence_s": rep["timings_s"]["dose_influence"],
            "optimization_s": rep["timings_s"]["optimization"],
            "forward_s": rep["timings_s"]["forward_dose"], "total_s": seconds,
            "iterations": rep["iterations"], "device": rep["device"],
            "reoptimize_s": reoptimize_s, "reoptimize_iterations": again.report["iterations"],
            "peak_rss_mb": peak_mb,
            "gpu_pool_mb": _gpu_pool_mb(rep["device"])}


def _gpu_pool_mb(device: str) -> float:
    """Bytes CuPy's memory pool holds after the plan: its blocks are kept, so this is about the
    peak of device memory in use at once (0 on the CPU)."""
    if device != "gpu":
        return 0.0
    import cupy

    return cupy.get_default_memory_pool().total_bytes() / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="all", choices=["all", "demo", "tg119"])
    ap.add_argument("--model", default="all", choices=["all", "mkm", "lem1"])
    ap.add_argument("--cutoff", type=float, default=0.99)
    ap.add_argument("--matrix-cutoff", type=float, default=0.8)
    ap.add_argument("--layer-spacing", type=float, default=2.0)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "gpu"])
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.case, args.model, args.cutoff, args.layer_spacing,
                                 args.device, args.matrix_cutoff)))
        return
    cases = ["demo", "tg119"] if args.case == "all" else [args.case]
    models = ["mkm", "lem1"] if args.model == "all" else [args.model]
    head = (f"{'case':6} {'model':5} {'cut':>6} {'matrix':>6} {'layer':>5} {'spots':>6} "
            f"{'nonzeros':>12} {'MiB':>6} {'D95 %':>6} {'D5 %':>6} {'infl s':>7} {'opt s':>6} "
            f"{'iter':>4} {'fwd s':>6} {'total s':>7} {'reopt s':>7} {'peakRSS MB':>10} "
            f"{'GPU MB':>7}")
    print(head)
    print("-" * len(head))
    results = []
    for case in cases:
        for model in models:
            cmd = [sys.executable, __file__, "--child", "--case", case, "--model", model,
                   "--cutoff", str(args.cutoff), "--matrix-cutoff", str(args.matrix_cutoff),
                   "--layer-spacing", str(args.layer_spacing),
                   "--device", args.device]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{case:6} {model:5} failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"{case:6} {model:5} {r['cutoff']:>6.3f} {r['matrix_cutoff']:>6.3f} "
                  f"{r['layer_spacing']:>5.1f} "
                  f"{r['spots']:>6} {r['nnz']:>12,} {r['mib']:>6.0f} {r['d95']:>6.1f} "
                  f"{r['d5']:>6.1f} {r['influence_s']:>7.2f} {r['optimization_s']:>6.2f} "
                  f"{r['iterations']:>4} {r['forward_s']:>6.2f} {r['total_s']:>7.2f} "
                  f"{r['reoptimize_s']:>7.2f} {r['peak_rss_mb']:>10.0f} "
                  f"{r['gpu_pool_mb']:>7.0f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
