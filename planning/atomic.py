"""Atomic file writes: a temporary file in the target folder, flushed, then renamed over the target.

An interrupted write leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def _temporary_then(target: Path, publish: Callable[[str, Path], None]) -> Iterator[BinaryIO]:
    """A temporary file next to ``target``; once written, flushed and given the usual
    permissions, ``publish(tmp, target)`` puts it in place. The temporary file never stays."""
    if not target.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "output folder does not exist", str(target.parent))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # name the file the user asked for, not a temporary one
        raise _naming(exc, target) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        publish(tmp, target)
        _sync_folder(target.parent)
    except OSError as exc:
        # A full disk or a lost share: the error (often without a file name) names the target.
        raise _naming(exc, target) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entry of the new name to disk (POSIX), so that a power loss right
    after the rename cannot lose it; where folders cannot be opened (Windows) the rename is
    left to the file system."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (network shares) do not sync folders
    finally:
        os.close(fd)


def _naming(exc: OSError, target: Path) -> OSError:
    """``exc`` as an OSError of the same kind that names ``target`` (and keeps its errno)."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(target))


@contextmanager
def atomic_binary_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for writing; rename it onto ``path`` on success.

    The folder of ``path`` must exist (FileNotFoundError naming it otherwise).

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    with _temporary_then(Path(path), os.replace) as fh:
        yield fh


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_binary_file(path) as fh:
        fh.write(text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[BinaryIO], None]) -> None:
    """Call ``writer(fh)`` on a temporary binary file and rename it onto ``path`` atomically."""
    with atomic_binary_file(path) as fh:
        writer(fh)


def atomic_create_with(path: str | os.PathLike[str], writer: Callable[[BinaryIO], None]) -> None:
    """Like :func:`atomic_write_with`, but never replaces an existing ``path``.

    The complete temporary file is hard-linked to ``path`` (which fails when ``path`` exists,
    also when another process made it meanwhile) and then removed.

    Raises
    ------
    FileExistsError
        ``path`` exists; nothing was changed.
    """
    target = Path(path)
    if target.exists():
        raise FileExistsError(errno.EEXIST, "file exists", str(target))
    with _temporary_then(target, _link_or_reserve) as fh:
        writer(fh)


def _link_or_reserve(tmp: str, target: Path) -> None:
    """Put the finished ``tmp`` at ``target`` only if no file is there: a hard link, or where
    the file system has none (FAT and exFAT sticks, some network shares) the name reserved by
    an exclusive create and then replaced by the file."""
    try:
        os.link(tmp, target)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                             errno.ENOSYS, errno.EMLINK):
            raise
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # FileExistsError
    os.close(fd)
    os.replace(tmp, target)
