"""ionplan batch: a compare job that reads another job's folder runs after it and never reports
numbers of an older run of it.

The scheduling, skip and dependency logic are planning.batch's own; the cluster is a
synchronous stand-in that runs each task as it is submitted (so a compare submitted before the
job it reads finds no folder), and the job bodies are stubs: a recalc writes its ``rbe`` option
into its folder, a compare reports what it found in the folder of its ``b`` (neither warns).
"""

from __future__ import annotations

import contextlib
import json
import types
from pathlib import Path
from typing import Any

import pytest

from planning import batch
from planning import distributed as dist
from planning.errors import InputError


class _Done:
    """A finished task of the stand-in cluster."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


class _Cluster:
    """Runs each submitted task at once; records (job name, names of the jobs it waits for)."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, list[str]]] = []

    def submit(self, fn, job, root, deps, pure=False, key=None):
        self.submitted.append((job.name, [d.value.name for d in deps]))
        return _Done(fn(job, root, [d.result() for d in deps]))


@pytest.fixture
def cluster(monkeypatch):
    """The stand-in cluster and stub job bodies; ``cluster.compares`` counts compare runs,
    ``cluster.fail`` names jobs whose body raises."""
    fake = _Cluster()
    fake.compares = 0
    fake.fail = set()
    fake.plans = {}  # job name: (the plan path its body got, what that file held)

    @contextlib.contextmanager
    def local_cluster(workers=None):
        yield fake

    def recalc(job, out, exchange=False):
        if job.name in fake.fail:
            raise InputError(f"{job.name}: stub failure")
        plan = Path(job.options["plan"])
        fake.plans[job.name] = (plan, plan.read_text() if plan.is_file() else "missing")
        (out / "rbe.txt").write_text(str(job.options["rbe"]))
        (out / "RTPLAN.dcm").write_text(f"plan of {job.name} under {job.options['rbe']}")
        return [{"structure": "PTV", "model": str(job.options["rbe"])}], []

    def compare(job, out, root):
        fake.compares += 1
        if job.name in fake.fail:
            raise InputError(f"{job.name}: stub failure")
        b = Path(batch._resolve_side(job.options["b"], root)) / "rbe.txt"
        return [{"structure": "PTV", "model": "A",
                 "model_b": b.read_text() if b.is_file() else "missing"}], []

    monkeypatch.setattr(dist, "local_cluster", local_cluster)
    monkeypatch.setattr(dist, "require_distributed",
                        lambda: types.SimpleNamespace(as_completed=lambda futures: futures))
    monkeypatch.setattr(batch, "_run_recalc", recalc)
    monkeypatch.setattr(batch, "_run_compare", compare)
    return fake


def _cmp(name: str = "cmp", b: str = "rec") -> str:
    return f'[[job]]\nname="{name}"\nkind="compare"\nct="ct"\na="a.dcm"\nb="{b}"\n'


def _rec(rbe: str = "lem1", name: str = "rec", extra: str = "") -> str:
    return (f'[[job]]\nname="{name}"\nkind="recalc"\nct="ct"\nplan="a.dcm"\nrbe="{rbe}"\n'
            + extra)


def _jobs(tmp_path: Path, *tables: str) -> Path:
    (tmp_path / "ct").mkdir(exist_ok=True)
    if not (tmp_path / "a.dcm").exists():  # the same file on every run (its time counts)
        (tmp_path / "a.dcm").write_text("")
    path = tmp_path / "jobs.toml"
    path.write_text("".join(tables))
    return path


def _status(result: batch.BatchResult) -> dict[str, tuple[str, str | None]]:
    """{job: (status, what the compare read)}."""
    return {o.name: (o.status, o.rows[0].get("model_b") if o.rows else None)
            for o in result.outcomes}


def test_compare_listed_first_runs_after_the_job_whose_folder_it_reads(cluster, tmp_path):
    result = batch.run_batch(_jobs(tmp_path, _cmp(), _rec()), tmp_path / "out")
    assert cluster.submitted == [("rec", []), ("cmp", ["rec"])]
    assert _status(result) == {"cmp": ("ok", "lem1"), "rec": ("ok", None)}
    assert [o.name for o in result.outcomes] == ["cmp", "rec"]  # the file's order


