"""The GPU check: CuPy tests and the engine benchmarks on one CUDA machine, one table.

Run by bench/gpu_check.sh (which installs carried wheels first). Steps, each in a fresh process
so that timings and memory are its own:

1. the CuPy-vs-NumPy tests (every GPU kernel against its NumPy twin) and a whole plan on the
   GPU against the CPU plan (tests/test_gpu_plan.py; the CPU stand-in's variants run too);
2. the kernel module's compilation: cold (empty CuPy kernel cache) and warm (cache filled);
3. bench/bench_influence.py --device all (whole-body TG-119-sized influence, CPU and GPU);
4. bench/bench_plan.py --case tg119 --model mkm on the GPU and on the CPU;
5. ``ionplan plan`` on the TG-119-sized phantom written as DICOM (bench/tg119_dicom.py), on the
   GPU: wall time including CT load and export;
6. bench/bench_threads.py: the CPU engine on 1, 2, 4, 8, 16 threads (influence, forward pass,
   the optimizer's products), for the scaling the GPU-engine issue asks of every CPU core.

Prints the machine, each step's output and one summary table (Markdown) for docs/benchmarks.md.
Writes everything to ``--out`` (default $OUT or /tmp/gpu_check). ``--profile`` adds a cProfile
of ``ionplan plan`` on the GPU with warm caches (profile_plan.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None,
         timeout: float = 300.0) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env,
                           timeout=timeout)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = 124, f"timed out after {timeout} s\n{exc.stdout or ''}{exc.stderr or ''}"
    seconds = time.perf_counter() - t0
    log.write_text(out)
    print(f"$ {' '.join(cmd)}  -> rc {rc}, {seconds:.1f} s", flush=True)
    print(out[-3000:], flush=True)
    return rc, out, seconds


def _compile_times(out: Path) -> dict[str, float]:
    """Seconds to get the kernel module with an empty and with a filled kernel cache."""
    code = ("import time; t=time.perf_counter(); from kernels.pencil_beam_gpu import warm_up; "
            "warm_up(); import cupy; cupy.cuda.Device().synchronize(); "
            "print(time.perf_counter()-t)")
    times = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "CUPY_CACHE_DIR": cache}
        for label in ("cold", "warm"):
            rc, text, _ = _run([sys.executable, "-c", code], out / f"compile_{label}.log", env)
            times[label] = float(text.strip().splitlines()[-1]) if rc == 0 else float("nan")
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/gpu_check")))
    ap.add_argument("--profile", action="store_true",
                    help="also profile `ionplan plan` on the GPU (cProfile, warm caches)")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    facts: dict[str, object] = {"date": time.strftime("%Y-%m-%d"),
                                "python": platform.python_version(), "cpu_cores": os.cpu_count()}
    try:
        import cupy
        import numpy
        import scipy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        facts.update(gpu=props["name"].decode(), gpu_memory_gib=props["totalGlobalMem"] / 2**30,
                     cupy=cupy.__version__, numpy=numpy.__version__, scipy=scipy.__version__)
    except Exception as exc:  # the table says why the GPU part is missing
        facts["gpu"] = f"none ({exc.__class__.__name__}: {exc})"
    sys.path.insert(0, str(REPO))
    from planning.about import cpu_kernels

    facts["cpu_kernels"] = cpu_kernels()  # built by gpu_check.sh (bench/build_extensions.py)
    print(json.dumps(facts), flush=True)

    rc_tests, text, _ = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                              "tests/test_pencil_beam_kernel.py", "tests/test_engine.py",
                              "tests/test_influence.py", "tests/test_wepl.py",
                              "tests/test_rbe_mixing.py", "tests/test_gpu_plan.py"],
                             out / "tests.log", timeout=300)
    tests_line = (text.strip().splitlines() or ["?"])[-1]
    compile_s = _compile_times(out)
    _run([py, "bench/bench_influence.py", "--device", "all"], out / "bench_influence.log",
         timeout=240)
    plans = {}
    for device in ("gpu", "cpu"):
        js = out / f"plan_{device}.json"
        _run([py, "bench/bench_plan.py", "--case", "tg119", "--model", "mkm", "--device", device,
              "--json", str(js)], out / f"bench_plan_{device}.log", timeout=300)
        done = json.loads(js.read_text()) if js.exists() else []
        if done:  # empty when the plan failed: its log says why, the table shows "-"
            plans[device] = done[0]
    dicom = out / "tg119_dicom"
    _run([py, "bench/tg119_dicom.py", str(dicom)], out / "tg119_dicom.log")
    rc_cli, _, cli_s = _run([py, "-m", "planning.cli", "plan", str(dicom), "--target", "PTV",
                             "--dose", "60", "--fractions", "20", "--gantry", "90,270",
                             "--grid", "3", "--spot-spacing", "5", "--device", "gpu", "--out",
                             str(out / "tg119_plan")], out / "cli_plan.log", timeout=300)
    if args.profile:
        _run([py, "-m", "cProfile", "-o", str(out / "plan.prof"), "-m", "planning.cli", "plan",
              str(dicom), "--target", "PTV", "--dose", "60", "--fractions", "20", "--gantry",
              "90,270", "--grid", "3", "--spot-spacing", "5", "--device", "gpu", "--out",
              str(out / "tg119_plan_profiled")], out / "cli_plan_profiled.log", timeout=300)
        _run([py, "-c", "import pstats,sys; p=pstats.Stats(sys.argv[1]); "
              "p.sort_stats('cumulative').print_stats(45); p.sort_stats('tottime').print_stats(25)",
              str(out / "plan.prof")], out / "profile_plan.txt")
    _, threads_text, _ = _run([py, "bench/bench_threads.py", "--repeat", "1"],
                              out / "bench_threads.log",
                              timeout=400)
    cli_report = out / "tg119_plan" / "report.json"
    timings = json.loads(cli_report.read_text())["timings_s"] if cli_report.exists() else {}

    lines = [f"GPU check {facts['date']}: {facts.get('gpu')}, {facts.get('cpu_cores')} CPU cores, "
             f"CuPy {facts.get('cupy')}, NumPy {facts.get('numpy')}, SciPy {facts.get('scipy')}",
             f"CPU engine: {facts['cpu_kernels']}", "", f"CuPy tests: {tests_line}",
             f"kernel module: {compile_s.get('cold', float('nan')):.2f} s cold (empty cache), "
             f"{compile_s.get('warm', float('nan')):.2f} s warm", "",
             "| measure | GPU | CPU |", "|---|---|---|"]
    g, c = plans.get("gpu", {}), plans.get("cpu", {})

    def cell(d: dict, key: str, fmt: str = ".2f") -> str:
        return format(d[key], fmt) if key in d else "-"

    for label, key, fmt in [("bench_plan tg119 mkm: optimizer influence s", "influence_s", ".2f"),
                            ("optimization s", "optimization_s", ".2f"),
                            ("L-BFGS-B iterations", "iterations", "d"),
                            ("forward dose s", "forward_s", ".2f"),
                            ("total s", "total_s", ".2f"),
                            ("re-optimization s (prescription +5 %, kept matrices)",
                             "reoptimize_s", ".2f"),
                            ("PTV D95 / D5 %", "d95", ".1f"),
                            ("influence entries", "nnz", ","),
                            ("host peak RSS MB", "peak_rss_mb", ".0f"),
                            ("GPU pool MB (about the device peak)", "gpu_pool_mb", ".0f")]:
        if key == "d95":
            lines.append(f"| {label} | {cell(g, 'd95', fmt)} / {cell(g, 'd5', fmt)} | "
                         f"{cell(c, 'd95', fmt)} / {cell(c, 'd5', fmt)} |")
        else:
            lines.append(f"| {label} | {cell(g, key, fmt)} | {cell(c, key, fmt)} |")
    cli = (f"{cli_s:.1f} s wall (rc {rc_cli}); report: "
           + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    lines.append(f"| `ionplan plan` TG-119 DICOM, --device gpu | {cli} | |")
    lines += ["", "CPU engine on threads (bench/bench_threads.py):", "```",
              *[line for line in threads_text.splitlines() if line.strip()][-8:], "```"]
    table = "\n".join(lines)
    print("\n" + table, flush=True)
    (out / "table.md").write_text(table + "\n")
    return 0 if rc_tests == 0 and rc_cli == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
