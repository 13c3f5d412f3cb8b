"""Build IonPlan's compiled CPU extensions in place, without installing the package.

For bench/gpu_check.sh on a lent machine: its Python (3.12 there) cannot load the extensions
built here, and installing the package there would need our build requirements, which cannot
be fetched. This compiles the extensions of setup.py (:func:`extensions`) into kernels/ with the
setuptools that is there, without reading pyproject.toml, and prints what the engine will use
(:func:`planning.about.cpu_kernels`). An extension that does not compile is skipped with
setuptools' warning (they are optional), and the line says which are missing.

    python bench/build_extensions.py
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    os.chdir(REPO)  # setup.py's source paths are relative to the repository root
    sys.path.insert(0, str(REPO))
    from setuptools import Distribution

    extensions = runpy.run_path(str(REPO / "setup.py"), run_name="ionplan_setup")["extensions"]
    dist = Distribution({"name": "ionplan-extensions", "ext_modules": extensions()})
    build = dist.get_command_obj("build_ext")
    build.inplace = True
    build.ensure_finalized()
    build.run()
    from planning.about import cpu_kernels

    print(cpu_kernels(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
