"""The shipped generic machine is what the generator produces, on any platform.

The generator's arithmetic differs in its last bits between NumPy/SciPy builds and processors.
Its results are continuous functions of that arithmetic (the spectra share each particle between
energy bins in proportion to where its range lies, see ``_primary_spectra``), so the arrays must
agree to float32 storage precision everywhere. On top of the arrays, the test compares what the
spectra are used for, at stated tolerances, so that a failure says which physics moved.
"""

from __future__ import annotations

import numpy as np
import pytest

from planning.machine import Machine
from planning.machine_generator import GENERATOR_VERSION, CarbonMachineGenerator
from planning.rbe.lem import LemModel
from planning.rbe.mkm import MkmModel
from planning.rbe.models import let_table_kev_um
from planning.rbe.tables import depth_tables

#: Arrays that are float32-rounded results of float64 arithmetic: a few float32 ulps apart at most.
EXACT_RTOL = 2e-6
#: Quantities derived from the spectra (sums over bins, dose-weighted means): relative to the
#: row's maximum, where a last-bit change cannot reach but a physics change of 0.01 % does.
DERIVED_RTOL = 1e-4

BEAM_DATA = ("energies_mev_u", "peak_depth_mm", "spot_sigma_air_mm", "depth_mm",
             "idd_mev_cm2_per_g", "sigma_core_mm", "sigma_halo_mm", "halo_weight", "letd_kev_um")


@pytest.fixture(scope="module")
def fresh() -> Machine:
    return CarbonMachineGenerator().generate()


def _close_to_row_max(actual: np.ndarray, desired: np.ndarray, rtol: float, what: str) -> None:
    """|actual - desired| <= rtol * max|desired| over the last axis (per energy and depth)."""
    scale = np.max(np.abs(desired), axis=-1, keepdims=True)
    err = np.abs(actual - desired) / np.where(scale > 0, scale, 1.0)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    assert err[worst] <= rtol, (f"{what}: relative difference {err[worst]:.2e} at {worst} "
                                f"exceeds {rtol:g}")


def _same_settings(actual: object, desired: object, where: str = "settings") -> None:
    """Equal, floats to 1e-12 relative (derived settings such as the spectra's geometric bin
    edges differ in their last bit between processors: seen between AVX2 and AVX-512)."""
    if isinstance(desired, dict):
        assert isinstance(actual, dict) and actual.keys() == desired.keys(), where
        for key in desired:
            _same_settings(actual[key], desired[key], f"{where}.{key}")
    elif isinstance(desired, list | tuple):
        assert isinstance(actual, list | tuple) and len(actual) == len(desired), where
        for i, (a, d) in enumerate(zip(actual, desired, strict=True)):
            _same_settings(a, d, f"{where}[{i}]")
    elif isinstance(desired, float):
        assert actual == pytest.approx(desired, rel=1e-12, abs=0.0), where
    else:
        assert actual == desired, where


def test_provenance_and_settings(machine: Machine, fresh: Machine) -> None:
    assert machine.provenance["generator_version"] == GENERATOR_VERSION
    _same_settings(fresh.provenance["settings"], machine.provenance["settings"])
    assert fresh.sad_mm == machine.sad_mm


def test_settings_comparison_sees_a_changed_setting(machine: Machine) -> None:
    settings = machine.provenance["settings"]
    changed = {**settings, "energy_spread_rel": settings["energy_spread_rel"] * (1 + 1e-9)}
    with pytest.raises(AssertionError, match="energy_spread_rel"):
        _same_settings(changed, settings)


@pytest.mark.parametrize("name", BEAM_DATA)
def test_beam_data_regenerate(machine: Machine, fresh: Machine, name: str) -> None:
    """To float32 precision of each value, or of its row's largest where a value is a
    cancellation's near-zero (the halo's width at the entrance, ~1e-5 mm: there the last bits
    of the arithmetic moved it by 2e-8 mm on an AVX-512 processor)."""
    actual, desired = np.asarray(getattr(fresh, name)), np.asarray(getattr(machine, name))
    assert actual.shape == desired.shape, name
    scale = np.max(np.abs(desired), axis=-1, keepdims=True)
    excess = np.abs(actual - desired) - EXACT_RTOL * (np.abs(desired) + scale)
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    assert excess[worst] <= 1e-9, (f"{name}: {actual[worst]!r} vs {desired[worst]!r} at "
                                   f"{worst}")


def test_spectra_regenerate(machine: Machine, fresh: Machine) -> None:
    assert fresh.spectra is not None and machine.spectra is not None
    np.testing.assert_allclose(fresh.spectra.depth_mm, machine.spectra.depth_mm,
                               rtol=EXACT_RTOL)
    np.testing.assert_array_equal(fresh.spectra.bin_edges_mev_u, machine.spectra.bin_edges_mev_u)
    np.testing.assert_allclose(fresh.spectra.fluence_per_primary,
                               machine.spectra.fluence_per_primary, rtol=EXACT_RTOL, atol=1e-9)


def test_species_fluence_and_spectral_letd_regenerate(machine: Machine, fresh: Machine) -> None:
    """Per-species fluence integrated over energy, and the dose-averaged LET of the spectra."""
    assert fresh.spectra is not None and machine.spectra is not None
    _close_to_row_max(fresh.spectra.fluence_per_primary.sum(axis=-1),
                      machine.spectra.fluence_per_primary.sum(axis=-1), DERIVED_RTOL,
                      "fluence per species")
    let = let_table_kev_um(machine.spectra.species_z, machine.spectra.bin_centers_mev_u)

    def letd(m: Machine) -> np.ndarray:
        assert m.spectra is not None
        dose = m.spectra.fluence_per_primary * let
        total = dose.sum(axis=(2, 3))
        return np.divide((dose * let).sum(axis=(2, 3)), total, out=np.zeros_like(total),
                         where=total > 0)

    _close_to_row_max(letd(fresh), letd(machine), DERIVED_RTOL, "spectral LETd")


@pytest.mark.parametrize("model", [MkmModel(), LemModel()], ids=["mMKM", "LEM I"])
def test_rbe_depth_tables_regenerate(machine: Machine, fresh: Machine, model: object) -> None:
    old = depth_tables(machine, model)  # type: ignore[arg-type]
    new = depth_tables(fresh, model)  # type: ignore[arg-type]
    for name, a, b in zip(old.quantity_names, new.values, old.values, strict=True):
        _close_to_row_max(a, b, DERIVED_RTOL, f"{model.describe()} {name}")  # type: ignore[attr-defined]


def test_spectra_do_not_jump_when_a_range_falls_on_a_bin_edge() -> None:
    """The cause of the platform dependence: a residual range exactly on a bin edge.

    Moving the depth by a relative 1e-15 either side of the point where the lowest bin's range
    (or the +4 sigma quadrature point of the old scheme) lies must change the spectra by no
    more than float64 noise.
    """
    gen = CarbonMachineGenerator()
    energy = 200.0
    r0 = float(gen.primary.range_energy.range_mm(energy))
    sigma = gen.range_sigma_mm(energy)
    edge_range = float(gen.primary.range_energy.range_mm(gen.settings.spectrum_bin_edges_mev_u[3]))
    for z in (r0 + 4.0 * sigma, r0 - edge_range):
        depth = np.array([z * (1 - 1e-15), z, z * (1 + 1e-15)])
        spec = gen._primary_spectra(r0, sigma, depth)
        assert np.max(np.abs(np.diff(spec, axis=0))) < 1e-12
