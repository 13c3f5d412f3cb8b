"""The commands' output folder: checked before any work, never two runs' files mixed, nothing
left of a failed run (planning/output_folder.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from planning.errors import InputError
from planning.output_folder import fresh_output_folder


def _plan_files(folder: Path, text: str) -> None:
    for name in ("RTPLAN.dcm", "RTDOSE_RBE.dcm", "report.json"):
        (folder / name).write_text(text)


def test_a_folder_with_an_earlier_run_is_refused_before_any_work(tmp_path: Path) -> None:
    _plan_files(tmp_path, "first")
    (tmp_path / "CT_000.dcm").write_text("ct")  # not an output: allowed beside
    ran = []
    with pytest.raises(InputError, match=r"already holds the files of an earlier run "
                       r"\(RTDOSE_RBE.dcm, RTPLAN.dcm, report.json\).*--overwrite"):
        with fresh_output_folder(tmp_path):
            ran.append(True)
    assert not ran and (tmp_path / "report.json").read_text() == "first"


def test_overwrite_replaces_all_of_the_earlier_run(tmp_path: Path) -> None:
    _plan_files(tmp_path, "first")
    (tmp_path / "RTDOSE_RBE_LEM1.dcm").write_text("first")  # the new run writes no exchange
    with fresh_output_folder(tmp_path, overwrite=True) as out:
        (out / "RTPLAN.dcm").write_text("second")
        (out / "report.json").write_text("second")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["RTPLAN.dcm", "report.json"]
    assert (tmp_path / "RTPLAN.dcm").read_text() == "second"


def test_a_failed_run_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    _plan_files(tmp_path, "first")
    with pytest.raises(RuntimeError):
        with fresh_output_folder(tmp_path, overwrite=True) as out:
            (out / "RTPLAN.dcm").write_text("second")
            (out / "reoptimized_1").mkdir()
            raise RuntimeError("disk full halfway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RTDOSE_RBE.dcm", "RTPLAN.dcm",
                                                          "report.json"]
    assert (tmp_path / "RTPLAN.dcm").read_text() == "first"
    fresh = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with fresh_output_folder(fresh) as out:
            (out / "RTPLAN.dcm").write_text("partial")
            raise RuntimeError("stopped")
    assert not fresh.exists()  # the run made it: a failed run leaves no folder
    deep = tmp_path / "no" / "such" / "out"  # `--out /no/such/out` left /no/such behind
    with pytest.raises(RuntimeError):
        with fresh_output_folder(deep):
            raise RuntimeError("stopped")
    assert not (tmp_path / "no").exists()


def test_a_file_or_unwritable_out_is_refused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="names a file, not a folder"):
        with fresh_output_folder(tmp_path / "f"):
            pass
    import tempfile

    def read_only(dir: Path) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(InputError, match=r"cannot be written .Read-only file system"):
        with fresh_output_folder(tmp_path / "ro"):
            pass


def test_the_cli_refuses_a_used_out_before_planning(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from planning.cli import main

    _plan_files(tmp_path, "first")
    assert main(["plan", str(tmp_path / "no-ct"), "--target", "PTV", "--dose", "60",
                 "--fractions", "20", "--gantry", "90",
                 "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "already holds the files of an earlier run" in err and len(err.splitlines()) == 1


def test_an_export_that_fails_leaves_none_of_its_files(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The GUI's DICOM export: a failure halfway (a full disk) leaves no partial plan folder
    that looks like a result."""
    from planning import api, planner

    def halfway(result: object, out_dir: Path, **kwargs: object) -> list[Path]:
        (Path(out_dir) / "RTPLAN.dcm").write_text("written")
        raise OSError(28, "No space left on device", str(Path(out_dir) / "RTDOSE_RBE.dcm"))

    monkeypatch.setattr(planner, "write_plan_outputs", halfway)
    with pytest.raises(OSError, match="No space left"):
        api.export_plan(object(), tmp_path)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_killed_runs_set_aside_files_are_not_left_hidden(tmp_path: Path) -> None:
    """A run killed outright left the earlier run's files in a hidden folder, and the next run
    went on without a word (CLI review)."""
    aside = tmp_path / ".ionplan-replaced-abc123"
    aside.mkdir()
    (aside / "RTPLAN.dcm").write_text("first")
    with pytest.raises(InputError, match=r"\.ionplan-replaced-abc123 holds an earlier run's "
                       "files that a killed run set aside"):
        with fresh_output_folder(tmp_path, overwrite=True):
            pass
    assert (aside / "RTPLAN.dcm").read_text() == "first"


