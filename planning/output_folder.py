"""A command's output folder: checked before any work, never mixing two runs' files.

``ionplan plan``, ``recalc``, ``robust`` and ``compare`` write their files into ``--out``. Into a
folder that already held another run's files, the new run silently replaced some of them and
left the others (an RT Dose of the first plan beside the RT Plan of the second, a comparison's
report.json over a plan's), and a run that failed halfway left a folder without report.json
that looked like a result. :func:`fresh_output_folder` makes the folder and checks that it can
be written before the command computes anything, refuses one that holds IonPlan outputs of an
earlier run unless ``overwrite``, and on failure removes what the run wrote (and the folder
when the run made it, and puts back what ``overwrite`` set aside).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from planning.errors import InputError

#: Names (glob patterns) of the files and folders IonPlan's commands write into ``--out``.
OUTPUT_PATTERNS = ("RTPLAN.dcm", "RTDOSE*.dcm", "report.json", "report.html", "*_report.pdf",
                   "reoptimized_*")


def earlier_outputs(folder: Path) -> list[Path]:
    """IonPlan outputs already in ``folder`` (sorted by name)."""
    found = {p for pattern in OUTPUT_PATTERNS for p in folder.glob(pattern)}
    return sorted(found, key=lambda p: p.name)


def check_writable(folder: Path, what: str) -> None:
    """Refuse ``folder`` (an existing folder) unless it takes a new file: a read-only disk or
    share refuses here, before any work.

    Raises
    ------
    InputError
        ``"{folder}: {what} cannot be written (reason)"``.
    """
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(f"{folder}: {what} cannot be written ({exc.strerror or exc})"
                         ) from None


@contextmanager
def fresh_output_folder(out: str | os.PathLike[str], *, overwrite: bool = False,
                        inputs: Sequence[str | os.PathLike[str]] = ()) -> Iterator[Path]:
    """The output folder of one run, ready before any work.

    Parameters
    ----------
    out : path
        The folder (made with its parents when missing).
    overwrite : bool
        Replace the IonPlan outputs of an earlier run: they are set aside while the run writes
        and removed when it succeeds (put back when it fails).
    inputs : paths
        The run's input files and folders: an earlier output among them (a plan folder given
        as both input and ``out``) is never set aside, the run is refused.

    Raises
    ------
    InputError
        ``out`` is a file, cannot be made or written, or holds an earlier run's outputs and
        ``overwrite`` is not set; raised before the body runs.
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: --out names a file, not a folder")
    made = _missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: the output folder cannot be written "
                         f"({exc.strerror or exc})") from None
    check_writable(folder, "the output folder")
    stale = sorted(folder.glob(".ionplan-replaced-*"))
    if stale:  # a run was killed outright (SIGKILL, power) after setting files aside
        raise InputError(f"{stale[0]} holds an earlier run's files that a killed run set aside: "
                         f"move them back into {folder} or delete that folder (nothing was "
                         "written)")
    earlier = earlier_outputs(folder)
    read = _inputs_among(earlier, folder, inputs)
    if read:
        raise InputError(f"{folder} holds {read}, an input of this run, among the earlier "
                         "outputs --out would replace: choose another --out (nothing was "
                         "written)")
    if earlier and not overwrite:
        names = ", ".join(p.name for p in earlier[:6]) + (", ..." if len(earlier) > 6 else "")
        raise InputError(f"{folder} already holds the files of an earlier run ({names}); give "
                         "another --out, remove them, or add --overwrite to replace them "
                         "(nothing was written)")
    aside = _set_aside(folder, earlier) if earlier else None
    before = set(os.listdir(folder))
    try:
        yield folder
    except BaseException:
        for name in set(os.listdir(folder)) - before:
            _remove(folder / name)
        if aside is not None:
            for p in aside.iterdir():
                os.replace(p, folder / p.name)
            aside.rmdir()
        for path in made:  # a run that failed leaves no folder it made, parents included
            _remove_if_empty(path)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _inputs_among(earlier: list[Path], folder: Path,
                  inputs: Sequence[str | os.PathLike[str]]) -> str:
    """The name of the first of ``earlier`` (outputs in ``folder``) that is an input, or in
    an input folder that is ``folder`` itself; ``""`` when none."""
    if not earlier or not inputs:
        return ""
    resolved = {Path(i).resolve() for i in inputs}
    if folder.resolve() in resolved:
        return earlier[0].name
    return next((p.name for p in earlier if p.resolve() in resolved), "")


def _set_aside(folder: Path, outputs: list[Path]) -> Path:
    aside = Path(tempfile.mkdtemp(prefix=".ionplan-replaced-", dir=folder))
    for p in outputs:
        os.replace(p, aside / p.name)
    return aside


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its missing parents, deepest first: the folders ``mkdir(parents=True)``
    makes (a failed ``--out /no/such/out`` left ``/no/such`` behind)."""
    missing = []
    for path in (folder, *folder.absolute().parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (another program wrote there meanwhile): left as it is


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
