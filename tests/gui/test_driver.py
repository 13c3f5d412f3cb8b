"""Self-tests of the GUI harness with tiny apps built here: every input kind must arrive as a
person's input would (button, slider, wheel, keys, hover, text), pixels must read back as
drawn, and the shared window must survive app after app, including apps that fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.gui.driver import (
    FRAME_DT_S,
    AppStoppedError,
    GuiDriver,
    GuiHarnessError,
    choose_backend,
)


def make_app(build_root: Callable[[], Any], **handlers: Callable[..., Any]) -> Any:
    """An App whose build() returns ``build_root()``; ``handlers`` become on_start/on_stop."""
    from kivy.app import App

    class TinyApp(App):
        def build(self) -> Any:
            return build_root()

        def on_start(self) -> None:
            if "on_start" in handlers:
                handlers["on_start"](self)

        def on_stop(self) -> None:
            if "on_stop" in handlers:
                handlers["on_stop"](self)

    return TinyApp()


def make_recorder() -> Any:
    """A widget that records every touch it receives: (kind, button, pos, modifiers, double)."""
    from kivy.core.window import Window
    from kivy.uix.widget import Widget

    class Recorder(Widget):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.events: list[tuple[str, str, tuple[float, float], list[str], bool]] = []

        def _record(self, kind: str, touch: Any) -> None:
            self.events.append(
                (kind, touch.button, (touch.x, touch.y), sorted(Window.modifiers),
                 bool(touch.is_double_tap))
            )

        def on_touch_down(self, touch: Any) -> bool:
            if not self.collide_point(*touch.pos):
                return False
            self._record("down", touch)
            touch.grab(self)
            return True

        def on_touch_move(self, touch: Any) -> bool:
            if touch.grab_current is self:
                self._record("move", touch)
                return True
            return False

        def on_touch_up(self, touch: Any) -> bool:
            if touch.grab_current is self:
                self._record("up", touch)
                touch.ungrab(self)
                return True
            return False

    return Recorder()


# ---- environment -------------------------------------------------------------------------


def test_backend_choice_follows_display_and_override() -> None:
    assert choose_backend({}) == "offscreen"
    assert choose_backend({"DISPLAY": ":99"}) == "x11"
    assert choose_backend({"DISPLAY": ":99", "IONPLAN_GUI_BACKEND": "offscreen"}) == "offscreen"
    assert choose_backend({"IONPLAN_GUI_BACKEND": "Xvfb"}) == "xvfb"
    with pytest.raises(ValueError, match="IONPLAN_GUI_BACKEND='wayland'"):
        choose_backend({"IONPLAN_GUI_BACKEND": "wayland"})


def test_harness_environment_does_not_leak_to_subprocesses(gui: GuiDriver) -> None:
    import os

    from tests.gui.conftest import ENVIRONMENT_BEFORE

    gui.start(make_app(make_recorder))
    now = {name: os.environ.get(name) for name in ENVIRONMENT_BEFORE}
    assert now == ENVIRONMENT_BEFORE
    assert "KIVY_NO_ARGS" in ENVIRONMENT_BEFORE


def test_window_has_the_session_size_and_unit_density(gui: GuiDriver) -> None:
    from kivy.metrics import dp

    gui.start(make_app(make_recorder))
    assert tuple(gui.window.size) == (1440, 900)
    assert tuple(gui.window.system_size) == (1440, 900)
    assert dp(100) == 100


# ---- mouse -------------------------------------------------------------------------------


def test_click_presses_a_button_once(gui: GuiDriver) -> None:
    from kivy.uix.button import Button

    presses: list[str] = []

    def build() -> Any:
        button = Button(text="Press me")
        button.bind(on_press=lambda *_: presses.append("press"))
        button.bind(on_release=lambda *_: presses.append("release"))
        return button

    gui.start(make_app(build))
    gui.click(gui.window.children[0])
    assert presses == ["press", "release"]


def test_click_at_a_point_arrives_at_that_point_with_its_button(gui: GuiDriver) -> None:
    recorder = make_recorder()
    gui.start(make_app(lambda: recorder))
    gui.click((100, 700))
    gui.click((1000, 50), button="right")
    assert [e[:3] for e in recorder.events] == [
        ("down", "left", (100.0, 700.0)),
        ("up", "left", (100.0, 700.0)),
        ("down", "right", (1000.0, 50.0)),
        ("up", "right", (1000.0, 50.0)),
    ]


def test_click_outside_the_window_is_refused(gui: GuiDriver) -> None:
    gui.start(make_app(make_recorder))
    with pytest.raises(GuiHarnessError, match="outside the 1440x900 px window"):
        gui.click((1440, 10))
    with pytest.raises(GuiHarnessError, match="outside"):
        gui.click((10, -1))


def test_modifiers_are_held_during_a_click_and_released_after(gui: GuiDriver) -> None:
    from kivy.core.window import Window

    recorder = make_recorder()
    keys: list[tuple[str, int]] = []

    def on_start(app: Any) -> None:
        Window.bind(on_key_down=app.key_down, on_key_up=app.key_up)

    def on_stop(app: Any) -> None:
        Window.unbind(on_key_down=app.key_down, on_key_up=app.key_up)

    app = make_app(lambda: recorder, on_start=on_start, on_stop=on_stop)
    app.key_down = lambda _w, code, *_a: keys.append(("down", code))
    app.key_up = lambda _w, code, *_a: keys.append(("up", code))
    gui.start(app)
    gui.click((500, 500), modifiers=("ctrl", "shift"))
    assert [e[3] for e in recorder.events] == [["ctrl", "shift"], ["ctrl", "shift"]]
    assert keys == [("down", 305), ("down", 304), ("up", 304), ("up", 305)]
    assert Window.modifiers == []


def test_double_click_marks_the_second_touch_as_double_tap(gui: GuiDriver) -> None:
    recorder = make_recorder()
    gui.start(make_app(lambda: recorder))
    gui.double_click((300, 300))
    downs = [e for e in recorder.events if e[0] == "down"]
    assert [d[4] for d in downs] == [False, True]


def test_drag_moves_a_slider_to_the_released_position(gui: GuiDriver) -> None:
    from kivy.uix.slider import Slider

    slider = Slider(min=0, max=100, value=0)
    gui.start(make_app(lambda: slider))
    # Slider maps x linearly onto [min, max] between x + padding and right - padding.
    track_start = slider.x + slider.padding
    track_length = slider.width - 2 * slider.padding
    y = slider.center_y
    gui.drag((track_start, y), (track_start + 0.25 * track_length, y))
    assert slider.value == pytest.approx(25.0, abs=1e-6)
    gui.drag((track_start + 0.25 * track_length, y), (track_start + 0.8 * track_length, y),
             steps=3)
    assert slider.value == pytest.approx(80.0, abs=1e-6)


def test_right_button_drag_reports_every_step_and_modifiers(gui: GuiDriver) -> None:
    recorder = make_recorder()
    gui.start(make_app(lambda: recorder))
    gui.drag((200, 200), (600, 400), button="right", steps=4, modifiers=("shift",))
    kinds = [e[0] for e in recorder.events]
    assert kinds == ["down", "move", "move", "move", "move", "up"]
    assert {e[1] for e in recorder.events} == {"right"}
    moves = [e[2] for e in recorder.events if e[0] == "move"]
    expected = [(300.0, 250.0), (400.0, 300.0), (500.0, 350.0), (600.0, 400.0)]
    assert np.allclose(moves, expected, atol=1e-6)
    assert np.allclose(recorder.events[-1][2], (600.0, 400.0), atol=1e-6)
    assert all(e[3] == ["shift"] for e in recorder.events)


def test_wheel_up_means_away_from_the_user_in_kivy_widgets(gui: GuiDriver) -> None:
    from kivy.uix.boxlayout import BoxLayout
    from kivy.uix.label import Label
    from kivy.uix.scrollview import ScrollView
    from kivy.uix.slider import Slider

    recorder = make_recorder()
    slider = Slider(min=0, max=100, value=50)
    scroll = ScrollView(do_scroll_x=False)
    content = BoxLayout(orientation="vertical", size_hint_y=None, height=3000)
    for i in range(10):
        content.add_widget(Label(text=f"row {i}"))
    scroll.add_widget(content)

    def build() -> Any:
        root = BoxLayout()
        for child in (recorder, slider, scroll):
            root.add_widget(child)
        return root

    gui.start(make_app(build))
    gui.scroll(recorder, "up")
    gui.scroll(recorder, "down", modifiers=("ctrl",))
    assert [(e[0], e[1], e[3]) for e in recorder.events] == [
        ("down", "scrolldown", []), ("up", "scrolldown", []),
        ("down", "scrollup", ["ctrl"]), ("up", "scrollup", ["ctrl"]),
    ]
    # Kivy's own widgets agree: wheel away from the user raises a slider by (max-min)/20 ...
    gui.scroll(slider, "up")
    assert slider.value == pytest.approx(55.0)
    gui.scroll(slider, "down", clicks=2)
    assert slider.value == pytest.approx(45.0)
    # ... and a ScrollView starts at the top (scroll_y 1); wheel towards the user scrolls down.
    assert scroll.scroll_y == pytest.approx(1.0)
    gui.scroll(scroll, "down", clicks=3)
    gui.advance(0.3)
    assert scroll.scroll_y < 0.99
    after_down = scroll.scroll_y
    gui.scroll(scroll, "up")
    gui.advance(0.3)
    assert scroll.scroll_y > after_down


def test_hover_moves_the_window_mouse_position_without_touches(gui: GuiDriver) -> None:
    from kivy.core.window import Window
    from kivy.eventmanager import EventManagerBase

    class HoverRecorder(EventManagerBase):
        """Receives Kivy's hover motion events (the mouse provider makes them from mouse_pos)."""

        type_ids = ("hover",)

        def __init__(self) -> None:
            super().__init__()
            self.hovers: list[tuple[float, float]] = []

        def dispatch(self, etype: str, me: Any) -> bool:
            if etype in ("begin", "update"):
                me.push()
                self.window.transform_motion_event_2d(me)
                self.hovers.append((me.x, me.y))
                me.pop()
            return False

    recorder = make_recorder()
    hover = HoverRecorder()
    seen: list[tuple[float, float]] = []

    def on_start(app: Any) -> None:
        Window.bind(mouse_pos=app.on_mouse_pos)
        Window.register_event_manager(hover)

    def on_stop(app: Any) -> None:
        Window.unbind(mouse_pos=app.on_mouse_pos)
        Window.unregister_event_manager(hover)

    app = make_app(lambda: recorder, on_start=on_start, on_stop=on_stop)
    app.on_mouse_pos = lambda _w, pos: seen.append(tuple(pos))
    gui.start(app)
    gui.move((123, 456))
    gui.move(recorder)
    assert seen == [(123.0, 456.0), (720.0, 450.0)]
    assert tuple(Window.mouse_pos) == (720.0, 450.0)
    assert np.allclose(hover.hovers, [(123.0, 456.0), (720.0, 450.0)], atol=1e-6)
    assert recorder.events == []


