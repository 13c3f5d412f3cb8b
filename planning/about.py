"""Version and licence information: ``ionplan --version`` and the GUI's About dialog.

Nothing here imports Kivy (or opens a window): versions of optional and GUI packages are read from
their installed distribution metadata (:mod:`importlib.metadata`), which the PyInstaller build
carries for every bundled distribution.

In a frozen build the full third-party licence text is the file ``THIRD_PARTY_LICENSES.txt``
written at build time by ``packaging/collect_licenses.py`` (it also covers the Python runtime and
the shared libraries the build took from the build machine); from a source install the text is
assembled from the metadata of the installed runtime dependencies of ``ionplan``.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

from kernels import pencil_beam_cpu, spot_products, wepl_cpu
from planning import __version__
from planning.errors import DataFileError

PROJECT_NAME = "IonPlan"
DISTRIBUTION_NAME = "ionplan"
LICENSE_EXPRESSION = "BSD-3-Clause"
NOTICES_FILENAME = "THIRD_PARTY_LICENSES.txt"

# (label, distribution name) of the components a support request needs to know, in display order.
_REPORTED_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("numpy", "numpy"),
    ("SciPy", "scipy"),
    ("pydicom", "pydicom"),
    ("scikit-image", "scikit-image"),
    ("Kivy", "kivy"),
)

# File names in a distribution's metadata folder that carry licence or notice text.
_LICENSE_FILE_RE = re.compile(r"^(LICEN[CS]E|COPYING|NOTICE|COPYRIGHT|AUTHORS)", re.IGNORECASE)
_RULE = "=" * 78


def is_frozen() -> bool:
    """Whether this process runs from a PyInstaller build (``sys.frozen`` and ``sys._MEIPASS``)."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def _installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def cpu_kernels() -> str:
    """Which CPU kernels run: ``CPU kernels compiled`` where setup.py built all three
    extensions (the pencil-beam kernel, the optimizer's joint products, the WEPL cube's ray
    integration), ``CPU kernels NumPy`` where it built none (the NumPy kernels and SciPy's
    products), else which one is which."""
    parts = (("pencil beam", pencil_beam_cpu.available(), "NumPy"),
             ("products", spot_products.available(), "SciPy"),
             ("WEPL", wepl_cpu.available(), "NumPy"))
    if all(built for _, built, _ in parts):
        return "CPU kernels compiled"
    if not any(built for _, built, _ in parts):
        return "CPU kernels NumPy"
    return "CPU kernels: " + ", ".join(f"{name} {'compiled' if built else fallback}"
                                       for name, built, fallback in parts)


def version_text() -> str:
    """Version, licence and component versions, as printed by ``ionplan --version``.

    Returns
    -------
    str
        Three lines without a trailing newline. The first is ``ionplan <version>`` (the line
        scripts parse); the second names the licence and whether this is a frozen build; the
        third lists the Python version and the versions of numpy, SciPy, pydicom, scikit-image
        and Kivy (``not installed`` for a missing one), and which CPU kernels the engine and
        the optimizer use (:func:`cpu_kernels`). Kivy is not imported.
    """
    build = "binary build" if is_frozen() else "source install"
    components = [f"Python {platform.python_version()}"]
    for label, distribution in _REPORTED_COMPONENTS:
        found = _installed_version(distribution)
        components.append(f"{label} {found if found is not None else 'not installed'}")
    components.append(cpu_kernels())
    return "\n".join((
        f"{DISTRIBUTION_NAME} {__version__}",
        f"{PROJECT_NAME} {__version__}, {LICENSE_EXPRESSION} ({build}; third-party licences: "
        f"{NOTICES_FILENAME})",
        ", ".join(components),
    ))


def _field(dist: metadata.Distribution, key: str) -> str | None:
    """First value of a metadata field, or None when absent."""
    values = dist.metadata.get_all(key)
    return str(values[0]) if values else None


def _license_summary(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    expression = _field(dist, "License-Expression")
    if expression:
        return str(expression).strip()
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                   if c.startswith("License ::")]
    if classifiers:
        return "; ".join(classifiers)
    text = _field(dist, "License")
    if text and len(text.strip().splitlines()) == 1 and len(text.strip()) <= 100:
        return text.strip()
    return "see the licence text below"


