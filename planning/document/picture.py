"""Saved pictures with their identification burned in, under names that never overwrite.

A picture of the screen leaves the application without its context; so each saved PNG gets
a banner above the image with the patient's name and ID, the plan, the RBE model and the
date (pixels, readable in any viewer), and the same text in the PNG's text chunks
(``Title``, ``Description``, ``Software``; ISO/IEC 15948 tEXt/iTXt), for search tools.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from planning import __version__
from planning.document.identity import Identification
from planning.document.naming import file_stem, safe_part, write_new_file
from planning.errors import InputError

#: Height of the banner's text, pixels.
BANNER_FONT_PX = 14
_BANNER_RGB = (235, 237, 240)
_INK_RGB = (20, 22, 26)


def _banner_lines(ident: Identification, width_px: int,
                  font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> list[str]:
    """The identification on one line when it fits the picture's width, else four."""
    line = ident.one_line()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return [line] if probe.textlength(line, font=font) <= width_px - 12 else ident.lines()


def labelled_rgba(rgba: NDArray[np.uint8], ident: Identification) -> NDArray[np.uint8]:
    """``rgba`` (H, W, 4 uint8, row 0 at the top) below a banner with the identification.

    Returns
    -------
    (H + banner, W, 4) uint8 array
        Opaque banner on top, the picture unchanged below it.
    """
    a = np.asarray(rgba)
    if a.ndim != 3 or a.shape[2] != 4 or a.dtype != np.uint8 or 0 in a.shape[:2]:
        raise InputError(f"a picture must be an (H, W, 4) uint8 array, got {a.shape} {a.dtype}")
    font = ImageFont.load_default(size=BANNER_FONT_PX)
    lines = _banner_lines(ident, a.shape[1], font)
    line_px = BANNER_FONT_PX + 4
    banner = Image.new("RGBA", (a.shape[1], 8 + line_px * len(lines)), (*_BANNER_RGB, 255))
    draw = ImageDraw.Draw(banner)
    for k, text in enumerate(lines):
        draw.text((6, 4 + k * line_px), text, fill=(*_INK_RGB, 255), font=font)
    return np.concatenate([np.asarray(banner, dtype=np.uint8), a], axis=0)


def png_with_identification(rgba: NDArray[np.uint8], ident: Identification) -> bytes:
    """A PNG file of :func:`labelled_rgba` with the identification in its text chunks."""
    info = PngInfo()
    info.add_itxt("Title", f"IonPlan {ident.plan_name}")
    info.add_itxt("Description", "\n".join(ident.lines()))
    info.add_itxt("Software", f"IonPlan {__version__}")
    out = io.BytesIO()
    Image.fromarray(labelled_rgba(rgba, ident), "RGBA").save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def write_picture(rgba: NDArray[np.uint8], ident: Identification, folder: str | Path,
                  kind: str) -> Path:
    """Write ``<patientID>_<plan>_<YYYYmmdd-HHMMSS>_<kind>.png`` (``-2``, ... when taken)
    into ``folder`` atomically, never replacing a file; return its path."""
    data = png_with_identification(rgba, ident)

    def write(fh: BinaryIO) -> None:
        fh.write(data)

    return write_new_file(folder, file_stem(ident), f"_{safe_part(kind)}.png", write)