# ---- keyboard ----------------------------------------------------------------------------


def test_keys_arrive_with_keycodes_text_and_modifiers(gui: GuiDriver) -> None:
    from kivy.core.window import Window

    downs: list[tuple[int, str | None, list[str]]] = []
    texts: list[str] = []

    def on_start(app: Any) -> None:
        Window.bind(on_key_down=app.key_down, on_textinput=app.text)

    def on_stop(app: Any) -> None:
        Window.unbind(on_key_down=app.key_down, on_textinput=app.text)

    app = make_app(make_recorder, on_start=on_start, on_stop=on_stop)
    app.key_down = lambda _w, code, _sc, text, mods: downs.append((code, text, sorted(mods)))
    app.text = lambda _w, text: texts.append(text)
    gui.start(app)
    for name in ("left", "right", "up", "down", "pageup", "pagedown"):
        gui.key(name)
    gui.key("s", modifiers=("ctrl",))
    gui.key("a", modifiers=("shift",))
    # Kivy keycodes (kivy.core.window.Keyboard.keycodes) are SDL 1.2 numbers: fixed values.
    assert [d[0] for d in downs[:6]] == [276, 275, 273, 274, 280, 281]
    assert downs[6] == (305, "ı", ["ctrl"])  # SDL2 window sends chr(keycode) for modifiers
    assert downs[7] == (115, "s", ["ctrl"])
    assert downs[9] == (97, "a", ["shift"])
    assert texts == ["A"]  # no text for Ctrl+S; Shift+A types a capital


