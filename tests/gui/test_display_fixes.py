"""Display fixes of the physicist's working day (issue 16, item 5) in the real window:
compare views on one slice, small windows, state reset with the patient, view reset.

Screenshots: docs/screenshots/compare_slices.png, small_window_1024x640.png,
small_window_dose_tab_plan.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gui.demo_app import start_on_demo

pytestmark = pytest.mark.gui


def _start(gui, tmp_path: Path):
    return start_on_demo(gui, tmp_path)


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
                # ... and every line of a wrapped title fits the header's height.
                wrapped = CoreLabel(text=cell.text, font_size=cell.font_size, bold=True,
                                    text_size=(cell.text_size[0], None))
                wrapped.refresh()
                assert wrapped.texture.size[1] <= cell.height, (size, cell.text)
            for name, view in zip(("axial", "coronal", "sagittal"), screen.viewer.views,
                                  strict=True):
                assert view.width > 150 and view.height > 100, (size, name, view.size)
                assert _inside_window(gui, view), (size, name)
                # The slider's thumb is at the slice right after the resize.
                assert _thumb_matches(screen.viewer.sliders[name]), (size, name)
                # The orientation letter at the top does not cover the slice text.
                (ix, iy), (iw, ih) = view._info_rect.pos, view._info_rect.size
                (lx, ly), (lw, lh) = view._edge_labels["top"].pos, view._edge_labels["top"].size
                overlap_x = min(ix + iw, lx + lw) - max(ix, lx)
                overlap_y = min(iy + ih, ly + lh) - max(iy, ly)
                assert overlap_x <= 0 or overlap_y <= 0, (size, name)
                # The slice text sits on its dark band (legible over bone and dose).
                (bx, by), (bw, bh) = view._info_background.pos, view._info_background.size
                assert bx <= ix and by <= iy and bx + bw >= ix + iw and by + bh >= iy + ih
            assert _inside_window(gui, screen.viewer.fit_button)
            # The structure list's heading starts inside its panel (a label's texture is
            # centred on it: one wider than the label starts left of it).
            heading = next(w for w in screen.patient_panel.children
                           if getattr(w, "text", "") == "Structures (visible)")
            assert heading.texture_size[0] <= heading.width, (size, heading.texture_size)
        gui.screenshot("small_window_1024x640")
        for tab in ("Plan", "Dose"):
            gui.click(screen.tab_items[tab])
            gui.frames(3)
            gui.screenshot(f"small_window_{tab.lower()}_tab")
        gui.click(app.buttons["compare"])
        gui.frames(3)
        compare = app.compare
        for widget in (compare.compare_button, compare.add_dose_button, compare.side_b,
                       *(p.view for p in compare.panels)):
            assert _inside_window(gui, widget)
        assert all(_thumb_matches(s) for s in (compare.slice_slider,))
        gui.screenshot("small_window_compare")
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


def test_cancel_stops_the_plan_within_a_second_and_resets_the_bar(gui, tmp_path):
    import time

    app = _start(gui, tmp_path)
    screen = app.planning
    gui.click(screen.tab_items["Plan"])
    gui.frames(2)
    gui.click(screen.plan_panel.compute_button)
    # Pressed during the set-up, which used to report nothing for 20 s (after the plan's
    # estimate, a task of its own).
    gui.wait_until(lambda: app.task is not None and app.task.name == "Computing plan"
                   and app.task.fraction > 0.03, 300, "the set-up to report progress")
    assert app.task.stage == "water-equivalent depth"
    gui.advance(0.2)  # the bar polls the task every 0.1 s
    assert app.task_bar.bar.value > 0.02
    task = app.task
    gui.click(app.task_bar.cancel_button)
    pressed = time.perf_counter()
    gui.wait_until(lambda: not task.running, 30, "the cancellation")
    assert time.perf_counter() - pressed < 1.0
    gui.frames(2)
    assert "cancelled" in app.task_bar.status.text and app.task_bar.bar.value == 0.0
    assert app.session.plans == [] and not app.last_error


PLAN_TIMEOUT_S = 600.0


def test_plan_display_quantities_menus_beam_view_compare_table_and_reset(gui, tmp_path):
    import numpy as np

    from app.session import QUANTITY_MASK_FRACTION
    from app.widgets.menu import OPTION_RGBA
    from planning.geometry import lps_to_index

    app = _start(gui, tmp_path)
    screen = app.planning
    gui.click(screen.tab_items["Plan"])
    gui.frames(2)
    form = screen.plan_panel
    # Switching the model under a kept prescription says what that means.
    assert form.model_note.text == ""
    form.rbe.text = "LEM I"
    gui.frames(2)
    assert "57.6 Gy(RBE)" in form.model_note.text and "delivers less" in form.model_note.text
    assert form.model_note.height > 20
    # Under LEM I the rapid scheme is part of the model: its switch, under a prescription
    # kept (Enter) under LEM I, gets its note too.
    form.dose.dispatch("on_text_validate")
    form.rapid_scheme.text = "central"
    gui.frames(2)
    assert "rapid scheme changed from averaged to central" in form.model_note.text
    assert "delivers more" in form.model_note.text
    form.rapid_scheme.text = "averaged"
    form.rbe.text = "mMKM (NIRS clinical dose)"
    gui.frames(2)
    assert "delivers more" in form.model_note.text
    # Once the prescription is changed the note (about the kept number) goes.
    form.dose.text = "57.6"
    form.dose.dispatch("on_text_validate")
    gui.frames(2)
    assert "delivers more" in form.model_note.text  # the same number: still true
    form.dose.text = "60"
    form.dose.dispatch("on_text_validate")
    gui.frames(2)
    assert form.model_note.text == ""
    form.dose.text = "57.6"
    form.dose.dispatch("on_text_validate")
    gui.frames(1)
    form.spot_spacing.text = "6"
    form.grid_mm.text = "5"
    gui.click(form.compute_button)
    gui.frames(2)
    seen: list[float] = []  # the plan's bar (its estimate's task has a bar of its own)
    gui.wait_until(lambda: (app.task is not None and app.task.name == "Computing plan"
                            and seen.append(app.task_bar.bar.value)) or app.session.plans
                   or app.last_error, PLAN_TIMEOUT_S, "the plan")
    assert not app.last_error, app.last_error
    # The bar never went back, and moved during the set-up (not one step at the end of it).
    values = [v for v in seen if v > 0]
    assert values == sorted(values) and len({round(v, 2) for v in values}) > 10
    assert app.task_bar.bar.value == 0.0  # reset for the next task
    gui.frames(5)
    entry = app.session.latest_plan
    # Under each objective row, how far the plan is from it (its share of the objective value
    # and the RMS deviation over the optimizer's points, which the line names: next to a DVH
    # of the structure's voxels the number was taken for theirs): the numbers of report.json.
    reported = entry.result.report["objectives"]
    rows = form.objective_row_list
    assert len(rows) == len(reported)
    for row, o in zip(rows, reported, strict=True):
        assert (row.structure.text, row.kind_key) == (o["structure"], o["type"])
        assert row.result.text == (f"Plan 1: RMS deviation at the optimizer's points "
                                   f"{o['rms_deviation_gy_rbe']:.2f} Gy(RBE),\n"
                                   f"{o['share_percent']:.0f} % of the objective value")
        assert row.height > row.result.height > 0
    gui.click(screen.tab_items["Plan"])
    gui.frames(3)
    for row in rows:  # the lines fit their row: wrapped to its width, none cut off
        assert row.result.texture_size[0] <= row.result.width <= row.width
        assert row.result.texture_size[1] <= row.result.height
        assert row.result.height + row.children[-1].height <= row.height
    form.scroll.scroll_to(rows[2], animate=False)  # the first rows and their lines in view
    gui.frames(3)
    gui.screenshot("objective_results")
    gui.click(screen.tab_items["Dose"])
    gui.frames(2)
    ct = entry.result.patient.ct
    iso = entry.result.plan.beams[0].beam.isocenter_mm
    k, j, i = np.rint(lps_to_index([iso], ct.spacing_mm, ct.origin_mm)[0]).astype(int)
    screen.state.set_cursor(int(k), int(j), int(i))
    gui.frames(3)
    axial = screen.viewer.axial
    x, y = axial.to_window(*axial.plane_to_screen(*_plane_uv(axial, iso)))
    gui.move((x, y))
    gui.frames(2)
    assert "Gy(RBE)" in screen.state.readout_text
    panel = screen.dose_panel

    # The quantity menu opens as wide as its longest entry, on opaque options.
    gui.click(panel.quantity)
    gui.frames(3)
    dropdown = panel.quantity._dropdown
    options = list(dropdown.container.children)
    assert dropdown.attach_to is not None and options
    for option in options:
        assert option.texture_size[0] <= dropdown.width
        assert tuple(option.background_color) == OPTION_RGBA and option.background_normal == ""
    longest = max(options, key=lambda o: o.texture_size[0])
    assert "RBE-weighted dose (LEM I chordoma, averaged)" in longest.text
    ox, oy = longest.to_window(longest.x + 3, longest.center_y)
    pixel = gui.pixel(ox, oy)
    assert max(abs(pixel[c] - round(255 * OPTION_RGBA[c])) for c in range(3)) <= 3
    gui.screenshot("quantity_menu")
    dropdown.dismiss()
    gui.frames(3)

    # The readout follows the quantity under a still mouse; quantities are masked.
    rbe = entry.result.rbe_dose_gy_rbe
    low = rbe < QUANTITY_MASK_FRACTION * entry.prescription_gy_rbe
    for key, word, title in (("letd", "keV/µm", "keV/µm"), ("rbe_factor", "RBE ", "RBE"),
                             ("ratio", "LEM I / mMKM", "LEM/mMKM")):
        panel.select_layer(key)
        gui.frames(3)
        overlay = screen.state.dose
        assert word in screen.state.readout_text, (key, screen.state.readout_text)
        assert screen.viewer.legend.title == title  # the colour bar says what it measures
        assert "≥10% Rx" in overlay.note and overlay.isodose_levels == ()
        assert not panel.quantity.children  # a menu is a button, nothing else
        if key != "ratio":  # same grid as the RBE-weighted dose
            assert np.all(overlay.dose[low] == 0.0)
            # The scale spans the 1st to 99th percentile of the values shown (the entrance
            # channel's as well as the target's), the few beyond marked on the colour bar.
            ptv = entry.result.patient.structure_set.get("PTV")
            from planning.structure_dose import grid_of, structure_rows

            rows = structure_rows(ptv.mask.to_dense(), grid_of(ct), entry.result.dose_grid)
            in_ptv = overlay.dose.reshape(-1)[rows]
            assert overlay.vmin <= float(np.median(in_ptv)) <= overlay.vmax
        shown = overlay.dose[overlay.dose > overlay.threshold]
        assert overlay.vmax < float(shown.max())
        assert screen.viewer.legend.beyond["over"] == f"max {float(shown.max()):.4g}"
    ratio_pixels = gui.screenshot("ratio_masked")
    assert ratio_pixels.shape[0] > 0

    # Beam's-eye view: target outline and the spots of each layer, the layer list.
    panel.select_layer("rbe")
    gui.click(panel.beam_view_button)
    gui.advance(0.5)
    dialog = gui.find(lambda w: getattr(w, "name", "") == "beam_view_dialog")
    beam_plan = entry.result.plan.beams[0]
    n_layers = len(np.unique(beam_plan.spots.layer))
    assert len(dialog.table.rows) == n_layers == len(dialog.layer_menu.values)
    energies = [float(r.values[0]) for r in dialog.table.rows]
    assert energies == sorted(energies, reverse=True)
    total = sum(float(r.values[2]) for r in dialog.table.rows)
    assert total == pytest.approx(beam_plan.weights.sum() * 1e6, rel=1e-2)
    dialog.select_layer(n_layers // 2)
    gui.frames(3)
    spots = dialog.view.spots
    assert spots is not None and spots.u_mm.size == dialog.layer.n_spots
    assert dialog.view.outlines
    # The hottest spot of the layer is drawn in the last colour of the map.
    hot = int(np.argmax(spots.particles))
    hx, hy = dialog.view.to_window(*dialog.view.mm_to_px(float(spots.u_mm[hot]),
                                                         float(spots.v_mm[hot])))
    r, g, b, _a = gui.pixel(hx, hy)
    assert (r, g, b) == pytest.approx(dialog.view.spot_colour(float(spots.particles.max())),
                                      abs=12)
    # The axes carry their values: ticks over the whole view, the isocentre among them.
    u_ticks, v_ticks = dialog.view.ticks_mm
    u0, u1, v0, v1 = dialog.view.visible_mm()
    assert len(u_ticks) >= 3 and len(v_ticks) >= 3 and 0.0 in u_ticks and 0.0 in v_ticks
    assert u0 <= u_ticks.min() and u_ticks.max() <= u1
    assert v0 <= v_ticks.min() and v_ticks.max() <= v1
    gui.screenshot("beam_eye_view")
    dialog.beam_menu.text = dialog.beam_menu.values[1]
    gui.frames(3)
    assert len(dialog.table.rows) == len(np.unique(entry.result.plan.beams[1].spots.layer))
    gui.click(gui.find(lambda w: getattr(w, "name", "") == "beam_view_close"))
    gui.advance(0.5)

    # Compare: organs with D2 and Dmax, targets with D95 and Dmean.
    gui.click(app.buttons["compare"])
    gui.frames(3)
    compare = app.compare
    compare.result = None
    gui.click(compare.compare_button)
    gui.wait_until(lambda: compare.result is not None or app.last_error, 300, "the comparison")
    assert not app.last_error, app.last_error
    gui.frames(3)
    names = [r.name for r in compare.table.rows]
    for wanted in ("PTV D95", "PTV Dmean", "Brainstem D2", "Brainstem Dmax", "Brainstem Dmean"):
        assert wanted in names, names
    brainstem = next(s for s in compare.result.structures if s.name == "Brainstem")
    row = next(r for r in compare.table.rows if r.name == "Brainstem Dmax")
    assert row.values[0] == f"{brainstem.metrics_a['max']:.2f}"
    gui.screenshot("compare_table")

    # A new patient: no readout, DVH axis or prescription marker of the last one. (The demo
    # patient again would bring its plan back from its workspace: another Patient ID has none.)
    gui.click(app.buttons["planning"])
    gui.frames(2)
    assert screen.dvh.prescription is not None and screen.state.readout_text
    app.exported.add(entry.plan_id)  # nothing to confirm
    other = _another_patient(tmp_path)
    app.load_folder(str(other))
    gui.wait_until(lambda: app.session.source == str(other) or app.last_error, 120,
                   "the new patient")
    assert app.session.plans == []
    gui.frames(3)
    assert screen.state.readout_text == ""
    assert screen.dvh.prescription is None and screen.dvh.curves == []
    assert screen.dvh.x_label == "Dose (Gy(RBE))"
    assert compare.dvh.prescription is None


def _another_patient(tmp_path):
    """The demo patient's images under another Patient ID: a patient without a workspace."""
    import pydicom

    from planning.dicom import write_demo_patient

    folder = tmp_path / "another_patient"
    for path in write_demo_patient(folder):
        ds = pydicom.dcmread(path)
        ds.PatientID = "ANOTHER-001"
        ds.save_as(path)
    return folder


