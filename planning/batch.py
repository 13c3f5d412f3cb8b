"""Cohort runs: many plan / recalc / compare / exchange / robust jobs on a Dask cluster
(``ionplan batch JOBS.toml --out DIR``).

The jobs file holds ``[[job]]`` tables (and an optional ``[defaults]`` table merged into each):
``name``, ``kind``, ``ct`` (the patient folder), ``plan`` (an RT Ion Plan, for recalc,
exchange and robust), ``a`` and ``b`` (RT Dose files or plan folders, for compare) and the
options of the matching command by their long names (``target``, ``dose``, ``fractions``,
``gantry``, ``rbe``, ``grid``, ...; ``-`` or ``_`` alike). Relative paths are relative to the
jobs file. :data:`EXAMPLE_JOBS` is a complete example.

Each job is one task on the cluster (:func:`run_job`). It writes into a hidden folder
``.NAME.partial-XXXX`` beside its final folder and renames it to ``NAME`` when everything,
``job.json`` last, is written: a job folder is complete or absent. A job's error (unreadable
DICOM, missing target, bad option) is caught in the job and recorded with its one-line message;
the other jobs go on. Its warnings (its reports', what planning and pydicom log at WARNING
and the Python warnings made while it runs, its robust scenario tasks' too:
:mod:`planning.log_capture`) come back with its outcome, each once, and are kept in job.json,
for the command line to print with the job's name. What needs no computing (the kind, option
names and types, paths that do not exist, numbers that must be above 0, the RBE model and
LEM I tissue) is checked when the file is read: such a job is reported as failed before any
job runs. A job that fails leaves the folder of its earlier run, if any, as it was, but marks
its job.json (``last_run_failed``) and says so in its error (:func:`keep_previous`). A finished
job (``NAME/job.json`` with status ok, the same options and, for a job
that evaluates LEM I, the same LEM I model once its defaults are resolved) is skipped unless
``rerun`` or its last run failed. Robust jobs run their scenarios as further tasks on the
same cluster.

A job whose ``plan`` (recalc, exchange, robust: the RTPLAN.dcm in that job's folder) or ``a``
or ``b`` (compare) names another job reads that job's folder: it runs after that job wherever
the two are listed (:func:`schedule_jobs`), its signature holds that job's, and it is skipped
only when that job is skipped too, so it never reports numbers of an older run. It fails,
without running, when that job fails or cannot run. A path into the folder of a job of the
file in ``--out`` (``run1/p01-plan/RTPLAN.dcm``) is that job, with the same order. A cycle, a
``plan`` naming a compare job, or a name that is neither a job nor a folder of ``--out`` nor a
path beside the jobs file, stops the batch before any job runs.

The summary (``summary.csv``, ``summary.json``, written atomically at the end) has a row per
job and structure (:data:`SUMMARY_COLUMNS`), with the number of the job's warnings; a job
without structures, or one that failed, has one row with an empty structure. The finished job
folders of ``--out`` that this jobs file does not name (an earlier run with another jobs file)
keep their rows, from their job.json, after this file's jobs, with status ``kept``
(:func:`kept_outcomes`). summary.csv gives
doses to :data:`CSV_DOSE_DECIMALS` decimals and gamma pass rates to
:data:`CSV_PASS_RATE_DECIMALS`, summary.json every digit.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import shutil
import time
import tomllib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from planning.atomic import atomic_write_text
from planning.errors import InputError, IonPlanError
from planning.monitor_calibration import MonitorCalibration, parse_monitor_calibration
from planning.plan import checked_plan_name
from planning.progress import ProgressCallback, report
from planning.rbe import DEFAULT_TISSUES, LemModel, parse_tissue
from planning.rbe.record import short_model_name
from planning.robust_tables import dose_unit

log = logging.getLogger(__name__)

KINDS = ("plan", "recalc", "compare", "exchange", "robust")

#: Columns of summary.csv; summary.json's rows have the same keys. ``a`` metrics are the
#: job's dose (plan, recalc), mMKM (exchange), A (compare) or the nominal scenario (robust);
#: ``b`` metrics LEM I (exchange), B (compare) or the worst case over the scenarios (robust:
#: a target's lowest D98/D95/D50 and highest D2/mean/max, any other structure's highest of
#: each, :func:`planning.robust_tables.worst_case_metrics`); ``diff_*`` = b - a. ``b_is``
#: says what side b is (:data:`B_OTHER_MODEL`, :data:`B_COMPARED`, or for robust e.g.
#: ``"worst of 9 scenarios: max of each (range ±3.5 %, setup 3 mm in 6 directions)"``);
#: ``model`` and ``model_b`` are always the models of the doses (a robust job's worst case is
#: under the plan's model, as its nominal dose). The dose columns (``d98`` ... ``max``, their
#: ``_b`` and ``diff_``) name no unit: ``unit`` and ``unit_b`` say what those of a and b hold,
#: ``"Gy(RBE)"``, or ``"Gy"`` for a physical dose (they were ``*_gy_rbe`` until 2026-12-07,
#: Gy or not; rows of job.json files written before are read under the new names).
#: ``warnings`` is the number of the job's warnings (:attr:`JobOutcome.warnings`, listed in
#: its job.json), on each of its rows, so that a cohort's warned jobs can be found at a glance.
#: ``patient_id`` and the prescription (``target``, ``prescription_dose`` in
#: ``prescription_unit``, ``fractions``, ``prescription_model``) are those of the job's
#: report.json (:func:`_context`; a compare job's: side A's plan's, else B's).
SUMMARY_COLUMNS = (
    "job", "kind", "status", "error", "seconds", "warnings", "patient_id", "target",
    "prescription_dose", "prescription_unit", "fractions", "prescription_model", "structure",
    "model", "unit", "d98", "d95", "d50", "d2", "mean", "max",
    "b_is", "model_b", "unit_b", "d98_b", "d95_b", "d50_b", "d2_b", "mean_b", "max_b",
    "diff_d98", "diff_d95", "diff_d50", "diff_d2", "diff_mean", "diff_max",
    "gamma_criteria", "gamma_pass_pct", "gamma2_criteria", "gamma2_pass_pct",
)
#: ``b_is`` of an exchange job's rows: the plan's spots under the other model (LEM I).
B_OTHER_MODEL = "other model, same spots"
#: ``b_is`` of a compare job's rows.
B_COMPARED = "dose B of the comparison"
#: The metrics' keys in reports (and in rows given to :func:`_row`) and their summary columns.
_METRICS = ("d98_gy_rbe", "d95_gy_rbe", "d50_gy_rbe", "d2_gy_rbe", "mean_gy_rbe", "max_gy_rbe")
_DOSES = {k: k.removesuffix("_gy_rbe") for k in _METRICS}
#: The summary's dose columns (a, b and b - a), and the names they had before 2026-12-07.
_DOSE_COLUMNS = frozenset(c for d in _DOSES.values() for c in (d, f"{d}_b", f"diff_{d}"))
_FORMER_NAMES = {former: now for k, d in _DOSES.items() for former, now in
                 ((k, d), (f"{k}_b", f"{d}_b"), (f"diff_{k}", f"diff_{d}"))}

#: Options each kind accepts besides name, kind and ct (long option names, ``_`` for ``-``).
OPTIONS: dict[str, frozenset[str]] = {
    "plan": frozenset({"target", "dose", "fractions", "gantry", "couch", "rbe", "rbe_value",
                       "tissue", "spot_spacing", "grid", "config", "hlut", "device",
                       "exchange", "ct_series", "label"}),
    "recalc": frozenset({"plan", "rbe", "rbe_value", "tissue", "machine", "grid", "hlut",
                         "device", "ct_series", "particles_per_mu"}),
    "exchange": frozenset({"plan", "tissue", "machine", "grid", "hlut", "device", "ct_series",
                           "particles_per_mu"}),
    "robust": frozenset({"plan", "range_error", "setup_error", "setup_directions", "combined",
                         "combined_only",
                         "rbe", "rbe_value", "tissue", "machine", "grid", "hlut", "device",
                         "ct_series", "particles_per_mu"}),
    "compare": frozenset({"a", "b", "gamma", "threshold", "quantity", "prescription",
                          "no_cross_model", "device", "ct_series"}),
}
_REQUIRED = {"plan": ("target", "dose", "fractions", "gantry"), "recalc": ("plan",),
             "exchange": ("plan",), "robust": ("plan",), "compare": ("a", "b")}
_PATHS = ("ct", "plan", "a", "b", "config", "hlut", "machine")
#: Options that may name another job (its folder in the output folder) instead of a path.
_JOB_KEYS = ("plan", "a", "b")
#: The type each option must have in a jobs file (TOML's: true is not 1, 1.9 not 1).
_NUMBERS = frozenset({"dose", "rbe_value", "spot_spacing", "grid", "range_error", "setup_error",
                      "threshold", "prescription"})
_INTEGERS = frozenset({"fractions", "setup_directions"})
_FLAGS = frozenset({"exchange", "combined", "combined_only", "no_cross_model"})
_LISTS = frozenset({"gantry", "couch", "gamma"})


def _type_problem(key: str, value: Any) -> str:
    """Why ``value`` cannot be option ``key`` of a job (``""`` when it can)."""
    if key in _FLAGS:
        ok = isinstance(value, bool)
        wanted = "true or false"
    elif key in _INTEGERS:
        ok = isinstance(value, int) and not isinstance(value, bool)
        wanted = "a whole number"
    elif key in _NUMBERS:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        wanted = "a number"
    elif key in _LISTS:
        ok = isinstance(value, (list, int, float, str)) and not isinstance(value, bool)
        wanted = "a list"
    elif key == "particles_per_mu":  # 3.1e5, "3.1e5@300" or a CSV file (--particles-per-mu)
        ok = isinstance(value, (int, float, str)) and not isinstance(value, bool)
        wanted = "a number or a string"
    else:
        ok = isinstance(value, str)
        wanted = "a string"
    return "" if ok else f"{key} must be {wanted}, got {value!r}"

EXAMPLE_JOBS = '''\
# ionplan batch jobs file: one [[job]] table per job; paths relative to this file.
# kind: plan | recalc | compare | exchange | robust; options as on the command line.

[defaults]              # merged into every job (a job's own value wins)
grid = 2.5
device = "auto"

[[job]]
name = "p01-plan"
kind = "plan"
ct = "patients/p01"
target = "PTV"
dose = 57.6
fractions = 16
gantry = [90, 270]
rbe = "mkm"
label = "p01 PTV C12"    # the plan's name (RT Plan Name); default: the job's name

[[job]]
name = "p01-lem"
kind = "recalc"
ct = "patients/p01"
plan = "p01-plan"       # another job's plan (its RTPLAN.dcm; that job runs first)
rbe = "lem1"

[[job]]
name = "p02-recalc-lem"
kind = "recalc"
ct = "patients/p02"
plan = "patients/p02/RTPLAN.dcm"
rbe = "lem1"

[[job]]
name = "p02-exchange"
kind = "exchange"
ct = "patients/p02"
plan = "patients/p02/RTPLAN.dcm"

[[job]]
name = "p02-robust"
kind = "robust"
ct = "patients/p02"
plan = "patients/p02/RTPLAN.dcm"
range_error = 3.5
setup_error = 3.0
setup_directions = 6

[[job]]
name = "p02-compare"
kind = "compare"
ct = "patients/p02"
a = "patients/p02/RTDOSE_RBE.dcm"
b = "p02-recalc-lem"    # a plan folder; here another job's output (that job runs first)
gamma = ["3,3", "2,2"]
no_cross_model = true
'''


@dataclass(frozen=True)
class JobSpec:
    """One job of a jobs file.

    Attributes
    ----------
    name, kind : str
        Folder name of the job's outputs and its kind (:data:`KINDS`).
    ct : str
        Patient folder (absolute).
    options : dict
        The job's other options (paths made absolute), names with ``_``.
    problem : str
        Why the job cannot run (unknown kind or option, missing option); ``""`` when it can.
    inputs : dict
        Signatures of the jobs whose folders this job reads, by job name (set by
        :func:`schedule_jobs`).
    """

    name: str
    kind: str
    ct: str
    options: dict[str, Any] = field(default_factory=dict)
    problem: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)

    def signature(self) -> dict[str, Any]:
        """What decides whether a finished job is still up to date: its options, the files
        they name as they are now (:func:`file_fingerprint`: a plan replaced under the same
        name makes the job run again) and, for a job that reads other jobs' folders, their
        signatures."""
        sig: dict[str, Any] = {"kind": self.kind, "ct": self.ct, "options": self.options,
                               "files": self.file_fingerprints()}
        if self.inputs:
            sig["inputs"] = self.inputs
        lem = self.lem_description()
        if lem is not None:
            sig["lem"] = lem
        return sig

    def file_fingerprints(self) -> dict[str, str]:
        """:func:`file_fingerprint` of the CT folder and of every file or folder the options
        name (other jobs' folders are in ``inputs``)."""
        named = {"ct": self.ct, **{k: self.options[k] for k in _PATHS if k != "ct"
                                    and isinstance(self.options.get(k), str)
                                    and not str(self.options[k]).startswith("job:")}}
        table = self.options.get("particles_per_mu")
        if isinstance(table, str) and _is_table(table):
            named["particles_per_mu"] = table
        return {k: file_fingerprint(v) for k, v in named.items() if v}

    def lem_description(self) -> str | None:
        """The LEM I model the job evaluates, its tissue resolved with every default (class,
        rapid scheme): a default that changed since a finished run must not leave that run's
        numbers standing as current. None for a job that evaluates no LEM I of its own options
        (a recalculation under the plan's recorded model, a compare) or names a bad tissue
        (its own error says so)."""
        o = self.options
        if not (self.kind == "exchange" or o.get("exchange") or o.get("rbe") == "lem1"):
            return None
        try:
            return LemModel(parse_tissue(str(o.get("tissue", DEFAULT_TISSUES[0].name)))
                            ).describe()
        except InputError:
            return None

    def reads(self) -> tuple[str, ...]:
        """Names of the folders in the output folder that this job reads (``plan``, ``a`` or
        ``b`` given as another job's name, or as a path into its folder), in option order,
        without repeats."""
        if self.problem:
            return ()
        names = [_read_job(v) for k in _JOB_KEYS
                 if isinstance(v := self.options.get(k), str) and v.startswith("job:")]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class JobOutcome:
    """A job's result: status ``ok``, ``error`` or ``skipped`` (or ``kept``: a finished job
    folder in the output folder that this jobs file does not name, :func:`kept_outcomes`), its
    summary rows and its warnings (its reports', and what was logged at WARNING or warned of
    with Python warnings while it ran, :mod:`planning.log_capture`; a skipped or kept job's
    are its earlier run's)."""

    name: str
    kind: str
    status: str
    error: str = ""
    seconds: float = 0.0
    rows: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()

    def line(self) -> str:
        """One terminal line; a skipped or kept job's time is its earlier run's, and says so."""
        took = (f"(up to date; its run took {self.seconds:.1f} s)" if self.status == "skipped"
                else f"(not in this jobs file; its earlier run took {self.seconds:.1f} s)"
                if self.status == "kept" else f"in {self.seconds:.1f} s")
        text = f"job {self.name} ({self.kind}): {self.status} {took}"
        return f"{text}: {self.error}" if self.error else text

    def warning_lines(self) -> list[str]:
        """Each warning on a line that names the job, ``job 'NAME': ...`` (with many jobs, a
        warning without its job's name told no one which patient or plan it was about)."""
        return [f"job {self.name!r}: {w}" for w in self.warnings]


def _key(name: str) -> str:
    return name.strip().replace("-", "_")


def _read_job(value: str) -> str:
    """The job a ``job:NAME`` or ``job:NAME/FILE`` option value reads."""
    return value[4:].split("/", 1)[0]


def _job_reference(raw: str, target: Path, base: Path, out_root: Path | None,
                   names: frozenset[str]) -> str | None:
    """``job:NAME`` (or ``job:NAME/FILE``) when an option of :data:`_JOB_KEYS` names another
    job's folder: a relative name with nothing of that name beside the jobs file, or any path
    into the folder of a job of this file in ``out_root`` (ordered after that job, not read
    as whatever an older run left there); else None."""
    if out_root is not None:
        full = Path(os.path.normpath(target if target.is_absolute() else base / target))
        try:
            inside = full.relative_to(out_root).parts
        except ValueError:
            inside = ()
        if inside and inside[0] in names:
            return "job:" + "/".join(inside)
    if not target.is_absolute() and not (base / target).exists():
        return f"job:{raw}"
    return None


def load_jobs(path: str | os.PathLike[str],
              out_root: str | os.PathLike[str] | None = None) -> list[JobSpec]:
    """Read a jobs file; a job with a bad kind or options gets a ``problem``, not an error.
    ``plan``, ``a`` and ``b`` may name another job (``job:NAME``, see :func:`schedule_jobs`),
    or, with the batch's output folder ``out_root``, a path into a job's folder there.

    Raises
    ------
    InputError
        The file cannot be read or is no TOML, it has no jobs, a job has no name, or two jobs
        share a name.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{p}: cannot read the jobs file ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a TOML jobs file ({exc})") from None
    jobs = data.get("job")
    if not isinstance(jobs, list) or not jobs:
        raise InputError(f"{p}: no [[job]] tables (ionplan batch --example prints one)")
    tables = set(data) - {"job", "defaults"}
    if tables:  # a misspelt [defaults] was ignored
        raise InputError(f"{p}: unknown table(s) {', '.join(sorted(tables))}; a jobs file "
                         "holds [defaults] and [[job]] tables")
    defaults = {_key(k): v for k, v in (data.get("defaults") or {}).items()}
    known = frozenset().union(*OPTIONS.values()) | {"ct"}
    if set(defaults) - known:
        raise InputError(f"{p}: unknown option(s) {', '.join(sorted(set(defaults) - known))} "
                         "in [defaults]")
    base = p.resolve().parent
    root = None if out_root is None else Path(os.path.normpath(Path(out_root).resolve()))
    names = frozenset(str(raw.get("name", "")).strip() for raw in jobs if isinstance(raw, dict))
    out: list[JobSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(jobs, start=1):
        if not isinstance(raw, dict) or not str(raw.get("name", "")).strip():
            raise InputError(f"{p}: job {i} has no name")
        name = str(raw["name"]).strip()
        if name in seen:
            raise InputError(f"{p}: two jobs are named {name!r}")
        if name.startswith(".") or "/" in name or "\\" in name or name in ("summary.csv",
                                                                           "summary.json"):
            raise InputError(f"{p}: job name {name!r} cannot be a folder name")
        seen.add(name)
        kind = str(raw.get("kind", "")).strip()
        entries = {_key(k): v for k, v in raw.items() if _key(k) not in ("name", "kind")}
        problem = ""
        if kind not in KINDS:
            problem = f"unknown kind {kind!r}; one of {', '.join(KINDS)}"
            options: dict[str, Any] = entries
        else:
            allowed = OPTIONS[kind] | {"ct"}
            options = {k: v for k, v in defaults.items() if k in allowed}
            options.update(entries)
            unknown = sorted(set(entries) - allowed)
            missing = [k for k in ("ct", *_REQUIRED[kind]) if k not in options]
            typed = [t for k, v in options.items() if (t := _type_problem(k, v))]
            if unknown:
                problem = f"unknown option(s) {', '.join(unknown)} for a {kind} job"
            elif missing:
                problem = f"a {kind} job needs {', '.join(missing)}"
            elif typed:
                problem = "; ".join(typed)
        bare = set()  # options given as a bare name, for the message when nothing is there
        for k in _PATHS:
            if k in options and isinstance(options[k], str):
                target = Path(options[k]).expanduser()
                ref = (_job_reference(options[k], target, base, root, names)
                       if k in _JOB_KEYS else None)
                if ref is not None:
                    options[k] = ref  # resolved against the output folder
                else:
                    if len(target.parts) == 1 and not target.is_absolute():
                        bare.add(k)
                    options[k] = str(target if target.is_absolute() else base / target)
        calibration = options.get("particles_per_mu")
        if isinstance(calibration, str) and _is_table(calibration):  # a CSV file, like the paths
            target = Path(calibration).expanduser()
            options["particles_per_mu"] = str(target if target.is_absolute() else base / target)
        if not problem:  # found here, not after the jobs before it have run for hours
            problem = _value_problem(options, bare)
        ct = str(options.pop("ct", ""))
        out.append(JobSpec(name, kind, ct, options, problem))
    return out


#: Options that must be numbers above 0 (``fractions`` a whole one).
_POSITIVE = ("dose", "fractions", "rbe_value", "spot_spacing", "grid", "prescription")
#: The values ``rbe`` takes (as ``ionplan plan --rbe``).
_RBE_MODELS = ("mkm", "lem1", "const", "physical")


def file_fingerprint(path: str) -> str:
    """What a job's input file or folder is now: a SHA-256 of the size and modification time
    (ns) of the file, or of every file under the folder with its relative path; ``"missing"``
    when there is nothing there. Cheap (no contents read) and changed by any replacement or
    edit that a file system records."""
    root = Path(path)
    if root.is_file():
        entries = [("", root.stat())]
    elif root.is_dir():
        entries = sorted((str(f.relative_to(root)), f.stat()) for f in root.rglob("*")
                         if f.is_file())
    else:
        return "missing"
    digest = hashlib.sha256()
    for name, st in entries:
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _value_problem(options: Mapping[str, Any], bare: Iterable[str] = ()) -> str:
    """Why a job's well-typed options cannot run (``""`` when they can): a path that does not
    exist (other than another job's folder), a number that must be above 0, an unknown RBE
    model or a tissue that does not parse (checks that needed no computing; the job's own run
    checks the rest). ``bare``: options given as a bare name, which may have been meant as a
    job's name: their message says which options can name a job."""
    for k in _PATHS:
        value = options.get(k)
        if isinstance(value, str) and not value.startswith("job:") and not Path(value).exists():
            hint = (f" (only {', '.join(_JOB_KEYS)} can name another job)" if k in bare
                    else "")
            return f"{k}: {value}: no such file or folder{hint}"
    for k in _POSITIVE:
        value = options.get(k)
        if value is not None and not (math.isfinite(float(value)) and float(value) > 0):
            return f"{k} must be above 0, got {value!r}"
    if "rbe" in options and options["rbe"] not in _RBE_MODELS:
        return f"unknown rbe {options['rbe']!r}; one of {', '.join(_RBE_MODELS)}"
    if "tissue" in options:
        try:
            parse_tissue(str(options["tissue"]))
        except InputError as exc:
            return f"tissue: {exc}"
    if "particles_per_mu" in options:
        try:
            _calibration(options)
        except InputError as exc:
            return f"particles_per_mu: {exc}"
    if "label" in options:
        try:
            checked_plan_name(str(options["label"]), "label")
        except InputError as exc:
            return str(exc)
    return ""


def _is_table(text: str) -> bool:
    """Whether a ``particles_per_mu`` text names a table file (not N or N@E)."""
    try:
        float(text.partition("@")[0])
    except ValueError:
        return True
    return False


def _calibration(options: Mapping[str, Any]) -> MonitorCalibration | None:
    """The job's monitor calibration (``particles_per_mu``), None without one."""
    value = options.get("particles_per_mu")
    return None if value is None else parse_monitor_calibration(str(value))


def schedule_jobs(jobs: Sequence[JobSpec], out_root: str | os.PathLike[str], *,
                  where: str = "jobs file") -> list[JobSpec]:
    """The jobs in an order in which every job comes after the jobs whose folders it reads
    (:meth:`JobSpec.reads`), otherwise in the given order, each with their signatures as its
    ``inputs``.

    Parameters
    ----------
    jobs : sequence of JobSpec
        The jobs of one jobs file (distinct names).
    out_root : path
        The batch's output folder: a name read that is no job must be a folder there.
    where : str
        The jobs file, for messages.

    Raises
    ------
    InputError
        Jobs read each other's folders in a cycle, or a job reads a folder that no job
        makes and that is not in ``out_root``.
    """
    by_name = {j.name: j for j in jobs}
    root = Path(out_root)
    for job in jobs:
        for name in job.reads():
            plan = job.options.get("plan")
            of_plan = (isinstance(plan, str) and plan.startswith("job:")
                       and _read_job(plan) == name)
            verb = f"reads the plan of {name!r}" if of_plan else f"compares {name!r}"
            if name not in by_name and not (root / name).exists():
                raise InputError(
                    f"{where}: job {job.name!r} {verb}, which is no job of this file, "
                    f"no path beside it and no folder in {root}; name a job, a folder or a file")
            if of_plan and name in by_name and by_name[name].kind == "compare":
                raise InputError(f"{where}: job {job.name!r} {verb}, a compare job, which "
                                 "writes no plan; name a plan, recalc, exchange or robust job")
    done: dict[str, JobSpec] = {}
    path: list[str] = []

    def visit(job: JobSpec) -> None:
        if job.name in done:
            return
        if job.name in path:
            cycle = " -> ".join([*path[path.index(job.name):], job.name])
            raise InputError(f"{where}: jobs {cycle} read each other's folders (a cycle), so "
                             f"none of them can run first; make job {job.name!r} read a file "
                             "or a folder instead")
        path.append(job.name)
        reads = [by_name[n] for n in job.reads() if n in by_name]
        for dep in reads:
            visit(dep)
        path.pop()
        done[job.name] = replace(job, inputs={d.name: done[d.name].signature() for d in reads})

    for job in jobs:
        visit(job)
    return list(done.values())


# ------------------------------------------------------------------------------ one job


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    if isinstance(exc, IonPlanError):
        return msg or type(exc).__name__
    where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
    return f"{type(exc).__name__}: {where}{getattr(exc, 'strerror', None) or msg}"


def _floats(value: Any, what: str) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number or a list of numbers, got {value!r}") from None


def _gamma(value: Any) -> list[tuple[float, float]]:
    items = [value] if isinstance(value, str) else list(value)
    out = []
    for item in items:
        pair = _floats(str(item).replace("%", "").replace("mm", "").replace("/", ","), "gamma")
        if len(pair) != 2:
            raise InputError(f"gamma criterion {item!r}: give dose %,distance mm, e.g. \"3,3\"")
        out.append((pair[0], pair[1]))
    return out


def _row(job: JobSpec, structure: str, a: Mapping[str, Any] | None, model: str = "",
         b: Mapping[str, Any] | None = None, model_b: str = "", *, unit: str = "Gy(RBE)",
         unit_b: str | None = None, b_is: str | None = None) -> dict[str, Any]:
    """A summary row; ``unit_b`` defaults to ``unit``, ``b_is`` says what side b is. Of two
    units (a physical and an RBE-weighted dose) ``diff_*`` stay empty: b - a is no dose
    difference."""
    unit_b = unit if unit_b is None else unit_b
    difference = unit == unit_b
    row: dict[str, Any] = {"structure": structure, "model": model, "model_b": model_b,
                           "b_is": b_is if b is not None else None,
                           "unit": unit if a is not None else None,
                           "unit_b": unit_b if b is not None else None}
    for k, column in _DOSES.items():
        va = None if a is None else a.get(k)
        vb = None if b is None else b.get(k)
        row[column] = va
        row[f"{column}_b"] = vb
        row[f"diff_{column}"] = None if va is None or vb is None or not difference else vb - va
    return row


def _model_name(description: str) -> str:
    """The summary's model column: ``"mMKM"``, ``"LEM I chordoma, averaged"``, ...
    (:func:`planning.rbe.record.short_model_name`)."""
    return short_model_name(description) if description else ""


def _side_model(dose_type: str, description: str) -> str:
    """The summary's model column of a compared dose (the model its RT Dose names)."""
    if dose_type != "EFFECTIVE":
        return "physical dose"
    return _model_name(description) or "RBE-weighted, model not named"


def _context(rep: Mapping[str, Any]) -> dict[str, Any]:
    """The patient and prescription columns of a job's rows from its report.json ``rep``:
    its ``patient`` and ``prescription`` (a compare report's: side A's plan's, else side
    B's); None where the report names none."""
    patient = rep.get("patient") or {}
    rx = rep.get("prescription") or next(
        (side["prescription"] for side in (rep.get("a"), rep.get("b"))
         if isinstance(side, Mapping) and side.get("prescription")), None) or {}
    return {"patient_id": patient.get("patient_id"), "target": rx.get("target"),
            "prescription_dose": rx.get("total_dose_gy_rbe"),
            "prescription_unit": rx.get("unit") if rx else None,
            "fractions": rx.get("n_fractions"), "prescription_model": rx.get("model")}


def _with_context(rows: Iterable[dict[str, Any]], rep: Mapping[str, Any]
                  ) -> list[dict[str, Any]]:
    """``rows`` with the patient and prescription columns of :func:`_context`."""
    context = _context(rep)
    return [{**context, **row} for row in rows]


def _plan_rows(job: JobSpec, rep: Mapping[str, Any]) -> list[dict[str, Any]]:
    model = _model_name(str(rep.get("rbe_model", "")))
    rows = []
    for name, m in rep.get("structures", {}).items():
        a = {**m, "max_gy_rbe": m.get("dmax_gy_rbe", m.get("max_gy_rbe"))}
        rows.append(_row(job, name, a, model, unit=dose_unit(rep)))
    return _with_context(rows, rep)


#: What a job's run gives: its summary rows and the warnings of its report.
JobRows = tuple[list[dict[str, Any]], list[str]]


def _run_plan(job: JobSpec, out: Path) -> JobRows:
    from planning import api

    o = job.options
    rep = api.make_plan(
        job.ct, target=str(o["target"]), dose_gy_rbe=float(o["dose"]),
        fractions=int(o["fractions"]), gantry_deg=_floats(o["gantry"], "gantry"),
        couch_deg=_floats(o["couch"], "couch") if "couch" in o else None, out_dir=out,
        rbe=str(o.get("rbe", "mkm")), rbe_value=o.get("rbe_value"), tissue=o.get("tissue"),
        spot_spacing_mm=float(o.get("spot_spacing", 3.0)), grid_mm=float(o.get("grid", 2.5)),
        config_path=o.get("config"), device=str(o.get("device", "auto")),
        hlut_path=o.get("hlut"), exchange=bool(o.get("exchange", False)),
        ct_series_uid=o.get("ct_series"), label=str(o.get("label", job.name)))
    if job.options["target"] not in rep["structures"]:
        raise InputError(f"the target {job.options['target']!r} got no dose-grid voxels")
    return _plan_rows(job, rep), list(rep.get("warnings", ()))


def _run_recalc(job: JobSpec, out: Path, *, exchange: bool = False) -> JobRows:
    from planning import api
    from planning.robust import structure_metrics
    from planning.structure_dose import sampled_structures

    o = job.options
    result = api.recalculate_plan(
        job.ct, str(o["plan"]), rbe=o.get("rbe"), rbe_value=o.get("rbe_value"),
        tissue=o.get("tissue"), machine_path=o.get("machine"), grid_mm=float(o.get("grid", 2.5)),
        hlut_path=o.get("hlut"), device=str(o.get("device", "auto")), exchange=exchange,
        out_dir=out, ct_series_uid=o.get("ct_series"), monitor_calibration=_calibration(o))
    warnings = list(result.report.get("warnings", ()))
    if not exchange:
        return _plan_rows(job, result.report), warnings
    view = result.exchange
    assert view is not None
    samples = {s.name: d for s, d in sampled_structures(result.patient, result.dose_grid)}
    mkm = structure_metrics(view.mkm_dose_gy_rbe, result.physical_dose_gy, samples)
    lem = structure_metrics(view.lem_dose_gy_rbe, result.physical_dose_gy, samples,
                            labels=view.lem_labels)  # each structure within its LEM I tissue
    lem_name = short_model_name(view.lem_model)  # its tissue and rapid scheme
    return _with_context([_row(job, name, mkm[name], "mMKM", lem[name], lem_name,
                               b_is=B_OTHER_MODEL) for name in samples],
                         result.report), warnings


def _run_robust(job: JobSpec, out: Path) -> JobRows:
    from planning.robust import RobustSettings, robust_files
    from planning.robust_tables import worst_case_metrics

    o = job.options
    only = bool(o.get("combined_only", False))
    settings = RobustSettings(float(o.get("range_error", 3.5)), float(o.get("setup_error", 3.0)),
                              int(o.get("setup_directions", 6)),
                              bool(o.get("combined", False)) or only, only)
    kwargs: dict[str, Any] = dict(
        settings=settings, rbe=o.get("rbe"), rbe_value=o.get("rbe_value"),
        tissue=o.get("tissue"), machine_path=o.get("machine"), grid_mm=float(o.get("grid", 2.5)),
        hlut_path=o.get("hlut"), device=str(o.get("device", "auto")), out_dir=out,
        ct_series_uid=o.get("ct_series"), monitor_calibration=_calibration(o))
    from planning.distributed import in_worker_runner, running_in_worker

    if running_in_worker():
        with in_worker_runner() as runner:
            result = robust_files(job.ct, str(o["plan"]), runner=runner, **kwargs)
    else:
        result = robust_files(job.ct, str(o["plan"]), **kwargs)
    rep = result.report
    model = _model_name(str(rep.get("rbe_model", "")))
    nominal = rep["scenarios"][0]["structures"]
    rows = []
    which = ", ".join(
        ([f"range ±{settings.range_error_pct:g} %"] if settings.range_error_pct else [])
        + ([f"setup {settings.setup_error_mm:g} mm in {settings.setup_directions} directions"]
           if settings.setup_error_mm else [])
        + (["combined only"] if settings.combined_only else ["and combined"]
           if settings.combined else []))
    for name in rep["worst_case"]["structures"]:
        worst, label = worst_case_metrics(rep, name)
        rows.append(_row(job, name, nominal[name], model, worst, model, unit=dose_unit(rep),
                         b_is=f"{label} ({which})"))
    return _with_context(rows, rep), list(rep.get("warnings", ()))


def _resolve_side(value: str, out_root: Path) -> str:
    """The path an option value names: ``job:NAME[/FILE]`` in ``out_root``, else itself."""
    if value.startswith("job:"):
        return str(out_root / value[4:])
    return value


def _resolved(job: JobSpec, out_root: Path) -> JobSpec:
    """The job with its options that name other jobs (:data:`_JOB_KEYS`) as paths into
    ``out_root``; a ``plan`` that names a job's folder is the RTPLAN.dcm in it."""
    options = dict(job.options)
    for k in _JOB_KEYS:
        value = options.get(k)
        if isinstance(value, str) and value.startswith("job:"):
            options[k] = _resolve_side(value, out_root)
            if k == "plan" and Path(options[k]).is_dir():
                options[k] = str(Path(options[k]) / "RTPLAN.dcm")
    return replace(job, options=options)


def _run_compare(job: JobSpec, out: Path, out_root: Path) -> JobRows:
    from planning import api

    o = job.options
    result = api.compare_doses(
        _resolve_side(str(o["a"]), out_root), _resolve_side(str(o["b"]), out_root),
        structures=job.ct or None, criteria=_gamma(o["gamma"]) if "gamma" in o else None,
        threshold_percent=float(o.get("threshold", 10.0)), quantity=str(o.get("quantity", "rbe")),
        prescription_gy=o.get("prescription"), cross_model=not bool(o.get("no_cross_model")),
        device=str(o.get("device", "auto")), ct_series_uid=o.get("ct_series"))
    api.write_comparison_report(result, out)
    gamma: dict[str, Any] = {}
    for i, g in enumerate(result.gamma[:2]):
        prefix = "gamma" if i == 0 else "gamma2"
        gamma[f"{prefix}_criteria"] = g.criteria.label
        gamma[f"{prefix}_pass_pct"] = g.pass_rate_percent
    rows = []
    model_a = _side_model(result.a.dose_type, result.a.description)
    model_b = _side_model(result.b.dose_type, result.b.description)
    for s in result.structures:
        def metrics(m: Mapping[str, Any]) -> dict[str, Any]:
            return {f"{k}_gy_rbe": m.get(k) for k in ("d98", "d95", "d50", "d2", "mean", "max")}

        rows.append({**_row(job, s.name, metrics(s.metrics_a), model_a,
                            metrics(s.metrics_b), model_b, unit=result.a.unit,
                            unit_b=result.b.unit, b_is=B_COMPARED), **gamma})
    return (_with_context(rows or [{"structure": "", **gamma}], result.to_report()),
            list(result.warnings))


def run_job(job: JobSpec, out_root: str | os.PathLike[str]) -> JobOutcome:
    """Run one job into ``out_root/NAME`` (see the module docstring); never raises for the
    job's own errors (they are the outcome's ``error``). What the job's thread logs at WARNING
    or warns of with Python warnings meanwhile (:func:`planning.log_capture.collected_warnings`)
    is not printed by the worker but kept, with its reports' warnings, in the outcome's
    ``warnings`` (and job.json) for the batch to print with the job's name."""
    from planning.log_capture import collected_warnings

    root = Path(out_root)
    t0 = time.perf_counter()
    if job.problem:
        return JobOutcome(job.name, job.kind, "error", job.problem, 0.0)
    partial = root / f".{job.name}.partial-{uuid.uuid4().hex[:12]}"
    with collected_warnings() as logged:
        try:
            partial.mkdir(parents=True)
            rows, reported = _run_kind(job, partial, root)
            seconds = time.perf_counter() - t0
            warnings = _distinct([*logged, *reported])
            atomic_write_text(partial / "job.json", json.dumps(
                {"job": job.name, "kind": job.kind, "status": "ok", "seconds": seconds,
                 "finished": _utc_now(), "signature": job.signature(),
                 "rows": _json_ready(rows),
                 "warnings": list(warnings)}, indent=1) + "\n")
            _publish(partial, root / job.name)
            return JobOutcome(job.name, job.kind, "ok", "", seconds, tuple(rows), warnings)
        except Exception as exc:  # a job's failure is recorded, never fatal to the batch
            log.info("job %s failed", job.name, exc_info=True)
            shutil.rmtree(partial, ignore_errors=True)
            return JobOutcome(job.name, job.kind, "error", _first_line(exc),
                              time.perf_counter() - t0, warnings=_distinct(logged))


def _run_kind(job: JobSpec, partial: Path, root: Path) -> JobRows:
    """Run the job by its kind into ``partial`` (``root``: the batch's output folder)."""
    if job.ct and not Path(job.ct).is_dir():
        raise InputError(f"{job.ct}: no such patient folder")
    job = _resolved(job, root)
    if job.kind == "plan":
        return _run_plan(job, partial)
    if job.kind in ("recalc", "exchange"):
        return _run_recalc(job, partial, exchange=job.kind == "exchange")
    if job.kind == "robust":
        return _run_robust(job, partial)
    return _run_compare(job, partial, root)


def _utc_now(seconds: float | None = None) -> str:
    """A time (now by default) as ``"2026-12-07 20:31:05 UTC"``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def keep_previous(outcome: JobOutcome, out_root: Path) -> JobOutcome:
    """A failed job whose folder holds the complete result of an earlier run (its job.json
    with status ok): that job.json gets ``last_run_failed`` (the error, when, and when the
    result it holds was finished), and the outcome's error says the earlier result is kept,
    so that neither the folder nor the summary passes it off as the last run's. Any other
    outcome is returned as it is."""
    if outcome.status != "error":
        return outcome
    path = out_root / outcome.name / "job.json"
    data = _finished_record(path.parent)
    if data is None:
        return outcome
    try:
        modified = path.stat().st_mtime
    except OSError:
        return outcome
    earlier = data.get("last_run_failed")
    finished = str(data.get("finished") or (earlier or {}).get("result_finished")
                   or _utc_now(modified))  # a job.json written before "finished" was kept
    data["last_run_failed"] = {
        "error": outcome.error, "at": _utc_now(), "result_finished": finished,
        "note": "this folder holds the result of an earlier run, not of the last run of this "
                "job, which failed"}
    try:
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    except OSError:
        log.warning("%s: could not mark the earlier result as kept after a failed run", path)
    return replace(outcome, error=f"{outcome.error} (the earlier result of {finished} is kept "
                                  f"in {outcome.name}/, marked in its job.json)")


def _distinct(messages: Iterable[str]) -> tuple[str, ...]:
    """The messages in their order, each once (a warning both logged and in a report)."""
    return tuple(dict.fromkeys(messages))


def _publish(partial: Path, final: Path) -> None:
    """Rename the finished ``partial`` folder onto ``final`` (replacing an older run)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:12]}")
        os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, final)


