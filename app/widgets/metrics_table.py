"""Table of per-structure dose metrics (D98, D95, D2, Dmean, Dmax, V95, ...) beside the DVH.

The caller formats the values (the metrics come from ``planning.evaluation.dose_metrics``); the
table shows a fixed header row and a scrolling body with one row per structure, each with a
swatch of the structure's colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from kivy.core.text import Label as CoreLabel
from kivy.graphics import Color, Rectangle
from kivy.metrics import dp
from kivy.properties import ColorProperty, NumericProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from app.plot_data import MetricsRow
from planning.errors import InputError

_NAME_WEIGHT = 1.6  # the name column is this many times as wide as a value column
#: Smallest font a header title or value shrinks to, px.
_MIN_FONT_SIZE = dp(9)
#: Room kept free inside a cell, left and right together, px.
_CELL_MARGIN = dp(4)
#: Width of the body's scroll bar, px.
_SCROLL_BAR_WIDTH = dp(6)
#: Room kept free right of the last column, in the header and every row, so that the scroll
#: bar never covers a value and the titles stay above their columns, px.
_SCROLL_BAR_GUTTER = _SCROLL_BAR_WIDTH + dp(4)


class _Swatch(Widget):
    """A filled square in one colour, centred in its cell."""

    def __init__(self, rgba: tuple[float, float, float, float], **kwargs: object) -> None:
        super().__init__(**kwargs)
        with self.canvas:
            Color(*rgba)
            self._rect = Rectangle()
        self.bind(pos=self._place, size=self._place)

    def _place(self, *_args: object) -> None:
        side = min(self.width, self.height) * 0.6
        self._rect.size = (side, side)
        # From x/y directly: the cached center aliases may not have updated yet in a pos callback.
        self._rect.pos = (self.x + (self.width - side) / 2, self.y + (self.height - side) / 2)


class _Cell(Label):
    """A label whose text is aligned inside its own box, its font made smaller when it would
    not fit the column: one line, whole (a value: never "51...."); wrapped onto more lines at
    spaces (``wrap``: header titles with units; each word fits, never "Dme an"); or, for a
    name (``shorten``), one line cut short with an ellipsis.

    Cells given the same ``shared`` list (the header's titles) are drawn in one font size,
    the smallest any of them needs: a title that fits at the table's size ("V95 %") is not
    drawn larger than one made smaller to fit ("D98 Gy(RBE)")."""

    def __init__(self, *, wrap: bool = False, shorten: bool = False,
                 shared: list[_Cell] | None = None, **kwargs: object) -> None:
        super().__init__(shorten=shorten, shorten_from="right", valign="middle", **kwargs)
        self._wrap = wrap
        self._full_font_size = float(self.font_size)
        self._shared = [] if shared is None else shared
        self._shared.append(self)
        self.bind(size=self._fit)

    def fitting_font_size(self) -> float:
        """The largest font size, up to the table's, at which this cell's text fits its box
        (the table's for a name, which is shortened instead)."""
        if self.shorten:
            return self._full_font_size
        words = self.text.split() if self._wrap else [self.text]
        return _font_size_fitting(words, max(self.width - _CELL_MARGIN, 0),
                                  self._full_font_size, bold=self.bold)

    def _fit(self, *_args: object) -> None:
        size = min(cell.fitting_font_size() for cell in self._shared)
        for cell in self._shared:
            cell.text_size = (max(cell.width - _CELL_MARGIN, 0), cell.height)
            cell.font_size = size


@lru_cache(maxsize=4096)
def _text_width(text: str, font_size: float, bold: bool) -> int:
    """Width of ``text`` on one line in the default font, px."""
    return int(CoreLabel(text=text, font_size=font_size, bold=bold).get_extents(text)[0])


def _font_size_fitting(words: Sequence[str], width: float, font_size: float, *,
                       bold: bool) -> float:
    """The largest font size, from ``font_size`` down to :data:`_MIN_FONT_SIZE` in steps of
    one, at which the widest of ``words`` fits ``width`` pixels."""
    size = font_size
    while size > _MIN_FONT_SIZE:
        widest = max((_text_width(w, size, bold) for w in words), default=0)
        if widest <= width:
            break
        size -= 1.0
    return max(size, _MIN_FONT_SIZE)


class _Row(BoxLayout):
    """A table row: optional swatch, name cell and value cells, with an optional background."""

    def __init__(self, rgba_background: tuple[float, ...] | None, **kwargs: object) -> None:
        super().__init__(orientation="horizontal", size_hint_y=None, **kwargs)
        if rgba_background is not None:
            with self.canvas.before:
                Color(*rgba_background)
                self._bg = Rectangle()
            self.bind(pos=self._place_bg, size=self._place_bg)

    def _place_bg(self, *_args: object) -> None:
        self._bg.pos = self.pos
        self._bg.size = self.size


class MetricsTable(BoxLayout):
    """Header row plus a scrolling body of per-structure metric rows.

    Call :meth:`set_rows` with the column titles and one :class:`MetricsRow` per structure.
    """

    font_size = NumericProperty(dp(13))
    row_height = NumericProperty(dp(24))
    background_color = ColorProperty((0.11, 0.12, 0.13, 1.0))
    stripe_color = ColorProperty((0.15, 0.16, 0.18, 1.0))
    foreground_color = ColorProperty((0.88, 0.89, 0.90, 1.0))
    header_color = ColorProperty((0.20, 0.22, 0.25, 1.0))

    def __init__(self, name_title: str = "Structure", **kwargs: object) -> None:
        super().__init__(orientation="vertical", **kwargs)
        #: Title of the name column.
        self.name_title = name_title
        self._columns: list[str] = []
        self._rows: list[MetricsRow] = []
        with self.canvas.before:
            self._bg_color = Color(*self.background_color)
            self._bg = Rectangle()
        self.bind(pos=self._place_bg, size=self._place_bg,
                  background_color=lambda *_a: setattr(self._bg_color, "rgba",
                                                       self.background_color))
        self._header = BoxLayout(orientation="horizontal", size_hint_y=None,
                                 padding=(0, 0, _SCROLL_BAR_GUTTER, 0))
        with self._header.canvas.before:
            self._header_bg_color = Color(*self.header_color)
            self._header_bg = Rectangle()
        self._header.bind(pos=self._place_header_bg, size=self._place_header_bg)
        self._scroll = ScrollView(do_scroll_x=False, bar_width=_SCROLL_BAR_WIDTH)
        self._body = GridLayout(cols=1, size_hint_y=None)
        self._body.bind(minimum_height=self._body.setter("height"))
        self._scroll.add_widget(self._body)
        self.add_widget(self._header)
        self.add_widget(self._scroll)
        self.bind(font_size=self._rebuild, row_height=self._rebuild,
                  foreground_color=self._rebuild, stripe_color=self._rebuild,
                  header_color=self._rebuild)
        self._rebuild()

    def _place_bg(self, *_args: object) -> None:
        self._bg.pos = self.pos
        self._bg.size = self.size

    def _place_header_bg(self, *_args: object) -> None:
        self._header_bg.pos = self._header.pos
        self._header_bg.size = self._header.size

    # ------------------------------------------------------------------ public interface
    def set_rows(self, columns: Sequence[str], rows: Sequence[MetricsRow]) -> None:
        """Show ``rows`` under the metric column titles ``columns`` (the name column is implied).

        Raises
        ------
        InputError
            If a row does not have one value per column.
        """
        for r in rows:
            if len(r.values) != len(columns):
                raise InputError(f"metrics row {r.name!r} has {len(r.values)} values for "
                                 f"{len(columns)} columns {list(columns)}")
            if len(r.colour_rgb) != 3 or not all(0 <= int(c) <= 255 for c in r.colour_rgb):
                raise InputError(f"metrics row {r.name!r}: colour_rgb must be 3 ints in 0..255, "
                                 f"got {r.colour_rgb}")
        self._columns = list(columns)
        self._rows = list(rows)
        self._rebuild()

    @property
    def columns(self) -> list[str]:
        """Metric column titles last set (without the name column)."""
        return list(self._columns)

    @property
    def rows(self) -> list[MetricsRow]:
        """Rows last set."""
        return list(self._rows)

    @property
    def content_height(self) -> float:
        """Height (pixels) that shows the header and every row without scrolling."""
        return float(self._header_height() + self.row_height * len(self._rows))

    def _header_height(self) -> float:
        # Titles that can wrap at a space ("D98 Gy(RBE)", "V95 %") get room for two lines: a
        # narrow column wraps even a short one, and one line's height cut its second line off.
        two_lines = any(" " in t for t in self._columns)
        return float(self.row_height * (1.8 if two_lines else 1.0))

    def cell_texts(self) -> list[list[str]]:
        """Texts as shown: the header row, then one list per structure row (name first)."""
        out = [[c.text for c in reversed(self._header.children) if isinstance(c, Label)]]
        for row in reversed(self._body.children):
            out.append([c.text for c in reversed(row.children) if isinstance(c, Label)])
        return out

    # ------------------------------------------------------------------ building
    def _cell(self, text: str, *, bold: bool = False, halign: str = "right",
              weight: float = 1.0, wrap: bool = False, shorten: bool = False,
              shared: list[_Cell] | None = None) -> _Cell:
        return _Cell(wrap=wrap, shorten=shorten, shared=shared, text=text, bold=bold,
                     halign=halign, font_size=self.font_size, color=self.foreground_color,
                     size_hint_x=weight)

    def _rebuild(self, *_args: object) -> None:
        h = self.row_height
        swatch_w = h
        self._header.clear_widgets()
        self._header.height = self._header_height()
        self._header_bg_color.rgba = tuple(self.header_color)
        self._header.add_widget(Widget(size_hint_x=None, width=swatch_w))
        titles: list[_Cell] = []  # the header's titles, all in one font size
        self._header.add_widget(self._cell(self.name_title, bold=True, halign="left",
                                           weight=_NAME_WEIGHT, shorten=True, shared=titles))
        for title in self._columns:
            self._header.add_widget(self._cell(title, bold=True, wrap=True, shared=titles))
        self._body.clear_widgets()
        for i, r in enumerate(self._rows):
            stripe = tuple(self.stripe_color) if i % 2 else None
            row = _Row(stripe, height=h, padding=(0, 0, _SCROLL_BAR_GUTTER, 0))
            rgba = (r.colour_rgb[0] / 255, r.colour_rgb[1] / 255, r.colour_rgb[2] / 255, 1.0)
            row.add_widget(_Swatch(rgba, size_hint_x=None, width=swatch_w))
            row.add_widget(self._cell(r.name, halign="left", weight=_NAME_WEIGHT,
                                      shorten=True))
            for v in r.values:
                row.add_widget(self._cell(v))
            self._body.add_widget(row)