def test_type_text_fills_a_text_input_exactly_once(gui: GuiDriver) -> None:
    from kivy.uix.boxlayout import BoxLayout
    from kivy.uix.textinput import TextInput

    field = TextInput(multiline=False)
    other = TextInput(multiline=False)

    def build() -> Any:
        root = BoxLayout(orientation="vertical")
        root.add_widget(field)
        root.add_widget(other)
        return root

    gui.start(make_app(build))
    gui.type_text(field, "Dose 2.5 Gy(RBE), µ")
    assert field.text == "Dose 2.5 Gy(RBE), µ"
    gui.type_text(None, "\b\b\bx")
    assert field.text == "Dose 2.5 Gy(RBE)x"
    assert other.text == ""


def test_escape_with_kivy_defaults_stops_the_app_and_the_next_app_still_runs(
    gui: GuiDriver,
) -> None:
    from kivy.uix.button import Button

    gui.start(make_app(make_recorder))
    with pytest.raises(AppStoppedError):
        gui.key("escape")  # Kivy's default exit_on_escape=1: apps must disable it themselves
    assert gui.app_stopped
    gui.stop()
    presses: list[int] = []

    def build() -> Any:
        button = Button(text="still alive")
        button.bind(on_press=lambda *_: presses.append(1))
        return button

    gui.start(make_app(build))
    assert not gui.app_stopped
    gui.click(gui.window.children[0])
    assert presses == [1]


