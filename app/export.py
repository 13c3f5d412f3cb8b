"""Pictures out of the GUI: the window as PNG (the --screenshot smoke test), and a widget as a
PNG with the patient, plan, model and date burned in under a name that never replaces a file.

Every file is written atomically (a temporary file in the target folder, then a rename). The
plan report is planning's plan document (:func:`planning.api.write_plan_document`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from kivy.core.image import Image as CoreImage
from kivy.core.window import Window
from kivy.uix.widget import Widget
from numpy.typing import NDArray

from planning import api
from planning.errors import InputError

if TYPE_CHECKING:
    from planning.document.identity import Identification


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


def save_identified_png(widget: Widget, folder: str | os.PathLike[str],
                        ident: Identification, kind: str) -> Path:
    """One widget as it is on screen, below a banner with ``ident``, as a new PNG
    ``<patientID>_<plan>_<YYYYmmdd-HHMMSS>_<kind>.png`` in ``folder``; returns its path.

    Cut out of the window (what the user sees): an offscreen re-render would clip the slice
    views with their window-pixel scissor boxes.
    """
    return api.write_identified_picture(widget_pixels(widget), ident, folder, kind)


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
