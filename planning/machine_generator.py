"""Generator of the generic IonPlan carbon machine, from first principles.

For each beam energy it computes, in water, the laterally integrated depth dose (IDD) of a 12C
pencil beam with its fragmentation tail, the double-Gaussian lateral spread, the dose-averaged
LET and the per-depth fluence spectra of all charged species (Z = 1..6). The physics and its
sources are described in docs/physics.md; in short:

- primaries slow down continuously (tabulated stopping powers, :mod:`planning.physics.stopping`),
  are removed by nuclear reactions with energy-dependent cross-sections (Tripathi,
  :mod:`planning.physics.nuclear`), and their range is spread by Bohr straggling, the beam's
  energy spread and a ripple filter (one Gaussian in residual range);
- each reaction emits fragments (H, He, Li, Be, B and 11C) at the projectile's velocity with
  fixed mean multiplicities; fragments slow down with their own stopping powers, are attenuated by
  their own cross-sections and spread laterally by their Goldhaber emission angle and their own
  multiple scattering; the projectile nucleons not bound in fragments and the target's
  participants form a fireball whose protons are transported and whose neutrons leave;
- the fragments' own reactions emit charged products at their velocity (and fireball protons),
  transported generation after generation until what goes into reactions is negligible, so the
  energy of every primary is booked: deposited, carried by neutrons, or escaped;
- the core's lateral sigma is the Fermi-Eyges/Highland scattering of the primaries
  (:mod:`planning.physics.scattering`); the halo is the dose-weighted variance of all fragments.

The generator is deterministic: the same settings give the same machine, bit for bit on one
platform. ``python -m planning.machine_generator OUT.npz`` rebuilds the shipped file.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d
from scipy.special import ndtr

from planning.errors import InputError
from planning.machine import Machine, Spectra, save_machine
from planning.physics.nuclear import (
    CARBON_FRAGMENTS,
    Fireball,
    FragmentSpecies,
    fireball,
    neutron_multiplicity,
    reaction_products,
    water_cross_section_per_mm,
)
from planning.physics.scattering import (
    HIGHLAND_MEV,
    WATER_RADIATION_LENGTH_MM,
    highland_log_factor,
    lateral_sigma_mm,
    p_beta_c_mev,
)
from planning.physics.stopping import (
    ICRU90_WATER_MEAN_EXCITATION_EV,
    RangeEnergy,
    StoppingTable,
    load_stopping_table,
)
from planning.physics.straggling import bohr_range_straggling_mm

GENERATOR_VERSION = "1.4.0"
FloatArray = NDArray[np.float64]
_log = logging.getLogger(__name__)

PRIMARY_Z, PRIMARY_A = 6, 12
#: Name of the generic machine: within the 16 characters of a DICOM Treatment Machine Name, so
#: that its plans carry it whole (it was "IonPlan generic 12C", which the RT Ion Plan cut to
#: "IonPlan generic"); the ion is in the machine's ``ion_z``, ``ion_a``.
GENERIC_MACHINE_NAME = "IonPlan generic"


@dataclass(frozen=True)
class GeneratorSettings:
    """Settings of the generic carbon machine.

    Attributes
    ----------
    energy_min_mev_u, energy_max_mev_u : float
        Energy range of the machine.
    range_step_mm : float
        Target step in CSDA range between consecutive energies (the actual step is the range
        interval divided by the nearest whole number of steps).
    stopping_source : str
        Stopping-power table (see :data:`planning.physics.stopping.STOPPING_SOURCES`).
    water_mean_excitation_ev : float
        Mean excitation energy of water (eV) to which the tables are moved: 78 eV (ICRU 90,
        the default); 75 eV gives MSTAR's own ICRU 49 tables (generator 1.1.0 and earlier).
    nozzle_wet_mm : float
        Water-equivalent thickness of the nozzle between the beam's nominal energy and the
        patient (ripple-filter substrate, monitor chambers, vacuum window), mm. The beam is
        transported through it as water and every depth table starts behind it, so all depths
        shift by this amount. 0 for the generic machine (its energies are those at the patient).
    energy_spread_rel : float
        One-sigma relative spread of the beam's kinetic energy.
    ripple_filter_sigma_mm : float
        Extra Gaussian range spread from a ripple filter (a 3 mm filter spreads ranges about
        uniformly over 3 mm: sigma = 3/sqrt(12) = 0.87 mm). 0 disables it.
    spot_fwhm_air_mm : tuple of (energy, fwhm) pairs
        In-air spot FWHM at the isocentre at the lowest and highest energy (linear in between).
    sad_mm : tuple of float
        Virtual source-axis distances (x, y).
    fragments : tuple of FragmentSpecies
        Fragment species and multiplicities per reaction.
    n_depth_nodes : tuple of int
        Storage depth nodes in the plateau, the Bragg peak region and the fragment tail.
    n_spectrum_depths : tuple of int
        Spectrum depth nodes in the plateau, peak region and tail.
    spectrum_bin_edges_mev_u : tuple of float
        Energy-per-nucleon bin edges of the spectra.
    n_fragment_cells : int
        Depth cells of the fragment transport grid.
    """

    energy_min_mev_u: float = 80.0
    energy_max_mev_u: float = 430.0
    range_step_mm: float = 1.0
    stopping_source: str = "mstar_3_12"
    water_mean_excitation_ev: float = ICRU90_WATER_MEAN_EXCITATION_EV
    nozzle_wet_mm: float = 0.0
    energy_spread_rel: float = 0.001
    ripple_filter_sigma_mm: float = 0.87
    spot_fwhm_air_mm: tuple[tuple[float, float], tuple[float, float]] = ((80.0, 10.0),
                                                                         (430.0, 5.0))
    sad_mm: tuple[float, float] = (6500.0, 7200.0)
    fragments: tuple[FragmentSpecies, ...] = CARBON_FRAGMENTS
    n_depth_nodes: tuple[int, int, int] = (80, 120, 56)
    n_spectrum_depths: tuple[int, int, int] = (12, 24, 12)
    spectrum_bin_edges_mev_u: tuple[float, ...] = field(
        default_factory=lambda: (0.0, *(float(x) for x in np.geomspace(0.5, 600.0, 29)))
    )
    n_fragment_cells: int = 600


@dataclass(frozen=True)
class EnergyBudget:
    """Where the kinetic energy of one primary goes, MeV per primary.

    ``incident = deposited + neutrons + fragment_reactions + escaped`` up to discretisation.
    ``deposited`` is the integral of the computed IDD over the whole transport grid.
    """

    incident_mev: float
    deposited_mev: float
    neutrons_mev: float
    fragment_reactions_mev: float
    escaped_mev: float
    #: Part of ``neutrons_mev`` from the primaries' own reactions.
    primary_reaction_neutrons_mev: float = 0.0


@dataclass(frozen=True)
class EnergyData:
    """Generated beam data of one energy (see :class:`planning.machine.Machine` for units);
    depths, and the CSDA range, are behind the nozzle."""

    energy_mev_u: float
    csda_range_mm: float
    range_sigma_mm: float
    peak_depth_mm: float
    depth_mm: FloatArray
    idd_mev_cm2_per_g: FloatArray
    sigma_core_mm: FloatArray
    sigma_halo_mm: FloatArray
    halo_weight: FloatArray
    letd_kev_um: FloatArray
    spectrum_depth_mm: FloatArray
    fluence_per_primary: FloatArray  # (S, 6, B)
    budget: EnergyBudget


class _Species:
    """Range-energy and LET-integral tables of one ion species (internal)."""

    def __init__(self, table: StoppingTable, mass_number: int) -> None:
        self.z = table.z
        self.a = mass_number
        self.table = table
        self.range_energy = RangeEnergy(table, mass_number)
        e = np.geomspace(1e-4, 1000.0, 6000)
        let = table.let_kev_um(e)
        q = np.concatenate(([0.0], np.cumsum(0.5 * (let[1:] + let[:-1]) * np.diff(e))))
        q += let[0] * e[0] / 1.5  # L ~ sqrt(E) below the first node
        self._q_e, self._q = e, q
        # Optical depth Phi(r) = integral_0^r Sigma(E(r')) dr' (energy-dependent Tripathi
        # cross-sections), so that the survival from residual range r1 to r2 is
        # exp(-(Phi(r1) - Phi(r2))).
        r = np.asarray(self.range_energy.range_mm(e))
        sig = water_cross_section_per_mm(mass_number, table.z, e)
        self._phi_r = r
        self._phi = np.concatenate(([0.0], np.cumsum(0.5 * (sig[1:] + sig[:-1]) * np.diff(r))))

    def optical_depth(self, residual_range_mm: FloatArray | float) -> FloatArray:
        """Phi(r): reactions per particle expected while slowing from range r to rest."""
        return np.interp(np.maximum(residual_range_mm, 0.0), self._phi_r, self._phi)

    def survival(self, r_from_mm: FloatArray | float, r_to_mm: FloatArray | float) -> FloatArray:
        """Probability of no reaction while the residual range falls from r_from to r_to."""
        return np.exp(-(self.optical_depth(r_from_mm) - self.optical_depth(r_to_mm)))

    def let_energy_integral(self, energy_mev_u: FloatArray) -> FloatArray:
        """Q(E) = integral_0^E L(E') dE', keV/um * MeV/u (0 at E = 0)."""
        return np.interp(energy_mev_u, self._q_e, self._q, left=0.0)


class CarbonMachineGenerator:
    """Builds the generic carbon machine for :class:`GeneratorSettings`."""

    def __init__(self, settings: GeneratorSettings | None = None) -> None:
        self.settings = settings or GeneratorSettings()
        s = self.settings
        tables = {z: load_stopping_table(z, s.stopping_source, s.water_mean_excitation_ev)
                  for z in range(1, 7)}
        self.primary = _Species(tables[PRIMARY_Z], PRIMARY_A)
        self.fragments = [(f, _Species(tables[f.z], f.a)) for f in self.settings.fragments]
        self.neutrons_per_reaction = neutron_multiplicity(self.settings.fragments, PRIMARY_A)
        za = tuple((f.z, f.a) for f in self.settings.fragments)
        self.species_index = {k: i for i, k in enumerate(za)}
        self.primary_fireball: Fireball = fireball(
            PRIMARY_Z, PRIMARY_A, tuple(f.multiplicity for f in self.settings.fragments), za)
        self.products = [reaction_products(k, za) for k in za]
        self.fireballs = [fireball(z, a, self.products[i], za) for i, (z, a) in enumerate(za)]
        r_min = float(self.primary.range_energy.range_mm(s.energy_min_mev_u))
        if not 0.0 <= s.nozzle_wet_mm < r_min:
            raise InputError(f"nozzle water-equivalent thickness {s.nozzle_wet_mm!r} mm must lie "
                             f"in [0, {r_min:.1f}) mm, below the range of the lowest energy")

    # ----------------------------------------------------------------- energy grid

    @cached_property
    def energies_mev_u(self) -> FloatArray:
        """Machine energies: equal steps in CSDA range of about ``range_step_mm``, rounded to
        0.01 MeV/u, first and last exactly the configured limits."""
        s = self.settings
        re = self.primary.range_energy
        r_lo, r_hi = float(re.range_mm(s.energy_min_mev_u)), float(re.range_mm(s.energy_max_mev_u))
        n_steps = max(1, round((r_hi - r_lo) / s.range_step_mm))
        ranges = np.linspace(r_lo, r_hi, n_steps + 1)
        e = np.round(re.energy_mev_u(ranges), 2)
        e[0], e[-1] = s.energy_min_mev_u, s.energy_max_mev_u
        return e

    def spot_sigma_air_mm(self, energy_mev_u: float) -> float:
        (e0, f0), (e1, f1) = self.settings.spot_fwhm_air_mm
        fwhm = np.interp(energy_mev_u, [e0, e1], [f0, f1])
        return float(fwhm / (2 * np.sqrt(2 * np.log(2))))

    def range_sigma_mm(self, energy_mev_u: float) -> float:
        """Total Gaussian range spread: Bohr straggling, energy spread and ripple filter."""
        s = self.settings
        re = self.primary.range_energy
        strag = bohr_range_straggling_mm(self.primary.table, PRIMARY_A, energy_mev_u)
        # Energy spread maps onto range through dR/dE.
        de = s.energy_spread_rel * energy_mev_u
        dr_de = float(re.range_mm(energy_mev_u * 1.001) - re.range_mm(energy_mev_u * 0.999)) / (
            0.002 * energy_mev_u
        )
        return float(np.sqrt(strag**2 + (dr_de * de) ** 2 + s.ripple_filter_sigma_mm**2))

    # ----------------------------------------------------------------- one energy

    def generate_energy(self, energy_mev_u: float) -> EnergyData:
        """Beam data in water of one energy on its storage depth nodes.

        Transport runs in water from the nozzle entrance (depth ``z``); the tables are stored
        against the depth behind the nozzle, ``z - nozzle_wet_mm``.
        """
        s = self.settings
        prim = self.primary
        wet = s.nozzle_wet_mm
        r0 = float(prim.range_energy.range_mm(energy_mev_u))
        sigma_r = self.range_sigma_mm(energy_mev_u)
        z_end = self._transport_depth_mm(energy_mev_u, r0)
        depth = _storage_nodes(r0 - wet, sigma_r, z_end - wet, s.n_depth_nodes)
        spec_depth = _spectrum_nodes(r0 - wet, sigma_r, z_end - wet, s.n_spectrum_depths)
        z, spec_z = depth + wet, spec_depth + wet

        p_dose, p_letnum = self._primary_dose(energy_mev_u, r0, sigma_r, z)
        frag = _FragmentTransport(self, energy_mev_u, r0, z_end)
        f_dose = np.interp(z, frag.centers_mm, frag.dose_mev_cm)
        f_letnum = np.interp(z, frag.centers_mm, frag.let_dose)
        f_var = np.interp(z, frag.centers_mm, frag.lateral_var_dose)

        idd = p_dose + f_dose
        with np.errstate(invalid="ignore", divide="ignore"):
            letd = np.where(idd > 0, (p_letnum + f_letnum) / idd, 0.0)
            halo_w = np.where(idd > 0, f_dose / idd, 0.0)
            sigma_halo = np.sqrt(np.where(f_dose > 0, f_var / f_dose, 0.0))
        sigma_core = lateral_sigma_mm(prim.range_energy, PRIMARY_Z, energy_mev_u, z)
        # Where no fragment dose exists yet (entrance), the halo has the core's width.
        sigma_halo = np.where(sigma_halo > 0, np.maximum(sigma_halo, sigma_core), sigma_core)
        halo_w = np.clip(halo_w, 0.0, 0.999)

        fluence = self._primary_spectra(r0, sigma_r, spec_z) + frag.spectra(spec_z)
        peak = _peak_depth(depth, idd)
        budget = self._budget(energy_mev_u, r0, sigma_r, frag)
        return EnergyData(
            energy_mev_u=float(energy_mev_u),
            csda_range_mm=r0 - wet,
            range_sigma_mm=sigma_r,
            peak_depth_mm=peak,
            depth_mm=depth,
            idd_mev_cm2_per_g=idd,
            sigma_core_mm=sigma_core,
            sigma_halo_mm=sigma_halo,
            halo_weight=halo_w,
            letd_kev_um=letd,
            spectrum_depth_mm=spec_depth,
            fluence_per_primary=fluence,
            budget=budget,
        )

    def _transport_depth_mm(self, energy_mev_u: float, r0: float) -> float:
        """Depth beyond which no charged fragment survives (longest fragment range + margin)."""
        reach = max(float(sp.range_energy.range_mm(energy_mev_u)) for _, sp in self.fragments)
        return max(reach, r0) * 1.1 + 5.0

    def _residual_range_grid(self, r0: float, sigma_r: float) -> tuple[FloatArray, float]:
        dr = min(sigma_r / 10.0, 0.05)
        r_edges = np.arange(-8 * sigma_r - dr, r0 + 8 * sigma_r + 2 * dr, dr)
        return r_edges, dr

    def primary_profiles(
        self, energy_mev_u: float, depth_mm: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Primary-ion dose, LET x dose and fluence per primary at arbitrary depths of water
        from the nozzle entrance (the depth behind the nozzle plus ``nozzle_wet_mm``).

        Returns (dose MeV/cm, LET x dose keV/um MeV/cm, fluence) with the shape of ``depth_mm``.
        """
        r0 = float(self.primary.range_energy.range_mm(energy_mev_u))
        sigma_r = self.range_sigma_mm(energy_mev_u)
        dose, letnum = self._primary_dose(energy_mev_u, r0, sigma_r, depth_mm)
        r_edges, dr = self._residual_range_grid(r0, sigma_r)
        alive = (0.5 * (r_edges[1:] + r_edges[:-1]) > 0).astype(np.float64)
        alive = gaussian_filter1d(alive, sigma_r / dr, mode="nearest", truncate=6.0)
        r_mid = 0.5 * (r_edges[1:] + r_edges[:-1])
        attenuation = self.primary.survival(r0, r0 - np.asarray(depth_mm))
        fluence = np.interp(r0 - np.asarray(depth_mm), r_mid, alive) * attenuation
        return dose, letnum, fluence

    def _primary_dose(
        self, energy_mev_u: float, r0: float, sigma_r: float, depth_mm: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Straggled primary dose and LET x dose (per primary, MeV/cm and keV/um MeV/cm).

        The unstraggled energy loss per unit residual range is averaged over fine cells (exact
        integral of dE, so the 1/sqrt-like singularity at the end of range is handled), then
        convolved in residual range with the Gaussian range spread; attenuation depends on depth.
        """
        prim = self.primary
        r_edges, dr = self._residual_range_grid(r0, sigma_r)
        e_edges = prim.range_energy.energy_mev_u(r_edges)  # 0 for r <= 0
        de = np.diff(e_edges) * prim.a  # MeV per cell (total ion energy)
        dq = np.diff(prim.let_energy_integral(e_edges)) * prim.a
        g = de / (dr / 10.0)  # MeV/cm
        gl = dq / (dr / 10.0)
        width = sigma_r / dr
        g_s = gaussian_filter1d(g, width, mode="nearest", truncate=6.0)
        gl_s = gaussian_filter1d(gl, width, mode="nearest", truncate=6.0)
        r_mid = 0.5 * (r_edges[1:] + r_edges[:-1])
        z = np.asarray(depth_mm, dtype=np.float64)
        attenuation = prim.survival(r0, r0 - z)
        dose = np.interp(r0 - z, r_mid, g_s, left=0.0) * attenuation
        letnum = np.interp(r0 - z, r_mid, gl_s, left=0.0) * attenuation
        return dose, letnum

    def _primary_spectra(self, r0: float, sigma_r: float, depth_mm: FloatArray) -> FloatArray:
        """Primary fluence spectra (S, 6, B).

        The residual range at depth z is Gaussian, N(r0 - z, sigma_r); the fluence in bin b is the
        probability that it lies between the ranges of the bin's edge energies (exact normal CDF,
        the lowest bin starting at r = 0, the highest open above), times the attenuation. The
        result is a smooth function of every input, so last-bit differences between libraries or
        processors change it by last bits too (a hard bin assignment of quadrature points does
        not: a point on a bin edge moves its whole weight).
        """
        r_edges = self._bin_edge_ranges_mm(self.primary)
        mu = (r0 - depth_mm)[:, None]
        cdf = ndtr((r_edges[None, :] - mu) / sigma_r)  # (S, B + 1)
        prob = np.diff(cdf, axis=1)
        att = self.primary.survival(r0, r0 - depth_mm)
        out = np.zeros((depth_mm.size, 6, prob.shape[1]))
        out[:, PRIMARY_Z - 1, :] = prob * att[:, None]
        return out

    def _bin_edge_ranges_mm(self, species: _Species) -> FloatArray:
        """CSDA residual ranges of the spectrum bin edges (B + 1,): 0 for the first edge, +inf
        for the last (energies above the top edge count in the highest bin)."""
        edges = np.asarray(self.settings.spectrum_bin_edges_mev_u, dtype=np.float64)
        r = np.empty(edges.size)
        r[0] = 0.0
        r[1:-1] = species.range_energy.range_mm(edges[1:-1])
        r[-1] = np.inf
        return r

    def _budget(self, energy_mev_u: float, r0: float, sigma_r: float,
                frag: _FragmentTransport) -> EnergyBudget:
        incident = PRIMARY_A * energy_mev_u
        # Deposited: primaries (fine residual-range grid) plus fragments (transport cells).
        z_fine = np.linspace(0.0, r0 + 8 * sigma_r, 20001)
        p_dose, _ = self._primary_dose(energy_mev_u, r0, sigma_r, z_fine)
        deposited = float(np.trapezoid(p_dose, z_fine) / 10.0) + frag.deposited_mev
        return EnergyBudget(
            incident_mev=incident,
            deposited_mev=deposited,
            neutrons_mev=frag.neutron_energy_mev,
            fragment_reactions_mev=frag.reaction_loss_mev,
            escaped_mev=frag.escaped_mev,
            primary_reaction_neutrons_mev=frag.primary_neutron_energy_mev,
        )

    # ----------------------------------------------------------------- whole machine

    def generate(self, progress: Callable[[float, str], None] | None = None) -> Machine:
        """Generate all energies and assemble the :class:`Machine`."""
        energies = self.energies_mev_u
        rows = []
        for i, e in enumerate(energies):
            rows.append(self.generate_energy(float(e)))
            if progress is not None:
                progress((i + 1) / energies.size, f"machine energy {e:.2f} MeV/u")

        def stack(name: str) -> FloatArray:
            return _float32_precision(np.stack([getattr(r, name) for r in rows]))

        s = self.settings
        spectra = Spectra(
            depth_mm=stack("spectrum_depth_mm"),
            bin_edges_mev_u=_float32_precision(s.spectrum_bin_edges_mev_u),
            species_z=np.arange(1, 7, dtype=np.int64),
            species_a=np.array([1, 4, 7, 7, 11, 12], dtype=np.int64),
            fluence_per_primary=stack("fluence_per_primary"),
        )
        return Machine(
            name=GENERIC_MACHINE_NAME,
            ion_z=PRIMARY_Z,
            ion_a=PRIMARY_A,
            energies_mev_u=np.asarray(energies, dtype=np.float64),
            peak_depth_mm=_float32_precision([r.peak_depth_mm for r in rows]),
            depth_mm=stack("depth_mm"),
            idd_mev_cm2_per_g=stack("idd_mev_cm2_per_g"),
            sigma_core_mm=stack("sigma_core_mm"),
            sigma_halo_mm=stack("sigma_halo_mm"),
            halo_weight=stack("halo_weight"),
            letd_kev_um=stack("letd_kev_um"),
            spot_sigma_air_mm=_float32_precision(
                [self.spot_sigma_air_mm(float(e)) for e in energies]),
            sad_mm=s.sad_mm,
            spectra=spectra,
            provenance=self.provenance(),
        )

    def provenance(self) -> dict[str, object]:
        s = asdict(self.settings)
        s["fragments"] = [asdict(f) for f in self.settings.fragments]
        # JSON-normalised (tuples become lists) so that it equals what a file reads back.
        return json.loads(json.dumps({
            "generator": "planning.machine_generator",
            "generator_version": GENERATOR_VERSION,
            "settings": s,
            "stopping_powers": f"{self.settings.stopping_source} (assets/stopping_power, "
                               "compiled in pymkm 1.0.0; see README there), moved to "
                               f"I = {self.settings.water_mean_excitation_ev:g} eV "
                               "(planning.physics.stopping)",
            "nuclear_cross_sections": "Tripathi et al. 1996 NIM B 117:347, 1997 NIM B 129:11 "
                                      "(NASA TP-3621), energy-dependent",
            "fragment_multiplicities": "He, Li, Be, B from Haettner et al. 2013 PMB 58:8265 "
                                       "yields at 5.7 cm, 400 MeV/u (docs/physics.md)",
            "fragment_isotopes": "isotopic fractions of 12C + H fragments, Webber et al. 1990 "
                                 "and 1998, Read and Viola 1984, Olson et al. 1983 "
                                 "(planning.physics.nuclear.FRAGMENT_ISOTOPES)",
            "fragment_reactions": "charged products at the parent's velocity, all generations "
                                  "(planning.physics.nuclear.FRAGMENT_PRODUCTS)",
            "fireball": "Westfall et al. 1976, Phys Rev Lett 37:1202 (participant protons)",
            "fireball_protons_per_reaction": self.primary_fireball.protons,
            "fragment_angles": "Goldhaber 1974, Phys Lett B 53:306 (sigma0 = 90 MeV/c)",
            "scattering": "Highland 1975 (PDG form), differential, L_R = 36.08 cm",
            "straggling": "Bohr, relativistic factor (1 - beta^2/2)/(1 - beta^2)",
            "neutrons_per_reaction": self.neutrons_per_reaction,
            "units": {
                "depth_mm": "mm water", "idd_mev_cm2_per_g": "MeV cm^2/g per primary",
                "sigma_*_mm": "mm", "letd_kev_um": "keV/um",
                "fluence_per_primary": "particles per primary per bin, laterally integrated",
            },
            "docs": "docs/physics.md",
        }))


class _FragmentTransport:
    """Fragment production and transport for one primary energy on a uniform depth-cell grid.

    Birth slices are the cells before the primary range; a fragment born in slice j at depth
    z'_j with the primary's energy per nucleon is followed straight to every downstream cell,
    depositing A_f [E(r_in) - E(r_out)] (exact CSDA energy loss across the cell) times its
    survival probability (energy-dependent cross-section, :meth:`_Species.survival`, averaged
    over the cell). Their reactions feed :class:`_NodeTransport`.
    """

    def __init__(self, gen: CarbonMachineGenerator, energy_mev_u: float, r0: float,
                 z_end: float) -> None:
        self.gen = gen
        n = gen.settings.n_fragment_cells
        self.edges_mm = np.linspace(0.0, z_end, n + 1)
        self.centers_mm = 0.5 * (self.edges_mm[1:] + self.edges_mm[:-1])
        dz = self.edges_mm[1] - self.edges_mm[0]
        prim = gen.primary
        # Reactions per primary in each birth slice, and the primary's energy there.
        top = np.minimum(self.edges_mm, r0)
        phi = prim.survival(r0, r0 - top)
        born = phi[:-1] - phi[1:]
        mid_alive = 0.5 * (top[:-1] + top[1:])
        slices = np.nonzero(born > 0)[0]
        self.birth_z = mid_alive[slices]
        self.birth_half_width_mm = 0.5 * (top[1:] - top[:-1])[slices]
        self.birth_n = born[slices]
        self.birth_e = prim.range_energy.energy_mev_u(r0 - self.birth_z)
        self.birth_sigma_core = lateral_sigma_mm(prim.range_energy, PRIMARY_Z, energy_mev_u,
                                                 self.birth_z)
        reaction_energy = self.birth_n * self.birth_e  # MeV/u per primary, per slice
        fb = gen.primary_fireball
        self.neutron_energy_mev = float(fb.neutron_energy_fraction * reaction_energy.sum())
        self.primary_neutron_energy_mev = self.neutron_energy_mev

        n_c = self.centers_mm.size
        self.dose_mev_cm = np.zeros(n_c)
        self.let_dose = np.zeros(n_c)
        self.lateral_var_dose = np.zeros(n_c)
        self.deposited_mev = 0.0
        self.reaction_loss_mev = 0.0
        self.escaped_mev = 0.0
        self._spec_inputs: list[tuple[FragmentSpecies, _Species, FloatArray, FloatArray]] = []
        self._reactions: list[tuple[FloatArray, FloatArray]] = []
        lo, hi = self.edges_mm[:-1][None, :], self.edges_mm[1:][None, :]
        zb = self.birth_z[:, None]
        entry = np.maximum(lo, zb)
        downstream = hi > zb
        for frag, sp in gen.fragments:
            n_f = self.birth_n * frag.multiplicity  # fragments per primary per slice
            r_birth = sp.range_energy.range_mm(self.birth_e)[:, None]
            r_in = np.where(downstream, r_birth - (entry - zb), 0.0)
            r_out = np.where(downstream, r_birth - (hi - zb), 0.0)
            r_in, r_out = np.maximum(r_in, 0.0), np.maximum(r_out, 0.0)
            e_in = sp.range_energy.energy_mev_u(r_in)
            e_out = sp.range_energy.energy_mev_u(r_out)
            surv_in = sp.survival(r_birth, r_in)
            surv_out = sp.survival(r_birth, r_out)
            # Trapezoidal survival across the cell: deposit + energy into reactions telescopes
            # to exactly A (E_in S_in - E_out S_out), so the energy balance closes.
            surv_mid = 0.5 * (surv_in + surv_out)
            weight = n_f[:, None] * downstream
            dep = sp.a * (e_in - e_out) * surv_mid * weight  # MeV per primary in the cell
            q = sp.let_energy_integral
            let_dep = sp.a * (q(e_in) - q(e_out)) * surv_mid * weight
            # Energy carried into nuclear reactions (alive fragments only).
            e_mid = 0.5 * (e_in + e_out)
            reacting = (surv_in - surv_out) * weight
            lost = sp.a * e_mid * reacting
            self._reactions.append((reacting, e_mid))
            # Lateral variance of this fragment at the cell centre.
            dist = np.maximum(0.5 * (lo + hi) - zb, 0.0)
            theta = frag.emission_sigma_rad(self.birth_e)
            pbc = p_beta_c_mev(np.maximum(self.birth_e, 1e-3), sp.a)
            t_power = (HIGHLAND_MEV * frag.z / pbc) ** 2 / WATER_RADIATION_LENGTH_MM
            var = ((theta[:, None] * dist) ** 2
                   + t_power[:, None] * dist**3 / 3.0 * highland_log_factor(dist) ** 2
                   + self.birth_sigma_core[:, None] ** 2)
            self.dose_mev_cm += dep.sum(axis=0) / (dz / 10.0)
            self.let_dose += let_dep.sum(axis=0) / (dz / 10.0)
            self.lateral_var_dose += (dep * var).sum(axis=0) / (dz / 10.0)
            self.deposited_mev += float(dep.sum())
            self.reaction_loss_mev += float(lost.sum())
            # Energy still carried past the end of the grid.
            last_e = e_out[:, -1] * surv_out[:, -1] * weight[:, -1]
            self.escaped_mev += float(sp.a * last_e.sum())
            self._spec_inputs.append((frag, sp, n_f, r_birth[:, 0]))

        # Charged products of the fragments' own reactions and the fireball protons of every
        # reaction, transported at their birth velocity (see _NodeTransport).
        nodes = _NodeTransport(gen, self.edges_mm, energy_mev_u)
        cells = slices
        fractions = fb.proton_energy_fractions()
        nodes.add(0, np.broadcast_to(cells[:, None], (cells.size, fractions.size)),
                  np.broadcast_to((self.birth_n * fb.protons / fractions.size)[:, None],
                                  (cells.size, fractions.size)),
                  self.birth_e[:, None] * fractions[None, :])
        cols = np.broadcast_to(np.arange(n_c)[None, :], (self.birth_z.size, n_c))
        for (frag, _), (reacting, e_mid) in zip(gen.fragments, self._reactions, strict=True):
            nodes.add_reactions(gen.species_index[(frag.z, frag.a)], cols, reacting, e_mid)
        nodes.run()
        self.dose_mev_cm += nodes.dose_mev_cm
        self.let_dose += nodes.let_dose
        self.lateral_var_dose += nodes.lateral_var_dose
        self.deposited_mev += nodes.deposited_mev
        self.neutron_energy_mev += nodes.neutron_energy_mev
        self.escaped_mev += nodes.escaped_mev
        # Energy booked as "into reactions": only what the last generation's reactions take.
        self.reaction_loss_mev = nodes.unresolved_mev
        self._nodes = nodes

    def spectra(self, depth_mm: FloatArray) -> FloatArray:
        """Fragment fluence spectra (S, 6, B) at the spectrum depths.

        The fragments of one birth slice are born uniformly over the slice, so at depth d their
        residual range is uniform over [r_c - h, r_c + h] (r_c = r_birth - (d - z_birth), h the
        slice's half width), cut at r_birth (not yet born downstream of d) and at 0 (stopped).
        The fluence in bin b is the fraction of that interval between the ranges of the bin's
        edges: piecewise linear in every input, so the result does not jump when a range falls
        on a bin edge (see ``_primary_spectra``).
        """
        n_b = len(self.gen.settings.spectrum_bin_edges_mev_u) - 1
        out = np.zeros((depth_mm.size, 6, n_b))
        dist = depth_mm[:, None] - self.birth_z[None, :]  # (S, J)
        h = self.birth_half_width_mm[None, :]
        for frag, sp, n_f, r_birth in self._spec_inputs:
            r_c = r_birth[None, :] - dist
            lo = (r_c - h)[:, :, None]
            hi = np.minimum(r_c + h, r_birth[None, :])[:, :, None]
            r_edges = self.gen._bin_edge_ranges_mm(sp)
            overlap = (np.minimum(hi, r_edges[None, None, 1:])
                       - np.maximum(lo, r_edges[None, None, :-1]))
            frac = np.maximum(overlap, 0.0) / (2.0 * h[:, :, None])  # (S, J, B)
            surv = np.where(dist > 0, sp.survival(r_birth[None, :], r_c), 1.0)
            w = n_f[None, :] * surv  # (S, J)
            out[:, frag.z - 1, :] += np.einsum("sj,sjb->sb", w, frac)
        return out + self._nodes.spectra(depth_mm)


class _NodeTransport:
    """Transport of charged particles born at (depth cell, energy node) in water.

    The charged products of the fragments' own reactions and the fireball protons of every
    reaction are born at many (depth, energy) pairs. Their number per primary is kept on the
    fragment grid's depth cells times a geometric grid of energy-per-nucleon nodes; a particle
    at energy E between two nodes is shared between them linearly in E, which keeps both the
    number and the energy. Water is homogeneous, so a particle of species s born at node m in
    cell k deposits in cell k + d what one born in cell 0 deposits in cell d: dose, LET x dose,
    lateral variance x dose, fluence spectra and reactions are convolutions over depth of the
    sources with per-(s, m) kernels (FFT). Reactions of these particles make the next
    generation, until the energy going into reactions falls below 1e-6 of the incident energy
    (at most 12 generations); what the last generation's reactions take is booked as unresolved.
    Kernels use exact CSDA energy loss per cell and the energy-dependent survival of
    :meth:`_Species.survival`; particles born below the lowest node (1 MeV/u, a range below
    0.03 mm for protons) deposit their energy in their birth cell.
    """

    N_NODES = 40
    E_MIN = 1.0

    def __init__(self, gen: CarbonMachineGenerator, edges_mm: FloatArray,
                 energy_mev_u: float) -> None:
        self.gen = gen
        self.edges = edges_mm
        self.n = edges_mm.size - 1
        self.dz = float(edges_mm[1] - edges_mm[0])
        self.centers = 0.5 * (edges_mm[1:] + edges_mm[:-1])
        self.e_nodes = np.geomspace(self.E_MIN, max(energy_mev_u, 2 * self.E_MIN), self.N_NODES)
        n_s = len(gen.fragments)
        self.source = np.zeros((n_s, self.N_NODES, self.n))
        self.local_mev = np.zeros(self.n)  # energy deposited at birth (below the lowest node)
        self.incident = PRIMARY_A * energy_mev_u
        self.direct_neutron_mev = 0.0  # neutrons of the reactions fed in by add_reactions
        self.birth_var = lateral_sigma_mm(gen.primary.range_energy, PRIMARY_Z, energy_mev_u,
                                          self.centers) ** 2

    def _share(self, e: FloatArray) -> tuple[NDArray[np.intp], FloatArray, FloatArray]:
        """Lower node index, its weight and the 'above the lowest node' mask (1.0 or 0.0) for
        energies e."""
        en = self.e_nodes
        i = np.clip(np.searchsorted(en, e, side="right") - 1, 0, en.size - 2).astype(np.intp)
        w_lo = np.clip((en[i + 1] - e) / (en[i + 1] - en[i]), 0.0, 1.0)
        return i, w_lo, (e >= en[0]).astype(np.float64)

    def add(self, species: int, cells: NDArray[np.integer], counts: FloatArray,
            energies: FloatArray) -> None:
        """Add ``counts`` particles of ``species`` born in ``cells`` at ``energies`` (MeV/u)."""
        keep = np.asarray(counts).ravel() != 0
        cell = np.asarray(cells, dtype=np.intp).ravel()[keep]
        counts = np.asarray(counts, dtype=np.float64).ravel()[keep]
        e = np.asarray(energies, dtype=np.float64).ravel()[keep]
        i, w_lo, above = self._share(e)
        flat = self.source[species].reshape(-1)
        size = flat.size
        flat += np.bincount(i * self.n + cell, weights=counts * w_lo * above, minlength=size)
        flat += np.bincount((i + 1) * self.n + cell, weights=counts * (1 - w_lo) * above,
                            minlength=size)
        a = self.gen.fragments[species][1].a
        self.local_mev += np.bincount(cell, weights=a * counts * e * (1.0 - above),
                                      minlength=self.n)

    def add_reactions(self, parent: int, cells: NDArray[np.integer], reacting: FloatArray,
                      e_mid: FloatArray) -> None:
        """Products of ``reacting`` parents (per primary) at energies ``e_mid`` in ``cells``."""
        gen = self.gen
        products, fb = gen.products[parent], gen.fireballs[parent]
        for child, m in enumerate(products):
            if m > 0:
                self.add(child, cells, m * reacting, e_mid)
        if fb.protons > 0:
            fractions = fb.proton_energy_fractions()
            for f in fractions:
                self.add(0, cells, fb.protons / fractions.size * reacting, f * e_mid)
        self.direct_neutron_mev += float((fb.neutron_energy_fraction * e_mid * reacting).sum())

    def _kernels(self, s: int, m: int) -> dict[str, FloatArray]:
        """Per-cell kernels of one particle of species s born at node m at a cell centre."""
        frag, sp = self.gen.fragments[s]
        e0 = float(self.e_nodes[m])
        r0 = float(sp.range_energy.range_mm(e0))
        d = np.arange(self.n)
        x_in = np.maximum(d - 0.5, 0.0) * self.dz
        x_out = (d + 0.5) * self.dz
        r_in, r_out = np.maximum(r0 - x_in, 0.0), np.maximum(r0 - x_out, 0.0)
        e_in, e_out = sp.range_energy.energy_mev_u(r_in), sp.range_energy.energy_mev_u(r_out)
        s_in, s_out = sp.survival(r0, r_in), sp.survival(r0, r_out)
        s_mid = 0.5 * (s_in + s_out)
        dep = sp.a * (e_in - e_out) * s_mid / (self.dz / 10.0)  # MeV/cm
        q = sp.let_energy_integral
        let = sp.a * (q(e_in) - q(e_out)) * s_mid / (self.dz / 10.0)
        x = d * self.dz
        theta = float(frag.emission_sigma_rad(e0))
        t_power = (HIGHLAND_MEV * frag.z / p_beta_c_mev(e0, sp.a)) ** 2 / WATER_RADIATION_LENGTH_MM
        var = (theta * x) ** 2 + t_power * x**3 / 3.0 * highland_log_factor(x) ** 2
        reacting = s_in - s_out
        e_mid = 0.5 * (e_in + e_out)
        return {"dep": dep, "let": let, "var": dep * var, "reacting": reacting, "e_mid": e_mid,
                "carried": sp.a * e_out * s_out}

    def run(self) -> None:
        gen = self.gen
        n, n_s, n_m = self.n, len(gen.fragments), self.N_NODES
        length = 2 * n
        kern = [[self._kernels(s, m) for m in range(n_m)] for s in range(n_s)]

        def fft(x: FloatArray) -> NDArray[np.complex128]:
            return np.fft.rfft(x, length, axis=-1)

        # Reaction operator in frequency space. A reacting parent (s, m) at offset d makes its
        # charged products at its energy e_mid[d] (one kernel per target node, shared by all
        # product species through their multiplicities) and fireball protons at fractions of it.
        n_f = length // 2 + 1
        frag_hat = np.zeros((n_s, n_m, n_m, n_f), dtype=np.complex128)
        fb_hat = np.zeros_like(frag_hat)
        react_k = np.zeros((n_s, n_m, n))
        neut = np.zeros((n_s, n_m, n))
        local = np.zeros((n_s, n_m, n))
        d = np.arange(n)
        for s in range(n_s):
            products, fb = gen.products[s], gen.fireballs[s]
            a_s = gen.fragments[s][1].a
            fractions = fb.proton_energy_fractions()
            for m in range(n_m):
                k = kern[s][m]
                r, e = k["reacting"], k["e_mid"]
                react_k[s, m] = a_s * r * e
                neut[s, m] = fb.neutron_energy_fraction * r * e
                i, w_lo, above = self._share(e)
                kf = np.zeros((n_m, n))
                np.add.at(kf, (i, d), r * w_lo * above)
                np.add.at(kf, (i + 1, d), r * (1 - w_lo) * above)
                frag_hat[s, m] = fft(kf)
                loc = sum(gen.fragments[c][1].a * mu for c, mu in enumerate(products)) * r * e
                loc = loc * (1.0 - above)
                kb = np.zeros((n_m, n))
                for f in fractions:
                    i, w_lo, above = self._share(f * e)
                    w = r / fractions.size
                    np.add.at(kb, (i, d), w * w_lo * above)
                    np.add.at(kb, (i + 1, d), w * (1 - w_lo) * above)
                    loc = loc + gen.fragments[0][1].a * fb.protons * w * f * e * (1.0 - above)
                fb_hat[s, m] = fft(kb)
                local[s, m] = loc
        react_e_hat, neut_hat, local_hat = fft(react_k), fft(neut), fft(local)
        mult = np.array(gen.products)  # (parent, child)
        n_fb = np.array([fb.protons for fb in gen.fireballs])

        def conv(src_hat: NDArray[np.complex128], k_hat: NDArray[np.complex128]) -> FloatArray:
            return np.fft.irfft(src_hat * k_hat, length, axis=-1)[..., :n]

        total = np.zeros_like(self.source)
        current = self.source.copy()
        self.neutron_energy_mev = self.direct_neutron_mev
        local_dep = self.local_mev.copy()
        self.unresolved_mev = 0.0
        for generation in range(12):
            total += current
            src_hat = fft(current)  # (S, M, F)
            react_now = float(conv(src_hat, react_e_hat).sum())
            if react_now < 1e-6 * self.incident or generation == 11:
                self.unresolved_mev = react_now
                break
            self.neutron_energy_mev += float(conv(src_hat, neut_hat).sum())
            local_dep += conv(src_hat, local_hat).sum(axis=(0, 1))
            t_frag = np.einsum("smf,smnf->snf", src_hat, frag_hat)
            t_fb = np.einsum("smf,smnf->snf", src_hat, fb_hat)
            nxt_hat = np.einsum("sc,snf->cnf", mult, t_frag)
            nxt_hat[0] += np.einsum("s,snf->nf", n_fb, t_fb)
            current = np.maximum(np.fft.irfft(nxt_hat, length, axis=-1)[..., :n], 0.0)
        self.total_source = total
        tot_hat = fft(total)
        var_src_hat = fft(total * self.birth_var[None, None, :])
        self.dose_mev_cm = np.zeros(n)
        self.let_dose = np.zeros(n)
        self.lateral_var_dose = np.zeros(n)
        self.escaped_mev = 0.0
        for s in range(n_s):
            for m in range(n_m):
                if not total[s, m].any():
                    continue
                k = kern[s][m]
                dep_hat = fft(k["dep"])
                self.dose_mev_cm += conv(tot_hat[s, m], dep_hat)
                self.let_dose += conv(tot_hat[s, m], fft(k["let"]))
                self.lateral_var_dose += (conv(tot_hat[s, m], fft(k["var"]))
                                          + conv(var_src_hat[s, m], dep_hat))
                # A particle born in cell j is still carried past the grid's end if alive there.
                self.escaped_mev += float(total[s, m] @ k["carried"][::-1])
        local_dose = local_dep / (self.dz / 10.0)
        self.dose_mev_cm += local_dose
        self.dose_mev_cm = np.maximum(self.dose_mev_cm, 0.0)
        self.deposited_mev = float(self.dose_mev_cm.sum() * self.dz / 10.0)
        self._kern = kern

    def spectra(self, depth_mm: FloatArray) -> FloatArray:
        """Fluence spectra (S, 6, B) of the node-born particles at ``depth_mm``.

        A particle born uniformly over its cell has, at offset d cells, a residual range uniform
        over an interval of one cell's width (cut at 0 and at its birth range); each bin gets
        the fraction between its edge ranges (continuous, as in ``_FragmentTransport.spectra``).
        The fluence on the cell centres is interpolated linearly to ``depth_mm``.
        """
        gen = self.gen
        n, n_s = self.n, len(gen.fragments)
        n_b = len(gen.settings.spectrum_bin_edges_mev_u) - 1
        length = 2 * n
        out = np.zeros((depth_mm.size, 6, n_b))
        d = np.arange(n)
        h = 0.5 * self.dz
        for s in range(n_s):
            frag, sp = gen.fragments[s]
            r_edges = gen._bin_edge_ranges_mm(sp)
            acc = np.zeros((n_b, length // 2 + 1), dtype=np.complex128)
            for m in range(self.N_NODES):
                src = self.total_source[s, m]
                if not src.any():
                    continue
                r_birth = float(sp.range_energy.range_mm(self.e_nodes[m]))
                r_c = np.asarray(r_birth - d * self.dz, dtype=np.float64)
                lo = (r_c - h)[:, None]
                hi = np.minimum(r_c + h, r_birth)[:, None]
                overlap = np.minimum(hi, r_edges[None, 1:]) - np.maximum(lo, r_edges[None, :-1])
                frac = np.maximum(overlap, 0.0) / (2 * h)  # (N, B)
                surv = sp.survival(r_birth, r_c)[:, None]
                acc += np.fft.rfft(src, length)[None, :] * np.fft.rfft((frac * surv).T, length,
                                                                        axis=-1)
            fl = np.maximum(np.fft.irfft(acc, length, axis=-1)[:, :n], 0.0)  # (B, N)
            for b in range(n_b):
                out[:, frag.z - 1, b] += np.interp(depth_mm, self.centers, fl[b], left=0.0,
                                                   right=0.0)
        return out


def _float32_precision(values: object) -> FloatArray:
    """Round to float32, the storage precision of machine files, so that a generated machine
    equals the same machine read back from its file."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def _storage_nodes(r0: float, sigma_r: float, z_end: float, n: tuple[int, int, int]) -> FloatArray:
    """Depth nodes: uniform plateau, fine Bragg-peak region, tail with growing steps."""
    n_plateau, n_peak, n_tail = n
    z1 = max(r0 - 15.0, 0.5 * r0)
    z2 = r0 + max(6.0 * sigma_r, 3.0)
    plateau = np.linspace(0.0, z1, n_plateau, endpoint=False)
    peak = np.linspace(z1, z2, n_peak, endpoint=False)
    t = np.linspace(0.0, 1.0, n_tail)
    tail = z2 + (max(z_end, z2 + 1.0) - z2) * t**1.5
    return np.concatenate((plateau, peak, tail))


def _spectrum_nodes(r0: float, sigma_r: float, z_end: float,
                    n: tuple[int, int, int]) -> FloatArray:
    n_plateau, n_peak, n_tail = n
    z1 = 0.85 * r0
    z2 = r0 + 4.0 * sigma_r
    plateau = np.linspace(0.0, z1, n_plateau, endpoint=False)
    peak = np.linspace(z1, z2, n_peak, endpoint=False)
    tail = np.linspace(z2, max(z_end, z2 + 1.0), n_tail)
    return np.concatenate((plateau, peak, tail))


def _peak_depth(depth: FloatArray, idd: FloatArray) -> float:
    """Depth of the IDD maximum, refined by a parabola through the three highest nodes."""
    i = int(np.argmax(idd))
    if 0 < i < idd.size - 1:
        x = depth[i - 1:i + 2]
        y = idd[i - 1:i + 2]
        coef = np.polyfit(x, y, 2)
        if coef[0] < 0:
            xv = -coef[1] / (2 * coef[0])
            if x[0] <= xv <= x[2]:
                return float(xv)
    return float(depth[i])


def main(argv: list[str] | None = None) -> int:
    """Regenerate the generic carbon machine file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output .npz file (assets/machines/generic_carbon.npz)")
    args = parser.parse_args(argv)
    machine = CarbonMachineGenerator().generate()
    save_machine(machine, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
