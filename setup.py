"""Build of IonPlan's one compiled extension: the pencil-beam kernel for the CPU.

Everything else is in pyproject.toml. ``kernels/pencil_beam_source.py`` holds the C++/CUDA
source of the fused per-voxel pencil-beam kernel (CuPy compiles it for the GPU); here the same
source is compiled with ``PB_CPU_TWIN`` into ``kernels._pencil_beam_cpu``, which
``kernels.pencil_beam_cpu`` calls through ctypes (without the GIL). The extension is optional:
where no C++ compiler is found the install goes on and the CPU engine uses its NumPy kernels.
"""

from __future__ import annotations

import platform
import runpy
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
GENERATED = Path("build") / "generated" / "_pencil_beam_cpu.cpp"

MODULE_INIT = r"""
#include <Python.h>

static struct PyModuleDef pb_module = {
    PyModuleDef_HEAD_INIT, "_pencil_beam_cpu",
    "The fused pencil-beam kernel compiled for the CPU; call pb_beam_cpu through ctypes.",
    -1, NULL};

PyMODINIT_FUNC PyInit__pencil_beam_cpu(void) { return PyModule_Create(&pb_module); }
"""


def generated_source() -> str:
    """Write the extension's C++ source (the kernel with the CPU switch and a module init)."""
    source = runpy.run_path(str(HERE / "kernels" / "pencil_beam_source.py"))["CUDA_SOURCE"]
    text = "#define PB_CPU_TWIN 1\n" + MODULE_INIT + source
    path = HERE / GENERATED
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return GENERATED.as_posix()


def compile_args() -> list[str]:
    """The NumPy kernels' float32 arithmetic, operation by operation (no fused multiply-adds);
    sqrtf without errno (its argument is clipped to [0, 1]); on x86-64 the 2009 baseline
    (SSE4.2: ceilf and floorf in one instruction)."""
    args = ["-O3", "-ffp-contract=off", "-fno-math-errno"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        args.append("-march=x86-64-v2")
    return args


setup(ext_modules=[Extension(
    "kernels._pencil_beam_cpu", [generated_source()], language="c++",
    extra_compile_args=compile_args(), optional=True)])
