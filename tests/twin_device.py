"""A stand-in GPU for the tests: the GPU engine's code run on the CPU (tests only).

The CUDA kernel's index arithmetic is checked against its NumPy twin by
tests/test_pencil_beam_kernel.py; what runs around it on a GPU (the engine's ``device ==
"gpu"`` branches, :mod:`planning.engine.gpu_influence`, the device matrices of the optimizer)
needs CuPy and a CUDA device, which CI does not have. :func:`install` lets that code run here:
``cupy`` is a module of NumPy's functions over :class:`DeviceArray`, an array that keeps
CuPy's rules (no implicit conversion to NumPy, no mixing with host arrays, 0-d arrays from
reductions, ``.get()``, ``.data.ptr``; it reports one device and ample free memory; the
array-API names older CuPy releases lack are hidden so that the engine's shim for them runs),
``cupyx.scipy.sparse.csr_matrix`` is SciPy's over those arrays, and each launch of the fused
kernel runs the kernel's source compiled for the CPU (tests/cuda_twin.py), refusing host arrays
as a CUDA launch does. What it checks: the glue's shapes, dtypes, offsets, argument order, what
stays on the device, and results against the CPU engine; what it cannot: CuPy's own behaviour
(its ``cupy`` offers only NumPy functions CuPy has, :data:`_CUPY_FUNCTIONS`, but one CuPy
implements differently would pass here), the device's memory, NVRTC's compilation and the
timings (bench/gpu_check.sh on a lent GPU).
"""

from __future__ import annotations

import dataclasses
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


_NO_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
                "construct a NumPy array explicitly.")  # CuPy's words


def _wrap(x: Any) -> Any:
    """NumPy results as the device's: arrays and NumPy scalars (CuPy's reductions and scalar
    indexing give 0-d device arrays) as :class:`DeviceArray`, containers element-wise."""
    if isinstance(x, np.ndarray):
        return DeviceArray(x)
    if isinstance(x, np.generic):
        return DeviceArray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _unwrap(x: Any, *, host_arrays: bool = False) -> Any:
    """The NumPy arrays behind device arrays. A host array (NumPy, not 0-d) among device
    arguments is refused as CuPy refuses it, unless ``host_arrays`` (``cupy.asarray`` and
    friends, indices and assigned values)."""
    if isinstance(x, DeviceArray):
        return x._a
    if isinstance(x, np.ndarray) and x.ndim and not host_arrays:
        raise TypeError(f"Unsupported type {type(x)}")  # CuPy's message
    if isinstance(x, tuple):
        return tuple(_unwrap(v, host_arrays=host_arrays) for v in x)
    if isinstance(x, list):
        return [_unwrap(v, host_arrays=host_arrays) for v in x]
    if isinstance(x, dict):
        return {k: _unwrap(v, host_arrays=host_arrays) for k, v in x.items()}
    return x


class DeviceArray:
    """An array on the stand-in device: NumPy's data under CuPy's rules.

    Like ``cupy.ndarray`` it refuses to become a NumPy array implicitly (``np.asarray``,
    ``np.array``, a NumPy function given a mix of host and device arrays, an operator with a host
    array): only :meth:`get` and ``cupy.asnumpy`` copy it to the host. NumPy functions and
    ufuncs of device arrays alone run and give device arrays, as CuPy's ``__array_function__``
    and ``__array_ufunc__`` do; reductions and scalar indexing give 0-d device arrays.
    """

    __module__ = "cupy"  # as CuPy's arrays: kernels.backend tells devices by the module
    __slots__ = ("_a",)
    __array_priority__ = 100.0

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def get(self) -> np.ndarray:
        return self._a.copy()

    @property
    def data(self) -> Any:
        """CuPy's memory pointer (``.ptr``), not a buffer."""
        return types.SimpleNamespace(ptr=int(self._a.__array_interface__["data"][0]))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(_NO_IMPLICIT)

    def __array_namespace__(self, api_version: Any = None) -> Any:
        return sys.modules["cupy"]

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs)))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # NumPy's __array_interface__ and the like: not on a device
            raise AttributeError(name)
        value = getattr(self._a, name)
        if callable(value):
            return lambda *args, **kwargs: _wrap(value(*_unwrap(args), **_unwrap(kwargs)))
        return _wrap(value)

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._a[_unwrap(key, host_arrays=True)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_unwrap(key, host_arrays=True)] = _unwrap(value, host_arrays=True)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (DeviceArray(np.asarray(v)) for v in self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __index__(self) -> int:
        return self._a.__index__()

    def __repr__(self) -> str:
        return f"stand-in device array({self._a!r})"


def _operator(name: str) -> Any:
    def op(self: DeviceArray, *other: Any) -> Any:
        return _wrap(getattr(self._a, name)(*_unwrap(other)))
    return op


def _in_place(name: str) -> Any:
    def op(self: DeviceArray, other: Any) -> DeviceArray:
        getattr(self._a, name)(_unwrap(other))
        return self
    return op


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor", "lshift", "rshift"):
    for _form in (f"__{_name}__", f"__r{_name}__"):
        setattr(DeviceArray, _form, _operator(_form))
    setattr(DeviceArray, f"__i{_name}__", _in_place(f"__i{_name}__"))
for _form in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__", "__neg__", "__pos__",
              "__abs__", "__invert__"):
    setattr(DeviceArray, _form, _operator(_form))


