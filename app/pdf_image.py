"""Write a one-page PDF that shows one RGB image filling the page.

Pure (no Kivy): the plan report is rendered to pixels first and then wrapped in a PDF 1.4 file
with one Flate-compressed ``/DeviceRGB`` image XObject (ISO 32000-1, 7.5 file structure,
8.9.5 image dictionaries). Page size follows from the pixel size and the resolution, so a
1654 x 2339 px image at 200 dpi gives an A4 page.
"""

from __future__ import annotations

import os
import zlib
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from planning.atomic import atomic_binary_file
from planning.errors import InputError

_POINTS_PER_INCH = 72.0
# PDF viewers limit page sides to 200 in (14400 pt, ISO 32000-1 annex C).
_MAX_PAGE_POINTS = 14400.0


def _rgb_pixels(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """(H, W, 3) uint8 RGB from (H, W, 3) RGB or (H, W, 4) RGBA (composited over white)."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"PDF image must be an (H, W, 3) or (H, W, 4) array, got {a.shape}")
    if a.dtype != np.uint8:
        raise InputError(f"PDF image must be uint8, got {a.dtype}")
    if a.shape[2] == 3:
        return np.ascontiguousarray(a)
    if bool((a[:, :, 3] == 255).all()):
        return np.ascontiguousarray(a[:, :, :3])
    alpha = a[:, :, 3:4].astype(np.uint16)
    rgb = a[:, :, :3].astype(np.uint16)
    over_white = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(over_white.astype(np.uint8))


def _pdf_text(text: str) -> bytes:
    """A PDF text string: a literal string for printable ASCII, UTF-16BE hex otherwise."""
    if all(32 <= ord(c) < 127 for c in text):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return b"(" + escaped.encode("ascii") + b")"
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def _pdf_date(when: datetime) -> bytes:
    utc = when.astimezone(UTC)
    return b"(D:" + utc.strftime("%Y%m%d%H%M%S").encode("ascii") + b"Z)"


def pdf_bytes(image: NDArray[np.uint8], *, dpi: float = 200.0, title: str = "",
              created: datetime | None = None) -> bytes:
    """Encode a one-page PDF 1.4 document showing ``image`` over the whole page.

    Parameters
    ----------
    image : (H, W, 3) or (H, W, 4) uint8 array
        Pixels, row 0 at the top of the page; alpha (if any) is composited over white.
    dpi : float
        Resolution, pixels per inch: the page is ``W / dpi`` by ``H / dpi`` inches.
    title : str
        Document title (Info dictionary); any Unicode text.
    created : datetime, optional
        Creation date (timezone-aware; now in UTC when omitted).

    Returns
    -------
    bytes
        The whole file: header, 6 objects, cross-reference table and trailer.
    """
    rgb = _rgb_pixels(image)
    if not (np.isfinite(dpi) and dpi > 0):
        raise InputError(f"PDF resolution must be > 0 dpi, got {dpi}")
    height_px, width_px = rgb.shape[:2]
    width_pt = width_px / dpi * _POINTS_PER_INCH
    height_pt = height_px / dpi * _POINTS_PER_INCH
    if max(width_pt, height_pt) > _MAX_PAGE_POINTS:
        raise InputError(f"PDF page of {width_pt:.0f} x {height_pt:.0f} pt exceeds the "
                         f"{_MAX_PAGE_POINTS:.0f} pt limit: raise dpi above {dpi:g}")
    when = created if created is not None else datetime.now(UTC)
    if when.tzinfo is None:
        raise InputError("PDF creation date must be timezone-aware")

    image_data = zlib.compress(rgb.tobytes(), 6)
    w, h = f"{width_pt:.4f}".encode(), f"{height_pt:.4f}".encode()
    content = b"q\n" + w + b" 0 0 " + h + b" 0 0 cm\n/Im0 Do\nQ\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 " + w + b" " + h + b"] "
        b"/Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /XObject /Subtype /Image /Width " + str(width_px).encode()
        + b" /Height " + str(height_px).encode()
        + b" /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode /Length "
        + str(len(image_data)).encode() + b" >>\nstream\n" + image_data + b"\nendstream",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content
        + b"endstream",
        b"<< /Title " + _pdf_text(title) + b" /Producer (IonPlan) /CreationDate "
        + _pdf_date(when) + b" >>",
    ]
    # A comment with bytes >= 128 after the header marks the file as binary for transfer tools.
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += str(number).encode() + b" 0 obj\n" + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 " + str(len(objects) + 1).encode() + b"\n"
    out += b"0000000000 65535 f \n"  # each entry is exactly 20 bytes, " \n" ending
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (b"trailer\n<< /Size " + str(len(objects) + 1).encode()
            + b" /Root 1 0 R /Info 6 0 R >>\nstartxref\n" + str(xref_at).encode()
            + b"\n%%EOF\n")
    return bytes(out)


def write_pdf_image(path: str | os.PathLike[str], image: NDArray[np.uint8], *,
                    dpi: float = 200.0, title: str = "",
                    created: datetime | None = None) -> None:
    """Write :func:`pdf_bytes` of ``image`` to ``path`` atomically (see there for arguments)."""
    data = pdf_bytes(image, dpi=dpi, title=title, created=created)
    with atomic_binary_file(path) as fh:
        fh.write(data)
