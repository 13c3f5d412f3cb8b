"""Fixtures for GUI tests: one Kivy window per test session, a fresh :class:`GuiDriver` per test.

Kivy reads its environment on first import, so this module imports Kivy (not its window) on
import, before any test module under tests/gui imports kivy or app; the variables are set only
for that import and restored after it, so other tests' subprocesses never inherit them. Test
modules must not create the window at import time (no module-level
``from kivy.core.window import Window``): the session fixture creates it. The backend is chosen by
``$IONPLAN_GUI_BACKEND`` ("offscreen", "x11", "xvfb"); by default "x11" when ``$DISPLAY`` is
set (e.g. under ``xvfb-run``) and SDL's "offscreen" driver (Mesa EGL, no X server) otherwise.
When no OpenGL window can be opened, every test using ``gui`` is skipped with the reason.

Tests get the ``gui`` fixture and mark themselves ``@pytest.mark.gui`` (this conftest adds the
mark to every test that uses the fixture, so ``-m "not gui"`` deselects them).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.gui.driver import (
    DEFAULT_WINDOW_SIZE_PX,
    FakeClockTime,
    GuiDriver,
    XvfbServer,
    choose_backend,
    import_kivy,
    kivy_environment,
    kivy_imported,
    open_window,
    probe_gl,
    start_xvfb,
    video_environment,
)

_BACKEND = choose_backend()
#: Values of the variables the harness sets temporarily, as they were before it ran.
ENVIRONMENT_BEFORE: dict[str, str | None] = {
    name: os.environ.get(name)
    for name in (*kivy_environment(Path()), "SDL_VIDEODRIVER", "DISPLAY")
}
_KIVY_IMPORTED_EARLY = kivy_imported()
_KIVY_HOME = Path(tempfile.mkdtemp(prefix="ionplan-kivy-home-"))
atexit.register(shutil.rmtree, _KIVY_HOME, True)
if not _KIVY_IMPORTED_EARLY:
    import_kivy(_KIVY_HOME)


@dataclass
class GuiSession:
    """The session's window, fake clock and the driver of the running test."""

    window: Any
    clock_time: FakeClockTime
    backend: str
    current: GuiDriver | None = None
    close_requests: list[str] = field(default_factory=list)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the ``gui`` fixture with ``gui``."""
    for item in items:
        if "gui" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.gui)


@pytest.fixture(scope="session")
def gui_window_size() -> tuple[int, int]:
    """Window (width, height) in px for the session; override in a conftest to change it."""
    return DEFAULT_WINDOW_SIZE_PX


@pytest.fixture(scope="session")
def gui_session(gui_window_size: tuple[int, int]) -> Iterator[GuiSession]:
    """Open the Kivy window once per session (or skip when no GL window is possible)."""
    if _KIVY_IMPORTED_EARLY:
        warnings.warn(
            "kivy was imported before tests/gui/conftest.py could configure it; "
            "GUI tests run with whatever environment that import saw",
            stacklevel=1,
        )
    xvfb: XvfbServer | None = None
    if _BACKEND == "xvfb":
        try:
            xvfb = start_xvfb(gui_window_size)
        except (FileNotFoundError, RuntimeError) as exc:
            pytest.skip(f"GUI tests: could not start Xvfb ({exc}); apt-get install xvfb xauth")
    video_env = video_environment(_BACKEND, xvfb.display if xvfb is not None else None)
    reason = probe_gl(_BACKEND, video_env)
    if reason is not None:
        if xvfb is not None:
            xvfb.stop()
        pytest.skip(reason)

    window = open_window(gui_window_size, video_env)
    from kivy.clock import Clock

    real_time = Clock.time
    clock_time = FakeClockTime(real_time())
    Clock.time = clock_time
    session = GuiSession(window=window, clock_time=clock_time, backend=_BACKEND)

    def guarded_close(*_args: Any) -> None:
        # The window is shared by the whole session: record the request instead of closing.
        session.close_requests.append("close")
        if session.current is not None:
            session.current.close_requested = True

    window.close = guarded_close
    try:
        yield session
    finally:
        del window.close
        del Clock.time
        if xvfb is not None:
            xvfb.stop()


@pytest.fixture
def gui(gui_session: GuiSession, gui_window_size: tuple[int, int]) -> Iterator[GuiDriver]:
    """A driver for one test; start the app with ``gui.start(MyApp())``; stopped at teardown."""
    driver = GuiDriver(gui_session.window, gui_session.clock_time, gui_window_size)
    gui_session.current = driver
    try:
        yield driver
    finally:
        gui_session.current = None
        driver.stop()
