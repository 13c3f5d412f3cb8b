"""The Dose tab's quantities (LEM I / mMKM ratio, RBE, LETd) as a physicist found them (GUI
review), on a plan made without the dose engine whose ratio is about 1.05 in the target,
rises to 2.3 in the entrance channel and reaches 4.139 where there is hardly any dose: 100 %
and the colour scale from where the quantity is shown, values beyond the scale marked on the
colour bar, no isodose controls for a quantity.

Pictures go to the test's tmp_path (ratio_layer.png)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests.gui.demo_app import start_on_demo

pytestmark = pytest.mark.gui


def _start(gui, tmp_path: Path):
    return start_on_demo(gui, tmp_path / "data")


def _plan_with_an_entrance_channel(patient):
    """The synthetic LEM I plan with an mMKM dose shaped like its dose, a ratio of 1.03 to
    1.06 where the dose is high, up to 2.3 in the entrance channel, 4.139 where there is
    hardly any dose, and an RBE of up to 10.72 there."""
    from tests.workspace_factory import PRESCRIPTION_GY_RBE, synthetic_plan_result

    result = synthetic_plan_result(patient, 3)
    dose = result.rbe_dose_gy_rbe
    share = np.clip(dose / np.float32(PRESCRIPTION_GY_RBE), 0.0, 1.0)
    ratio = np.where(share >= 0.1, 1.03 + 1.5 * (1.0 - share) ** 2, 4.139).astype(np.float32)
    rbe = np.where(share >= 0.1, 1.5 + 1.5 * share, 10.72).astype(np.float32)
    exchange = dataclasses.replace(result.exchange, mkm_dose_gy_rbe=dose,
                                   lem_dose_gy_rbe=(dose * ratio).astype(np.float32),
                                   ratio_lem_over_mkm=ratio)
    return dataclasses.replace(result, exchange=exchange, rbe=rbe)


def test_a_quantity_is_scaled_where_it_is_shown_and_its_colour_bar_marks_values_beyond(
        gui, tmp_path):
    app = _start(gui, tmp_path)
    screen = app.planning
    result = _plan_with_an_entrance_channel(app.session.patient)
    entry = app.session.add_plan(result, "synthetic")
    gui.click(screen.tab_items["Dose"])
    gui.frames(2)
    panel, legend = screen.dose_panel, screen.viewer.legend
    dose = result.exchange.mkm_dose_gy_rbe
    shown = dose >= 0.1 * entry.prescription_gy_rbe
    entrance = shown & (dose < 0.5 * entry.prescription_gy_rbe)
    assert entrance.any()
    button_y = panel.beam_view_button.y
    for key, cube, where in (("ratio", result.exchange.ratio_lem_over_mkm, "the mMKM dose"),
                             ("rbe_factor", result.rbe, "the plan's dose")):
        panel.select_layer(key)
        gui.frames(3)
        overlay = screen.state.dose
        values = cube[shown]
        top = float(values.max())
        # 100 % is the maximum where the quantity is shown (not the 4.139 or 10.72 outside).
        assert panel.reference.text == (f"100 % = {top:.4g} (maximum where {where} ≥ 10 % "
                                        "Rx)")
        assert panel.reference.texture_size[1] <= panel.reference.height
        # The scale spans the shown values' 1st to 99th percentile: the entrance channel's
        # values too, not only the target's.
        assert overlay.vmin == pytest.approx(float(np.percentile(values, 1)), rel=1e-5)
        assert overlay.vmax == pytest.approx(float(np.percentile(values, 99)), rel=1e-5)
        assert overlay.vmin <= float(np.median(cube[entrance])) <= overlay.vmax
        # The values beyond it are marked at both ends of the bar, with the extremes.
        assert legend.beyond == {"over": f"max {top:.4g}",
                                 "under": f"min {float(values.min()):.4g}"}, key
        # No isodose lines or wash threshold for a quantity: greyed, and the note says why.
        assert overlay.isodose_levels == ()
        assert panel.isodoses.disabled and panel.levels.disabled and panel.threshold.disabled
        from app.panels.dose_panel import DOSE_HINT, QUANTITY_HINT

        assert panel.hint.text == QUANTITY_HINT
        assert panel.hint.texture_size[1] <= panel.hint.height
        assert panel.beam_view_button.y == button_y  # the panel's buttons stay in place
        if key == "ratio":
            gui.save_png(gui.screenshot(), tmp_path / "ratio_layer.png")
    # A dose: isodoses and threshold again, no marks beyond its scale.
    panel.select_layer("rbe")
    gui.frames(3)
    assert not (panel.isodoses.disabled or panel.levels.disabled or panel.threshold.disabled)
    assert panel.hint.text == DOSE_HINT and legend.beyond == {}
    assert screen.state.dose.isodose_levels != ()
    assert panel.reference.text == "100 % = 57.6 Gy(RBE) (prescription)"
