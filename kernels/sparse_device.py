"""Sparse matrices on the device for the optimizer's products (cuSPARSE through CuPy).

:class:`SpotMatrix` holds a CSR matrix (rows x spots) and its transpose as a second CSR
matrix, so that both products of the optimizer (``A @ w`` and ``A.T @ g``) are row-parallel
CSR SpMVs. It works on NumPy/SciPy too (then the transpose is SciPy's cheap CSC view), so the
optimizer has one code path: ``m @ w`` and ``m.T @ g`` in the namespace of the matrix.

On the host the optimizer's matrices are kept in float32 (pencil-beam doses are known to far
fewer digits; the dose and a model sum share their column indices, so 12 bytes an entry
instead of 20: these matrices are most of a plan's memory) and products return float64. A
large matrix is cut into row blocks that share its arrays (:class:`HostRowBlocks`), and both
products run the blocks on a thread pool: SciPy's sparse products release the GIL, so the
optimizer's products use every core the engine may (measured on 2 cores: 13.5 -> 8.8 ms for a
15 M-entry product). :func:`joint_products` multiplies the dose and model-sum matrices together,
in one compiled pass over their shared structure where it can (:mod:`kernels.spot_products`).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from kernels import spot_products
from kernels.backend import array_namespace, cupy_module
from kernels.spot_products import MAX_MATRICES, JointCsr


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


@dataclass(frozen=True, eq=False)
class RowStack:
    """Matrices of the same spots stacked by rows, without copying them (the optimizer's sample
    points and the points a refinement adds); ``@`` and ``.T`` as for the stacked matrix.

    Attributes
    ----------
    parts : tuple of SpotMatrix-like
        (rows_i, spots) matrices with ``@`` and ``.T @``, all on one device.
    transposed : bool
        Stands for the stack's transpose: ``@`` sums the parts' transposed products.
    """

    parts: tuple[Any, ...]
    transposed: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        rows, spots = sum(p.shape[0] for p in self.parts), self.parts[0].shape[1]
        return (spots, rows) if self.transposed else (rows, spots)

    @property
    def T(self) -> RowStack:
        return RowStack(self.parts, not self.transposed)

    @property
    def nnz(self) -> int:
        return sum(int(p.nnz) for p in self.parts)

    def __matmul__(self, x: Any) -> Any:
        xp = array_namespace(x)
        if not self.transposed:
            return xp.concatenate([p @ x for p in self.parts])
        out, start = None, 0
        for p in self.parts:
            stop = start + p.shape[0]
            part = p.T @ x[start:stop]
            out, start = part if out is None else out + part, stop
        return out


#: A transposed product of :class:`ActiveRows` takes only the rows of a non-zero vector entry
#: while they are at most this share of the rows (copying them costs about what reading them
#: costs, so beyond it the whole product is cheaper).
ACTIVE_ROWS_SHARE = 0.3


@dataclass(frozen=True, eq=False)
class ActiveRows:
    """A host :class:`SpotMatrix` whose transposed product reads only the rows where the vector
    is non-zero.

    For the optimizer's points that only one-sided objectives see (a maximum dose on a ring or
    an organ, a minimum): their gradient is zero wherever the objective is met, which is most
    of them (on the TG-119 plan 91 % of those rows at the start, 97 % later), so ``A.T @ g``
    copies the few active rows and multiplies those (10 instead of 29 ms for its 38 M entries).

    Attributes
    ----------
    inner : SpotMatrix
        The whole matrix (a host :class:`HostRowBlocks` pair); ``@`` is its product.
    transposed : bool
        Stands for the transpose.
    """

    inner: SpotMatrix
    transposed: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        r, c = self.inner.shape
        return (c, r) if self.transposed else (r, c)

    @property
    def T(self) -> ActiveRows:
        return ActiveRows(self.inner, not self.transposed)

    @property
    def nnz(self) -> int:
        return self.inner.nnz

    def __matmul__(self, x: Any) -> Any:
        if not self.transposed:
            return self.inner @ x
        v = np.asarray(x)
        active = np.flatnonzero(v)
        full = self.inner.matrix.full
        if active.size > ACTIVE_ROWS_SHARE * full.shape[0]:
            return self.inner.T @ v
        rows = full[active]  # a copy of the active rows only
        return np.asarray(rows.T @ v[active].astype(full.dtype), dtype=np.float64)


def total_nbytes(matrices: Iterable[Any]) -> int:
    """Bytes of ``matrices`` (:class:`SpotMatrix`, or :class:`RowStack` / :class:`ActiveRows`
    of them) and their transposes, each array counted once (the dose and the model sums share
    their column indices; a host transpose is a view)."""
    seen: dict[tuple[int, int], int] = {}
    for m in _spot_matrices(matrices):
        for part in (m.matrix, m.transposed):
            for a in (part.data, part.indices, part.indptr):
                address = (int(a.data.ptr) if hasattr(a.data, "ptr")
                           else int(a.__array_interface__["data"][0]))
                seen[(address, int(a.nbytes))] = int(a.nbytes)
    return sum(seen.values())


def _spot_matrices(matrices: Iterable[Any]) -> Iterable[SpotMatrix]:
    for m in matrices:
        if isinstance(m, RowStack):
            yield from _spot_matrices(m.parts)
        elif isinstance(m, ActiveRows):
            yield m.inner
        else:
            yield m


#: Below this many entries a product is not worth splitting over threads.
MIN_ENTRIES_PER_THREAD = 500_000


class HostRowBlocks:
    """A SciPy CSR matrix (rows x spots) as row blocks of about equal entries that share its
    arrays; ``@`` runs the blocks on ``pool`` (in the calling thread without one) and joins
    their rows. With ``transposed`` it stands for the matrix's transpose: ``@`` sums the
    blocks' transposed products. A product is computed in the matrix's precision (the vector
    cast to it; SciPy would otherwise convert the whole matrix per product) and returned as
    float64.

    Attributes
    ----------
    full : scipy.sparse.csr_array
        The whole matrix (float32 or float64).
    blocks : list of (row start, csr_array)
        Consecutive row blocks, views of ``full``'s arrays.
    """

    def __init__(self, full: sp.csr_array, blocks: list[tuple[int, sp.csr_array]],
                 pool: Executor | None, transposed: bool = False) -> None:
        self.full, self.blocks, self._pool, self._transposed = full, blocks, pool, transposed
        self.data, self.indices, self.indptr = full.data, full.indices, full.indptr
        # The blocks' transposes as CSC views, made once: taking ``.T`` per product made the
        # TG-119 optimization 2x slower than one thread (measured; cause not pinned down).
        self._block_transposes = [(a, _csc_view_of_transpose(b)) for a, b in blocks]

    @property
    def shape(self) -> tuple[int, int]:
        r, c = self.full.shape
        return (c, r) if self._transposed else (r, c)

    @property
    def nnz(self) -> int:
        return int(self.full.nnz)

    @property
    def transposed(self) -> bool:
        """Whether this stands for the matrix's transpose."""
        return self._transposed

    @property
    def pool(self) -> Executor | None:
        """The thread pool the blocks' products run on (None: the calling thread)."""
        return self._pool

    @property
    def T(self) -> HostRowBlocks:
        flipped = copy.copy(self)
        flipped._transposed = not self._transposed
        return flipped

    def __matmul__(self, x: Any) -> Any:
        v = np.asarray(x, dtype=self.data.dtype)
        run = map if self._pool is None else self._pool.map
        if self._transposed:
            parts = run(lambda blk: blk[1] @ v[blk[0]:blk[0] + blk[1].shape[1]],
                        self._block_transposes)
            return np.sum([p.astype(np.float64) for p in parts], axis=0)
        return np.concatenate([p.astype(np.float64)
                               for p in run(lambda blk: blk[1] @ v, self.blocks)])


