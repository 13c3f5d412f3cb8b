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

import numpy as np

from kernels.influence import BeamVoxels
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


def _p(a: Any) -> Any:
    if a is None:
        return None
    assert isinstance(a, np.ndarray) and a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.c_void_p)


def run(mode: int, voxels: BeamVoxels, packed: PackedLayers, *, with_let: bool = True,
        counts: Any = None, start: Any = None, out_dose: Any = None, out_let: Any = None,
        out_model: Any = None, out_col: Any = None, weights: Any = None, acc_dose: Any = None,
        acc_let: Any = None, acc_model: Any = None) -> None:
    lib = library()
    assert lib is not None
    i64, i32 = ctypes.c_int64, ctypes.c_int32
    stride = 0 if out_model is None else out_model.shape[1]
    acc_stride = 0 if acc_model is None else acc_model.shape[1]
    lib.pb_beam_cpu(
        i32(mode), i64(voxels.n), _p(voxels.cu), _p(voxels.cv), _p(voxels.step_u_mm),
        _p(voxels.step_v_mm), _p(voxels.wepl_mm), _p(voxels.wepl_index), _p(voxels.wepl_frac),
        _p(voxels.index), i32(packed.n_layers), _p(packed.lint), _p(packed.depth_max_mm),
        _p(packed.radius_mm), _p(packed.tabs), _p(packed.rank_table), _p(packed.spot_iu),
        _p(packed.spot_id), i32(packed.n_model), i32(1 if with_let else 0), _p(counts),
        _p(start), _p(out_dose), _p(out_let), _p(out_model), i64(stride), _p(out_col),
        _p(weights), _p(acc_dose), _p(acc_let), _p(acc_model), i64(acc_stride))
