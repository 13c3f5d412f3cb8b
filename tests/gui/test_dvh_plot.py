"""The DVH panel and the metrics table in a real window: curve pixels, readout, visibility,
dashes, legend, table cells, PNG export, and the docs screenshot of the panel."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.gui.driver import GuiDriver

pytestmark = pytest.mark.gui

RED = (230, 20, 20)
BLUE = (20, 60, 230)
GREEN = (20, 200, 60)
METRIC_COLUMNS = ["D98", "D95", "D2", "Dmean", "Dmax", "V95"]


def _step_and_linear() -> list[Any]:
    """A step DVH (100 % up to 50 Gy(RBE), then 0) and a linear one (100 % at 0 to 0 % at 80)."""
    from app.plot_data import DvhCurve

    return [
        DvhCurve("PTV", RED, np.array([0.0, 50.0, 50.0, 80.0]),
                 np.array([100.0, 100.0, 0.0, 0.0])),
        DvhCurve("Brainstem", BLUE, np.array([0.0, 80.0]), np.array([100.0, 0.0])),
    ]


class _Panel:
    """Widgets of the test app: the plot left, the table right."""

    plot: Any
    table: Any


def _start(gui: GuiDriver, curves: list[Any] | None = None) -> _Panel:
    from kivy.app import App
    from kivy.uix.boxlayout import BoxLayout

    from app.widgets.dvh_plot import DvhPlot
    from app.widgets.metrics_table import MetricsTable

    panel = _Panel()

    class DvhApp(App):
        def build(self) -> Any:
            root = BoxLayout(orientation="horizontal")
            panel.plot = DvhPlot(size_hint_x=0.58, x_label="Dose (Gy(RBE))")
            panel.table = MetricsTable(size_hint_x=0.42)
            root.add_widget(panel.plot)
            root.add_widget(panel.table)
            return root

    gui.start(DvhApp())
    panel.plot.set_curves(_step_and_linear() if curves is None else curves)
    gui.frames(2)
    return panel


def _mask(rgba: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> np.ndarray:
    """Pixels within ``tol`` of the colour on every channel (row 0 at the top)."""
    diff = np.abs(rgba[:, :, :3].astype(int) - np.array(rgb)[None, None, :])
    return (diff <= tol).all(axis=2)


def _row(gui: GuiDriver, y: float) -> int:
    """Screenshot row of window y (Kivy y up)."""
    return int(gui.window.system_size[1]) - 1 - int(np.floor(y))


def _expected_xy(plot: Any, dose: float, volume: float) -> tuple[float, float]:
    """Where the axes put (dose, volume): linear from the plot area's corners."""
    x0, y0, x1, y1 = plot.plot_area
    return (x0 + dose / plot.dose_axis_max * (x1 - x0), y0 + volume / 100.0 * (y1 - y0))


def test_axes_end_on_a_nice_dose_above_the_data(gui: GuiDriver) -> None:
    panel = _start(gui)
    top = panel.plot.dose_axis_max
    assert top >= 80.0
    exponent = np.floor(np.log10(top))
    assert round(top / 10**exponent, 6) in (1.0, 2.0, 2.5, 5.0, 10.0) or top % 10 == 0
    x0, y0, x1, y1 = panel.plot.plot_area
    assert panel.plot.x < x0 < x1 < panel.plot.right
    assert panel.plot.y < y0 < y1 < panel.plot.top


