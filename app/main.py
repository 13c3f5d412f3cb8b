"""Start the desktop application: Kivy's environment, the display check, the main loop.

Kivy is imported here only, inside :func:`run_gui`, so the command-line tools never need a
display (and never pay Kivy's import time).
"""

from __future__ import annotations

import os
import sys

from planning.errors import IonPlanError

#: Initial window size (width, height), pixels.
WINDOW_SIZE_PX = (1440, 900)


class NoDisplayError(IonPlanError):
    """The desktop application was started where there is no screen to show it on."""


def prepare_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Kivy settings that must precede the first ``import kivy``.

    Kivy must not parse IonPlan's command line (KIVY_NO_ARGS); tracebacks must stay on the
    terminal (KIVY_LOG_MODE=MIXED). On Linux SDL would silently fall back to an invisible
    off-screen window when no X or Wayland server is reachable: we ask for a real one unless
    the user chose a driver.

    Raises
    ------
    NoDisplayError
        On Linux with neither DISPLAY nor WAYLAND_DISPLAY set and no SDL_VIDEODRIVER chosen.
    """
    environ.setdefault("KIVY_NO_ARGS", "1")
    environ.setdefault("KIVY_LOG_MODE", "MIXED")
    # SDL's own clipboard: Kivy would otherwise probe xclip/xsel and log their absence.
    environ.setdefault("KIVY_CLIPBOARD", "sdl2")
    if sys.platform.startswith("linux") and "SDL_VIDEODRIVER" not in environ:
        if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
            raise NoDisplayError(
                "no display: DISPLAY and WAYLAND_DISPLAY are not set, so the desktop "
                "application cannot open a window. The command-line tools work without one "
                "(ionplan --help); to render off-screen anyway set SDL_VIDEODRIVER=offscreen")
        environ["SDL_VIDEODRIVER"] = "x11,wayland"


def run_gui(folder: str | None = None, *, screenshot: str | None = None) -> int:
    """Open the main window on ``folder`` (a DICOM folder) or on the patient open last (the
    demo patient the first time, or when that patient's folder is gone).

    Parameters
    ----------
    folder : str, optional
        DICOM folder to open at start; default: the patient open last (the bundled demo
        patient the first time).
    screenshot : str, optional
        Smoke-test mode: once the patient is shown, save the window to this PNG and quit.

    Returns
    -------
    int
        Exit status: 0, or 1 when the start-up patient could not be shown in screenshot mode.
    """
    prepare_environment()
    configure_kivy()
    from app.ionplan_app import IonPlanApp

    app = IonPlanApp(start_folder=folder, screenshot_path=screenshot)
    app.run()
    return app.exit_status


def configure_kivy() -> None:
    """Kivy settings read when the window is made (call before it exists).

    A laptop-sized window, the size the layout is designed for; and the mouse without Kivy's
    multitouch simulation, which otherwise turns a right-drag (window/level) or Ctrl+wheel
    into simulated touch points drawn as red circles that stay on the images, on dialogs and
    in saved pictures, and swallow later clicks there. IonPlan uses no multitouch gestures.
    """
    from kivy.config import Config

    Config.set("graphics", "width", str(WINDOW_SIZE_PX[0]))
    Config.set("graphics", "height", str(WINDOW_SIZE_PX[1]))
    Config.set("input", "mouse", "mouse,disable_multitouch")
