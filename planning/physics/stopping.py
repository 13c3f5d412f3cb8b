"""Electronic stopping power and CSDA range of light ions in water.

Two sources are offered:

- tabulated stopping powers (MSTAR 3.12, Geant4 11.3.0, FLUKA 2020.0; see
  ``assets/stopping_power/README.md``), interpolated log-log. Tables include shell, Barkas and
  effective-charge corrections that matter below a few MeV/u; the machine generator uses them.
- the Bethe-Bloch formula (:func:`bethe_bloch_mev_cm`), without shell, Barkas, Bloch or density
  corrections, valid above about 10 MeV/u where it agrees with the tables to about 1-2 %.

Mean excitation energy of water. Each table was computed with its program's I-value
(:data:`SOURCE_MEAN_EXCITATION_EV`: MSTAR 75 eV as ICRU 49/73, Geant4 78 eV as ICRU 90, FLUKA
77 eV). :meth:`StoppingTable.with_mean_excitation` moves a table to another I with the Bethe
stopping number L = S beta^2 / (K z^2 (Z/A)) implied by the table itself: changing I shifts L by
-ln(I'/I) (PDG eq. 34.5) and leaves the shell, Barkas and effective-charge corrections as
they are, so S' = S (1 - ln(I'/I) / L). ICRU Report 90 (2016) recommends 78 eV for liquid
water; MSTAR moved to 78 eV gives the ICRU 90 CSDA ranges of 12C (52.83 mm at 150 MeV/u,
274.8 mm at 400 MeV/u) within 0.02 % (tests/test_physics_stopping.py).

Units: kinetic energy per nucleon in MeV/u, stopping power of the whole ion in MeV/cm at unit
density (liquid water, 1 g/cm^3), ranges in mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib import resources

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.errors import DataFileError, InputError

FloatArray = NDArray[np.float64]

#: Atomic mass unit energy equivalent, MeV (CODATA 2018).
AMU_MEV = 931.49410242
#: Electron rest energy, MeV (CODATA 2018).
ELECTRON_MASS_MEV = 0.51099895
#: K = 4 pi N_A r_e^2 m_e c^2, MeV cm^2 / mol (PDG).
BETHE_K_MEV_CM2_MOL = 0.307075
#: Z/A of liquid water, mol/g.
WATER_Z_OVER_A = 10.0 / 18.0153

STOPPING_SOURCES = ("mstar_3_12", "geant4_11_3_0", "fluka_2020_0")
#: Mean excitation energy of water (eV) with which each source's tables were computed
#: (assets/stopping_power/README.md).
SOURCE_MEAN_EXCITATION_EV = {"mstar_3_12": 75.0, "geant4_11_3_0": 78.0, "fluka_2020_0": 77.0}
#: Mean excitation energy of liquid water recommended by ICRU Report 90 (2016), eV.
ICRU90_WATER_MEAN_EXCITATION_EV = 78.0
#: Floor of the stopping number in :meth:`StoppingTable.with_mean_excitation`: below about
#: 0.3 MeV/u (L < 1) the Bethe form no longer holds and the correction is held at its value there.
_MIN_STOPPING_NUMBER = 1.0
_ION_FILES = {
    1: "Z01_A01_Hydrogen.txt",
    2: "Z02_A04_Helium.txt",
    3: "Z03_A07_Lithium.txt",
    4: "Z04_A09_Beryllium.txt",
    5: "Z05_A10_Boron.txt",
    6: "Z06_A12_Carbon.txt",
}


def beta_gamma(energy_mev_u: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Velocity beta = v/c and Lorentz factor gamma of an ion with kinetic energy per nucleon."""
    e = np.asarray(energy_mev_u, dtype=np.float64)
    gamma = 1.0 + e / AMU_MEV
    beta = np.sqrt(1.0 - 1.0 / gamma**2)
    return beta, gamma


def momentum_per_nucleon_mev_c(energy_mev_u: ArrayLike) -> FloatArray:
    """Momentum per nucleon p/A in MeV/c for kinetic energy per nucleon (nucleon mass = 1 u)."""
    e = np.asarray(energy_mev_u, dtype=np.float64)
    return np.sqrt(e * (e + 2.0 * AMU_MEV))


