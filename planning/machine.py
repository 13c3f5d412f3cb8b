"""Machine (beam data) type, the IonPlan machine file format, and energy interpolation.

A :class:`Machine` holds, for every tabulated beam energy of one ion species, the pencil-beam
data in water that the dose engine and the RBE models need. All per-energy tables are stacked:
index ``[i_energy, i_depth]``; each row of ``depth_mm`` is strictly increasing but the rows differ
(the depth nodes follow each energy's Bragg peak).

Units and frames
----------------
- depths are water-equivalent depths along the beam axis in mm, from the patient/phantom surface;
- ``idd_mev_cm2_per_g`` is the laterally integrated depth dose per primary particle,
  (1/rho) dE/dz in MeV cm^2 / g. The dose in Gy at a point of a pencil beam of N primaries is
  ``N * idd * lateral_density_per_cm2 * MEV_PER_G_TO_GY``;
- lateral spreads are one-dimensional Gaussian sigmas in mm in the plane perpendicular to the beam.
  ``sigma_core_mm`` and ``sigma_halo_mm`` are what the medium adds (multiple Coulomb scattering,
  fragment emission angles); the in-air spot sigma at the isocentre, ``spot_sigma_air_mm``, is
  added in quadrature by the dose engine.

The file format (``ionplan-machine/1``) is a NumPy ``.npz`` archive: one entry per array plus
``metadata_json``, a JSON document with the scalar fields and the provenance.

Delivery limits
---------------
A scanning system delivers a spot only when its number of particles lies between a minimum
(below it the dose monitor cannot terminate the spot accurately, and control systems reject or
mis-deliver it) and a maximum (what one spot may take from a spill). They are the metadata
keys ``min_particles_per_spot`` and ``max_particles_per_spot`` (primary ions per spot and
fraction); a file without them (every machine written before they existed, the shipped generic
machine included) gets :data:`DEFAULT_MIN_PARTICLES_PER_SPOT` and
:data:`DEFAULT_MAX_PARTICLES_PER_SPOT`, so the arrays need no regeneration.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.atomic import atomic_write_with
from planning.errors import MachineError

FORMAT_ID = "ionplan-machine/1"

#: Conversion of an energy density in MeV/g to dose in Gy (J/kg).
MEV_PER_G_TO_GY = 1.602176634e-13 * 1e3

DEFAULT_MACHINE_RESOURCE = "generic_carbon.npz"

#: Fewest primary ions per spot and fraction a generic carbon synchrotron delivers. An
#: assumption, not a commissioned value: matRad's HIT carbon exporter and post-processing use
#: 15,000 ions per spot (matRad_postprocessing.m, matRad_export_HITXMLPlan); no published
#: minimum was found for CNAO, MedAustron or HIMAC, so IonPlan takes a conservative 5e4
#: (about 3 x the HIT value). Set the commissioned value of a real machine in its file (or in
#: a plan configuration's ``[delivery]`` table).
DEFAULT_MIN_PARTICLES_PER_SPOT = 5.0e4
#: Most primary ions per spot and fraction (an assumption: of the order of one synchrotron
#: spill of 12C ions, about 1e8-1e9; a spot larger than a spill needs repainting, which
#: IonPlan does not plan).
DEFAULT_MAX_PARTICLES_PER_SPOT = 1.0e8

#: Characters of a DICOM Treatment Machine Name (VR SH): the most of a machine's name that
#: its plans carry (:attr:`Machine.treatment_machine_name`).
TREATMENT_MACHINE_NAME_CHARS = 16

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Spectra:
    """Per-depth particle fluence spectra of one machine, for the RBE models.

    Attributes
    ----------
    depth_mm : (E, S) float array
        Water-equivalent depths of the spectrum nodes, increasing along each row.
    bin_edges_mev_u : (B + 1,) float array
        Kinetic energy per nucleon bin edges, increasing, shared by all species.
    species_z : (P,) int array
        Atomic numbers of the species (1..6 for carbon beams).
    species_a : (P,) int array
        Representative mass numbers of the species (sets range at a given velocity).
    fluence_per_primary : (E, S, P, B) float array
        Laterally integrated fluence: number of particles of species p with energy per nucleon in
        bin b crossing the plane at depth s, per primary particle.
    """

    depth_mm: FloatArray
    bin_edges_mev_u: FloatArray
    species_z: NDArray[np.int64]
    species_a: NDArray[np.int64]
    fluence_per_primary: FloatArray

    @property
    def bin_centers_mev_u(self) -> FloatArray:
        """Geometric bin centres (arithmetic for a first edge at 0), shape (B,)."""
        lo, hi = self.bin_edges_mev_u[:-1], self.bin_edges_mev_u[1:]
        return np.where(lo > 0, np.sqrt(np.maximum(lo, 1e-300) * hi), 0.5 * hi)


@dataclass(frozen=True)
class LqTables:
    """Tabulated linear-quadratic parameters per depth (as in matRad carbon machines).

    Attributes
    ----------
    alpha_x_gy : (T,) float array
        Photon alpha of each tissue class, 1/Gy.
    beta_x_gy2 : (T,) float array
        Photon beta of each tissue class, 1/Gy^2.
    alpha_gy : (E, D, T) float array
        Dose-averaged ion alpha at the machine's ``depth_mm`` nodes, 1/Gy.
    beta_gy2 : (E, D, T) float array
        Dose-averaged ion beta (as (sum sqrt(beta) d / sum d)^2), 1/Gy^2.
    """

    alpha_x_gy: FloatArray
    beta_x_gy2: FloatArray
    alpha_gy: FloatArray
    beta_gy2: FloatArray


@dataclass(frozen=True)
class Machine:
    """Pencil-beam data of one ion species in water for a set of energies.

    Attributes
    ----------
    name : str
        Human-readable machine name; its plans carry its first 16 characters
        (:attr:`treatment_machine_name`), so a name that fits names its plans whole.
    ion_z, ion_a : int
        Atomic and mass number of the primary ion.
    energies_mev_u : (E,) float array
        Nominal kinetic energies per nucleon, strictly increasing.
    peak_depth_mm : (E,) float array
        Depth of the Bragg peak maximum in water.
    depth_mm : (E, D) float array
        Depth nodes per energy, each row strictly increasing and starting at 0.
    idd_mev_cm2_per_g : (E, D) float array
        Laterally integrated depth dose per primary.
    sigma_core_mm : (E, D) float array
        Lateral sigma of the primary core from scattering in the medium (without the beam's size).
    sigma_halo_mm : (E, D) float array
        Lateral sigma of the fragment halo from the medium (without the beam's size).
    halo_weight : (E, D) float array
        Fraction of the laterally integrated dose in the halo Gaussian, in [0, 1).
    letd_kev_um : (E, D) float array
        Dose-averaged unrestricted LET in water of all charged particles.
    spot_sigma_air_mm : (E,) float array
        In-air spot sigma at the isocentre.
    sad_mm : tuple of float
        Virtual source-axis distances (x, y) of the scanning magnets.
    spectra : Spectra or None
        Per-depth particle spectra (generated machines), None for imported beam data without.
    lq_tables : LqTables or None
        Tabulated LQ parameters (imported matRad machines), None otherwise.
    provenance : dict
        JSON-serialisable description of where the data come from (generator, version, sources).
    min_particles_per_spot, max_particles_per_spot : float
        Fewest and most primary ions the scanning system delivers in one spot per fraction
        (see the module docstring, "Delivery limits"); ``0 <= min < max``.
    """

    name: str
    ion_z: int
    ion_a: int
    energies_mev_u: FloatArray
    peak_depth_mm: FloatArray
    depth_mm: FloatArray
    idd_mev_cm2_per_g: FloatArray
    sigma_core_mm: FloatArray
    sigma_halo_mm: FloatArray
    halo_weight: FloatArray
    letd_kev_um: FloatArray
    spot_sigma_air_mm: FloatArray
    sad_mm: tuple[float, float]
    spectra: Spectra | None = None
    lq_tables: LqTables | None = None
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)
    min_particles_per_spot: float = DEFAULT_MIN_PARTICLES_PER_SPOT
    max_particles_per_spot: float = DEFAULT_MAX_PARTICLES_PER_SPOT

    def __post_init__(self) -> None:
        validate_machine(self)

    @property
    def treatment_machine_name(self) -> str:
        """The name every plan on this machine carries, in every file: the RT Ion Plan's
        Treatment Machine Name, report.json's ``machine`` and the plan document's "Machine".
        :attr:`name` cut to :data:`TREATMENT_MACHINE_NAME_CHARS` characters (DICOM SH), without
        surrounding spaces; the shipped generic machine's name fits whole."""
        return self.name.strip()[:TREATMENT_MACHINE_NAME_CHARS].rstrip()

    @property
    def n_energies(self) -> int:
        return int(self.energies_mev_u.shape[0])

    @property
    def energy_range_mev_u(self) -> tuple[float, float]:
        return float(self.energies_mev_u[0]), float(self.energies_mev_u[-1])


_PER_DEPTH_FIELDS = (
    "idd_mev_cm2_per_g",
    "sigma_core_mm",
    "sigma_halo_mm",
    "halo_weight",
    "letd_kev_um",
)


def validate_machine(m: Machine) -> None:
    """Check shapes, monotonicity and value ranges; raise :class:`MachineError` naming the field."""
    where = m.provenance.get("source_file", m.name)

    def fail(msg: str) -> None:
        raise MachineError(where, msg)

    e = m.energies_mev_u
    if e.ndim != 1 or e.size < 1:
        fail("energies_mev_u must be a non-empty 1-D array")
    if e.size > 1 and not np.all(np.diff(e) > 0):
        fail("energies_mev_u must be strictly increasing")
    n_e = e.size
    if m.depth_mm.ndim != 2 or m.depth_mm.shape[0] != n_e:
        fail(f"depth_mm must have shape (n_energies={n_e}, n_depths), got {m.depth_mm.shape}")
    if not np.all(np.diff(m.depth_mm, axis=1) > 0):
        fail("each row of depth_mm must be strictly increasing")
    for name in _PER_DEPTH_FIELDS:
        arr = getattr(m, name)
        if arr.shape != m.depth_mm.shape:
            fail(f"{name} has shape {arr.shape}, expected {m.depth_mm.shape}")
        if not np.all(np.isfinite(arr)):
            fail(f"{name} contains non-finite values")
    if np.any(m.idd_mev_cm2_per_g < 0):
        fail("idd_mev_cm2_per_g has negative values")
    if np.any(m.sigma_core_mm < 0) or np.any(m.sigma_halo_mm < 0):
        fail("lateral sigmas must be >= 0")
    if np.any(m.halo_weight < 0) or np.any(m.halo_weight >= 1):
        fail("halo_weight must lie in [0, 1)")
    for name in ("peak_depth_mm", "spot_sigma_air_mm"):
        arr = getattr(m, name)
        if arr.shape != (n_e,):
            fail(f"{name} must have shape ({n_e},), got {arr.shape}")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            fail(f"{name} must be finite and > 0")
    if len(m.sad_mm) != 2 or min(m.sad_mm) <= 0:
        fail(f"sad_mm must be two positive distances, got {m.sad_mm}")
    check_spot_limits(m.min_particles_per_spot, m.max_particles_per_spot, fail)
    if m.spectra is not None:
        s = m.spectra
        n_p, n_b = s.species_z.size, s.bin_edges_mev_u.size - 1
        if s.depth_mm.ndim != 2 or s.depth_mm.shape[0] != n_e:
            fail("spectra.depth_mm must have one row per energy")
        expected = (n_e, s.depth_mm.shape[1], n_p, n_b)
        if s.fluence_per_primary.shape != expected:
            fail(f"spectra.fluence_per_primary has shape {s.fluence_per_primary.shape}, "
                 f"expected {expected}")
        if np.any(s.fluence_per_primary < 0):
            fail("spectra.fluence_per_primary has negative values")
    if m.lq_tables is not None:
        t = m.lq_tables
        n_t = t.alpha_x_gy.size
        expected = (*m.depth_mm.shape, n_t)
        if t.alpha_gy.shape != expected or t.beta_gy2.shape != expected:
            fail(f"LQ tables must have shape {expected}")


def check_spot_limits(min_particles: float, max_particles: float,
                      fail: Callable[[str], None]) -> None:
    """Call ``fail`` with a message unless ``0 <= min_particles < max_particles`` (finite)."""
    if not (math.isfinite(min_particles) and min_particles >= 0):
        fail(f"min_particles_per_spot must be a finite number >= 0, got {min_particles}")
    elif not (math.isfinite(max_particles) and max_particles > min_particles):
        fail(f"max_particles_per_spot must be finite and above min_particles_per_spot "
             f"({min_particles:g}), got {max_particles}")


# --------------------------------------------------------------------------- file format


def save_machine(machine: Machine, path: str | os.PathLike[str]) -> None:
    """Write ``machine`` to an IonPlan machine file atomically (temporary file, then rename)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "energies_mev_u": machine.energies_mev_u,
        "peak_depth_mm": machine.peak_depth_mm,
        "spot_sigma_air_mm": machine.spot_sigma_air_mm,
        "depth_mm": machine.depth_mm,
    }
    for name in _PER_DEPTH_FIELDS:
        arrays[name] = getattr(machine, name)
    if machine.spectra is not None:
        s = machine.spectra
        arrays.update(
            spectra_depth_mm=s.depth_mm,
            spectra_bin_edges_mev_u=s.bin_edges_mev_u,
            spectra_species_z=s.species_z,
            spectra_species_a=s.species_a,
            spectra_fluence_per_primary=s.fluence_per_primary,
        )
    if machine.lq_tables is not None:
        t = machine.lq_tables
        arrays.update(
            lq_alpha_x_gy=t.alpha_x_gy,
            lq_beta_x_gy2=t.beta_x_gy2,
            lq_alpha_gy=t.alpha_gy,
            lq_beta_gy2=t.beta_gy2,
        )
    # Tables are stored in float32 (7 significant digits, far below the physics uncertainty);
    # energies stay float64 so that nominal energies read back exactly.
    for name, arr in arrays.items():
        if name != "energies_mev_u" and arr.dtype == np.float64:
            arrays[name] = arr.astype(np.float32)
    provenance = {k: v for k, v in machine.provenance.items() if k != "source_file"}
    metadata = {
        "format": FORMAT_ID,
        "name": machine.name,
        "ion_z": machine.ion_z,
        "ion_a": machine.ion_a,
        "sad_mm": list(machine.sad_mm),
        "min_particles_per_spot": machine.min_particles_per_spot,
        "max_particles_per_spot": machine.max_particles_per_spot,
        "provenance": provenance,
    }
    arrays["metadata_json"] = np.array(json.dumps(metadata, sort_keys=True, indent=1))
    atomic_write_with(path, lambda fh: np.savez_compressed(fh, allow_pickle=False, **arrays))


def load_machine(path: str | os.PathLike[str] | None = None) -> Machine:
    """Load a machine file: an IonPlan ``.npz`` file or a matRad carbon ``.mat`` file.

    Parameters
    ----------
    path : path-like or None
        The file; None loads the generic carbon machine shipped in ``assets/machines``.

    Raises
    ------
    MachineError
        When the file is missing, unreadable or inconsistent (the message names it).
    """
    if path is None:
        ref = resources.files("assets") / "machines" / DEFAULT_MACHINE_RESOURCE
        with resources.as_file(ref) as p:
            return _load_npz(Path(p))
    p = Path(path)
    if not p.is_file():
        raise MachineError(p, "machine file not found")
    if p.suffix.lower() == ".mat":
        from planning.machine_matrad import load_matrad_machine

        return load_matrad_machine(p)
    return _load_npz(p)


#: What a machine file must be, for the messages that refuse another file.
_EXPECTED_MACHINE_FILE = (f"expected an IonPlan machine file (.npz archive, format {FORMAT_ID}, "
                          "as 'ionplan generate-machine' writes it) or a matRad carbon machine "
                          "(.mat)")


def _load_npz(path: Path) -> Machine:
    # A .npz file is a zip archive; np.load reads anything else as a .npy array or a pickle.
    if not zipfile.is_zipfile(path):
        raise MachineError(path, f"not an IonPlan machine file: {_EXPECTED_MACHINE_FILE}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise MachineError(path, f"not a readable IonPlan machine file ({exc}); "
                                 f"{_EXPECTED_MACHINE_FILE}") from None
    if "metadata_json" not in data:
        raise MachineError(path, f"no metadata_json entry: not an IonPlan machine file; "
                                 f"{_EXPECTED_MACHINE_FILE}")
    try:
        meta = json.loads(str(data.pop("metadata_json")))
    except json.JSONDecodeError as exc:
        raise MachineError(path, f"metadata_json is not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT_ID:
        raise MachineError(path, f"unsupported format {meta.get('format')!r}, expected {FORMAT_ID}")
    required = ("energies_mev_u", "peak_depth_mm", "spot_sigma_air_mm", "depth_mm",
                *_PER_DEPTH_FIELDS)
    missing = [k for k in required if k not in data]
    if missing:
        raise MachineError(path, f"missing arrays: {', '.join(missing)}")
    f64 = {k: np.asarray(data[k], dtype=np.float64) for k in required}
    spectra = None
    if "spectra_fluence_per_primary" in data:
        spectra = Spectra(
            depth_mm=data["spectra_depth_mm"].astype(np.float64),
            bin_edges_mev_u=data["spectra_bin_edges_mev_u"].astype(np.float64),
            species_z=data["spectra_species_z"].astype(np.int64),
            species_a=data["spectra_species_a"].astype(np.int64),
            fluence_per_primary=data["spectra_fluence_per_primary"].astype(np.float64),
        )
    lq = None
    if "lq_alpha_gy" in data:
        lq = LqTables(
            alpha_x_gy=data["lq_alpha_x_gy"].astype(np.float64),
            beta_x_gy2=data["lq_beta_x_gy2"].astype(np.float64),
            alpha_gy=data["lq_alpha_gy"].astype(np.float64),
            beta_gy2=data["lq_beta_gy2"].astype(np.float64),
        )
    provenance = dict(meta.get("provenance", {}))
    provenance["source_file"] = str(path)
    sad = meta.get("sad_mm", [])
    try:
        return Machine(
            name=str(meta.get("name", path.stem)),
            ion_z=int(meta["ion_z"]),
            ion_a=int(meta["ion_a"]),
            sad_mm=(float(sad[0]), float(sad[1])),
            spectra=spectra,
            lq_tables=lq,
            provenance=provenance,
            min_particles_per_spot=float(meta.get("min_particles_per_spot",
                                                  DEFAULT_MIN_PARTICLES_PER_SPOT)),
            max_particles_per_spot=float(meta.get("max_particles_per_spot",
                                                  DEFAULT_MAX_PARTICLES_PER_SPOT)),
            **f64,
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MachineError(path, f"incomplete metadata ({exc!r})") from None


# --------------------------------------------------------------------------- energy interpolation


@dataclass(frozen=True)
class PencilBeamData:
    """Pencil-beam data in water for one energy (tabulated or interpolated).

    All arrays have shape (D,) over ``depth_mm``.
    """

    energy_mev_u: float
    peak_depth_mm: float
    depth_mm: FloatArray
    idd_mev_cm2_per_g: FloatArray
    sigma_core_mm: FloatArray
    sigma_halo_mm: FloatArray
    halo_weight: FloatArray
    letd_kev_um: FloatArray
    spot_sigma_air_mm: float


def _check_energy(machine: Machine, energy_mev_u: float) -> None:
    lo_e, hi_e = machine.energy_range_mev_u
    if not np.isfinite(energy_mev_u) or not (lo_e - 1e-9 <= energy_mev_u <= hi_e + 1e-9):
        raise MachineError(
            machine.provenance.get("source_file", machine.name),
            f"energy {energy_mev_u:g} MeV/u is outside the machine's range "
            f"{lo_e:g}-{hi_e:g} MeV/u",
        )


def _energy_bracket(machine: Machine, energy_mev_u: float) -> tuple[int, int, float]:
    """Tabulated energies ``(i_lo, i_hi)`` around ``energy_mev_u`` and the weight ``t`` of
    ``i_hi``; ``i_lo == i_hi`` (t = 0) for a tabulated energy."""
    e = machine.energies_mev_u
    i_hi = int(np.clip(np.searchsorted(e, energy_mev_u), 1, max(e.size - 1, 1)))
    if e.size == 1 or np.isclose(e[i_hi - 1], energy_mev_u, rtol=0, atol=1e-9):
        i = i_hi - 1 if e.size > 1 else 0
        return i, i, 0.0
    if np.isclose(e[i_hi], energy_mev_u, rtol=0, atol=1e-9):
        return i_hi, i_hi, 0.0
    return i_hi - 1, i_hi, float((energy_mev_u - e[i_hi - 1]) / (e[i_hi] - e[i_hi - 1]))


def per_depth_at_energy(
    machine: Machine, table: FloatArray, energy_mev_u: float, *, zero_beyond: bool = False
) -> FloatArray:
    """A per-energy, per-depth table of the machine interpolated to any energy in its range.

    The interpolation is the one of :func:`pencil_beam_data` (equal reduced depth between the
    two neighbouring tabulated energies), so the result lies on the depth nodes
    ``pencil_beam_data(machine, energy_mev_u).depth_mm``.

    Parameters
    ----------
    machine : Machine
        Gives the energies, depth nodes and Bragg peak depths.
    table : (E, D) float array
        Values on ``machine.depth_mm`` (e.g. ``planning.rbe.depth_tables(...).values[k]``).
    energy_mev_u : float
        Energy, MeV/u, inside the machine's range.
    zero_beyond : bool
        Values beyond the last depth node are 0 (IDD-like) instead of the last value.

    Returns
    -------
    (D,) float array

    Raises
    ------
    MachineError
        If ``energy_mev_u`` lies outside the machine's energy range or ``table`` is misshapen.
    """
    _check_energy(machine, energy_mev_u)
    values = np.asarray(table, dtype=np.float64)
    if values.shape != machine.depth_mm.shape:
        raise MachineError(machine.provenance.get("source_file", machine.name),
                           f"a per-depth table has shape {values.shape}, expected "
                           f"{machine.depth_mm.shape} (energies x depth nodes)")
    i_lo, i_hi, t = _energy_bracket(machine, energy_mev_u)
    if i_lo == i_hi:
        return values[i_lo].copy()
    peak = (1 - t) * machine.peak_depth_mm[i_lo] + t * machine.peak_depth_mm[i_hi]
    depth = machine.depth_mm[i_lo] * (peak / machine.peak_depth_mm[i_lo])
    vals = []
    for i in (i_lo, i_hi):
        scale = machine.peak_depth_mm[i] / peak
        vals.append(np.interp(depth * scale, machine.depth_mm[i], values[i],
                              right=0.0 if zero_beyond else None))
    return (1 - t) * vals[0] + t * vals[1]


def pencil_beam_data(machine: Machine, energy_mev_u: float) -> PencilBeamData:
    """Pencil-beam data at any energy inside the machine's range.

    Between two tabulated energies the curves are interpolated at equal *reduced depth*
    (depth divided by the Bragg peak depth), which keeps the Bragg peak sharp instead of
    averaging two peaks at different depths; the peak depth itself is interpolated linearly
    (:func:`per_depth_at_energy` does the same for any other per-depth table).

    Raises
    ------
    MachineError
        If ``energy_mev_u`` lies outside the machine's energy range.
    """
    _check_energy(machine, energy_mev_u)
    i_lo, i_hi, t = _energy_bracket(machine, energy_mev_u)
    if i_lo == i_hi:
        return _row(machine, i_lo)
    peak = (1 - t) * machine.peak_depth_mm[i_lo] + t * machine.peak_depth_mm[i_hi]
    # Depth nodes of the result: the lower energy's nodes, stretched to the new peak depth.
    depth = machine.depth_mm[i_lo] * (peak / machine.peak_depth_mm[i_lo])
    out = {name: per_depth_at_energy(machine, getattr(machine, name), energy_mev_u,
                                     zero_beyond=name == "idd_mev_cm2_per_g")
           for name in _PER_DEPTH_FIELDS}
    sig_air = (1 - t) * machine.spot_sigma_air_mm[i_lo] + t * machine.spot_sigma_air_mm[i_hi]
    return PencilBeamData(
        energy_mev_u=float(energy_mev_u),
        peak_depth_mm=float(peak),
        depth_mm=depth,
        spot_sigma_air_mm=float(sig_air),
        **out,
    )


def spot_sigma_air_at(machine: Machine, energy_mev_u: float) -> float:
    """The in-air spot sigma at the isocentre at ``energy_mev_u``, mm: linear between the
    tabulated energies (as :func:`pencil_beam_data` gives it), the end value beyond them."""
    return float(np.interp(energy_mev_u, machine.energies_mev_u, machine.spot_sigma_air_mm))


def _row(machine: Machine, i: int) -> PencilBeamData:
    return PencilBeamData(
        energy_mev_u=float(machine.energies_mev_u[i]),
        peak_depth_mm=float(machine.peak_depth_mm[i]),
        depth_mm=machine.depth_mm[i].copy(),
        spot_sigma_air_mm=float(machine.spot_sigma_air_mm[i]),
        **{name: getattr(machine, name)[i].copy() for name in _PER_DEPTH_FIELDS},
    )


def nearest_energy_index(machine: Machine, energy_mev_u: float) -> int:
    """Index of the tabulated energy closest to ``energy_mev_u``."""
    return int(np.argmin(np.abs(machine.energies_mev_u - energy_mev_u)))
