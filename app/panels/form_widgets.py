"""Small widgets the form panels share."""

from __future__ import annotations

from kivy.uix.label import Label

from app.theme import MUTED_TEXT_RGBA, PAD, ROW_HEIGHT


def row_label(text: str, width: int | None = None, muted: bool = False) -> Label:
    """A one-line label of a form row, left-aligned, fixed width when ``width`` is given."""
    lab = Label(text=text, size_hint_y=None, height=ROW_HEIGHT, halign="left", valign="middle",
                color=MUTED_TEXT_RGBA if muted else (1, 1, 1, 1))
    if width is not None:
        lab.size_hint_x = None
        lab.width = width
    lab.bind(size=lambda w, s: setattr(w, "text_size", s))
    return lab


def note_label() -> Label:
    """A small muted note that wraps to the width it gets and takes no room while empty."""
    lab = Label(text="", size_hint_y=None, height=0, halign="left", valign="top",
                font_size="11sp", color=MUTED_TEXT_RGBA, padding=(PAD, 2))
    lab.bind(width=lambda w, width: setattr(w, "text_size", (width, None)),
             texture_size=lambda w, ts: setattr(w, "height", ts[1] if w.text else 0))
    return lab


def wrapped_label(text: str, muted: bool = False) -> Label:
    """A left-aligned label that wraps to the width it gets and grows to the lines it needs
    (at least one form row high)."""
    lab = Label(text=text, size_hint_y=None, height=ROW_HEIGHT, halign="left", valign="middle",
                color=MUTED_TEXT_RGBA if muted else (1, 1, 1, 1))
    lab.bind(width=lambda w, width: setattr(w, "text_size", (width, None)),
             texture_size=lambda w, size: setattr(w, "height", max(ROW_HEIGHT, size[1] + 4)))
    return lab