def _finished_record(folder: Path) -> dict[str, Any] | None:
    """The job.json of a job folder that holds a finished run (status ok); None when there
    is none, it cannot be read, or its run did not finish."""
    try:
        data = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") == "ok" else None


def finished_outcome(job: JobSpec, out_root: Path) -> JobOutcome | None:
    """The stored outcome of a finished, up-to-date job, as ``skipped``; else None. A folder
    whose job.json is marked ``last_run_failed`` is not up to date: the last run of the same
    job failed (its inputs or a job it reads changed since), so the job runs again."""
    data = _finished_record(out_root / job.name)
    if (data is None or data.get("last_run_failed")
            or data.get("signature") != _json_ready(job.signature())):
        return None
    return JobOutcome(job.name, job.kind, "skipped", "", float(data.get("seconds", 0.0)),
                      tuple(data.get("rows", ())), tuple(data.get("warnings", ())))


def kept_outcomes(out_root: Path, names: Iterable[str]) -> tuple[JobOutcome, ...]:
    """The finished job folders of ``out_root`` (``NAME/job.json`` with status ok) that are
    not among ``names`` (the jobs of this jobs file), by name, as ``kept`` outcomes with the
    rows and warnings of their job.json: a second jobs file run into the same folder must not
    drop the rows of the first one's jobs from the summary while their folders stay. Their
    numbers are their run's; nothing here checks them against their inputs now."""
    skip = set(names)
    kept = []
    for folder in sorted(out_root.iterdir()) if out_root.is_dir() else ():
        if folder.name in skip or folder.name.startswith(".") or not folder.is_dir():
            continue
        data = _finished_record(folder)
        if data is None:
            continue
        kept.append(JobOutcome(folder.name, str(data.get("kind", "")), "kept", "",
                               float(data.get("seconds", 0.0)), tuple(data.get("rows", ())),
                               tuple(data.get("warnings", ()))))
    return tuple(kept)


