"""Sparse matrices on the device for the optimizer's products (cuSPARSE through CuPy).

:class:`SpotMatrix` holds a CSR matrix (rows x spots) and its transpose as a second CSR
matrix, so that both products of the optimizer (``A @ w`` and ``A.T @ g``) are row-parallel
CSR SpMVs. It works on NumPy/SciPy too (then the transpose is SciPy's cheap CSC view), so the
optimizer has one code path: ``m @ w`` and ``m.T @ g`` in the namespace of the matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from kernels.backend import cupy_module


@dataclass(frozen=True, eq=False)
class SpotMatrix:
    """A (rows, spots) matrix with a precomputed transpose; ``@`` and ``.T`` as for arrays."""

    matrix: Any
    transposed: Any

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.matrix.shape)

    @property
    def T(self) -> SpotMatrix:
        return SpotMatrix(self.transposed, self.matrix)

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    @property
    def nbytes(self) -> int:
        """Bytes of the matrix and of its transpose where that is a copy."""
        def size(m: Any) -> int:
            return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)

        copy = not (isinstance(self.matrix.data, np.ndarray)
                    and np.shares_memory(self.matrix.data, self.transposed.data))
        return size(self.matrix) + (size(self.transposed) if copy else 0)

    def __matmul__(self, x: Any) -> Any:
        return self.matrix @ x


def host_spot_matrix(m: sp.csr_array) -> SpotMatrix:
    """A SciPy CSR matrix as float64 (the optimizer's products then need no conversion)."""
    m64 = m if m.dtype == np.float64 else m.astype(np.float64)
    return SpotMatrix(m64, m64.T)


def device_spot_matrix(data: Any, indices: Any, indptr: Any, shape: tuple[int, int]
                       ) -> SpotMatrix:
    """A float64 CSR matrix and its CSR transpose on the GPU from CuPy arrays.

    Parameters
    ----------
    data : (nnz,) float array
    indices : (nnz,) int32 array
        Column of each entry.
    indptr : (rows + 1,) int array
    shape : (rows, spots)
    """
    cp = cupy_module()
    import cupyx.scipy.sparse as csp

    m = csp.csr_matrix((cp.asarray(data, dtype=cp.float64), cp.asarray(indices, dtype=cp.int32),
                        cp.asarray(indptr, dtype=cp.int32)), shape=shape)
    return SpotMatrix(m, m.T.tocsr())


def device_csr_to_host(data: Any, indices: Any, indptr: Any, shape: tuple[int, int]
                       ) -> sp.csr_array:
    """A SciPy CSR matrix from device arrays (copied to the host)."""
    cp = cupy_module()
    return sp.csr_array((cp.asnumpy(data), cp.asnumpy(indices), cp.asnumpy(indptr)),
                        shape=shape)


def warm_up() -> None:
    """Initialise cuSPARSE and compile CuPy's kernels of the optimizer's products now."""
    cp = cupy_module()
    m = device_spot_matrix(cp.ones(2), cp.array([0, 1], dtype=cp.int32),
                           cp.array([0, 1, 2], dtype=cp.int32), (2, 2))
    (m.T @ (m @ cp.ones(2))).get()
