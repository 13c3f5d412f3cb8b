"""What a block of code warns of, collected instead of printed.

``ionplan batch`` runs its jobs in the worker processes of a Dask cluster. A warning made
there (a damaged DICOM file in a patient folder, a value that pydicom reads as nonconforming,
a NumPy RuntimeWarning) was printed by the worker without the job's name, and on a remote
worker it reached no terminal at all. :func:`collected_warnings` gathers, as messages, what the
calling thread warns of while its block runs:

- records of the ``planning`` and ``pydicom`` loggers (:data:`LOGGER_NAMES`) at WARNING and
  above;
- Python warnings (:func:`warnings.warn`, also those of NumPy's and SciPy's compiled code), as
  :func:`warning_text`.

Each message is kept once; one of pydicom's, which names no file, after the file the
importers were reading (:func:`planning.dicom.file_context.file_being_read`) and with the count
of the other files that gave it (:func:`pydicom_message`). The batch returns them with the job's
outcome and prints them with the job's name.

Threads. One worker process may run several jobs at once, one per thread, and a robust job's
scenario tasks run in further threads. ``warnings.catch_warnings(record=True)`` cannot tell
them apart: it records every thread's warnings, and it swaps process-wide state in and out
around its block, so that the blocks of two threads restore each other's. Here both kinds of
warning are routed by the thread that makes them, through hooks that stay in place while any
block collects: a handler on the loggers (instead of their propagation) and
:data:`warnings.showwarning` (Python calls it in the thread that warns). What other threads log
or warn of goes on as without the hooks: records to the root logger's handlers, warnings to the
``showwarning`` that was there before, each once per place (text, category, file, line) as
Python's default action shows them.

Repeats. Python shows a warning of the default action once per place and process (the module's
``__warningregistry__``): a job would not see a warning that an earlier job on the same worker
saw, or that a job in another thread saw first. While blocks collect, an ``always`` filter at
the end of :data:`warnings.filters` lets every warning that no other filter names reach the
hook; the filters that the user or the libraries set come before it and keep their effect (a
warning they ignore is not collected either, and one they show once per place is shown to the
first job only).

Limits: threads that a job's own code starts (the dose engine's thread pools) are not the job's
thread, and what they warn of goes on as without collection; a ``catch_warnings`` block of
another thread that begins before the hooks are put in and ends after puts its
``showwarning`` back over them (``catch_warnings`` is not thread-safe).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any, Protocol, TextIO, cast

from planning.dicom.file_context import file_being_read

#: The loggers whose records (their own and their children's) are collected: IonPlan's, and
#: pydicom's, which logs each of its warnings besides warning of it.
LOGGER_NAMES = ("planning", "pydicom")

#: The filter at the end of :data:`warnings.filters` while blocks collect.
_ALWAYS = ("always", None, Warning, None, 0)

class ShowWarning(Protocol):
    """What :data:`warnings.showwarning` is."""

    def __call__(self, message: Warning | str, category: type[Warning], filename: str,
                 lineno: int, file: TextIO | None = None, line: str | None = None) -> None: ...


def warning_text(message: Warning | str, category: type[Warning]) -> str:
    """A Python warning as a collected message: its text, after its category unless that is
    the plain :class:`UserWarning` (``"RuntimeWarning: divide by zero encountered in divide"``;
    pydicom's UserWarnings are the text that it also logs, which is then kept once)."""
    text = str(message)
    return text if category is UserWarning else f"{category.__name__}: {text}"


def pydicom_message(text: str, files: list[str]) -> str:
    """pydicom's warning ``text`` about ``files`` (distinct, in the order they gave it; ``""``
    for one made while no file was being read) as one message: ``"FILE: TEXT"`` after the
    first file, ``" (and N more files)"`` after it with more; ``text`` without a file."""
    named = [f for f in files if f]
    if not named:
        return text
    more = len(named) - 1
    also = f" (and {more} more file{'s' if more > 1 else ''})" if more else ""
    return f"{named[0]}: {text}{also}"


class _Sink:
    """The messages of one collecting block (each once) and, for pydicom's, the files each
    text was about; its message is rewritten as more files give it."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.files: dict[str, tuple[int, list[str]]] = {}

    def add(self, message: str) -> None:
        if message not in self.messages:
            self.messages.append(message)

    def add_pydicom(self, text: str) -> None:
        """pydicom's ``text`` about the file being read."""
        if text not in self.files:
            self.files[text] = (len(self.messages), [])
            self.messages.append(text)
        at, files = self.files[text]
        path = file_being_read() or ""
        if path not in files:
            files.append(path)
            self.messages[at] = pydicom_message(text, files)

    def is_pydicom(self, text: str) -> bool:
        """Whether pydicom logged ``text`` (it logs, then warns of the same text)."""
        return text in self.files


class _Router(logging.Handler):
    """The loggers' handler and Python's ``showwarning`` while blocks collect: a warning of a
    thread that collects goes to that thread's list; every other record to the root's
    handlers, every other warning to ``show_before`` (once per place)."""

    def __init__(self, show_before: ShowWarning) -> None:
        super().__init__()
        self.sinks: dict[int, _Sink] = {}
        self.show_before = show_before
        self.shown: set[tuple[str, type[Warning], str, int]] = set()
        #: The hook, one bound method: it is compared with ``warnings.showwarning`` when taken out.
        self.showwarning: ShowWarning = self._showwarning

    def emit(self, record: logging.LogRecord) -> None:
        thread = record.thread if record.levelno >= logging.WARNING else None
        sink = None if thread is None else self.sinks.get(thread)
        if sink is None:
            logging.getLogger().callHandlers(record)  # as propagation would have
        elif record.name.partition(".")[0] == "pydicom":
            sink.add_pydicom(record.getMessage())
        else:
            sink.add(record.getMessage())

    def _showwarning(self, message: Warning | str, category: type[Warning], filename: str,
                     lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
        sink = self.sinks.get(threading.get_ident())
        if sink is not None:
            text = warning_text(message, category)
            if sink.is_pydicom(text) or f"{os.sep}pydicom{os.sep}" in filename:
                sink.add_pydicom(text)
            else:
                sink.add(text)
            return
        place = (str(message), category, filename, lineno)
        if place not in self.shown:  # the ``always`` filter lets repeats through
            self.shown.add(place)
            self.show_before(message, category, filename, lineno, file, line)


_lock = threading.Lock()
_router: _Router | None = None
#: Each logger's ``propagate`` before the router was put in (restored after).
_propagate_before: dict[str, bool] = {}
#: Whether the ``always`` filter was put in by :func:`_install` (not there before).
_filter_added = False


def _install() -> _Router:
    """The router, on the loggers instead of propagation and as ``showwarning``, with the
    ``always`` filter (under ``_lock``)."""
    global _router, _filter_added
    if _router is None:
        router = _Router(warnings.showwarning)
        for name in LOGGER_NAMES:
            logger = logging.getLogger(name)
            _propagate_before[name] = logger.propagate
            logger.addHandler(router)
            logger.propagate = False
        warnings.showwarning = router.showwarning
        _filter_added = _ALWAYS not in warnings.filters
        # Changing the filters also makes Python forget the places it has shown warnings of.
        warnings.simplefilter("always", append=True)
        _router = router
    return _router


def _uninstall_when_idle() -> None:
    """Take the router and the filter out once no thread collects (under ``_lock``)."""
    global _router
    if _router is not None and not _router.sinks:
        for name in LOGGER_NAMES:
            logger = logging.getLogger(name)
            logger.removeHandler(_router)
            logger.propagate = _propagate_before.pop(name)
        if warnings.showwarning is _router.showwarning:
            warnings.showwarning = _router.show_before
        if _filter_added:
            with contextlib.suppress(ValueError):
                cast(list[Any], warnings.filters).remove(_ALWAYS)
        _router = None


@contextlib.contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Collect, as messages in the yielded list (each once; pydicom's after their file,
    :func:`pydicom_message`), what this thread logs at WARNING on :data:`LOGGER_NAMES` and
    warns of with Python warnings until the block ends (nested blocks each collect their
    own)."""
    thread = threading.get_ident()
    sink = _Sink()
    with _lock:
        router = _install()
        outer = router.sinks.get(thread)
        router.sinks[thread] = sink
    try:
        yield sink.messages
    finally:
        with _lock:
            if outer is None:
                del router.sinks[thread]
            else:
                router.sinks[thread] = outer
            _uninstall_when_idle()
