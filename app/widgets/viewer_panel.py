"""The viewer panel: axial view large on the left, coronal and sagittal stacked on the right,
a slice slider under each, a colour legend, window/level preset buttons and the readout line.

At 1440 x 900 next to side panels about 380 px wide the panel gets roughly 1060 x 860 px:
axial about 620 x 800, the two small views about 360 x 390 each.

The slice sliders are :class:`SliceSlider`, two plain rectangles, not Kivy's ``Slider``: the
latter's thumb is an ``Image`` whose canvas pushes a stencil, and on software OpenGL (llvmpipe)
every stencil push clears the stencil buffer of the whole window, which made each frame of the
viewer several times slower (see docs/benchmarks.md, "Slice viewer").
"""

from __future__ import annotations

from kivy.graphics import Color, Rectangle
from kivy.input.motionevent import MotionEvent
from kivy.metrics import dp
from kivy.properties import BooleanProperty, NumericProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.widget import Widget

from app.viewer_state import WINDOW_PRESETS, ViewerState
from app.widgets.color_legend import ColorLegend
from app.widgets.slice_view import SliceView

_SLIDER_HEIGHT = 28
_TOOLBAR_HEIGHT = 32
_LEGEND_WIDTH = 78
_PRESET_WIDTH = 74


_TRACK_RGBA = (0.35, 0.35, 0.38, 1.0)
_THUMB_RGBA = (0.2, 0.6, 0.9, 1.0)
_THUMB_DISABLED_RGBA = (0.3, 0.3, 0.3, 1.0)
_THUMB_WIDTH = 12.0
_TRACK_HEIGHT = 4.0


class SliceSlider(Widget):
    """A horizontal integer slider (slice number) drawn with two rectangles.

    Press or drag on it to set ``value`` from the pointer's position (``min`` at the left end,
    ``max`` at the right); the wheel over it steps by one.

    Properties
    ----------
    min, max, value : int
        Range and current value (clipped to the range).
    disabled : bool
        Ignores input when True (e.g. a single slice).
    """

    min = NumericProperty(0)
    max = NumericProperty(0)
    value = NumericProperty(0)
    disabled = BooleanProperty(False)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        with self.canvas:
            Color(*_TRACK_RGBA)
            self._track = Rectangle()
            self._thumb_colour = Color(*_THUMB_RGBA)
            self._thumb = Rectangle()
        self.bind(pos=self._redraw, size=self._redraw, min=self._redraw, max=self._redraw,
                  value=self._redraw, disabled=self._redraw)
        self._redraw()

    def _usable(self) -> tuple[float, float]:
        """Left and right x of the thumb centre's travel.

        From ``x`` and ``width``, not Kivy's ``right``: that cached alias can still hold the
        old value while a resize dispatches ``size`` (the thumb then stayed where it was).
        """
        return (self.x + _THUMB_WIDTH / 2, self.x + self.width - _THUMB_WIDTH / 2)

    def value_at(self, x: float) -> int:
        """The value for a pointer at widget x (rounded, clipped)."""
        left, right = self._usable()
        if self.max <= self.min or right <= left:
            return int(self.min)
        f = min(max((x - left) / (right - left), 0.0), 1.0)
        return round(self.min + f * (self.max - self.min))

    def _redraw(self, *_args: object) -> None:
        left, right = self._usable()
        span = self.max - self.min
        f = (self.value - self.min) / span if span > 0 else 0.0
        cx = left + min(max(f, 0.0), 1.0) * (right - left)
        self._track.pos = (self.x, self.y + (self.height - _TRACK_HEIGHT) / 2)
        self._track.size = (self.width, _TRACK_HEIGHT)
        self._thumb.pos = (cx - _THUMB_WIDTH / 2, self.y + 4)
        self._thumb.size = (_THUMB_WIDTH, max(self.height - 8, 4))
        self._thumb_colour.rgba = _THUMB_DISABLED_RGBA if self.disabled else _THUMB_RGBA

    def on_touch_down(self, touch: MotionEvent) -> bool:
        if self.disabled or not self.collide_point(*touch.pos):
            return super().on_touch_down(touch)
        button = getattr(touch, "button", "left")
        if button in ("scrolldown", "scrollup"):
            step = 1 if button == "scrolldown" else -1  # "scrolldown": wheel turned away
            self.value = min(max(int(self.value) + step, int(self.min)), int(self.max))
            return True
        touch.grab(self)
        self.value = self.value_at(touch.x)
        return True

    def on_touch_move(self, touch: MotionEvent) -> bool:
        if touch.grab_current is not self:
            return super().on_touch_move(touch)
        self.value = self.value_at(touch.x)
        return True

    def on_touch_up(self, touch: MotionEvent) -> bool:
        if touch.grab_current is not self:
            return super().on_touch_up(touch)
        touch.ungrab(self)
        return True


