"""Nuclear interactions of carbon ions and their fragments in water.

Total reaction cross-sections
    Tripathi et al. (1996 Nucl Instrum Meth B 117:347; NASA TP-3621, 1997; light systems 1997
    Nucl Instrum Meth B 129:11), energy-dependent (:func:`tripathi_cross_section_mb`), used by
    the machine generator. Sihver et al. (1993), Phys Rev C 47:1225, energy-independent
    high-energy form, kept for comparison (:func:`sihver_cross_section_mb`):
    sigma_R = pi r0^2 [A_p^(1/3) + A_t^(1/3) - b0 (A_p^(-1/3) + A_t^(-1/3))]^2, r0 = 1.36 fm,
    b0 = 1.581 - 0.876 (A_p^(-1/3) + A_t^(-1/3)) for nucleus-nucleus collisions and
    b0 = 2.247 - 0.915 (1 + A^(-1/3)) when one partner is a proton. Both give about 0.98 b for
    C+O and 0.21-0.22 b for C+p at 200-400 MeV/u (Kox et al. 1987).
    Water: n(H) = 6.69e22 /cm^3, n(O) = 3.34e22 /cm^3.

Projectile fragments
    Projectile-like fragments leave at about the projectile's velocity (Goldhaber 1974), with a
    transverse momentum spread sigma_pt^2 = sigma0^2 A_f (A_p - A_f)/(A_p - 1), sigma0 = 90 MeV/c,
    so the emission angle spread is sigma_theta = sigma_pt / p_f.
    Mean multiplicities per 12C reaction in water (charged fragments H..B and secondary 11C):
    He, Li, Be and B reproduce the yields measured at 5.7 cm depth by Haettner et al. 2013
    (PMB 58:8265, 12C at 400 MeV/u in water), where the fragments' own reactions add only a
    few %; H (1.60) and 11C (0.10) are kept from earlier versions (hydrogen and helium dominate,
    consistent with Haettner et al. 2006 Radiat Prot Dosim 122:485 and Gunzert-Marx et al.
    2008 New J Phys 10:075003). The projectile nucleons not bound in charged fragments join the
    target's participants in a fireball (:func:`fireball`), whose protons are charged particles
    transported like fragments and whose neutrons leave. Fragments' own reactions emit charged
    products at their velocity (:data:`FRAGMENT_PRODUCTS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.physics.stopping import momentum_per_nucleon_mev_c

NUCLEON_MASS_MEV = 931.494

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
    """Energy-independent macroscopic reaction cross-section in water (Sihver), 1/mm."""
    sig_h_cm2 = sihver_cross_section_mb(mass_number, 1) * 1e-27
    sig_o_cm2 = sihver_cross_section_mb(mass_number, 16) * 1e-27
    per_cm = WATER_N_H_PER_CM3 * sig_h_cm2 + WATER_N_O_PER_CM3 * sig_o_cm2
    return per_cm / 10.0


#: Root-mean-square charge radii (fm) used in Tripathi's Coulomb term (Angeli and Marinova
#: 2013 compilation, rounded; 7Be and 11C take their mirror nuclei's radii).
RMS_RADIUS_FM = {1: 0.88, 4: 1.68, 7: 2.44, 11: 2.41, 12: 2.47, 16: 2.70}


def _rms_radius_fm(a: int) -> float:
    return RMS_RADIUS_FM.get(a, 0.84 * a ** (1 / 3) + 0.55)


def tripathi_cross_section_mb(a_p: int, z_p: int, a_t: int, z_t: int,
                              energy_mev_u: ArrayLike) -> NDArray[np.float64]:
    """Total reaction cross-section (mb) of projectile (A_p, Z_p) on target (A_t, Z_t) at
    kinetic energy per nucleon ``energy_mev_u`` (lab), Tripathi et al.

    R.K. Tripathi, F.A. Cucinotta, J.W. Wilson, "Universal parameterization of absorption cross
    sections", NASA TP-3621 (1997) and Nucl Instrum Meth B 117:347 (1996); light systems (a
    proton or alpha partner) as in Tripathi et al., Nucl Instrum Meth B 129:11 (1997):

        sigma = pi r0^2 (A_p^1/3 + A_t^1/3 + delta_E)^2 (1 - R_c B/E_cm) X_m,  r0 = 1.1 fm,
        delta_E = 1.85 S + 0.16 S/E_cm^1/3 - C_E + 0.91 (A_t - 2 Z_t) Z_p/(A_t A_p),
        S = A_p^1/3 A_t^1/3 / (A_p^1/3 + A_t^1/3),
        C_E = D (1 - exp(-E/T1)) - 0.292 exp(-E/792) cos(0.229 E^0.453),
        B = 1.44 Z_p Z_t / R,  R = r_p + r_t + 1.2 (A_p^1/3 + A_t^1/3)/E_cm^1/3,  r = 1.29 r_rms,

    D = 1.75 for nucleus-nucleus (scaled by the partners' mean density relative to C+C),
    D = 2.05 and T1 = 23 MeV for proton-nucleus, D = 2.77 - 8e-3 A + 1.8e-5 A^2
    - 0.8/(1 + exp((250 - E)/75)) for alpha-nucleus, T1 = 40 MeV otherwise; X_m = 1 except for
    proton-nucleus, X_m = 1 - X1 exp(-E/(X1 S_L)), X1 = 2.83 - 3.1e-2 A + 1.7e-4 A^2,
    S_L = 1.2 + 1.6 (1 - exp(-E/15)). The projectile and target are interchangeable (the
    formula is used at equal velocity, in the heavier partner's frame for hydrogen targets).
    p-p returns 0 (no projectile-nucleus reaction; neglected as in :func:`sihver_cross_section_mb`).
    Negative values (below the Coulomb barrier) are clipped to 0.
    """
    e = np.maximum(np.asarray(energy_mev_u, dtype=np.float64), 1e-3)
    if a_p == 1 and a_t == 1:
        return np.zeros_like(e)
    if a_p > a_t:  # the light partner plays the projectile (symmetric formula, equal velocity)
        a_p, z_p, a_t, z_t = a_t, z_t, a_p, z_p
    ap3, at3 = a_p ** (1 / 3), a_t ** (1 / 3)
    # Centre-of-mass kinetic energy (relativistic), MeV.
    m_p, m_t = a_p * NUCLEON_MASS_MEV, a_t * NUCLEON_MASS_MEV
    t_lab = a_p * e
    e_cm = np.sqrt(m_p**2 + m_t**2 + 2 * m_t * (m_p + t_lab)) - m_p - m_t
    s_fac = ap3 * at3 / (ap3 + at3)
    x_m = np.ones_like(e)
    d: float | NDArray[np.float64]
    if a_p == 1:
        d, t1 = 2.05, 23.0
        x1 = 2.83 - 3.1e-2 * a_t + 1.7e-4 * a_t**2
        s_l = 1.2 + 1.6 * (1 - np.exp(-e / 15.0))
        x_m = 1 - x1 * np.exp(-e / (x1 * s_l))
    elif a_p == 4:
        d = 2.77 - 8.0e-3 * a_t + 1.8e-5 * a_t**2 - 0.8 / (1 + np.exp((250.0 - e) / 75.0))
        t1 = 40.0
    else:
        def density(a: int) -> float:
            return a / (4 / 3 * np.pi * (1.29 * _rms_radius_fm(a)) ** 3)

        d = 1.75 * (density(a_p) + density(a_t)) / (2 * density(12))
        t1 = 40.0
    c_e = d * (1 - np.exp(-e / t1)) - 0.292 * np.exp(-e / 792.0) * np.cos(0.229 * e**0.453)
    delta = (1.85 * s_fac + 0.16 * s_fac / np.cbrt(e_cm) - c_e
             + 0.91 * (a_t - 2 * z_t) * z_p / (a_t * a_p))
    radius = (1.29 * (_rms_radius_fm(a_p) + _rms_radius_fm(a_t))
              + 1.2 * (ap3 + at3) / np.cbrt(e_cm))
    coulomb = 1 - 1.44 * z_p * z_t / radius / e_cm
    sigma_fm2 = np.pi * 1.1**2 * (ap3 + at3 + delta) ** 2 * coulomb * x_m
    return np.maximum(10.0 * sigma_fm2, 0.0)


def water_cross_section_per_mm(mass_number: int, charge: int,
                               energy_mev_u: ArrayLike) -> NDArray[np.float64]:
    """Macroscopic reaction cross-section in water (1/mm) of an ion (A, Z) at ``energy_mev_u``,
    from :func:`tripathi_cross_section_mb` on oxygen and hydrogen."""
    sig_h = tripathi_cross_section_mb(mass_number, charge, 1, 1, energy_mev_u) * 1e-27
    sig_o = tripathi_cross_section_mb(mass_number, charge, 16, 8, energy_mev_u) * 1e-27
    return (WATER_N_H_PER_CM3 * sig_h + WATER_N_O_PER_CM3 * sig_o) / 10.0


@dataclass(frozen=True)
class FragmentSpecies:
    """One projectile-fragment species of a 12C beam.

    Attributes
    ----------
    z, a : int
        Charge and mass number of the isotope (:data:`FRAGMENT_ISOTOPES`).
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


#: Mean numbers of charged fragments per 12C reaction in water, by element (Z: number): H, He,
#: Li, Be, B and secondary carbon (module docstring; the isotopes share them by
#: :data:`FRAGMENT_ISOTOPES`).
CARBON_FRAGMENT_ELEMENTS: dict[int, float] = {1: 1.60, 2: 0.86, 3: 0.136, 4: 0.06, 5: 0.158,
                                              6: 0.10}

#: Isotopic composition of the fragments of each element, ((A, fraction), ...) with the
#: fractions summing to 1, used for the fragments of 12C and for the products of the fragments'
#: own reactions. Measured 12C + H production cross sections (tests/data/fragment_isotopes):
#: B and Be the mean of Webber et al. 1990 (Phys Rev C 41:547; 486 MeV/u) and Webber et al.
#: 1998 (ApJ 508:949; 365 MeV/u), 10B 0.34/0.36, 7Be:9Be:10Be 0.51:0.31:0.18 / 0.60:0.26:0.14;
#: Li from p + 12C at 600 MeV (Read and Viola 1984, At Data Nucl Data Tables 31:359), He from
#: Olson et al. 1983 (Phys Rev C 28:1602; 3He 0.20 / 0.23 at 1.05 / 2.1 GeV/u, the lowest
#: energies found). Olson et al. found the cross sections to factorize into projectile-fragment
#: and target terms, so the ratios hold on oxygen to first order. Hydrogen is transported as
#: protons (deuterons and tritons as protons of their velocity: their nucleons beyond the first
#: go to the fireball) and secondary carbon as 11C; 8B, 8Li and 6He (< 5 % of their elements)
#: are left out.
FRAGMENT_ISOTOPES: dict[int, tuple[tuple[int, float], ...]] = {
    1: ((1, 1.0),),
    2: ((3, 0.22), (4, 0.78)),
    3: ((6, 0.53), (7, 0.47)),
    4: ((7, 0.55), (9, 0.29), (10, 0.16)),
    5: ((10, 0.35), (11, 0.65)),
    6: ((11, 1.0),),
}


def isotope_species(element_numbers: dict[int, float]) -> tuple[FragmentSpecies, ...]:
    """Fragment species, one per isotope of :data:`FRAGMENT_ISOTOPES`, ordered by (Z, A), with
    the element's number per reaction shared by the isotopic fractions."""
    return tuple(FragmentSpecies(z=z, a=a, multiplicity=element_numbers[z] * fraction)
                 for z in sorted(element_numbers)
                 for a, fraction in FRAGMENT_ISOTOPES[z])


#: Default fragment species of a 12C beam in water, with multiplicities per reaction.
CARBON_FRAGMENTS: tuple[FragmentSpecies, ...] = isotope_species(CARBON_FRAGMENT_ELEMENTS)


def neutron_multiplicity(fragments: tuple[FragmentSpecies, ...], projectile_a: int = 12) -> float:
    """Projectile nucleons per reaction not bound in charged fragments (leave as neutrons)."""
    bound = sum(f.multiplicity * f.a for f in fragments)
    if bound > projectile_a:
        raise ValueError("fragment multiplicities carry more nucleons than the projectile has")
    return projectile_a - bound


#: Charged products at the parent's velocity of a reaction of each fragment species in water,
#: mean numbers per reaction by product element (H, He, Li, Be, B, C), keyed by the parent's
#: (Z, A); :func:`reaction_products` shares each element among the transported isotopes.
#: Model parameters set from the dominant break-up channels (7Be -> 3He + 4He,
#: 7Li -> 4He + 3H, 6Li -> 4He + 2H, 9Be and 10Be -> two 4He + neutrons, 4He -> 3He/3H +
#: nucleon, 3He -> 2H + p or p + p + n; 11C with the 12C multiplicities of generator 1.2.0,
#: 11B and 10B with fewer heavy products), before any comparison with a depth dose; each keeps
#: 80-90 % of the parent's charge in charged products and never more nucleons than the parent
#: has. A reacting proton keeps half a fast proton (the leading proton of a knock-out). The
#: rest of the parent's nucleons go to the fireball (:func:`fireball`).
FRAGMENT_PRODUCTS: dict[tuple[int, int], tuple[float, float, float, float, float, float]] = {
    (1, 1): (0.5, 0.0, 0.0, 0.0, 0.0, 0.0),
    (2, 3): (1.4, 0.1, 0.0, 0.0, 0.0, 0.0),
    (2, 4): (1.2, 0.2, 0.0, 0.0, 0.0, 0.0),
    (3, 6): (1.0, 0.8, 0.0, 0.0, 0.0, 0.0),
    (3, 7): (1.0, 0.8, 0.0, 0.0, 0.0, 0.0),
    (4, 7): (1.0, 1.2, 0.0, 0.0, 0.0, 0.0),
    (4, 9): (0.6, 1.4, 0.0, 0.0, 0.0, 0.0),
    (4, 10): (0.6, 1.4, 0.0, 0.0, 0.0, 0.0),
    (5, 10): (1.5, 1.2, 0.08, 0.06, 0.0, 0.0),
    (5, 11): (1.5, 1.2, 0.08, 0.06, 0.0, 0.0),
    (6, 11): (1.60, 1.05, 0.08, 0.06, 0.12, 0.0),
}


def reaction_products(parent: tuple[int, int], species: tuple[tuple[int, int], ...]
                      ) -> tuple[float, ...]:
    """Mean numbers of each of ``species`` ((Z, A), as transported) among the charged products
    of one reaction of ``parent``: :data:`FRAGMENT_PRODUCTS`'s number of each element shared
    among that element's transported isotopes in proportion to :data:`FRAGMENT_ISOTOPES`.

    Raises
    ------
    ValueError
        If ``parent`` has no entry in :data:`FRAGMENT_PRODUCTS`, an element with products has
        no transported isotope, or an element's transported isotopes have no fraction.
    """
    if parent not in FRAGMENT_PRODUCTS:
        raise ValueError(f"no reaction products are known for the fragment (Z, A) = {parent}")
    by_element = FRAGMENT_PRODUCTS[parent]
    out = []
    for z, a in species:
        fractions = dict(FRAGMENT_ISOTOPES.get(z, ()))
        present = sum(fractions.get(pa, 0.0) for pz, pa in species if pz == z)
        if present <= 0.0:
            raise ValueError(f"no isotopic fraction is known for the transported isotopes of "
                             f"element Z = {z} (FRAGMENT_ISOTOPES)")
        out.append(by_element[z - 1] * fractions.get(a, 0.0) / present)
    for z, number in enumerate(by_element, start=1):
        if number > 0 and not any(pz == z for pz, _ in species):
            raise ValueError(f"reactions of {parent} make element Z = {z}, which is not "
                             "transported")
    return tuple(out)


@dataclass(frozen=True)
class Fireball:
    """The participant nucleons of one reaction (abrasion-fireball picture, Westfall et al.
    1976, Phys Rev Lett 37:1202): the parent's nucleons not bound in charged products
    (``unbound``) and the target's participants share the parent's kinetic energy of the
    unbound nucleons; each of the ``protons`` leaves with ``energy_fraction`` times the parent's
    energy per nucleon; the neutrons take the rest.

    Target participants for an average impact parameter: A_t^(1/3)/A_p^(1/3) times the
    parent's (Westfall's geometry: N_t/N_p = (A_t/A_p)^(1/3)) on oxygen, at most one on
    hydrogen; oxygen's participants are half protons. Weighted by the reaction rates on O and
    H in water at 300 MeV/u (Tripathi).
    """

    unbound: float
    protons: float
    energy_fraction: float

    def proton_energy_fractions(self, n_points: int = 8) -> NDArray[np.float64]:
        """Energies of the fireball protons in units of the parent's energy per nucleon:
        ``n_points`` equally weighted points of a uniform spectrum of mean
        ``energy_fraction``, as wide as it can be without exceeding the parent's energy per
        nucleon (from max(0, 2f - 1) to min(1, 2f)). The fireball emits a broad thermal
        spectrum (Westfall et al. 1976); a single energy would stop all its protons at one
        depth."""
        f = self.energy_fraction
        half = min(f, 1.0 - f)
        u = (np.arange(n_points) + 0.5) / n_points
        return f - half + 2 * half * u

    @property
    def neutron_energy_fraction(self) -> float:
        """Energy carried by neutrons per reaction, in units of the parent's energy per nucleon."""
        return self.unbound - self.protons * self.energy_fraction


def fireball(z: int, a: int, products: tuple[float, ...],
             product_za: tuple[tuple[int, int], ...]) -> Fireball:
    """:class:`Fireball` of a reaction of parent (Z, A) with charged ``products`` (mean numbers
    of the species ``product_za``)."""
    bound_a = sum(m * pa for m, (_, pa) in zip(products, product_za, strict=True))
    bound_z = sum(m * pz for m, (pz, _) in zip(products, product_za, strict=True))
    if bound_a > a + 1e-9 or bound_z > z + 1e-9:
        raise ValueError(f"products of ({z}, {a}) carry more nucleons or charge than it has")
    unbound = a - bound_a
    unbound_p = z - bound_z
    rate_h = float(WATER_N_H_PER_CM3 * tripathi_cross_section_mb(a, z, 1, 1, 300.0))
    rate_o = float(WATER_N_O_PER_CM3 * tripathi_cross_section_mb(a, z, 16, 8, 300.0))
    w_o = rate_o / (rate_o + rate_h)
    n_t_o = unbound * (16 / a) ** (1 / 3)
    n_t_h = min(1.0, unbound)
    n_t = w_o * n_t_o + (1 - w_o) * n_t_h
    z_t = w_o * 0.5 * n_t_o + (1 - w_o) * n_t_h
    if unbound <= 0:
        return Fireball(0.0, 0.0, 0.0)
    return Fireball(unbound=unbound, protons=unbound_p + z_t,
                    energy_fraction=unbound / (unbound + n_t))
