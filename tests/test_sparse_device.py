"""The optimizer's host matrices in row blocks on threads give the plain products."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from kernels import sparse_device
from kernels.sparse_device import HostRowBlocks, host_spot_matrix, row_blocks


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
    spot = host_spot_matrix(m, threads)
    assert isinstance(spot.matrix, HostRowBlocks) and len(spot.matrix.blocks) == threads
    rng = np.random.default_rng(1)
    w, g = rng.random(m.shape[1]), rng.random(m.shape[0])
    np.testing.assert_allclose(spot @ w, m @ w, rtol=1e-12)
    np.testing.assert_allclose(spot.T @ g, m.T @ g, rtol=1e-12)
    assert spot.shape == m.shape and spot.T.shape == (m.shape[1], m.shape[0])
    assert spot.nnz == m.nnz
    assert spot.nbytes == m.data.nbytes + m.indices.nbytes + m.indptr.nbytes  # no copy


def test_small_matrices_stay_plain() -> None:
    m = _matrix(rows=100)
    assert not isinstance(host_spot_matrix(m, 8).matrix, HostRowBlocks)
