"""Which DICOM file the importers are reading, for the warnings that pydicom makes meanwhile.

pydicom warns of what it finds nonconforming in a file (a value longer than its VR allows, a UID
with a bad character) without naming the file: in a folder of 300 CT slices the user could not
find the one it meant. The importers read each file inside :func:`reading_file` (every checked
read of an attribute is, :func:`planning.dicom._values.reading`), and whoever shows pydicom's
warnings asks :func:`file_being_read` which file it was (:mod:`planning.cli_warnings`).

The file is held in a :class:`contextvars.ContextVar`: each thread (a batch worker's jobs, a
robust evaluation's scenario tasks) has its own, and a block puts back the file of the block it
is nested in when it ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_FILE: ContextVar[str | None] = ContextVar("dicom_file_being_read", default=None)


@contextmanager
def reading_file(path: str | os.PathLike[str]) -> Iterator[None]:
    """Say that the block reads the DICOM file ``path`` (what pydicom warns of meanwhile is
    about it)."""
    token = _FILE.set(os.fspath(path))
    try:
        yield
    finally:
        _FILE.reset(token)


def file_being_read() -> str | None:
    """The file of the innermost :func:`reading_file` block of this thread; None outside
    any."""
    return _FILE.get()
