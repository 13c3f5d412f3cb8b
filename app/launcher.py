"""The ``ionplan`` console script: the command line of :mod:`planning.cli`, with the desktop
application plugged in for ``ionplan gui`` (and ``ionplan`` alone).

Kivy is imported only when the GUI starts (:func:`app.main.run_gui`), so the other commands
run without a display.
"""

from __future__ import annotations

from collections.abc import Sequence

from planning.cli import main as cli_main


def run_gui(folder: str | None = None, *, screenshot: str | None = None) -> int:
    from app.main import run_gui as run

    return run(folder, screenshot=screenshot)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ionplan`` console script; returns the exit status."""
    return cli_main(argv, gui=run_gui)


if __name__ == "__main__":
    raise SystemExit(main())
