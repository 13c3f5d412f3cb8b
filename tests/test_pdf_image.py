"""The one-page image PDF of app/pdf_image.py: file structure, pixels, and external readers."""

from __future__ import annotations

import re
import shutil
import subprocess
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from app.pdf_image import pdf_bytes, write_pdf_image
from planning.errors import InputError

CREATED = datetime(2024, 3, 1, 12, 30, 5, tzinfo=UTC)


def _test_image(height: int = 30, width: int = 40) -> np.ndarray:
    """Distinct rows and columns so that a flip or transpose shows."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[..., 0] = (x * 255) // (width - 1)
    img[..., 1] = (y * 255) // (height - 1)
    img[..., 2] = 40
    img[:5, :5] = (255, 255, 255)  # top-left marker
    return img


def _objects(data: bytes) -> dict[int, int]:
    """Object number -> byte offset, read from the file's own xref table via startxref."""
    tail = data[-64:]
    m = re.search(rb"startxref\n(\d+)\n%%EOF\n$", tail)
    assert m is not None, tail
    xref_at = int(m.group(1))
    assert data[xref_at:xref_at + 5] == b"xref\n"
    header = re.match(rb"xref\n0 (\d+)\n", data[xref_at:])
    assert header is not None
    count = int(header.group(1))
    start = xref_at + header.end()
    entries = data[start:start + 20 * count]
    offsets = {}
    for i in range(count):
        entry = entries[20 * i:20 * i + 20]
        assert len(entry) == 20 and entry.endswith(b" \n"), entry
        offset, generation, kind = entry[:10], entry[11:16], entry[17:18]
        if i == 0:
            assert (kind, generation) == (b"f", b"65535")
            continue
        assert kind == b"n"
        offsets[i] = int(offset)
    trailer = data[start + 20 * count:]
    assert trailer.startswith(b"trailer\n<< /Size " + str(count).encode())
    return offsets


def test_header_and_xref_offsets_point_at_their_objects() -> None:
    data = pdf_bytes(_test_image(), dpi=72.0, title="Plan report", created=CREATED)
    assert data.startswith(b"%PDF-1.4\n%")
    assert all(b >= 128 for b in data[10:14])
    offsets = _objects(data)
    assert sorted(offsets) == [1, 2, 3, 4, 5, 6]
    for number, offset in offsets.items():
        assert data[offset:].startswith(f"{number} 0 obj\n".encode()), number
    assert b"/Title (Plan report)" in data
    assert b"/CreationDate (D:20240301123005Z)" in data


def test_stream_lengths_and_pixels_round_trip() -> None:
    img = _test_image()
    data = pdf_bytes(img, dpi=72.0, created=CREATED)
    offsets = _objects(data)
    obj4 = data[offsets[4]:offsets[5]]
    length = int(re.search(rb"/Length (\d+)", obj4).group(1))
    assert b"/Width 40 /Height 30" in obj4
    begin = obj4.index(b"stream\n") + len(b"stream\n")
    assert obj4[begin + length:].startswith(b"\nendstream")
    pixels = np.frombuffer(zlib.decompress(obj4[begin:begin + length]), dtype=np.uint8)
    np.testing.assert_array_equal(pixels.reshape(img.shape), img)
    # Page size: 40 x 30 px at 72 dpi is 40 x 30 pt.
    assert b"/MediaBox [0 0 40.0000 30.0000]" in data
    obj5 = data[offsets[5]:offsets[6]]
    content_len = int(re.search(rb"/Length (\d+)", obj5).group(1))
    begin = obj5.index(b"stream\n") + len(b"stream\n")
    assert obj5[begin + content_len:].startswith(b"endstream")


