"""Sizes and colours shared by the panels (one place to tune the look)."""

from __future__ import annotations

PAD = 6
BUTTON_HEIGHT = 34
ROW_HEIGHT = 30
SIDE_PANEL_WIDTH = 390
TOOLBAR_HEIGHT = 42
BOTTOM_PANEL_HEIGHT = 270

BACKGROUND_RGBA = (0.11, 0.12, 0.14, 1.0)
MUTED_TEXT_RGBA = (0.7, 0.72, 0.76, 1.0)
#: Text that asks for attention (a model switch's note, a long plan's estimate).
NOTE_TEXT_RGBA = (1.0, 0.75, 0.3, 1.0)
