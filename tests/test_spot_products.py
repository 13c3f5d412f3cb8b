"""The optimizer's joint products (kernels.spot_products, kernels.sparse_device.joint_products)
against the products of each matrix on its own, computed here in float64 from the stored
float32 entries."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

from kernels import sparse_device, spot_products
from kernels.sparse_device import (
    ActiveRows,
    RowStack,
    SeparateProducts,
    host_spot_matrices,
    joint_products,
)
from kernels.spot_products import MAX_MATRICES, JointCsr


def _compiled() -> None:
    if not spot_products.available():
        pytest.skip("the compiled spot products were not built with this installation")


def test_the_compiled_products_are_built_under_ci() -> None:
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        pytest.skip("not under CI")
    assert spot_products.available()


def _structure(rows: int = 700, cols: int = 90, seed: int = 5) -> sp.csr_array:
    """A float32 CSR structure with empty rows (outside every spot's reach)."""
    m = sp.random_array((rows, cols), density=0.15, format="csr", dtype=np.float32,
                        random_state=seed)
    keep = np.ones(rows, dtype=np.float32)
    keep[50:80] = 0.0
    m = sp.csr_array(sp.diags_array(keep) @ m)
    m.eliminate_zeros()
    return m


def _on_structure(m: sp.csr_array, n: int, seed: int = 6) -> list[sp.csr_array]:
    """``n`` matrices on ``m``'s index arrays (shared, as the engine builds them)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        data = (m.data if k == 0 else rng.uniform(0.1, 2.0, m.nnz)).astype(np.float32)
        a = sp.csr_array((data, m.indices, m.indptr), shape=m.shape, copy=False)
        a.indices, a.indptr = m.indices, m.indptr
        out.append(a)
    return out


@pytest.mark.parametrize("n_matrices", [1, 2, 3, 5])
@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("threads", [1, 3])
def test_joint_csr_products_are_each_matrix_products_in_float64(n_matrices, wide,
                                                                threads) -> None:  # type: ignore[no-untyped-def]
    _compiled()
    m = _structure()
    mats = _on_structure(m, n_matrices)
    indptr = m.indptr.astype(np.int64 if wide else np.int32)
    cuts = np.linspace(0, m.shape[0], threads + 1).astype(int).tolist()
    with ThreadPoolExecutor(threads) as pool:
        joint = JointCsr(indptr, m.indices, [a.data for a in mats], m.shape[1], cuts, pool)
        rng = np.random.default_rng(7)
        w = rng.uniform(0.0, 3.0, m.shape[1])
        coef = [np.where(rng.random(m.shape[0]) < 0.3, rng.normal(size=m.shape[0]), 0.0)
                for _ in mats]
        got = joint.forward(w)
        grad = joint.backward(coef)
        nothing = joint.backward([np.zeros(m.shape[0])] * n_matrices)
    np.testing.assert_array_equal(nothing, np.zeros(m.shape[1]))
    exact = [a.astype(np.float64) for a in mats]
    for g, a in zip(got, exact, strict=True):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, a @ w, rtol=1e-12, atol=0)
    want = sum(a.T @ c for a, c in zip(exact, coef, strict=True))
    np.testing.assert_allclose(grad, want, rtol=1e-11, atol=1e-12 * np.abs(want).max())


def test_joint_csr_refuses_what_it_cannot_multiply() -> None:
    _compiled()
    m = _structure()
    d = m.data
    cuts = [0, m.shape[0]]
    with pytest.raises(ValueError, match="1 to"):
        JointCsr(m.indptr, m.indices, [d] * (MAX_MATRICES + 1), m.shape[1], cuts, None)
    with pytest.raises(ValueError, match="float32"):
        JointCsr(m.indptr, m.indices, [d.astype(np.float64)], m.shape[1], cuts, None)
    with pytest.raises(ValueError, match="row cuts"):
        JointCsr(m.indptr, m.indices, [d], m.shape[1], [0, 5, 3, m.shape[0]], None)
    with pytest.raises(ValueError, match="column indices"):
        JointCsr(m.indptr, m.indices, [d], int(m.indices.max()), cuts, None)
    joint = JointCsr(m.indptr, m.indices, [d, d], m.shape[1], cuts, None)
    with pytest.raises(ValueError, match="columns"):
        joint.forward(np.ones(m.shape[1] + 1))
    with pytest.raises(ValueError, match="2 matrices"):
        joint.backward([np.ones(m.shape[0])])


def test_joint_products_of_engine_matrices_in_stacks_and_active_rows(monkeypatch) -> None:
    """What the planner hands the optimizer: a row stack of two-sided rows and ActiveRows of
    one-sided ones, each dose and model sum on one structure: compiled per part, the same
    products as matrix by matrix."""
    _compiled()
    monkeypatch.setattr(sparse_device, "MIN_ENTRIES_PER_THREAD", 1000)
    first, second = _structure(seed=1), _structure(rows=300, seed=2)
    a = host_spot_matrices(_on_structure(first, 3), threads=2)
    b = [ActiveRows(x) for x in host_spot_matrices(_on_structure(second, 3), threads=2)]
    dose = RowStack((a[0], b[0]))
    sums = tuple(RowStack((x, y)) for x, y in zip(a[1:], b[1:], strict=True))
    joint = joint_products(dose, sums)
    plain = SeparateProducts(dose, sums)
    assert type(joint) is not SeparateProducts
    assert all(type(p).__name__ == "_CompiledProducts" for p in joint.parts)  # type: ignore[attr-defined]
    rng = np.random.default_rng(3)
    w = rng.random(first.shape[1])
    for got, want in zip(joint.forward(w), plain.forward(w), strict=True):
        np.testing.assert_allclose(np.atleast_2d(got), np.atleast_2d(want), rtol=2e-6)
    n = dose.shape[0]
    u = np.where(rng.random(n) < 0.2, rng.normal(size=n), 0.0)
    v = [rng.normal(size=n), np.zeros(n)]
    np.testing.assert_allclose(joint.backward(u, v), plain.backward(u, v), rtol=2e-5,
                               atol=1e-6)


def test_matrices_on_different_structures_are_multiplied_one_by_one() -> None:
    dose = host_spot_matrices([_structure(seed=1)])[0]
    other = host_spot_matrices([_structure(seed=2)])[0]
    joint = joint_products(dose, (other,))
    assert type(joint) is SeparateProducts
    w = np.ones(dose.shape[1])
    d, (s,) = joint.forward(w)
    np.testing.assert_allclose(d, dose @ w)
    np.testing.assert_allclose(s, other @ w)
