"""planning.log_capture: what a thread logs and warns of, collected by the thread that made it.

Batch jobs run in threads of Dask worker processes, several at once in one process (a worker
with several threads, a robust job's scenario tasks); Python warnings raised in a job were
printed by the worker without the job's name.
"""

from __future__ import annotations

import logging
import threading
import warnings

import numpy as np
import pydicom

from planning.log_capture import collected_warnings, warning_text


def _warn(text: str) -> None:
    """One place (this line) for every thread's warning: Python shows a warning of the default
    action once per place and process."""
    warnings.warn(text, UserWarning, stacklevel=1)


def test_each_thread_collects_its_python_warnings_also_those_another_thread_made_first():
    """Two jobs in two threads of one process, both in their blocks: each gets its own
    warnings and the shared one, which the second would have lost to the first (Python's
    once per place); the main thread, which collects nothing, gets neither."""
    collected: dict[str, list[str]] = {}
    both_in = threading.Barrier(2)
    first_warned = threading.Event()

    def job(name: str) -> None:
        with collected_warnings() as messages:
            both_in.wait()
            if name == "second":
                first_warned.wait()
            _warn("shared")
            _warn(f"only {name}")
            _warn("shared")  # kept once
            with np.errstate(divide="warn"):
                np.float64(1.0) / np.float64(0.0)
            if name == "first":
                first_warned.set()
        collected[name] = messages

    showwarning_before, filters_before = warnings.showwarning, list(warnings.filters)
    with warnings.catch_warnings(record=True) as shown:  # where the main thread's go
        threads = [threading.Thread(target=job, args=(n,)) for n in ("first", "second")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    divide = "RuntimeWarning: divide by zero encountered in scalar divide"
    assert collected == {"first": ["shared", "only first", divide],
                         "second": ["shared", "only second", divide]}
    assert shown == []  # none of the jobs' warnings reached the process's own showwarning
    assert warnings.showwarning is showwarning_before and warnings.filters == filters_before


def test_a_thread_that_collects_nothing_is_shown_its_warnings_as_before():
    """While a job collects, another thread's warning goes to the showwarning that was there,
    once per place (the default action; test_batch checks that its log records go to the
    root logger's handlers)."""
    job_in, other_done = threading.Event(), threading.Event()
    collected: list[str] = []

    def job() -> None:
        with collected_warnings() as messages:
            job_in.set()
            other_done.wait()
        collected.extend(messages)

    with warnings.catch_warnings(record=True) as shown:
        t = threading.Thread(target=job)
        t.start()
        job_in.wait()
        for _ in range(3):
            _warn("not the job's")
        other_done.set()
        t.join()
    assert [str(w.message) for w in shown] == ["not the job's"]
    assert collected == []


def test_blocks_one_after_the_other_each_collect_a_repeated_warning():
    """Two jobs one after the other on one worker thread: the second gets the warning the
    first got (Python had shown it once per place and process)."""
    runs = []
    for _ in range(2):
        with collected_warnings() as messages:
            _warn("a nonconforming value")
        runs.append(messages)
    assert runs == [["a nonconforming value"]] * 2


def test_pydicom_logs_and_warns_once_in_the_jobs_list(caplog):
    """pydicom logs each of its warnings besides warning of it: one message, and no record
    for the root logger's handlers (the worker printed it without the job's name)."""
    caplog.set_level(logging.WARNING)
    with collected_warnings() as messages:
        ds = pydicom.Dataset()
        ds.RTPlanLabel = "a label of twenty ch"  # SH holds at most 16 characters
    assert messages == ["The value length (20) exceeds the maximum length of 16 allowed for "
                        "VR SH."]
    assert caplog.records == []
    for name in ("planning", "pydicom"):  # the loggers are as they were
        logger = logging.getLogger(name)
        assert logger.propagate and not [h for h in logger.handlers
                                         if not isinstance(h, logging.NullHandler)]


def test_a_jobs_pydicom_warning_names_its_file_and_counts_the_others():
    """In a batch job too: pydicom's text after the first file that gave it, with the count
    of the others (a job's CT folder of 300 slices gave one message naming none); IonPlan's
    own messages as they are."""
    from pydicom.misc import warn_and_log

    from planning.dicom.file_context import reading_file

    sh = "The value length (20) exceeds the maximum length of 16 allowed for VR SH."
    with collected_warnings() as messages:
        for name in ("CT1.dcm", "CT2.dcm", "CT1.dcm", "CT3.dcm"):
            with reading_file(name):
                warn_and_log(sh)
        with reading_file("RS.dcm"):
            logging.getLogger("planning.dicom.x").warning("ROI 'A' has no contours")
    assert messages == [f"CT1.dcm: {sh} (and 2 more files)", "ROI 'A' has no contours"]


def test_warning_text_names_a_category_other_than_userwarning():
    assert warning_text("plain", UserWarning) == "plain"
    assert warning_text(RuntimeWarning("overflow"), RuntimeWarning) == "RuntimeWarning: overflow"


def test_a_command_prints_each_pydicom_warning_once_as_one_line(capsys) -> None:
    """A single ``ionplan recalc`` of a plan with a nonconforming value printed pydicom's
    warning twice: "WARNING pydicom: ..." (its log record) and a UserWarning with pydicom's
    file, line and source code. Now one ``ionplan: warning: pydicom: ...`` line; another
    library's warning is one line with its category and place."""
    import logging
    import warnings

    import numpy as np
    from pydicom.misc import warn_and_log

    from planning.cli_warnings import terminal_warnings

    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with terminal_warnings():
            for _ in range(2):
                warn_and_log("The value length (26) exceeds the maximum length of 16 allowed "
                             "for VR SH.")
            with np.errstate(divide="warn"):
                np.float64(1.0) / np.float64(0.0)
            logging.getLogger("pydicom").info("read at INFO: not a warning")
    assert warnings.showwarning is before and logging.getLogger("pydicom").propagate
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith(
        "ionplan: warning: RuntimeWarning: divide by zero encountered in scalar divide (")
    # pydicom's when the command ends (with the files that gave them: none here).
    assert err[1] == ("ionplan: warning: pydicom: The value length (26) exceeds the maximum "
                      "length of 16 allowed for VR SH.")


def test_a_pydicom_warning_names_its_file_and_counts_the_others(capsys) -> None:
    """pydicom's warnings named no file: in a CT folder of 300 slices the user could not find
    the one it meant. Each text is said once, after the first file that gave it, with the
    count of the others."""
    import warnings

    from pydicom.misc import warn_and_log

    from planning.cli_warnings import terminal_warnings
    from planning.dicom.file_context import reading_file

    sh, lo = ("The value length (20) exceeds the maximum length of 16 allowed for VR SH.",
              "The value length (70) exceeds the maximum length of 64 allowed for VR LO.")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with terminal_warnings():
            for name in ("CT1.dcm", "CT2.dcm", "CT3.dcm", "CT2.dcm"):
                with reading_file(name):
                    warn_and_log(sh)
            with reading_file("RS.dcm"):
                warn_and_log(lo)
    assert capsys.readouterr().err.splitlines() == [
        f"ionplan: warning: pydicom: CT1.dcm: {sh} (and 2 more files)",
        f"ionplan: warning: pydicom: RS.dcm: {lo}"]


def test_the_importers_say_which_file_pydicom_warned_of(tmp_path) -> None:
    """A patient folder whose every file has a Patient ID too long for its VR (LO, 64
    characters): one line, naming one of them and counting the others."""
    import io
    import re

    from planning.cli_warnings import terminal_warnings
    from planning.dicom import load_patient, write_demo_patient

    write_demo_patient(tmp_path)
    files = sorted(tmp_path.iterdir())
    for path in files:
        ds = pydicom.dcmread(path)
        with pydicom.config.disable_value_validation():
            ds.PatientID = "X" * 70
        ds.save_as(path)
    err = io.StringIO()
    with terminal_warnings(err):
        load_patient(tmp_path)
    (line,) = err.getvalue().splitlines()
    said = re.fullmatch(r"ionplan: warning: pydicom: (.+): The value length \(70\) exceeds the "
                        r"maximum length of 64 allowed for VR LO\. \(and (\d+) more files\)",
                        line)
    assert said is not None, line
    assert said[1] in {str(p) for p in files} and int(said[2]) == len(files) - 1
