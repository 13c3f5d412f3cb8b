"""The Plan report and Save view PNG buttons: a plan document (PDF) and identified pictures,
each under a new name built from patient ID, plan and time, never replacing a file."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLAN_TIMEOUT_S = 600.0
DEMO_ID = "IONPLAN-DEMO-001"


def _choose_folder(gui, app, button: str, folder: Path) -> None:
    """Press a toolbar button and pick ``folder`` in its folder dialog."""
    gui.click(app.buttons[button])
    gui.frames(2)
    dialog = gui.find(lambda w: getattr(w, "name", "") == "folder_dialog")
    dialog.path_input.text = str(folder)
    gui.click(dialog.choose_button)


def _wait_for_files(gui, app, folder: Path, pattern: str, count: int) -> list[Path]:
    """Wait for ``count`` files and the confirmation that names them; close it."""

    def confirmed() -> bool:
        return bool(gui.find_all(lambda w: getattr(w, "name", "") == "export_dialog_ok"))

    gui.wait_until(lambda: (len(list(folder.glob(pattern))) >= count and confirmed())
                   or app.last_error, 120, f"{count} x {pattern}")
    assert not app.last_error, app.last_error
    for ok in reversed(gui.find_all(lambda w: getattr(w, "name", "") == "export_dialog_ok")):
        gui.click(ok)
        gui.advance(0.5)
    return sorted(folder.glob(pattern))


def test_plan_report_and_view_png_are_identified_and_never_overwritten(gui, tmp_path):
    from PIL import Image
    from pypdf import PdfReader

    from app.ionplan_app import IonPlanApp
    from planning.plan_notes import optimizer_passes, optimizer_status

    app = gui.start(IonPlanApp(user_data_dir_override=str(tmp_path)))
    gui.wait_until(lambda: app.session.patient is not None or app.last_error, 120,
                   "the demo patient")
    # Without a plan the report is refused with a message.
    gui.click(app.buttons["export_report"])
    gui.frames(2)
    assert "compute a plan first" in app.last_error
    gui.click(gui.find(lambda w: getattr(w, "name", "") == "error_dialog_ok"))
    gui.advance(0.5)
    app.last_error = ""

    screen = app.planning
    gui.click(screen.tab_items["Plan"])
    gui.frames(2)
    screen.plan_panel.spot_spacing.text = "8"
    screen.plan_panel.grid_mm.text = "6"
    gui.click(screen.plan_panel.compute_button)
    gui.wait_until(lambda: app.session.plans or app.last_error, PLAN_TIMEOUT_S, "the plan")
    assert not app.last_error, app.last_error
    gui.frames(3)

    out = tmp_path / "reports"
    out.mkdir()
    _choose_folder(gui, app, "export_report", out)
    (first,) = _wait_for_files(gui, app, out, "*_report.pdf", 1)
    assert re.fullmatch(rf"{DEMO_ID}_Plan_1_\d{{8}}-\d{{6}}_report\.pdf", first.name)
    before = first.read_bytes()
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(first).pages).split())
    entry = app.session.latest_plan
    report = entry.result.report
    status = optimizer_status(report["optimizer_message"],
                              passes=optimizer_passes(report)[0])
    for words in (DEMO_ID, "Plan 1", entry.result.model.describe(), "Approved by",
                  "Dose-volume histograms", status):
        assert words in text, words
    # A second report of the same plan (within the same second or not) is a new file.
    _choose_folder(gui, app, "export_report", out)
    reports = _wait_for_files(gui, app, out, "*_report.pdf", 2)
    assert len(reports) == 2 and first.read_bytes() == before

    # Save view PNG: identification burned in and in the PNG text; a second one is new too.
    for count in (1, 2):
        _choose_folder(gui, app, "export_png", out)
        gui.advance(0.5)  # the picture is taken once the dialog has closed
        pngs = _wait_for_files(gui, app, out, "*_planning_view.png", count)
    assert len(pngs) == 2
    for png in pngs:
        assert png.name.startswith(f"{DEMO_ID}_Plan_1_")
        with Image.open(io.BytesIO(png.read_bytes())) as image:
            description = image.text["Description"]
            pixels = np.asarray(image.convert("RGB"))
        assert f"(ID {DEMO_ID})" in description and "Plan 1" in description
        assert entry.result.model.describe() in description
        assert pixels.shape[0] > screen.height  # the banner above the screen's picture
