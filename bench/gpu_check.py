"""The GPU check: CuPy tests and the engine benchmarks on one CUDA machine, one table.

Run by bench/gpu_check.sh (which installs carried wheels and builds the CPU extensions first).
Steps, each in a fresh process so that timings and memory are its own, most wanted first:

1. the CuPy-vs-NumPy tests (every GPU kernel against its NumPy twin) and a whole plan on the
   GPU against the CPU plan (tests/test_gpu_plan.py; the CPU stand-in's variants run too);
2. the kernel module's compilation: cold (empty CuPy kernel cache) and warm (cache filled);
3. bench/bench_plan.py --case tg119 --model mkm on the GPU;
4. ``ionplan plan`` on the TG-119-sized phantom written as DICOM (bench/tg119_dicom.py), on the
   GPU: wall time including CT load and export;
5. bench/bench_plan.py --case tg119 --model mkm on the CPU;
6. bench/bench_influence.py --device all (whole-body TG-119-sized influence, CPU and GPU);
7. bench/bench_threads.py: the CPU engine on 1, 2, 4, 8, 16 threads (influence, forward pass,
   the optimizer's products), for the scaling the GPU-engine issue asks of every CPU core;
8. with ``--profile``, a cProfile of ``ionplan plan`` on the GPU with warm caches.

A lent machine runs one command for at most 10 minutes and brings back at most 8 files from
``$OUT``: the steps share a time budget (``--budget-s``, default 480 s; a step that cannot
finish in what is left is skipped and the table says so, so the table is always printed), and
``--out`` (default $OUT or /tmp/gpu_check) receives only ``table.md``, ``gpu_check.log`` (every
step's command, exit status, time and output) and, with ``--profile``, ``profile_plan.txt``;
DICOM, plans and JSON go to a scratch folder. Prints each step's output tail and the table
(Markdown, for docs/benchmarks.md).
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


class Steps:
    """Runs the steps in fresh processes within one time budget, into one log."""

    def __init__(self, log: Path, budget_s: float) -> None:
        self.log, self.deadline = log, time.perf_counter() + budget_s
        self.skipped: list[str] = []
        log.write_text("")

    def run(self, name: str, cmd: list[str], *, need_s: float, timeout_s: float,
            env: dict[str, str] | None = None) -> tuple[int | None, str, float]:
        """Run ``cmd`` if at least ``need_s`` of the budget is left, for at most ``timeout_s``
        and what is left. Returns (exit status or None when skipped, output, seconds)."""
        left = self.deadline - time.perf_counter()
        if left < need_s:
            self.skipped.append(name)
            print(f"# {name}: skipped ({left:.0f} s of the budget left, needs {need_s:.0f})",
                  flush=True)
            return None, "", 0.0
        limit = min(timeout_s, left)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env,
                               timeout=limit)
            rc, out = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as exc:
            rc = 124
            out = (f"timed out after {limit:.0f} s\n{_text(exc.stdout)}{_text(exc.stderr)}")
        seconds = time.perf_counter() - t0
        head = f"$ {' '.join(cmd)}  -> rc {rc}, {seconds:.1f} s"
        with self.log.open("a") as fh:
            fh.write(f"\n===== {name}\n{head}\n{out}\n")
        print(f"{head}\n{out[-3000:]}", flush=True)
        return rc, out, seconds


def _text(x: str | bytes | None) -> str:
    if x is None:
        return ""
    return x.decode(errors="replace") if isinstance(x, bytes) else x


def _compile_times(steps: Steps) -> dict[str, float]:
    """Seconds to get the kernel module with an empty and with a filled kernel cache."""
    code = ("import time; t=time.perf_counter(); from kernels.pencil_beam_gpu import warm_up; "
            "warm_up(); import cupy; cupy.cuda.Device().synchronize(); "
            "print(time.perf_counter()-t)")
    times = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "CUPY_CACHE_DIR": cache}
        for label in ("cold", "warm"):
            rc, text, _ = steps.run(f"kernel compilation, {label}", [sys.executable, "-c", code],
                                    need_s=20, timeout_s=120, env=env)
            times[label] = float(text.strip().splitlines()[-1]) if rc == 0 else float("nan")
    return times


def _facts() -> dict[str, object]:
    facts: dict[str, object] = {"date": time.strftime("%Y-%m-%d"),
                                "python": platform.python_version(), "cpu_cores": os.cpu_count()}
    import numpy
    import scipy

    facts.update(numpy=numpy.__version__, scipy=scipy.__version__)
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        facts.update(gpu=props["name"].decode(), gpu_memory_gib=props["totalGlobalMem"] / 2**30,
                     cupy=cupy.__version__)
    except Exception as exc:  # the table says why the GPU part is missing
        facts["gpu"] = f"none ({exc.__class__.__name__}: {exc})"
    sys.path.insert(0, str(REPO))
    from planning.about import cpu_kernels

    facts["cpu_kernels"] = cpu_kernels()  # built by gpu_check.sh (bench/build_extensions.py)
    return facts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/gpu_check")))
    ap.add_argument("--budget-s", type=float, default=480.0,
                    help="seconds all steps may take together (default 480)")
    ap.add_argument("--profile", action="store_true",
                    help="also profile `ionplan plan` on the GPU (cProfile, warm caches)")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ionplan-gpu-check-"))
    steps = Steps(out / "gpu_check.log", args.budget_s)
    py = sys.executable
    facts = _facts()
    print(json.dumps(facts), flush=True)

    rc_tests, text, _ = steps.run(
        "GPU tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                      "tests/test_pencil_beam_kernel.py", "tests/test_engine.py",
                      "tests/test_influence.py", "tests/test_wepl.py",
                      "tests/test_rbe_mixing.py", "tests/test_gpu_plan.py"],
        need_s=60, timeout_s=240)
    tests_line = (text.strip().splitlines() or ["not run"])[-1]
    compile_s = _compile_times(steps)
    plans: dict[str, dict] = {}

    def bench_plan(device: str) -> None:
        js = work / f"plan_{device}.json"
        steps.run(f"bench_plan tg119 mkm, {device}",
                  [py, "bench/bench_plan.py", "--case", "tg119", "--model", "mkm", "--device",
                   device, "--json", str(js)], need_s=60, timeout_s=300)
        done = json.loads(js.read_text()) if js.exists() else []
        if done:  # empty when the plan failed: its log says why, the table shows "-"
            plans[device] = done[0]

    bench_plan("gpu")
    dicom = work / "tg119_dicom"
    steps.run("TG-119 DICOM", [py, "bench/tg119_dicom.py", str(dicom)], need_s=30,
              timeout_s=120)
    plan_cli = [py, "-m", "planning.cli", "plan", str(dicom), "--target", "PTV", "--dose", "60",
                "--fractions", "20", "--gantry", "90,270", "--grid", "3", "--spot-spacing", "5",
                "--device", "gpu", "--out"]
    rc_cli, _, cli_s = steps.run("ionplan plan, gpu", [*plan_cli, str(work / "tg119_plan")],
                                 need_s=45, timeout_s=300)
    bench_plan("cpu")
    steps.run("bench_influence, all devices", [py, "bench/bench_influence.py", "--device", "all"],
              need_s=60, timeout_s=240)
    _, threads_text, _ = steps.run("bench_threads", [py, "bench/bench_threads.py", "--repeat",
                                                     "1"], need_s=90, timeout_s=400)
    if args.profile:
        prof = work / "plan.prof"
        rc_prof, _, _ = steps.run("ionplan plan, gpu, profiled",
                                  [py, "-m", "cProfile", "-o", str(prof), *plan_cli[1:],
                                   str(work / "tg119_plan_profiled")], need_s=60, timeout_s=300)
        if rc_prof == 0:
            _, stats, _ = steps.run(
                "profile", [py, "-c", "import pstats,sys; p=pstats.Stats(sys.argv[1]); "
                            "p.sort_stats('cumulative').print_stats(45); "
                            "p.sort_stats('tottime').print_stats(25)", str(prof)],
                need_s=5, timeout_s=60)
            (out / "profile_plan.txt").write_text(stats)
    cli_report = work / "tg119_plan" / "report.json"
    timings = json.loads(cli_report.read_text())["timings_s"] if cli_report.exists() else {}

    lines = [f"GPU check {facts['date']}: {facts.get('gpu')}, {facts.get('cpu_cores')} CPU cores, "
             f"CuPy {facts.get('cupy')}, NumPy {facts.get('numpy')}, SciPy {facts.get('scipy')}",
             f"CPU engine: {facts['cpu_kernels']}", "", f"CuPy tests: {tests_line}",
             f"kernel module: {compile_s.get('cold', float('nan')):.2f} s cold (empty cache), "
             f"{compile_s.get('warm', float('nan')):.2f} s warm",
             f"skipped for time: {', '.join(steps.skipped) or 'none'}", "",
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
    cli = ("not run" if rc_cli is None else
           f"{cli_s:.1f} s wall (rc {rc_cli}); report: "
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
