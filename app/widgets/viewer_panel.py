"""The viewer panel: axial view large on the left, coronal and sagittal stacked on the right,
a slice slider under each, a colour legend, window/level preset buttons and the readout line.

At 1440 x 900 next to side panels about 380 px wide the panel gets roughly 1060 x 860 px:
axial about 620 x 800, the two small views about 360 x 390 each.
"""

from __future__ import annotations

from kivy.metrics import dp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.slider import Slider

from app.viewer_state import WINDOW_PRESETS, ViewerState
from app.widgets.color_legend import ColorLegend
from app.widgets.slice_view import SliceView

_SLIDER_HEIGHT = 28
_TOOLBAR_HEIGHT = 32
_LEGEND_WIDTH = 78


class ViewerPanel(BoxLayout):
    """Three linked slice views of ``state`` with their controls.

    Attributes
    ----------
    state : ViewerState
    axial, coronal, sagittal : SliceView
    sliders : dict str -> Slider
        Slice slider of each orientation.
    preset_buttons : dict str -> Button
        Window/level preset buttons, by :data:`WINDOW_PRESETS` name.
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
        self.sliders: dict[str, Slider] = {}

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
            button = Button(text=name, size_hint_x=None, width=dp(84))
            button.bind(on_release=lambda _b, preset=name: self.state.apply_preset(preset))
            self.preset_buttons[name] = button
            toolbar.add_widget(button)
        self.wl_label = Label(size_hint_x=None, width=dp(130), font_size="12sp")
        toolbar.add_widget(self.wl_label)
        self.readout = Label(text="", halign="left", valign="middle", font_size="13sp")
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
        slider = Slider(min=0, max=1, step=1, value=0, size_hint_y=None,
                        height=dp(_SLIDER_HEIGHT))
        self.sliders[view.orientation] = slider

        def on_count(_view: SliceView, count: float) -> None:
            slider.max = max(int(count) - 1, 0)
            slider.disabled = count < 2

        def on_index(_view: SliceView, index: float) -> None:
            if round(slider.value) != int(index):
                slider.value = int(index)

        def on_value(_slider: Slider, value: float) -> None:
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