def bethe_bloch_mev_cm(z: int, energy_mev_u: ArrayLike, i_ev: float = 75.0) -> FloatArray:
    """Bethe-Bloch electronic stopping power of a bare ion of charge ``z`` in liquid water.

    -dE/dx = K z^2 (Z/A) rho / beta^2 [ 1/2 ln(2 m_e c^2 beta^2 gamma^2 T_max / I^2) - beta^2 ]
    with T_max the maximum energy transfer to a free electron (PDG, "Passage of particles through
    matter", eq. 34.5, without the density-effect term, which is below 0.1 % under 500 MeV/u).

    Parameters
    ----------
    z : int
        Charge number of the (fully stripped) ion.
    energy_mev_u : array_like
        Kinetic energy per nucleon, MeV/u.
    i_ev : float
        Mean excitation energy of water, eV (75 eV as in MSTAR/ICRU 49; 78 eV in ICRU 90).

    Returns
    -------
    ndarray
        Stopping power of the ion in MeV/cm at 1 g/cm^3.
    """
    beta, gamma = beta_gamma(energy_mev_u)
    bg2 = (beta * gamma) ** 2
    mass_ratio = ELECTRON_MASS_MEV / AMU_MEV  # per nucleon; the ion mass is A u
    # T_max for an ion of mass M = A u; A cancels to very good accuracy for A >= 1 at these
    # energies, so the per-nucleon form is used (error < 0.1 % in the log term).
    t_max = 2 * ELECTRON_MASS_MEV * bg2 / (1 + 2 * gamma * mass_ratio + mass_ratio**2)
    i_mev = i_ev * 1e-6
    log_term = 0.5 * np.log(2 * ELECTRON_MASS_MEV * bg2 * t_max / i_mev**2)
    return BETHE_K_MEV_CM2_MOL * z**2 * WATER_Z_OVER_A / beta**2 * (log_term - beta**2)



def bethe_stopping_ratio(numerator_mev_u: ArrayLike, denominator_mev_u: ArrayLike, *,
                         i_ev: float) -> FloatArray:
    """S(E1) / S(E2) of one bare ion in one medium by Bethe-Bloch, with the medium's mean
    excitation energy ``i_ev`` (eV): the ion's charge and the medium's Z/A cancel, so the
    water form of :func:`bethe_bloch_mev_cm` serves any medium, e.g. air (85.7 eV) for a
    monitor chamber's signal per particle. Energies per nucleon, MeV/u, above about 10 MeV/u."""
    return (bethe_bloch_mev_cm(1, numerator_mev_u, i_ev)
            / bethe_bloch_mev_cm(1, denominator_mev_u, i_ev))

@dataclass(frozen=True)
class StoppingTable:
    """Tabulated electronic stopping power of one ion species in liquid water.

    Attributes
    ----------
    z : int
        Charge number.
    energy_mev_u : (N,) float array
        Kinetic energy per nucleon nodes, increasing.
    stopping_mev_cm : (N,) float array
        Stopping power of the whole ion, MeV/cm at 1 g/cm^3.
    source : str
        Table source identifier (e.g. ``mstar_3_12``).
    mean_excitation_ev : float
        Mean excitation energy of water of the stopping powers, eV.
    """

    z: int
    energy_mev_u: FloatArray
    stopping_mev_cm: FloatArray
    source: str
    mean_excitation_ev: float

    def with_mean_excitation(self, mean_excitation_ev: float) -> StoppingTable:
        """This table moved to another mean excitation energy of water (eV).

        S' = S (1 - ln(I'/I) / L) with the stopping number L = S beta^2 / (K z^2 (Z/A)) of the
        table (floored at 1, below about 0.3 MeV/u); see the module docstring.
        """
        if not (np.isfinite(mean_excitation_ev) and 50.0 <= mean_excitation_ev <= 100.0):
            raise InputError(f"mean excitation energy of water {mean_excitation_ev!r} eV is "
                             "outside 50-100 eV")
        beta, _ = beta_gamma(self.energy_mev_u)
        number = (self.stopping_mev_cm * beta**2
                  / (BETHE_K_MEV_CM2_MOL * self.z**2 * WATER_Z_OVER_A))
        shift = np.log(mean_excitation_ev / self.mean_excitation_ev)
        factor = 1.0 - shift / np.maximum(number, _MIN_STOPPING_NUMBER)
        return StoppingTable(z=self.z, energy_mev_u=self.energy_mev_u,
                             stopping_mev_cm=self.stopping_mev_cm * factor, source=self.source,
                             mean_excitation_ev=float(mean_excitation_ev))

    def stopping_power(self, energy_mev_u: ArrayLike) -> FloatArray:
        """Stopping power in MeV/cm, log-log interpolated; below the table, S ~ sqrt(E) (velocity
        proportional electronic stopping); above it, Bethe-Bloch scaled to the last node."""
        e = np.asarray(energy_mev_u, dtype=np.float64)
        le = np.log(np.clip(e, self.energy_mev_u[0], self.energy_mev_u[-1]))
        s = np.exp(np.interp(le, np.log(self.energy_mev_u), np.log(self.stopping_mev_cm)))
        low = e < self.energy_mev_u[0]
        if np.any(low):
            s = np.where(low, self.stopping_mev_cm[0] * np.sqrt(np.maximum(e, 0.0)
                                                                 / self.energy_mev_u[0]), s)
        high = e > self.energy_mev_u[-1]
        if np.any(high):
            scale = self.stopping_mev_cm[-1] / bethe_bloch_mev_cm(self.z, self.energy_mev_u[-1])
            s = np.where(high, scale * bethe_bloch_mev_cm(self.z, np.maximum(e, 1.0)), s)
        return s

    def let_kev_um(self, energy_mev_u: ArrayLike) -> FloatArray:
        """Unrestricted LET in water, keV/um (1 MeV/cm = 0.1 keV/um)."""
        return 0.1 * self.stopping_power(energy_mev_u)


