"""Drive the real Kivy app in a real window from pytest.

The driver posts input the way Kivy's SDL2 window does when a person uses the mouse and the
keyboard: it dispatches ``on_mouse_down`` / ``on_mouse_move`` / ``on_mouse_up`` on the Window
(SDL coordinates, y down), updates ``Window.mouse_pos`` for hover, keeps ``Window.modifiers``
in step with held modifier keys, and sends ``on_key_down`` / ``on_textinput`` / ``on_key_up``.
Kivy's own mouse provider turns the mouse events into touches, so widgets see the same
MotionEvents (button, ``is_mouse_scrolling``, double taps) as in the shipped app.

Time: the Kivy Clock reads a fake clock that advances ``FRAME_DT_S`` per frame, so animations
and ``Clock.schedule_once(cb, t)`` are deterministic. :meth:`GuiDriver.wait_until` also lets
real time pass, for worker threads that post results back with ``Clock.schedule_once``.

Coordinates: "window px" are Kivy window coordinates (origin bottom-left, y up), with
``KIVY_METRICS_DENSITY=1`` so that 1 dp = 1 px. Screenshots are (H, W, 4) uint8 RGBA arrays
with row 0 at the top of the window.

Nothing here imports Kivy at module import time: :func:`import_kivy` must be the first
``import kivy`` of the process (tests/gui/conftest.py calls it on import). The environment
variables Kivy and SDL need are set only while they are read, then restored, so that
subprocesses started by other tests do not inherit them.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from kivy.app import App
    from kivy.core.window import WindowBase
    from kivy.uix.widget import Widget

#: Window size (width, height) in px used by the app tests: a typical laptop screen.
DEFAULT_WINDOW_SIZE_PX: tuple[int, int] = (1440, 900)
#: App time that one frame advances the fake clock by, in seconds.
FRAME_DT_S: float = 1.0 / 60.0
#: Where named screenshots are written.
SCREENSHOT_DIR: Path = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

#: Video backends: "offscreen" (SDL + Mesa EGL, no X server), "x11" (the X server in
#: $DISPLAY, e.g. under xvfb-run), "xvfb" (the harness starts its own Xvfb).
VIDEO_BACKENDS = ("offscreen", "x11", "xvfb")
BACKEND_ENV_VAR = "IONPLAN_GUI_BACKEND"

# Modifier name -> (Kivy keycode, SDL scancode) of the left-hand key that produces it.
_MODIFIER_KEYS: dict[str, tuple[int, int]] = {
    "ctrl": (305, 224),
    "shift": (304, 225),
    "alt": (308, 226),
    "meta": (309, 227),
}
# Friendly key names -> Kivy keycode names (kivy.core.window.Keyboard.keycodes).
_KEY_ALIASES: dict[str, str] = {
    "space": "spacebar",
    " ": "spacebar",
    "return": "enter",
    "esc": "escape",
    "pgup": "pageup",
    "pgdown": "pagedown",
    "del": "delete",
    "ctrl": "lctrl",
    "meta": "super",
}
# SDL scancodes (USB HID usage ids) of non-letter keys; letters and digits are computed.
_SCANCODES: dict[str, int] = {
    "enter": 40, "escape": 41, "backspace": 42, "tab": 43, "spacebar": 44, "-": 45, "=": 46,
    "[": 47, "]": 48, "\\": 49, ";": 51, "'": 52, "`": 53, ",": 54, ".": 55, "/": 56,
    "capslock": 57, "f1": 58, "f2": 59, "f3": 60, "f4": 61, "f5": 62, "f6": 63, "f7": 64,
    "f8": 65, "f9": 66, "f10": 67, "f11": 68, "f12": 69, "print": 70, "screenlock": 71,
    "pause": 72, "insert": 73, "home": 74, "pageup": 75, "delete": 76, "end": 77,
    "pagedown": 78, "right": 79, "left": 80, "down": 81, "up": 82, "numlock": 83,
    "lctrl": 224, "shift": 225, "alt": 226, "super": 227, "rctrl": 228, "rshift": 229,
    "alt-gr": 230,
}
# Driver wheel direction (what the user does) -> Kivy button name. Kivy names the vertical
# wheel inversely (kivy issue 2070): turning the wheel away from the user (SDL wheel.y > 0)
# arrives as "scrolldown"; horizontally, SDL wheel.x > 0 (right) arrives as "scrollleft".
_WHEEL_BUTTONS: dict[str, str] = {
    "up": "scrolldown",
    "down": "scrollup",
    "right": "scrollleft",
    "left": "scrollright",
}
_MOUSE_BUTTONS = ("left", "right", "middle", "mouse4", "mouse5")


# Window properties an app may set (theme, sizing) that the harness resets between apps.
_RESTORED_WINDOW_PROPERTIES = (
    "clearcolor", "minimum_width", "minimum_height", "softinput_mode", "show_cursor",
    "allow_screensaver",
)


def _config_snapshot() -> dict[str, dict[str, str]]:
    """Kivy's global Config as plain strings: {section: {option: value}}."""
    from kivy.config import Config

    return {
        section: {option: Config.get(section, option, raw=True)
                  for option in Config.options(section)}
        for section in Config.sections()
    }


