"""Progress of the running operation: stage, elapsed time, progress bar and Cancel."""

from __future__ import annotations

from kivy.clock import Clock
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.progressbar import ProgressBar

from app.tasks import BackgroundTask
from app.theme import PAD, TOOLBAR_HEIGHT

POLL_INTERVAL_S = 0.1


class TaskBar(BoxLayout):
    """Shows one :class:`BackgroundTask` at a time; idle text otherwise."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(orientation="horizontal", size_hint_y=None, height=TOOLBAR_HEIGHT - 8,
                         spacing=PAD, padding=(PAD, 2), **kwargs)
        self.status = Label(text="Ready", halign="left", valign="middle", shorten=True,
                            shorten_from="right")
        self.status.bind(size=lambda w, s: setattr(w, "text_size", s))
        self.bar = ProgressBar(max=1.0, value=0.0, size_hint_x=0.35)
        self.cancel_button = Button(text="Cancel", size_hint_x=None, width=90, disabled=True)
        self.cancel_button.bind(on_release=lambda *_: self.cancel())
        for w in (self.status, self.bar, self.cancel_button):
            self.add_widget(w)
        self.task: BackgroundTask | None = None
        self._poll = None

    @property
    def busy(self) -> bool:
        return self.task is not None and self.task.running

    def watch(self, task: BackgroundTask) -> None:
        """Follow ``task`` until it ends (the caller has started it)."""
        self.task = task
        self.cancel_button.disabled = not task.cancellable
        self.bar.value = 0.0
        if self._poll is None:
            self._poll = Clock.schedule_interval(lambda _dt: self.refresh(), POLL_INTERVAL_S)
        self.refresh()

    def cancel(self) -> None:
        if self.task is not None and self.task.running:
            self.task.cancel()
            self.cancel_button.disabled = True
            self.refresh()

    def refresh(self) -> None:
        task = self.task
        if task is None:
            return
        self.bar.value = task.fraction
        self.status.text = (f"{task.name}: {task.stage} - {100 * task.fraction:.0f} % - "
                            f"{task.elapsed_s:.1f} s")
        if not task.running and self._poll is not None:
            self._poll.cancel()
            self._poll = None
            self.cancel_button.disabled = True

    def finish(self, text: str) -> None:
        """Stop following the task and show ``text`` (the outcome) instead."""
        self.refresh()
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        self.task = None
        self.cancel_button.disabled = True
        self.bar.value = 0.0  # the outcome is in the text; the bar waits for the next task
        self.status.text = text
