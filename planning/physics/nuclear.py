"""Nuclear interactions of carbon ions and their fragments in water.

Total reaction cross-sections
    Sihver et al. (1993), Phys Rev C 47:1225, energy-independent high-energy form:
    sigma_R = pi r0^2 [A_p^(1/3) + A_t^(1/3) - b0 (A_p^(-1/3) + A_t^(-1/3))]^2, r0 = 1.36 fm,
    b0 = 1.581 - 0.876 (A_p^(-1/3) + A_t^(-1/3)) for nucleus-nucleus collisions and
    b0 = 2.247 - 0.915 (1 + A^(-1/3)) when one partner is a proton. It gives 0.98 b for C+O and
    0.22 b for C+p, the values quoted for 200-400 MeV/u (Kox et al. 1987); the formula is meant
    for energies above about 100 MeV/u, where the measured cross-sections vary by less than 10 %.
    Water: n(H) = 6.69e22 /cm^3, n(O) = 3.34e22 /cm^3.

Projectile fragments
    Projectile-like fragments leave at about the projectile's velocity (Goldhaber 1974), with a
    transverse momentum spread sigma_pt^2 = sigma0^2 A_f (A_p - A_f)/(A_p - 1), sigma0 = 90 MeV/c,
    so the emission angle spread is sigma_theta = sigma_pt / p_f.
    Mean multiplicities per 12C reaction in water (charged fragments H..B and secondary 11C) are
    model parameters chosen to be consistent with measured yields of 12C fragmentation in water
    at 200-400 MeV/u (Haettner et al. 2006 Radiat Prot Dosim 122:485; Haettner et al. 2013
    PMB 58:8265; Gunzert-Marx et al. 2008 New J Phys 10:075003): hydrogen and helium dominate,
    Li, Be, B each below 0.15 per reaction. The projectile nucleons not bound in charged fragments
    leave as neutrons (baryon number conservation); their energy is not deposited. The H and He
    multiplicities set the dose tail beyond the Bragg peak; with 1.6 and 1.05 the tail 5-10 mm
    behind the peak is 2-3 % of the peak dose at 150 MeV/u and about 10 % at 400 MeV/u, the
    magnitudes reported for clinical 12C beams (Schardt et al. 2010 Rev Mod Phys 82:383).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.physics.stopping import momentum_per_nucleon_mev_c

#: Number densities of water, atoms per cm^3 (rho = 1 g/cm^3, M = 18.015 g/mol).
WATER_N_H_PER_CM3 = 6.686e22
WATER_N_O_PER_CM3 = 3.343e22
#: Sihver's radius parameter, fm.
SIHVER_R0_FM = 1.36
#: Goldhaber's reduced momentum width, MeV/c.
GOLDHABER_SIGMA0_MEV_C = 90.0


def sihver_cross_section_mb(a_projectile: int, a_target: int) -> float:
    """Total reaction cross-section (mb) of nucleus ``a_projectile`` on ``a_target``.

    Returns 0 for proton-proton (no projectile-nucleus reaction; p-p inelastic scattering above
    the pion threshold is below 30 mb and neglected).
    """
    if a_projectile == 1 and a_target == 1:
        return 0.0
    ap, at = a_projectile ** (1 / 3), a_target ** (1 / 3)
    inv = 1 / ap + 1 / at
    if a_projectile == 1 or a_target == 1:
        heavy = max(a_projectile, a_target) ** (1 / 3)
        b0 = 2.247 - 0.915 * (1 + 1 / heavy)
    else:
        b0 = 1.581 - 0.876 * inv
    sigma_fm2 = np.pi * SIHVER_R0_FM**2 * (ap + at - b0 * inv) ** 2
    return float(10.0 * sigma_fm2)  # 1 fm^2 = 10 mb


def macroscopic_cross_section_per_mm(mass_number: int) -> float:
    """Macroscopic total reaction cross-section in water, 1/mm, for a projectile of mass A."""
    sig_h_cm2 = sihver_cross_section_mb(mass_number, 1) * 1e-27
    sig_o_cm2 = sihver_cross_section_mb(mass_number, 16) * 1e-27
    per_cm = WATER_N_H_PER_CM3 * sig_h_cm2 + WATER_N_O_PER_CM3 * sig_o_cm2
    return per_cm / 10.0


@dataclass(frozen=True)
class FragmentSpecies:
    """One projectile-fragment species of a 12C beam.

    Attributes
    ----------
    z, a : int
        Charge and representative mass number (the most abundant isotope in 12C fragmentation:
        1H, 4He, 7Li, 7Be, 11B, 11C).
    multiplicity : float
        Mean number produced per 12C reaction in water.
    """

    z: int
    a: int
    multiplicity: float

    def emission_sigma_rad(
        self, energy_mev_u: ArrayLike, projectile_a: int = 12
    ) -> NDArray[np.float64]:
        """Goldhaber emission-angle sigma (rad) at kinetic energy per nucleon ``energy_mev_u``."""
        sigma_pt = GOLDHABER_SIGMA0_MEV_C * np.sqrt(
            self.a * (projectile_a - self.a) / (projectile_a - 1)
        )
        e = np.asarray(energy_mev_u, dtype=np.float64)
        p_f = self.a * momentum_per_nucleon_mev_c(e)
        return sigma_pt / np.maximum(p_f, 1e-9)


#: Default fragment species of a 12C beam in water, with multiplicities per reaction.
CARBON_FRAGMENTS: tuple[FragmentSpecies, ...] = (
    FragmentSpecies(z=1, a=1, multiplicity=1.60),
    FragmentSpecies(z=2, a=4, multiplicity=1.05),
    FragmentSpecies(z=3, a=7, multiplicity=0.08),
    FragmentSpecies(z=4, a=7, multiplicity=0.06),
    FragmentSpecies(z=5, a=11, multiplicity=0.12),
    FragmentSpecies(z=6, a=11, multiplicity=0.10),
)


def neutron_multiplicity(fragments: tuple[FragmentSpecies, ...], projectile_a: int = 12) -> float:
    """Projectile nucleons per reaction not bound in charged fragments (leave as neutrons)."""
    bound = sum(f.multiplicity * f.a for f in fragments)
    if bound > projectile_a:
        raise ValueError("fragment multiplicities carry more nucleons than the projectile has")
    return projectile_a - bound