# ------------------------------------------------------------------------------ the batch


@dataclass(frozen=True)
class BatchResult:
    """Outcomes in the order of the jobs file, the summary files, and the ``kept`` outcomes
    of earlier runs' job folders that the jobs file does not name (:func:`kept_outcomes`,
    listed in the summary after the jobs file's)."""

    outcomes: tuple[JobOutcome, ...]
    files: tuple[Path, ...]
    kept: tuple[JobOutcome, ...] = ()

    def missing_structures(self) -> dict[str, list[str]]:
        """By job of the jobs file: the structures that other jobs' rows name and its rows do
        not (a patient without a Brainstem left no row, so a cohort statistic on it silently
        left that patient out: review), in the order they first appear; jobs that miss none,
        and jobs without structure rows (failed), are left out."""
        named = {o.name: [str(r["structure"]) for r in o.rows if r.get("structure")]
                 for o in (*self.outcomes, *self.kept)}
        every = list(dict.fromkeys(n for names in named.values() for n in names))
        missing = {o.name: [n for n in every if n not in named[o.name]] for o in self.outcomes
                   if named[o.name]}
        return {job: names for job, names in missing.items() if names}

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "skipped": 0, "error": 0, "kept": 0}
        for o in (*self.outcomes, *self.kept):
            out[o.status] = out.get(o.status, 0) + 1
        return out


