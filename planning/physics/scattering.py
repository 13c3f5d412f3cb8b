"""Multiple Coulomb scattering of ions in water: Highland's formula applied differentially.

Highland (1975), as given by the PDG ("Passage of particles through matter"):

    theta0 = 14.1 MeV / (p beta c) * z * sqrt(L/L_R) * (1 + log10(L/L_R) / 9)

with L_R(water) = 36.08 cm. For a thick absorber in which the ion slows down, the projected
lateral variance at depth z follows from Fermi-Eyges theory with a scattering power T(z'):

    sigma_x^2(z) = integral_0^z (z - z')^2 T(z') dz',
    T(z') = (14.1 MeV * z_ion / (p beta c)(z'))^2 / L_R * (1 + log10(z / L_R) / 9)^2,

i.e. the Highland logarithmic correction is evaluated at the total depth z (the "differential
Highland" form, Gottschalk et al. 1993 NIM B 74:467), which reproduces Highland for a thin slab.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.physics.stopping import AMU_MEV, RangeEnergy, beta_gamma

#: Radiation length of liquid water, mm (PDG: 36.08 g/cm^2).
WATER_RADIATION_LENGTH_MM = 360.8
#: Highland's constant, MeV.
HIGHLAND_MEV = 14.1


def p_beta_c_mev(energy_mev_u: ArrayLike, mass_number: int) -> NDArray[np.float64]:
    """p beta c of the whole ion in MeV (p = A * p per nucleon)."""
    e = np.asarray(energy_mev_u, dtype=np.float64)
    beta, _ = beta_gamma(e)
    pc = mass_number * np.sqrt(e * (e + 2 * AMU_MEV))
    return pc * beta


def highland_log_factor(path_mm: ArrayLike) -> NDArray[np.float64]:
    """Highland's (1 + log10(L/L_R)/9) correction, floored at 0.2 for very thin layers."""
    ratio = np.maximum(np.asarray(path_mm, dtype=np.float64), 1e-3) / WATER_RADIATION_LENGTH_MM
    return np.maximum(1.0 + np.log10(ratio) / 9.0, 0.2)


def lateral_sigma_mm(
    range_energy: RangeEnergy,
    charge: int,
    energy_mev_u: float,
    depth_mm: ArrayLike,
    n_nodes: int = 600,
) -> NDArray[np.float64]:
    """Projected lateral sigma (mm) of a pencil beam from scattering in water, at each depth.

    Parameters
    ----------
    range_energy : RangeEnergy
        Range-energy relation of the ion.
    charge : int
        Charge number z of the ion.
    energy_mev_u : float
        Initial kinetic energy per nucleon.
    depth_mm : array_like, shape (N,)
        Depths at which sigma is wanted; depths beyond the CSDA range get the value at the range.
    n_nodes : int
        Quadrature nodes along the path.

    Returns
    -------
    ndarray, shape (N,)
        Sigma of the projected lateral displacement (no initial beam size), mm.
    """
    depth = np.asarray(depth_mm, dtype=np.float64)
    r0 = float(range_energy.range_mm(energy_mev_u))
    zq = np.minimum(depth, r0)
    # Nodes dense towards the end of range, where p beta c falls fastest.
    s = np.linspace(0.0, 1.0, n_nodes)
    z_nodes = r0 * (1.0 - (1.0 - s) ** 2)
    e_nodes = range_energy.energy_mev_u(r0 - z_nodes)
    pbc = p_beta_c_mev(np.maximum(e_nodes, 1e-3), range_energy.mass_number)
    t_base = (HIGHLAND_MEV * charge / pbc) ** 2 / WATER_RADIATION_LENGTH_MM  # rad^2/mm, no log
    out = np.empty_like(zq)
    for i, z in enumerate(zq):
        mask = z_nodes <= z
        zz = np.append(z_nodes[mask], z)
        tt = np.append(t_base[mask], np.interp(z, z_nodes, t_base))
        f = (z - zz) ** 2 * tt
        var = float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(zz)))
        out[i] = np.sqrt(var) * highland_log_factor(z)
    return out