class GuiHarnessError(AssertionError):
    """A GUI test step could not be carried out (bad target, timeout, app stopped)."""


class AppStoppedError(GuiHarnessError):
    """The app stopped the event loop or asked to close the window during a test."""


# --------------------------------------------------------------------------------------
# Environment and window
# --------------------------------------------------------------------------------------


def choose_backend(environ: dict[str, str] | None = None) -> str:
    """Pick the video backend for this session.

    Parameters
    ----------
    environ : dict, optional
        Environment to read (default ``os.environ``).

    Returns
    -------
    str
        ``$IONPLAN_GUI_BACKEND`` when set (one of :data:`VIDEO_BACKENDS`); otherwise "x11"
        when ``$DISPLAY`` names an X server (for example under ``xvfb-run``), else "offscreen".
    """
    env = os.environ if environ is None else environ
    chosen = env.get(BACKEND_ENV_VAR, "").strip().lower()
    if chosen:
        if chosen not in VIDEO_BACKENDS:
            raise ValueError(
                f"{BACKEND_ENV_VAR}={chosen!r} is not a GUI test backend; "
                f"use one of {', '.join(VIDEO_BACKENDS)}"
            )
        return chosen
    return "x11" if env.get("DISPLAY") else "offscreen"


def kivy_environment(kivy_home: Path) -> dict[str, str]:
    """The environment Kivy must see when it is first imported in a test process.

    A private ``KIVY_HOME`` (no user config or logs are touched), no command-line parsing
    (pytest's arguments are not Kivy's), the default config, Python logging so that
    ``caplog`` sees Kivy's messages, density 1 (1 dp = 1 px) and the SDL2 window provider
    only (Kivy's X11 fallback provider exits the process when it finds no X server).

    Parameters
    ----------
    kivy_home : Path
        Existing directory for Kivy's home.
    """
    return {
        "KIVY_HOME": str(kivy_home),
        "KIVY_NO_ARGS": "1",
        "KIVY_USE_DEFAULTCONFIG": "1",
        "KIVY_LOG_MODE": "PYTHON",
        "KIVY_NO_FILELOG": "1",
        "KIVY_NO_CONSOLELOG": "1",
        "KIVY_METRICS_DENSITY": "1",
        "KIVY_WINDOW": "sdl2",
    }


def video_environment(backend: str, display: str | None = None) -> dict[str, str]:
    """The environment SDL must see when the window is created.

    Parameters
    ----------
    backend : str
        One of :data:`VIDEO_BACKENDS`.
    display : str, optional
        X display (":99") of a private Xvfb; required for "xvfb".
    """
    if backend not in VIDEO_BACKENDS:
        raise ValueError(f"unknown GUI test backend {backend!r}; use one of {VIDEO_BACKENDS}")
    if backend == "offscreen":
        return {"SDL_VIDEODRIVER": "offscreen"}
    if backend == "xvfb":
        if not display:
            raise ValueError("the xvfb backend needs the display of the started Xvfb")
        return {"SDL_VIDEODRIVER": "x11", "DISPLAY": display}
    return {"SDL_VIDEODRIVER": "x11"}


