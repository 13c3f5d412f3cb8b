"""Atomic writes: the old file or the new one, never half of one, and errors that name the file
the user asked for."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from planning.atomic import atomic_write_text, atomic_write_with


def test_a_full_disk_names_the_target_and_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")

    def full(fh: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write() raises it

    with pytest.raises(OSError) as info:
        atomic_write_with(target, full)  # type: ignore[arg-type]
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "report.json"]


def test_a_read_only_folder_names_the_target_not_a_temporary_file(tmp_path: Path,
                                                                  monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The temporary file cannot be made (read-only folder): the error names the file asked
    for (it named '.RTPLAN.dcm.xxxx.tmp', a file that never existed)."""
    import tempfile

    def refused(prefix: str, suffix: str, dir: Path) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                              str(Path(dir) / f"{prefix}abc{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError) as info:
        atomic_write_text(tmp_path / "RTPLAN.dcm", "x")
    assert info.value.filename == str(tmp_path / "RTPLAN.dcm")


def test_the_cli_prints_one_line_naming_the_file_on_a_full_disk(tmp_path: Path, monkeypatch,
                                                                 capsys) -> None:  # type: ignore[no-untyped-def]
    """A DICOM file on a full disk: one line naming it (pydicom's message carried a traceback)."""
    from planning import atomic
    from planning.cli import main

    real = atomic._temporary_then

    def full_disk(target, publish):  # type: ignore[no-untyped-def]
        class Full:
            def write(self, data: object) -> int:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        with real(target, publish):
            yield Full()

    import contextlib

    monkeypatch.setattr(atomic, "_temporary_then", contextlib.contextmanager(full_disk))
    assert main(["demo-patient", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0]
    assert err[0].startswith(f"ionplan: error: {tmp_path / 'demo'}")


def test_create_on_a_file_system_without_hard_links(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """FAT/exFAT sticks refuse hard links: the file is still created whole, and an existing
    one still refused."""
    from planning.atomic import atomic_create_with

    def no_links(src: str, dst: object) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "plan_report.pdf"
    atomic_create_with(target, lambda fh: fh.write(b"%PDF"))
    assert target.read_bytes() == b"%PDF" and sorted(tmp_path.iterdir()) == [target]
    with pytest.raises(FileExistsError):
        atomic_create_with(target, lambda fh: fh.write(b"other"))
    assert target.read_bytes() == b"%PDF"
