"""A stand-in GPU for the tests: the GPU engine's code run on the CPU (tests only).

The CUDA kernel's index arithmetic is checked against its NumPy twin by
tests/test_pencil_beam_kernel.py; what runs around it on a GPU (the engine's ``device ==
"gpu"`` branches, :mod:`planning.engine.gpu_influence`, the device matrices of the optimizer)
needs CuPy and a CUDA device, which CI does not have. :func:`install` lets that code run here:
``cupy`` is a module whose arrays are NumPy's (it reports one device and ample free memory),
``cupyx.scipy.sparse`` is SciPy's, and each launch of the fused kernel runs the kernel's source
compiled for the CPU (tests/cuda_twin.py). What it checks: the glue's shapes, dtypes, offsets,
argument order and results against the CPU engine; what it cannot: CuPy's own behaviour, the
device's memory, NVRTC's compilation and the timings (bench/gpu_check.sh on a lent GPU).
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest
import scipy.sparse

from kernels import backend, pencil_beam_gpu
from kernels.backend import DeviceUnavailableError
from kernels.influence import BeamVoxels
from kernels.pencil_beam_gpu import PackedLayers
from tests import cuda_twin

#: Free device memory the stand-in reports, bytes.
FREE_BYTES = 64 * 2**30


class _Runtime:
    @staticmethod
    def getDeviceCount() -> int:  # CuPy's name
        return 1

    @staticmethod
    def memGetInfo() -> tuple[int, int]:  # CuPy's name
        return FREE_BYTES, FREE_BYTES


class _Pool:
    @staticmethod
    def free_bytes() -> int:
        return 0


class _NumpyAsCupy(types.ModuleType):
    """``cupy`` with NumPy's arrays and functions."""

    def __init__(self) -> None:
        super().__init__("cupy")
        self.cuda = types.SimpleNamespace(runtime=_Runtime())

    @staticmethod
    def asnumpy(a: Any) -> np.ndarray:
        return np.array(a, copy=True)  # a copy, as from a device

    def get_default_memory_pool(self) -> _Pool:
        return _Pool()

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def _launch(mode: int, voxels: BeamVoxels, packed: PackedLayers, *, with_let: bool,
            counts: Any = None, start: Any = None, model_stride: int = 0,
            acc_stride: int = 0, **arrays: Any) -> None:
    """:func:`kernels.pencil_beam_gpu._launch` on the CPU twin of the kernel."""
    del model_stride, acc_stride  # the twin reads them from the arrays' shapes
    if voxels.n:
        cuda_twin.run(mode, voxels, packed, with_let=with_let, counts=counts, start=start,
                      **arrays)


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``device="gpu"`` run on the CPU for the rest of the test (skips without g++)."""
    if cuda_twin.library() is None:
        pytest.skip("no C++ compiler (g++) for the CPU twin of the CUDA kernel")
    fake = _NumpyAsCupy()
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = types.SimpleNamespace(sparse=scipy.sparse)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    monkeypatch.setitem(sys.modules, "cupyx.scipy", cupyx.scipy)
    monkeypatch.setitem(sys.modules, "cupyx.scipy.sparse", scipy.sparse)
    # A GPU engine's namespace is not NumPy itself, so that its host-only branches (``xp is
    # np``) stay off as with CuPy; its arrays are NumPy's all the same. A CPU engine keeps
    # NumPy.
    cpu_namespace = backend.namespace_for
    monkeypatch.setattr(backend, "namespace_for", lambda device: (
        fake if backend.resolve_device(device) == "gpu" else cpu_namespace(device)))
    monkeypatch.setattr(pencil_beam_gpu, "_launch", _launch)


def use_gpu(kind: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """For a GPU test parametrized over ``kind``: "cuda", a real device (the test skips
    without one), or "twin", this stand-in (skips without g++). Returns ``kind``."""
    if kind == "twin":
        install(monkeypatch)
    else:
        try:
            backend.resolve_device("gpu")
        except DeviceUnavailableError as exc:
            pytest.skip(f"no CUDA device: {exc}")
    return kind