class ViewerPanel(BoxLayout):
    """Three linked slice views of ``state`` with their controls.

    Attributes
    ----------
    state : ViewerState
    axial, coronal, sagittal : SliceView
    sliders : dict str -> SliceSlider
        Slice slider of each orientation.
    preset_buttons : dict str -> Button
        Window/level preset buttons, by :data:`WINDOW_PRESETS` name.
    fit_button : Button
        Fits the whole slice in every view again (as the Home key over a view).
    legend : ColorLegend
    readout : Label
        Shows ``state.readout_text``.
    """

    def __init__(self, state: ViewerState, **kwargs: object) -> None:
        kwargs.setdefault("orientation", "vertical")
        super().__init__(**kwargs)
        self.state = state
        self.axial = SliceView(state, "axial")
        self.coronal = SliceView(state, "coronal")
        self.sagittal = SliceView(state, "sagittal")
        self.sliders: dict[str, SliceSlider] = {}

        views = BoxLayout(orientation="horizontal", spacing=dp(3))
        views.add_widget(self._with_slider(self.axial, size_hint_x=0.62))
        right = BoxLayout(orientation="vertical", spacing=dp(3), size_hint_x=0.38)
        right.add_widget(self._with_slider(self.coronal))
        right.add_widget(self._with_slider(self.sagittal))
        views.add_widget(right)
        self.legend = ColorLegend(size_hint_x=None, width=dp(_LEGEND_WIDTH))
        views.add_widget(self.legend)
        self.add_widget(views)

        toolbar = BoxLayout(orientation="horizontal", size_hint_y=None,
                            height=dp(_TOOLBAR_HEIGHT), spacing=dp(3))
        self.preset_buttons: dict[str, Button] = {}
        for name in WINDOW_PRESETS:
            button = Button(text=name, size_hint_x=None, width=dp(_PRESET_WIDTH),
                            font_size="13sp")
            button.bind(on_release=lambda _b, preset=name: self.state.apply_preset(preset))
            self.preset_buttons[name] = button
            toolbar.add_widget(button)
        self.fit_button = Button(text="Fit (Home)", size_hint_x=None, width=dp(_PRESET_WIDTH),
                                 font_size="13sp")
        self.fit_button.bind(on_release=lambda *_: self.state.fit_views())
        toolbar.add_widget(self.fit_button)
        self.wl_label = Label(size_hint_x=None, width=dp(96), font_size="12sp")
        toolbar.add_widget(self.wl_label)
        self.readout = Label(text="", halign="left", valign="middle", font_size="13sp",
                             shorten=True, shorten_from="right")
        self.readout.bind(size=lambda label, size: setattr(label, "text_size", size))
        toolbar.add_widget(self.readout)
        self.add_widget(toolbar)

        state.bind(readout_text=self._on_readout, window_hu=self._on_window_level,
                   level_hu=self._on_window_level, on_data=self._on_data)
        self._on_window_level()
        self._on_data(state, "dose")

    def _with_slider(self, view: SliceView, size_hint_x: float = 1.0) -> BoxLayout:
        box = BoxLayout(orientation="vertical", size_hint_x=size_hint_x)
        box.add_widget(view)
        slider = SliceSlider(size_hint_y=None, height=dp(_SLIDER_HEIGHT))
        self.sliders[view.orientation] = slider

        def on_count(_view: SliceView, count: float) -> None:
            slider.max = max(int(count) - 1, 0)
            slider.disabled = count < 2

        def on_index(_view: SliceView, index: float) -> None:
            if round(slider.value) != int(index):
                slider.value = int(index)

        def on_value(_slider: SliceSlider, value: float) -> None:
            if view.state.ct is not None and round(value) != int(view.slice_index):
                view.state.set_slice(view.orientation, round(value))

        view.bind(slice_count=on_count, slice_index=on_index)
        slider.bind(value=on_value)
        on_count(view, view.slice_count)
        on_index(view, view.slice_index)
        box.add_widget(slider)
        return box

    @property
    def views(self) -> tuple[SliceView, SliceView, SliceView]:
        """The axial, coronal and sagittal views."""
        return (self.axial, self.coronal, self.sagittal)

    def _on_readout(self, _state: ViewerState, text: str) -> None:
        self.readout.text = text

    def _on_window_level(self, *_args: object) -> None:
        self.wl_label.text = f"W {self.state.window_hu:.0f}  L {self.state.level_hu:.0f}"

    def _on_data(self, _state: ViewerState, what: str) -> None:
        if what in ("dose", "ct"):
            self.legend.set_overlay(self.state.dose)
