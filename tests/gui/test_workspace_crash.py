"""A crash loses nothing saved: the real application, in its own process, computes a plan,
renames it, changes the display, starts another Compute and is killed with SIGKILL; started
again, it shows the patient with the plan, the objectives and the display settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gui.driver import kivy_environment, probe_gl, video_environment

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]
WORK_TIMEOUT_S = 900.0
#: Seconds the second Compute runs before the kill (it takes far longer to finish).
KILL_AFTER_S = 1.5
#: What the work phase reports and the restarted application must show the same.
KEPT = ("source", "plans", "shown_plan", "dose_shown", "objectives", "form", "display",
        "window_level", "cursor_ijk", "axial_slice", "exported")


def _child_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "kivy_home"
    home.mkdir()
    env = dict(os.environ)
    env.update(kivy_environment(home))
    env.update(video_environment("offscreen"))
    reason = probe_gl("offscreen", video_environment("offscreen"))
    if reason:
        pytest.skip(reason)
    return env


def _child(mode: str, data: Path, report: Path, log: Path,
           env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.gui.workspace_child", str(data),
                                 mode, str(report)], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def _log_tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])


def test_killed_app_comes_back_with_plan_objectives_and_display(tmp_path):
    env = _child_env(tmp_path)
    data = tmp_path / "user_data"
    work, check = tmp_path / "work.json", tmp_path / "check.json"
    work_log, check_log = tmp_path / "work.log", tmp_path / "check.log"

    proc = _child("work", data, work, work_log, env)
    try:
        deadline = time.monotonic() + WORK_TIMEOUT_S
        while not work.exists():
            assert proc.poll() is None, f"the application ended early:\n{_log_tail(work_log)}"
            assert time.monotonic() < deadline, f"no plan in time:\n{_log_tail(work_log)}"
            time.sleep(0.5)
        time.sleep(KILL_AFTER_S)
        assert proc.poll() is None, _log_tail(work_log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = json.loads(work.read_text())
    # Killed mid-work, with edits that differ from a fresh start.
    assert before["computing"] and before["task"] == ["Computing plan", True]
    assert before["plans"] == ["Crash test plan"] and before["dose_shown"]
    assert before["display"]["isodose_percent"] == [100.0, 80.0, 20.0]
    assert before["display"]["quantity"] == "physical"
    assert before["window_level"] == [1800.0, 400.0]
    assert before["cursor_ijk"] == [40, 120, 130] and before["axial_slice"] == 40
    assert before["form"]["fractions"] == "12" and len(before["form"]["beams"]) == 1
    assert ["PTV", "squared_deviation"] == before["objectives"][0][:2]
    assert before["objectives"][-1][3] == "7.5"

    restarted = _child("check", data, check, check_log, env)
    try:
        assert restarted.wait(timeout=300) == 0, _log_tail(check_log)
    finally:
        if restarted.poll() is None:
            restarted.kill()
            restarted.wait()
    after = json.loads(check.read_text())
    assert after["last_error"] == ""
    assert {k: after[k] for k in KEPT} == {k: before[k] for k in KEPT}
    # The workspace on disk holds the one plan folder, nothing half-written.
    (folder,) = (data / "workspaces").glob("IONPLAN-DEMO-001-*")
    assert [p.name.startswith(".") for p in (folder / "plans").iterdir()] == [False]