def test_a_chain_is_ordered_whatever_the_listing(cluster, tmp_path):
    # c2 reads c1's folder, c1 reads rec's: the only order is rec, c1, c2.
    result = batch.run_batch(_jobs(tmp_path, _cmp("c2", "c1"), _cmp("c1", "rec"), _rec()),
                             tmp_path / "out")
    assert cluster.submitted == [("rec", []), ("c1", ["rec"]), ("c2", ["c1"])]
    assert {o.name: o.status for o in result.outcomes} == {"c2": "ok", "c1": "ok", "rec": "ok"}


def test_compare_reruns_when_the_job_it_reads_reruns_with_new_options(cluster, tmp_path):
    out = tmp_path / "out"
    first = batch.run_batch(_jobs(tmp_path, _rec("lem1"), _cmp()), out)
    assert _status(first) == {"rec": ("ok", None), "cmp": ("ok", "lem1")}
    second = batch.run_batch(_jobs(tmp_path, _rec("mkm"), _cmp()), out)
    assert _status(second) == {"rec": ("ok", None), "cmp": ("ok", "mkm")}
    third = batch.run_batch(_jobs(tmp_path, _rec("mkm"), _cmp()), out)
    assert _status(third) == {"rec": ("skipped", None), "cmp": ("skipped", "mkm")}
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["model_b"] for r in rows if r["job"] == "cmp"] == ["mkm"]


def test_compare_reruns_when_the_job_it_reads_was_redone(cluster, tmp_path):
    """Same options, but the folder it read is gone and made again in this batch."""
    out = tmp_path / "out"
    jobs = _jobs(tmp_path, _rec(), _cmp())
    batch.run_batch(jobs, out)
    (out / "rec" / "job.json").write_text('{"status": "error"}')  # to be redone
    (out / "rec" / "rbe.txt").write_text("an older run")  # what a reader must not keep
    result = batch.run_batch(jobs, out)
    assert _status(result) == {"rec": ("ok", None), "cmp": ("ok", "lem1")}
    assert cluster.compares == 2


def test_compare_reruns_after_an_interrupted_batch_changed_the_job_it_reads(cluster, tmp_path):
    """The upstream job reran with new options but the compare did not finish then: the next
    batch skips the upstream job and must still rerun the compare."""
    out = tmp_path / "out"
    batch.run_batch(_jobs(tmp_path, _rec("lem1"), _cmp()), out)
    cluster.fail = {"cmp"}
    failed = batch.run_batch(_jobs(tmp_path, _rec("mkm"), _cmp()), out)
    assert _status(failed) == {"rec": ("ok", None), "cmp": ("error", None)}
    cluster.fail = set()
    result = batch.run_batch(_jobs(tmp_path, _rec("mkm"), _cmp()), out)
    assert _status(result) == {"rec": ("skipped", None), "cmp": ("ok", "mkm")}


def test_compare_of_a_failed_or_impossible_job_does_not_read_its_old_folder(cluster, tmp_path):
    out = tmp_path / "out"
    batch.run_batch(_jobs(tmp_path, _rec("lem1"), _cmp()), out)
    assert cluster.compares == 1
    cluster.fail = {"rec"}  # fails at run time: its lem1 folder stays
    result = batch.run_batch(_jobs(tmp_path, _rec("mkm"), _cmp()), out)
    errors = {o.name: (o.status, o.error) for o in result.outcomes}
    assert errors["rec"][0] == "error" and errors["rec"][1].startswith("rec: stub failure")
    assert errors["cmp"][0] == "error" and "'rec'" in errors["cmp"][1]
    assert "failed" in errors["cmp"][1]
    # A job that cannot run at all (unknown option): its reader is not even submitted.
    cluster.submitted.clear()
    result = batch.run_batch(_jobs(tmp_path, _rec("mkm", extra="colour=1\n"), _cmp()), out)
    errors = {o.name: (o.status, o.error) for o in result.outcomes}
    assert "unknown option(s) colour" in errors["rec"][1]
    assert errors["cmp"][0] == "error" and "'rec'" in errors["cmp"][1]
    assert "cannot run" in errors["cmp"][1]
    assert cluster.submitted == []
    assert cluster.compares == 1
    assert (out / "cmp" / "job.json").is_file()  # the earlier, complete result stays


@pytest.mark.parametrize("tables, message", [
    ((_cmp("c1", "c2"), _cmp("c2", "c1")), "c1 -> c2 -> c1 read each other's folders"),
    ((_cmp("self", "self"),), "self -> self read each other's folders"),
    ((_rec(), _cmp("cmp", "recc")), "job 'cmp' compares 'recc', which is no job"),
], ids=["cycle", "self", "missing"])
def test_a_cycle_or_a_missing_folder_stops_the_batch_before_any_work(cluster, tmp_path, tables,
                                                                     message):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=message):
        batch.run_batch(_jobs(tmp_path, *tables), out)
    assert cluster.submitted == []
    assert list(out.iterdir()) == []