def _license_files(dist: metadata.Distribution) -> list[tuple[str, str]]:
    """(name, text) of the licence files shipped in a distribution's metadata folder."""
    found: list[tuple[str, str]] = []
    for file in dist.files or ():
        parts = file.parts
        if not parts or not parts[0].endswith(".dist-info"):
            continue
        if not (_LICENSE_FILE_RE.match(file.name) or (len(parts) > 2 and parts[1] == "licenses")):
            continue
        try:
            file_text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if file_text is not None:
            found.append(("/".join(parts[1:]), file_text))
    if not found:
        # Old-style metadata without licence files: the License field may hold the full text.
        text = _field(dist, "License")
        if text and len(text.strip().splitlines()) > 1:
            found.append(("License field of the package metadata", text))
    return found


def distribution_notice(distribution: str) -> str:
    """The notice block of one installed distribution: name, version, licence, licence texts.

    Parameters
    ----------
    distribution : str
        Distribution (package index) name, e.g. ``"numpy"``.

    Returns
    -------
    str
        A block starting with a ruled header ``<name> <version>``, then ``Licence:``,
        ``Home page:`` when known, and the text of every licence file in the distribution's
        metadata. A distribution without licence files says so explicitly.

    Raises
    ------
    DataFileError
        If the distribution is not installed.
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise DataFileError(distribution, "distribution is not installed, so its licence "
                            "cannot be read from its metadata") from None
    name = _field(dist, "Name") or distribution
    lines = [_RULE, f"{name} {dist.version}", _RULE, f"Licence: {_license_summary(dist)}"]
    home = _field(dist, "Home-page") or _project_url(dist)
    if home:
        lines.append(f"Home page: {home}")
    files = _license_files(dist)
    if not files:
        lines.append("The distribution ships no licence file; its licence is the one named above.")
    for file_name, text in files:
        lines += ["", f"--- {file_name} ---", text.rstrip()]
    return "\n".join(lines) + "\n"


def _project_url(dist: metadata.Distribution) -> str | None:
    for entry in dist.metadata.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() in {"homepage", "home", "source", "source code", "repository"}:
            return url.strip()
    return None


def runtime_distributions(root: str = DISTRIBUTION_NAME) -> list[str]:
    """Installed distributions that ``root`` needs at run time, found by walking requirements.

    Requirements that apply only to an extra (``extra == "..."``) are left out; requirements
    whose distribution is not installed (e.g. excluded by an environment marker) are skipped.

    Parameters
    ----------
    root : str
        Distribution whose dependency closure is wanted.

    Returns
    -------
    list of str
        Canonical (lower-case, ``-``-separated) names, sorted, without ``root`` itself.
    """
    seen: set[str] = set()
    pending = [_canonical(root)]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for requirement in requires:
            spec, _, marker = requirement.partition(";")
            if "extra" in marker:
                continue
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
            if match:
                pending.append(_canonical(match.group(1)))
    seen.discard(_canonical(root))
    return sorted(seen)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def notices_for(distributions: Iterable[str]) -> str:
    """Notice blocks of several installed distributions, in the given order."""
    return "\n".join(distribution_notice(name) for name in distributions)


def third_party_notices() -> str:
    """The licences of the third-party software IonPlan runs with.

    Returns
    -------
    str
        In a frozen build: the ``THIRD_PARTY_LICENSES.txt`` collected at build time (covers every
        bundled distribution, the Python runtime and bundled system libraries). Otherwise: a
        header and the notice blocks of the installed runtime dependencies of ``ionplan``.

    Raises
    ------
    DataFileError
        If a frozen build lacks its licence file (a broken build).
    """
    if is_frozen():
        path = Path(getattr(sys, "_MEIPASS")) / NOTICES_FILENAME  # noqa: B009 (typeshed lacks _MEIPASS)
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DataFileError(path, f"cannot read the build's licence file ({exc.strerror}); "
                                "the installation is incomplete: reinstall IonPlan") from None
    distributions = runtime_distributions()
    header = (f"{PROJECT_NAME} {__version__} is licensed under {LICENSE_EXPRESSION}. It runs "
              f"with the following installed third-party distributions ({len(distributions)}), "
              "each under its own licence.\n")
    return header + "\n" + notices_for(distributions)


class VersionAction(argparse.Action):
    """``--version`` for argparse: prints :func:`version_text` unwrapped and exits with 0.

    argparse's own ``action="version"`` re-flows the text into one paragraph, losing the lines.
    """

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS,
                 help: str = "print version, licence and component versions, and exit",
                 ) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0,
                         help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        sys.stdout.write(version_text() + "\n")
        parser.exit(0)
