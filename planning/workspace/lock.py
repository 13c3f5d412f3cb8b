"""One writer per workspace: a lock file naming the IonPlan process that saves it.

``ROOT/locks/<patient folder>.lock`` (outside the workspace folder, so that moving a damaged
workspace aside leaves it in place) holds JSON ``{"pid", "host", "boot_id", "since_utc",
"token"}``. It is created atomically (a complete temporary file hard-linked to the lock's
name, which fails when the name exists), so a reader never sees half of one. A lock is stale
when its host is this host and its process is gone (or the machine was restarted since:
another ``boot_id``); a stale lock is taken over. A lock of another host cannot be checked
and is respected.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
#: A lock file younger than this that cannot be read may still be being written.
_DAMAGED_GRACE_S = 2.0


def _boot_id() -> str:
    """This boot of the machine (Linux), ``""`` where the system does not say."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _age_s(path: Path) -> float:
    """Seconds since ``path`` was modified (0 when it cannot be told)."""
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (True when that cannot be told)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined,unused-ignore]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.GetLastError() == 5  # type: ignore[attr-defined,unused-ignore]
        try:
            code = ctypes.c_ulong()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, run by another user
    except OSError:
        return True
    return True


@dataclass(frozen=True)
class LockHolder:
    """Who holds a workspace's lock.

    Attributes
    ----------
    pid : int
        Its process id.
    host : str
        The machine it runs on.
    since_utc : str
        When it took the lock (ISO 8601, UTC).
    path : Path
        The lock file.
    """

    pid: int
    host: str
    since_utc: str
    path: Path
    boot_id: str = ""
    token: str = ""

    def describe(self) -> str:
        """``IonPlan process 1234 on host 'ws-3' (since 2026-12-04T21:50:00Z)``."""
        return f"IonPlan process {self.pid} on host {self.host!r} (since {self.since_utc})"

    def is_stale(self) -> bool:
        """The holder is known to be gone: this host, and its process ended or the machine
        restarted since."""
        if self.host != socket.gethostname():
            return False
        boot = _boot_id()
        if boot and self.boot_id and boot != self.boot_id:
            return True
        return not _process_alive(self.pid)


def read_holder(path: Path) -> LockHolder | None:
    """The holder named by the lock file ``path``; None when there is no such file.

    Raises
    ------
    ValueError
        The file is not a lock file of this format (damaged).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    pid, host = data.get("pid"), data.get("host")
    if isinstance(pid, bool) or not isinstance(pid, int) or not isinstance(host, str):
        raise ValueError("no pid and host")
    return LockHolder(pid, host, str(data.get("since_utc", "?")), path,
                      str(data.get("boot_id", "")), str(data.get("token", "")))


class WorkspaceLock:
    """The lock file ``path`` of one workspace, as seen by this process.

    Parameters
    ----------
    path : Path
        ``ROOT/locks/<patient folder>.lock``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._token: str | None = None

    @property
    def held(self) -> bool:
        """This object holds the lock: the file still names it."""
        if self._token is None:
            return False
        try:
            holder = read_holder(self.path)
        except (OSError, ValueError):
            return False
        return holder is not None and holder.token == self._token

    def acquire(self) -> LockHolder | None:
        """Take the lock (a stale one is taken over); None when this object holds it now,
        else who holds it.

        Raises
        ------
        OSError
            The lock file cannot be written (no permission, read-only disk).
        """
        if self.held:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            token = os.urandom(8).hex()
            if self._create(token):
                self._token = token
                atexit.register(self.release)
                return None
            try:
                holder = read_holder(self.path)
            except (OSError, ValueError) as exc:
                if _age_s(self.path) < _DAMAGED_GRACE_S:  # maybe being written (no links)
                    time.sleep(_DAMAGED_GRACE_S / 4)
                    continue
                log.warning("%s: damaged lock file (%s): taking it over", self.path, exc)
                self._remove_if_unchanged(None)
                continue
            if holder is None:
                continue  # released meanwhile
            if not holder.is_stale():
                return holder
            log.warning("%s: %s is no longer running: taking its lock over", self.path,
                        holder.describe())
            self._remove_if_unchanged(holder)
        raise OSError(f"{self.path}: cannot take the workspace lock (others keep taking it)")

    def release(self) -> None:
        """Remove the lock file if this object holds it (on close; also at process exit)."""
        atexit.unregister(self.release)
        if self.held:
            try:
                self.path.unlink()
            except OSError as exc:
                log.warning("%s: cannot remove the workspace lock (%s)", self.path, exc)
        self._token = None

    def _create(self, token: str) -> bool:
        """Create the lock file naming this process; False when it exists."""
        text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "boot_id": _boot_id(),
                           "since_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "token": token}) + "\n"
        tmp = self.path.with_name(f".{self.path.name}.{token}.tmp")
        tmp.write_text(text, encoding="utf-8")
        try:
            os.link(tmp, self.path)  # atomic, and fails when the lock exists
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system: exclusive create instead
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _remove_if_unchanged(self, stale: LockHolder | None) -> None:
        """Remove the lock file that named ``stale`` (None: a damaged one). It is first
        renamed to a name of this process's own, so that a lock another process took
        meanwhile is put back instead of removed."""
        aside = self.path.with_name(f".{self.path.name}.{os.urandom(6).hex()}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = read_holder(aside)
        except (OSError, ValueError):
            moved = None
        if moved is not None and (stale is None or moved.token != stale.token):
            try:
                os.link(aside, self.path)  # a fresh lock: put it back
            except OSError:
                log.warning("%s: could not put back the lock of %s", self.path,
                            moved.describe())
        aside.unlink(missing_ok=True)
