"""Progress reporting and cancellation for long planning operations.

Long operations (influence matrices, optimization) take ``progress`` and ``cancel`` keyword
arguments. ``progress`` is called as ``progress(fraction, stage)`` with ``fraction`` in [0, 1]
and a short human-readable ``stage``; it is called from the worker thread, so a GUI must hand
the update over to its main thread. ``cancel`` is a :class:`CancelToken` that another thread
may set; the operation checks it between steps and raises :class:`OperationCancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from planning.errors import IonPlanError

ProgressCallback = Callable[[float, str], None]


class OperationCancelled(IonPlanError):
    """The user cancelled a long operation; nothing was returned."""


class CancelToken:
    """A thread-safe flag that asks a running operation to stop."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the operation to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def raise_if_cancelled(self, operation: str) -> None:
        """Raise :class:`OperationCancelled` naming ``operation`` if cancellation was asked."""
        if self._event.is_set():
            raise OperationCancelled(f"{operation} was cancelled")


def report(progress: ProgressCallback | None, fraction: float, stage: str) -> None:
    """Call ``progress`` (if any) with ``fraction`` clamped to [0, 1]."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), stage)


def stage_progress(progress: ProgressCallback | None, lo: float, hi: float
                   ) -> ProgressCallback | None:
    """A progress callback for one stage of a longer task.

    Parameters
    ----------
    progress : ProgressCallback or None
        The task's callback ``(fraction, stage)``.
    lo, hi : float
        The part of the task's progress, in [0, 1], that the stage covers.

    Returns
    -------
    ProgressCallback or None
        A callback mapping the stage's fraction 0..1 onto ``lo..hi`` of ``progress``; None
        when ``progress`` is None.
    """
    if progress is None:
        return None
    cb = progress

    def sub(fraction: float, stage: str) -> None:
        cb(lo + (hi - lo) * fraction, stage)

    return sub
