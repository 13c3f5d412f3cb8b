"""Pictures out of the GUI: the window or one widget as PNG, and the plan report (PNG + PDF).

Every file is written atomically (a temporary file in the target folder, then a rename).
"""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from kivy.core.image import Image as CoreImage
from kivy.core.window import Window
from kivy.uix.widget import Widget
from numpy.typing import NDArray

from app import review
from planning import __version__
from planning.errors import InputError

if TYPE_CHECKING:
    from app.planning_screen import PlanningScreen
    from app.report_image import ReportContent
    from app.session import PlanEntry


def _check_target(path: Path) -> None:
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: use a .png file name")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: the folder does not exist")


def _replace_from_temp(path: Path, write: object) -> Path:
    """Call ``write(tmp_path)`` on a temporary .png beside ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=".ionplan-", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)  # type: ignore[operator]
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_window_png(path: str | os.PathLike[str]) -> Path:
    """The whole window as it is on screen, to ``path`` (exact name)."""
    target = Path(path).resolve()
    _check_target(target)

    def write(tmp: str) -> None:
        # Window.screenshot numbers its files (name0001.png): take the name it reports.
        written = Window.screenshot(name=tmp)
        if not written:
            raise OSError(f"{target}: the window could not be read back")
        os.replace(written, tmp)

    return _replace_from_temp(target, write)


def save_widget_png(widget: Widget, path: str | os.PathLike[str]) -> Path:
    """One widget (and its children) as it is on screen, to ``path`` (atomic).

    Cut out of the window like the report's views: an offscreen re-render would clip the
    slice views with their window-pixel scissor boxes.
    """
    from app.report_image import write_png

    target = Path(path).resolve()
    _check_target(target)
    write_png(target, widget_pixels(widget))
    return target


def window_pixels() -> NDArray[np.uint8]:
    """(H, W, 4) RGBA pixels of the window as last drawn, row 0 at the top."""
    with tempfile.TemporaryDirectory(prefix="ionplan-shot-") as folder:
        written = Window.screenshot(name=os.path.join(folder, "window.png"))
        if not written:
            raise OSError("the window could not be read back")
        texture = CoreImage(written).texture
        w, h = texture.size
        # A loaded PNG's texture pixels start with the image's top row.
        return np.frombuffer(texture.pixels, dtype=np.uint8).reshape(h, w, 4).copy()


def widget_pixels(widget: Widget, window_rgba: NDArray[np.uint8] | None = None
                  ) -> NDArray[np.uint8]:
    """(H, W, 4) RGBA pixels of a widget as it is on screen, row 0 at the top: cut out of the
    window (what the user sees, with no second offscreen rendering of the widget)."""
    rgba = window_pixels() if window_rgba is None else window_rgba
    height = rgba.shape[0]
    x0, y0 = (round(v) for v in widget.to_window(*widget.pos))
    x1, y1 = x0 + round(widget.width), y0 + round(widget.height)
    x0, y0 = max(x0, 0), max(y0, 0)
    return rgba[height - y1:height - y0, x0:x1].copy()


def report_content(screen: PlanningScreen, entry: PlanEntry) -> ReportContent:
    """What the plan report shows: the plan's summary, the three views as drawn, the DVH and
    the metrics table of the dose on screen."""
    result = entry.result
    patient = result.patient
    study = patient.ct.study
    rx = result.plan.prescription
    lines = [
        f"Patient: {study.patient_name or 'Anonymous'}  ID {study.patient_id or '-'}",
        f"{entry.name}: {entry.summary}",
        f"Prescription: {rx.total_dose_gy_rbe:g} Gy(RBE) to {rx.target} in {rx.n_fractions} "
        f"fractions ({rx.dose_per_fraction_gy_rbe:.2f} Gy(RBE)/fx)",
        f"RBE model: {result.model.describe()}" + (
            "" if result.plan.rbe_model == result.model.describe()
            else f" (plan optimized with {result.plan.rbe_model})"),
        "Beams: " + ", ".join(f"{b.beam.label} ({b.spots.n_spots} spots)"
                              for b in result.plan.beams),
        f"Machine: {result.plan.machine_name}; dose grid "
        f"{' x '.join(f'{s:g}' for s in result.dose_grid.spacing_mm[::-1])} mm",
    ]
    viewer = screen.viewer
    shot = window_pixels()
    views = [(f"{v.orientation.capitalize()}", widget_pixels(v, shot)) for v in viewer.views]
    from app.report_image import ReportContent

    rows = screen.metrics.rows
    return ReportContent(
        title="IonPlan plan report",
        lines=lines,
        view_images=views,
        dvh_curves=list(screen.dvh.curves),
        dvh_x_label=screen.dvh.x_label,
        prescription=screen.dvh.prescription,
        metrics_columns=list(screen.metrics.columns),
        metrics_rows=list(rows) if rows else review.metrics_rows([]),
        footer=(f"IonPlan {__version__} - {datetime.datetime.now():%Y-%m-%d %H:%M} - "
                "research software, not a certified medical device"),
    )


def write_plan_report(screen: PlanningScreen, entry: PlanEntry, folder: Path) -> list[Path]:
    """Write ``<plan>_report.png`` and ``<plan>_report.pdf`` into ``folder``."""
    from app.report_image import render_report

    if not folder.is_dir():
        raise InputError(f"{folder}: the folder does not exist")
    stem = entry.name.replace(" ", "_").lower()
    png, pdf = folder / f"{stem}_report.png", folder / f"{stem}_report.pdf"
    render_report(report_content(screen, entry), png_path=png, pdf_path=pdf)
    return [png, pdf]