@contextlib.contextmanager
def temporary_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore the old ones.

    Kivy and SDL read their variables once (on import, on window creation); leaving them
    set would leak into every subprocess that later tests start (an app started by a
    packaging test would silently render offscreen instead of failing without a display).
    """
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def kivy_imported() -> bool:
    """Whether some module already imported kivy (then its environment is fixed)."""
    return "kivy" in sys.modules


def import_kivy(kivy_home: Path) -> None:
    """Import Kivy (not its window) with the test environment, which is then restored.

    ``kivy``, ``kivy.logger``, ``kivy.config`` and ``kivy.metrics`` read their environment
    variables on import; the window is created later by :func:`open_window`.
    """
    with temporary_environ(kivy_environment(kivy_home)):
        # Imported for the side effect: Kivy reads the environment now.
        import kivy.metrics  # noqa: F401


@dataclass(frozen=True)
class XvfbServer:
    """A private Xvfb started for the test session."""

    process: subprocess.Popen[bytes]
    display: str

    def stop(self) -> None:
        """Terminate the server (and wait for it)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_xvfb(size_px: tuple[int, int], timeout_s: float = 20.0) -> XvfbServer:
    """Start ``Xvfb`` on a free display number (``$DISPLAY`` is not changed).

    Parameters
    ----------
    size_px : tuple of int
        Screen (width, height) in px; depth is 24 bit.
    timeout_s : float
        How long to wait for the server to report its display.

    Raises
    ------
    FileNotFoundError
        When Xvfb is not installed (Debian package ``xvfb``).
    RuntimeError
        When the server does not come up in time.
    """
    read_fd, write_fd = os.pipe()
    width, height = size_px
    try:
        process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24",
             "-nolisten", "tcp", "-noreset"],
            pass_fds=(write_fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(write_fd)
    deadline = time.monotonic() + timeout_s
    number = b""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while time.monotonic() < deadline and not number.endswith(b"\n"):
            chunk = pipe.read(1)
            if not chunk:
                break
            number += chunk
    if not number.strip().isdigit():
        process.kill()
        _, err = process.communicate(timeout=10)
        raise RuntimeError(
            f"Xvfb did not report a display within {timeout_s:.0f} s: "
            f"{err.decode(errors='replace').strip()[-500:]}"
        )
    display = f":{int(number)}"
    return XvfbServer(process=process, display=display)


_PROBE_SCRIPT = textwrap.dedent(
    """
    import logging
    import re
    import sys
    reasons = []

    class Reasons(logging.Handler):
        def emit(self, record):
            for line in record.getMessage().splitlines():
                if re.match(r"^\\w+ - \\w+(Error|Exception): ", line):
                    reasons.append(line.strip())

    logging.getLogger("kivy").addHandler(Reasons(logging.ERROR))
    from kivy.config import Config
    Config.set("graphics", "width", "64")
    Config.set("graphics", "height", "48")
    from kivy.core.window import Window
    if Window is None:
        print("PROBE-REASON: Kivy found no window provider: " + "; ".join(reasons))
        sys.exit(2)
    from kivy.graphics import Color, Rectangle
    from kivy.graphics.opengl import GL_RGBA, GL_UNSIGNED_BYTE, glReadPixels
    with Window.canvas:
        Color(1, 0, 0, 1)
        Rectangle(pos=(0, 0), size=(64, 48))
    Window.dispatch("on_draw")
    pixel = tuple(glReadPixels(10, 10, 1, 1, GL_RGBA, GL_UNSIGNED_BYTE))
    if pixel[:3] != (255, 0, 0):
        print(f"PROBE-REASON: a red square read back as RGBA {pixel}")
        sys.exit(3)
    """
)


def probe_gl(backend: str, video_env: dict[str, str], timeout_s: float = 60.0) -> str | None:
    """Check in a child process that a Kivy window can render and read back pixels.

    A missing libEGL or GL driver can abort the process that opens the window, so the check
    runs in a subprocess and the test session only opens its window when the check passed.

    Parameters
    ----------
    backend : str
        The backend name (for the message).
    video_env : dict
        From :func:`video_environment`.

    Returns
    -------
    str or None
        None when rendering works, else a one-paragraph reason for skipping GUI tests.
    """
    with tempfile.TemporaryDirectory(prefix="ionplan-gl-probe-") as home:
        env = {**os.environ, **kivy_environment(Path(home)), **video_env}
        try:
            result = subprocess.run(
                [sys.executable, "-c", _PROBE_SCRIPT], capture_output=True, text=True,
                timeout=timeout_s, env=env, check=False,
            )
        except subprocess.TimeoutExpired:
            return f"opening a Kivy window ({backend}) took over {timeout_s:.0f} s"
    if result.returncode == 0:
        return None
    output = (result.stdout + result.stderr).strip().splitlines()
    reasons = [line.removeprefix("PROBE-REASON: ") for line in output
               if line.startswith("PROBE-REASON: ")]
    tail = reasons or output[-6:]
    hint = {
        "offscreen": "install the Debian packages libegl1 libgl1-mesa-dri libgl1",
        "x11": f"is an X server running on DISPLAY={os.environ.get('DISPLAY', '')!r}? "
        f"unset DISPLAY (or set {BACKEND_ENV_VAR}=offscreen) to render without one",
        "xvfb": "install the Debian packages xvfb xauth libgl1-mesa-dri libgl1",
    }[backend]
    return (
        f"no OpenGL window available for GUI tests (backend {backend}, exit status "
        f"{result.returncode}; {hint}): " + " | ".join(tail)
    )


class FakeClockTime:
    """A monotonic clock that only moves when told; Kivy's ``Clock.time`` reads it.

    Parameters
    ----------
    start_s : float
        Initial reading in seconds (use the real clock's reading so that ``dt`` stays
        positive when the fake clock is installed).
    """

    def __init__(self, start_s: float) -> None:
        self._now_s = float(start_s)

    def __call__(self) -> float:
        return self._now_s

    def advance(self, dt_s: float) -> None:
        """Move the clock forward by ``dt_s`` seconds (must be >= 0)."""
        if dt_s < 0:
            raise ValueError(f"the fake clock cannot go back in time (dt_s={dt_s})")
        self._now_s += dt_s


def open_window(size_px: tuple[int, int], video_env: dict[str, str]) -> WindowBase:
    """Create Kivy's Window (the process-wide singleton) for the test session.

    Configures Kivy first: no frame-rate cap, no real input devices (only the mouse
    provider, fed by the driver, without multitouch simulation), the window size.

    Parameters
    ----------
    size_px : tuple of int
        (width, height) in px.
    video_env : dict
        From :func:`video_environment`; set only while the window is created.
    """
    from kivy.config import Config

    width, height = size_px
    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "maxfps", "0")
    Config.set("graphics", "resizable", "1")
    for option in list(Config.options("input")):
        Config.remove_option("input", option)
    Config.set("input", "mouse", "mouse,disable_multitouch")

    from kivy.clock import Clock

    with temporary_environ(video_env):
        from kivy.core.window import Window

    if Window is None:
        raise GuiHarnessError("Kivy could not create a window (see the Kivy log above)")
    Clock._max_fps = 0
    if tuple(Window.system_size) != (width, height):
        Window.size = (width, height)
    return Window


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------

