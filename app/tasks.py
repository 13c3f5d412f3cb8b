"""Long operations (patient import, planning, comparison) in a worker thread.

The worker calls ``fn(progress, cancel)``; progress is stored by the worker and read by the UI
on its own clock, and the outcome is handed back on the Kivy main thread
(:meth:`kivy.clock.Clock.schedule_once`), so widgets are only ever touched from the main thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kivy.clock import Clock

from planning.progress import CancelToken, OperationCancelled

log = logging.getLogger(__name__)

Work = Callable[[Callable[[float, str], None], CancelToken], Any]


class BackgroundTask:
    """One operation run off the main thread.

    Parameters
    ----------
    name : str
        What the user reads ("Importing CT", "Computing plan").
    work : callable
        ``work(progress, cancel) -> result``; ``progress(fraction, stage)`` with fraction in
        [0, 1]; it should call ``cancel.raise_if_cancelled(...)`` between steps.
    on_done : callable
        ``on_done(result)`` on the main thread.
    on_error : callable
        ``on_error(exception)`` on the main thread, for any exception but a cancellation.
    on_cancelled : callable, optional
        Called on the main thread when the work stopped because of :meth:`cancel`.
    cancellable : bool
        Whether the work checks the cancel token (the UI offers Cancel only then).
    """

    def __init__(self, name: str, work: Work, *, on_done: Callable[[Any], None],
                 on_error: Callable[[BaseException], None],
                 on_cancelled: Callable[[], None] | None = None,
                 cancellable: bool = True) -> None:
        self.name = name
        self.cancellable = cancellable
        self._work = work
        self._on_done = on_done
        self._on_error = on_error
        self._on_cancelled = on_cancelled
        self._cancel = CancelToken()
        self._thread: threading.Thread | None = None
        self._started_s = 0.0
        self._finished_s: float | None = None
        # Written by the worker, read by the UI clock: single attribute assignments are atomic.
        self.fraction = 0.0
        self.stage = "starting"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._finished_s is None

    @property
    def elapsed_s(self) -> float:
        end = self._finished_s if self._finished_s is not None else time.perf_counter()
        return end - self._started_s if self._thread is not None else 0.0

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.cancelled

    def start(self) -> BackgroundTask:
        if self._thread is not None:
            raise RuntimeError(f"task {self.name!r} was already started")
        self._started_s = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name=f"ionplan: {self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the work to stop at its next check; the outcome still arrives on the main thread."""
        self.stage = "cancelling"
        self._cancel.cancel()

    def _progress(self, fraction: float, stage: str) -> None:
        # Never backwards: a stage that starts over (a second pass) does not move the bar back.
        self.fraction = max(self.fraction, min(max(float(fraction), 0.0), 1.0))
        if not self._cancel.cancelled:  # "cancelling" stays until the work stops
            self.stage = stage

    def _run(self) -> None:
        try:
            result = self._work(self._progress, self._cancel)
        except OperationCancelled:
            self._finish(self._on_cancelled)
        except Exception as exc:  # every failure must reach the user as a dialog
            log.info("%s failed", self.name, exc_info=True)
            error = exc  # the name ``exc`` is unbound once the except clause ends
            self._finish(lambda: self._on_error(error))
        else:
            self._finish(lambda: self._on_done(result))

    def _finish(self, callback: Callable[[], None] | None) -> None:
        def deliver(_dt: float) -> None:
            self._finished_s = time.perf_counter()
            if callback is not None:
                callback()

        Clock.schedule_once(deliver, 0)
