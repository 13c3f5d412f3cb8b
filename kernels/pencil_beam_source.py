"""CUDA C source of the fused pencil-beam kernel (one thread per voxel of a beam).

The arithmetic is that of :mod:`kernels.influence` (same float32 operations in the same order,
same index rules), fused into one pass over a voxel's layers, rows and spots:

- ``mode 0`` (count): entries of each voxel, from two rank-table lookups per window row;
- ``mode 1`` (fill): the voxel's entries written from its CSR start, layer after layer, row by
  row, in increasing row-major rank (the order of :func:`kernels.influence.chunk_pairs`);
- ``mode 2`` (accumulate): spot weight x dose summed over each layer's spots in float64, times
  LETd and each model quantity of the voxel's depth in that layer, added to its row of the
  output arrays: a forward dose without a matrix.

Compiled for the CPU (``PB_CPU_TWIN``) the kernel makes the u factors of a voxel's window
columns once per layer instead of per pair (same operations, same values; up to
``PB_CPU_MAX_COLS`` columns, per pair beyond); in mode 2 it lays each call's spot weights out
on the layers' lattices (``pb_weight_grid``, the rank tables' layout) and sums each window row
as two dot products with those factors (no per-pair index reads; 1.8x on TG-119's forward
dose). ``PB_CPU_BY_COLUMN`` 0 turns both off: the tests' twin (tests/cuda_twin.py) compiles it
so, to run the per-pair arithmetic of the GPU.

The per-voxel body is a ``__device__`` function so that the same source also compiles as C++
for the CPU (``PB_CPU_TWIN``), where the tests run it voxel by voxel to check the index
arithmetic against the NumPy kernels on a machine without CUDA.

Layer descriptor ``lint`` (int64, ``LINT_FIELDS`` per layer): table node offset, table nodes,
rank-table offset, rank-table width, iu_min, iu_max, iv_min, iv_max, rank offset (into
``spot_iu``/``spot_id``). ``tabs`` holds per layer ``(5 + K)`` rows of its table nodes:
``dose_scale * idd``, halo weight, ``s_c^2``, ``s_h^2``, LETd, the K model quantities.
"""

from __future__ import annotations

#: Fields per layer in the int64 layer descriptor.
LINT_FIELDS = 9