class GuiDriver:
    """Drive a Kivy app in the session's window: frames, input, widget lookup, pixels.

    Parameters
    ----------
    window : WindowBase
        The Kivy Window (from :func:`open_window`).
    clock_time : FakeClockTime
        The fake clock installed as ``Clock.time``.
    size_px : tuple of int
        The window size (width, height) the tests expect; restored on :meth:`start`.
    screenshot_dir : Path
        Folder for named screenshots.
    """

    def __init__(
        self,
        window: WindowBase,
        clock_time: FakeClockTime,
        size_px: tuple[int, int] = DEFAULT_WINDOW_SIZE_PX,
        screenshot_dir: Path = SCREENSHOT_DIR,
    ) -> None:
        self.window = window
        self.clock_time = clock_time
        self.size_px = size_px
        self.screenshot_dir = screenshot_dir
        self.app: App | None = None
        self.close_requested = False
        self._held_modifiers: list[str] = []
        self._buttons_down: set[str] = set()
        self._baseline_observers = self._window_observer_ids()
        self._baseline_managers = list(getattr(window, "event_managers", []))
        self._baseline_window_state = {
            name: getattr(window, name) for name in _RESTORED_WINDOW_PROPERTIES
        }
        self._baseline_config = _config_snapshot()

    # ---- lifecycle -------------------------------------------------------------------

    def start(self, app: App) -> App:
        """Build and show ``app`` in the window, as ``App.run()`` would, without blocking.

        Runs ``App._run_prepare`` (build, add root, ``on_start``), starts the event loop in
        embedded mode and draws two frames. The app is stopped when the test ends.

        Returns
        -------
        App
            ``app`` itself, for chaining.
        """
        from kivy.base import EventLoop, runTouchApp

        if self.app is not None:
            raise GuiHarnessError(
                f"an app ({type(self.app).__name__}) is already running in this test; "
                "one app per test"
            )
        if tuple(self.window.size) != tuple(self.size_px):
            self.window.size = self.size_px
        EventLoop.quit = False
        self.app = app
        app._run_prepare()
        if not app.built and app.root is None:
            raise GuiHarnessError(f"{type(app).__name__}.build() returned no root widget")
        runTouchApp(embedded=True)
        self.frames(2)
        return app

    def stop(self) -> None:
        """Stop the running app and leave the window clean for the next test.

        Releases held buttons and keys, dispatches ``on_stop``, stops the event loop,
        removes every widget from the window, drops the app's pending Clock events and
        keyboard grabs. Safe to call twice and after a failed test.
        """
        from kivy.app import App as KivyApp
        from kivy.base import EventLoop, runTouchApp, stopTouchApp

        app, self.app = self.app, None
        errors: list[str] = []
        if app is not None and EventLoop.status not in ("started", "closed"):
            # start() failed before the loop ran (e.g. build() raised). Kivy's stopTouchApp
            # would then defer the stop to a later frame, where it would stop the next app.
            runTouchApp(embedded=True)
        if app is not None:
            with contextlib.suppress(Exception):
                for button in list(self._buttons_down):
                    self._mouse_up(self.window.mouse_pos, button)
                self._release_modifiers()
            try:
                app.stop()
            except Exception as exc:  # reported after the cleanup
                errors.append(f"{type(app).__name__}.stop() raised {exc!r}")
        stopTouchApp()
        EventLoop.quit = False
        KivyApp._running_app = None
        for child in list(self.window.children):
            self.window.remove_widget(child)
        self.window.release_all_keyboards()
        self.window._modifiers = []
        self._held_modifiers = []
        self._buttons_down = set()
        self._cancel_app_clock_events()
        self._remove_app_window_bindings()
        self._restore_window_and_config()
        gc.collect()
        self.close_requested = False
        if errors:
            raise GuiHarnessError("; ".join(errors))

    def _cancel_app_clock_events(self) -> None:
        """Cancel scheduled Clock events created outside Kivy itself (leftovers of the app)."""
        from kivy.clock import Clock

        for event in Clock.get_events():
            callback = event.get_callback()
            module = getattr(callback, "__module__", "") or ""
            if not module.startswith("kivy"):
                event.cancel()

    def _window_observer_ids(self) -> set[int]:
        """Identities of every callback bound to a Window event or property now."""
        ids: set[int] = set()
        for name in self._window_bindable_names():
            for entry in self.window.get_property_observers(name, args=True):
                ids.add(id(entry[0]))
        return ids

    def _window_bindable_names(self) -> list[str]:
        return [*self.window.events(), *self.window.properties()]

    def _remove_app_window_bindings(self) -> None:
        """Unbind what the app bound to the Window and left behind (not Kivy's own bindings).

        The Window outlives every app in the session; a handler left bound (a key handler,
        a ``mouse_pos`` observer, an event manager) would otherwise react in later tests.
        """
        for name in self._window_bindable_names():
            for callback, _largs, _kwargs, is_ref, uid in self.window.get_property_observers(
                name, args=True
            ):
                if id(callback) in self._baseline_observers:
                    continue
                target = callback() if is_ref else callback
                if target is None:
                    continue  # a weakly bound method whose object is gone: inert
                module = getattr(target, "__module__", "") or ""
                if module.startswith("kivy"):
                    continue
                logger.debug("unbinding leftover Window %s handler %r", name, target)
                if uid is not None:
                    self.window.unbind_uid(name, uid)
                else:
                    self.window.unbind(**{name: target})
        for manager in list(getattr(self.window, "event_managers", [])):
            if manager not in self._baseline_managers:
                logger.debug("unregistering leftover Window event manager %r", manager)
                self.window.unregister_event_manager(manager)

    def _restore_window_and_config(self) -> None:
        """Undo what the app changed on the shared Window and in Kivy's global Config."""
        from kivy.config import Config

        for name, value in self._baseline_window_state.items():
            if getattr(self.window, name) != value:
                setattr(self.window, name, value)
        now = _config_snapshot()
        for section, options in now.items():
            for option in options:
                if option not in self._baseline_config.get(section, {}):
                    Config.remove_option(section, option)
            if section not in self._baseline_config:
                Config.remove_section(section)
        for section, options in self._baseline_config.items():
            if not Config.has_section(section):
                Config.add_section(section)
            for option, value in options.items():
                if now.get(section, {}).get(option) != value:
                    Config.set(section, option, value)

    @property
    def app_stopped(self) -> bool:
        """Whether the app stopped the event loop or asked to close the window."""
        from kivy.base import EventLoop

        return bool(EventLoop.quit) or self.close_requested

    # ---- time ------------------------------------------------------------------------

    def frames(self, n: int = 1) -> None:
        """Run ``n`` frames: each advances app time by :data:`FRAME_DT_S`, processes Clock
        events and input, and redraws the window if needed.

        Raises
        ------
        AppStoppedError
            When the app stopped the event loop or asked to close the window.
        """
        from kivy.base import EventLoop

        for _ in range(n):
            if self.app_stopped:
                raise AppStoppedError(
                    "the app stopped the event loop or asked to close the window "
                    "(Escape with Config exit_on_escape=1? App.stop()?)"
                )
            self.clock_time.advance(FRAME_DT_S)
            EventLoop.idle()

    def advance(self, seconds: float) -> None:
        """Run frames until ``seconds`` of app time have passed (animations, timers)."""
        self.frames(max(1, round(seconds / FRAME_DT_S)))

    def wait_until(
        self,
        predicate: Callable[[], Any],
        timeout_s: float = 30.0,
        what: str = "",
    ) -> None:
        """Run frames while real time passes until ``predicate()`` is true.

        Between frames the main thread sleeps briefly so that worker threads can run and
        post their results with ``Clock.schedule_once``.

        Raises
        ------
        GuiHarnessError
            After ``timeout_s`` seconds of real time, naming ``what``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if predicate():
                return
            if time.monotonic() > deadline:
                label = what or getattr(predicate, "__name__", repr(predicate))
                raise GuiHarnessError(f"timed out after {timeout_s:g} s waiting for {label}")
            self.frames(1)
            time.sleep(0.002)

    # ---- targets ---------------------------------------------------------------------

    def window_pos(self, target: Widget | Sequence[float]) -> tuple[float, float]:
        """Window px (y up) of a target: a widget's centre, or an (x, y) pair as given.

        Raises
        ------
        GuiHarnessError
            When the widget is not in the window, or the point is outside the window.
        """
        from kivy.uix.widget import Widget

        if isinstance(target, Widget):
            if target.get_root_window() is None:
                raise GuiHarnessError(f"{target!r} is not in the window (not added or removed)")
            x, y = target.to_window(*target.center)
            where = f"the centre of {target!r}"
        else:
            x, y = float(target[0]), float(target[1])
            where = f"point ({x:g}, {y:g})"
        width, height = self.window.size
        if not (0 <= x < width and 0 <= y < height):
            raise GuiHarnessError(
                f"{where} is at ({x:g}, {y:g}), outside the {width}x{height} px window"
            )
        return x, y

    def _sdl_xy(self, pos: tuple[float, float]) -> tuple[float, float]:
        """Kivy window px (y up) -> SDL window px (y down), as Window.on_mouse_* expect."""
        return pos[0], self.window.system_size[1] - 1 - pos[1]

    # ---- mouse -----------------------------------------------------------------------

    def _hover_to(self, pos: tuple[float, float]) -> None:
        """Move the pointer as SDL's mouse motion does: mouse_pos, cursor enter, drag move."""
        sx, sy = self._sdl_xy(pos)
        self.window.mouse_pos = (float(pos[0]), float(pos[1]))
        if not getattr(self.window, "_cursor_entered", True):
            self.window._cursor_entered = True
            self.window.dispatch("on_cursor_enter")
        if self._buttons_down:
            self.window.dispatch("on_mouse_move", sx, sy, self.window.modifiers)

    def _mouse_down(self, pos: tuple[float, float], button: str) -> None:
        sx, sy = self._sdl_xy(pos)
        self._buttons_down.add(button)
        self.window.dispatch("on_mouse_down", sx, sy, button, self.window.modifiers)

    def _mouse_up(self, pos: tuple[float, float], button: str) -> None:
        sx, sy = self._sdl_xy(pos)
        self._buttons_down.discard(button)
        self.window.dispatch("on_mouse_up", sx, sy, button, self.window.modifiers)

    def move(self, target: Widget | Sequence[float]) -> None:
        """Hover the pointer over ``target`` (no button pressed) and run one frame."""
        self._hover_to(self.window_pos(target))
        self.frames(1)

    def click(
        self,
        target: Widget | Sequence[float],
        *,
        button: str = "left",
        modifiers: Sequence[str] = (),
    ) -> None:
        """Press and release a mouse button on ``target`` (widget centre or window px).

        Parameters
        ----------
        button : {"left", "right", "middle", "mouse4", "mouse5"}
        modifiers : sequence of {"ctrl", "shift", "alt", "meta"}
            Keys held during the click (pressed before, released after).
        """
        if button not in _MOUSE_BUTTONS:
            raise ValueError(f"unknown mouse button {button!r}; use one of {_MOUSE_BUTTONS}")
        pos = self.window_pos(target)
        with self.holding(modifiers):
            self._hover_to(pos)
            self._mouse_down(pos, button)
            self.frames(1)
            self._mouse_up(pos, button)
            self.frames(1)

    def double_click(self, target: Widget | Sequence[float]) -> None:
        """Two left clicks in quick succession (Kivy marks the second touch is_double_tap).

        Kivy's double-tap detection compares real time (250 ms by default), so the clicks
        are one frame apart: the first click's effects run before the second arrives.
        """
        pos = self.window_pos(target)
        self._hover_to(pos)
        for _ in range(2):
            self._mouse_down(pos, "left")
            self._mouse_up(pos, "left")
            self.frames(1)

    def drag(
        self,
        start: Widget | Sequence[float],
        end: Widget | Sequence[float],
        *,
        button: str = "left",
        steps: int = 8,
        modifiers: Sequence[str] = (),
    ) -> None:
        """Press at ``start``, move in ``steps`` equal steps (one frame each) to ``end``,
        release there. Right-button drags (window/level) use ``button="right"``."""
        if button not in _MOUSE_BUTTONS:
            raise ValueError(f"unknown mouse button {button!r}; use one of {_MOUSE_BUTTONS}")
        if steps < 1:
            raise ValueError(f"a drag needs at least one step, got steps={steps}")
        x0, y0 = self.window_pos(start)
        x1, y1 = self.window_pos(end)
        with self.holding(modifiers):
            self._hover_to((x0, y0))
            self._mouse_down((x0, y0), button)
            self.frames(1)
            for i in range(1, steps + 1):
                f = i / steps
                self._hover_to((x0 + f * (x1 - x0), y0 + f * (y1 - y0)))
                self.frames(1)
            self._mouse_up((x1, y1), button)
            self.frames(1)

    def scroll(
        self,
        target: Widget | Sequence[float],
        direction: str,
        *,
        modifiers: Sequence[str] = (),
        clicks: int = 1,
    ) -> None:
        """Turn the mouse wheel over ``target``.

        Parameters
        ----------
        direction : {"up", "down", "left", "right"}
            What the user does: "up" turns the wheel away from the user (content usually
            moves down, zoom usually increases). Kivy names these inversely: "up" arrives
            as ``touch.button == "scrolldown"``, "down" as "scrollup" (kivy issue 2070);
            "right" arrives as "scrollleft" and "left" as "scrollright".
        modifiers : sequence of str
            Keys held (Ctrl+wheel: ``("ctrl",)``); visible to the app as ``Window.modifiers``.
        clicks : int
            Wheel notches; one touch (down + up) per notch, one frame each.
        """
        if direction not in _WHEEL_BUTTONS:
            raise ValueError(
                f"unknown wheel direction {direction!r}; use one of {tuple(_WHEEL_BUTTONS)}"
            )
        button = _WHEEL_BUTTONS[direction]
        pos = self.window_pos(target)
        with self.holding(modifiers):
            self._hover_to(pos)
            for _ in range(clicks):
                sx, sy = self._sdl_xy(pos)
                self.window.dispatch("on_mouse_down", sx, sy, button, self.window.modifiers)
                self.window.dispatch("on_mouse_up", sx, sy, button, self.window.modifiers)
                self.frames(1)

    # ---- keyboard --------------------------------------------------------------------

    @staticmethod
    def _keycode(name: str) -> tuple[int, int]:
        """(Kivy keycode, SDL scancode) for a key name or a single character."""
        from kivy.core.window import Keyboard

        key = _KEY_ALIASES.get(name, name)
        key = key.lower() if len(key) == 1 else key
        if key not in Keyboard.keycodes:
            raise ValueError(
                f"unknown key {name!r}; use a Kivy key name such as 'left', 'pageup', "
                "'escape', 'enter', 'f1', a letter or a digit"
            )
        code = Keyboard.keycodes[key]
        if "a" <= key <= "z" and len(key) == 1:
            scancode = 4 + ord(key) - ord("a")
        elif key.isdigit() and len(key) == 1:
            scancode = 39 if key == "0" else 29 + int(key)
        else:
            scancode = _SCANCODES.get(key, 0)
        return code, scancode

    def _key_down(self, code: int, scancode: int) -> None:
        """Dispatch a key press the way the SDL2 window does (on_key_down, then on_keyboard)."""
        codepoint = None if code in self.window.command_keys else chr(code)
        if not self.window.dispatch(
            "on_key_down", code, scancode, codepoint, self.window.modifiers
        ):
            self.window.dispatch("on_keyboard", code, scancode, codepoint, self.window.modifiers)

    def _key_up(self, code: int, scancode: int) -> None:
        self.window.dispatch("on_key_up", code, scancode)

    @contextlib.contextmanager
    def holding(self, modifiers: Sequence[str]) -> Iterator[None]:
        """Hold modifier keys (pressed in order, released in reverse) around a block."""
        for name in modifiers:
            if name not in _MODIFIER_KEYS:
                raise ValueError(
                    f"unknown modifier {name!r}; use one of {tuple(_MODIFIER_KEYS)}"
                )
        pressed: list[str] = []
        try:
            for name in modifiers:
                if name in self._held_modifiers:
                    continue
                self._held_modifiers.append(name)
                self.window._modifiers = list(self._held_modifiers)
                self._key_down(*_MODIFIER_KEYS[name])
                pressed.append(name)
            yield
        finally:
            for name in reversed(pressed):
                self._held_modifiers.remove(name)
                self.window._modifiers = list(self._held_modifiers)
                self._key_up(*_MODIFIER_KEYS[name])

    def _release_modifiers(self) -> None:
        for name in reversed(self._held_modifiers):
            self._key_up(*_MODIFIER_KEYS[name])
        self._held_modifiers = []
        self.window._modifiers = []

    def key(self, key: str, *, modifiers: Sequence[str] = ()) -> None:
        """Press and release one key, optionally with modifiers held; then run a frame.

        Parameters
        ----------
        key : str
            A Kivy key name ("left", "right", "up", "down", "pageup", "pagedown", "home",
            "end", "escape", "enter", "tab", "backspace", "delete", "f1".."f15", "space")
            or one character ("a", "Z", "3", "+"). A printable character without ctrl,
            alt or meta also arrives as text (``on_textinput``), as SDL sends it.
        modifiers : sequence of {"ctrl", "shift", "alt", "meta"}
        """
        code, scancode = self._keycode(key)
        with self.holding(modifiers):
            self._key_down(code, scancode)
            if (
                len(key) == 1
                and key.isprintable()
                and not {"ctrl", "alt", "meta"} & set(self._held_modifiers)
            ):
                text = key.upper() if "shift" in self._held_modifiers else key
                self.window.dispatch("on_textinput", text)
            self._key_up(code, scancode)
        self.frames(1)

    def type_text(self, widget: Widget | None, text: str) -> None:
        """Type ``text`` as a person would: key presses plus text input events.

        Parameters
        ----------
        widget : Widget or None
            A TextInput (or other focusable widget) to click first so it has focus; None
            types into whatever has the keyboard focus now.
        text : str
            Characters to type; "\\n" presses Enter, "\\t" presses Tab, "\\b" Backspace.
        """
        if widget is not None:
            self.click(widget)
            if hasattr(widget, "focus") and not widget.focus:
                raise GuiHarnessError(f"clicking {widget!r} did not give it the keyboard focus")
        specials = {"\n": "enter", "\t": "tab", "\b": "backspace"}
        for char in text:
            if char in specials:
                self._key_down(*self._keycode(specials[char]))
                self._key_up(*self._keycode(specials[char]))
                continue
            try:
                code, scancode = self._keycode(char)
            except ValueError:
                code, scancode = None, 0  # no key for it (e.g. "µ"): text only, like an IME
            shift = char.isalpha() and char.isupper() and "shift" not in self._held_modifiers
            with self.holding(("shift",) if shift else ()):
                if code is not None:
                    self._key_down(code, scancode)
                self.window.dispatch("on_textinput", char)
                if code is not None:
                    self._key_up(code, scancode)
        self.frames(1)

    # ---- widgets ---------------------------------------------------------------------

    def walk(self) -> Iterator[Widget]:
        """Every widget in the window (roots first, then depth-first), popups included."""
        for root in reversed(self.window.children):
            yield from root.walk(restrict=True)

    def find(self, predicate_or_id: str | Callable[[Widget], bool]) -> Widget:
        """The first widget with that kv id (in some widget's ``ids``) or ``name``
        attribute, or the first widget satisfying a predicate.

        Raises
        ------
        GuiHarnessError
            When nothing matches; the message lists the ids and names in the window.
        """
        found = self.find_all(predicate_or_id)
        if found:
            return found[0]
        ids = sorted({k for w in self.walk() for k in getattr(w, "ids", {})})
        names = sorted(
            {n for w in self.walk() if isinstance(n := getattr(w, "name", None), str) and n}
        )
        classes = sorted({type(w).__name__ for w in self.walk()})
        raise GuiHarnessError(
            f"no widget matches {predicate_or_id!r}; ids in the window: {ids}; "
            f"names: {names}; widget classes: {classes}"
        )

    def find_all(self, predicate_or_id: str | Callable[[Widget], bool]) -> list[Widget]:
        """All distinct widgets :meth:`find` would accept, in tree order."""
        matches: list[Widget] = []
        seen: set[int] = set()

        def add(widget: Widget) -> None:
            if id(widget) not in seen:
                seen.add(id(widget))
                matches.append(widget)

        for widget in self.walk():
            if isinstance(predicate_or_id, str):
                ids = getattr(widget, "ids", {})
                if predicate_or_id in ids:
                    add(ids[predicate_or_id])
                if getattr(widget, "name", None) == predicate_or_id:
                    add(widget)
            elif predicate_or_id(widget):
                add(widget)
        return matches

    # ---- pixels ----------------------------------------------------------------------

    def screenshot(self, name: str | None = None) -> np.ndarray:
        """Render the current state and read the window's pixels.

        Parameters
        ----------
        name : str, optional
            When given, also write ``docs/screenshots/<name>.png`` (exactly that name;
            written atomically).

        Returns
        -------
        numpy.ndarray
            (H, W, 4) uint8 RGBA, row 0 at the top of the window.
        """
        width, height = (int(v) for v in self.window.system_size)
        rgba = self._render_and_read(0, 0, width, height)
        if name is not None:
            self.save_png(rgba, self.screenshot_dir / f"{name}.png")
        return rgba

    def _render_and_read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Run a frame, redraw the window and read a block of its pixels before the flip.

        Reading before the buffer swap is what makes this exact: after a swap the back
        buffer's content is undefined. Returns (height, width, 4) uint8, row 0 = top.
        """
        from kivy.graphics.opengl import GL_RGBA, GL_UNSIGNED_BYTE, glReadPixels

        self.frames(1)
        self.window.canvas.ask_update()
        self.window.dispatch("on_draw")
        data = glReadPixels(x, y, width, height, GL_RGBA, GL_UNSIGNED_BYTE)
        self.window.dispatch("on_flip")
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 4)[::-1].copy()

    @staticmethod
    def save_png(rgba: np.ndarray, path: Path) -> Path:
        """Write an (H, W, 4) uint8 RGBA array (row 0 = top) as PNG, atomically."""
        from PIL import Image

        from planning.atomic import atomic_binary_file

        if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 4) uint8 array, got {rgba.shape} {rgba.dtype}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_binary_file(path) as handle:
            Image.fromarray(rgba).save(handle, format="PNG")
        return path

    def pixel(self, x: float, y: float) -> tuple[int, int, int, int]:
        """RGBA of the window pixel at (x, y) window px (Kivy coordinates, y up)."""
        width, height = (int(v) for v in self.window.system_size)
        ix, iy = int(x), int(y)
        if not (0 <= ix < width and 0 <= iy < height):
            raise GuiHarnessError(f"pixel ({x:g}, {y:g}) is outside the {width}x{height} window")
        r, g, b, a = (int(v) for v in self._render_and_read(ix, iy, 1, 1)[0, 0])
        return r, g, b, a
