"""Modal dialogs: errors, messages, choosing a folder, choosing a CT series, a line of text.

Each function opens a :class:`kivy.uix.popup.Popup` and returns it (tests find its buttons);
none of them blocks: answers arrive through callbacks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.filechooser import FileChooserListView
from kivy.uix.label import Label
from kivy.uix.popup import Popup
from kivy.uix.scrollview import ScrollView
from kivy.uix.textinput import TextInput

from app.theme import BUTTON_HEIGHT, PAD


def _wrapped_label(text: str) -> Label:
    label = Label(text=text, halign="left", valign="top", size_hint_y=None)
    label.bind(width=lambda w, width: setattr(w, "text_size", (width, None)),
               texture_size=lambda w, size: setattr(w, "height", size[1]))
    return label


def _cancel_and(body: BoxLayout, action: str) -> tuple[Button, Button]:
    """A row of Cancel and ``action`` buttons at the bottom of ``body``."""
    buttons = BoxLayout(size_hint_y=None, height=BUTTON_HEIGHT, spacing=PAD)
    cancel = Button(text="Cancel")
    act = Button(text=action)
    buttons.add_widget(cancel)
    buttons.add_widget(act)
    body.add_widget(buttons)
    return cancel, act


def message_dialog(title: str, text: str, *, name: str = "message_dialog",
                   size: tuple[int, int] = (640, 320)) -> Popup:
    """A message with an OK button; long text scrolls."""
    body = BoxLayout(orientation="vertical", spacing=PAD, padding=PAD)
    scroll = ScrollView()
    scroll.add_widget(_wrapped_label(text))
    body.add_widget(scroll)
    ok = Button(text="OK", size_hint=(None, None), size=(120, BUTTON_HEIGHT),
                pos_hint={"right": 1})
    body.add_widget(ok)
    popup = Popup(title=title, content=body, size_hint=(None, None), size=size,
                  auto_dismiss=True)
    popup.name = name  # type: ignore[attr-defined]
    ok.name = f"{name}_ok"  # type: ignore[attr-defined]
    ok.bind(on_release=lambda *_: popup.dismiss())
    popup.open()
    return popup


def error_dialog(title: str, error: BaseException | str) -> Popup:
    """Show an error; the application and the user's work stay as they were."""
    text = str(error) or type(error).__name__
    return message_dialog(title, text, name="error_dialog")


def folder_dialog(title: str, start_dir: str, on_choose: Callable[[str], None], *,
                  recent: Sequence[str] = (), action: str = "Open") -> Popup:
    """Choose a folder (DICOM import, export target); ``recent`` folders are one click away.

    The path field accepts a typed path; the chooser navigates by double click.
    """
    body = BoxLayout(orientation="vertical", spacing=PAD, padding=PAD)
    start = start_dir if os.path.isdir(start_dir) else str(Path.home())
    chooser = FileChooserListView(path=start, dirselect=True, size_hint_y=0.7)
    path_input = TextInput(text=start, multiline=False, size_hint_y=None, height=BUTTON_HEIGHT)
    chooser.bind(path=lambda _w, p: setattr(path_input, "text", p),
                 selection=lambda _w, sel: sel and setattr(path_input, "text", sel[0]))
    body.add_widget(path_input)
    body.add_widget(chooser)
    popup = Popup(title=title, content=body, size_hint=(0.8, 0.85), auto_dismiss=False)
    if recent:
        body.add_widget(Label(text="Recent folders", size_hint_y=None, height=24,
                              halign="left"))
        box = BoxLayout(orientation="vertical", size_hint_y=None,
                        height=len(recent[:5]) * (BUTTON_HEIGHT - 6))
        for folder in recent[:5]:
            b = Button(text=folder, size_hint_y=None, height=BUTTON_HEIGHT - 6,
                       shorten=True, shorten_from="left")
            b.bind(on_release=lambda btn: setattr(path_input, "text", btn.text))
            box.add_widget(b)
        body.add_widget(box)
    cancel, choose = _cancel_and(body, action)

    def accept(*_: object) -> None:
        text = path_input.text.strip()
        if not text:
            return  # nothing chosen yet: the dialog stays open
        popup.dismiss()
        on_choose(os.path.abspath(os.path.expanduser(text)))

    cancel.bind(on_release=lambda *_: popup.dismiss())
    choose.bind(on_release=accept)
    path_input.bind(on_text_validate=accept)
    popup.name = "folder_dialog"  # type: ignore[attr-defined]
    popup.path_input = path_input  # type: ignore[attr-defined]
    popup.choose_button = choose  # type: ignore[attr-defined]
    popup.open()
    return popup