def test_curve_pixels_lie_where_the_axes_put_them(gui: GuiDriver) -> None:
    panel = _start(gui)
    shot = gui.screenshot()
    red, blue = _mask(shot, RED), _mask(shot, BLUE)
    tol_px = panel.plot.line_width + 2
    for dose in (10.0, 20.0, 30.0, 40.0, 60.0, 70.0):
        # Linear DVH: V(D) = 100 - 100 D / 80.
        x, y = _expected_xy(panel.plot, dose, 100.0 - 100.0 * dose / 80.0)
        rows = np.flatnonzero(blue[:, round(x)])
        assert rows.size, f"no blue pixel in the column of {dose} Gy(RBE)"
        assert np.abs(rows - _row(gui, y)).min() <= tol_px, (dose, rows, _row(gui, y))
        # Step DVH: 100 % below 50 Gy(RBE), 0 % above.
        x, y = _expected_xy(panel.plot, dose, 100.0 if dose < 50.0 else 0.0)
        rows = np.flatnonzero(red[:, round(x)])
        assert rows.size, f"no red pixel in the column of {dose} Gy(RBE)"
        assert np.abs(rows - _row(gui, y)).max() <= tol_px, (dose, rows, _row(gui, y))
    # The step's drop: red all the way down the column at 50 Gy(RBE).
    x, y_top = _expected_xy(panel.plot, 50.0, 100.0)
    _, y_bottom = _expected_xy(panel.plot, 50.0, 0.0)
    cols = slice(round(x) - 2, round(x) + 3)
    # Red all the way, except where the blue line (drawn later) crosses it at 37.5 %.
    column = red[:, cols].any(axis=1) | blue[:, cols].any(axis=1)
    span = column[_row(gui, y_top) + 3:_row(gui, y_bottom) - 3]
    assert span.all()


def test_hover_reads_each_curve_at_the_mouse_dose(gui: GuiDriver) -> None:
    panel = _start(gui)
    _x0, y0, _x1, y1 = panel.plot.plot_area
    mid = (y0 + y1) / 2
    gui.move((_expected_xy(panel.plot, 30.0, 0)[0], mid))
    assert panel.plot.readout_text == "D = 30.0 Gy(RBE): PTV 100.0 %, Brainstem 62.5 %"
    gui.move((_expected_xy(panel.plot, 49.0, 0)[0], mid))
    assert "PTV 100.0 %" in panel.plot.readout_text
    assert "Brainstem 38.8 %" in panel.plot.readout_text  # 100 - 100 * 49 / 80 = 38.75
    gui.move((_expected_xy(panel.plot, 60.0, 0)[0], mid))
    assert panel.plot.readout_text == "D = 60.0 Gy(RBE): PTV 0.0 %, Brainstem 25.0 %"
    # The cursor line is drawn in the cursor colour at the mouse dose.
    shot = gui.screenshot()
    x = round(_expected_xy(panel.plot, 60.0, 0)[0])
    cursor_rgb = tuple(int(255 * c) for c in panel.plot.cursor_color[:3])
    column = _mask(shot, cursor_rgb, tol=70)[_row(gui, y1) + 5:_row(gui, y0) - 5, x - 1:x + 2]
    assert column.any(axis=1).mean() > 0.8
    # Off the plot area there is no readout and no cursor line.
    gui.move((panel.table.center_x, panel.table.center_y))
    assert panel.plot.readout_text == ""
    shot = gui.screenshot()
    column = _mask(shot, cursor_rgb, tol=70)[_row(gui, y1) + 5:_row(gui, y0) - 5, x - 1:x + 2]
    assert not column.any(axis=1).mean() > 0.8


def test_click_and_drag_move_the_cursor(gui: GuiDriver) -> None:
    panel = _start(gui)
    _, y0, _, y1 = panel.plot.plot_area
    mid = (y0 + y1) / 2
    gui.click((_expected_xy(panel.plot, 20.0, 0)[0], mid))
    assert panel.plot.readout_text.startswith("D = 20.0 Gy(RBE): PTV 100.0 %, Brainstem 75.0 %")
    gui.drag((_expected_xy(panel.plot, 20.0, 0)[0], mid), (_expected_xy(panel.plot, 40.0, 0)[0],
                                                          mid))
    assert panel.plot.readout_text == "D = 40.0 Gy(RBE): PTV 100.0 %, Brainstem 50.0 %"


