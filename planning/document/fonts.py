"""The plan document's fonts: Helvetica for what its WinAnsi encoding (cp1252) shows, Adobe's
standard Japanese gothic CID font for the rest (Japanese, Chinese and Korean names; the
viewer supplies it, nothing is embedded). Used by the page layout and by the figures."""

from __future__ import annotations

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont

FONT = "Helvetica"
#: Adobe's standard Japanese gothic CID font (with Chinese and Korean glyphs the viewer
#: substitutes): the text Helvetica's WinAnsi encoding cannot show, e.g. Japanese patient
#: names, is set in it. Viewers supply it (not embedded).
CJK_FONT = "HeiseiKakuGo-W5"


def _shown_by_helvetica(char: str) -> bool:
    try:
        char.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def text_runs(text: str) -> list[tuple[str, str]]:
    """``text`` cut into (run, font) pieces: :data:`FONT` where WinAnsi (cp1252) has the
    characters, :data:`CJK_FONT` elsewhere (registered with ReportLab on first need)."""
    runs: list[tuple[str, str]] = []
    for char in text:
        font = FONT if _shown_by_helvetica(char) else CJK_FONT
        if runs and runs[-1][1] == font:
            runs[-1] = (runs[-1][0] + char, font)
        else:
            runs.append((char, font))
    if any(font == CJK_FONT for _, font in runs):
        register_cjk_font()
    return runs


def register_cjk_font() -> None:
    """Make :data:`CJK_FONT` known to ReportLab (once)."""
    if CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
