"""What planning's loggers warn of while a block runs, collected instead of printed.

``ionplan batch`` runs its jobs in the worker processes of a Dask cluster. A warning that a job
logs there (a damaged DICOM file in a patient folder, a plan whose RBE model is unknown) was
printed by the worker without the job's name, and on a remote worker it reached no terminal at
all. :func:`collected_warnings` gathers the messages that the ``planning`` loggers log at WARNING
and above in the calling thread while its block runs; the batch returns them with the job's
outcome and prints them with the job's name.

One worker process may run several jobs at once, one per thread: records are routed by the
thread that made them. Records of other threads, and those below WARNING, go on to the root
logger's handlers as they did without the block.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

#: The logger whose records (its own and its children's) are collected.
LOGGER_NAME = "planning"


class _ThreadRouter(logging.Handler):
    """The ``planning`` logger's handler while blocks collect: a WARNING record of a thread
    that collects goes to that thread's list, every other record to the root's handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.sinks: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        thread = record.thread if record.levelno >= logging.WARNING else None
        sink = None if thread is None else self.sinks.get(thread)
        if sink is None:
            logging.getLogger().callHandlers(record)  # as propagation would have
        else:
            sink.append(record.getMessage())


_lock = threading.Lock()
_router: _ThreadRouter | None = None
#: The ``planning`` logger's ``propagate`` before the router was put in (restored after).
_propagate_before = True


def _install() -> _ThreadRouter:
    """The router, on the ``planning`` logger instead of propagation (under ``_lock``)."""
    global _router, _propagate_before
    if _router is None:
        logger = logging.getLogger(LOGGER_NAME)
        _router = _ThreadRouter()
        _propagate_before = logger.propagate
        logger.addHandler(_router)
        logger.propagate = False
    return _router


def _uninstall_when_idle() -> None:
    """Take the router out once no thread collects (under ``_lock``)."""
    global _router
    if _router is not None and not _router.sinks:
        logger = logging.getLogger(LOGGER_NAME)
        logger.removeHandler(_router)
        logger.propagate = _propagate_before
        _router = None


@contextlib.contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Collect, as messages in the yielded list, what the ``planning`` loggers warn of in
    this thread until the block ends (nested blocks each collect their own)."""
    thread = threading.get_ident()
    sink: list[str] = []
    with _lock:
        router = _install()
        outer = router.sinks.get(thread)
        router.sinks[thread] = sink
    try:
        yield sink
    finally:
        with _lock:
            if outer is None:
                del router.sinks[thread]
            else:
                router.sinks[thread] = outer
            _uninstall_when_idle()
