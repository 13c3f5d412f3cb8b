"""The compare screen as a physicist found it (GUI review), on plans made without the dose
engine (tests/workspace_factory.py): each side labelled in its own unit, a mixed difference
said to be one, and the choices' text within their drop-downs at 1440 x 900 and 1024 x 640.

Pictures of the screens go to the test's tmp_path (compare_mixed_units.png, ...)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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


def test_each_side_is_labelled_in_its_own_unit_and_a_mixed_difference_says_so(gui, tmp_path):
    """A = a physical-model plan's dose (Gy), B = an mMKM dose (Gy(RBE)): the table said
    "A Gy | B Gy", the DVH "Dose (Gy)" and the summary "max |d| ... Gy"."""
    from tests.workspace_factory import synthetic_plan_result

    app = _start(gui, tmp_path)
    patient = app.session.patient
    app.session.add_plan(_physical_model(synthetic_plan_result(patient, 3)), "physical")
    app.session.add_plan(synthetic_plan_result(patient, 4), "LEM I, exchange view")
    gui.click(app.buttons["compare"])
    gui.frames(3)
    compare = _compare(gui, app, "Plan 1: dose (physical model)", "Plan 2: mMKM")
    result = compare.result
    assert (result.unit_a, result.unit_b, result.unit) == ("Gy", "Gy(RBE)", "Gy vs Gy(RBE)")
    assert compare.table.columns[:2] == ["A Gy", "B Gy(RBE)"]
    assert compare.dvh.x_label == "Dose (A solid: Gy, B dashed: Gy(RBE))"
    assert f"max |d| {result.stats.max_abs_gy:.3f} Gy vs Gy(RBE) (" in compare.summary.text
    assert f"A's max {result.stats.reference_max_gy:.2f} Gy)" in compare.summary.text
    assert "mixes physical and RBE-weighted dose" in compare.summary.text  # the warning kept
    assert compare.panels[2].title.text == "Difference B - A (Gy(RBE) - Gy)"
    assert [p.legend.title for p in compare.panels] == ["Gy", "Gy(RBE)", "Gy vs Gy(RBE)"]
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

    # Two doses of one unit: one unit everywhere, as before.
    compare = _compare(gui, app, "Plan 2: mMKM", "Plan 2: LEM I chordoma, averaged")
    assert compare.table.columns[:2] == ["A Gy(RBE)", "B Gy(RBE)"]
    assert compare.dvh.x_label == "Dose (Gy(RBE))"
    assert compare.panels[2].title.text == "Difference B - A"
    assert [p.legend.title for p in compare.panels] == ["Gy(RBE)"] * 3


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
