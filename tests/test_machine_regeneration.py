"""The shipped generic machine is exactly what the generator produces."""

from __future__ import annotations

import numpy as np

from planning.machine import Machine
from planning.machine_generator import GENERATOR_VERSION, CarbonMachineGenerator


def test_generator_regenerates_the_shipped_file(machine: Machine) -> None:
    assert machine.provenance["generator_version"] == GENERATOR_VERSION
    fresh = CarbonMachineGenerator().generate()
    for name in ("energies_mev_u", "peak_depth_mm", "spot_sigma_air_mm", "depth_mm",
                 "idd_mev_cm2_per_g", "sigma_core_mm", "sigma_halo_mm", "halo_weight",
                 "letd_kev_um"):
        np.testing.assert_allclose(getattr(fresh, name), getattr(machine, name), rtol=2e-6,
                                   atol=1e-9, err_msg=name)
    assert fresh.spectra is not None and machine.spectra is not None
    np.testing.assert_allclose(fresh.spectra.fluence_per_primary,
                               machine.spectra.fluence_per_primary, rtol=2e-6, atol=1e-9)
    np.testing.assert_allclose(fresh.spectra.depth_mm, machine.spectra.depth_mm, rtol=2e-6)
    assert fresh.provenance["settings"] == machine.provenance["settings"]
    assert fresh.sad_mm == machine.sad_mm