def test_a4_page_at_200_dpi() -> None:
    data = pdf_bytes(np.full((2339, 1654, 3), 255, np.uint8), dpi=200.0, created=CREATED)
    box = re.search(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", data)
    # ISO 216 A4 is 210 x 297 mm = 595.28 x 841.89 pt; 1654 x 2339 px at 200 dpi is within 1 px.
    assert float(box.group(1)) == pytest.approx(595.28, abs=72 / 200)
    assert float(box.group(2)) == pytest.approx(841.89, abs=72 / 200)


def test_alpha_is_composited_over_white_and_unicode_title() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128  # half-transparent red over white: (255, 127, 127)
    data = pdf_bytes(rgba, dpi=72.0, title="Плана µ (α)", created=CREATED)
    offsets = _objects(data)
    obj4 = data[offsets[4]:offsets[5]]
    begin = obj4.index(b"stream\n") + len(b"stream\n")
    length = int(re.search(rb"/Length (\d+)", obj4).group(1))
    pixels = np.frombuffer(zlib.decompress(obj4[begin:begin + length]), np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(pixels, np.broadcast_to([255, 127, 127], (2, 2, 3)))
    assert b"/Title <FEFF" + "Плана µ (α)".encode("utf-16-be").hex().upper().encode() in data


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="uint8"):
        pdf_bytes(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        pdf_bytes(np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="dpi"):
        pdf_bytes(np.zeros((4, 4, 3), np.uint8), dpi=0.0)
    with pytest.raises(InputError, match="timezone"):
        pdf_bytes(np.zeros((4, 4, 3), np.uint8), created=datetime(2024, 1, 1))
    with pytest.raises(InputError, match="exceeds"):
        pdf_bytes(np.zeros((10, 30000, 3), np.uint8), dpi=72.0)
    with pytest.raises(FileNotFoundError):
        write_pdf_image(tmp_path / "missing" / "r.pdf", np.zeros((4, 4, 3), np.uint8))
    assert not (tmp_path / "missing").exists()


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "report.pdf"
    target.write_bytes(b"old")
    write_pdf_image(target, _test_image(), dpi=72.0, created=CREATED)
    assert target.read_bytes() == pdf_bytes(_test_image(), dpi=72.0, created=CREATED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf"]


def _read_ppm(path: Path) -> np.ndarray:
    data = path.read_bytes()
    m = re.match(rb"P6\s+(\d+)\s+(\d+)\s+255\s", data)
    assert m is not None, data[:20]
    width, height = int(m.group(1)), int(m.group(2))
    return np.frombuffer(data[m.end():], np.uint8).reshape(height, width, 3)


@pytest.mark.skipif(shutil.which("pdftoppm") is None,
                    reason="pdftoppm not installed (apt-get install poppler-utils)")
def test_pdftoppm_renders_the_same_pixels(tmp_path: Path) -> None:
    img = _test_image()
    pdf = tmp_path / "r.pdf"
    write_pdf_image(pdf, img, dpi=72.0, created=CREATED)
    # Rendered at 4x the image resolution each PDF pixel becomes a 4 x 4 block; poppler smooths
    # block edges, so compare block centres, which must be the image's pixels exactly.
    subprocess.run(["pdftoppm", "-r", "288", "-singlefile", str(pdf), str(tmp_path / "out")],
                   check=True, capture_output=True, timeout=60)
    rendered = _read_ppm(tmp_path / "out.ppm")
    assert rendered.shape == (4 * img.shape[0], 4 * img.shape[1], 3)
    np.testing.assert_array_equal(rendered[2::4, 2::4], img)


@pytest.mark.skipif(shutil.which("qpdf") is None,
                    reason="qpdf not installed (apt-get install qpdf)")
def test_qpdf_check_accepts_the_file(tmp_path: Path) -> None:
    pdf = tmp_path / "r.pdf"
    write_pdf_image(pdf, _test_image(), dpi=72.0, title="Plan (A) \\ report", created=CREATED)
    result = subprocess.run(["qpdf", "--check", str(pdf)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No syntax or stream encoding errors found" in result.stdout
