"""C++ source of the WEPL cube's ray integration on the CPU (``kernels._wepl_cpu``).

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

/* Rays u = i_start..i_stop-1 (all n_v rays of each): out has (i_stop - i_start) * n_v * (n_t + 1)
   float32, C order. dims: padded (z, y, x). a0, au, av, at: fractional index (z, y, x) at the
   origin and per mm along u, v and t. Returns 0, or -1 for bad sizes. */
extern "C" int wepl_rays(const float* flat, const int64_t* dims, int64_t i_start,
                         int64_t i_stop, int64_t n_v, int64_t n_t, double u0, double v0,
                         double t0, double h_lat, double h_t, const double* a0,
                         const double* au, const double* av, const double* at, float* out)
{
    const int64_t n0 = dims[0], n1 = dims[1], n2 = dims[2];
    if (n0 < 1 || n1 < 1 || n2 < 1 || n_v < 0 || n_t < 0 || i_stop < i_start) return -1;
    const int64_t s0 = n0 > 1 ? n1 * n2 : 0, s1 = n1 > 1 ? n2 : 0, s2 = n2 > 1 ? 1 : 0;
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
                int64_t lz, ly, lx;
                float wz, wy, wx;
                wr_axis(base[0] + t * at[0], n0, &lz, &wz);
                wr_axis(base[1] + t * at[1], n1, &ly, &wy);
                wr_axis(base[2] + t * at[2], n2, &lx, &wx);
                const int64_t b = (lz * n1 + ly) * n2 + lx;
                const float fz[2] = {1.0f - wz, wz}, fy[2] = {1.0f - wy, wy};
                const int64_t dz[2] = {0, s0}, dy[2] = {0, s1};
                float sample = 0.0f;
                int first = 1;
                for (int p = 0; p < 2; ++p)
                    for (int q = 0; q < 2; ++q) {
                        const int64_t at_x = b + (dz[p] + dy[q]);
                        const float inner = flat[at_x] * (1.0f - wx) + flat[at_x + s2] * wx;
                        const float term = inner * (fz[p] * fy[q]);
                        sample = first ? term : sample + term;
                        first = 0;
                    }
                sum = sum + sample * step;
                ray[k + 1] = sum;
            }
        }
    }
    return 0;
}
"""
