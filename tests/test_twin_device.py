"""The stand-in GPU keeps CuPy's rules (tests/twin_device.py), so that the GPU tests that run
on it catch what a CUDA device would refuse."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import backend
from tests import twin_device


@pytest.fixture
def xp(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    twin_device.install(monkeypatch)
    return backend.namespace_for("gpu")


def test_device_arrays_never_become_host_arrays_implicitly(xp) -> None:  # type: ignore[no-untyped-def]
    a = xp.arange(4.0)
    for convert in (np.asarray, np.array, np.ascontiguousarray):
        with pytest.raises(TypeError, match="Implicit conversion"):
            convert(a)
    host = np.ones(4)
    for mixed in (lambda: a + host, lambda: host * a, lambda: xp.maximum(a, host),
                  lambda: np.concatenate([a, host]), lambda: xp.take(a, np.array([0, 1]))):
        with pytest.raises(TypeError):
            mixed()
    assert np.array_equal(a.get(), np.arange(4.0))
    assert np.array_equal(backend.to_numpy(a), np.arange(4.0))


def test_device_results_stay_on_the_device(xp) -> None:  # type: ignore[no-untyped-def]
    a = xp.asarray(np.arange(6.0).reshape(2, 3))  # host arrays go to the device explicitly
    device = type(a)
    assert type(a).__module__ == "cupy" and backend.array_namespace(a).__name__ == "cupy"
    for result in (a + 1.0, np.sqrt(a), np.sum(a), xp.sum(a), a[0, 1], a[:, 1], a.T,
                   xp.concat([a, a]), xp.cumulative_sum(a[0]), xp.permute_dims(a, (1, 0))):
        assert type(result) is device
    assert float(xp.sum(a)) == 15.0 and int(a[1, 2]) == 5
    a[0] = np.array([9.0, 9.0, 9.0])  # an assigned host value is copied over, as in CuPy
    assert a.get()[0].tolist() == [9.0, 9.0, 9.0]
    assert isinstance(a.data.ptr, int) and not hasattr(a, "__array_interface__")


def test_a_launch_refuses_host_arrays(xp) -> None:  # type: ignore[no-untyped-def]
    """What a CUDA launch of the fused kernel would refuse: a NumPy array among its arguments."""
    from kernels import pencil_beam_gpu

    with pytest.raises(TypeError, match="Unsupported type"):
        pencil_beam_gpu._launch(0, _Voxels(), None, with_let=False,  # type: ignore[arg-type]
                                counts=np.zeros(1, np.int32))


class _Voxels:
    n = 1


def test_only_functions_cupy_has(xp) -> None:  # type: ignore[no-untyped-def]
    """A NumPy function outside the stand-in's list of CuPy's (here one CuPy lacks) fails."""
    with pytest.raises(AttributeError, match="_CUPY_FUNCTIONS"):
        xp.busday_count("2026-12-01", "2026-12-06")
    assert float(xp.sum(xp.cumsum(xp.ones(3)))) == 6.0