# ---- time and threads --------------------------------------------------------------------


def test_fake_clock_runs_scheduled_callbacks_on_app_time(gui: GuiDriver) -> None:
    from kivy.clock import Clock

    gui.start(make_app(make_recorder))
    fired: list[float] = []
    Clock.schedule_once(lambda dt: fired.append(dt), 1.0)
    start_real_s = time.perf_counter()
    gui.advance(0.9)
    assert fired == []
    gui.advance(0.2)
    assert len(fired) == 1
    assert fired[0] == pytest.approx(1.0, abs=2 * FRAME_DT_S)
    # 66 frames of app time must not take 1.1 s of real time (no frame-rate cap).
    assert time.perf_counter() - start_real_s < 1.0


def test_wait_until_lets_a_worker_thread_post_back(gui: GuiDriver) -> None:
    from kivy.clock import Clock

    gui.start(make_app(make_recorder))
    result: dict[str, Any] = {}

    def worker() -> None:
        time.sleep(0.3)
        value = sum(range(1000))
        Clock.schedule_once(lambda _dt: result.update(value=value, thread=threading.get_ident()))

    threading.Thread(target=worker, daemon=True).start()
    gui.wait_until(lambda: "value" in result, timeout_s=10, what="the worker result")
    assert result["value"] == 499500
    assert result["thread"] == threading.get_ident()  # delivered on the main (Kivy) thread
    with pytest.raises(GuiHarnessError, match="waiting for the impossible"):
        gui.wait_until(lambda: False, timeout_s=0.2, what="the impossible")


# ---- widgets -----------------------------------------------------------------------------


def test_find_by_kv_id_by_name_and_by_predicate(gui: GuiDriver) -> None:
    from kivy.lang import Builder
    from kivy.uix.button import Button

    kv = """
BoxLayout:
    Button:
        id: load_button
        text: "Load"
    ScreenManager:
        Screen:
            name: "review"
            Label:
                text: "DVH"
"""
    gui.start(make_app(lambda: Builder.load_string(kv)))
    button = gui.find("load_button")
    assert isinstance(button, Button)
    assert button.text == "Load"
    assert gui.find("review").name == "review"
    assert gui.find(lambda w: getattr(w, "text", None) == "DVH").text == "DVH"
    with pytest.raises(GuiHarnessError, match=r"ids in the window: \['load_button'\]"):
        gui.find("save_button")


# ---- pixels ------------------------------------------------------------------------------


def test_pixels_read_back_as_drawn(gui: GuiDriver, tmp_path: Any) -> None:
    from kivy.graphics import Color, Rectangle
    from kivy.uix.widget import Widget
    from PIL import Image

    def build() -> Any:
        root = Widget()
        with root.canvas:
            Color(1, 0, 0, 1)
            Rectangle(pos=(100, 200), size=(300, 100))  # x 100..399, y 200..299 (y up)
            Color(0, 0, 1, 1)
            Rectangle(pos=(1000, 800), size=(40, 40))
        return root

    gui.start(make_app(build))
    assert gui.pixel(250, 250) == (255, 0, 0, 255)
    assert gui.pixel(1020, 820) == (0, 0, 255, 255)
    assert gui.pixel(99, 250) == (0, 0, 0, 255)  # Kivy's default clear colour is black
    assert gui.pixel(250, 300) == (0, 0, 0, 255)
    assert gui.pixel(399, 299) == (255, 0, 0, 255)

    gui.screenshot_dir = tmp_path
    image = gui.screenshot("harness-red-rectangle")
    height, width = 900, 1440
    assert image.shape == (height, width, 4)
    assert image.dtype == np.uint8
    red = np.all(image == (255, 0, 0, 255), axis=-1)
    rows, cols = np.nonzero(red)
    # Row 0 is the top: window y 200..299 are rows 900-1-299 .. 900-1-200.
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (600, 699, 100, 399)
    assert red.sum() == 300 * 100
    assert tuple(image[height - 1 - 820, 1020]) == gui.pixel(1020, 820)
    saved = tmp_path / "harness-red-rectangle.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == [saved.name]
    np.testing.assert_array_equal(np.asarray(Image.open(saved).convert("RGBA")), image)