def test_sigterm_during_a_run_puts_the_earlier_files_back(tmp_path: Path) -> None:
    """SIGTERM (a scheduler's time limit, ``timeout``) ended the process at once: the earlier
    run's files stayed set aside in a hidden folder and the folder looked empty. Now, as for
    Ctrl-C, the run stops with exit 143 and the folder is as it was."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from planning.dicom import write_demo_patient

    write_demo_patient(tmp_path / "ct")
    out = tmp_path / "out"
    out.mkdir()
    _plan_files(out, "first")
    proc = subprocess.Popen(
        [sys.executable, "-m", "planning.cli", "plan", str(tmp_path / "ct"), "--target", "PTV",
         "--dose", "3", "--fractions", "1", "--gantry", "90", "--grid", "3",
         "--spot-spacing", "3", "--device", "cpu", "--out", str(out), "--overwrite"],
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".ionplan-replaced-*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the run has set the earlier files aside: it is working
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "ionplan: terminated (SIGTERM)" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["RTDOSE_RBE.dcm", "RTPLAN.dcm",
                                                     "report.json"]
    assert (out / "RTPLAN.dcm").read_text() == "first"


def test_a_sigterm_whose_exception_was_swallowed_still_stops_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    """CI: SIGTERM's handler ran inside pydicom's keyword lookup, where ``int(keyword, 16)``
    then raised its ValueError over the handler's exception and pydicom handled that; the plan
    went on to the end, exit 0, and the earlier files were replaced. Now the signal is
    recorded as well, and the run stops before the output folder keeps what it wrote."""
    import os
    import signal
    import time

    from planning import api, cli
    from planning.cli_termination import Terminated

    def demo_that_swallows(**kwargs: object) -> str:
        (tmp_path / "out" / "RTPLAN.dcm").write_text("second")
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(2)  # the handler raises here
        except Terminated:
            pass  # as C code that sets its own error over it does
        return "demo finished"

    monkeypatch.setattr(api, "run_headless_demo", demo_that_swallows)
    out = tmp_path / "out"
    out.mkdir()
    _plan_files(out, "first")
    assert cli.main(["demo", "--out", str(out), "--overwrite"]) == 128 + signal.SIGTERM
    assert "ionplan: terminated (SIGTERM)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["RTDOSE_RBE.dcm", "RTPLAN.dcm",
                                                     "report.json"]
    assert (out / "RTPLAN.dcm").read_text() == "first"


def test_a_sigterm_during_an_import_stops_the_run_once_the_import_is_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI: SIGTERM landed while an extension module was being imported; raised there it became
    ``ImportError: initialization failed``, an optional import's ``except ImportError`` took it
    for a missing package, and the run went on to the end (exit 0, the earlier files replaced).
    Now the signal is delivered again after the import, where nothing mistakes it."""
    import sys
    import time

    from planning.cli_termination import Terminated, termination_as_exception

    (tmp_path / "ionplan_slow_import_probe.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(0.3)\n"
        "FINISHED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ionplan_slow_import_probe", raising=False)
    with pytest.raises(Terminated):
        with termination_as_exception():
            try:
                import ionplan_slow_import_probe  # noqa: F401
            except ImportError:
                pytest.fail("the signal was turned into an ImportError")
            time.sleep(5)  # the signal is delivered again here
    assert sys.modules["ionplan_slow_import_probe"].FINISHED


def test_an_input_among_the_outputs_to_replace_is_refused(tmp_path: Path) -> None:
    """`recalc CT base/RTPLAN.dcm --out base --overwrite` set its own input aside and then
    said it did not exist (CLI review)."""
    _plan_files(tmp_path, "first")
    for inputs in ([tmp_path / "RTPLAN.dcm"], [tmp_path]):
        with pytest.raises(InputError, match="an input of this run"):
            with fresh_output_folder(tmp_path, overwrite=True, inputs=inputs):
                pass
        assert (tmp_path / "RTPLAN.dcm").read_text() == "first"
    with fresh_output_folder(tmp_path, overwrite=True, inputs=[tmp_path / "elsewhere.dcm"]):
        pass
