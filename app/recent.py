"""Recently opened DICOM folders, kept in the application's user data folder.

The list is a small JSON file (most recent first), rewritten atomically; an unreadable or
malformed file is treated as an empty list rather than stopping the application.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from planning.atomic import atomic_write_text

log = logging.getLogger(__name__)

MAX_RECENT = 10
FILE_NAME = "recent_folders.json"


def user_data_dir(app_name: str = "ionplan") -> Path:
    """The per-user settings folder (not created here; :meth:`RecentFolders.add` creates it).

    ``%APPDATA%\\ionplan`` on Windows, ``~/Library/Application Support/ionplan`` on macOS,
    ``$XDG_CONFIG_HOME/ionplan`` (default ``~/.config/ionplan``) elsewhere. Kivy's
    ``App.user_data_dir`` is not used: it fails when ``~/.config`` itself does not exist.
    """
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / app_name
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / app_name
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / app_name


class RecentFolders:
    """Most-recently-used folder list stored in ``data_dir / recent_folders.json``."""

    def __init__(self, data_dir: str | os.PathLike[str], max_entries: int = MAX_RECENT) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self.max_entries = max_entries

    def load(self) -> list[str]:
        """The stored folders, most recent first (missing or damaged file: empty list)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("%s: ignoring the recent-folders list (%s)", self.path, exc)
            return []
        if not isinstance(data, list):
            return []
        return [str(x) for x in data if isinstance(x, str)][: self.max_entries]

    def add(self, folder: str | os.PathLike[str]) -> list[str]:
        """Put ``folder`` (absolute) first, drop duplicates, keep at most ``max_entries``."""
        entry = str(Path(folder).resolve())
        folders = [entry] + [f for f in self.load() if f != entry]
        folders = folders[: self.max_entries]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(folders, indent=1) + "\n")
        except OSError as exc:
            log.warning("%s: cannot save the recent-folders list (%s)", self.path, exc)
        return folders
