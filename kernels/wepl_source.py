"""C++ source of the WEPL cube's ray integration and sampling on the CPU (``kernels._wepl_cpu``).

:func:`kernels.wepl.wepl_cube` samples the relative stopping power (zero-padded, C order
``(z, y, x)``, float32) at the centres of the depth cells of parallel rays and sums it along
each ray. In NumPy every sample's three fractional indices, eight gathers and weights pass
through memory as temporaries (about 100 B per sample); ``wepl_rays`` does the same arithmetic
in one loop per ray, in the same operations and order, so the cube is the same to the last
bit:

- fractional index along each padded axis ``a0 + u * au + v * av + t * at`` in double, with
  ``u = u0 + i * h_lat``, ``v = v0 + j * h_lat``, ``t = t0 + (k + 0.5) * h_t``;
- clamped to ``[0, n - 1]``, the lower node ``clamp(floor(c), 0, max(n - 2, 0))`` and the
  weight ``float(c - lower)``;
- trilinear interpolation in float32: per (z, y) corner pair, ``f[x] * (1 - wx) + f[x + 1] *
  wx``, times ``(1 - wz or wz) * (1 - wy or wy)``, the four terms added in the order (0, 0),
  (0, 1), (1, 0), (1, 1);
- the running float32 sum of ``sample * h_t`` (``h_t`` rounded to float32), 0 first: the
  ``n_t + 1`` boundary planes of the ray.

``wepl_points`` is :func:`kernels.wepl.sample_wepl` the same way: each point's fractional
cube indices ``(x * a[0] + y * a[1] + z * a[2] - offset) / step`` in double, then the same
trilinear interpolation of the cube.
"""

from __future__ import annotations

CPP_SOURCE = r"""
#include <math.h>
#include <stdint.h>

static inline double wr_clip(double x, double lo, double hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* One axis: lower node, weight and stride step of the fractional index c on n nodes. */
static inline void wr_axis(double c, int64_t n, int64_t* lower, float* weight)
{
    c = wr_clip(c, 0.0, (double)(n - 1));
    double i = wr_clip(floor(c), 0.0, (double)(n - 2 > 0 ? n - 2 : 0));
    *lower = (int64_t)i;
    *weight = (float)(c - i);
}

/* Trilinear interpolation of the C-ordered float32 array flat (dims n, strides s: 0 along an
   axis of one node) at fractional indices c, in the NumPy path's operations and order. */
static inline float wr_trilinear(const float* flat, const int64_t* n, const int64_t* s,
                                 double c0, double c1, double c2)
{
    int64_t l0, l1, l2;
    float w0, w1, w2;
    wr_axis(c0, n[0], &l0, &w0);
    wr_axis(c1, n[1], &l1, &w1);
    wr_axis(c2, n[2], &l2, &w2);
    const int64_t b = (l0 * n[1] + l1) * n[2] + l2;
    const float f0[2] = {1.0f - w0, w0}, f1[2] = {1.0f - w1, w1};
    const int64_t d0[2] = {0, s[0]}, d1[2] = {0, s[1]};
    float value = 0.0f;
    for (int p = 0; p < 2; ++p)
        for (int q = 0; q < 2; ++q) {
            const int64_t at_x = b + (d0[p] + d1[q]);
            const float inner = flat[at_x] * (1.0f - w2) + flat[at_x + s[2]] * w2;
            const float term = inner * (f0[p] * f1[q]);
            value = (p == 0 && q == 0) ? term : value + term;
        }
    return value;
}

static inline int wr_strides(const int64_t* dims, int64_t* s)
{
    if (dims[0] < 1 || dims[1] < 1 || dims[2] < 1) return -1;
    s[0] = dims[0] > 1 ? dims[1] * dims[2] : 0;
    s[1] = dims[1] > 1 ? dims[2] : 0;
    s[2] = dims[2] > 1 ? 1 : 0;
    return 0;
}

/* Rays u = i_start..i_stop-1 (all n_v rays of each): out has (i_stop - i_start) * n_v * (n_t + 1)
   float32, C order. dims: padded (z, y, x). a0, au, av, at: fractional index (z, y, x) at the
   origin and per mm along u, v and t. Returns 0, or -1 for bad sizes. */
extern "C" int wepl_rays(const float* flat, const int64_t* dims, int64_t i_start,
                         int64_t i_stop, int64_t n_v, int64_t n_t, double u0, double v0,
                         double t0, double h_lat, double h_t, const double* a0,
                         const double* au, const double* av, const double* at, float* out)
{
    int64_t s[3];
    if (wr_strides(dims, s) || n_v < 0 || n_t < 0 || i_stop < i_start) return -1;
    const float step = (float)h_t;
    for (int64_t i = i_start; i < i_stop; ++i) {
        const double u = u0 + (double)i * h_lat;
        for (int64_t j = 0; j < n_v; ++j) {
            const double v = v0 + (double)j * h_lat;
            float* ray = out + ((i - i_start) * n_v + j) * (n_t + 1);
            double base[3];
            for (int a = 0; a < 3; ++a) base[a] = a0[a] + u * au[a] + v * av[a];
            float sum = 0.0f;
            ray[0] = sum;
            for (int64_t k = 0; k < n_t; ++k) {
                const double t = t0 + ((double)k + 0.5) * h_t;
                const float sample = wr_trilinear(flat, dims, s, base[0] + t * at[0],
                                                  base[1] + t * at[1], base[2] + t * at[2]);
                sum = sum + sample * step;
                ray[k + 1] = sum;
            }
        }
    }
    return 0;
}

/* WEPL of the cube (dims n_u, n_v, n_t + 1) at the LPS points (n, 3; rows x, y, z): per cube
   axis k, ((x * axes[k][0] + y * axes[k][1]) + z * axes[k][2] - offset[k]) / step[k], then the
   trilinear interpolation. Returns 0, or -1 for bad sizes. */
extern "C" int wepl_points(const float* cube, const int64_t* dims, const double* points,
                           int64_t n, const double* axes, const double* offset,
                           const double* step, float* out)
{
    int64_t s[3];
    if (wr_strides(dims, s) || n < 0) return -1;
    for (int64_t i = 0; i < n; ++i) {
        const double* p = points + 3 * i;
        double c[3];
        for (int k = 0; k < 3; ++k) {
            const double* ax = axes + 3 * k;
            c[k] = (p[0] * ax[0] + p[1] * ax[1] + p[2] * ax[2] - offset[k]) / step[k];
        }
        out[i] = wr_trilinear(cube, dims, s, c[0], c[1], c[2]);
    }
    return 0;
}
"""
