"""The ``ionplan`` command line.

Every user error (bad argument, unreadable file, energy out of range) ends in one line on stderr,
``ionplan: error: ...``, and a non-zero exit status; no tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from planning.about import VersionAction
from planning.cli_termination import Terminated, TerminationSignals, termination_as_exception
from planning.cli_warnings import terminal_warnings
from planning.dicom.errors import SeriesSelectionError
from planning.errors import IonPlanError
from planning.output_folder import fresh_output_folder
from planning.plan import DEFAULT_PLAN_LABEL, checked_plan_name

if TYPE_CHECKING:
    from planning.batch import JobOutcome
    from planning.compare.comparison import ComparisonResult
    from planning.monitor_calibration import MonitorCalibration
    from planning.plan_estimate import PlanEstimate

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Help of the ``--tissue`` option.
TISSUE_HELP = ("LEM I tissue: chordoma, hsg, v79 or alpha_x,beta_x,D_t; append :averaged (default, "
               "impact-parameter averaged) or :central (Kraemer-Scholz 2006) for the rapid scheme")


class _OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line: ``ionplan: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"ionplan: error: {message} (see '{self.prog} --help')\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def _plan_name(text: str) -> str:
    try:
        return checked_plan_name(text, "the name")
    except IonPlanError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None



@contextlib.contextmanager
def _output_folder(args: argparse.Namespace,
                   inputs: Sequence[str | os.PathLike[str]] = ()) -> Iterator[Path]:
    """:func:`fresh_output_folder` of ``args.out`` that keeps what the run wrote only when no
    SIGTERM or SIGHUP arrived during it: one whose :class:`Terminated` something swallowed
    stops the run here, and the folder is put back as it was (:mod:`planning.cli_termination`).
    """
    signals: TerminationSignals | None = getattr(args, "termination", None)
    with fresh_output_folder(args.out, overwrite=args.overwrite, inputs=inputs) as folder:
        yield folder
        if signals is not None:
            signals.raise_if_received()


def _cmd_depth_dose(args: argparse.Namespace) -> int:
    from planning import api

    if os.path.exists(args.csv) and not args.overwrite:
        raise IonPlanError(f"{args.csv} exists; give another --csv or add --overwrite to "
                           "replace it")
    n_rows = api.write_depth_dose_csv(args.energy, args.csv, machine_path=args.machine)
    print(f"wrote {n_rows} depths for {args.energy:g} MeV/u to {args.csv}")
    return EXIT_OK


def _cmd_machine_info(args: argparse.Namespace) -> int:
    from planning import api

    print(api.machine_summary(args.machine))
    return EXIT_OK


def _cmd_generate_machine(args: argparse.Namespace) -> int:
    from planning import api

    api.generate_generic_machine(args.out, progress=_terminal_progress("generating machine"),
                                 overwrite=args.overwrite)
    print(f"wrote {args.out}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from planning import api

    def run() -> str:
        return api.run_headless_demo(device=args.device, progress=_terminal_progress("demo"),
                                     hlut_path=args.hlut, out_dir=args.out,
                                     overwrite=args.overwrite)

    if args.out is None:
        print(run())
    else:
        with _output_folder(args):
            print(run())
    return EXIT_OK


GuiRunner = Callable[..., int]


def _cmd_gui(args: argparse.Namespace) -> int:
    runner: GuiRunner | None = args.gui_runner
    if runner is None:
        raise IonPlanError("the desktop application is not part of this installation; "
                           "the command-line tools are (ionplan --help)")
    return runner(args.folder, screenshot=args.screenshot)


def _cmd_info(args: argparse.Namespace) -> int:
    from planning import api

    print(api.folder_summary(args.folder))
    return EXIT_OK


def _cmd_demo_patient(args: argparse.Namespace) -> int:
    from planning import api

    files = api.write_demo_patient(args.out_dir, overwrite=args.overwrite)
    print(f"wrote {len(files)} files (CT series and RTSTRUCT) to {args.out_dir}")
    return EXIT_OK


def _cmd_rbe_table(args: argparse.Namespace) -> int:
    from planning import api

    if args.tissue and args.model != "lem1":
        raise IonPlanError(f"--tissue is a LEM I option; --model {args.model} does not use it")
    table = api.rbe_table(args.model, args.ion, args.energies, tissue=args.tissue)
    print(json.dumps(table, indent=1))
    return EXIT_OK


def _check_model_options(args: argparse.Namespace) -> None:
    """Refuse options of another RBE model than the one asked for (they were ignored without
    a word): --rbe-value belongs to --rbe const; --tissue to --rbe lem1 or the exchange view's
    LEM I side. Nothing is checked when --rbe is not given (the plan's own model decides)."""
    if args.rbe is None:
        return
    if args.rbe_value is not None and args.rbe != "const":
        raise IonPlanError(f"--rbe-value is the RBE of --rbe const; --rbe {args.rbe} does not "
                           "use it")
    if args.tissue and args.rbe != "lem1" and not args.exchange:
        raise IonPlanError(f"--tissue is a LEM I option; --rbe {args.rbe} does not use it "
                           "(add --exchange for the LEM I side of the exchange view)")


def _check_robust_options(args: argparse.Namespace, *, robust: bool) -> None:
    """Refuse scenario options that would be ignored (``plan`` without --robust) and a robust
    evaluation without any error scenario (its envelopes would be the nominal dose), before
    any work."""
    given = [name for name, value in (("--range-error", args.range_error),
                                      ("--setup-error", args.setup_error),
                                      ("--setup-directions", args.setup_directions),
                                      ("--combined", args.combined or None),
                                      ("--combined-only", args.combined_only or None))
             if value is not None]
    if not robust:
        if given:
            raise IonPlanError(f"{given[0]} is an option of the robust evaluation; add "
                               "--robust (or leave it out)")
        return
    if args.range_error == 0 and args.setup_error == 0:
        raise IonPlanError("--range-error 0 and --setup-error 0 leave no error scenario: there "
                           "is nothing to evaluate beyond the nominal dose ('ionplan recalc' "
                           "computes it); give a range error, a setup error or both")
    if (args.combined or args.combined_only) and 0 in (args.range_error, args.setup_error):
        zero = "--range-error" if args.range_error == 0 else "--setup-error"
        raise IonPlanError(f"{'--combined-only' if args.combined_only else '--combined'} "
                           f"combines every setup shift with each range error: with {zero} 0 "
                           "there is no combination; leave it out, or give both errors")


def _cmd_plan(args: argparse.Namespace) -> int:
    from planning import api

    _check_model_options(args)
    _check_robust_options(args, robust=args.robust)

    def on_estimate(estimate: PlanEstimate) -> None:
        left_out = [what for what, given in (("the robust evaluation", args.robust),
                                             ("the re-optimizations", args.reoptimize))
                    if given]
        print(_estimate_line(estimate, left_out), flush=True)
        concern = estimate.concern()
        if concern is None:
            return
        # A sentence in the app's dialog; after "ionplan: warning:" in lower case, as the rest.
        concern = concern[:1].lower() + concern[1:]
        if not args.accept_long:
            raise IonPlanError(f"{concern} Nothing was computed: rerun with --accept-long to "
                               "compute it anyway")
        print(f"ionplan: warning: {concern} Computing it (--accept-long).", file=sys.stderr,
              flush=True)

    with _output_folder(args):
        report = api.make_plan(
            args.ct_dir, target=args.target, dose_gy_rbe=args.dose, fractions=args.fractions,
            gantry_deg=args.gantry, couch_deg=args.couch, out_dir=args.out, rbe=args.rbe,
            rbe_value=args.rbe_value, tissue=args.tissue, spot_spacing_mm=args.spot_spacing,
            grid_mm=args.grid, config_path=args.config, device=args.device,
            progress=_terminal_progress("plan"), hlut_path=args.hlut, exchange=args.exchange,
            reoptimize_configs=args.reoptimize or (),
            optimization_grid_mm=args.optimization_grid, ct_series_uid=args.ct_series,
            on_estimate=on_estimate, label=args.label,
            robust=api.robust_settings(**_robust_options(args)) if args.robust else None)
    print(_plan_line(report, args.target, args.dose, args.out))
    if args.robust:  # the line above named every file, the robust ones too
        print(f"robust evaluation in {args.out}: {_robust_summary(report)}")
    _print_warnings(report.get("warnings", ()))
    # Each plan's warnings follow its own line: printed after all the lines, the first plan's
    # under-dose warning read as the last re-optimization's.
    for again in report.get("reoptimized", ()):
        folder = Path(args.out) / again["folder"]
        own = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        print(f"re-optimized with {again['config']} from the kept influence in "
              f"{again['seconds']:.1f} s: {folder}"
              f"{_target_levels(own, args.target, own['prescription']['total_dose_gy_rbe'])}")
        _print_warnings(again.get("own_warnings", ()), about=again["folder"])
    return EXIT_OK


def _print_warnings(warnings: Sequence[str], *, about: str = "") -> None:
    """``warnings`` on stderr, one ``ionplan: warning:`` line each, after ``about: `` (the
    plan they are about, where the terminal shows several) when given. Flushed, to stay
    after the stdout line they follow."""
    sys.stdout.flush()
    for warning in warnings:
        print(f"ionplan: warning: {about + ': ' if about else ''}{warning}", file=sys.stderr,
              flush=True)


def _estimate_line(estimate: PlanEstimate, left_out: Sequence[str]) -> str:
    """``ionplan plan``'s line before the work: the estimate's work, memory and time, and
    what it leaves out (``"the robust evaluation"``, ...)."""
    what = f" (without {' and '.join(left_out)})" if left_out else ""
    return (f"estimate of the plan{what}: {estimate.work_text()}; {estimate.memory_text()}; "
            f"{estimate.time_text()}")


def _plan_line(report: dict[str, Any], target_name: str, prescription: float,
               out: str) -> str:
    """``ionplan plan``'s line: the files written and the target's D98, D95 and D2 (the
    metrics of the plan document, the app and the plan checks) as % of the prescription, in
    the unit of the plan's model (Gy under the physical model, whose prescription is a
    physical dose; else Gy(RBE))."""
    return (f"wrote {', '.join(report['files'][:-1])} and report.json to {out}"
            f"{_target_levels(report, target_name, prescription)}")


def _target_levels(report: dict[str, Any], target_name: str, prescription: float) -> str:
    """The end of a plan's line (:func:`_plan_line`, a re-optimization's): "; PTV D98 92.1 %,
    D95 94.1 %, D2 102.0 % of 57.6 Gy(RBE)", the % of ``prescription`` (Gy(RBE), Gy under the
    physical model); "" when ``report`` has no structure ``target_name``."""
    from planning.rbe.models import dose_unit_of

    # The report names the ROI in its own spelling ("--target ptv" plans on "PTV"), and so
    # does the line (it echoed "ptv" beside warnings about 'PTV').
    roi, target = next(((k, v) for k, v in report["structures"].items()
                        if k.casefold() == target_name.casefold()), (target_name, None))
    if target is None:
        return ""
    p = prescription
    unit = dose_unit_of(str(report.get("rbe_model", "")))
    levels = ", ".join(f"{name} {100 * target[key] / p:.1f} %" for name, key in
                       (("D98", "d98_gy_rbe"), ("D95", "d95_gy_rbe"), ("D2", "d2_gy_rbe")))
    return f"; {roi} {levels} of {p:g} {unit}"


def _cmd_recalc(args: argparse.Namespace) -> int:
    from planning import api
    from planning.rbe.record import short_model_name

    _check_model_options(args)
    with _output_folder(args, inputs=(args.rtplan, args.ct_dir)):
        result = api.recalculate_plan(
            args.ct_dir, args.rtplan, rbe=args.rbe, rbe_value=args.rbe_value,
            tissue=args.tissue, machine_path=args.machine, grid_mm=args.grid,
            hlut_path=args.hlut, device=args.device, exchange=args.exchange, out_dir=args.out,
            progress=_terminal_progress("recalc"), ct_series_uid=args.ct_series,
            monitor_calibration=args.monitor_calibration)
    rep = result.report
    line = (f"wrote {', '.join(rep['files'][:-1])} and report.json to {args.out} "
            f"({rep['rbe_model_source']} RBE model: {short_model_name(rep['rbe_model'])})")
    target = rep["structures"].get(rep["prescription"]["target"])
    if target is not None:
        line += "; " + _target_doses(rep, rep["prescription"]["target"],
                                     [(name, target[key]) for name, key in (
                                         ("D98", "d98_gy_rbe"), ("D95", "d95_gy_rbe"),
                                         ("D2", "d2_gy_rbe"))])
    print(line)
    for warning in rep["warnings"]:
        print(f"ionplan: warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from planning import api

    if args.ct_series is not None and args.ct is None:
        raise IonPlanError("--ct-series chooses the CT series of the --ct folder; give --ct "
                           "CT_DIR too")
    with _output_folder(args, inputs=(args.a, args.b)):
        result = api.compare_doses(
            args.a, args.b, structures=args.ct, criteria=args.gamma or None,
            threshold_percent=args.threshold, quantity=args.quantity,
            prescription_gy=args.prescription, cross_model=not args.no_cross_model,
            device=args.device, progress=_terminal_progress("compare"),
            ct_series_uid=args.ct_series)
        api.write_comparison_report(result, args.out)
    print(f"wrote report.json and report.html to {args.out}; {_comparison_summary(result)}")
    for warning in result.warnings:
        print(f"ionplan: warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _comparison_summary(result: ComparisonResult) -> str:
    """Gamma pass rates and B - A; for a physical and an RBE-weighted dose, why gamma was
    not evaluated and their ratio, the effective RBE."""
    st = result.stats
    if st is None:
        r = result.rbe_ratio_stats
        assert r is not None  # two quantities: their ratio in place of B - A
        return (f"gamma not evaluated: {result.gamma_skipped_reason}; effective RBE "
                f"{result.rbe_ratio_text}: median {r.percentile(50.0):.3f} (5th-95th "
                f"percentile {r.percentile(5.0):.3f}-{r.percentile(95.0):.3f}) where the "
                f"physical dose reaches {r.threshold_percent:g} % of its maximum")
    rates = ", ".join(f"{g.criteria.label} {g.pass_rate_percent:.2f} %" for g in result.gamma)
    return (f"gamma pass rates {rates}; B - A mean {st.mean_gy:+.3g} {result.unit}, max "
            f"|diff| {st.max_abs_gy:.3g} {result.unit} "
            f"({100 * st.max_abs_gy / st.reference_max_gy:.2f} % of A's max)")


#: Defaults of the scenario options (the options default to None, so that ``plan`` can tell
#: those given without --robust).
ROBUST_DEFAULTS = {"range_error": 3.5, "setup_error": 3.0, "setup_directions": 6}


def _robust_options(args: argparse.Namespace) -> dict[str, Any]:
    def value(name: str) -> Any:
        given = getattr(args, name)
        return ROBUST_DEFAULTS[name] if given is None else given

    return {"range_error_pct": value("range_error"), "setup_error_mm": value("setup_error"),
            "setup_directions": value("setup_directions"), "combined": args.combined,
            "combined_only": args.combined_only}


def _written(files: Sequence[str]) -> str:
    """``"A, B and C"``: the files a run wrote, in the order of its report's ``files``."""
    return files[0] if len(files) == 1 else f"{', '.join(files[:-1])} and {files[-1]}"


def _robust_line(rep: dict[str, Any], out: str) -> str:
    """``ionplan robust``'s line: every file the run wrote (report.json's ``files``, which
    :func:`planning.robust.write_robust_outputs` fills from what it wrote), then
    :func:`_robust_summary`."""
    return f"wrote {_written(rep['files'])} to {out}; {_robust_summary(rep)}"


def _robust_summary(rep: dict[str, Any]) -> str:
    """The scenario count and the target's worst-case D95 and D98."""
    text = f"{rep['robust']['n_scenarios']} scenarios"
    target_name = rep["prescription"]["target"]
    target = rep["worst_case"]["structures"].get(target_name)
    if target is not None:
        text += "; " + _target_doses(rep, target_name,
                                     [("D95", target["d95_gy_rbe_min"], target["d95_gy_rbe_max"]),
                                      ("D98 down to", target["d98_gy_rbe_min"])])
    return text


def _target_doses(rep: dict[str, Any], target: str,
                  doses: list[tuple[str, float] | tuple[str, float, float]]) -> str:
    """The target's dose levels for a summary line, as % of the prescription when the
    report's dose is of its kind, else (a recalculation under another kind of model,
    :func:`planning.rbe.prescription_unit_of`) in the dose's unit with the prescription beside
    them (a % of a Gy(RBE) prescription would read as coverage). A prescription whose model
    the report names (``prescription.model``), when it is not the dose's, is said to be of
    that model:
    under another RBE model of the same unit the % are of that model's number, not a coverage
    ("79.3 % of the LEM I chordoma, averaged prescription of 66 Gy(RBE)"). ``doses``: (label,
    dose) or (label, low dose, high dose) for a range."""
    from planning.rbe import dose_unit_of, prescription_unit_of
    from planning.rbe.record import short_model_name

    prescription = float(rep["prescription"]["total_dose_gy_rbe"])
    unit = dose_unit_of(str(rep.get("rbe_model", "")))
    rx_unit = rep["prescription"].get("unit") or prescription_unit_of(  # reports before 2026-12-08
        str(rep.get("plan_rbe_model", rep.get("rbe_model", ""))))
    relative = unit == rx_unit

    def level(dose: float) -> str:
        return f"{100 * dose / prescription:.1f}" if relative else f"{dose:.3g}"

    shown = "%" if relative else unit
    parts = [f"{label} {' to '.join(level(float(d)) for d in levels)} {shown}"
             for label, *levels in doses]
    kind = "physical dose" if unit == "Gy" else "RBE-weighted dose"
    rx_model = rep["prescription"].get("model")
    if rx_model == short_model_name(str(rep.get("rbe_model", ""))):
        rx_model = None  # the dose's own model: nothing to tell apart
    if relative:
        tail = (f" of {prescription:g} {rx_unit}" if not rx_model
                else f" of the {rx_model} prescription of {prescription:g} {rx_unit}")
    else:
        tail = (f" {kind} (prescription {prescription:g} {rx_unit})" if not rx_model
                else f" {kind} (the {rx_model} prescription of {prescription:g} {rx_unit})")
    return f"{target} {', '.join(parts)}{tail}"


def _cmd_robust(args: argparse.Namespace) -> int:
    from planning import api

    _check_model_options(args)
    _check_robust_options(args, robust=True)
    if args.exchange:
        raise IonPlanError("--exchange is not an option of robust; run 'ionplan recalc "
                           "--exchange' for the mMKM / LEM I view")
    with _output_folder(args, inputs=(args.rtplan, args.ct_dir)):
        result = api.robust_evaluation(
            args.ct_dir, args.rtplan, rbe=args.rbe, rbe_value=args.rbe_value,
            tissue=args.tissue, machine_path=args.machine, grid_mm=args.grid,
            hlut_path=args.hlut, device=args.device, scheduler=args.scheduler,
            out_dir=args.out, progress=_terminal_progress("robust"), verbose=args.verbose,
            ct_series_uid=args.ct_series, monitor_calibration=args.monitor_calibration,
            **_robust_options(args))
    print(_robust_line(result.report, args.out))
    for warning in result.report["warnings"]:
        print(f"ionplan: warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _cmd_batch(args: argparse.Namespace) -> int:
    from planning import batch

    if args.example:
        print(batch.EXAMPLE_JOBS, end="")
        return EXIT_OK
    if args.jobs is None or args.out is None:
        raise IonPlanError("give the jobs file and --out (or --example for a jobs file)")
    if not args.verbose:
        from planning.distributed import quiet_logs

        quiet_logs()
    result = batch.run_batch(args.jobs, args.out, scheduler=args.scheduler,
                             workers=args.workers, rerun=args.rerun,
                             progress=_terminal_progress("batch"), on_job=_print_job)
    if result.kept:
        print(f"ionplan: note: {len(result.kept)} job folder(s) in {args.out} are not in this "
              f"jobs file ({', '.join(o.name for o in result.kept)}): their rows from their "
              "earlier run stay in the summary, with status 'kept'", file=sys.stderr)
    for job, names in result.missing_structures().items():
        print(f"ionplan: note: job {job!r} has no row for {', '.join(names)}, which other jobs "
              "report (not in its patient's structures, or no dose-grid voxels)",
              file=sys.stderr)
    counts = result.counts()
    print(f"wrote summary.csv and summary.json to {args.out}: " + ", ".join(
        f"{n} {status}" for status, n in counts.items() if n))
    return EXIT_OK if counts.get("error", 0) == 0 else EXIT_ERROR


def _print_job(outcome: JobOutcome) -> None:
    """A batch job's line on stderr, then its warnings, each naming the job."""
    print(f"ionplan: {outcome.line()}", file=sys.stderr)
    for line in outcome.warning_lines():
        print(f"ionplan: warning: {line}", file=sys.stderr)


def _gamma_criterion(text: str) -> tuple[float, float]:
    parts = text.replace("/", ",").replace("%", "").replace("mm", "").split(",")
    try:
        dose, dta = (float(x) for x in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give dose %,distance mm, e.g. 3,3") from None
    if not (0 < dose <= 100 and 0 < dta <= 50):
        raise argparse.ArgumentTypeError(f"{text!r}: the dose criterion must lie in (0, 100] % "
                                         "and the distance in (0, 50] mm")
    return dose, dta


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"{text!r} must lie in [0, 100) %")
    return value


def _angle_list(text: str) -> list[float]:
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or "" in parts:  # "90,,180" made two beams of three
        raise argparse.ArgumentTypeError(f"{text!r}: an empty angle; give angles in degrees "
                                         "separated by commas, e.g. 90,270")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         "angles in degrees") from None
    out_of_range = [v for v in values if not (math.isfinite(v) and abs(v) <= 360)]
    if out_of_range:
        raise argparse.ArgumentTypeError(f"{text!r}: angle {out_of_range[0]:g} deg lies "
                                         "outside -360..360")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _energy_list(text: str) -> list[float]:
    values = [_positive_float(part) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("give at least one energy, e.g. 10,50,100,290")
    return values


def _terminal_progress(label: str) -> Callable[[float, str], None] | None:
    """A progress callback drawing a one-line bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def report(fraction: float, stage: str) -> None:
        width = 30
        filled = round(width * min(max(fraction, 0.0), 1.0))
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{label}: [{bar}] {100 * fraction:5.1f}% {stage[:40]:<40}")
        if fraction >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return report


def _add_robust_options(p: argparse.ArgumentParser) -> None:
    """The scenario options of ``robust`` and ``plan --robust`` (defaults:
    :data:`ROBUST_DEFAULTS`)."""
    p.add_argument("--range-error", type=_percent, metavar="PERCENT",
                   help="range error: stopping power scaled by 1 +/- this (default 3.5 %%; "
                        "0: no range scenarios)")
    p.add_argument("--setup-error", type=_non_negative_float, metavar="MM",
                   help="setup error: isocentre shift (default 3 mm; 0: no setup scenarios; "
                        "not both 0)")
    p.add_argument("--setup-directions", type=int, choices=(6, 14),
                   help="6 (+/-x, +/-y, +/-z, the default) or 14 (and the 8 diagonals) shift "
                        "directions")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--combined", action="store_true",
                       help="the single-error scenarios and also every setup shift with each "
                            "range error (21 scenarios with 6 directions)")
    which.add_argument("--combined-only", action="store_true",
                       help="instead of --combined: the nominal scenario and every setup shift "
                            "with each range error only, without the single-error ones (13 "
                            "scenarios with 6 directions)")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _add_dose_options(p: argparse.ArgumentParser, *, rbe_default: str | None,
                      rbe_help: str, exchange: bool = True) -> None:
    """Options shared by ``plan``, ``recalc`` and ``robust``: RBE model, grid, HLUT, device,
    exchange (not robust's: ``exchange=False`` keeps it out of the help and usage, and
    :func:`_cmd_robust` refuses it with a pointer to ``recalc --exchange``), output folder."""
    p.add_argument("--rbe", choices=("mkm", "lem1", "const", "physical"), default=rbe_default,
                   help=rbe_help)
    p.add_argument("--rbe-value", type=_positive_float, metavar="X",
                   help="the RBE of --rbe const")
    p.add_argument("--tissue", help=TISSUE_HELP)
    p.add_argument("--grid", type=_positive_float, default=2.5, metavar="MM",
                   help="dose grid spacing (default 2.5 mm; coarser grids cannot resolve a carbon "
                        "plan between their points and get a warning)")
    p.add_argument("--hlut", metavar="CSV",
                   help="HU to relative stopping power curve (hu,rsp; default: the shipped "
                        "generic curve); report.json records it under 'hlut'")
    _add_ct_series_option(p, "CT_DIR")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="dose engine device (auto: a CUDA GPU when there is one)")
    p.add_argument("--exchange", action="store_true",
                   help=("also evaluate the plan under mMKM and LEM I side by side "
                         "(RTDOSE_RBE_MKM.dcm, RTDOSE_RBE_LEM1.dcm, report 'exchange')")
                   if exchange else argparse.SUPPRESS)
    _add_out_options(p)


def _monitor_calibration(text: str) -> MonitorCalibration:
    from planning.monitor_calibration import parse_monitor_calibration

    try:
        return parse_monitor_calibration(text)
    except IonPlanError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_monitor_calibration_option(p: argparse.ArgumentParser) -> None:
    """``--particles-per-mu``: the machine's monitor calibration, for plans in MU."""
    p.add_argument("--particles-per-mu", type=_monitor_calibration, metavar="N[@E]|FILE.csv",
                   dest="monitor_calibration",
                   help="for a plan whose metersets are in MU: particles per MU, measured at "
                        "E MeV/u (N@E, other energies by the stopping power of air), a CSV "
                        "table 'energy_MeV_u,particles_per_MU', or one N for every energy")


def _add_ct_series_option(p: argparse.ArgumentParser, folder: str, *,
                          folder_option: str | None = None) -> None:
    """``--ct-series UID``: the CT series to load from a folder that holds several.

    ``folder`` names the folder as the help reads it (``"CT_DIR"``, the positional
    argument); ``folder_option`` is the option that gives it, when it is one (compare's
    ``--ct CT_DIR``): ``ionplan info`` takes the folder itself, not the option."""
    where = f"the {folder_option} folder" if folder_option else folder
    p.add_argument("--ct-series", metavar="UID",
                   help=f"Series Instance UID of the CT series to load when {where} holds "
                        f"several ('ionplan info {folder}' lists them)")


def _selection_hint(args: argparse.Namespace, exc: SeriesSelectionError) -> str:
    """What to do about several CT series or structure sets, in this command's options."""
    if exc.kind != "CT series":
        return ("keep only the RT Structure Set to use in the folder and its sub-folders "
                "(all of them are read)")
    if not hasattr(args, "ct_series"):
        return "keep only one CT series in the folder"
    if args.command == "compare" and args.ct is None:
        return "give that folder with --ct and one of these series with --ct-series UID"
    return "choose one with --ct-series UID"


def _add_out_options(p: argparse.ArgumentParser) -> None:
    """``--out`` (checked before any work: planning.output_folder) and ``--overwrite``."""
    p.add_argument("--out", required=True, metavar="OUT_DIR",
                   help="output folder (made if missing); one that holds an earlier run's "
                        "files is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier run in OUT_DIR (kept if this run fails)")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="ionplan",
        description="IonPlan: carbon-ion treatment planning. With no command, opens the desktop "
                    "application on the patient open last (the demo patient the first time).",
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", parser_class=_OneLineParser)

    p = sub.add_parser("depth-dose", help="write the depth dose of one pencil beam in water")
    p.add_argument("--energy", type=_positive_float, required=True, metavar="MEV_U",
                   help="kinetic energy per nucleon (MeV/u), inside the machine's range")
    p.add_argument("--csv", required=True, metavar="FILE",
                   help="output CSV with columns depth_mm,idd,letd_kev_um")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")
    p.add_argument("--machine", metavar="FILE",
                   help="machine file (.npz IonPlan or .mat matRad); default: generic carbon")
    p.set_defaults(func=_cmd_depth_dose)

    p = sub.add_parser("machine-info", help="summarise a machine file")
    p.add_argument("--machine", metavar="FILE", help="machine file; default: generic carbon")
    p.set_defaults(func=_cmd_machine_info)

    p = sub.add_parser("generate-machine", help="regenerate the generic carbon machine file")
    p.add_argument("out", metavar="OUT.npz")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.npz if it exists")
    p.set_defaults(func=_cmd_generate_machine)

    p = sub.add_parser("gui", help="open the desktop application (the default with no command)")
    p.add_argument("folder", nargs="?", metavar="DIR",
                   help="DICOM folder to open; default: the patient open last (the demo "
                        "patient the first time)")
    p.add_argument("--screenshot", metavar="PNG",
                   help="open, render the main window, save it to PNG and exit (smoke test)")
    p.set_defaults(func=_cmd_gui)

    p = sub.add_parser("demo", help="headless end-to-end demo plan on the demo patient")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--hlut", metavar="CSV", help="HU to relative stopping power curve (hu,rsp)")
    p.add_argument("--out", metavar="DIR",
                   help="folder for the demo patient, RTPLAN.dcm and RTDOSE_PHYSICAL.dcm "
                        "(made when missing; refused when it holds other DICOM files)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier demo's files in --out")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("info", help="list the DICOM series and structures in a folder")
    p.add_argument("folder", metavar="DIR")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("demo-patient", help="write the demo patient as DICOM CT + RTSTRUCT")
    p.add_argument("out_dir", metavar="OUT_DIR",
                   help="folder to write into (made when missing; refused when it holds other "
                        "DICOM files)")
    p.add_argument("--overwrite", action="store_true",
                   help="write the demo patient again where OUT_DIR already holds it")
    p.set_defaults(func=_cmd_demo_patient)

    p = sub.add_parser("rbe-table", help="LQ parameters of an ion under an RBE model (JSON)")
    p.add_argument("--model", choices=("mkm", "lem1"), required=True)
    p.add_argument("--ion", default="C", help="H, He, Li, Be, B or C (default C)")
    p.add_argument("--energies", type=_energy_list, required=True, metavar="E1,E2,...",
                   help="kinetic energies per nucleon, MeV/u")
    p.add_argument("--tissue", help=TISSUE_HELP)
    p.set_defaults(func=_cmd_rbe_table)

    p = sub.add_parser("plan", help="optimize a carbon-ion plan on a CT and export DICOM RT")
    p.add_argument("ct_dir", metavar="CT_DIR", help="folder with the CT and its RTSTRUCT")
    p.add_argument("--target", required=True, metavar="ROI", help="target structure name")
    p.add_argument("--label", type=_plan_name, default=DEFAULT_PLAN_LABEL, metavar="NAME",
                   help=f"the plan's name: RT Plan Name (up to 64 characters) and RT Plan "
                        f"Label (its first 16), the plan document and its file name (default "
                        f"{DEFAULT_PLAN_LABEL!r})")
    p.add_argument("--dose", type=_positive_float, required=True, metavar="DOSE",
                   help="total prescribed dose, all fractions: Gy(RBE), or Gy under "
                        "--rbe physical")
    p.add_argument("--fractions", type=_positive_int, required=True, metavar="N",
                   help="number of fractions")
    p.add_argument("--gantry", type=_angle_list, required=True, metavar="G1,G2,...",
                   help="gantry angle of each beam, degrees")
    p.add_argument("--couch", type=_angle_list, metavar="C1,C2,...",
                   help="couch angle of each beam (default 0)")
    p.add_argument("--spot-spacing", type=_positive_float, default=3.0, metavar="MM",
                   help="lateral distance between neighbouring spots of an energy layer "
                        "(default 3 mm; one above twice the smallest in-air spot sigma gets "
                        "a warning)")
    p.add_argument("--optimization-grid", type=_positive_float, default=None, metavar="MM",
                   help="spacing of the points the optimizer fits the dose at, finer than the "
                        "dose grid inside and around the target (default: half the dose grid)")
    p.add_argument("--config", metavar="PLAN_FILE",
                   help="objectives file, TOML or JSON (see planning.plan_config)")
    p.add_argument("--reoptimize", action="append", metavar="PLAN_FILE",
                   help="then re-optimize from the kept influence with this objectives file "
                        "into OUT/reoptimized_<k>, starting from the previous plan's spot "
                        "weights (repeatable: each continues from the one before)")
    _add_dose_options(p, rbe_default="mkm", rbe_help="RBE model (default mkm)")
    p.add_argument("--robust", action="store_true",
                   help="also evaluate the plan's robustness (see 'ionplan robust')")
    p.add_argument("--accept-long", action="store_true",
                   help="compute the plan even when its estimate (printed before any long "
                        "step) says it takes over 10 minutes or more memory than is "
                        "available; without it such a plan is refused")
    _add_robust_options(p)
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("recalc", help="forward dose of an RT Ion Plan on its CT")
    p.add_argument("ct_dir", metavar="CT_DIR", help="folder with the CT and its RTSTRUCT")
    p.add_argument("rtplan", metavar="RTPLAN.dcm", help="the RT Ion Plan to recalculate")
    p.add_argument("--machine", metavar="FILE",
                   help="machine file (.npz IonPlan or .mat matRad); default: generic carbon")
    _add_monitor_calibration_option(p)
    _add_dose_options(p, rbe_default=None, rbe_help="RBE model (default: the plan's, else mkm)")
    p.set_defaults(func=_cmd_recalc)

    p = sub.add_parser("compare", help="compare two doses: differences, gamma, DVHs, models")
    p.add_argument("a", metavar="A", help="reference: RT Dose file or plan output folder")
    p.add_argument("b", metavar="B", help="evaluated: RT Dose file or plan output folder")
    p.add_argument("--ct", metavar="CT_DIR", help="CT with structures for DVH metrics "
                                                  "(default: a CT found in A's or B's folder)")
    p.add_argument("--gamma", type=_gamma_criterion, action="append", metavar="DOSE%,MM",
                   help="gamma criterion, repeatable (default: --gamma 3,3 --gamma 2,2)")
    p.add_argument("--threshold", type=_percent, default=10.0, metavar="PERCENT",
                   help="low-dose threshold, %% of A's maximum (default 10; of the physical "
                        "dose's maximum for the effective RBE of a physical and an "
                        "RBE-weighted dose)")
    p.add_argument("--quantity", choices=("rbe", "physical", "mkm", "lem1"), default="rbe",
                   help="dose of a plan folder to compare (default rbe)")
    p.add_argument("--prescription", type=_positive_float, metavar="GY",
                   help="total prescription for V95 and %% of prescription "
                        "(default: the plan's)")
    p.add_argument("--no-cross-model", action="store_true",
                   help="skip the mMKM / LEM I view of plan sides (it recalculates them)")
    _add_ct_series_option(p, "CT_DIR", folder_option="--ct")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="dose engine device of the cross-model view")
    _add_out_options(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("robust", help="robust evaluation of an RT Ion Plan: range and setup "
                                      "error scenarios, DVH bands, worst-case doses")
    p.add_argument("ct_dir", metavar="CT_DIR", help="folder with the CT and its RTSTRUCT")
    p.add_argument("rtplan", metavar="RTPLAN.dcm", help="the RT Ion Plan to evaluate")
    p.add_argument("--machine", metavar="FILE",
                   help="machine file (.npz IonPlan or .mat matRad); default: generic carbon")
    _add_monitor_calibration_option(p)
    _add_robust_options(p)
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the scenarios on this Dask scheduler (tcp://HOST:PORT)")
    _add_dose_options(p, rbe_default=None, rbe_help="RBE model (default: the plan's, else mkm)",
                      exchange=False)
    p.set_defaults(func=_cmd_robust)

    p = sub.add_parser("batch", help="run plan/recalc/compare/exchange/robust jobs of many "
                                     "patients on a Dask cluster; summary.csv, summary.json")
    p.add_argument("jobs", nargs="?", metavar="JOBS.toml", help="the jobs ([[job]] tables)")
    p.add_argument("--out", metavar="OUT_DIR", help="one folder per job and the summary")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask scheduler (tcp://HOST:PORT); default: a local "
                        "cluster of worker processes")
    p.add_argument("--workers", type=_positive_int, metavar="N",
                   help="worker processes of the local cluster (default: one per core)")
    p.add_argument("--rerun", action="store_true", help="run finished jobs again")
    p.add_argument("--example", action="store_true", help="print an example jobs file")
    p.set_defaults(func=_cmd_batch)
    return parser


def main(argv: Sequence[str] | None = None, *, gui: GuiRunner | None = None) -> int:
    """Run one ``ionplan`` command; returns the exit status.

    ``gui(folder, screenshot=...)`` opens the desktop application (``ionplan gui``, and
    ``ionplan`` with no command). It is passed in by :mod:`app.launcher`, the console script,
    because planning never imports the GUI.
    """
    parser = build_parser()
    parser.set_defaults(gui_runner=gui)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        args = parser.parse_args(["gui"])
        args.gui_runner = gui
    try:
        if args.command == "gui":
            return args.func(args)
        with termination_as_exception() as signals, (  # batch prints its jobs' warnings by job
                contextlib.nullcontext() if args.command == "batch" else terminal_warnings()):
            args.termination = signals
            status: int = args.func(args)
            signals.raise_if_received()  # one whose exception was swallowed on its way up
            return status
    except Terminated as exc:
        print(f"ionplan: terminated ({signal.Signals(exc.signum).name})", file=sys.stderr)
        return 128 + exc.signum
    except SeriesSelectionError as exc:
        print(f"ionplan: error: {exc}; {_selection_hint(args, exc)}", file=sys.stderr)
        return EXIT_ERROR
    except IonPlanError as exc:
        print(f"ionplan: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours; silence the final flush.
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ionplan: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("ionplan: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
