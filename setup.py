"""Build of IonPlan's three compiled extensions for the CPU: the pencil-beam kernel, the
optimizer's joint sparse products and the WEPL cube's ray integration.

Everything else is in pyproject.toml. ``kernels/pencil_beam_source.py`` holds the C++/CUDA
source of the fused per-voxel pencil-beam kernel (CuPy compiles it for the GPU); here the same
source is compiled with ``PB_CPU_TWIN`` into ``kernels._pencil_beam_cpu``, which
``kernels.pencil_beam_cpu`` calls through ctypes (without the GIL). The extension is optional:
where no C++ compiler is found the install goes on and the CPU engine uses its NumPy kernels.
``kernels/spot_products_source.py`` is compiled the same way into ``kernels._spot_products``
(:mod:`kernels.spot_products`; without it the optimizer multiplies with SciPy), and
``kernels/wepl_source.py`` into ``kernels._wepl_cpu`` (:mod:`kernels.wepl_cpu`; without it the
WEPL cubes are made with NumPy).
"""

from __future__ import annotations

import platform
import runpy
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
GENERATED = Path("build") / "generated"

MODULE_INIT = r"""
#include <Python.h>

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "NAME", "DOC", -1, NULL};

PyMODINIT_FUNC PyInit_NAME(void) { return PyModule_Create(&module); }
"""


def generated_source(name: str, source_module: str, variable: str, doc: str,
                     prefix: str = "") -> str:
    """Write an extension's C++ source: ``variable`` of ``kernels/<source_module>.py`` after
    ``prefix`` and an empty module init (the functions are called through ctypes)."""
    source = runpy.run_path(str(HERE / "kernels" / f"{source_module}.py"))[variable]
    init = MODULE_INIT.replace("NAME", name).replace("DOC", doc)
    text = prefix + init + source
    path = HERE / GENERATED / f"{name}.cpp"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return (GENERATED / f"{name}.cpp").as_posix()


def compile_args() -> list[str]:
    """The NumPy kernels' float32 arithmetic, operation by operation (no fused multiply-adds);
    sqrtf without errno (its argument is clipped to [0, 1]); on x86-64 the 2009 baseline
    (SSE4.2: ceilf and floorf in one instruction)."""
    args = ["-O3", "-ffp-contract=off", "-fno-math-errno"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        args.append("-march=x86-64-v2")
    return args


def extensions() -> list[Extension]:
    """The three optional extensions (each is skipped with a warning where it cannot be
    compiled). Paths are relative to the repository root, the working directory of a build."""
    return [
        Extension("kernels._pencil_beam_cpu", [generated_source(
            "_pencil_beam_cpu", "pencil_beam_source", "CUDA_SOURCE",
            "The fused pencil-beam kernel compiled for the CPU; call pb_beam_cpu through ctypes.",
            prefix="#define PB_CPU_TWIN 1\n")],
            language="c++", extra_compile_args=compile_args(), optional=True),
        Extension("kernels._spot_products", [generated_source(
            "_spot_products", "spot_products_source", "CPP_SOURCE",
            "The optimizer's joint sparse products; call sp_forward / sp_backward via ctypes.")],
            language="c++", extra_compile_args=compile_args(), optional=True),
        Extension("kernels._wepl_cpu", [generated_source(
            "_wepl_cpu", "wepl_source", "CPP_SOURCE",
            "The WEPL cube's ray integration; call wepl_rays through ctypes.")],
            language="c++", extra_compile_args=compile_args(), optional=True),
    ]


if __name__ == "__main__":  # as pip's build backend runs it; bench/build_extensions.py imports
    setup(ext_modules=extensions())
