"""ionplan batch: jobs file checks, a local cluster, a real dask scheduler with two workers
one of which is killed mid-batch, resume.

The jobs recalculate, evaluate and compare the session's demo plan (tests/test_recalc.py) on
an 8 mm grid so that the batch fits in about a minute on two cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from planning.batch import EXAMPLE_JOBS, SUMMARY_COLUMNS, JobSpec, load_jobs, run_batch, run_job
from planning.cli import main
from planning.errors import InputError
from tests.test_recalc import demo_plan_dirs

distributed = pytest.importorskip("distributed")

JOBS = """
[defaults]
grid = 8.0
device = "cpu"

[[job]]
name = "recalc-lem"
kind = "recalc"
ct = "{ct}"
plan = "{plan}/RTPLAN.dcm"
rbe = "lem1"

[[job]]
name = "exchange"
kind = "exchange"
ct = "{ct}"
plan = "{plan}/RTPLAN.dcm"

[[job]]
name = "robust"
kind = "robust"
ct = "{ct}"
plan = "{plan}/RTPLAN.dcm"
setup_error = 0

[[job]]
name = "broken"
kind = "recalc"
ct = "{ct}/../no-such-patient"
plan = "{plan}/RTPLAN.dcm"

[[job]]
name = "compare"
kind = "compare"
ct = "{ct}"
a = "{plan}"
b = "recalc-lem"
no_cross_model = true
gamma = ["3,3", "2,2"]
"""


def small_plan_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(CT folder, plan folder): the demo patient's session CT, one beam, 8 mm spots and grid."""
    ct, _ = demo_plan_dirs(tmp_path_factory)
    out = tmp_path_factory.getbasetemp() / "batch_small_plan"
    if not (out / "report.json").is_file():
        assert main(["plan", str(ct), "--target", "PTV", "--dose", "60", "--fractions", "12",
                     "--gantry", "90", "--grid", "8", "--spot-spacing", "8", "--device", "cpu",
                     "--out", str(out)]) == 0
    return ct, out


@pytest.fixture(scope="module")
def jobs_file(tmp_path_factory):
    ct, plan = small_plan_dirs(tmp_path_factory)
    path = tmp_path_factory.mktemp("jobs") / "jobs.toml"
    path.write_text(JOBS.format(ct=ct, plan=plan))
    return path