@pytest.mark.parametrize(("x_label", "unit"), [
    ("Dose (Gy(RBE))", "Gy(RBE)"),
    ("RBE-weighted dose (mMKM) (Gy(RBE))", "Gy(RBE)"),
    ("Worst case: voxel-wise minimum of 9 scenarios (LEM I chordoma) (Gy(RBE))", "Gy(RBE)"),
    ("Dose of the plan (physical model, no RBE) (Gy)", "Gy"),
    ("LEM I / mMKM ratio", ""),
])
def test_the_readout_takes_the_unit_from_the_labels_last_brackets(
        gui: GuiDriver, x_label: str, unit: str) -> None:
    """The planning screen's labels name the model in brackets before the unit: the readout
    gives the unit, not everything from the first bracket on ("mMKM) (Gy(RBE)")."""
    panel = _start(gui)
    panel.plot.x_label = x_label
    gui.frames(2)
    gui.move((panel.table.center_x, panel.table.center_y))  # the mouse may be there already
    gui.move((_expected_xy(panel.plot, 30.0, 0)[0], sum(panel.plot.plot_area[1::2]) / 2))
    head = f"D = 30.0 {unit}" if unit else "D = 30.0"
    assert panel.plot.readout_text == f"{head}: PTV 100.0 %, Brainstem 62.5 %"
    gui.move((panel.table.center_x, panel.table.center_y))  # free the point for other tests


def test_hiding_a_structure_removes_its_colour(gui: GuiDriver) -> None:
    panel = _start(gui)
    assert _mask(gui.screenshot(), RED).sum() > 200
    panel.plot.set_visible("PTV", False)
    shot = gui.screenshot()
    assert _mask(shot, RED).sum() == 0
    assert _mask(shot, BLUE).sum() > 200
    assert panel.plot.legend_labels == ["Brainstem"]
    gui.move((_expected_xy(panel.plot, 30.0, 0)[0], sum(panel.plot.plot_area[1::2]) / 2))
    assert panel.plot.readout_text == "D = 30.0 Gy(RBE): Brainstem 62.5 %"
    panel.plot.set_visible("PTV", True)
    assert _mask(gui.screenshot(), RED).sum() > 200


def _runs(values: np.ndarray) -> list[tuple[bool, int]]:
    """Run-length encoding of a boolean row: (value, length) pairs."""
    edges = np.flatnonzero(np.diff(values.astype(int))) + 1
    bounds = np.concatenate(([0], edges, [values.size]))
    return [(bool(values[a]), int(b - a)) for a, b in itertools.pairwise(bounds)]


def test_dashed_curves_have_gaps_and_solid_ones_do_not(gui: GuiDriver) -> None:
    from app.plot_data import DvhCurve

    # Two horizontal curves: solid blue at 70 %, dashed green at 30 % (both to 60 Gy(RBE)).
    dose = np.array([0.0, 60.0, 60.0, 80.0])
    curves = [
        DvhCurve("Solid", BLUE, dose, np.array([70.0, 70.0, 0.0, 0.0])),
        DvhCurve("Dashed", GREEN, dose, np.array([30.0, 30.0, 0.0, 0.0]), dashed=True,
                 group="B"),
    ]
    panel = _start(gui, curves)
    shot = gui.screenshot()
    xa = round(_expected_xy(panel.plot, 5.0, 0)[0])
    xb = round(_expected_xy(panel.plot, 55.0, 0)[0])
    green_row = _mask(shot, GREEN)[_row(gui, _expected_xy(panel.plot, 0, 30.0)[1]), xa:xb]
    blue_row = _mask(shot, BLUE)[_row(gui, _expected_xy(panel.plot, 0, 70.0)[1]), xa:xb]
    assert blue_row.all()
    runs = _runs(green_row)
    on = [n for v, n in runs[1:-1] if v]
    off = [n for v, n in runs[1:-1] if not v]
    # 7 px dashes and 5 px gaps at density 1: (xb - xa) / 12 periods.
    assert len(on) >= (xb - xa) // 12 - 2
    assert 5 <= np.median(on) <= 9
    assert 3 <= np.median(off) <= 7
    # The legend draws the dashed sample dashed too.
    assert panel.plot.legend_labels == ["Solid", "Dashed (B)"]