def test_compare_may_read_a_folder_of_the_output_that_no_job_makes(cluster, tmp_path):
    out = tmp_path / "out"
    (out / "partner").mkdir(parents=True)
    (out / "partner" / "rbe.txt").write_text("partner dose")
    result = batch.run_batch(_jobs(tmp_path, _cmp("cmp", "partner")), out)
    assert cluster.submitted == [("cmp", [])]
    assert _status(result) == {"cmp": ("ok", "partner dose")}


def test_a_job_s_signature_holds_the_lem_model_its_defaults_resolve_to():
    """A finished LEM I job is up to date only under the same resolved model: the rapid
    scheme a tissue without one means changed on 2026-12-07 (central -> averaged), and a job
    run before must run again, not be skipped with the old numbers."""
    def spec(kind: str, **options: Any) -> batch.JobSpec:
        return batch.JobSpec("j", kind, "/ct", options)

    assert "rapid=averaged" in spec("plan", rbe="lem1", tissue="chordoma").signature()["lem"]
    assert "rapid=averaged" in spec("exchange", plan="/p").signature()["lem"]
    assert "rapid=averaged" in spec("plan", exchange=True).signature()["lem"]
    assert "rapid=central" in spec("recalc", plan="/p", rbe="lem1",
                                   tissue="chordoma:central").signature()["lem"]
    for job in (spec("plan", rbe="mkm"), spec("recalc", plan="/p"), spec("compare", a="x", b="y"),
                spec("plan", rbe="lem1", tissue="bone")):  # a bad tissue: its own error
        assert "lem" not in job.signature(), job


def test_a_lem_job_finished_under_another_default_scheme_runs_again(tmp_path: Path):
    job = batch.JobSpec("j", "plan", "/ct", {"rbe": "lem1", "tissue": "chordoma"})
    (tmp_path / "j").mkdir()
    signature = job.signature()
    stored = {"status": "ok", "seconds": 1.0, "rows": [], "signature": signature}
    (tmp_path / "j" / "job.json").write_text(json.dumps(stored))
    assert batch.finished_outcome(job, tmp_path) is not None  # up to date: skipped
    before = dict(signature, lem=signature["lem"].replace("rapid=averaged", "rapid=central"))
    (tmp_path / "j" / "job.json").write_text(json.dumps(dict(stored, signature=before)))
    assert batch.finished_outcome(job, tmp_path) is None
    del before["lem"]  # written before signatures held the model
    (tmp_path / "j" / "job.json").write_text(json.dumps(dict(stored, signature=before)))
    assert batch.finished_outcome(job, tmp_path) is None