def summary_rows(outcomes: Iterable[JobOutcome]) -> list[dict[str, Any]]:
    """Rows of the summary (every column of :data:`SUMMARY_COLUMNS`, None where empty)."""
    rows = []
    for o in outcomes:
        head = {"job": o.name, "kind": o.kind, "status": o.status, "error": o.error,
                "seconds": round(o.seconds, 3), "warnings": len(o.warnings)}
        for r in o.rows or ({"structure": ""},):
            row = dict.fromkeys(SUMMARY_COLUMNS)
            named = {_FORMER_NAMES.get(k, k): v for k, v in r.items()}  # an older job.json's
            row.update({k: v for k, v in named.items() if k in row})
            row.update(head)
            rows.append(row)
    return rows


def write_summary(outcomes: Sequence[JobOutcome], out_root: Path) -> tuple[Path, Path]:
    """Write summary.csv and summary.json (atomically) into ``out_root``."""
    rows = _json_ready(summary_rows(outcomes))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(k, v) for k, v in row.items()})
    csv_path, json_path = out_root / "summary.csv", out_root / "summary.json"
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_text(json_path, json.dumps({"columns": list(SUMMARY_COLUMNS), "rows": rows},
                                            indent=1) + "\n")
    return csv_path, json_path


#: Decimals of the doses in summary.csv (0.1 mGy): a body's D50 of 1.02e-08 Gy(RBE) is float
#: noise of the dose engine and reads 0.0; summary.json keeps every digit, as report.json.
CSV_DOSE_DECIMALS = 4
#: Decimals of the gamma pass rates (%) in summary.csv, as the comparison's report.html gives
#: them: 35.83 %, not 35.83106267029973.
CSV_PASS_RATE_DECIMALS = 2
_PASS_RATE_COLUMNS = frozenset({"gamma_pass_pct", "gamma2_pass_pct"})