def test_legend_lists_structures_and_groups_with_their_colours(gui: GuiDriver) -> None:
    from app.plot_data import DvhCurve

    d = np.array([0.0, 40.0, 60.0])
    curves = [
        DvhCurve("PTV", RED, d, np.array([100.0, 90.0, 0.0]), group="mMKM"),
        DvhCurve("PTV", RED, d * 1.1, np.array([100.0, 90.0, 0.0]), dashed=True, group="LEM I"),
        DvhCurve("Brainstem", BLUE, d, np.array([100.0, 20.0, 0.0]), group="mMKM"),
        DvhCurve("Brainstem", BLUE, d * 1.1, np.array([100.0, 20.0, 0.0]), dashed=True,
                 group="LEM I"),
    ]
    panel = _start(gui, curves)
    assert panel.plot.legend_labels == ["PTV", "Brainstem", "mMKM", "LEM I"]
    shot = gui.screenshot()
    x1 = int(panel.plot.plot_area[2])
    legend = shot[:, x1 + 2:int(panel.plot.right)]
    assert _mask(legend, RED).sum() > 20
    assert _mask(legend, BLUE).sum() > 20
    # Legend text is drawn in the foreground colour.
    fg = tuple(int(255 * c) for c in panel.plot.foreground_color[:3])
    assert _mask(legend, fg, tol=30).sum() > 100
    gui.move((_expected_xy(panel.plot, 40.0, 0)[0], sum(panel.plot.plot_area[1::2]) / 2))
    # LEM I curves run through (44, 90 %) and (44, 20 %) to 0 % at 66: at 40 Gy(RBE)
    # 100 - 10 * 40 / 44 = 90.9 % and 100 - 80 * 40 / 44 = 27.3 %.
    assert panel.plot.readout_text == (
        "D = 40.0 Gy(RBE): PTV (mMKM) 90.0 %, PTV (LEM I) 90.9 %, Brainstem (mMKM) 20.0 %, "
        "Brainstem (LEM I) 27.3 %")


def test_prescription_marker_and_fixed_dose_range(gui: GuiDriver) -> None:
    panel = _start(gui)
    panel.plot.set_dose_range(120.0)
    assert panel.plot.dose_axis_max == 120.0
    panel.plot.set_prescription(60.0)
    gui.frames(1)
    shot = gui.screenshot()
    x = round(_expected_xy(panel.plot, 60.0, 0)[0])
    marker = tuple(int(255 * c) for c in panel.plot.prescription_color[:3])
    _, y0, _, y1 = panel.plot.plot_area
    column = _mask(shot, marker, tol=25)[_row(gui, y1) + 20:_row(gui, y0) - 20, x - 1:x + 2]
    frac = column.any(axis=1).mean()
    assert 0.3 < frac < 0.9  # dashed: about 4 on, 3 off
    panel.plot.set_prescription(None)
    shot = gui.screenshot()
    column = _mask(shot, marker, tol=25)[_row(gui, y1) + 20:_row(gui, y0) - 20, x - 1:x + 2]
    assert column.any(axis=1).mean() < 0.1


def test_bad_curves_are_refused() -> None:
    from app.plot_data import DvhCurve
    from planning.errors import InputError

    with pytest.raises(InputError, match="same length"):
        DvhCurve("PTV", RED, np.array([0.0, 1.0]), np.array([100.0]))
    with pytest.raises(InputError, match="non-decreasing"):
        DvhCurve("PTV", RED, np.array([0.0, 2.0, 1.0]), np.array([100.0, 50.0, 0.0]))
    with pytest.raises(InputError, match=r"percent, not a fraction"):
        DvhCurve("PTV", RED, np.array([0.0, 1.0]), np.array([150.0, 0.0]))
    with pytest.raises(InputError, match="colour_rgb"):
        DvhCurve("PTV", (300, 0, 0), np.array([0.0, 1.0]), np.array([100.0, 0.0]))


