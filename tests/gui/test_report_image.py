"""The plan report page: PNG and PDF of the requested size, with the views, DVH and metrics
where the layout puts them, written atomically, while the app's window is up."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.gui.driver import GuiDriver

pytestmark = pytest.mark.gui

RED = (230, 20, 20)
BLUE = (20, 60, 230)
MAGENTA = (255, 0, 255)
CYAN = (0, 255, 255)
COLUMNS = ["D98", "D95", "D2", "Dmean", "Dmax", "V95"]


def _start_app(gui: GuiDriver) -> None:
    """A running app (the report is rendered with the GUI's window present)."""
    from kivy.app import App
    from kivy.uix.label import Label

    class ShellApp(App):
        def build(self) -> Any:
            return Label(text="IonPlan")

    gui.start(ShellApp())


def _view(height: int, width: int, rgb: tuple[int, int, int]) -> np.ndarray:
    img = np.zeros((height, width, 4), dtype=np.uint8)
    img[..., :3] = rgb
    img[..., 3] = 255
    return img


def _content(n_rows: int = 2, views: list[tuple[str, np.ndarray]] | None = None) -> Any:
    from app.report_image import ReportContent
    from app.widgets.dvh_plot import DvhCurve
    from app.widgets.metrics_table import MetricsRow

    curves = [
        DvhCurve("PTV", RED, np.array([0.0, 50.0, 50.0, 80.0]),
                 np.array([100.0, 100.0, 0.0, 0.0])),
        DvhCurve("Brainstem", BLUE, np.array([0.0, 80.0]), np.array([100.0, 0.0])),
    ]
    rows = [MetricsRow(f"Structure {i}", RED if i % 2 == 0 else BLUE,
                       ["49.0", "49.5", "50.0", "50.0", "50.0", "100.0 %"]) for i in range(n_rows)]
    if views is None:
        # A wide axial view (2:1) and a tall one (1:2) so the aspect shows.
        views = [("Axial", _view(100, 200, MAGENTA)), ("Sagittal", _view(200, 100, CYAN))]
    return ReportContent(
        title="Plan report: Demo / Plan A",
        lines=["Patient: Demo^Patient", "Prescription: 50 Gy(RBE) in 10 fractions",
               "RBE model: mMKM", "Beams: 2 (gantry 90, 270)", "Date: 2024-03-01"],
        view_images=views, dvh_curves=curves, dvh_x_label="Dose (Gy(RBE))", prescription=50.0,
        metrics_columns=COLUMNS, metrics_rows=rows,
        footer="IonPlan test report - not for clinical use")


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert rows.size and cols.size
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def _colour(rgba: np.ndarray, rgb: tuple[int, int, int], tol: int = 10) -> np.ndarray:
    return (np.abs(rgba[:, :, :3].astype(int) - np.array(rgb)) <= tol).all(axis=2)


def test_report_png_and_pdf_of_the_requested_size(gui: GuiDriver, tmp_path: Path) -> None:
    from PIL import Image

    from app.report_image import A4_200DPI_PX, render_report

    _start_app(gui)
    png, pdf = tmp_path / "report.png", tmp_path / "report.pdf"
    rgba = render_report(_content(), png, pdf)
    width, height = A4_200DPI_PX
    assert rgba.shape == (height, width, 4) and rgba.dtype == np.uint8
    with Image.open(png) as im:
        assert im.size == (width, height)
        np.testing.assert_array_equal(np.asarray(im.convert("RGBA")), rgba)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-1.4")
    box = re.search(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", data)
    assert float(box.group(1)) == pytest.approx(595.28, abs=0.05)  # A4 width in pt
    assert float(box.group(2)) == pytest.approx(841.89, abs=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf", "report.png"]
    # Page background is white; corners untouched.
    for r, c in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert tuple(rgba[r, c]) == (255, 255, 255, 255)
    # The app keeps running after an offscreen render.
    gui.frames(2)


def test_views_keep_their_aspect_and_order(gui: GuiDriver) -> None:
    from app.report_image import render_report

    _start_app(gui)
    rgba = render_report(_content())
    top_m, bottom_m, left_m, right_m = _box(_colour(rgba, MAGENTA))
    top_c, bottom_c, left_c, right_c = _box(_colour(rgba, CYAN))
    w_m, h_m = right_m - left_m + 1, bottom_m - top_m + 1
    w_c, h_c = right_c - left_c + 1, bottom_c - top_c + 1
    assert w_m / h_m == pytest.approx(2.0, rel=0.02)
    assert w_c / h_c == pytest.approx(0.5, rel=0.02)
    assert right_m < left_c  # axial left of sagittal, as given
    assert abs((top_m + bottom_m) / 2 - (top_c + bottom_c) / 2) <= 2  # same row, centred


def test_dvh_and_metrics_follow_the_views(gui: GuiDriver) -> None:
    from app.report_image import render_report

    _start_app(gui)
    rgba = render_report(_content(n_rows=4))
    view_bottom = max(_box(_colour(rgba, MAGENTA))[1], _box(_colour(rgba, CYAN))[1])
    red = _colour(rgba, RED, tol=30)
    # The step DVH's 100 % line is a long horizontal red run below the views.
    long_rows = np.flatnonzero(red.sum(axis=1) > 0.3 * rgba.shape[1])
    assert long_rows.size and long_rows.min() > view_bottom
    # Metrics swatches (red and blue squares, 4 rows) sit below the DVH, at the left margin.
    left_strip = rgba[:, : int(0.1 * rgba.shape[1])]
    swatch_rows = np.flatnonzero(_colour(left_strip, RED).any(axis=1)
                                 | _colour(left_strip, BLUE).any(axis=1))
    assert swatch_rows.min() > long_rows.max()
    runs = np.split(swatch_rows, np.flatnonzero(np.diff(swatch_rows) > 1) + 1)
    assert len(runs) == 4


def test_many_rows_shrink_the_table_and_too_many_are_refused(gui: GuiDriver) -> None:
    from app.report_image import render_report
    from planning.errors import InputError

    _start_app(gui)
    rgba = render_report(_content(n_rows=30))
    left_strip = rgba[:, : int(0.1 * rgba.shape[1])]
    swatch_rows = np.flatnonzero(_colour(left_strip, RED).any(axis=1)
                                 | _colour(left_strip, BLUE).any(axis=1))
    runs = np.split(swatch_rows, np.flatnonzero(np.diff(swatch_rows) > 1) + 1)
    assert len(runs) == 30
    assert swatch_rows.max() < rgba.shape[0] - 90  # above the bottom margin
    with pytest.raises(InputError, match="no room"):
        render_report(_content(n_rows=200))


def test_other_page_sizes_and_bad_input(gui: GuiDriver, tmp_path: Path) -> None:
    from app.report_image import render_report
    from planning.errors import InputError

    _start_app(gui)
    rgba = render_report(_content(), size_px=(827, 1170))
    assert rgba.shape == (1170, 827, 4)
    with pytest.raises(InputError, match="at least 400"):
        render_report(_content(), size_px=(100, 100))
    with pytest.raises(InputError, match=r"\(H, W, 4\) uint8"):
        render_report(_content(views=[("bad", np.zeros((10, 10, 3), np.uint8))]))
    with pytest.raises(FileNotFoundError):
        render_report(_content(), png_path=tmp_path / "no" / "r.png")
    assert not (tmp_path / "no").exists()


@pytest.mark.skipif(shutil.which("pdftoppm") is None,
                    reason="pdftoppm not installed (apt-get install poppler-utils)")
def test_pdf_renders_as_the_page(gui: GuiDriver, tmp_path: Path) -> None:
    from PIL import Image

    from app.report_image import render_report

    _start_app(gui)
    pdf = tmp_path / "report.pdf"
    rgba = render_report(_content(), pdf_path=pdf)
    # At 50 dpi the A4 page is about a quarter of the 200 dpi image in each direction.
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-singlefile", str(pdf),
                    str(tmp_path / "page")], check=True, capture_output=True, timeout=120)
    with Image.open(tmp_path / "page.png") as im:
        page = np.asarray(im.convert("RGB")).astype(int)
    assert abs(page.shape[1] - rgba.shape[1] / 4) <= 1
    assert abs(page.shape[0] - rgba.shape[0] / 4) <= 1
    h, w = min(page.shape[0], rgba.shape[0] // 4), min(page.shape[1], rgba.shape[1] // 4)
    small = rgba[: 4 * h, : 4 * w, :3].reshape(h, 4, w, 4, 3).mean(axis=(1, 3))
    assert np.abs(small - page[:h, :w]).mean() < 6.0
    # The magenta view lands in the same place.
    assert _box(_colour(page.astype(np.uint8), MAGENTA, tol=30))[0] == pytest.approx(
        _box(_colour(rgba, MAGENTA))[0] / 4, abs=2)
