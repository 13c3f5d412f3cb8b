"""The compare screen as a physicist found it (GUI review), on plans made without the dose
engine (tests/workspace_factory.py): each side labelled in its own unit; a physical against an
RBE-weighted dose with no gamma and no difference but their ratio, each on its own colour
scale; legend ticks without "-0.0000"; and the choices' text within their drop-downs at
1440 x 900 and 1024 x 640.

Pictures of the screens go to the test's tmp_path (compare_mixed_units.png, ...)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests.gui.demo_app import start_on_demo

pytestmark = pytest.mark.gui


def _start(gui, tmp_path: Path):
    return start_on_demo(gui, tmp_path / "data")


def _physical_model(result):
    """``result`` as if computed under the physical model (its dose in Gy), no exchange view."""
    from planning.rbe import PhysicalDose

    model = PhysicalDose()
    plan = dataclasses.replace(result.plan, rbe_model=model.describe(), rbe=model)
    return dataclasses.replace(result, plan=plan, model=model, exchange=None,
                               rbe_dose_gy_rbe=result.physical_dose_gy,
                               report={**result.report, "rbe_model": model.describe()})


def _compare(gui, app, a: str, b: str):
    compare = app.compare
    compare.side_a.text, compare.side_b.text = a, b
    compare.result = None
    gui.click(compare.compare_button)
    gui.wait_until(lambda: compare.result is not None or app.last_error, 300, "the comparison")
    assert not app.last_error, app.last_error
    gui.frames(3)
    return compare


def test_each_side_is_labelled_in_its_own_unit_and_a_mixed_comparison_has_no_gamma(gui,
                                                                                    tmp_path):
    """A = a physical-model plan's dose (Gy), B = an mMKM dose (Gy(RBE)): the table said
    "A Gy | B Gy", the DVH "Dose (Gy)" and the summary "max |d| ... Gy"; then gamma (about 0 %
    pass) and B - A were shown as if the two were one quantity, and A and B shared one colour
    scale."""
    from tests.workspace_factory import synthetic_plan_result

    app = _start(gui, tmp_path)
    patient = app.session.patient
    app.session.add_plan(_physical_model(synthetic_plan_result(patient, 3)), "physical")
    lem = app.session.add_plan(synthetic_plan_result(patient, 4), "LEM I, exchange view")
    gui.click(app.buttons["compare"])
    gui.frames(3)
    compare = _compare(gui, app, "Plan 1: dose (physical model)", "Plan 2: mMKM")
    result = compare.result
    assert (result.unit_a, result.unit_b, result.unit) == ("Gy", "Gy(RBE)", "Gy vs Gy(RBE)")
    assert result.gamma == () and result.stats is None
    assert compare.table.columns == ["A Gy", "B Gy(RBE)", "B / A"]
    assert compare.dvh.x_label == "Dose (A solid: Gy, B dashed: Gy(RBE))"
    text = compare.summary.text
    assert text.startswith("γ not evaluated: A is physical dose (Gy), B is RBE-weighted dose "
                           "(Gy(RBE))\nEffective RBE B / A: median [b]"), text
    assert "%[/b]" not in text and "B - A" not in text  # no pass rate, no difference
    # The warning: two plans, so the ratio is an RBE only if they were one.
    assert "has no clinical meaning: neither is computed" in text and "not known here" in text
    assert compare.panels[2].title.text == "Effective RBE B / A (Gy(RBE) / Gy)"
    assert [p.legend.title for p in compare.panels] == ["Gy", "Gy(RBE)", "RBE B/A"]
    for panel in compare.panels:  # the legend's title wraps within it
        assert 0 < panel.legend.title_size[0] <= panel.legend.width, panel.legend.title
    gui.save_png(gui.screenshot(), tmp_path / "compare_mixed_units.png")
    window = gui.window
    try:  # the summary and its warning whole in a small window too
        window.size = (1024, 640)
        gui.frames(4)
        from kivy.core.text.markup import MarkupLabel

        summary = compare.summary
        whole = MarkupLabel(text=summary.text, font_size=summary.font_size,
                            text_size=(summary.width, None))
        whole.refresh()
        assert whole.texture.height <= summary.height
        assert summary.texture_size[1] >= whole.texture.height
        gui.save_png(gui.screenshot(), tmp_path / "compare_mixed_units_1024x640.png")
    finally:
        window.size = (1440, 900)
        gui.frames(2)

    # One plan's physical dose and its mMKM dose: each on its own colour scale, from 0 to
    # the larger of its maximum and 110 % of its reference (the physical dose's maximum; the
    # prescription); the ratio is the plan's effective RBE.
    compare = _compare(gui, app, "Plan 2: physical", "Plan 2: mMKM")
    plan = lem.result
    physical_max = float(plan.physical_dose_gy.max())
    mkm_max = float(plan.exchange.mkm_dose_gy_rbe.max())
    rx = plan.plan.prescription.total_dose_gy_rbe
    scales = [(p.legend.overlay.vmin, p.legend.overlay.vmax) for p in compare.panels[:2]]
    assert scales[0] == pytest.approx((0.0, 1.1 * physical_max), rel=1e-5)
    assert scales[1] == pytest.approx((0.0, max(mkm_max, 1.1 * rx)), rel=1e-5)
    assert [p.legend.title for p in compare.panels] == ["Gy", "Gy(RBE)", "RBE B/A"]
    assert "not known here" not in compare.summary.text  # one plan: its effective RBE
    ratio_legend = compare.panels[2].legend
    assert set(ratio_legend.beyond) == {"over", "under"}  # the 1st-99th percentile scale
    # Within the legend (the values beyond ran past the window's edge).
    for text, font_size in ((*((t, 10) for t in ratio_legend.beyond.values()),
                             *((t, 11) for t in ratio_legend.tick_texts))):
        assert _legend_text_right(ratio_legend, text, font_size) <= ratio_legend.width, text
    gui.save_png(gui.screenshot(), tmp_path / "compare_physical_vs_rbe_one_plan.png")

    # Two doses of one unit: one unit and one colour scale, as before.
    compare = _compare(gui, app, "Plan 2: mMKM", "Plan 2: LEM I chordoma, averaged")
    assert compare.table.columns == ["A Gy(RBE)", "B Gy(RBE)", "B - A", "B / A"]
    assert compare.dvh.x_label == "Dose (Gy(RBE))"
    assert compare.panels[2].title.text == "Difference B - A"
    assert [p.legend.title for p in compare.panels] == ["Gy(RBE)"] * 3
    assert compare.summary.text.startswith("γ 3%/3mm: [b]")
    a_scale, b_scale = (p.legend.overlay for p in compare.panels[:2])
    assert (a_scale.vmin, a_scale.vmax) == (b_scale.vmin, b_scale.vmax)


def test_the_difference_of_nearly_equal_doses_has_a_legend_without_negative_zero(gui,
                                                                                tmp_path):
    """Two doses that differ by rounding (4e-5 Gy(RBE) in one voxel): the difference's
    legend read "-0.0000", "-0.0000", "0.0000", ... (its scale spanned the rounding, its
    ticks four fixed decimals). It spans at least 1 % of A's maximum now, with ticks written
    to their step."""
    from tests.workspace_factory import synthetic_plan_result

    app = _start(gui, tmp_path)
    patient = app.session.patient
    plan = synthetic_plan_result(patient, 4)
    app.session.add_plan(plan, "LEM I, exchange view")
    mkm = plan.exchange.mkm_dose_gy_rbe.copy()
    mkm.reshape(-1)[int(np.argmax(mkm))] += np.float32(4e-5)
    app.session.add_plan(dataclasses.replace(
        plan, exchange=dataclasses.replace(plan.exchange, mkm_dose_gy_rbe=mkm)),
        "LEM I, exchange view")
    gui.click(app.buttons["compare"])
    gui.frames(3)
    compare = _compare(gui, app, "Plan 1: mMKM", "Plan 2: mMKM")
    result = compare.result
    assert result.stats.max_abs_gy == pytest.approx(4e-5, rel=0.1)
    legend = compare.panels[2].legend
    peak = 0.01 * float(result.reference_gy.max())
    assert (legend.overlay.vmin, legend.overlay.vmax) == pytest.approx((-peak, peak))
    assert "0.0" in legend.tick_texts, legend.tick_texts
    assert not any(t.startswith("-") and float(t) == 0 for t in legend.tick_texts)
    assert all(len(t.split(".")[-1]) <= 2 for t in legend.tick_texts), legend.tick_texts
    gui.save_png(gui.screenshot(), tmp_path / "compare_equal_doses.png")


def _legend_text_right(legend, text: str, font_size: float) -> float:
    """Where a legend's tick (drawn at 11) or end value (at 10) ends, px from the legend's
    left: its texts start beside the bar."""
    from kivy.core.text import Label as CoreLabel

    from app.widgets import color_legend

    start = color_legend._MARGIN_PX + color_legend._BAR_WIDTH_PX + 6
    return start + CoreLabel(text=text, font_size=font_size).get_extents(text)[0]


def _text_width(widget, text: str) -> float:
    from kivy.core.text import Label as CoreLabel

    return CoreLabel(text=text, font_size=widget.font_size).get_extents(text)[0]


def _bar_labels(compare) -> list:
    """The labels "A (reference)" and "B" before the drop-downs."""
    from kivy.uix.label import Label

    labels = [w for w in compare.side_a.parent.children if isinstance(w, Label)
              and w.text in ("A (reference)", "B")]
    assert len(labels) == 2
    return labels


def _fits(widget) -> bool:
    widget.texture_update()
    width, height = widget.texture_size
    return 0 < width <= widget.width + 0.5 and height <= widget.height + 0.5


def test_the_choices_and_their_labels_fit_the_bar(gui, tmp_path):
    """The "B" label lay under the B drop-down's text, and "Plan 2: LEM I chordoma,
    average..." ran past its button at 1440 x 900. The choices are whole there; in a small
    window a long one is shortened on its button and read whole over its view."""
    from tests.workspace_factory import synthetic_plan_result

    app = _start(gui, tmp_path)
    patient = app.session.patient
    first = app.session.add_plan(synthetic_plan_result(patient, 3), "LEM I, exchange view")
    app.session.add_plan(synthetic_plan_result(patient, 4), "LEM I, exchange view")
    gui.click(app.buttons["compare"])
    gui.frames(3)
    compare = app.compare
    lem = "Plan 2: LEM I chordoma, averaged"
    compare.side_a.text, compare.side_b.text = "Plan 1: mMKM", lem
    gui.frames(3)
    assert tuple(gui.window.size) == (1440, 900)
    for widget in (*_bar_labels(compare), compare.side_a, compare.side_b,
                   compare.criteria_label):
        assert _fits(widget), widget.text
    for spinner in (compare.side_a, compare.side_b):  # whole, not shortened
        assert spinner.texture_size[0] >= _text_width(spinner, spinner.text) - 1, spinner.text
    gui.save_png(gui.screenshot(), tmp_path / "compare_bar_1440x900.png")

    window = gui.window
    try:
        window.size = (1024, 640)
        gui.frames(4)
        app.planning.rename(first, "Chordoma boost, two fields, re-optimized")
        gui.frames(2)
        long_a = "Chordoma boost, two fields, re-optimized: LEM I chordoma, averaged"
        compare.side_a.text = long_a
        gui.frames(3)
        for widget in (*_bar_labels(compare), compare.side_a, compare.side_b,
                       compare.criteria_label):
            assert _fits(widget), widget.text
        assert compare.side_a.texture_size[0] < _text_width(compare.side_a, long_a)
        compare = _compare(gui, app, long_a, lem)
        # The whole names over the views (on two lines where one is too short), the views
        # level.
        assert [p.title.text for p in compare.panels[:2]] == [long_a, lem]
        for panel in compare.panels:
            assert _fits(panel.title)
        assert compare.panels[0].title.texture_size[1] > compare.panels[1].title.texture_size[1]
        assert len({p.view.top for p in compare.panels}) == 1
        gui.save_png(gui.screenshot(), tmp_path / "compare_bar_1024x640.png")
    finally:
        window.size = (1440, 900)
        gui.frames(2)
