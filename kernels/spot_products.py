"""The optimizer's joint sparse products compiled for the CPU (``kernels._spot_products``).

The dose matrix and the model-sum matrices of the optimizer share their column indices and
row pointers (:class:`kernels.sparse_device.HostRowBlocks` on one CSR structure). SciPy
multiplies them one at a time, reading the indices once per matrix; on two cores the products
run at the memory's bandwidth (docs/architecture.md), so reading them once for all matrices is
what makes them faster: ``setup.py`` compiles :mod:`kernels.spot_products_source` into the
optional extension ``kernels._spot_products``, called here through ctypes (GIL released) on
row blocks in a thread pool. Measured on the TG-119 optimizer matrices (2 threads, dose and one
model sum): 19-22 -> 14-16 ms per forward pair, 20-25 -> 14-18 ms per transposed pair. The
entries are float32, the sums float64 (SciPy sums float32 products in float32).

Without the extension :func:`available` is False and the optimizer multiplies with SciPy.
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from kernels import extension
from kernels.spot_products_source import MAX_MATRICES

_I64, _I32 = ctypes.c_int64, ctypes.c_int32


def _library() -> ctypes.CDLL | None:
    return extension.load("kernels._spot_products")


def available() -> bool:
    """Whether the compiled products were built with this installation."""
    return _library() is not None


def _loaded() -> ctypes.CDLL:
    return extension.require("kernels._spot_products", "spot products")


def _check(status: int) -> None:
    if status != 0:
        raise RuntimeError(f"the compiled spot products refused the call ({status})")


def _pointers(arrays: Sequence[np.ndarray]) -> Any:
    """A C array of the arrays' data pointers (the arrays must stay alive for the call)."""
    return (ctypes.c_void_p * len(arrays))(*(a.ctypes.data for a in arrays))


class JointCsr:
    """``M`` float32 CSR matrices (rows x spots) on one structure, multiplied together.

    Parameters
    ----------
    indptr : (rows + 1,) int32 or int64 array
    indices : (nnz,) int32 array
        Column of each entry.
    data : sequence of M (nnz,) float32 arrays
        The matrices' entries (1 <= M <= ``MAX_MATRICES``).
    n_cols : int
        Spots.
    row_cuts : sequence of int
        Row blocks ``[row_cuts[j], row_cuts[j + 1])`` run in parallel (0 first, rows last).
    pool : Executor or None
        Runs the blocks (the calling thread without one).
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: Sequence[np.ndarray],
                 n_cols: int, row_cuts: Sequence[int], pool: Executor | None) -> None:
        if not 1 <= len(data) <= MAX_MATRICES:
            raise ValueError(f"joint products take 1 to {MAX_MATRICES} matrices, "
                             f"got {len(data)}")
        if indptr.dtype not in (np.int32, np.int64) or indices.dtype != np.int32:
            raise ValueError("joint products take int32 column indices and int32 or int64 "
                             "row pointers")
        nnz = int(indptr[-1])
        for a in (indptr, indices, *data):
            if not a.flags.c_contiguous:
                raise ValueError("joint products take C-contiguous arrays")
        if indices.shape != (nnz,) or any(d.dtype != np.float32 or d.shape != (nnz,)
                                          for d in data):
            raise ValueError(f"every matrix must have {nnz} float32 entries on the indices")
        cuts = [int(c) for c in row_cuts]
        n_rows = indptr.shape[0] - 1
        if cuts[0] != 0 or cuts[-1] != n_rows or any(b < a for a, b in itertools.pairwise(cuts)):
            raise ValueError(f"row cuts must rise from 0 to {n_rows}, got {cuts}")
        if nnz and (int(indices.min()) < 0 or int(indices.max()) >= n_cols):
            raise ValueError(f"column indices outside 0..{n_cols - 1}")
        self.indptr, self.indices, self.data = indptr, indices, tuple(data)
        self.n_rows, self.n_cols = n_rows, int(n_cols)
        self.blocks = [(a, b) for a, b in itertools.pairwise(cuts) if b > a]
        self._pool = pool
        self._data_ptrs = _pointers(self.data)
        self._wide = _I32(1 if indptr.dtype == np.int64 else 0)  # int64 row pointers

    @property
    def n_matrices(self) -> int:
        return len(self.data)

    def _run(self, job: Callable[[tuple[int, int]], Any]) -> list[Any]:
        run = map if self._pool is None or len(self.blocks) < 2 else self._pool.map
        return list(run(job, self.blocks))

    def forward(self, w: Any) -> list[np.ndarray]:
        """``[A_m @ w for each matrix]``, float64 (rows,) each, for ``w`` (spots,)."""
        lib = _loaded()
        x = np.ascontiguousarray(w, dtype=np.float64)
        if x.shape != (self.n_cols,):
            raise ValueError(f"weights of shape {x.shape}, the matrices have {self.n_cols} "
                             "columns")
        out = [np.empty(self.n_rows) for _ in self.data]
        out_ptrs = _pointers(out)

        def block(rows: tuple[int, int]) -> None:
            _check(lib.sp_forward(_I32(self.n_matrices), _I64(rows[0]), _I64(rows[1]),
                                  self._wide,
                           ctypes.c_void_p(self.indptr.ctypes.data),
                           ctypes.c_void_p(self.indices.ctypes.data), self._data_ptrs,
                           ctypes.c_void_p(x.ctypes.data), out_ptrs))

        self._run(block)
        return out

    def backward(self, coefficients: Sequence[Any]) -> np.ndarray:
        """``sum_m A_m.T @ c_m``, float64 (spots,), for one (rows,) vector per matrix."""
        lib = _loaded()
        if len(coefficients) != self.n_matrices:
            raise ValueError(f"{len(coefficients)} vectors for {self.n_matrices} matrices")
        coef = [np.ascontiguousarray(c, dtype=np.float64) for c in coefficients]
        if any(c.shape != (self.n_rows,) for c in coef):
            raise ValueError(f"each vector must have the matrices' {self.n_rows} rows")
        coef_ptrs = _pointers(coef)

        def block(rows: tuple[int, int]) -> np.ndarray:
            out = np.zeros(self.n_cols)
            _check(lib.sp_backward(_I32(self.n_matrices), _I64(rows[0]), _I64(rows[1]),
                                   self._wide,
                            ctypes.c_void_p(self.indptr.ctypes.data),
                            ctypes.c_void_p(self.indices.ctypes.data), self._data_ptrs,
                            coef_ptrs, ctypes.c_void_p(out.ctypes.data)))
            return out

        parts = self._run(block)
        return np.sum(parts, axis=0) if parts else np.zeros(self.n_cols)