def load_stopping_table(z: int, source: str = "mstar_3_12",
                        mean_excitation_ev: float | None = None) -> StoppingTable:
    """Load the shipped stopping-power table of ion ``z`` (1..6) from ``source``, at the
    source's own mean excitation energy of water or moved to ``mean_excitation_ev`` (eV; see
    :meth:`StoppingTable.with_mean_excitation`).

    Raises
    ------
    DataFileError
        If the source or ion is unknown or the file cannot be parsed.
    """
    if source not in STOPPING_SOURCES:
        raise DataFileError(source, f"unknown stopping-power source; choose one of "
                            f"{', '.join(STOPPING_SOURCES)}")
    if z not in _ION_FILES:
        raise DataFileError(source, f"no stopping-power table for Z={z} (available: 1..6)")
    ref = resources.files("assets") / "stopping_power" / source / _ION_FILES[z]
    try:
        text = ref.read_text(encoding="ascii")
    except OSError as exc:
        raise DataFileError(str(ref), f"cannot read stopping-power table ({exc})") from None
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except ValueError:
            continue
    arr = np.array(rows, dtype=np.float64)
    if arr.shape[0] < 10 or np.any(np.diff(arr[:, 0]) <= 0) or np.any(arr[:, 1] <= 0):
        raise DataFileError(str(ref), "stopping-power table is malformed")
    table = StoppingTable(z=z, energy_mev_u=arr[:, 0], stopping_mev_cm=arr[:, 1], source=source,
                          mean_excitation_ev=SOURCE_MEAN_EXCITATION_EV[source])
    if mean_excitation_ev is None or mean_excitation_ev == table.mean_excitation_ev:
        return table
    return table.with_mean_excitation(mean_excitation_ev)


@dataclass(frozen=True)
class RangeEnergy:
    """CSDA range-energy relation of one ion (species table plus mass number).

    The range is R(E) = A * integral_0^E dE'/S(E'), integrated on a fine logarithmic energy grid
    (trapezoid rule on 20 000 log-spaced nodes from 1e-3 MeV/u; the part below the first node uses
    S ~ sqrt(E), giving 2 A E0 / S(E0)).

    Attributes
    ----------
    table : StoppingTable
    mass_number : int
    max_energy_mev_u : float
    """

    table: StoppingTable
    mass_number: int
    max_energy_mev_u: float = 1000.0

    @cached_property
    def _grid(self) -> tuple[FloatArray, FloatArray]:
        e = np.geomspace(1e-3, self.max_energy_mev_u, 20000)
        s = self.table.stopping_power(e)
        inv = self.mass_number / s  # cm per MeV/u
        r_cm = np.concatenate(([0.0], np.cumsum(0.5 * (inv[1:] + inv[:-1]) * np.diff(e))))
        r_cm += 2.0 * self.mass_number * e[0] / s[0]
        return e, 10.0 * r_cm

    def range_mm(self, energy_mev_u: ArrayLike) -> FloatArray:
        """CSDA range in water (mm) for kinetic energy per nucleon (0 at 0 MeV/u)."""
        e_grid, r_grid = self._grid
        e = np.asarray(energy_mev_u, dtype=np.float64)
        r = np.interp(e, e_grid, r_grid)
        return np.where(e < e_grid[0], r_grid[0] * np.sqrt(np.maximum(e, 0) / e_grid[0]), r)

    def energy_mev_u(self, residual_range_mm: ArrayLike) -> FloatArray:
        """Kinetic energy per nucleon of the ion with the given residual range (0 for r <= 0)."""
        e_grid, r_grid = self._grid
        r = np.asarray(residual_range_mm, dtype=np.float64)
        e = np.interp(r, r_grid, e_grid)
        below = r < r_grid[0]
        return np.where(below, e_grid[0] * (np.maximum(r, 0) / r_grid[0]) ** 2, e)