def test_screenshot_follows_a_state_change(gui: GuiDriver) -> None:
    from kivy.graphics import Color, Rectangle
    from kivy.uix.widget import Widget

    colour = Color(0, 1, 0, 1)

    def build() -> Any:
        root = Widget()
        root.canvas.add(colour)
        root.canvas.add(Rectangle(pos=(0, 0), size=(1440, 900)))
        return root

    gui.start(make_app(build))
    assert gui.pixel(700, 400) == (0, 255, 0, 255)
    colour.rgba = (1, 1, 1, 1)
    assert gui.pixel(700, 400) == (255, 255, 255, 255)


# ---- robustness across apps --------------------------------------------------------------


def test_an_exception_in_a_handler_fails_the_step_and_the_window_recovers(
    gui: GuiDriver,
) -> None:
    from kivy.clock import Clock
    from kivy.core.window import Window
    from kivy.uix.button import Button

    ticks: list[float] = []

    def explode(*_args: Any) -> None:
        raise ZeroDivisionError("handler failed")

    def broken_build() -> Any:
        button = Button(text="boom")
        button.bind(on_press=explode)
        return button

    def leaky_start(app: Any) -> None:
        # A careless app: a Clock interval and a Window handler it never removes.
        Clock.schedule_interval(ticks.append, 0.1)
        Window.bind(on_key_down=app.swallow)

    broken = make_app(broken_build, on_start=leaky_start)
    broken.swallow = lambda *_a: True
    gui.start(broken)
    with pytest.raises(ZeroDivisionError, match="handler failed"):
        gui.click(gui.window.children[0], modifiers=("ctrl",))
    gui.stop()

    assert gui.window.children == []
    assert Window.modifiers == []
    presses: list[int] = []

    def build() -> Any:
        button = Button(text="fine")
        button.bind(on_press=lambda *_: presses.append(1))
        return button

    gui.start(make_app(build))
    ticks_before = len(ticks)
    gui.advance(0.5)
    assert len(ticks) == ticks_before  # the leaked interval was cancelled at stop
    key_handlers = [cb() if is_ref else cb for cb, _la, _kw, is_ref, _uid
                    in Window.get_property_observers("on_key_down", args=True)]
    assert broken.swallow not in key_handlers  # the leaked Window handler was unbound
    gui.click(gui.window.children[0])
    assert presses == [1]


def test_an_app_whose_build_fails_does_not_stop_the_next_app(gui: GuiDriver) -> None:
    def failing_build() -> Any:
        raise RuntimeError("build failed on purpose")

    with pytest.raises(RuntimeError, match="on purpose"):
        gui.start(make_app(failing_build))
    gui.stop()
    recorder = make_recorder()
    gui.start(make_app(lambda: recorder))
    gui.frames(3)
    assert not gui.app_stopped
    gui.click((10, 10))
    assert [e[0] for e in recorder.events] == ["down", "up"]


def test_window_theme_and_config_changes_are_undone_for_the_next_app(gui: GuiDriver) -> None:
    from kivy.config import Config
    from kivy.core.window import Window

    def on_start(_app: Any) -> None:
        Window.clearcolor = (0.2, 0.4, 0.6, 1)
        Config.set("kivy", "exit_on_escape", "0")
        Config.set("graphics", "multisamples", "4")

    gui.start(make_app(make_recorder, on_start=on_start))
    assert gui.pixel(5, 5) == (51, 102, 153, 255)
    gui.key("escape")  # harmless now: the app disabled exit_on_escape
    assert not gui.app_stopped
    gui.stop()
    gui.start(make_app(make_recorder))
    assert gui.pixel(5, 5) == (0, 0, 0, 255)
    assert Config.get("kivy", "exit_on_escape") == "1"
    assert Config.get("graphics", "multisamples") == "2"


@pytest.mark.parametrize("run", range(3))
def test_apps_run_one_after_another(gui: GuiDriver, run: int) -> None:
    from kivy.uix.label import Label

    assert gui.window.children == []  # the previous test's app is gone
    gui.start(make_app(lambda: Label(text=f"app {run}")))
    assert gui.find(lambda w: isinstance(w, Label)).text == f"app {run}"