def _plane_uv(view, point_lps) -> tuple[float, float]:
    from app import rendering

    (u, v), = rendering.lps_to_plane(point_lps, view.orientation)
    return float(u), float(v)


def test_at_1024x640_the_dose_tab_with_a_plans_warnings_keeps_below_its_tabs(gui, tmp_path):
    """Review: at 1024 x 640 a plan with two warnings (coarse grid, optimizer at its iteration
    limit) pushed the Dose panel over the tab strip (a click on the Plan header opened the
    plan chooser), and the metrics table cut values short ("51....")."""
    from dataclasses import replace

    from kivy.core.text import Label as CoreLabel
    from kivy.uix.label import Label

    from app.ionplan_app import IonPlanApp
    from planning import api
    from planning.workspace import (
        StoredPlan,
        Workspace,
        WorkspaceStore,
        new_plan_id,
        patient_key,
    )
    from tests.workspace_factory import synthetic_plan_result

    patient = api.demo_patient()
    result = synthetic_plan_result(patient, 3, grid_mm=4.0)
    grid_warning = ("the dose grid of 4 mm is coarser than 2.5 mm: the optimizer fits the "
                    "dose at the grid points only, and carbon Bragg peaks fall from 80 % to "
                    "20 % within 1-2 mm, so the dose between the points can ripple "
                    "(recalculate at 2.5 mm or finer to check, or plan on that grid)")
    result = replace(result, report={
        **result.report, "warnings": [grid_warning], "iterations": 199,
        "optimizer_message": "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"})
    store = WorkspaceStore(tmp_path / "workspaces")
    key = patient_key(patient)
    store.save(Workspace(key, "demo patient",
                         (StoredPlan(new_plan_id(), "Plan 1", result, summary="seeded"),), {}))
    store.save_last_patient("demo patient", key)
    app = gui.start(IonPlanApp(user_data_dir_override=str(tmp_path)))
    gui.wait_until(lambda: app.session.patient is not None or app.last_error, 120,
                   "the start-up patient")
    window = gui.window
    try:
        window.size = (1024, 640)
        gui.frames(4)
        screen = app.planning
        gui.click(screen.tab_items["Dose"])
        gui.frames(4)
        panel = screen.dose_panel
        assert panel.notes.text.count("Warning:") == 2
        # Every part of the panel lies below the tab strip, the warnings in a bounded,
        # scrolling area at the bottom.
        strip_bottom = min(item.to_window(*item.pos)[1] for item in screen.tab_items.values())
        for child in panel.children:
            assert child.to_window(child.x, child.top)[1] <= strip_bottom + 0.5, child
        assert panel.notes_scroll.height < panel.notes.height  # they scroll here
        assert panel.notes_scroll.y >= panel.y
        # Values of the metrics table whole (no ellipsis), in a font that fits the column.
        table = screen.metrics
        rows = [list(reversed(row.children)) for row in table._body.children]
        cells = [c for row in rows for c in row[2:]]  # after the swatch and the name
        assert len(cells) == 6 * len(table.rows) > 0
        for cell in cells:
            width = CoreLabel(text=cell.text, font_size=cell.font_size).get_extents(
                cell.text)[0]
            assert width <= cell.width - 2, (cell.text, width, cell.width)
            cell.texture_update()  # what is drawn: the whole text on one line
            drawn = "".join(w.text for line in cell._label._cached_lines for w in line.words)
            assert drawn == cell.text, (drawn, cell.text)
        # The title's words fit their columns (no "Gy(RBE" over ")").
        for cell in table._header.children[:-2]:
            for word in cell.text.split():
                width = CoreLabel(text=word, font_size=cell.font_size,
                                  bold=True).get_extents(word)[0]
                assert width <= cell.width - 2, (word, width, cell.width)
        # ... all in one font size: "V95 %" was drawn at 13 px beside "D98 Gy(RBE)" at 9 px.
        titles = [c for c in table._header.children if isinstance(c, Label)]
        assert [c.text for c in reversed(titles)][1:] == table.columns
        assert len({c.font_size for c in titles}) == 1, [(c.text, c.font_size) for c in titles]
        # The DVH's dose axis title on two lines, not three ("RBE-weighted dose (LEM I" /
        # "chordoma, averaged)" / "(Gy(RBE))"), left of the legend and below the ticks.
        dvh = screen.dvh
        assert dvh.x_label == "RBE-weighted dose (LEM I chordoma, averaged) (Gy(RBE))"
        assert dvh.x_label_lines == ["RBE-weighted dose (LEM I",
                                     "chordoma, averaged) (Gy(RBE))"], dvh.x_label_lines
        x0, y0, x1, y1 = dvh.x_label_box
        _, bottom, right, _ = dvh.plot_area
        assert dvh.x <= x0 < x1 <= right + 0.5 and dvh.y <= y0 < y1 < bottom
        gui.screenshot("small_window_dose_tab_plan")
        # The Plan header opens the Plan tab (not the plan chooser drawn over it).
        gui.click(screen.tab_items["Plan"])
        gui.frames(3)
        assert screen.tabs.current_tab is screen.tab_items["Plan"]
        assert len(window.children) == 1  # no drop-down open
    finally:
        window.size = (1440, 900)
        gui.frames(2)


