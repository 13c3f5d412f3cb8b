"""The CUDA pencil-beam kernel's source compiled as C++ for the CPU (tests only).

``kernels.pencil_beam_source.CUDA_SOURCE`` keeps its per-voxel body in a ``__device__``
function; with ``-DPB_CPU_TWIN`` it compiles with g++ into a loop over the voxels. The tests run
it through ctypes on NumPy arrays to check the kernel's index arithmetic (counts, CSR offsets,
segment bounds, the accumulate mode) against the NumPy kernels of :mod:`kernels.influence` on a
machine without CUDA. Without a C++ compiler the tests that need it skip.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from kernels.influence import BeamVoxels
from kernels.pencil_beam_cpu import call_kernel
from kernels.pencil_beam_gpu import PackedLayers
from kernels.pencil_beam_source import CUDA_SOURCE


@cache
def library() -> ctypes.CDLL | None:
    """The compiled twin, or None without g++."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="ionplan-cuda-twin-"))
    src = folder / "pb.cpp"
    src.write_text(CUDA_SOURCE)
    lib = folder / "pb.so"
    # PB_CPU_BY_COLUMN=0: the per-pair arithmetic of the GPU, not the CPU build's column cache.
    subprocess.run([cxx, "-O1", "-ffp-contract=off", "-DPB_CPU_TWIN", "-DPB_CPU_BY_COLUMN=0",
                    "-shared", "-fPIC",
                    "-x", "c++", str(src), "-o", str(lib)], check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


def run(mode: int, voxels: BeamVoxels, packed: PackedLayers, *, with_let: bool = True,
        start: Any = None, **arrays: Any) -> None:
    """The twin on all voxels (``start``: each voxel's first entry, mode 1); the arrays as
    :func:`kernels.pencil_beam_cpu.call_kernel` takes them."""
    lib = library()
    assert lib is not None
    call_kernel(lib, mode, voxels, packed, 0, voxels.n, with_let=with_let, row_start=start,
                **arrays)
