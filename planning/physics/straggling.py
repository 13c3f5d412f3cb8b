"""Range straggling of ions in water (Bohr's theory of energy-loss straggling).

The variance of the energy loss per unit path is (Bohr; relativistic factor as in ICRU 49)

    d sigma_E^2 / dx = 4 pi N_A r_e^2 (m_e c^2)^2 (Z/A) rho z^2 (1 - beta^2/2) / (1 - beta^2)
                     = 0.0871 MeV^2/cm * z^2 * (1 - beta^2/2) / (1 - beta^2)   (water, rho = 1)

and the range variance of an ion slowing down from E0 is

    sigma_R^2 = integral_0^E0 (d sigma_E^2/dx) / S(E)^3 dE,

with E the total kinetic energy of the ion (A times the energy per nucleon) and S the stopping
power of the ion.
"""

from __future__ import annotations

import numpy as np

from planning.physics.stopping import (
    BETHE_K_MEV_CM2_MOL,
    ELECTRON_MASS_MEV,
    WATER_Z_OVER_A,
    StoppingTable,
    beta_gamma,
)

#: Bohr's energy-loss straggling constant for water, MeV^2/cm at unit density:
#: 4 pi N_A r_e^2 (m_e c^2)^2 Z/A = K m_e c^2 Z/A.
BOHR_WATER_MEV2_CM = BETHE_K_MEV_CM2_MOL * ELECTRON_MASS_MEV * WATER_Z_OVER_A


def bohr_range_straggling_mm(
    table: StoppingTable, mass_number: int, energy_mev_u: float, n_nodes: int = 4000
) -> float:
    """Bohr range straggling sigma_R (mm) of an ion of initial energy per nucleon ``energy_mev_u``.

    Parameters
    ----------
    table : StoppingTable
        Stopping power of the ion species.
    mass_number : int
        Mass number A of the ion (energy per nucleon times A is the total kinetic energy).
    energy_mev_u : float
        Initial kinetic energy per nucleon, MeV/u.
    n_nodes : int
        Quadrature nodes (log-spaced from 1e-3 MeV/u).

    Returns
    -------
    float
        One standard deviation of the range distribution, mm.
    """
    e_u = np.geomspace(1e-3, energy_mev_u, n_nodes)
    beta, _ = beta_gamma(e_u)
    kappa = BOHR_WATER_MEV2_CM * table.z**2 * (1 - 0.5 * beta**2) / (1 - beta**2)
    s = table.stopping_power(e_u)
    integrand = kappa / s**3 * mass_number  # dE_total = A dE_u ; result in cm^2
    var_cm2 = float(np.sum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(e_u)))
    return 10.0 * np.sqrt(var_cm2)