def _csc_view_of_transpose(m: sp.csr_array) -> sp.csc_array:
    """``m.T`` as a CSC array on ``m``'s own arrays (no copy)."""
    t = sp.csc_array((m.shape[1], m.shape[0]), dtype=m.dtype)
    t.data, t.indices, t.indptr = m.data, m.indices, m.indptr
    return t


def row_blocks(m: sp.csr_array, n_blocks: int) -> list[tuple[int, sp.csr_array]]:
    """``m`` cut into ``n_blocks`` consecutive row blocks of about equal entries, each a CSR
    view of ``m``'s data and indices (only its row pointers are new)."""
    cuts = np.searchsorted(m.indptr, np.linspace(0, m.nnz, n_blocks + 1)[1:-1])
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < m.shape[0]}), m.shape[0]]
    out = []
    for a, b in itertools.pairwise(bounds):
        s, e = int(m.indptr[a]), int(m.indptr[b])
        # SciPy's (data, indices, indptr) constructor copies even with copy=False (SciPy
        # 1.17): an empty block is given the views instead.
        block = sp.csr_array((b - a, m.shape[1]), dtype=m.dtype)
        block.data, block.indices, block.indptr = (m.data[s:e], m.indices[s:e],
                                                   m.indptr[a:b + 1] - s)
        out.append((a, block))
    return out


