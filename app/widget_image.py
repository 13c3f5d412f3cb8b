"""Pictures of widgets: a widget drawn offscreen into an ``Fbo``, and PNG files of pixels.

Kivy needs an OpenGL context for the drawing: call :func:`render_widget_rgba` from the Kivy
main thread of the running app (or any process where ``kivy.core.window`` has been imported,
which opens a window).
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
from kivy.graphics import ClearBuffers, ClearColor, Fbo, Translate
from kivy.uix.widget import Widget
from numpy.typing import NDArray

from planning.atomic import atomic_binary_file
from planning.errors import InputError


# ---------------------------------------------------------------------- image files
def png_bytes(rgba: NDArray[np.uint8]) -> bytes:
    """Encode an (H, W, 4) uint8 RGBA array (row 0 at the top) as a PNG file.

    8-bit RGBA, no interlace, filter type 0 on every row (PNG specification, ISO/IEC 15948).
    """
    a = np.asarray(rgba)
    if a.ndim != 3 or a.shape[2] != 4 or a.dtype != np.uint8 or 0 in a.shape[:2]:
        raise InputError(f"PNG image must be an (H, W, 4) uint8 array, got {a.shape} {a.dtype}")
    height, width = a.shape[:2]
    rows = np.zeros((height, 1 + 4 * width), dtype=np.uint8)
    rows[:, 1:] = a.reshape(height, 4 * width)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def write_png(path: str | os.PathLike[str], rgba: NDArray[np.uint8]) -> None:
    """Write an (H, W, 4) uint8 RGBA array (row 0 at the top) to ``path`` as PNG, atomically."""
    data = png_bytes(rgba)
    with atomic_binary_file(path) as fh:
        fh.write(data)


def render_widget_rgba(widget: Widget) -> NDArray[np.uint8]:
    """Draw ``widget`` (and its children) offscreen and read its pixels.

    The widget's canvas is lent to an ``Fbo`` for the draw and put back in its parent's canvas
    at the same index afterwards.

    Returns
    -------
    (H, W, 4) uint8 array
        RGBA, H x W = the widget's size rounded to whole pixels, row 0 at the top.
    """
    width, height = round(widget.width), round(widget.height)
    if width <= 0 or height <= 0:
        raise InputError(f"cannot render a widget of size {widget.width} x {widget.height} px")
    parent_canvas = widget.parent.canvas if widget.parent is not None else None
    index = parent_canvas.indexof(widget.canvas) if parent_canvas is not None else -1
    if index > -1:
        parent_canvas.remove(widget.canvas)
    fbo = Fbo(size=(width, height), with_stencilbuffer=True)
    with fbo:
        ClearColor(0, 0, 0, 0)
        ClearBuffers()
        Translate(-widget.x, -widget.y, 0)
    fbo.add(widget.canvas)
    try:
        fbo.draw()
        pixels = np.frombuffer(fbo.pixels, dtype=np.uint8).reshape(height, width, 4)
    finally:
        fbo.remove(widget.canvas)
        if index > -1:
            parent_canvas.insert(index, widget.canvas)
    # Fbo pixels start at the bottom row (OpenGL); images start at the top.
    return pixels[::-1].copy()
