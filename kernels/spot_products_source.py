"""C++ source of the optimizer's joint sparse products on the CPU (``kernels._spot_products``).

The optimizer's matrices (dose and the model sums, rows x spots, float32 CSR) share their
column indices and row pointers. Evaluated one matrix at a time (SciPy), every product reads
the indices again; these loops read them once for all ``M`` matrices:

- ``sp_forward``: ``out[m][i] = sum_k data[m][k] * w[indices[k]]`` for the rows ``r0..r1-1``
  (float64 accumulation of the float32 entries times the float64 weights);
- ``sp_backward``: ``out[indices[k]] += sum_m data[m][k] * coef[m][i]`` over the same rows,
  into an output of the caller's (one per thread; the caller adds them), skipping rows whose
  coefficients are all zero (one-sided objectives that are met: most of an organ's rows).

``M`` is 1 to ``SP_MAX_MATRICES``; 1, 2 and 3 are compiled with the count known, the others
with a loop over it. Row pointers are int32 (SciPy's choice below 2^31 entries) or int64.
"""

from __future__ import annotations

#: Most matrices one call takes (the dose and up to 16 model sums, as the pencil-beam kernel).
MAX_MATRICES = 17

CPP_SOURCE = r"""
#include <stdint.h>

#define SP_MAX_MATRICES 17

template <int M_FIXED, typename I>
static void sp_forward_t(int m_count, int64_t r0, int64_t r1, const I* indptr,
                         const int32_t* indices, const float* const* data, const double* w,
                         double* const* out)
{
    const int m_n = M_FIXED > 0 ? M_FIXED : m_count;
    for (int64_t i = r0; i < r1; ++i) {
        double acc[SP_MAX_MATRICES];
        for (int m = 0; m < m_n; ++m) acc[m] = 0.0;
        for (int64_t k = indptr[i]; k < (int64_t)indptr[i + 1]; ++k) {
            double x = w[indices[k]];
            for (int m = 0; m < m_n; ++m) acc[m] += (double)data[m][k] * x;
        }
        for (int m = 0; m < m_n; ++m) out[m][i] = acc[m];
    }
}

template <int M_FIXED, typename I>
static void sp_backward_t(int m_count, int64_t r0, int64_t r1, const I* indptr,
                          const int32_t* indices, const float* const* data,
                          const double* const* coef, double* out)
{
    const int m_n = M_FIXED > 0 ? M_FIXED : m_count;
    for (int64_t i = r0; i < r1; ++i) {
        double c[SP_MAX_MATRICES];
        int any = 0;
        for (int m = 0; m < m_n; ++m) {
            c[m] = coef[m][i];
            any |= c[m] != 0.0;
        }
        if (!any) continue;
        for (int64_t k = indptr[i]; k < (int64_t)indptr[i + 1]; ++k) {
            double s = 0.0;
            for (int m = 0; m < m_n; ++m) s += (double)data[m][k] * c[m];
            out[indices[k]] += s;
        }
    }
}

template <typename I>
static void sp_forward_i(int m, int64_t r0, int64_t r1, const I* indptr, const int32_t* indices,
                         const float* const* data, const double* w, double* const* out)
{
    switch (m) {
        case 1: sp_forward_t<1, I>(m, r0, r1, indptr, indices, data, w, out); break;
        case 2: sp_forward_t<2, I>(m, r0, r1, indptr, indices, data, w, out); break;
        case 3: sp_forward_t<3, I>(m, r0, r1, indptr, indices, data, w, out); break;
        default: sp_forward_t<0, I>(m, r0, r1, indptr, indices, data, w, out);
    }
}

template <typename I>
static void sp_backward_i(int m, int64_t r0, int64_t r1, const I* indptr, const int32_t* indices,
                          const float* const* data, const double* const* coef, double* out)
{
    switch (m) {
        case 1: sp_backward_t<1, I>(m, r0, r1, indptr, indices, data, coef, out); break;
        case 2: sp_backward_t<2, I>(m, r0, r1, indptr, indices, data, coef, out); break;
        case 3: sp_backward_t<3, I>(m, r0, r1, indptr, indices, data, coef, out); break;
        default: sp_backward_t<0, I>(m, r0, r1, indptr, indices, data, coef, out);
    }
}

/* indptr_64: row pointers are int64 (else int32). Returns 0, or -1 for a bad matrix count. */
extern "C" int sp_forward(int m, int64_t r0, int64_t r1, int indptr_64, const void* indptr,
                          const int32_t* indices, const float* const* data, const double* w,
                          double* const* out)
{
    if (m < 1 || m > SP_MAX_MATRICES) return -1;
    if (indptr_64)
        sp_forward_i(m, r0, r1, (const int64_t*)indptr, indices, data, w, out);
    else
        sp_forward_i(m, r0, r1, (const int32_t*)indptr, indices, data, w, out);
    return 0;
}

extern "C" int sp_backward(int m, int64_t r0, int64_t r1, int indptr_64, const void* indptr,
                           const int32_t* indices, const float* const* data,
                           const double* const* coef, double* out)
{
    if (m < 1 || m > SP_MAX_MATRICES) return -1;
    if (indptr_64)
        sp_backward_i(m, r0, r1, (const int64_t*)indptr, indices, data, coef, out);
    else
        sp_backward_i(m, r0, r1, (const int32_t*)indptr, indices, data, coef, out);
    return 0;
}
"""