def host_spot_matrices(matrices: Sequence[sp.csr_array], threads: int = 1
                       ) -> tuple[SpotMatrix, ...]:
    """SciPy CSR matrices (float32 or float64, kept as they are) for the optimizer's products;
    with ``threads`` > 1 and enough entries, products over row blocks on one thread pool of
    that many threads that the matrices share (:class:`HostRowBlocks`)."""
    n_blocks = [max(1, min(threads, m.nnz // MIN_ENTRIES_PER_THREAD)) for m in matrices]
    pool = (None if max(n_blocks, default=1) < 2
            else ThreadPoolExecutor(max_workers=max(n_blocks), thread_name_prefix="spot-matrix"))
    out = []
    for m, n in zip(matrices, n_blocks, strict=True):
        blocked = HostRowBlocks(m, row_blocks(m, n), pool if n > 1 else None)
        out.append(SpotMatrix(blocked, blocked.T))
    return tuple(out)


class JointProducts(Protocol):
    """The optimizer's products of a dose matrix and its model-sum matrices (same rows and
    spots) together: ``forward(w)`` gives ``(dose @ w, (B_k @ w, ...))`` and
    ``backward(u, (v_k, ...))`` gives ``dose.T @ u + sum_k B_k.T @ v_k``, float64 in the
    matrices' namespace (:func:`joint_products` makes the fastest available)."""

    def forward(self, w: Any) -> tuple[Any, tuple[Any, ...]]: ...

    def backward(self, u: Any, v: Sequence[Any]) -> Any: ...


class SeparateProducts:
    """:class:`JointProducts` of any matrices with ``@`` and ``.T @`` (GPU, SciPy,
    :class:`RowStack`, :class:`ActiveRows`), one matrix at a time."""

    def __init__(self, dose: Any, sums: Sequence[Any]) -> None:
        self.dose, self.sums = dose, tuple(sums)

    def forward(self, w: Any) -> tuple[Any, tuple[Any, ...]]:
        return self.dose @ w, tuple(b @ w for b in self.sums)

    def backward(self, u: Any, v: Sequence[Any]) -> Any:
        grad = self.dose.T @ u
        for b, vk in zip(self.sums, v, strict=True):
            grad = grad + b.T @ vk
        return grad


class _StackedProducts:
    """Joint products of row-stacked parts, each part's own."""

    def __init__(self, parts: Sequence[JointProducts], rows: Sequence[int]) -> None:
        self.parts, self.cuts = tuple(parts), np.cumsum([0, *rows])

    def forward(self, w: Any) -> tuple[Any, tuple[Any, ...]]:
        xp = array_namespace(w)
        done = [p.forward(w) for p in self.parts]
        return (xp.concatenate([d for d, _ in done]),
                tuple(xp.concatenate(k) for k in zip(*(s for _, s in done), strict=True)))

    def backward(self, u: Any, v: Sequence[Any]) -> Any:
        grad = None
        for p, a, b in zip(self.parts, self.cuts[:-1], self.cuts[1:], strict=True):
            part = p.backward(u[a:b], [vk[a:b] for vk in v])
            grad = part if grad is None else grad + part
        return grad


class _CompiledProducts:
    """Host float32 matrices on one CSR structure, multiplied in one pass over it
    (:class:`kernels.spot_products.JointCsr`, on the dose matrix's row blocks and pool)."""

    def __init__(self, dose: HostRowBlocks, sums: Sequence[HostRowBlocks]) -> None:
        cuts = [a for a, _ in dose.blocks] + [dose.full.shape[0]]
        self.joint = JointCsr(dose.indptr, dose.indices, [m.data for m in (dose, *sums)],
                              dose.full.shape[1], cuts, dose.pool)

    def forward(self, w: Any) -> tuple[Any, tuple[Any, ...]]:
        dose, *sums = self.joint.forward(w)
        return dose, tuple(sums)

    def backward(self, u: Any, v: Sequence[Any]) -> Any:
        return self.joint.backward([u, *v])


def joint_products(dose: Any, sums: Sequence[Any]) -> JointProducts:
    """The products of ``dose`` and ``sums`` (the optimizer's matrices, as
    :class:`JointProducts` describes them) in the fastest form available: host float32 matrices
    that share their column indices and row pointers (what the CPU engine builds) in one
    compiled pass over them (:mod:`kernels.spot_products`; their :class:`ActiveRows`
    wrappers are dropped: that pass skips the rows without a gradient itself), row stacks part
    by part, anything else matrix by matrix."""
    matrices = (dose, *sums)
    if all(isinstance(m, RowStack) and not m.transposed for m in matrices):
        n_parts = len(dose.parts)
        if all(len(m.parts) == n_parts for m in matrices):
            return _StackedProducts(
                [joint_products(dose.parts[i], [m.parts[i] for m in sums])
                 for i in range(n_parts)], [p.shape[0] for p in dose.parts])
    inner = [m.inner if isinstance(m, ActiveRows) and not m.transposed else m
             for m in matrices]
    blocks = [m.matrix if isinstance(m, SpotMatrix) else None for m in inner]
    host = [b for b in blocks if isinstance(b, HostRowBlocks) and not b.transposed
            and b.data.dtype == np.float32]
    if (len(host) == len(blocks) <= MAX_MATRICES and _one_structure(host)
            and spot_products.available()):
        return _CompiledProducts(host[0], host[1:])
    return SeparateProducts(dose, sums)


def _one_structure(matrices: Sequence[HostRowBlocks]) -> bool:
    """Whether the matrices have the same shape, column indices and row pointers (the same
    arrays, as the CPU engine makes them)."""
    first = matrices[0]
    return all(m.full.shape == first.full.shape and _same_array(m.indices, first.indices)
               and _same_array(m.indptr, first.indptr) for m in matrices[1:])


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` are views of the same memory with the same layout."""
    return (a is b or (a.dtype == b.dtype and a.shape == b.shape and a.strides == b.strides
                       and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]))


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
