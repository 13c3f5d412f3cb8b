"""Amorphous track structure shared by the RBE models: radial dose and target-averaged local dose.

Both track models used here have the same shape, a flat core of radius ``r_core`` and a
``k / r^2`` penumbra out to ``r_max`` (zero beyond):

- **Kiefer–Chatterjee** (used by the mMKM; Kiefer and Straaten 1986, Chatterjee and Schaefer
  1976, in the form of Kase et al. 2006 and Inaniwa et al. 2010, PMB 55:6721, eqs. 5–8):
  core radius R_c = 0.0116 beta um, penumbra radius R_p = 0.0616 E^1.7 um (Kiefer's range
  formula, E in MeV/u), penumbra dose K_p / r^2 with K_p = 1.25e-4 (Z*/beta)^2 Gy um^2 and the
  effective charge Z* = Z (1 - exp(-125 beta Z^(-2/3))) (Barkas 1963); the core dose makes the
  total energy equal to the LET:
  D_c = [0.1602 LET - 2 pi K_p ln(R_p/R_c)] / (pi R_c^2).
- **Scholz–Kraft, LEM I** (Scholz and Kraft 1996, Adv Space Res 18:5; Scholz et al. 1997,
  Radiat Environ Biophys 36:59): D(r) = lambda LET / r^2 for r_min <= r <= r_max, constant
  lambda LET / r_min^2 inside r_min = 0.01 um, r_max = 0.062 E^1.7 um, lambda set so the integral
  is the LET.

The models need the dose averaged over a *target disk* (the mMKM domain, radius r_d, or the LEM
cell nucleus, radius R_n; the track runs parallel to the axis of a cylindrical target) as a
function of the impact parameter b, and of nonlinear functions of the local dose (LEM). This is
computed as a Stieltjes sum over the exact overlap area A(r; a, b) of a circle of radius r around
the track with the target disk:

    <g(D)>(b) = (1 / pi a^2) [ g(D_core) A(r_core) + sum_k g(D(r_k,mid)) (A(r_k+1) - A(r_k)) ]

on a logarithmic radius grid, which treats the kinks of the arc length exactly.

Units: radii and impact parameters in um, doses in Gy, LET in keV/um (unit density water):
a LET of 1 keV/um spread over 1 um^2 is 0.1602 Gy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.physics.stopping import beta_gamma

FloatArray = NDArray[np.float64]

#: Dose in Gy from 1 keV/um deposited per um^2 of water at 1 g/cm^3 (1.602e-16 J / 1e-15 kg).
GY_UM2_PER_KEV_UM = 0.1602176634

#: Kiefer–Chatterjee constants (Inaniwa et al. 2010, eqs. 6–8; Kase et al. 2006).
KC_CORE_UM_PER_BETA = 0.0116
KC_PENUMBRA_K_GY_UM2 = 1.25e-4
#: Kiefer's electron range formula r_max = gamma E^delta (E in MeV/u): 0.0616 um in the KC model
#: of Inaniwa et al. 2010; 0.062 um in LEM I (Scholz et al. 1997).
KIEFER_DELTA = 1.7
KC_RANGE_GAMMA_UM = 0.0616
LEM_RANGE_GAMMA_UM = 0.062
#: LEM I core radius (Scholz and Kraft 1996).
LEM_CORE_RADIUS_UM = 0.01


@dataclass(frozen=True)
class RadialDose:
    """Core plus 1/r^2 penumbra radial dose of a set of particles, shape (N,) each.

    D(r) = ``core_dose_gy`` for r < ``core_radius_um``; ``k_gy_um2 / r^2`` up to
    ``max_radius_um``; 0 beyond. ``max_radius_um >= core_radius_um`` always.
    """

    core_radius_um: FloatArray
    max_radius_um: FloatArray
    k_gy_um2: FloatArray
    core_dose_gy: FloatArray

    @property
    def size(self) -> int:
        return int(self.core_radius_um.shape[0])

    def dose_gy(self, r_um: ArrayLike) -> FloatArray:
        """Local dose at radius ``r_um`` (broadcast against the particle axis last), Gy."""
        r = np.asarray(r_um, dtype=np.float64)[..., None]
        pen = self.k_gy_um2 / np.maximum(r, 1e-30) ** 2
        out = np.where(r < self.core_radius_um, self.core_dose_gy, pen)
        return np.where(r > self.max_radius_um, 0.0, out)

    def energy_per_length_gy_um2(self) -> FloatArray:
        """Integral of D over the plane (Gy um^2), equals 0.1602 x LET by construction."""
        ln = np.log(self.max_radius_um / self.core_radius_um)
        return self.core_dose_gy * np.pi * self.core_radius_um**2 + 2 * np.pi * self.k_gy_um2 * ln


def effective_charge(z: ArrayLike, beta: ArrayLike) -> FloatArray:
    """Barkas effective charge Z* = Z (1 - exp(-125 beta Z^(-2/3))) (Barkas 1963)."""
    z = np.asarray(z, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    return z * (1.0 - np.exp(-125.0 * b * z ** (-2.0 / 3.0)))


def kiefer_range_um(energy_mev_u: ArrayLike, gamma_um: float = KC_RANGE_GAMMA_UM) -> FloatArray:
    """Maximum delta-electron range r_max = gamma E^1.7 (Kiefer and Straaten 1986), um."""
    e = np.asarray(energy_mev_u, dtype=np.float64)
    return gamma_um * np.maximum(e, 0.0) ** KIEFER_DELTA


def _core_only_where_needed(r_core: FloatArray, r_max: FloatArray, k: FloatArray,
                            d_core: FloatArray, energy: FloatArray) -> RadialDose:
    """Collapse tracks whose penumbra is shorter than the core into a flat disk of radius r_max."""
    short = r_max <= r_core
    r_core = np.where(short, r_max, r_core)
    d_core = np.where(short, energy / (np.pi * r_max**2), d_core)
    k = np.where(short, 0.0, k)
    return RadialDose(core_radius_um=r_core, max_radius_um=r_max, k_gy_um2=k, core_dose_gy=d_core)


def kiefer_chatterjee(z: ArrayLike, energy_mev_u: ArrayLike, let_kev_um: ArrayLike) -> RadialDose:
    """Kiefer–Chatterjee radial dose as used by the mMKM (Inaniwa et al. 2010, eqs. 5–8).

    Parameters
    ----------
    z, energy_mev_u, let_kev_um : (N,) array_like
        Charge number, kinetic energy per nucleon (MeV/u) and unrestricted LET in water
        (keV/um) of each particle.

    Notes
    -----
    Where the penumbra alone would carry more than the LET (never for H..C above ~0.1 MeV/u with
    tabulated stopping powers), K_p is scaled down so that energy is conserved and the core dose
    is zero.
    """
    z_arr, e = np.broadcast_arrays(np.asarray(z, dtype=np.float64),
                                   np.asarray(energy_mev_u, dtype=np.float64))
    energy = GY_UM2_PER_KEV_UM * np.broadcast_to(np.asarray(let_kev_um, dtype=np.float64), e.shape)
    beta, _ = beta_gamma(np.maximum(e, 1e-6))
    r_core = KC_CORE_UM_PER_BETA * beta
    r_max = np.maximum(kiefer_range_um(e, KC_RANGE_GAMMA_UM), 1e-9)
    k = KC_PENUMBRA_K_GY_UM2 * (effective_charge(z_arr, beta) / beta) ** 2
    ln = np.log(np.maximum(r_max / r_core, 1.0))
    pen_energy = 2 * np.pi * k * ln
    k = np.where(pen_energy > energy, energy / np.maximum(2 * np.pi * ln, 1e-300), k)
    d_core = np.maximum(energy - 2 * np.pi * k * ln, 0.0) / (np.pi * r_core**2)
    return _core_only_where_needed(r_core, r_max, k, d_core, energy)


def scholz_kraft(energy_mev_u: ArrayLike, let_kev_um: ArrayLike,
                 core_radius_um: float = LEM_CORE_RADIUS_UM) -> RadialDose:
    """LEM I radial dose: lambda LET / r^2 with a flat core r_min = 0.01 um (Scholz et al. 1997).

    lambda = 1 / (pi (1 + 2 ln(r_max / r_min))) makes the plane integral equal to the LET.
    """
    e = np.asarray(energy_mev_u, dtype=np.float64)
    energy = GY_UM2_PER_KEV_UM * np.broadcast_to(np.asarray(let_kev_um, dtype=np.float64), e.shape)
    r_max = np.maximum(kiefer_range_um(e, LEM_RANGE_GAMMA_UM), 1e-9)
    r_core = np.full(e.shape, core_radius_um)
    ln = np.log(np.maximum(r_max / r_core, 1.0))
    k = energy / (np.pi * (1.0 + 2.0 * ln))
    return _core_only_where_needed(r_core, r_max, k, k / r_core**2, energy)


def disk_overlap_area_um2(r_um: FloatArray, a_um: float, b_um: FloatArray) -> FloatArray:
    """Area of the intersection of a disk of radius r (on the track) and one of radius a at
    distance b (standard two-circle lens formula), um^2. Broadcasts ``r_um`` and ``b_um``."""
    r, b = np.broadcast_arrays(r_um, b_um)
    a = float(a_um)
    inside = b <= np.abs(r - a)
    outside = b >= r + a
    bs = np.where(inside | outside, 1.0, b)
    rs = np.where(inside | outside, 1.0, r)
    c1 = np.clip((bs**2 + rs**2 - a**2) / (2 * bs * rs), -1.0, 1.0)
    c2 = np.clip((bs**2 + a**2 - rs**2) / (2 * bs * a), -1.0, 1.0)
    kite = (-bs + rs + a) * (bs + rs - a) * (bs - rs + a) * (bs + rs + a)
    lens = rs**2 * np.arccos(c1) + a**2 * np.arccos(c2) - 0.5 * np.sqrt(np.maximum(kite, 0.0))
    full = np.pi * np.minimum(r, a) ** 2
    return np.where(outside, 0.0, np.where(inside, full, lens))


@dataclass(frozen=True)
class ImpactGrid:
    """Impact-parameter nodes and trapezoid weights for integrals of f(b) 2 pi b db.

    Attributes
    ----------
    b_um : (N, J) float array
        Impact parameters per particle, increasing from 0 to a + r_max.
    weight_um2 : (N, J) float array
        Quadrature weights: sum_j f(b_j) w_j approximates the integral of f(b) 2 pi b db.
    """

    b_um: FloatArray
    weight_um2: FloatArray


def impact_grid(track: RadialDose, a_um: float, n_side: int = 90) -> ImpactGrid:
    """Impact parameters clustered geometrically on both sides of the target edge b = a.

    The local-dose average changes fastest within a few core radii of the edge, so nodes
    approach b = a geometrically from inside (down to 0.1 r_core) and outside; the outer branch
    reaches b = a + r_max where the average vanishes.
    """
    eps = np.minimum(1e-3, 0.1 * track.core_radius_um / a_um)[:, None]
    t = np.linspace(0.0, 1.0, n_side)[None, :]
    inner = a_um * (1.0 - eps ** (1.0 - t))                        # a(1-eps) .. 0
    eps_out = np.minimum(1e-3, 0.1 * track.core_radius_um / track.max_radius_um)[:, None]
    outer = a_um + track.max_radius_um[:, None] * eps_out ** (1.0 - t)  # ~a .. a + r_max
    b = np.concatenate([inner[:, ::-1], np.full((track.size, 1), a_um), outer], axis=1)
    b = np.maximum.accumulate(b, axis=1)
    f = 2 * np.pi * b
    db = np.diff(b, axis=1)
    w = np.zeros_like(b)
    w[:, :-1] += 0.5 * f[:, :-1] * db
    w[:, 1:] += 0.5 * f[:, 1:] * db
    return ImpactGrid(b_um=b, weight_um2=w)


def target_average(track: RadialDose, a_um: float, grid: ImpactGrid,
                   local_effect: Callable[[FloatArray], FloatArray],
                   n_radii: int = 240, chunk: int = 16) -> FloatArray:
    """Average of ``local_effect(D(r))`` over a target disk of radius ``a_um`` for each impact
    parameter of ``grid``, shape (N, J).

    ``local_effect`` maps local doses (Gy) elementwise to the target quantity (the dose itself
    for the mMKM, the photon lethal-event density -ln S_x(D) for LEM I) and must vanish at 0.
    Particles are processed ``chunk`` at a time to bound memory (chunk x J x n_radii).
    """
    out = np.empty_like(grid.b_um)
    t = np.linspace(0.0, 1.0, n_radii + 1)
    for lo in range(0, track.size, chunk):
        sl = slice(lo, lo + chunk)
        rc = track.core_radius_um[sl, None]
        rm = track.max_radius_um[sl, None]
        r_edges = rc * (rm / rc) ** t[None, :]                         # (n, K+1)
        r_mid = np.sqrt(r_edges[:, 1:] * r_edges[:, :-1])
        g_pen = local_effect(track.k_gy_um2[sl, None] / r_mid**2)     # (n, K)
        g_core = local_effect(track.core_dose_gy[sl])[:, None]         # (n, 1)
        b = grid.b_um[sl][:, :, None]                                  # (n, J, 1)
        area = disk_overlap_area_um2(r_edges[:, None, :], a_um, b)    # (n, J, K+1)
        d_area = np.diff(area, axis=2)
        acc = g_core * area[:, :, 0] + np.einsum("njk,nk->nj", d_area, g_pen)
        out[sl] = acc / (np.pi * a_um**2)
    return out