CUDA_SOURCE = r"""
#ifdef PB_CPU_TWIN
#include <math.h>
#define PB_DEVICE static inline
#define PB_CPU_MAX_COLS 256
#ifndef PB_CPU_BY_COLUMN
#define PB_CPU_BY_COLUMN 1
#endif
#define PB_CPU_PARAM , const double* wgrid
#define PB_CPU_ARG , wgrid
#else
#define PB_DEVICE __device__ __forceinline__
#define PB_CPU_PARAM
#define PB_CPU_ARG
#endif

typedef long long i64;

PB_DEVICE float pb_lerp(const float* t, i64 i, float f) {
    float lo = t[i];
    return lo + (t[i + 1] - lo) * f;
}

PB_DEVICE i64 pb_max(i64 a, i64 b) { return a > b ? a : b; }
PB_DEVICE i64 pb_min(i64 a, i64 b) { return a < b ? a : b; }
PB_DEVICE float pb_clipf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

#ifdef PB_CPU_TWIN
/* Column factors of window columns from..to (offsets from iu0): the float32 operations of
   the per-pair path, so the same values. */
PB_DEVICE void pb_columns(float* fu_core, float* fu_halo, i64 from, i64 to, i64 iu0, float cu,
                          float stu, float coef_core, float coef_halo, float ac, float ah)
{
    for (i64 ku = from; ku <= to; ++ku) {
        float du = ((float)(iu0 + ku) - cu) * stu;
        float du2 = du * du;
        fu_core[ku] = coef_core * expf(-ac * du2);
        fu_halo[ku] = coef_halo * expf(-ah * du2);
    }
}
#endif

/* One voxel of a beam, all layers. Returns the number of entries (mode 0 and 1). */
PB_DEVICE i64 pb_voxel(
    int mode, i64 v,
    const float* cu_a, const float* cv_a, const float* stu_a, const float* stv_a,
    const float* wepl_a, const i64* widx_a, const float* wfrac_a, const i64* row_a,
    int n_layers, const i64* lint, const float* depth_max,
    const float* radius, const float* tabs, const i64* rank_table, const i64* spot_iu,
    const int* spot_id, int n_model, int with_let,
    const i64* start, float* out_dose, float* out_let, float* out_model, i64 model_stride,
    int* out_col,
    const double* weights, double* acc_dose, double* acc_let, double* acc_model,
    i64 acc_stride PB_CPU_PARAM)
{
    const float two_pi = 6.283185307179586f;
    float cu = cu_a[v], cv = cv_a[v], stu = stu_a[v], stv = stv_a[v], wepl = wepl_a[v];
    i64 widx0 = widx_a[v];
    float wf = wfrac_a[v];
    i64 pos = (mode == 1) ? start[v] : 0;
    i64 n_entries = 0;
    double s_dose = 0.0, s_let = 0.0;
    double s_model[16];
    for (int k = 0; k < n_model; ++k) s_model[k] = 0.0;

    for (int l = 0; l < n_layers; ++l) {
        const i64* d = lint + 9 * (i64)l;
        i64 t_off = d[0], n_nodes = d[1], r_off = d[2], width = d[3];
        i64 iu_min = d[4], iu_max = d[5], iv_min = d[6], iv_max = d[7], s_off = d[8];
        if (!(wepl <= depth_max[l])) continue;
        i64 wi = pb_min(pb_max(widx0, 0), n_nodes - 2);
        float rad = pb_lerp(radius + t_off, wi, wf);
        float gap_u = (pb_clipf(cu, (float)iu_min, (float)iu_max) - cu) * stu;
        float gap_v = (pb_clipf(cv, (float)iv_min, (float)iv_max) - cv) * stv;
        if (!(gap_u * gap_u + gap_v * gap_v <= rad * rad)) continue;
        float rho_u = rad / stu, rho_v = rad / stv;
        i64 iu0 = pb_max((i64)(int)ceilf(cu - rho_u), iu_min);
        i64 iv0 = pb_max((i64)(int)ceilf(cv - rho_v), iv_min);
        i64 n_u = pb_min((i64)(int)floorf(cu + rho_u), iu_max) - iu0 + 1;
        i64 n_v = pb_min((i64)(int)floorf(cv + rho_v), iv_max) - iv0 + 1;
        if (n_u <= 0 || n_v <= 0) continue;

        const i64* q_tab = rank_table + r_off;
        float idd = 0.f, halo = 0.f, sc2 = 1.f, sh2 = 1.f, letd = 0.f;
        float q_mod[16];
        if (mode != 0) {
            const float* tb = tabs + t_off * (5 + n_model);
            idd = pb_lerp(tb, wi, wf);
            halo = pb_lerp(tb + n_nodes, wi, wf);
            sc2 = pb_lerp(tb + 2 * n_nodes, wi, wf);
            sh2 = pb_lerp(tb + 3 * n_nodes, wi, wf);
            letd = pb_lerp(tb + 4 * n_nodes, wi, wf);
            for (int k = 0; k < n_model; ++k) q_mod[k] = pb_lerp(tb + (5 + k) * n_nodes, wi, wf);
        }
        float coef_core = idd * (1.0f - halo) / (two_pi * sc2);
        float coef_halo = idd * halo / (two_pi * sh2);
        float ac = 0.5f / sc2, ah = 0.5f / sh2;
#ifdef PB_CPU_TWIN
        /* On the CPU the u factors of the window's columns are made once per voxel and layer
           (the same float32 operations as per pair below, so the same values): two expf per
           column instead of two per pair. */
        float fu_core[PB_CPU_MAX_COLS], fu_halo[PB_CPU_MAX_COLS];
        int by_column = PB_CPU_BY_COLUMN && mode != 0 && n_u <= PB_CPU_MAX_COLS;
        if (by_column)
            pb_columns(fu_core, fu_halo, 0, n_u - 1, iu0, cu, stu, coef_core, coef_halo, ac, ah);
#endif
        double layer_dose = 0.0;  /* sum of weight x dose over this layer's spots (mode 2) */

        for (i64 kv = 0; kv < n_v; ++kv) {
            i64 row = iv0 + kv;
            float dv_idx = (float)row - cv;
            float ratio = dv_idx / rho_v;
            float half = rho_u * sqrtf(pb_clipf(1.0f - ratio * ratio, 0.0f, 1.0f));
            i64 lo = pb_min(pb_max((i64)(int)ceilf(cu - half) - iu0, 0), n_u);
            i64 hi = pb_min((i64)(int)floorf(cu + half) - iu0, n_u - 1);
            hi = pb_max(hi, lo - 1);
            row = pb_min(row, iv_max);
            i64 base = (row - iv_min) * width + (iu0 - iu_min);
            i64 q_lo = q_tab[base + lo], q_hi = q_tab[base + hi + 1];
            if (mode == 0) { n_entries += q_hi - q_lo; continue; }
            if (q_hi <= q_lo) continue;
            float dv = dv_idx * stv;
            float dv2 = dv * dv;
            float core_v = expf(-ac * dv2), halo_v = expf(-ah * dv2);
#ifdef PB_CPU_TWIN
            if (by_column && wgrid) {
                /* Mode 2: the row's weights on the layer's lattice (zero where there is no
                   spot), two dot products with the window's column factors in float64, then
                   the row factors: no per-pair index reads, the float32 rounding of each
                   pair's dose is left out (relative 1e-7 of the sum at most). */
                const double* wr = wgrid + r_off + base;
                double c = 0.0, h = 0.0;
                for (i64 ku = lo; ku <= hi; ++ku) {
                    c += wr[ku] * (double)fu_core[ku];
                    h += wr[ku] * (double)fu_halo[ku];
                }
                layer_dose += c * (double)core_v + h * (double)halo_v;
                n_entries += q_hi - q_lo;
                continue;
            }
#endif
            for (i64 q = q_lo; q < q_hi; ++q) {
                float dose;
#ifdef PB_CPU_TWIN
                if (by_column) {
                    i64 ku = spot_iu[s_off + q] - iu0;
                    dose = fu_core[ku] * core_v + fu_halo[ku] * halo_v;
                } else
#endif
                {
                    float du = ((float)spot_iu[s_off + q] - cu) * stu;
                    float du2 = du * du;
                    dose = coef_core * expf(-ac * du2) * core_v
                         + coef_halo * expf(-ah * du2) * halo_v;
                }
                int col = spot_id[s_off + q];
                if (mode == 1) {
                    out_dose[pos] = dose;
                    out_col[pos] = col;
                    if (with_let) out_let[pos] = dose * letd;
                    for (int k = 0; k < n_model; ++k)
                        out_model[k * model_stride + pos] = dose * q_mod[k];
                    ++pos;
                } else {
                    layer_dose += weights[col] * (double)dose;
                }
            }
            n_entries += q_hi - q_lo;
        }
        if (mode == 2) {  /* LETd and the model quantities depend on the voxel's depth only */
            s_dose += layer_dose;
            s_let += layer_dose * (double)letd;
            for (int k = 0; k < n_model; ++k) s_model[k] += layer_dose * (double)q_mod[k];
        }
    }
    if (mode == 2) {
        i64 r = row_a[v];
        acc_dose[r] += s_dose;
        if (with_let) acc_let[r] += s_let;
        for (int k = 0; k < n_model; ++k) acc_model[k * acc_stride + r] += s_model[k];
    }
    return n_entries;
}

/* The entry points' parameters and the call of the per-voxel body, shared by both. */
#define PB_PARAMS \
    int mode, i64 n_vox, \
    const float* cu_a, const float* cv_a, const float* stu_a, const float* stv_a, \
    const float* wepl_a, const i64* widx_a, const float* wfrac_a, const i64* row_a, \
    int n_layers, const i64* lint, const float* depth_max, \
    const float* radius, const float* tabs, const i64* rank_table, const i64* spot_iu, \
    const int* spot_id, int n_model, int with_let, \
    int* counts, \
    const i64* start, float* out_dose, float* out_let, float* out_model, i64 model_stride, \
    int* out_col, \
    const double* weights, double* acc_dose, double* acc_let, double* acc_model, \
    i64 acc_stride
#define PB_VOXEL(v) \
    i64 n = pb_voxel(mode, v, cu_a, cv_a, stu_a, stv_a, wepl_a, widx_a, wfrac_a, row_a, \
                     n_layers, lint, depth_max, radius, tabs, rank_table, spot_iu, spot_id, \
                     n_model, with_let, start, out_dose, out_let, out_model, model_stride, \
                     out_col, weights, acc_dose, acc_let, acc_model, acc_stride PB_CPU_ARG); \
    if (mode == 0) counts[v] = (int)n;

#ifndef PB_CPU_TWIN
extern "C" __global__ void pb_beam(PB_PARAMS)
{
    i64 v = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (v >= n_vox) return;
    PB_VOXEL(v)
}
#else
#include <vector>
/* The weights of each layer's spots on its lattice, laid out as its rank table (rows of
   ``width`` nodes, zero where there is no spot), in a buffer of the calling thread's (kept
   between calls: fresh pages per call cost more than the layout); NULL unless mode 2 uses the
   column cache. */
static const double* pb_weight_grid(int mode, int n_layers, const i64* lint,
                                    const i64* rank_table, const int* spot_id,
                                    const double* weights)
{
    static thread_local std::vector<double> grid;
    if (mode != 2 || !PB_CPU_BY_COLUMN) return NULL;
    i64 size = 1;
    for (int l = 0; l < n_layers; ++l) {
        const i64* d = lint + 9 * (i64)l;
        size = pb_max(size, d[2] + (d[7] - d[6] + 1) * d[3]);
    }
    try {
        grid.assign((size_t)size, 0.0);
    } catch (...) {  /* no memory for it: the per-pair path */
        return NULL;
    }
    for (int l = 0; l < n_layers; ++l) {
        const i64* d = lint + 9 * (i64)l;
        i64 r_off = d[2], n_nodes = (d[7] - d[6] + 1) * d[3], s_off = d[8];
        const i64* q = rank_table + r_off;
        for (i64 p = 0; p + 1 < n_nodes; ++p)  /* the last node is a spare column: no spot */
            if (q[p + 1] > q[p]) grid[r_off + p] = weights[spot_id[s_off + q[p]]];
    }
    return grid.data();
}

extern "C" void pb_beam_cpu(PB_PARAMS)
{
    const double* wgrid = pb_weight_grid(mode, n_layers, lint, rank_table, spot_id, weights);
    for (i64 v = 0; v < n_vox; ++v) {
        PB_VOXEL(v)
    }
}
#endif
"""

#: Most model quantities the kernel sums per voxel (registers): 16 covers 8 LEM I tissues.
MAX_MODEL_QUANTITIES = 16