def choice_dialog(title: str, prompt: str, choices: Sequence[tuple[str, str]],
                  on_choose: Callable[[str], None]) -> Popup:
    """Pick one of ``choices`` (``(key, text)`` pairs), e.g. one CT series of several."""
    body = BoxLayout(orientation="vertical", spacing=PAD, padding=PAD)
    body.add_widget(_wrapped_label(prompt))
    popup = Popup(title=title, content=body, size_hint=(0.7, None),
                  height=160 + BUTTON_HEIGHT * (len(choices) + 1), auto_dismiss=False)
    for key, text in choices:
        b = Button(text=text, size_hint_y=None, height=BUTTON_HEIGHT, shorten=True)
        b.choice_key = key  # type: ignore[attr-defined]
        b.bind(on_release=lambda btn: (popup.dismiss(), on_choose(btn.choice_key)))
        body.add_widget(b)
    cancel = Button(text="Cancel", size_hint_y=None, height=BUTTON_HEIGHT)
    cancel.bind(on_release=lambda *_: popup.dismiss())
    body.add_widget(cancel)
    popup.name = "choice_dialog"  # type: ignore[attr-defined]
    popup.open()
    return popup


def confirm_dialog(title: str, text: str, *, confirm_text: str,
                   on_confirm: Callable[[], None], name: str = "confirm_dialog",
                   size: tuple[int, int] = (520, 220)) -> Popup:
    """Ask before something that cannot be undone or takes long; Cancel (or Escape, or a
    click beside the dialog) does nothing."""
    body = BoxLayout(orientation="vertical", spacing=PAD, padding=PAD)
    scroll = ScrollView()
    scroll.add_widget(_wrapped_label(text))
    body.add_widget(scroll)
    cancel, confirm = _cancel_and(body, confirm_text)
    popup = Popup(title=title, content=body, size_hint=(None, None), size=size,
                  auto_dismiss=True)
    cancel.bind(on_release=lambda *_: popup.dismiss())
    confirm.bind(on_release=lambda *_: (popup.dismiss(), on_confirm()))
    popup.name = name  # type: ignore[attr-defined]
    popup.confirm_button = confirm  # type: ignore[attr-defined]
    popup.cancel_button = cancel  # type: ignore[attr-defined]
    popup.open()
    return popup


def text_dialog(title: str, prompt: str, text: str, *, action: str,
                on_submit: Callable[[str], None], name: str = "text_dialog",
                height: float = 220) -> Popup:
    """Ask for one line of text (pre-filled with ``text``); ``on_submit(text)`` on ``action``
    or Enter, nothing on Cancel. ``height`` (pixels) leaves a longer prompt its room."""
    body = BoxLayout(orientation="vertical", spacing=PAD, padding=PAD)
    body.add_widget(_wrapped_label(prompt))
    field = TextInput(text=text, multiline=False, size_hint_y=None, height=BUTTON_HEIGHT)
    body.add_widget(field)
    cancel, submit = _cancel_and(body, action)
    popup = Popup(title=title, content=body, size_hint=(None, None), size=(520, height),
                  auto_dismiss=True)

    def done(*_args: object) -> None:
        popup.dismiss()
        on_submit(field.text)

    cancel.bind(on_release=lambda *_: popup.dismiss())
    submit.bind(on_release=done)
    field.bind(on_text_validate=done)
    popup.name = name  # type: ignore[attr-defined]
    popup.text_input = field  # type: ignore[attr-defined]
    popup.submit_button = submit  # type: ignore[attr-defined]
    popup.open()
    return popup
