"""What follows a plan in the GUI is refused up front when it cannot fit in memory: the
Re-optimize button and the Robustness view's evaluation show a dialog that names the dose grid
(and the scenarios), what they would need and what is available; nothing starts computing.

The memory available is injected as the engine's checks read it
(planning.engine.memory.available_host_bytes)."""

from __future__ import annotations

import pytest

from tests.gui.demo_app import compute_small_plan, start_on_demo

pytestmark = pytest.mark.gui

#: A memory figure no re-optimization or robust evaluation of the demo patient fits in.
TINY_BYTES = 2**20


def _click_tab(gui, screen, name: str) -> None:
    gui.click(screen.tab_items[name])
    gui.frames(2)


def _close_error(gui, app) -> str:
    text = app.last_error
    gui.click(gui.find(lambda w: getattr(w, "name", "") == "error_dialog_ok"))
    gui.advance(0.5)
    app.last_error = ""
    return text


def test_reoptimize_and_robustness_refuse_what_cannot_fit(gui, tmp_path, monkeypatch):
    from planning.engine import memory

    app = start_on_demo(gui, tmp_path / "data")
    screen = app.planning
    form = compute_small_plan(gui, app)
    n_voxels = app.session.plans[0].result.dose_grid.n_voxels
    monkeypatch.setattr(memory, "available_host_bytes", lambda: TINY_BYTES)

    _click_tab(gui, screen, "Plan")
    form.dose.text = "58"
    form.dose.focus = False
    gui.frames(2)
    gui.click(form.reoptimize_button)
    gui.wait_until(lambda: app.last_error, 60, "the re-optimization's refusal")
    gui.frames(2)
    text = _close_error(gui, app)
    assert text.startswith(f"re-optimizing the plan on its dose grid of 5, 5, 5 mm "
                           f"({n_voxels:,} voxels, 2 beams, with the exchange view) beside "
                           "the kept plan would need ")
    assert "MiB of memory, but 1 MiB are available" in text and len(app.session.plans) == 1

    _click_tab(gui, screen, "Dose")
    gui.click(screen.dose_panel.robustness_button)
    gui.frames(3)
    panel = screen.robust_popup.content
    gui.click(panel.evaluate_button)
    gui.wait_until(lambda: app.last_error, 60, "the robust evaluation's refusal")
    gui.frames(2)
    text = _close_error(gui, app)
    assert text.startswith("the robust evaluation's 9 scenarios on a dose grid of 5, 5, 5 mm "
                           f"({n_voxels:,} voxels, about ")
    assert "would need " in text and "MiB of memory, but 1 MiB are available" in text
    assert app.session.plans[0].robust is None
