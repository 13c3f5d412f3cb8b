"""RBE-model tables derived from a machine's particle spectra, and LQ tables per energy.

:func:`depth_tables` turns the per-depth fluence spectra of a generated machine
(:class:`planning.machine.Spectra`) into the dose-averaged model quantities of the mixed field
at every IDD depth node of every energy: the per-particle quantities are computed once on the
spectrum bin centres, the dose of each (species, bin) is fluence x stopping power at the bin
centre, and the mixing over species and bins is one tensor contraction. The result belongs to
one (machine, model) pair; caching it is the caller's business (no module-level caches).

:func:`rbe_table_rows` gives the rows of ``ionplan rbe-table``: energy, LET, alpha, beta of
one ion species for a list of energies.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from planning.errors import InputError, MachineError
from planning.machine import Machine
from planning.rbe.models import FloatArray, ParticleTable, RbeModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthTables:
    """Dose-averaged model quantities of a machine's pencil beams at its IDD depth nodes.

    Attributes
    ----------
    model_description : str
        ``model.describe()`` of the model that made the table.
    quantity_names : tuple of str
        Names of the quantities (the model's ``quantity_names``).
    values : tuple of (E, D) float arrays
        Dose-averaged quantity per energy and per ``machine.depth_mm`` node. Beyond the last
        spectrum node with any dose the last valid value is carried on (the IDD is 0 there).
    spectrum_values : tuple of (E, S) float arrays
        The same on the spectrum depth nodes ``machine.spectra.depth_mm``.
    particles : ParticleTable
        The per-particle table on the spectrum bin centres.
    """

    model_description: str
    quantity_names: tuple[str, ...]
    values: tuple[FloatArray, ...]
    spectrum_values: tuple[FloatArray, ...]
    particles: ParticleTable


def depth_tables(machine: Machine, model: RbeModel, *,
                 stopping_source: str = "mstar_3_12") -> DepthTables:
    """Dose-averaged RBE-model quantities per energy and depth of ``machine``.

    Parameters
    ----------
    machine : Machine
        A machine with ``spectra`` (generated machines have them).
    model : RbeModel
        The RBE model; models without quantities (physical, constant RBE) give empty tables.
    stopping_source : str
        Stopping-power tables for the LET and the bin doses (default MSTAR 3.12, as the
        generic machine).

    Returns
    -------
    DepthTables

    Raises
    ------
    MachineError
        If the machine has no particle spectra.
    """
    spectra = machine.spectra
    if spectra is None:
        raise MachineError(machine.provenance.get("source_file", machine.name),
                           "the machine has no particle spectra, so variable-RBE tables cannot "
                           "be computed; use a generated IonPlan machine or a constant RBE")
    t0 = time.perf_counter()
    particles = model.particle_tables(spectra.species_z, spectra.bin_centers_mev_u,
                                      stopping_source=stopping_source)
    # Dose of each (species, bin) per primary is proportional to fluence x stopping power.
    weights = spectra.fluence_per_primary * particles.let_kev_um              # (E, S, P, B)
    total = weights.sum(axis=(2, 3))                                          # (E, S)
    has_dose = total > 0
    spec_values = []
    values = []
    for q in particles.quantities:
        mixed = np.tensordot(weights, q, axes=([2, 3], [0, 1]))               # (E, S)
        mixed = np.divide(mixed, total, out=np.zeros_like(mixed), where=has_dose)
        spec_values.append(mixed)
        values.append(_onto_idd_nodes(machine, mixed, has_dose))
    logger.debug("depth tables for %s: %d energies x %d depths in %.2f s", model.describe(),
                 machine.n_energies, machine.depth_mm.shape[1], time.perf_counter() - t0)
    return DepthTables(model.describe(), model.quantity_names, tuple(values), tuple(spec_values),
                       particles)


def _onto_idd_nodes(machine: Machine, mixed: FloatArray, has_dose: np.ndarray) -> FloatArray:
    """Interpolate (E, S) spectrum-node values linearly in depth onto the (E, D) IDD nodes,
    using only nodes with dose (constant continuation outside them)."""
    assert machine.spectra is not None
    s_depth = machine.spectra.depth_mm
    out = np.zeros(machine.depth_mm.shape)
    for i in range(machine.n_energies):
        ok = has_dose[i]
        if np.any(ok):
            out[i] = np.interp(machine.depth_mm[i], s_depth[i, ok], mixed[i, ok])
    return out


@dataclass(frozen=True)
class RbeTableRow:
    """One row of ``ionplan rbe-table``.

    Attributes
    ----------
    energy_mev_u : float
        Kinetic energy per nucleon, MeV/u.
    let_kev_um : float
        Unrestricted LET in water, keV/um.
    alpha_gy : float
        Linear-quadratic alpha of the ion, 1/Gy.
    beta_gy2 : float
        Linear-quadratic beta of the ion, 1/Gy^2.
    """

    energy_mev_u: float
    let_kev_um: float
    alpha_gy: float
    beta_gy2: float


def rbe_table_rows(model: RbeModel, ion_z: int, energies_mev_u: ArrayLike, *,
                   stopping_source: str = "mstar_3_12") -> list[RbeTableRow]:
    """LQ parameters of one ion species at the given energies under ``model``.

    Raises
    ------
    InputError
        If the species or energies are invalid or the model has no LQ parameters.
    """
    if not model.quantity_names:
        raise InputError(f"the {model.name} model has no per-particle linear-quadratic "
                         "parameters; choose mMKM or LEM I")
    table = model.particle_tables([ion_z], energies_mev_u, stopping_source=stopping_source)
    alpha, beta = model.lq_parameters(table)
    return [RbeTableRow(float(e), float(let), float(a), float(b))
            for e, let, a, b in zip(table.energies_mev_u, table.let_kev_um[0], alpha[0], beta[0],
                                    strict=True)]