def test_metrics_table_shows_rows_with_swatches(gui: GuiDriver) -> None:
    from app.plot_data import MetricsRow

    panel = _start(gui)
    rows = [
        MetricsRow("PTV", RED, ["49.0", "49.5", "50.0", "50.0", "50.0", "100.0 %"]),
        MetricsRow("Brainstem", BLUE, ["1.6", "4.0", "78.4", "40.0", "80.0", "20.6 %"]),
    ]
    panel.table.set_rows(METRIC_COLUMNS, rows)
    gui.frames(2)
    assert panel.table.cell_texts() == [
        ["Structure", *METRIC_COLUMNS],
        ["PTV", "49.0", "49.5", "50.0", "50.0", "50.0", "100.0 %"],
        ["Brainstem", "1.6", "4.0", "78.4", "40.0", "80.0", "20.6 %"],
    ]
    shot = gui.screenshot()
    table = shot[:, int(panel.table.x):int(panel.table.right)]
    red_rows = np.flatnonzero(_mask(table, RED).any(axis=1))
    blue_rows = np.flatnonzero(_mask(table, BLUE).any(axis=1))
    assert red_rows.size and blue_rows.size
    assert red_rows.max() < blue_rows.min()  # PTV's swatch above Brainstem's
    # Every value label has rendered text that fits its cell (not shortened away).
    from kivy.uix.label import Label

    labels = [w for w in panel.table.walk() if isinstance(w, Label) and w.text]
    assert len(labels) == 3 * 7
    for lab in labels:
        assert lab.texture_size[0] > 0
        assert lab.texture_size[0] <= lab.width
    # The last column stays clear of the body's scroll bar, and each title above its column.
    scroll = panel.table._scroll
    cells = [w for w in panel.table.walk() if isinstance(w, Label) and w.text == "100.0 %"]
    (last_value,) = cells
    assert last_value.to_window(last_value.right, 0)[0] <= (
        scroll.to_window(scroll.right - scroll.bar_width, 0)[0])
    (last_title,) = [w for w in panel.table.walk() if isinstance(w, Label)
                     and w.text == METRIC_COLUMNS[-1]]
    assert last_title.to_window(last_title.right, 0)[0] == pytest.approx(
        last_value.to_window(last_value.right, 0)[0], abs=1.0)
    from planning.errors import InputError

    with pytest.raises(InputError, match="has 2 values for 6 columns"):
        panel.table.set_rows(METRIC_COLUMNS, [MetricsRow("PTV", RED, ["1", "2"])])


def test_export_png_matches_the_screen(gui: GuiDriver, tmp_path: Path) -> None:
    from PIL import Image

    panel = _start(gui)
    out = tmp_path / "dvh.png"
    panel.plot.export_png(out)
    with Image.open(out) as im:
        exported = np.asarray(im.convert("RGBA"))
    w, h = round(panel.plot.width), round(panel.plot.height)
    assert exported.shape == (h, w, 4)
    shot = gui.screenshot()
    top_row = _row(gui, panel.plot.top - 1)
    on_screen = shot[top_row:top_row + h, int(panel.plot.x):int(panel.plot.x) + w]
    # Same picture; thick diagonal lines may rasterize up to two pixels apart offscreen, so
    # every exported pixel must match the screen within two pixels, and almost all exactly.
    exact = (exported[:, :, :3] == on_screen[:, :, :3]).all(axis=2)
    assert exact.mean() > 0.99
    near = exact.copy()
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            shifted = np.roll(on_screen[:, :, :3], (dy, dx), axis=(0, 1))
            near |= (exported[:, :, :3] == shifted).all(axis=2)
    assert near[2:-2, 2:-2].all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dvh.png"]


def _realistic_panel() -> tuple[list[Any], list[Any]]:
    """DVHs and metrics of synthetic voxel doses, through planning.evaluation like the app."""
    from app.plot_data import DvhCurve, MetricsRow
    from planning.evaluation import cumulative_dvh, dose_metrics

    rng = np.random.default_rng(7)
    prescription = 60.0
    structures = [
        ("PTV", (255, 64, 64), rng.normal(60.5, 1.2, 20000)),
        ("CTV", (255, 160, 0), rng.normal(60.8, 0.8, 12000)),
        ("Brainstem", (80, 160, 255), rng.gamma(2.0, 8.0, 15000)),
        ("Optic chiasm", (200, 90, 255), rng.gamma(1.5, 12.0, 3000)),
        ("Parotid L", (60, 210, 120), np.clip(rng.normal(22.0, 9.0, 18000), 0, None)),
    ]
    top = max(float(d.max()) for _, _, d in structures)
    curves, rows = [], []
    for name, rgb, doses in structures:
        dvh = cumulative_dvh(name, doses, 1.0, max_dose=top, n_bins=400)
        curves.append(DvhCurve(name, rgb, dvh.dose_gy, 100.0 * dvh.volume_fraction))
        m = dose_metrics(doses, prescription)
        rows.append(MetricsRow(name, rgb, [f"{m.d98:.1f}", f"{m.d95:.1f}", f"{m.d2:.1f}",
                                           f"{m.mean:.1f}", f"{m.max:.1f}",
                                           f"{100 * m.v95:.1f} %"]))
    return curves, rows