def test_a_dose_with_tissues_per_structure_lists_them_under_the_chooser(gui, tmp_path):
    """The chooser names a dose with LEM I tissues per structure "LEM I, tissues per
    structure" (short): the line under it says which tissue and rapid scheme each structure
    has, whole, at 1024 x 640 too, with the panel's buttons in place below it."""
    import dataclasses

    from planning.rbe import LemModel, tissue_by_name
    from tests.workspace_factory import synthetic_plan_result

    app = _start(gui, tmp_path)
    screen, window = app.planning, gui.window
    result = synthetic_plan_result(app.session.patient, 3)
    plain = app.session.add_plan(result, "").name
    per_structure = app.session.add_plan(dataclasses.replace(
        result, model=LemModel(tissue_by_name("chordoma")),
        structure_tissues=(("PTV", tissue_by_name("hsg", "central")),
                           ("Brainstem", tissue_by_name("hsg")))), "").name
    gui.click(screen.tab_items["Dose"])
    gui.frames(3)
    panel = screen.dose_panel
    tissues = ("LEM I tissues: PTV hsg (central), Brainstem hsg (averaged); elsewhere "
               "chordoma (averaged)")
    try:
        for size in ((1440, 900), (1024, 640)):
            window.size = size
            gui.frames(4)
            panel.plan.text = per_structure
            gui.frames(3)
            panel.select_layer("rbe")
            gui.frames(3)
            assert panel.quantity.text == "RBE-weighted dose (LEM I, tissues per structure)"
            assert panel.reference.text == f"100 % = 57.6 Gy(RBE) (prescription)\n{tissues}"
            # Drawn whole: wrapped to the panel's width, the label as high as its lines.
            label = panel.reference
            label.texture_update()
            drawn = " ".join(w.text for line in label._label._cached_lines
                             for w in line.words)
            assert " ".join(drawn.split()) == " ".join(label.text.split()), drawn
            assert label.texture_size[0] <= label.width and label.height >= label.texture_size[1]
            assert label.y >= panel.hint.top - 0.5 and panel.beam_view_button.y >= panel.y
            # A plan of one tissue has no such line.
            panel.plan.text = plain
            gui.frames(3)
            assert panel.reference.text == "100 % = 57.6 Gy(RBE) (prescription)"
        panel.plan.text = per_structure
        gui.frames(3)
        gui.save_png(gui.screenshot(), tmp_path / "tissues_per_structure_1024x640.png")
    finally:
        window.size = (1440, 900)
