"""SIGTERM and SIGHUP in the command line: stop the run as Ctrl-C does.

The default handlers ended the process at once, which left an earlier run's files set aside
in a hidden folder (:mod:`planning.output_folder`). While :func:`termination_as_exception`
is active, the signals raise :class:`Terminated` in the main thread instead, so that the
output folder takes back what the run set aside and drops what it half wrote.

Raising from a signal handler is not enough on its own: the handler runs between two
bytecodes of whatever the main thread executes, and C code that sets its own error after it
(``int(text, 16)`` failing inside pydicom's keyword lookup, measured in CI) replaces the
:class:`Terminated` with that error, which the library then handles; the run went on to the
end and replaced the earlier files (exit 0). So every signal is also recorded in
:class:`TerminationSignals`, and :meth:`TerminationSignals.raise_if_received` stops the run at
the points that must not pass after a termination: before an output folder keeps what the
run wrote, and when the command returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: Delay before a termination signal that arrived during an import is delivered again, s.
IMPORT_RETRY_S = 0.05


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived (a scheduler's time limit, ``timeout``, a closed terminal):
    raised in the main thread so that, as for Ctrl-C, the output folder takes back what the
    run set aside and drops what it half wrote (:mod:`planning.output_folder`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class TerminationSignals:
    """The termination signals received while :func:`termination_as_exception` is active."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def raise_if_received(self) -> None:
        """Raise :class:`Terminated` for the first signal received, if any: one whose
        exception something swallowed on its way up stops the run here."""
        if self.received:
            raise Terminated(self.received[0])


def _inside_import(frame: FrameType | None) -> bool:
    """Whether ``frame`` or a frame that called it runs Python's import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def termination_as_exception() -> Iterator[TerminationSignals]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`Terminated` and are recorded in
    the :class:`TerminationSignals` it yields (see the module docstring).

    A signal that arrives while a module is being imported is delivered again
    :data:`IMPORT_RETRY_S` later: raised inside an extension module's initialisation it became
    ``ImportError: initialization failed``, which an optional import's ``except ImportError``
    swallowed, and the run went on to the end (exit 0, the earlier files replaced; CI)."""
    signals = TerminationSignals()

    def handler(signum: int, frame: FrameType | None) -> None:
        if _inside_import(frame):
            retry = threading.Timer(IMPORT_RETRY_S, os.kill, (os.getpid(), signum))
            retry.daemon = True
            retry.start()
            return
        signals.received.append(signum)
        raise Terminated(signum)

    wanted = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
              if s is not None]
    if threading.current_thread() is not threading.main_thread():
        yield signals  # signal handlers belong to the main thread (a test driving main())
        return
    before = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield signals
    finally:
        for s, h in before.items():
            signal.signal(s, h)