def _csv_cell(column: str, value: Any) -> Any:
    """A summary.csv cell: "" for no value, a dose rounded to :data:`CSV_DOSE_DECIMALS`, a
    gamma pass rate (%) to :data:`CSV_PASS_RATE_DECIMALS`."""
    if value is None:
        return ""
    decimals = (CSV_DOSE_DECIMALS if column in _DOSE_COLUMNS
                else CSV_PASS_RATE_DECIMALS if column in _PASS_RATE_COLUMNS else None)
    if decimals is not None and isinstance(value, float):
        return round(value, decimals) + 0.0  # + 0.0: no "-0.0"
    return value


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_batch(jobs_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
              scheduler: str | None = None, workers: int | None = None, rerun: bool = False,
              progress: ProgressCallback | None = None,
              on_job: Callable[[JobOutcome], None] | None = None) -> BatchResult:
    """Run the jobs of ``jobs_path`` into ``out_dir`` (see the module docstring).

    Parameters
    ----------
    jobs_path : path
        The jobs file (TOML).
    out_dir : path
        One folder per job, summary.csv and summary.json (created).
    scheduler : str, optional
        Address of an existing Dask scheduler; default: a local cluster of ``workers``
        processes (one per core by default).
    rerun : bool
        Run finished jobs again.
    progress : callable, optional
        ``(fraction of jobs done, stage)``.
    on_job : callable, optional
        Called with each job's outcome as it arrives (skipped ones first).

    Raises
    ------
    InputError
        A bad jobs file (also: jobs that read each other's folders in a cycle, a job that
        reads a folder that neither exists nor is made by a job), an output folder that
        cannot be made; raised before any job runs.
    IonPlanError
        No Dask distributed, or no scheduler at ``scheduler``.
    """
    root = Path(out_dir).resolve()
    jobs = load_jobs(jobs_path, root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{root}: cannot create the output folder ({exc.strerror})") from None
    scheduled = schedule_jobs(jobs, root, where=str(jobs_path))
    for job in jobs:  # a job's folder is replaced by its new run: never one batch did not make
        folder = root / job.name
        if folder.exists() and not (folder / "job.json").is_file():
            raise InputError(f"{folder}: a folder named like job {job.name!r} that ionplan batch "
                             "did not write (no job.json) would be replaced; move it or rename "
                             "the job (nothing was run)")
    for stale in root.glob(".*.partial-*"):  # left by a batch that was killed
        shutil.rmtree(stale, ignore_errors=True)
    outcomes: dict[str, JobOutcome] = {}
    todo: list[JobSpec] = []
    names = {j.name for j in jobs}
    for job in scheduled:  # a job comes after the jobs it reads: their fate is known here
        reads = [n for n in job.reads() if n in names]
        failed = [n for n in reads if n in outcomes and outcomes[n].status == "error"]
        upstream_runs = any(n not in outcomes for n in reads)  # they are in todo
        done = None
        if not (rerun or job.problem or failed or upstream_runs):
            done = finished_outcome(job, root)
        if job.problem:
            outcomes[job.name] = JobOutcome(job.name, job.kind, "error", job.problem)
        elif failed:
            outcomes[job.name] = JobOutcome(job.name, job.kind, "error",
                                            _cannot_read(failed[0], "cannot run"))
        elif done is not None:
            outcomes[job.name] = done
        else:
            todo.append(job)
    for o in list(outcomes.values()):
        outcomes[o.name] = o = keep_previous(o, root)
        if on_job is not None:
            on_job(o)
    n = len(jobs)
    report(progress, len(outcomes) / n, f"{len(todo)} jobs to run")
    if todo:
        for o in _run_on_cluster(todo, root, scheduler, workers):
            outcomes[o.name] = o = keep_previous(o, root)
            if on_job is not None:
                on_job(o)
            report(progress, len(outcomes) / n, f"job {o.name} {o.status}")
    # A job whose worker died left its partial folder; its rerun elsewhere has finished.
    for stale in root.glob(".*.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    ordered = tuple(outcomes[j.name] for j in jobs)
    kept = kept_outcomes(root, names)
    files = write_summary((*ordered, *kept), root)
    return BatchResult(ordered, files, kept)


def _cannot_read(name: str, what: str) -> str:
    return f"job {name!r}, whose folder this job reads, {what}; this job did not run"


def _run_on_cluster(todo: Sequence[JobSpec], root: Path, scheduler: str | None,
                    workers: int | None) -> Iterable[JobOutcome]:
    """Submit the jobs (in the order of :func:`schedule_jobs`; a job that reads another
    job's folder waits for that job's task) and yield their outcomes as they finish."""
    from contextlib import ExitStack

    from planning.distributed import connect, local_cluster, require_distributed

    distributed = require_distributed()
    with ExitStack() as stack:
        if scheduler is not None:
            client = connect(scheduler)
            stack.callback(client.close)
        else:
            client = stack.enter_context(local_cluster(workers))
        futures: dict[Any, JobSpec] = {}
        by_name: dict[str, Any] = {}
        for job in todo:
            deps = [by_name[n] for n in job.reads() if n in by_name]
            fut = client.submit(_run_job_after, job, str(root), deps, pure=False,
                                key=f"ionplan-job-{job.name}-{uuid.uuid4().hex[:8]}")
            futures[fut] = job
            by_name[job.name] = fut
        for fut in distributed.as_completed(list(futures)):
            job = futures[fut]
            try:
                yield fut.result()
            except Exception as exc:  # the cluster gave up on the task (e.g. KilledWorker)
                yield JobOutcome(job.name, job.kind, "error", _first_line(exc))


def _run_job_after(job: JobSpec, out_root: str, after: Sequence[JobOutcome]) -> JobOutcome:
    """:func:`run_job`, as a task that waits for the jobs whose folders it reads (``after``,
    their outcomes); an error of one of them is this job's error."""
    for o in after:
        if o.status == "error":
            return JobOutcome(job.name, job.kind, "error", _cannot_read(o.name, "failed"))
    return run_job(job, out_root)