class _DeviceCsr:
    """``cupyx.scipy.sparse.csr_matrix`` of the stand-in: SciPy's matrix over device arrays."""

    def __init__(self, arg: Any, shape: tuple[int, int] | None = None) -> None:
        self._m = (arg if scipy.sparse.issparse(arg)
                   else scipy.sparse.csr_matrix(_unwrap(arg), shape=shape))

    shape = property(lambda self: self._m.shape)
    nnz = property(lambda self: self._m.nnz)
    dtype = property(lambda self: self._m.dtype)
    data = property(lambda self: DeviceArray(self._m.data))
    indices = property(lambda self: DeviceArray(self._m.indices))
    indptr = property(lambda self: DeviceArray(self._m.indptr))
    T = property(lambda self: _DeviceCsr(self._m.T))

    def tocsr(self) -> _DeviceCsr:
        return _DeviceCsr(self._m.tocsr())

    def __matmul__(self, x: Any) -> Any:
        return _wrap(self._m @ _unwrap(x))

    dot = __matmul__


#: NumPy functions that take host arrays when CuPy's namesakes do.
_TAKES_HOST = frozenset({"asarray", "array"})

#: Functions of the stand-in's ``cupy``: NumPy's, where CuPy has a namesake of the same
#: signature (checked against CuPy's API reference). A kernel that calls another one fails on
#: the stand-in; add the name here once CuPy is known to have it.
_CUPY_FUNCTIONS = frozenset("""
    abs absolute add all amax amin any arange argmax argmin argsort array asarray
    ascontiguousarray bincount broadcast_to ceil clip concatenate count_nonzero cumprod cumsum
    diff digitize divide dot empty empty_like exp expand_dims expm1 flatnonzero floor
    floor_divide full full_like hypot interp isfinite isnan lexsort linspace log log1p
    logical_and logical_not logical_or matmul max maximum mean min minimum moveaxis multiply
    nonzero ones ones_like power prod ravel repeat reshape round searchsorted sign sort sqrt
    square squeeze stack std subtract sum take tile transpose true_divide unique var where zeros
    zeros_like
    """.split())

#: Array-API names that CuPy releases before their NumPy 2 alignment lack: hidden, so that the
#: stand-in runs :func:`kernels.backend.with_standard_names`' shim for them.
_NOT_IN_OLDER_CUPY = frozenset({"astype", "concat", "permute_dims", "cumulative_sum"})


class _StandInCupy(types.ModuleType):
    """``cupy`` of the stand-in: NumPy's functions on :class:`DeviceArray`."""

    def __init__(self) -> None:
        super().__init__("cupy")
        self.cuda = types.SimpleNamespace(runtime=_Runtime())
        self.ndarray = DeviceArray

    @staticmethod
    def asnumpy(a: Any) -> np.ndarray:
        return a.get() if isinstance(a, DeviceArray) else np.array(a, copy=True)

    def get_default_memory_pool(self) -> _Pool:
        return _Pool()

    def __getattr__(self, name: str) -> Any:
        if name in _NOT_IN_OLDER_CUPY:
            raise AttributeError(name)
        value = getattr(np, name)
        if isinstance(value, type) or not callable(value):
            return value  # dtypes, constants
        if name not in _CUPY_FUNCTIONS:
            raise AttributeError(f"the stand-in's cupy has no {name!r}: check that CuPy has it, "
                                 "then add it to tests/twin_device.py's _CUPY_FUNCTIONS")
        host = name in _TAKES_HOST
        return lambda *args, **kwargs: _wrap(value(*_unwrap(args, host_arrays=host),
                                                   **_unwrap(kwargs, host_arrays=host)))


#: The fields of the launch's arguments that the kernel reads (device pointers on a GPU).
_KERNEL_FIELDS = {BeamVoxels: ("index", "cu", "cv", "step_u_mm", "step_v_mm", "wepl_mm",
                               "wepl_index", "wepl_frac"),
                  PackedLayers: ("lint", "depth_max_mm", "radius_mm", "tabs", "rank_table",
                                 "spot_iu", "spot_id")}


def _host(obj: Any) -> Any:
    """A copy of the voxels or layers whose kernel arrays are the NumPy arrays behind them; a
    NumPy array among them is refused, as a CUDA launch refuses host memory."""
    return dataclasses.replace(obj, **{name: _unwrap(getattr(obj, name))
                                       for name in _KERNEL_FIELDS[type(obj)]})


def _launch(mode: int, voxels: BeamVoxels, packed: PackedLayers, *, with_let: bool,
            counts: Any = None, start: Any = None, model_stride: int = 0,
            acc_stride: int = 0, **arrays: Any) -> None:
    """:func:`kernels.pencil_beam_gpu._launch` on the CPU twin of the kernel (every array
    argument must be on the device)."""
    del model_stride, acc_stride  # the twin reads them from the arrays' shapes
    host = {k: _unwrap(v) for k, v in dict(arrays, counts=counts, start=start).items()}
    if voxels.n:
        cuda_twin.run(mode, _host(voxels), _host(packed), with_let=with_let, **host)


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``device="gpu"`` run on the CPU for the rest of the test (skips without g++)."""
    if cuda_twin.library() is None:
        pytest.skip("no C++ compiler (g++) for the CPU twin of the CUDA kernel")
    fake = _StandInCupy()
    sparse = types.ModuleType("cupyx.scipy.sparse")
    sparse.csr_matrix = _DeviceCsr  # type: ignore[attr-defined]
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = types.SimpleNamespace(sparse=sparse)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    monkeypatch.setitem(sys.modules, "cupyx.scipy", cupyx.scipy)
    monkeypatch.setitem(sys.modules, "cupyx.scipy.sparse", sparse)
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
