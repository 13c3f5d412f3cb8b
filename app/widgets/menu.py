"""Drop-down menus that show their entries whole and on an opaque background.

Kivy's :class:`~kivy.uix.spinner.Spinner` opens a list exactly as wide as the button, so long
entries ("RBE-weighted dose (LEM I chordoma, averaged)") were cut off, and its options are drawn
with the theme's half-transparent button image, so the slice views showed through. A
:class:`WideSpinner` opens a list at least as wide as its widest entry (never wider than the
window), on an opaque panel. (Not named MenuSpinner: Kivy's style.kv has a rule of that
name, for its settings panel, which would add a Close button to every menu.)
"""

from __future__ import annotations

from typing import Any

from kivy.core.window import Window
from kivy.graphics import Color, Rectangle
from kivy.uix.dropdown import DropDown
from kivy.uix.spinner import Spinner, SpinnerOption

#: Option colours (opaque) and the room left and right of an option's text, px.
OPTION_RGBA = (0.22, 0.24, 0.28, 1.0)
PANEL_RGBA = (0.08, 0.09, 0.10, 1.0)
OPTION_TEXT_PAD = 12
#: Room left and right of a shortened spinner text, px.
_TEXT_PADDING_PX = 6.0


class WideOption(SpinnerOption):
    """One entry: opaque, its text on one line, never shortened."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("background_normal", "")
        kwargs.setdefault("background_color", OPTION_RGBA)
        super().__init__(**kwargs)


class WideDropDown(DropDown):
    """The open list: an opaque panel as wide as the widest entry (or the button)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("auto_width", False)
        super().__init__(**kwargs)
        with self.canvas.before:
            Color(*PANEL_RGBA)
            self._panel = Rectangle()
        self.bind(pos=self._place_panel, size=self._place_panel)

    def _place_panel(self, *_args: object) -> None:
        self._panel.pos, self._panel.size = self.pos, self.size

    def open(self, widget: Any) -> None:
        options = self.container.children if self.container is not None else []
        for option in options:
            option.texture_update()
        widest = max((o.texture_size[0] + 2 * OPTION_TEXT_PAD for o in options), default=0)
        self.width = min(max(widget.width, widest), Window.width)
        super().open(widget)


class WideSpinner(Spinner):
    """A :class:`~kivy.uix.spinner.Spinner` with a :class:`WideDropDown` of
    :class:`WideOption` entries."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("option_cls", WideOption)
        kwargs.setdefault("dropdown_cls", WideDropDown)
        super().__init__(**kwargs)
        if self.shorten:  # Kivy shortens only within a text_size: the button's own width
            self.halign = "center"
            self.bind(size=self._fit_text)
            self._fit_text()

    def _fit_text(self, *_args: Any) -> None:
        self.text_size = (max(self.width - 2 * _TEXT_PADDING_PX, 1.0), None)