def _results(out: Path) -> list[dict]:
    """Summary rows without the timing and status (ok now, skipped on a resumed run)."""
    rows = json.loads((out / "summary.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if k not in ("seconds", "status")} for r in rows]


def _check_summary(out: Path) -> None:
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[:13] == ["job", "kind", "status", "error", "seconds", "warnings", "patient_id",
                           "target", "prescription_dose", "prescription_unit", "fractions",
                           "prescription_model", "structure"]
    assert tuple(header) == SUMMARY_COLUMNS
    rows = json.loads((out / "summary.json").read_text())["rows"]
    status = {r["job"]: r["status"] for r in rows}
    assert status == {"recalc-lem": "ok", "exchange": "ok", "robust": "ok", "broken": "error",
                      "compare": "ok"}
    broken = [r for r in rows if r["job"] == "broken"]
    assert len(broken) == 1 and "no-such-patient: no such file or folder" in broken[0]["error"]
    assert "\n" not in broken[0]["error"]
    ptv = {r["job"]: r for r in rows if r["structure"] == "PTV"}
    # Models named as the Dose tab names them, the same in every kind of job (a recalc's
    # LEM I was "LEM", an exchange's "LEM I", a compare's sides "A" and "B": review).
    lem = "LEM I chordoma, averaged"
    assert ptv["recalc-lem"]["model"] == lem and ptv["recalc-lem"]["d95"] > 0
    ex = ptv["exchange"]
    assert (ex["model"], ex["model_b"], ex["b_is"]) == ("mMKM", lem, "other model, same spots")
    assert ex["diff_mean"] == pytest.approx(ex["mean_b"] - ex["mean"])
    rb = ptv["robust"]
    assert rb["b_is"].endswith("min D98, D95, D50; max D2, Dmean, Dmax "
                               "(range ±3.5 %)")  # setup_error = 0
    assert rb["model"] == rb["model_b"] == "mMKM"
    assert rb["d95_b"] <= rb["d95"]
    cmp_ = ptv["compare"]
    assert cmp_["gamma_criteria"].startswith("3") and 0 <= cmp_["gamma_pass_pct"] <= 100
    assert (cmp_["model"], cmp_["model_b"]) == ("mMKM", lem)  # plan (mMKM) vs recalc-lem
    assert cmp_["b_is"] == "dose B of the comparison" and ptv["recalc-lem"]["b_is"] is None
    for job in ("recalc-lem", "exchange", "robust", "compare"):
        assert ptv[job]["unit"] == "Gy(RBE)", job
        # The demo patient's plan of small_plan_dirs: 60 Gy(RBE) in 12 fractions to the PTV.
        assert (ptv[job]["patient_id"], ptv[job]["target"], ptv[job]["prescription_dose"],
                ptv[job]["prescription_unit"], ptv[job]["fractions"]) == (
                    "IONPLAN-DEMO-001", "PTV", 60.0, "Gy(RBE)", 12), job
    assert ptv["recalc-lem"]["prescription_model"] == "mMKM"  # the plan's, not the recalc's
    assert ptv["compare"]["prescription_model"] == "mMKM"  # side A, the plan folder
    assert ptv["recalc-lem"]["unit_b"] is None and ptv["compare"]["unit_b"] == "Gy(RBE)"
    for job in ("recalc-lem", "exchange", "robust", "compare"):
        assert (out / job / "job.json").is_file()
    assert (out / "robust" / "RTDOSE_RBE_MIN.dcm").is_file()
    assert not (out / "broken").exists()
    assert not list(out.glob(".*partial*"))


@pytest.fixture(scope="module")
def local_batch(jobs_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch_local")
    t0 = time.perf_counter()
    code = main(["batch", str(jobs_file), "--out", str(out), "--workers", "2"])
    return out, code, time.perf_counter() - t0


def test_local_batch_needs_no_server_and_records_the_broken_job(local_batch):
    out, code, _ = local_batch
    assert code == 1  # one job failed; the others ran
    _check_summary(out)


def test_finished_jobs_are_skipped_unless_rerun(local_batch, jobs_file):
    out, _, _ = local_batch
    before = {j: (out / j / "job.json").stat().st_mtime_ns for j in ("recalc-lem", "robust")}
    rows = _results(out)
    result = run_batch(jobs_file, out, workers=1)
    status = {o.name: o.status for o in result.outcomes}
    assert status == {"recalc-lem": "skipped", "exchange": "skipped", "robust": "skipped",
                      "compare": "skipped", "broken": "error"}
    assert {j: (out / j / "job.json").stat().st_mtime_ns for j in before} == before
    assert _results(out) == rows  # summary rewritten from the stored jobs: same rows


def _start(args: list[str], log: Path) -> subprocess.Popen:
    # One thread per library pool, as Dask's nanny sets for the workers it starts.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True, env=env)


def test_real_scheduler_survives_a_killed_worker_with_identical_results(
        local_batch, jobs_file, tmp_path):
    local_out, _, _ = local_batch
    sched_file = tmp_path / "scheduler.json"
    procs = [_start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                     "--no-dashboard", "--scheduler-file", str(sched_file)],
                    tmp_path / "scheduler.log")]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            procs.append(_start(["distributed.cli.dask_worker", address, "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--name", f"w{i}"],
                                tmp_path / f"worker{i}.log"))
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        out = tmp_path / "out"
        codes: list[int] = []
        runner = threading.Thread(target=lambda: codes.append(main(
            ["batch", str(jobs_file), "--out", str(out), "--scheduler", address])))
        runner.start()
        # Kill the second worker (by PID) once jobs are running on the cluster.
        deadline = time.monotonic() + 90
        while not list(out.glob(".*.partial-*")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(out.glob(".*.partial-*")), "no job started"
        time.sleep(1.0)
        os.kill(procs[2].pid, signal.SIGKILL)
        procs[2].wait(10)
        runner.join(240)
        assert not runner.is_alive()
        assert codes == [1]
        _check_summary(out)
        assert _results(out) == _results(local_out)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)


def test_jobs_file_checks(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[job]]\nkind = 'recalc'\n")
    with pytest.raises(InputError, match="no name"):
        load_jobs(bad)
    bad.write_text("[[job]]\nname='a'\nkind='recalc'\n[[job]]\nname='a'\nkind='plan'\n")
    with pytest.raises(InputError, match="two jobs"):
        load_jobs(bad)
    bad.write_text("not toml [")
    with pytest.raises(InputError, match="not a TOML"):
        load_jobs(bad)
    ok = tmp_path / "jobs.toml"
    (tmp_path / "p").mkdir()
    ok.write_text("[[job]]\nname='x'\nkind='recalc'\nct='p'\nplan='p/RTPLAN.dcm'\nfoo=1\n"
                  "[[job]]\nname='y'\nkind='teleport'\nct='p'\n"
                  "[[job]]\nname='z'\nkind='plan'\nct='p'\ntarget='PTV'\n"
                  "[[job]]\nname='w'\nkind='plan'\nct='p'\ntarget='PTV'\ndose=60\n"
                  "fractions=12\ngantry=[90, 270]\nspot-spacing=5\n")
    jobs = {j.name: j for j in load_jobs(ok)}
    assert "unknown option(s) foo" in jobs["x"].problem
    assert "unknown kind" in jobs["y"].problem
    assert "needs dose, fractions, gantry" in jobs["z"].problem
    assert jobs["w"].problem == "" and jobs["w"].options["spot_spacing"] == 5
    assert jobs["w"].ct == str(tmp_path / "p")


def test_example_jobs_file_parses(tmp_path, capsys):
    assert main(["batch", "--example"]) == 0
    text = capsys.readouterr().out
    assert text == EXAMPLE_JOBS
    path = tmp_path / "example.toml"
    path.write_text(text)
    jobs = load_jobs(path)
    assert [j.kind for j in jobs] == ["plan", "recalc", "recalc", "exchange", "robust",
                                      "compare"]
    # Its patients are not here: every job says which path is missing, before any runs.
    assert all("no such file or folder" in j.problem for j in jobs), [j.problem for j in jobs]
    for folder in ("patients/p01", "patients/p02"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("RTPLAN.dcm", "RTDOSE_RBE.dcm"):
        (tmp_path / "patients/p02" / name).touch()
    jobs = load_jobs(path)
    assert all(not j.problem for j in jobs)
    assert jobs[1].options["plan"] == "job:p01-plan" and jobs[1].reads() == ("p01-plan",)


def test_engine_threads_follow_the_environment(monkeypatch):
    from planning.engine.dose_engine import cpu_threads
    from planning.errors import PlanningError

    monkeypatch.delenv("IONPLAN_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads(None) == (os.cpu_count() or 1)
    assert cpu_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads(None) == 1
    monkeypatch.setenv("IONPLAN_THREADS", "5")  # the first variable set wins
    assert cpu_threads(None) == 5
    monkeypatch.setenv("IONPLAN_THREADS", "two")
    with pytest.raises(PlanningError, match="IONPLAN_THREADS='two'"):
        cpu_threads(None)


def test_local_cluster_workers_share_the_cores():
    """One worker on this machine gets every core for its engine; Dask's own default for a
    worker (OMP_NUM_THREADS=1) would leave it one."""
    from planning.distributed import local_cluster
    from planning.engine.dose_engine import cpu_threads

    with local_cluster(1) as client:
        threads = client.run(cpu_threads, None)
    assert list(threads.values()) == [os.cpu_count() or 1]


def test_a_folder_batch_did_not_write_is_never_replaced(tmp_path):
    """A job named like a folder of the user's (no job.json) stops the batch before any job:
    publishing the job replaced the folder with everything in it."""
    jobs = tmp_path / "jobs.toml"
    jobs.write_text("[[job]]\nname='victim'\nkind='recalc'\nct='p'\nplan='p/RTPLAN.dcm'\n")
    out = tmp_path / "out"
    (out / "victim").mkdir(parents=True)
    (out / "victim" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"did not write .no job.json. would be replaced"):
        run_batch(jobs, out)
    assert (out / "victim" / "notes.txt").read_text() == "mine"


def test_jobs_file_values_have_their_types(tmp_path):
    """fractions = 1.9 ran one fraction, dose = true planned 1 Gy, a misspelt [default] table
    and unknown keys in [defaults] were ignored."""
    jobs = tmp_path / "jobs.toml"
    job = "[[job]]\nname='w'\nkind='plan'\nct='p'\ntarget='PTV'\ngantry=[90]\n"
    jobs.write_text(job + "dose=60\nfractions=1.9\n")
    assert "fractions must be a whole number, got 1.9" in load_jobs(jobs)[0].problem
    jobs.write_text(job + "dose=true\nfractions=2\n")
    assert "dose must be a number, got True" in load_jobs(jobs)[0].problem
    jobs.write_text(job + "dose=60\nfractions=2\nexchange='yes'\n")
    assert "exchange must be true or false" in load_jobs(jobs)[0].problem
    jobs.write_text("[default]\ngrid=3\n" + job + "dose=60\nfractions=2\n")
    with pytest.raises(InputError, match=r"unknown table.s. default"):
        load_jobs(jobs)
    jobs.write_text("[defaults]\ngrdi=3\n" + job + "dose=60\nfractions=2\n")
    with pytest.raises(InputError, match=r"unknown option.s. grdi in \[defaults\]"):
        load_jobs(jobs)


@pytest.mark.parametrize("kind", ["plan", "recalc", "exchange", "robust", "compare"])
def test_jobs_choose_the_ct_series_of_a_folder(tmp_path, monkeypatch, kind):
    """ct_series in a job reaches the loader like the command line's --ct-series (a folder
    with two CT series failed every job of a patient before)."""
    import planning.api
    import planning.batch
    import planning.robust

    seen: dict[str, object] = {}

    def capture(*args, **kwargs):
        seen.update(kwargs)
        raise InputError("captured")

    for module, name in ((planning.api, "make_plan"), (planning.api, "recalculate_plan"),
                         (planning.api, "compare_doses"), (planning.robust, "robust_files")):
        monkeypatch.setattr(module, name, capture)
    options = {"plan": "target='PTV'\ndose=60.0\nfractions=2\ngantry=[90]\n",
               "compare": "a='x'\nb='y'\n"}.get(kind, "plan='p/RTPLAN.dcm'\n")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "RTPLAN.dcm").touch()  # paths are checked when the file is read
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f"[[job]]\nname='j'\nkind='{kind}'\nct='p'\nct_series='1.2.3.4'\n{options}")
    job = load_jobs(jobs)[0]
    assert not job.problem
    outcome = planning.batch.run_job(job, tmp_path / "out")
    assert "captured" in str(outcome.error)
    assert seen["ct_series_uid"] == "1.2.3.4"


def test_values_and_paths_are_checked_when_the_file_is_read(tmp_path):
    """A bad value or path of the fifth job was found only after the four before it had run
    (CLI review): now it is the job's problem from the start, reported before any job runs."""
    (tmp_path / "ct").mkdir()
    good = {"ct": '"ct"', "target": '"PTV"', "dose": "57.6", "fractions": "16",
            "gantry": "[90]"}
    bad = {("dose", "-57.6"): "dose must be above 0, got -57.6",
           ("ct", '"nonexist"'): "nonexist: no such file or folder",
           ("tissue", '"chordoma:bogus"'): "unknown LEM I rapid scheme 'bogus'",
           ("tissue", '"chordoma:"'): "no rapid scheme after ':'",
           ("rbe", '"lem"'): "unknown rbe 'lem'",
           ("grid", "0"): "grid must be above 0",
           ("label", '" "'): "label: give a name",
           ("label", '"a\\\\b"'): "which DICOM text cannot hold"}
    tables = []
    for i, (key, value) in enumerate(bad):
        entries = {**good, key: value}
        tables.append(f'[[job]]\nname = "j{i}"\nkind = "plan"\n'
                      + "".join(f"{k} = {v}\n" for k, v in entries.items()))
    jobs = tmp_path / "jobs.toml"
    jobs.write_text("".join(tables))
    problems = [j.problem for j in load_jobs(jobs)]
    for problem, wanted in zip(problems, bad.values(), strict=True):
        assert wanted in problem, (problem, wanted)


def test_a_jobs_monitor_calibration_is_read_and_checked_with_the_file(tmp_path):
    """particles_per_mu (as --particles-per-mu) for recalc, exchange and robust jobs: a
    number, N@E or a CSV table relative to the jobs file, checked before any job runs."""
    (tmp_path / "ct").mkdir()
    (tmp_path / "plan.dcm").write_bytes(b"")
    (tmp_path / "mu.csv").write_text("energy_MeV_u,particles_per_MU\n80,1.2e5\n430,3.3e5\n")
    values = {'"3.1e5@300"': "", "2.5e5": "", '"mu.csv"': "", '"0@300"': "must be a positive",
              '"missing.csv"': "particles_per_mu: monitor calibration", "true": "a number or a "
              "string"}
    tables = "".join(f'[[job]]\nname = "j{i}"\nkind = "{kind}"\nct = "ct"\nplan = "plan.dcm"\n'
                     f"particles_per_mu = {value}\n"
                     for i, (value, kind) in enumerate(zip(values, ("recalc", "robust",
                                                                    "exchange", "recalc",
                                                                    "recalc", "recalc"),
                                                           strict=True)))
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(tables)
    read = load_jobs(jobs)
    for job, wanted in zip(read, values.values(), strict=True):
        assert (wanted in job.problem) if wanted else not job.problem, (job.name, job.problem)
    assert read[2].options["particles_per_mu"] == str(tmp_path / "mu.csv")


def test_a_jobs_warnings_come_back_once_each_and_name_the_job(tmp_path, monkeypatch, caplog):
    """What a job logs at WARNING in its thread and its report's warnings come back with its
    outcome (and job.json) instead of being printed by the worker without the job's name;
    other threads' records are printed as before."""
    import logging

    from planning import batch

    def compare_job(job, out, out_root):
        logging.getLogger("planning.dicom.scan").warning("damaged DICOM file %s", "x.dcm")
        other = threading.Thread(
            target=lambda: logging.getLogger("planning.other").warning("another thread"))
        other.start()
        other.join()
        return [{"structure": ""}], ["damaged DICOM file x.dcm", "A's dose is PHYSICAL"]

    monkeypatch.setattr(batch, "_run_compare", compare_job)
    caplog.set_level(logging.WARNING)
    job = batch.JobSpec("pat3-lem", "compare", str(tmp_path), {"a": "a", "b": "b"})
    outcome = batch.run_job(job, tmp_path / "out")
    assert outcome.status == "ok"
    assert outcome.warning_lines() == ["job 'pat3-lem': damaged DICOM file x.dcm",
                                       "job 'pat3-lem': A's dose is PHYSICAL"]
    assert [r.getMessage() for r in caplog.records] == ["another thread"]
    stored = json.loads((tmp_path / "out" / "pat3-lem" / "job.json").read_text())
    assert stored["warnings"] == list(outcome.warnings)
    # The planning logger is as it was once no job collects.
    assert logging.getLogger("planning").propagate and not logging.getLogger("planning").handlers


def _nonconforming_foreign_plan(plan_dir: Path, path: Path) -> None:
    """The plan of ``plan_dir`` as another system might send it: an RT Plan Label longer than
    SH's 16 characters (pydicom warns when it reads it) and an RBE model IonPlan does not
    know (in the report's warnings)."""
    import pydicom

    from planning.dicom._export_common import RBE_MODEL_PREFIX
    from planning.dicom._rbe_block import PRIVATE_GROUP

    ds = pydicom.dcmread(plan_dir / "RTPLAN.dcm")
    for tag in [e.tag for e in ds if e.tag.group == PRIVATE_GROUP]:  # IonPlan's model record
        del ds[tag]
    ds.RTPlanDescription = f"{RBE_MODEL_PREFIX}XiO RBE table v3"
    del ds.RTPlanLabel  # read with validation on: a new element, made without it
    with pydicom.config.disable_value_validation():
        ds.RTPlanLabel = "Head boost, second series"
        ds.save_as(path)


def test_python_warnings_of_jobs_on_one_worker_each_name_their_job(tmp_path_factory, tmp_path):
    """A Python warning raised in a job on a worker (pydicom reading a nonconforming value:
    the worker printed it without the job's name) is printed under the job's name and kept in
    its job.json, for each of two jobs that run one after the other on the same worker
    process (test_log_capture: Python shows a warning once per place and process); pydicom
    logs what it warns of, the unknown model is in the report: each is printed once per job,
    and nothing without a job's name."""
    ct, plan = small_plan_dirs(tmp_path_factory)
    foreign = tmp_path / "foreign.dcm"
    _nonconforming_foreign_plan(plan, foreign)
    jobs = tmp_path / "jobs.toml"
    jobs.write_text("".join(f'[[job]]\nname = "{name}"\nkind = "recalc"\nct = "{ct}"\n'
                            f'plan = "{foreign}"\ngrid = 8.0\ndevice = "cpu"\n\n'
                            for name in ("pat1", "pat2")))
    done = subprocess.run([sys.executable, "-m", "planning.cli", "batch", str(jobs), "--out",
                           str(tmp_path / "out"), "--workers", "1"], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    # pydicom's text after the file it was about (test_log_capture).
    label = f"{foreign}: The value length (26) exceeds the maximum length of 16 allowed for VR SH."
    model = ("the plan names RBE model 'XiO RBE table v3', which IonPlan does not know: "
             "its dose is recalculated under mMKM (the default)")
    for name in ("pat1", "pat2"):
        for message in (label, model):
            assert lines.count(f"ionplan: warning: job {name!r}: {message}") == 1, lines
        stored = json.loads((tmp_path / "out" / name / "job.json").read_text())["warnings"]
        assert stored.count(label) == 1 and stored.count(model) == 1, stored
    assert all(line.startswith(("ionplan: job ", "ionplan: warning: job ")) for line in lines), (
        lines)


def _warning_scenarios(inputs, scenarios, **_):
    """A scenario task that warns (Python and logged, the same each time) and computes nothing."""
    import logging
    import warnings

    from planning.robust import ScenarioDose

    warnings.warn("a RuntimeWarning of the dose engine", RuntimeWarning, stacklevel=1)
    logging.getLogger("planning.engine").warning("a logged note")
    return [ScenarioDose(sc, None, None, 0.0) for sc in scenarios]


def _no_inputs():
    return None


def test_what_scenario_tasks_warn_of_is_logged_once_where_the_runner_waits(monkeypatch):
    """A robust job's scenarios are tasks in other threads (or processes) of the cluster: what
    they warn of comes back with their doses and is logged, once, in the job's thread, which
    collects it with the job's name."""
    from planning import robust
    from planning.distributed import dask_scenario_runner
    from planning.log_capture import collected_warnings

    monkeypatch.setattr(robust, "position_doses", _warning_scenarios)
    scenarios = [robust.Scenario(f"shift {x}", 0.0, (float(x), 0.0, 0.0)) for x in (1, 2, 3)]
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        with collected_warnings() as job_warnings:
            done = list(dask_scenario_runner(client)(_no_inputs, scenarios, None, None))
    assert sorted(d.scenario.name for d in done) == ["shift 1", "shift 2", "shift 3"]
    assert job_warnings == ["RuntimeWarning: a RuntimeWarning of the dose engine",
                            "a logged note"]


def test_quiet_logs_outlasts_the_import_of_distributed():
    """distributed sets its loggers to INFO when first imported (after quiet_logs, in a batch):
    the scheduler's and workers' INFO lines flooded stderr."""
    code = ("import logging; from planning.distributed import quiet_logs; quiet_logs(); "
            "import distributed.scheduler; "
            "print(logging.getLogger('distributed.scheduler').getEffectiveLevel())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "30", done.stdout  # logging.WARNING


def test_batch_prints_each_warning_with_its_job_and_no_dask_info(tmp_path_factory, tmp_path):
    """``ionplan batch`` on a terminal: every warning line names its job; Dask says nothing
    unless asked (-v)."""
    ct, plan = small_plan_dirs(tmp_path_factory)
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[[job]]\nname = "pat3-mixed"\nkind = "compare"\nct = "{ct}"\n'
                    f'a = "{plan}/RTDOSE_PHYSICAL.dcm"\nb = "{plan}/RTDOSE_RBE.dcm"\n'
                    "no_cross_model = true\n")
    done = subprocess.run([sys.executable, "-m", "planning.cli", "batch", str(jobs), "--out",
                           str(tmp_path / "out"), "--workers", "1"], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("ionplan: job pat3-mixed (compare): ok in "), lines
    assert ("ionplan: warning: job 'pat3-mixed': a dose difference or gamma index between a "
            "physical (A) and an RBE-weighted dose (B) has no clinical meaning: neither is "
            "computed; B / A is reported, their effective RBE") in lines
    assert all(line.startswith(("ionplan: job ", "ionplan: warning: job 'pat3-mixed': "))
               for line in lines), lines
    # Its summary rows: each dose in its unit, no difference of the two, no gamma.
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["rows"]
    ptv = next(r for r in rows if r["structure"] == "PTV")
    assert ptv["model"] == "physical dose" and ptv["d95_b"] > 1.5 * ptv["d95"]
    assert (ptv["unit"], ptv["unit_b"]) == ("Gy", "Gy(RBE)")
    assert all(r[f"diff_{k}"] is None for r in rows
               for k in ("d98", "d95", "d50", "d2", "mean", "max"))
    assert all(r.get("gamma_pass_pct") is None for r in rows)


def _scenario(name: str, ptv: tuple[float, ...], brainstem: tuple[float, ...]) -> dict:
    keys = ("d98_gy_rbe", "d95_gy_rbe", "d50_gy_rbe", "d2_gy_rbe", "mean_gy_rbe", "max_gy_rbe")
    return {"name": name, "structures": {"PTV": dict(zip(keys, ptv, strict=True)),
                                         "Brainstem": dict(zip(keys, brainstem, strict=True))}}


def test_robust_summary_row_gives_an_organs_highest_dose_and_names_each_extreme(
        monkeypatch, tmp_path):
    """An organ's worst case over the scenarios is its highest dose by every metric (its
    lowest D50 was labelled "worst case": review); a target's is its lowest D98/D95/D50 and
    highest D2/Dmean/Dmax; model_b says which extreme each value is."""
    from planning import robust
    from planning.robust import worst_case

    scenarios = [_scenario("nominal", (53, 54, 57, 59, 57, 60), (0.2, 0.8, 13.5, 28, 12.8, 42)),
                 _scenario("SPR +3.5%", (46, 48, 54, 60, 56, 61), (0.1, 0.2, 11.3, 27, 11.0, 40)),
                 _scenario("shift", (52, 53, 58, 64, 59, 67), (0.3, 0.9, 14.8, 31, 14.4, 46))]
    rep = {"rbe_model": "mMKM HSG Fclin=2.41", "prescription": {"target": "PTV"},
           "structures": {"PTV": {"interpreted_type": "PTV"},
                          "Brainstem": {"interpreted_type": "ORGAN"}},
           "scenarios": scenarios, "worst_case": {"structures": worst_case(scenarios)},
           "warnings": []}

    class Result:
        report = rep

    monkeypatch.setattr(robust, "robust_files", lambda *a, **k: Result())
    ct = tmp_path / "ct"
    ct.mkdir()
    options = {"plan": "p.dcm", "range_error": 2.5, "setup_directions": 14, "combined": True}
    outcome = run_job(JobSpec("rob", "robust", str(ct), options), tmp_path / "out")
    assert outcome.status == "ok", outcome.error
    rows = {r["structure"]: r for r in outcome.rows}
    organ, target = rows["Brainstem"], rows["PTV"]
    assert [organ[f"{k}_b"] for k in ("d98", "d95", "d50", "d2", "mean", "max")] == [
        0.3, 0.9, 14.8, 31, 14.4, 46]
    # model_b is a model (the worst case is under the plan's model); b_is says what b is.
    assert organ["model"] == organ["model_b"] == target["model_b"] == "mMKM"
    assert organ["b_is"] == ("worst of 3 scenarios: max of each "
                             "(range ±2.5 %, setup 3 mm in 14 directions, and combined)")
    assert [target[f"{k}_b"] for k in ("d98", "d95", "d50", "d2", "mean", "max")] == [
        46, 48, 54, 64, 59, 67]
    assert target["b_is"] == ("worst of 3 scenarios: min D98, D95, D50; max D2, Dmean, Dmax "
                              "(range ±2.5 %, setup 3 mm in 14 directions, and combined)")


def test_summary_csv_shows_float_noise_as_zero_and_json_keeps_it(tmp_path):
    """summary.csv gave the body's D50 as 1.02481072875924e-08 and the exchange difference as
    4.996e-08 Gy(RBE) (review): float noise of the dose engine, shown as data. The CSV rounds
    doses to 0.1 mGy(RBE); summary.json keeps every digit, as report.json does."""
    import csv

    from planning.batch import JobOutcome, write_summary

    a = {"d50": 1.0248107e-08, "d2": 19.008229675, "mean": 1.37506116}
    b = {"d50": 6.0208193e-08, "d2": 31.493018799, "mean": 2.25618617}
    row = {"structure": "External", "model": "mMKM", "model_b": "LEM I",
           **a, **{f"{k}_b": v for k, v in b.items()},
           **{f"diff_{k}": b[k] - a[k] for k in a}, "diff_d98": -4.0e-9}
    csv_path, json_path = write_summary(
        [JobOutcome("ex", "exchange", "ok", seconds=1.0, rows=(row,))], tmp_path)
    (written,) = list(csv.DictReader(csv_path.open()))
    assert written["d50"] == written["d50_b"] == "0.0"
    assert written["diff_d50"] == "0.0" and written["diff_d98"] == "0.0"
    assert written["d2"] == "19.0082" and written["diff_d2"] == "12.4848"
    assert written["mean_b"] == "2.2562" and written["seconds"] == "1.0"
    (kept,) = json.loads(json_path.read_text())["rows"]
    assert kept["d50"] == 1.0248107e-08 and kept["d2"] == 19.008229675


def test_summary_counts_each_jobs_warnings_and_keeps_failed_jobs(tmp_path):
    """Which jobs of a cohort warned could be seen only in each job.json: every row of a job
    gives the number of its warnings, a failed job's one row too (with its error)."""
    import csv

    from planning.batch import JobOutcome, write_summary

    outcomes = [
        JobOutcome("p1", "recalc", "ok", seconds=2.0,
                   rows=({"structure": "PTV"}, {"structure": "Brainstem"}),
                   warnings=("1 file(s) skipped", "Patient Position missing")),
        JobOutcome("p2", "recalc", "skipped", seconds=3.0, rows=({"structure": "PTV"},)),
        JobOutcome("p3", "plan", "error", "p3/ct: no such file or folder", 0.5,
                   warnings=("damaged file ignored",)),
    ]
    csv_path, json_path = write_summary(outcomes, tmp_path)
    expected = [("p1", "ok", "PTV", 2, ""), ("p1", "ok", "Brainstem", 2, ""),
                ("p2", "skipped", "PTV", 0, ""),
                ("p3", "error", "", 1, "p3/ct: no such file or folder")]
    rows = json.loads(json_path.read_text())["rows"]
    assert [(r["job"], r["status"], r["structure"], r["warnings"], r["error"])
            for r in rows] == expected
    written = list(csv.DictReader(csv_path.open()))
    assert [(r["job"], r["status"], r["structure"], r["warnings"], r["error"])
            for r in written] == [(j, st, name, str(n), e) for j, st, name, n, e in expected]


def test_summary_rows_say_the_unit_of_their_doses():
    """A physical-dose plan's row gave its doses in columns named *_gy_rbe with nothing to say
    they were Gy (review): ``unit`` and ``unit_b`` say it; doses of two units get no b - a."""
    from planning.batch import _plan_rows, _row
    from planning.rbe import PhysicalDose

    job = JobSpec(name="p", kind="plan", ct="ct", options={})
    metrics = {"d95_gy_rbe": 19.5, "mean_gy_rbe": 20.0, "dmax_gy_rbe": 21.0}
    for rep, unit in (({"rbe_model": PhysicalDose().describe()}, "Gy"),
                      ({"rbe_model": "mMKM ...", "dose_unit": "Gy(RBE)"}, "Gy(RBE)"),
                      ({"rbe_model": "mMKM ...", "dose_unit": "Gy"}, "Gy")):
        (row,) = _plan_rows(job, {**rep, "structures": {"PTV": metrics}})
        assert (row["unit"], row["unit_b"], row["max"]) == (unit, None, 21.0)
    mixed = _row(job, "PTV", {"mean_gy_rbe": 20.0}, "physical dose", {"mean_gy_rbe": 50.0},
                 "mMKM", unit="Gy", unit_b="Gy(RBE)")
    assert (mixed["unit"], mixed["unit_b"], mixed["diff_mean"]) == ("Gy", "Gy(RBE)", None)
    same = _row(job, "PTV", {"mean_gy_rbe": 20.0}, "mMKM", {"mean_gy_rbe": 21.0}, "LEM I")
    assert (same["unit_b"], same["diff_mean"]) == ("Gy(RBE)", 1.0)


def test_a_plan_job_is_named_by_its_label_or_its_job_name(tmp_path, monkeypatch):
    """Every plan of a batch was "IonPlan" (RT Plan Label and Name, document, file names):
    a plan job is named by its ``label``, else by the job's name (review)."""
    import planning.api
    import planning.batch

    seen: list[str] = []

    def capture(*args, **kwargs):
        seen.append(kwargs["label"])
        raise InputError("captured")

    monkeypatch.setattr(planning.api, "make_plan", capture)
    (tmp_path / "p").mkdir()
    plan = "kind='plan'\nct='p'\ntarget='PTV'\ndose=60.0\nfractions=2\ngantry=[90]\n"
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f"[[job]]\nname='p01-boost'\n{plan}[[job]]\nname='p02'\n{plan}"
                    "label='Sacrum boost, phase 2'\n")
    for job in load_jobs(jobs):
        assert not job.problem
        planning.batch.run_job(job, tmp_path / "out")
    assert seen == ["p01-boost", "Sacrum boost, phase 2"]


_CLUSTER_BESIDE_8787 = """
import socket, warnings
from planning.distributed import local_cluster

if __name__ == "__main__":
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        held.bind(("0.0.0.0", 8787))
        held.listen()
    except OSError:  # another program holds it: the case under test all the same
        pass
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with local_cluster(1) as client:
            info = client.run_on_scheduler(
                lambda dask_scheduler: dask_scheduler.http_server.address)
    print(info)
    print("|".join(str(w.message).splitlines()[0] for w in seen
                   if issubclass(w.category, UserWarning)))
"""


def test_local_cluster_beside_another_on_port_8787_warns_of_nothing(tmp_path):
    """The scheduler's HTTP routes took port 8787 and warned ("Port 8787 is already in use")
    when another Dask cluster ran: a batch run printed it as one of its warnings."""
    script = tmp_path / "beside.py"
    script.write_text(_CLUSTER_BESIDE_8787)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    address, warned = done.stdout.splitlines()
    assert address == "127.0.0.1"
    assert warned == ""


def test_summary_rows_name_the_patient_and_the_prescription():
    """A cohort table had no patient ID and no prescription: a patient with another ID showed
    it only in a PDF's file name (review). Each row gives them from the job's report."""
    from planning.batch import _context, _plan_rows

    job = JobSpec(name="p02", kind="plan", ct="ct", options={})
    rep = {"rbe_model": "LEM I chordoma rapid=averaged",
           "patient": {"patient_id": "EXCH-002", "patient_name": "Exchange^Two"},
           "prescription": {"target": "PTV", "total_dose_gy_rbe": 66.0, "n_fractions": 22,
                            "unit": "Gy(RBE)", "model": "LEM I chordoma, averaged"},
           "structures": {"PTV": {"d95_gy_rbe": 63.0}, "Brainstem": {"d2_gy_rbe": 40.0}}}
    rows = _plan_rows(job, rep)
    assert [(r["structure"], r["patient_id"], r["target"], r["prescription_dose"],
             r["prescription_unit"], r["fractions"], r["prescription_model"]) for r in rows] == [
        (name, "EXCH-002", "PTV", 66.0, "Gy(RBE)", 22, "LEM I chordoma, averaged")
        for name in ("PTV", "Brainstem")]
    # A compare report: the patient of its CT, the prescription of side A's plan, else B's.
    rx = {"target": "GTV", "total_dose_gy_rbe": 2.0, "n_fractions": 1, "unit": "Gy"}
    compared = {"patient": {"patient_id": "P9"}, "a": {"prescription": None},
                "b": {"prescription": rx}}
    assert _context(compared) == {"patient_id": "P9", "target": "GTV", "prescription_dose": 2.0,
                                  "prescription_unit": "Gy", "fractions": 1,
                                  "prescription_model": None}
    assert set(_context({}).values()) == {None}


def test_summary_dose_columns_name_no_unit_and_older_job_rows_are_read():
    """The dose columns were named *_gy_rbe while ``unit`` said Gy for a physical dose (review):
    they name no unit; ``unit`` says it. A job.json written before keeps its doses."""
    from planning.batch import JobOutcome, summary_rows

    assert not [c for c in SUMMARY_COLUMNS if "gy" in c.lower()]
    assert SUMMARY_COLUMNS[SUMMARY_COLUMNS.index("unit"):][:7] == (
        "unit", "d98", "d95", "d50", "d2", "mean", "max")
    older = {"structure": "PTV", "model": "physical dose", "unit": "Gy", "d95_gy_rbe": 17.03,
             "max_gy_rbe_b": 19.6, "diff_d2_gy_rbe": 0.5}
    (row,) = summary_rows([JobOutcome("phys", "recalc", "skipped", rows=(older,))])
    assert (row["unit"], row["d95"], row["max_b"], row["diff_d2"]) == ("Gy", 17.03, 19.6, 0.5)
    assert set(row) == set(SUMMARY_COLUMNS)


def test_summary_csv_rounds_gamma_pass_rates_and_json_keeps_them(tmp_path):
    """summary.csv gave gamma pass rates as 35.83106267029973 beside rounded doses (review):
    it gives them to 2 decimals (%), as report.html; summary.json keeps every digit."""
    import csv

    from planning.batch import JobOutcome, write_summary

    row = {"structure": "PTV", "d95": 54.218123, "gamma_criteria": "3%/3mm",
           "gamma_pass_pct": 35.83106267029973, "gamma2_criteria": "2%/2mm",
           "gamma2_pass_pct": 100.0}
    csv_path, json_path = write_summary(
        [JobOutcome("cmp", "compare", "ok", seconds=1.0, rows=(row,))], tmp_path)
    (written,) = list(csv.DictReader(csv_path.open()))
    assert (written["gamma_pass_pct"], written["gamma2_pass_pct"]) == ("35.83", "100.0")
    assert written["d95"] == "54.2181"
    (kept,) = json.loads(json_path.read_text())["rows"]
    assert kept["gamma_pass_pct"] == 35.83106267029973


def test_closing_the_local_cluster_does_not_warn_of_a_slow_worker_it_kills(monkeypatch, caplog):
    """CI: on a loaded machine, ``ionplan batch`` ended with "WARNING distributed.nanny: Worker
    process still alive after 4.0 seconds, killing", Dask's housekeeping at shutdown (every
    task done), read as a warning of the run. Other warnings of the nanny still come through."""
    import logging

    pytest.importorskip("distributed")
    import distributed

    from planning.distributed import local_cluster

    nanny = logging.getLogger("distributed.nanny")

    class Cluster:
        def __init__(self, **kwargs):
            pass

        def close(self):
            nanny.warning("Worker process still alive after 4.0 seconds, killing")
            nanny.warning("Restarting worker")

    class Client:
        def __init__(self, cluster):
            pass

        def close(self):
            pass

    monkeypatch.setattr(distributed, "LocalCluster", Cluster)
    monkeypatch.setattr(distributed, "Client", Client)
    with caplog.at_level(logging.WARNING, logger="distributed.nanny"):
        with local_cluster(1):
            pass
    assert [r.getMessage() for r in caplog.records] == ["Restarting worker"]
    assert not nanny.filters  # only while the cluster closes