def test_a_job_reruns_when_its_input_file_was_replaced_under_the_same_name(cluster, tmp_path):
    """A plan file replaced by another under the same name left every job "skipped" with the
    old plan's numbers (review); the files the options name are part of the signature."""
    import os

    out = tmp_path / "out"
    jobs = _jobs(tmp_path, _rec("lem1"), _cmp())
    first = batch.run_batch(jobs, out)
    assert _status(first) == {"rec": ("ok", None), "cmp": ("ok", "lem1")}
    again = batch.run_batch(jobs, out)
    assert _status(again) == {"rec": ("skipped", None), "cmp": ("skipped", "lem1")}
    plan = tmp_path / "a.dcm"
    plan.write_text("another plan")
    st = plan.stat()
    os.utime(plan, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # and a second later
    third = batch.run_batch(jobs, out)
    assert [o.status for o in third.outcomes] == ["ok", "ok"]  # both read a.dcm
    (tmp_path / "ct" / "new_slice.dcm").write_text("")  # the CT folder changed too
    assert [o.status for o in batch.run_batch(jobs, out).outcomes] == ["ok", "ok"]


def test_a_skipped_jobs_line_says_its_time_is_the_earlier_runs():
    """A skipped job printed "skipped in 4.6 s": the time of the run it kept (review)."""
    ran = batch.JobOutcome("rec", "recalc", "ok", seconds=4.6)
    kept = batch.JobOutcome("rec", "recalc", "skipped", seconds=4.6)
    assert ran.line() == "job rec (recalc): ok in 4.6 s"
    assert kept.line() == "job rec (recalc): skipped (up to date; its run took 4.6 s)"


def test_a_recalc_s_plan_may_name_a_plan_job_and_runs_after_it(cluster, tmp_path):
    """``plan`` could not name a job (only compare's a/b could; review): it may now, with the
    same order and signature rules; the job reads the RTPLAN.dcm in that job's folder."""
    out = tmp_path / "out"
    jobs = _jobs(tmp_path, _rec("lem1", "lem").replace('plan="a.dcm"', 'plan="rec"'),
                 _rec("mkm"))
    first = batch.run_batch(jobs, out)
    assert cluster.submitted == [("rec", []), ("lem", ["rec"])]
    assert cluster.plans["lem"] == (out / "rec" / "RTPLAN.dcm", "plan of rec under mkm")
    assert [o.status for o in first.outcomes] == ["ok", "ok"]
    assert [o.status for o in batch.run_batch(jobs, out).outcomes] == ["skipped", "skipped"]
    # The plan job reruns with other options: its reader reruns on the new plan.
    jobs.write_text(jobs.read_text().replace('rbe="mkm"', 'rbe="const"'))
    third = batch.run_batch(jobs, out)
    assert [o.status for o in third.outcomes] == ["ok", "ok"]
    assert cluster.plans["lem"][1] == "plan of rec under const"


def test_a_path_into_another_job_s_folder_is_that_job(cluster, tmp_path):
    """A path into --out that belongs to another job's folder had no order: a job read the
    plan that the same run was replacing and was reported ok (review). It is that job now."""
    out = tmp_path / "out"
    reader = _rec("lem1", "lem").replace('plan="a.dcm"', 'plan="out/rec/RTPLAN.dcm"')
    jobs = _jobs(tmp_path, reader, _rec("mkm"))
    (spec_lem, _) = batch.load_jobs(jobs, out)
    assert spec_lem.options["plan"] == "job:rec/RTPLAN.dcm" and spec_lem.reads() == ("rec",)
    batch.run_batch(jobs, out)
    assert cluster.submitted == [("rec", []), ("lem", ["rec"])]
    assert cluster.plans["lem"] == (out / "rec" / "RTPLAN.dcm", "plan of rec under mkm")
    jobs.write_text(jobs.read_text().replace('rbe="mkm"', 'rbe="const"'))
    again = batch.run_batch(jobs, out)
    assert [o.status for o in again.outcomes] == ["ok", "ok"]
    assert cluster.plans["lem"][1] == "plan of rec under const"
    # Given absolute, the same.
    absolute = _rec("lem1", "lem").replace('plan="a.dcm"', f'plan="{out}/rec"')
    (spec_lem, _) = batch.load_jobs(_jobs(tmp_path, absolute, _rec("mkm")), out)
    assert spec_lem.options["plan"] == "job:rec"


def test_what_can_name_a_job_is_said_and_a_compare_is_no_plan(cluster, tmp_path):
    out = tmp_path / "out"
    jobs = _jobs(tmp_path, _rec("lem1", "lem").replace('ct="ct"', 'ct="rec"'), _rec("mkm"))
    problem = batch.load_jobs(jobs, out)[0].problem
    assert problem.endswith("rec: no such file or folder (only plan, a, b can name another job)")
    with pytest.raises(InputError, match="reads the plan of 'nojob', which is no job"):
        batch.run_batch(_jobs(tmp_path, _rec("lem1").replace('"a.dcm"', '"nojob"')), out)
    with pytest.raises(InputError, match="reads the plan of 'cmp', a compare job, which writes "
                                         "no plan"):
        batch.run_batch(_jobs(tmp_path, _cmp(), _rec().replace('"a.dcm"', '"cmp"')), out)
    assert cluster.submitted == []


def test_a_second_jobs_file_into_the_same_folder_keeps_the_first_one_s_rows(cluster, tmp_path,
                                                                              capsys):
    """A run of another jobs file into the same --out rewrote the summary with its own jobs
    only, silently dropping the rows of job folders still there (review): they are kept,
    last and with status "kept", and the command line says which."""
    from planning.cli import main

    out = tmp_path / "out"
    batch.run_batch(_jobs(tmp_path, _rec("lem1"), _cmp()), out)
    other = tmp_path / "other.toml"
    other.write_text(_rec("mkm", "second"))
    assert main(["batch", str(other), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "2 job folder(s) in" in err and "(cmp, rec)" in err and "status 'kept'" in err
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [(r["job"], r["kind"], r["status"], r["model"], r["model_b"]) for r in rows] == [
        ("second", "recalc", "ok", "mkm", None), ("cmp", "compare", "kept", "A", "lem1"),
        ("rec", "recalc", "kept", "lem1", None)]
    result = batch.run_batch(other, out)
    assert [o.name for o in result.kept] == ["cmp", "rec"]
    assert result.counts() == {"ok": 0, "skipped": 1, "error": 0, "kept": 2}
    (out / "rec" / "job.json").write_text('{"status": "error"}')  # no finished job: no row
    assert [o.name for o in batch.run_batch(other, out).kept] == ["cmp"]


def test_the_batch_names_jobs_without_a_row_for_a_structure_other_jobs_report(
        cluster, tmp_path, capsys, monkeypatch):
    """A patient without a Brainstem planned "ok" with one row fewer, and a cohort statistic on
    the Brainstem silently left it out (review): the batch names such a job."""
    from planning.cli import main

    result = batch.BatchResult(
        (batch.JobOutcome("p01", "plan", "ok", rows=({"structure": "PTV"},
                                                     {"structure": "Brainstem"})),
         batch.JobOutcome("p03", "plan", "ok", rows=({"structure": "PTV"},)),
         batch.JobOutcome("p04", "plan", "error", "damaged CT")), (),
        kept=(batch.JobOutcome("p05", "plan", "kept", rows=({"structure": "Lens L"},)),))
    assert result.missing_structures() == {"p01": ["Lens L"], "p03": ["Brainstem", "Lens L"]}
    jobs = _jobs(tmp_path, _rec("lem1"), _rec("mkm", "other"))
    cluster_rows = {"rec": ["PTV", "Brainstem"], "other": ["PTV"]}
    original = batch._run_recalc  # the cluster fixture's stub

    def rows_by_job(job, out, exchange=False):
        original(job, out, exchange)
        return [{"structure": n} for n in cluster_rows[job.name]], []

    monkeypatch.setattr(batch, "_run_recalc", rows_by_job)
    assert main(["batch", str(jobs), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "note: job 'other' has no row for Brainstem, which other jobs report" in err
    assert "job 'rec' has no row" not in err


def test_a_failed_rerun_marks_the_earlier_result_its_folder_keeps(cluster, tmp_path):
    """A job whose rerun failed left its earlier, complete folder with nothing to say so, while
    the summary reported the job as failed (review): its job.json and its error say it."""
    out = tmp_path / "out"
    batch.run_batch(_jobs(tmp_path, _rec("lem1")), out)
    finished = json.loads((out / "rec" / "job.json").read_text())["finished"]
    assert finished.endswith(" UTC")
    cluster.fail = {"rec"}
    for _ in range(2):  # a second failure keeps the time of the result, not of the first mark
        (failed,) = batch.run_batch(_jobs(tmp_path, _rec("mkm")), out).outcomes
        assert failed.status == "error"
        assert failed.error == (f"rec: stub failure (the earlier result of {finished} is kept "
                                "in rec/, marked in its job.json)")
        stored = json.loads((out / "rec" / "job.json").read_text())
        assert stored["status"] == "ok" and (out / "rec" / "rbe.txt").read_text() == "lem1"
        mark = stored["last_run_failed"]
        assert (mark["error"], mark["result_finished"]) == ("rec: stub failure", finished)
        assert "not of the last run" in mark["note"]
    (row,) = json.loads((out / "summary.json").read_text())["rows"]
    assert row["error"] == failed.error
    cluster.fail = set()
    batch.run_batch(_jobs(tmp_path, _rec("mkm")), out)
    assert "last_run_failed" not in json.loads((out / "rec" / "job.json").read_text())
    # A failed rerun of the same job (--rerun; its CT changed since): the next batch runs it
    # again instead of skipping the marked folder as up to date (review).
    cluster.fail = {"rec"}
    (failed,) = batch.run_batch(_jobs(tmp_path, _rec("mkm")), out, rerun=True).outcomes
    assert failed.status == "error"
    cluster.fail = set()
    (again,) = batch.run_batch(_jobs(tmp_path, _rec("mkm")), out).outcomes
    assert again.status == "ok"
    assert "last_run_failed" not in json.loads((out / "rec" / "job.json").read_text())
    # A job without an earlier folder: its error as it is.
    cluster.fail = {"new"}
    outcomes = batch.run_batch(_jobs(tmp_path, _rec("mkm", "new")), out).outcomes
    assert outcomes[0].error == "new: stub failure"
