"""Display fixes of the physicist's working day (issue 16, item 5) in the real window:
compare views on one slice, small windows, state reset with the patient, view reset.

Screenshots: docs/screenshots/compare_slices.png, small_window_1024x640.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gui


def _start(gui, tmp_path: Path):
    from app.ionplan_app import IonPlanApp

    app = gui.start(IonPlanApp(user_data_dir_override=str(tmp_path)))
    gui.wait_until(lambda: app.session.patient is not None or app.last_error, 120,
                   "the demo patient")
    assert not app.last_error, app.last_error
    gui.frames(3)
    return app


def _compare_slices(compare) -> list[int]:
    return [int(p.view.slice_index) for p in compare.panels]


def test_compare_views_stay_on_one_slice_with_the_slider_in_step(gui, tmp_path):
    app = _start(gui, tmp_path)
    gui.click(app.buttons["compare"])
    gui.frames(3)
    compare = app.compare
    nz = app.session.patient.ct.shape[0]
    first = _compare_slices(compare)
    assert len(set(first)) == 1 and first[0] == nz // 2
    slider = compare.slice_slider
    assert int(slider.value) == first[0] and int(slider.max) == nz - 1
    # The thumb is drawn where the value is, not at the left end.
    thumb_x = slider._thumb.pos[0] + slider._thumb.size[0] / 2
    left, right = slider._usable()
    assert abs(thumb_x - (left + (right - left) * first[0] / (nz - 1))) < 2

    # Dragging the slider to the left moves every view to that slice.
    x0, y = slider.to_window(*slider.center)
    lx = slider.to_window(left + 0.15 * (right - left), 0)[0]
    gui.drag((x0, y), (lx, y))
    gui.frames(2)
    moved = _compare_slices(compare)
    assert len(set(moved)) == 1 and moved[0] < first[0] - 10, moved
    assert int(slider.value) == moved[0]
    # The wheel over B or the difference moves A too, and the slider follows.
    for panel in compare.panels[1:]:
        gui.scroll(panel.view, "up", clicks=3)
        gui.frames(2)
        now = _compare_slices(compare)
        assert len(set(now)) == 1 and int(slider.value) == now[0], now
    assert _compare_slices(compare)[0] == moved[0] + 6
    gui.screenshot("compare_slices")


def _thumb_matches(slider) -> bool:
    """Whether a slice slider's thumb is drawn at its value."""
    left, right = slider._usable()
    span = max(slider.max - slider.min, 1)
    expected = left + (right - left) * (slider.value - slider.min) / span
    return abs(slider._thumb.pos[0] + slider._thumb.size[0] / 2 - expected) < 1.5


def _inside_window(gui, widget) -> bool:
    x0, y0 = widget.to_window(*widget.pos)
    w, h = gui.window.size
    return x0 >= 0 and y0 >= 0 and x0 + widget.width <= w + 0.5 and y0 + widget.height <= h


def test_small_windows_keep_toolbar_headers_and_sliders(gui, tmp_path):
    from kivy.core.text import Label as CoreLabel

    from app.ionplan_app import MIN_WINDOW_SIZE_PX

    app = _start(gui, tmp_path)
    window = gui.window
    assert (window.minimum_width, window.minimum_height) == MIN_WINDOW_SIZE_PX == (1024, 640)
    screen = app.planning
    try:
        for size in ((1280, 720), (1024, 640)):
            window.size = size
            gui.frames(4)
            for key, button in app.buttons.items():
                assert _inside_window(gui, button), (size, key)
                assert button.texture_size[0] <= button.width, (size, key)
            # Header titles wrap at spaces only: each word fits its column.
            table = screen.metrics
            for cell in table._header.children[:-2]:
                for word in cell.text.split():
                    width = CoreLabel(text=word, font_size=cell.font_size,
                                      bold=True).get_extents(word)[0]
                    assert width <= cell.width - 4, (size, word, cell.width)
            for name, view in zip(("axial", "coronal", "sagittal"), screen.viewer.views,
                                  strict=True):
                assert view.width > 150 and view.height > 100, (size, name, view.size)
                assert _inside_window(gui, view), (size, name)
                # The slider's thumb is at the slice right after the resize.
                assert _thumb_matches(screen.viewer.sliders[name]), (size, name)
            assert _inside_window(gui, screen.viewer.fit_button)
        gui.screenshot("small_window_1024x640")
    finally:
        window.size = (1440, 900)
        gui.frames(2)
    for slider in screen.viewer.sliders.values():
        assert _thumb_matches(slider)


def test_fit_view_button_and_home_key_undo_zoom_and_pan(gui, tmp_path):
    app = _start(gui, tmp_path)
    viewer = app.planning.viewer
    axial, coronal = viewer.axial, viewer.coronal
    for view in (axial, coronal):
        gui.scroll(view, "up", modifiers=("ctrl",), clicks=3)
        x, y = view.to_window(*view.center)
        gui.drag((x, y), (x + 40, y - 30))
    gui.frames(2)
    assert axial.zoom > 1.4 and coronal.zoom > 1.4 and axial.pan_mm != [0.0, 0.0]
    gui.click(viewer.fit_button)
    gui.frames(2)
    assert all(v.zoom == 1.0 and list(v.pan_mm) == [0.0, 0.0] for v in viewer.views)
    # Home over a view does the same.
    gui.scroll(axial, "up", modifiers=("ctrl",), clicks=2)
    assert axial.zoom > 1.2
    gui.move(axial)
    gui.key("home")
    gui.frames(2)
    assert axial.zoom == 1.0 and list(axial.pan_mm) == [0.0, 0.0]