def test_screenshot_of_the_dvh_panel(gui: GuiDriver) -> None:
    curves, rows = _realistic_panel()
    panel = _start(gui, curves)
    panel.plot.set_prescription(60.0)
    panel.table.set_rows(METRIC_COLUMNS, rows)
    _x0, y0, _x1, y1 = panel.plot.plot_area
    gui.move((_expected_xy(panel.plot, 57.0, 0)[0], (y0 + y1) / 2))
    assert panel.plot.readout_text.startswith("D = 57.0 Gy(RBE): PTV 99.")
    shot = gui.screenshot("dvh_panel")
    assert shot.shape == (900, 1440, 4)
    for _, rgb, *_ in [(c.name, c.colour_rgb) for c in curves]:
        assert _mask(shot, rgb, tol=20).sum() > 100


def test_header_titles_with_units_wrap_instead_of_being_cut(gui: GuiDriver) -> None:
    from kivy.uix.label import Label

    from app.plot_data import MetricsRow

    panel = _start(gui)
    columns = [f"{c} (Gy(RBE))" for c in ("D98", "D95", "D2", "Dmean", "Dmax")] + ["V95 (%)"]
    panel.table.set_rows(columns, [MetricsRow("PTV", RED, ["1"] * 6)])
    gui.frames(3)
    single_line = panel.table.row_height
    header = [w for w in panel.table.walk() if isinstance(w, Label) and w.text in columns]
    assert len(header) == 6
    for lab in header:
        assert lab.texture_size[0] <= lab.width
        assert lab.texture_size[1] <= lab.height
        assert not lab.shorten
    # The narrow value columns need two lines for "Dmean (Gy(RBE))".
    dmean = next(lab for lab in header if lab.text.startswith("Dmean"))
    assert dmean.texture_size[1] > 0.9 * single_line
    assert panel.table.content_height == pytest.approx(2.8 * single_line)


def test_plot_follows_a_resize(gui: GuiDriver) -> None:
    panel = _start(gui)
    before = panel.plot.plot_area
    panel.plot.size_hint_x = 0.35
    gui.frames(3)
    after = panel.plot.plot_area
    assert after[2] < before[2] - 100
    shot = gui.screenshot()
    blue = _mask(shot, BLUE)
    for dose in (20.0, 40.0, 60.0):
        x, y = _expected_xy(panel.plot, dose, 100.0 - 100.0 * dose / 80.0)
        rows = np.flatnonzero(blue[:, round(x)])
        assert rows.size and np.abs(rows - _row(gui, y)).min() <= panel.plot.line_width + 2


def test_a_long_dose_axis_title_wraps_within_the_plot(gui: GuiDriver) -> None:
    """"Worst case: voxel-wise minimum of 9 scenarios (LEM I chordoma, averaged) (Gy(RBE))"
    ran past the plot into the side panel (GUI review): it wraps to the width left of the
    plot's right edge (under the volume axis too, which gave it a third line)."""
    panel = _start(gui)
    plot = panel.plot
    title = ("Worst case: voxel-wise minimum of 9 scenarios (LEM I chordoma, averaged) "
             "(Gy(RBE))")
    short_area = plot.plot_area
    assert plot.x_label_lines == ["Dose (Gy(RBE))"]
    for hint, lines in ((0.58, 1), (0.3, 2), (0.15, 3)):
        plot.size_hint_x = hint
        plot.x_label = title
        gui.frames(3)
        x0, y0, x1, y1 = plot.x_label_box
        _, bottom, right, _ = plot.plot_area
        assert len(plot.x_label_lines) >= lines and " ".join(plot.x_label_lines) == title
        assert plot.x <= x0 < x1 <= right + 0.5, (hint, plot.x_label_box, plot.plot_area)
        assert plot.y <= y0 < y1 < bottom
    # The readout still takes the unit from the title's last brackets.
    plot.set_cursor_dose(30.0)
    assert plot.readout_text.startswith("D = 30") and "Gy(RBE)" in plot.readout_text
    plot.size_hint_x = 0.58
    plot.x_label = "Dose (Gy(RBE))"
    gui.frames(3)
    assert plot.plot_area == short_area
