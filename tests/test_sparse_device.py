"""The optimizer's host matrices in row blocks on threads give the plain products."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from kernels import sparse_device
from kernels.sparse_device import HostRowBlocks, host_spot_matrices, row_blocks, total_nbytes


def _matrix(rows: int = 3000, cols: int = 400, seed: int = 3) -> sp.csr_array:
    m = sp.random_array((rows, cols), density=0.05, format="csr", dtype=np.float64,
                        random_state=seed)
    m = sp.csr_array(m)
    m.data[:] = np.random.default_rng(seed).random(m.nnz)
    keep = np.ones(rows)
    keep[10:40] = 0.0  # empty rows, as outside every spot's reach
    m = sp.csr_array(sp.diags_array(keep) @ m)
    m.eliminate_zeros()
    return m


def test_row_blocks_share_the_arrays_and_cover_every_row() -> None:
    m = _matrix()
    blocks = row_blocks(m, 4)
    starts = [a for a, _ in blocks]
    assert starts == [0, *np.cumsum([b.shape[0] for _, b in blocks])[:-1]]
    assert sum(b.shape[0] for _, b in blocks) == m.shape[0]
    assert sum(b.nnz for _, b in blocks) == m.nnz
    assert all(np.shares_memory(b.data, m.data) and np.shares_memory(b.indices, m.indices)
               for _, b in blocks)
    counts = [b.nnz for _, b in blocks]
    assert max(counts) < 1.2 * m.nnz / 4  # about equal entries per block


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_threaded_products_equal_the_plain_ones(monkeypatch, threads: int) -> None:
    monkeypatch.setattr(sparse_device, "MIN_ENTRIES_PER_THREAD", 1000)
    m = _matrix()
    spot = host_spot_matrices([m], threads)[0]
    assert isinstance(spot.matrix, HostRowBlocks) and len(spot.matrix.blocks) == threads
    rng = np.random.default_rng(1)
    w, g = rng.random(m.shape[1]), rng.random(m.shape[0])
    np.testing.assert_allclose(spot @ w, m @ w, rtol=1e-12)
    np.testing.assert_allclose(spot.T @ g, m.T @ g, rtol=1e-12)
    assert spot.shape == m.shape and spot.T.shape == (m.shape[1], m.shape[0])
    assert spot.nnz == m.nnz
    assert spot.nbytes == m.data.nbytes + m.indices.nbytes + m.indptr.nbytes  # no copy


def test_small_matrices_stay_in_one_block_without_threads() -> None:
    m = _matrix(rows=100)
    spot = host_spot_matrices([m], 8)[0]
    assert len(spot.matrix.blocks) == 1 and spot.matrix._pool is None
    w = np.random.default_rng(2).random(m.shape[1])
    np.testing.assert_allclose(spot @ w, m @ w, rtol=1e-12)


@pytest.mark.parametrize("threads", [1, 3])
def test_float32_matrices_give_float64_products_of_their_values(monkeypatch, threads) -> None:
    monkeypatch.setattr(sparse_device, "MIN_ENTRIES_PER_THREAD", 1000)
    m32 = _matrix().astype(np.float32)
    spot = host_spot_matrices([m32], threads)[0]
    assert spot.matrix.data.dtype == np.float32 and spot.nbytes == (
        m32.data.nbytes + m32.indices.nbytes + m32.indptr.nbytes)
    exact = m32.astype(np.float64)  # the stored values, products in float64
    rng = np.random.default_rng(4)
    w, g = rng.random(m32.shape[1]), rng.random(m32.shape[0])
    for got, want in ((spot @ w, exact @ w), (spot.T @ g, exact.T @ g)):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-5)
        assert not np.allclose(got, want, rtol=1e-12, atol=0)  # a float32 sum, not exact


def test_memory_counts_shared_index_arrays_once(monkeypatch) -> None:
    monkeypatch.setattr(sparse_device, "MIN_ENTRIES_PER_THREAD", 1000)
    dose = _matrix().astype(np.float32)
    model_sum = sp.csr_array((dose.data * 2.0, dose.indices, dose.indptr), shape=dose.shape)
    model_sum.indices, model_sum.indptr = dose.indices, dose.indptr  # shared, as the engine's
    both = host_spot_matrices([dose, model_sum], 2)
    assert both[0].matrix._pool is both[1].matrix._pool is not None  # one pool for both
    assert total_nbytes(both) == (2 * dose.data.nbytes + dose.indices.nbytes
                                  + dose.indptr.nbytes)


def test_active_rows_transposed_product_reads_only_non_zero_rows() -> None:
    """The one-sided points' matrix: ``A.T @ g`` from the rows of non-zero g equals the whole
    product, for a sparse gradient (rows copied) and a dense one (the whole product)."""
    from kernels.sparse_device import ACTIVE_ROWS_SHARE, ActiveRows

    rng = np.random.default_rng(7)
    a = sp.random_array((400, 30), density=0.3, format="csr", dtype=np.float32,
                        random_state=8)
    (inner,) = host_spot_matrices((a,), threads=2)
    m = ActiveRows(inner)
    assert m.shape == (400, 30) and m.T.shape == (30, 400) and m.nnz == a.nnz
    w = rng.uniform(size=30)
    np.testing.assert_allclose(m @ w, a.toarray() @ w, rtol=1e-5)
    for share in (0.02, ACTIVE_ROWS_SHARE / 2, 0.9):
        g = np.where(rng.uniform(size=400) < share, rng.uniform(-1, 1, size=400), 0.0)
        got = m.T @ g
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, a.toarray().T.astype(np.float64) @ g, rtol=1e-5,
                                   atol=1e-6)
    np.testing.assert_array_equal(m.T @ np.zeros(400), np.zeros(30))
