"""Compute-device selection and the array-namespace helpers of the kernels.

This is the only module of IonPlan that imports CuPy, and only inside functions, so that a CPU
installation never needs it. Nothing here keeps state: the caller chooses the device and passes
arrays; every kernel works in the namespace of the arrays it receives ("array type in equals
array type out").

CuPy arrays get CuPy's namespace, completed by :func:`with_standard_names` with the few
array-API spellings (``cumulative_sum``, ``concat``...) that CuPy releases before its NumPy 2
alignment lack.

Because ``kernels`` must not import ``planning`` (imports point app -> planning -> kernels),
an unavailable device raises :class:`DeviceUnavailableError`, a ``RuntimeError``; the planning
layer turns it into ``planning.errors.DeviceError``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

DEVICES = ("auto", "cpu", "gpu")

#: Array-API spellings the kernels use that older CuPy releases (NumPy 1 era) lack.
_STANDARD_NAMES = ("astype", "concat", "permute_dims", "cumulative_sum")


class _StandardNames:
    """A namespace with the array-API functions the kernels need added where missing.

    Attribute access falls through to the wrapped module; only the missing standard names are
    supplied, from the classic NumPy-style functions (``concatenate``, ``transpose``,
    ``cumsum``, the ``astype`` method).
    """

    def __init__(self, module: ModuleType) -> None:
        self._module = module
        self.__name__ = module.__name__

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def astype(self, x: Any, dtype: Any, /, *, copy: bool = True) -> Any:
        return x.astype(dtype, copy=copy)

    def concat(self, arrays: Any, /, *, axis: int = 0) -> Any:
        return self._module.concatenate(arrays, axis=axis)

    def permute_dims(self, x: Any, /, axes: tuple[int, ...]) -> Any:
        return self._module.transpose(x, axes)

    def cumulative_sum(self, x: Any, /, *, axis: int | None = None, dtype: Any = None,
                       include_initial: bool = False) -> Any:
        if axis is None:
            if x.ndim != 1:
                raise ValueError("axis is required for arrays of more than one dimension")
            axis = 0
        out = self._module.cumsum(x, axis=axis, dtype=dtype)
        if not include_initial:
            return out
        shape = list(out.shape)
        shape[axis] = 1
        zero = self._module.zeros(tuple(shape), dtype=out.dtype)
        return self._module.concatenate([zero, out], axis=axis)


def with_standard_names(module: Any) -> Any:
    """``module`` itself if it has every array-API name the kernels use, else a shim."""
    if all(hasattr(module, n) for n in _STANDARD_NAMES):
        return module
    return _StandardNames(module)


class DeviceUnavailableError(RuntimeError):
    """The requested compute device cannot be used (no CuPy, or no CUDA device)."""


def _cupy_with_device() -> tuple[ModuleType | None, str]:
    """CuPy if it imports and sees a CUDA device, else None and the reason."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library failing to load
        return None, f"CuPy is not installed or failed to import ({exc.__class__.__name__}: {exc})"
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        return None, f"CuPy found no usable CUDA driver ({exc.__class__.__name__}: {exc})"
    if n < 1:
        return None, "CuPy found no CUDA device"
    return cupy, ""


def resolve_device(device: str) -> str:
    """Turn a device request into the device to use.

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"}
        ``"auto"`` picks ``"gpu"`` when CuPy imports and a CUDA device is present, else ``"cpu"``.

    Returns
    -------
    str
        ``"cpu"`` or ``"gpu"``.

    Raises
    ------
    ValueError
        If ``device`` is not one of the accepted names.
    DeviceUnavailableError
        If ``"gpu"`` is requested and no CUDA device is usable through CuPy.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "cpu":
        return "cpu"
    cupy, reason = _cupy_with_device()
    if cupy is not None:
        return "gpu"
    if device == "gpu":
        raise DeviceUnavailableError(
            f"GPU computation was requested but is not available: {reason}. "
            "Install the 'gpu' extra (cupy-cuda12x) on a machine with an NVIDIA GPU, "
            "or choose the 'cpu' or 'auto' device."
        )
    return "cpu"


def namespace_for(device: str) -> ModuleType:
    """Array module for a device: NumPy for ``"cpu"``, CuPy for ``"gpu"`` (after resolving)."""
    resolved = resolve_device(device)
    if resolved == "cpu":
        return np
    cupy, _ = _cupy_with_device()
    assert cupy is not None  # resolve_device already checked
    return with_standard_names(cupy)


def cupy_module() -> ModuleType:
    """The CuPy module, for the GPU kernels (raises DeviceUnavailableError without a device)."""
    cupy, reason = _cupy_with_device()
    if cupy is None:
        raise DeviceUnavailableError(f"the GPU kernels need CuPy and a CUDA device: {reason}")
    return cupy


def array_namespace(*arrays: Any) -> Any:
    """The common array namespace of the given arrays (Python scalars and None are skipped).

    Works for NumPy 2, CuPy and array_api_strict arrays through ``__array_namespace__``.

    Raises
    ------
    TypeError
        If no array is given, or the arrays come from different namespaces.
    """
    spaces: list[Any] = []
    for a in arrays:
        if a is None or isinstance(a, (bool, int, float, complex)):
            continue
        get = getattr(a, "__array_namespace__", None)
        if get is not None:
            ns = get()
        elif type(a).__module__.startswith("cupy"):
            import cupy  # arrays of CuPy releases without __array_namespace__

            ns = cupy
        else:
            raise TypeError(f"{type(a).__name__} is not an array with an array namespace")
        if getattr(ns, "__name__", "").startswith("cupy"):
            ns = with_standard_names(ns)
        if all(getattr(ns, "_module", ns) is not getattr(s, "_module", s) for s in spaces):
            spaces.append(ns)
    if not spaces:
        raise TypeError("array_namespace needs at least one array")
    if len(spaces) > 1:
        names = ", ".join(s.__name__ for s in spaces)
        raise TypeError(f"arrays from different namespaces cannot be mixed: {names}")
    return spaces[0]


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy or view of an array from any supported namespace (CuPy copies to the host)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return np.asarray(x.get())
    try:
        return np.from_dlpack(x)
    except (TypeError, AttributeError, BufferError, RuntimeError):
        return np.asarray(x)
