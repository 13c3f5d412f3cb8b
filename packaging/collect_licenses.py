"""Collect the licences of everything a PyInstaller build bundles into THIRD_PARTY_LICENSES.txt.

Called from ``ionplan.spec`` with the Analysis tables (``a.pure + a.binaries + a.datas``). Each
bundled file is traced to its owner by its source path:

- a Python distribution, through the files listed in the distribution's RECORD
  (:mod:`importlib.metadata`); this also covers the shared libraries a wheel vendors in
  ``<name>.libs/`` (auditwheel);
- the Python runtime (standard library, ``lib-dynload``, ``libpython``): Python's LICENSE.txt;
- IonPlan itself (files under the project root): IonPlan's LICENSE, written beside the notices;
- a system library of the build machine: its Debian package's ``/usr/share/doc/<pkg>/copyright``
  (found with ``dpkg -S``). A file whose owner cannot be found is listed as unidentified, and
  the build prints a warning naming it.

Run standalone (``python packaging/collect_licenses.py OUT.txt``) it writes the notices of the
current environment's runtime dependencies of ``ionplan`` (no build needed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from planning import __version__
from planning.about import (
    DISTRIBUTION_NAME,
    LICENSE_EXPRESSION,
    NOTICES_FILENAME,
    PROJECT_NAME,
    distribution_notice,
    runtime_distributions,
)
from planning.atomic import atomic_write_text

# Libraries vendored in Kivy's Linux wheel (Kivy.libs/) whose licences Kivy's own LICENSE does not
# state. Keys are file-name prefixes up to the auditwheel hash. Sources: libsdl.org licence page
# (SDL2 and its satellite libraries: zlib licence), FreeType's LICENSE.TXT (FTL or GPL-2.0),
# HarfBuzz's COPYING ("Old MIT"), libpng's LICENSE (libpng licence).
_VENDORED_LICENSES: dict[str, str] = {
    "libSDL2-": "SDL2: Zlib",
    "libSDL2_image-": "SDL2_image: Zlib",
    "libSDL2_mixer-": "SDL2_mixer: Zlib",
    "libSDL2_ttf-": "SDL2_ttf: Zlib; statically contains FreeType (FTL or GPL-2.0-only) and "
                   "HarfBuzz (MIT-Modern-Variant, 'Old MIT')",
    "libpng15-": "libpng 1.5: Libpng",
}


@dataclass
class Ownership:
    """Who owns the files of a build.

    Attributes
    ----------
    distributions : dict of str to list of str
        Distribution name -> bundled file names (destination names in the build) it owns.
    python_runtime : list of str
        Files from the Python installation (standard library, extension modules, libpython).
    project : list of str
        IonPlan's own files.
    system : dict of str to list of str
        Source path of a system library -> (Debian package, when found) as a one-item list.
    unidentified : list of str
        Source paths no owner was found for.
    """

    distributions: dict[str, list[str]] = field(default_factory=dict)
    python_runtime: list[str] = field(default_factory=list)
    project: list[str] = field(default_factory=list)
    system: dict[str, list[str]] = field(default_factory=dict)
    unidentified: list[str] = field(default_factory=list)


def _record_index() -> dict[str, str]:
    """Absolute, resolved path of every installed file -> the distribution that installed it."""
    index: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        for file in dist.files or ():
            try:
                located = Path(str(dist.locate_file(file))).resolve()
            except OSError:
                continue
            index.setdefault(str(located), name)
    return index


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def classify(toc: Iterable[tuple[str, str, str]], project_root: Path,
             generated_root: Path | None = None) -> Ownership:
    """Trace each bundled file of a PyInstaller TOC to its owner.

    Parameters
    ----------
    toc : iterable of (dest_name, source_path, typecode)
        Entries of ``Analysis.pure``, ``.binaries`` and ``.datas``. Entries without a source
        file (built-in modules, generated files) are ignored.
    project_root : Path
        Root of the IonPlan checkout; files below it are IonPlan's own, as are the files of the
        installed ``ionplan`` distribution.
    generated_root : Path, optional
        PyInstaller's work folder. The files it generates there (``base_library.zip``: the
        standard-library modules the bootloader needs) are counted as the Python runtime.

    Returns
    -------
    Ownership
    """
    index = _record_index()
    project_root = project_root.resolve()
    python_roots = {Path(sys.base_prefix).resolve(), Path(sys.base_exec_prefix).resolve()}
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    owners = Ownership()
    for dest, source, _typecode in toc:
        if not source or not os.path.isfile(source):
            continue
        path = Path(source).resolve()
        dist = index.get(str(path))
        if dist is not None and _canonical(dist) == DISTRIBUTION_NAME:
            owners.project.append(dest)
        elif dist is not None:
            owners.distributions.setdefault(dist, []).append(dest)
        elif _is_under(path, project_root):
            owners.project.append(dest)
        elif (_is_under(path, stdlib) or any(_is_under(path, root) for root in python_roots)
              or (generated_root is not None and _is_under(path, generated_root.resolve()))):
            owners.python_runtime.append(dest)
        else:
            package = _debian_package(Path(source))
            if package is None:
                owners.unidentified.append(source)
            else:
                owners.system.setdefault(package, []).append(source)
    return owners


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _debian_package(path: Path) -> str | None:
    """The Debian package that installed a file (tries the path as given and resolved)."""
    if shutil.which("dpkg") is None:
        return None
    candidates = [str(path), str(path.resolve())]
    # usrmerge: /lib is a link to /usr/lib, and dpkg knows only the path the package shipped.
    for text in list(candidates):
        if text.startswith("/usr/lib/"):
            candidates.append(text[len("/usr"):])
        elif text.startswith("/lib/"):
            candidates.append("/usr" + text)
    for candidate in dict.fromkeys(candidates):
        proc = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True,
                              check=False)
        if proc.returncode == 0 and proc.stdout:
            return proc.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def _python_notice() -> str:
    version = sysconfig.get_python_version()
    license_path = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    lines = ["=" * 78, f"Python {sys.version.split()[0]} (interpreter and standard library)",
             "=" * 78, "Licence: PSF-2.0"]
    if license_path.is_file():
        lines += ["", f"--- {license_path.name} ---",
                  license_path.read_text(encoding="utf-8").rstrip()]
    else:
        lines.append(f"Python {version}'s LICENSE.txt was not found at {license_path}; "
                     "see https://docs.python.org/3/license.html")
    return "\n".join(lines) + "\n"


def _system_notice(package: str, sources: Sequence[str]) -> str:
    lines = ["=" * 78, f"System library package {package} (Debian)", "=" * 78,
             "Bundled files: " + ", ".join(sorted(Path(s).name for s in sources))]
    copyright_path = Path("/usr/share/doc") / package.split(":")[0] / "copyright"
    if copyright_path.is_file():
        lines += ["", f"--- {copyright_path} ---",
                  copyright_path.read_text(encoding="utf-8", errors="replace").rstrip()]
    else:
        lines.append(f"No copyright file at {copyright_path}; see the package's sources.")
    return "\n".join(lines) + "\n"


def _vendored_note(files: Sequence[str]) -> str:
    """Licences of the shared libraries a wheel vendors in <name>.libs/, where known."""
    vendored = sorted({Path(f).name for f in files if Path(f).parent.name.endswith(".libs")})
    if not vendored:
        return ""
    lines = ["Shared libraries vendored by this wheel and bundled here:"]
    for name in vendored:
        known = next((text for prefix, text in _VENDORED_LICENSES.items()
                      if name.startswith(prefix)), None)
        lines.append(f"  {name}: {known}" if known else
                     f"  {name}: covered by the distribution's licence text below")
    return "\n".join(lines) + "\n"


def render(owners: Ownership) -> str:
    """The text of THIRD_PARTY_LICENSES.txt for a classified build."""
    names = sorted(owners.distributions, key=str.lower)
    header = [
        f"{PROJECT_NAME} {__version__} is licensed under {LICENSE_EXPRESSION} (see LICENSE).",
        "This build bundles the following third-party software, each under its own licence:",
        "",
        f"  Python runtime ({len(owners.python_runtime)} files)",
    ]
    header += [f"  {name} {metadata.version(name)}" for name in names]
    header += [f"  Debian package {package}" for package in sorted(owners.system)]
    if owners.unidentified:
        header += ["", "Bundled files whose owner could not be determined at build time:"]
        header += [f"  {source}" for source in sorted(owners.unidentified)]
    blocks = ["\n".join(header) + "\n", _python_notice()]
    for name in names:
        notice = distribution_notice(name)
        note = _vendored_note(owners.distributions[name])
        if note:
            head, sep, rest = notice.partition("\n\n")
            notice = f"{head}\n{note}{sep}{rest}" if sep else notice + note
        blocks.append(notice)
    blocks += [_system_notice(package, sources) for package, sources in
               sorted(owners.system.items())]
    return "\n".join(blocks)


def write_build_notices(toc: Iterable[tuple[str, str, str]], out_path: Path,
                        project_root: Path, generated_root: Path | None = None,
                        bootloader_distribution: str | None = "pyinstaller") -> Ownership:
    """Classify a build's files and write THIRD_PARTY_LICENSES.txt atomically.

    Parameters
    ----------
    toc : iterable of (dest_name, source_path, typecode)
        The build's Analysis tables.
    out_path : Path
        Output text file (its folder must exist).
    project_root : Path
        IonPlan checkout root.
    generated_root : Path, optional
        PyInstaller's work folder (see :func:`classify`).
    bootloader_distribution : str or None
        Distribution whose bootloader is the executable (its licence carries the bootloader
        exception); None to leave it out.

    Returns
    -------
    Ownership
        The classification, for the build log.
    """
    owners = classify(toc, project_root, generated_root)
    if bootloader_distribution is not None:
        owners.distributions.setdefault(bootloader_distribution, []).append("bootloader")
    atomic_write_text(out_path, render(owners))
    return owners


def main(argv: Sequence[str] | None = None) -> int:
    """Write the notices of the current environment's ionplan runtime dependencies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help=f"output file, e.g. {NOTICES_FILENAME}")
    args = parser.parse_args(argv)
    owners = Ownership(distributions={name: [] for name in runtime_distributions()})
    atomic_write_text(args.out, render(owners))
    print(f"wrote {args.out} ({len(owners.distributions)} distributions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
