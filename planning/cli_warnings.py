"""Warnings of the libraries a command runs, as one ``ionplan: warning:`` line each.

pydicom both logs and warns of what it finds nonconforming in a file (a value longer than its
VR allows, a UID with a bad character): a single ``ionplan recalc`` printed each twice, once as
``WARNING pydicom: ...`` and once as a Python ``UserWarning`` with pydicom's file, line and
source code; and neither named the DICOM file, so that in a CT folder of 300 slices the user
could not find it. While :func:`terminal_warnings` runs:

- the ``pydicom`` logger's records at WARNING and above, and the Python warnings that pydicom
  made (or logged the text of), are kept with the file the importers were reading
  (:func:`planning.dicom.file_context.file_being_read`) and printed when the block ends, each
  text once: ``ionplan: warning: pydicom: FILE: TEXT``, with ``(and N more files)`` when
  other files gave the same text (``ionplan: warning: pydicom: TEXT`` when no file was being
  read); lower records go to the root logger's handlers, as ``-v`` asks;
- any other Python warning prints at once as
  ``ionplan: warning: CATEGORY: TEXT (FILE:LINE)``
  (:func:`planning.log_capture.warning_text`), the place by file name only, each text once.

Not for ``ionplan batch``, which collects its jobs' warnings itself
(:mod:`planning.log_capture`) and prints them under the job's name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import TextIO

from planning.dicom.file_context import file_being_read
from planning.log_capture import pydicom_message, warning_text

#: The library whose log records and warnings are printed as its own.
PYDICOM = "pydicom"


class _OncePrinter(logging.Handler):
    """The ``pydicom`` logger's handler and Python's ``showwarning`` for one command."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self.shown: set[str] = set()
        #: pydicom's texts and the files each was about (:func:`pydicom_message`), until the end.
        self.by_pydicom: dict[str, list[str]] = {}

    def show(self, text: str) -> None:
        if text not in self.shown:
            self.shown.add(text)
            print(f"ionplan: warning: {text}", file=self.stream, flush=True)

    def keep(self, text: str) -> None:
        """Keep pydicom's ``text`` with the file being read."""
        files = self.by_pydicom.setdefault(text, [])
        path = file_being_read() or ""
        if path not in files:
            files.append(path)

    def show_kept(self) -> None:
        """Print pydicom's texts kept so far, one line each (then forget them)."""
        for text, files in self.by_pydicom.items():
            self.show(f"{PYDICOM}: {pydicom_message(text, files)}")
        self.by_pydicom.clear()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.keep(record.getMessage())
        else:
            logging.getLogger().callHandlers(record)  # as propagation would have

    def showwarning(self, message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
        text = warning_text(message, category)
        # pydicom logs first, then warns from the place its caller names (``stacklevel``).
        if text in self.by_pydicom or f"{os.sep}{PYDICOM}{os.sep}" in filename:
            self.keep(text)
        else:
            self.show(f"{text} ({os.path.basename(filename)}:{lineno})")


@contextlib.contextmanager
def terminal_warnings(stream: TextIO | None = None) -> Iterator[None]:
    """Print pydicom's log records and Python's warnings on ``stream`` (stderr) as described
    in the module docstring (pydicom's when the block ends); then put back what was there."""
    printer = _OncePrinter(sys.stderr if stream is None else stream)
    logger = logging.getLogger(PYDICOM)
    propagate, show_before = logger.propagate, warnings.showwarning
    logger.addHandler(printer)
    logger.propagate = False
    warnings.showwarning = printer.showwarning
    try:
        yield
    finally:
        printer.show_kept()
        if warnings.showwarning == printer.showwarning:
            warnings.showwarning = show_before
        logger.removeHandler(printer)
        logger.propagate = propagate
